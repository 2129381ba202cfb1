"""Image retrieval: the ``k`` most similar images to a query in a network's feature space.

The lecture's "retrieval" application: embed every image with a (pretrained) network, e.g.
`fnn.transfer.extract_features` on EfficientNet-Lite0's pooled ``[N, 1280]`` features, and
answer a query with its nearest neighbours under the cosine distance

    d(q, x) = 1 - q·x / (‖q‖ ‖x‖),

which ignores the features' overall scale (``scipy.spatial.distance.cosine`` and scikit-learn's
``NearestNeighbors(metric="cosine")`` compute the same number; Keras' ``CosineSimilarity`` loss is
``-cos``). Exact search in pure JAX: one ``[Q, N]`` matrix product and ``lax.top_k``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["cosine_distances", "nearest_neighbors", "precision_at_k"]

_EPS = 1e-12


def _features(x, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be feature vectors [N, F], got shape {x.shape}")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def cosine_distances(queries, database) -> jax.Array:
    """Pairwise cosine distances ``[Q, N]`` between ``queries [Q, F]`` and ``database [N, F]``.

    A zero vector has distance 1 to everything (its norm is floored at 1e-12).

    Examples:
      >>> cosine_distances([[1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]).tolist()
      [[0.0, 1.0, 2.0]]
    """
    q, d = _features(queries, "queries"), _features(database, "database")
    if q.shape[1] != d.shape[1]:
        raise ValueError(
            f"queries and database must have the same feature size F, got queries {q.shape} and "
            f"database {d.shape}"
        )
    qn = q / jnp.maximum(jnp.linalg.norm(q, axis=1, keepdims=True), _EPS)
    dn = d / jnp.maximum(jnp.linalg.norm(d, axis=1, keepdims=True), _EPS)
    return 1.0 - qn @ dn.T


def nearest_neighbors(queries, database, *, k: int = 5, exclude_self: bool = False):
    """The ``k`` nearest database entries of each query by cosine distance, nearest first.

    Args:
      queries: ``[Q, F]`` features.
      database: ``[N, F]`` features.
      k: neighbours per query (``<= N``, ``<= N - 1`` with ``exclude_self``).
      exclude_self: the queries ARE the database (``Q == N``, row i is entry i): never return
        an image as its own neighbour.

    Returns:
      ``(indices int32 [Q, k], distances [Q, k])``; ties go to the lower index.

    Examples:
      >>> import numpy as np
      >>> db = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
      >>> idx, dist = nearest_neighbors(db, db, k=1, exclude_self=True)
      >>> idx.ravel().tolist()
      [1, 0, 1]
    """
    dist = cosine_distances(queries, database)
    q, n = dist.shape
    limit = n - 1 if exclude_self else n
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
        raise ValueError(f"k must be an int in [1, {limit}] for a database of {n}, got {k!r}")
    if exclude_self:
        if q != n:
            raise ValueError(
                f"exclude_self needs the queries to be the database (Q == N), got Q={q}, N={n}"
            )
        dist = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, dist)
    neg, idx = jax.lax.top_k(-dist, k)
    return idx.astype(jnp.int32), -neg


def precision_at_k(query_labels, database_labels, indices) -> float:
    """Mean fraction of the retrieved neighbours that share the query's label (precision@k).

    Examples:
      >>> precision_at_k([0, 1], [0, 0, 1], [[0, 2], [2, 1]])
      0.5
    """
    ql = np.asarray(query_labels)
    dl = np.asarray(database_labels)
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[0] != ql.shape[0]:
        raise ValueError(
            f"indices must be [Q, k] with Q = len(query_labels) = {ql.shape[0]}, got {idx.shape}"
        )
    return float(np.mean(dl[idx] == ql[:, None]))
