"""Metrics for `fnn.train`: per-example values plus a mergeable running mean.

Data contract: a metric is a pure function ``metric(*, y_true, y_pred) -> [N]`` that returns one
value per example, exactly like the losses in `fnn.losses`; the caller averages. Keras' "accuracy"
on a batch is the mean of these per-example values::

    accuracy = 1/N Σᵢ 1[argmax_k ŷᵢₖ = yᵢ]

with ``y_true`` the labels ``yᵢ`` (integer class ids ``[N]`` or one-hot ``[N, K]``) and ``y_pred``
the model outputs ``ŷ`` (``[N, K]`` probabilities or logits; argmax is the same for both).

Averages over an epoch are kept as a `Mean` ``(total, count)`` pair that merges by addition
(CLU's ``empty / merge / compute`` pattern) so a compiled training loop can accumulate them on the
device and the host reads them only at logging time. A weighted mean is
``Σ wᵢ mᵢ / Σ wᵢ`` (Keras' ``weighted_metrics``); an unweighted one is ``Σ mᵢ / N``.

Names follow Keras (``"accuracy"``/``"acc"``, ``"sparse_categorical_accuracy"``,
``"categorical_accuracy"``, ``"binary_accuracy"``, ``"top_k_categorical_accuracy"``,
``"sparse_top_k_categorical_accuracy"``, ``"mse"``, ``"mae"``); `get` resolves ``"accuracy"`` from
the shapes of labels and outputs as Keras' ``compile`` does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnn._validation import lookup

__all__ = [
    "Mean",
    "sparse_categorical_accuracy",
    "categorical_accuracy",
    "binary_accuracy",
    "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "mean_squared_error",
    "mean_absolute_error",
    "get",
    "resolve_accuracy",
]


class Mean(NamedTuple):
    """A running (weighted) mean ``total / count`` that merges by addition.

    ``Mean.from_values(v, w)`` holds ``(Σ wᵢ vᵢ, Σ wᵢ)``; ``merge`` adds two of them, so the mean
    of a whole epoch is exact however it is cut into batches (``keras.metrics.Mean`` keeps the same
    two numbers, but as mutable variables; CLU's ``metrics.Average`` is this pattern).

    Attributes:
      total: float32 ``[]``, the weighted sum of values.
      count: float32 ``[]``, the sum of weights.

    Examples:
      >>> import jax.numpy as jnp
      >>> a = Mean.from_values(jnp.array([1.0, 2.0]))
      >>> b = Mean.from_values(jnp.array([6.0]))
      >>> float(a.merge(b).compute())
      3.0
    """

    total: jax.Array
    count: jax.Array

    @classmethod
    def empty(cls) -> Mean:
        """The neutral element: ``(0, 0)``."""
        return cls(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

    @classmethod
    def from_values(cls, values, weights=None) -> Mean:
        """``(Σ wᵢ vᵢ, Σ wᵢ)`` from values ``[N]`` and optional weights ``[N]`` (default 1)."""
        values = jnp.asarray(values, jnp.float32)
        if weights is None:
            weights = jnp.ones_like(values)
        weights = jnp.asarray(weights, jnp.float32)
        return cls(jnp.sum(values * weights), jnp.sum(weights))

    def merge(self, other: Mean) -> Mean:
        """The mean of both parts together (elementwise sum of totals and counts)."""
        return Mean(self.total + other.total, self.count + other.count)

    def compute(self) -> jax.Array:
        """``total / count`` (NaN when nothing was added, as 0/0)."""
        return self.total / self.count


def sparse_categorical_accuracy(*, y_true, y_pred):
    """``1[argmax_k ŷᵢₖ = yᵢ]`` per example, with integer labels.

    Args:
      y_true: integer class ids ``[N]`` (or ``[N, 1]``, as Keras accepts).
      y_pred: scores ``[N, K]`` (probabilities or logits).

    Returns:
      float32 ``[N]`` of 0/1.

    Examples:
      >>> import jax.numpy as jnp
      >>> sparse_categorical_accuracy(y_true=jnp.array([1, 0]), y_pred=jnp.array([[0.2, 0.8], [0.3, 0.7]]))
      Array([1., 0.], dtype=float32)
    """
    y_true = jnp.asarray(y_true)
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    return (jnp.argmax(y_pred, axis=-1) == y_true.astype(jnp.int32)).astype(jnp.float32)


def categorical_accuracy(*, y_true, y_pred):
    """``1[argmax ŷᵢ = argmax yᵢ]`` per example, with one-hot (or soft) labels ``[N, K]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> categorical_accuracy(y_true=jnp.array([[0.0, 1.0]]), y_pred=jnp.array([[0.4, 0.6]]))
      Array([1.], dtype=float32)
    """
    return (jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)).astype(jnp.float32)


def binary_accuracy(*, y_true, y_pred, threshold: float = 0.5):
    """``mean_j 1[(ŷᵢⱼ > t) = yᵢⱼ]`` per example (Keras' rule; the mean runs over the last axis).

    ``threshold`` t is 0.5 for probabilities; for logits use ``threshold=0.0`` (Keras keeps 0.5
    whatever the loss's ``from_logits``, which is wrong for logits).

    Args:
      y_true: 0/1 labels ``[N]`` or ``[N, L]``.
      y_pred: probabilities (or logits with ``threshold=0``), same shape as ``y_true``.

    Returns:
      float32 ``[N]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> binary_accuracy(y_true=jnp.array([1.0, 0.0]), y_pred=jnp.array([0.9, 0.7]))
      Array([1., 0.], dtype=float32)
    """
    y_true = jnp.asarray(y_true, jnp.float32)
    y_pred = jnp.asarray(y_pred)
    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    hit = ((y_pred > threshold).astype(jnp.float32) == y_true).astype(jnp.float32)
    return hit if hit.ndim == 1 else jnp.mean(hit.reshape(hit.shape[0], -1), axis=-1)


def sparse_top_k_categorical_accuracy(*, y_true, y_pred, k: int = 5):
    """``1[yᵢ among the k largest ŷᵢ]`` per example, integer labels ``[N]``, scores ``[N, K]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> sparse_top_k_categorical_accuracy(y_true=jnp.array([0]), y_pred=jnp.array([[0.3, 0.5, 0.2]]), k=2)
      Array([1.], dtype=float32)
    """
    y_true = jnp.asarray(y_true).astype(jnp.int32)
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    true_score = jnp.take_along_axis(y_pred, y_true[:, None], axis=-1)
    # Ties count as hits, as tf.math.in_top_k does.
    rank = jnp.sum(y_pred > true_score, axis=-1)
    return (rank < k).astype(jnp.float32)


def top_k_categorical_accuracy(*, y_true, y_pred, k: int = 5):
    """Top-k accuracy with one-hot labels ``[N, K]`` (see `sparse_top_k_categorical_accuracy`)."""
    return sparse_top_k_categorical_accuracy(y_true=jnp.argmax(y_true, axis=-1), y_pred=y_pred, k=k)


def mean_squared_error(*, y_true, y_pred):
    """``1/D Σⱼ (yᵢⱼ - ŷᵢⱼ)²`` per example (the mean runs over all non-batch axes).

    Examples:
      >>> import jax.numpy as jnp
      >>> mean_squared_error(y_true=jnp.array([[1.0, 2.0]]), y_pred=jnp.array([[0.0, 0.0]]))
      Array([2.5], dtype=float32)
    """
    d = jnp.asarray(y_pred, jnp.float32) - jnp.asarray(y_true, jnp.float32).reshape(y_pred.shape)
    return jnp.mean(jnp.square(d).reshape(d.shape[0], -1), axis=-1)


def mean_absolute_error(*, y_true, y_pred):
    """``1/D Σⱼ |yᵢⱼ - ŷᵢⱼ|`` per example (the mean runs over all non-batch axes)."""
    d = jnp.asarray(y_pred, jnp.float32) - jnp.asarray(y_true, jnp.float32).reshape(y_pred.shape)
    return jnp.mean(jnp.abs(d).reshape(d.shape[0], -1), axis=-1)


_TABLE: dict[str, Callable] = {
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
    # Resolved from the shapes by `resolve_accuracy` (see `get`).
    "accuracy": None,
    "acc": None,
}


def resolve_accuracy(y_true_shape, y_pred_shape) -> Callable:
    """Keras' rule for the name ``"accuracy"``: which accuracy fits these shapes.

    ``y_pred`` with one unit (``[N]`` or ``[N, 1]``) → `binary_accuracy`; labels with one axis
    fewer than ``y_pred`` (or a trailing 1) → `sparse_categorical_accuracy`; otherwise
    `categorical_accuracy`.

    Examples:
      >>> resolve_accuracy((8,), (8, 10)).__name__
      'sparse_categorical_accuracy'
    """
    if len(y_pred_shape) == 1 or y_pred_shape[-1] == 1:
        return binary_accuracy
    if len(y_true_shape) < len(y_pred_shape) or y_true_shape[-1] == 1:
        return sparse_categorical_accuracy
    return categorical_accuracy


def get(identifier) -> Callable | None:
    """A metric function from a Keras name or a callable ``f(*, y_true, y_pred) -> [N]``.

    Returns ``None`` for ``"accuracy"``/``"acc"``, which `fnn.train` resolves with
    `resolve_accuracy` once the label and output shapes are known. Unknown names raise a
    ``ValueError`` with a "did you mean" suggestion.

    Examples:
      >>> get("sparse_categorical_accuracy").__name__
      'sparse_categorical_accuracy'
      >>> get("mse").__name__
      'mean_squared_error'
    """
    if callable(identifier):
        return identifier
    return lookup("metric", identifier, _TABLE)


def name_of(identifier) -> str:
    """The key a metric gets in the logs (Keras uses the string it was given)."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, functools.partial):
        return name_of(identifier.func)
    return getattr(identifier, "__name__", type(identifier).__name__)
