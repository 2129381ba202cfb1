"""Loss landscapes: the loss and accuracy of a trained network around its parameters (Li et al.
2018, "Visualizing the Loss Landscape of Neural Nets"), and along the straight line between two
solutions (Goodfellow et al. 2015).

Data contract: a model is a Flax NNX module, or the three parts ``nnx.split(model, nnx.Param,
...)`` returns (``graphdef, params, rest``). It is always evaluated in inference mode (Dropout off,
BatchNorm on its running statistics, which stay fixed; ``rest`` is never perturbed by a random
direction). Data is a fixed, un-augmented set: ``{"image": [N, ...], "label": [N]}`` (or a tuple
``(x, y)``), labels integer ``[N]`` or one-hot ``[N, C]``. The loss of a point is the mean
per-example loss over all ``N`` examples (a final short batch is padded and masked out), the
accuracy the fraction whose largest output is the label (top-1; ``NaN`` for one-output models).

Every grid is computed by one compiled program per shape: ``lax.map`` over the grid points (in
groups of ``points_per_batch`` evaluated under ``vmap``), inside it a ``lax.scan`` over the data
batches, so a 2-D grid costs one compilation and then only the forward passes.

Neither Keras, Optax nor PyTorch ships loss landscapes; the reference is the paper's PyTorch code
(``net_plotter.py``), whose filters are the *first* axis of ``OIHW`` and ``[out, in]`` weights, the
same output units as the last axis of Flax's ``HWIO`` and ``[in, out]`` kernels used here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "Curve",
    "Surface",
    "inference_split",
    "filter_normalize",
    "random_direction",
    "line",
    "interpolate",
    "surface",
]


class Curve(NamedTuple):
    """Loss and accuracy at ``alphas`` along one line in parameter space (all ``[K]`` NumPy)."""

    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray


class Surface(NamedTuple):
    """Loss and accuracy on a 2-D grid: ``loss[i, j]`` is at ``(x[j], y[i])`` (rows are ``y``, as
    ``matplotlib``'s ``contour(x, y, z)`` expects); ``x`` ``[J]``, ``y`` ``[I]``."""

    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray


# --------------------------------------------------------------------------------------------
# Directions


def inference_split(model) -> tuple[Any, Any, Any]:
    """``nnx.split(model, nnx.Param, ...)`` of a copy of ``model`` in inference mode.

    The landscape is a property of the trained function, so Dropout is off and BatchNorm uses its
    running statistics (which a landscape never changes, as Li et al. do). ``model`` itself is left
    in its mode; its arrays are shared, not copied.

    Args:
      model: an `flax.nnx.Module`, or an already split ``(graphdef, params, rest)``.

    Returns:
      ``(graphdef, params, rest)``: ``params`` holds the ``nnx.Param`` leaves (kernels, biases,
      BatchNorm scale and offset), ``rest`` everything else (BatchNorm statistics, RNG state).

    Examples:
      >>> from flax import nnx
      >>> graphdef, params, rest = inference_split(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> params["kernel"].shape
      (3, 2)
    """
    if isinstance(model, nnx.Module):
        copy = nnx.merge(*nnx.split(model))
    elif isinstance(model, tuple) and len(model) == 3:
        copy = nnx.merge(*model)
    else:
        raise TypeError(
            "model must be an nnx.Module or the (graphdef, params, rest) of nnx.split(model, "
            f"nnx.Param, ...); got {type(model).__name__}"
        )
    copy.eval()
    return nnx.split(copy, nnx.Param, ...)


def _check_like(tree, reference, name: str, reference_name: str) -> None:
    s, r = jax.tree.structure(tree), jax.tree.structure(reference)
    if s != r:
        raise ValueError(
            f"{name} must have the same tree structure as {reference_name}; got {s} and {r}"
        )
    for path_leaf, ref in zip(jax.tree.leaves_with_path(tree), jax.tree.leaves(reference)):
        path, leaf = path_leaf
        if np.shape(leaf) != np.shape(ref):
            raise ValueError(
                f"{name} leaf {jax.tree_util.keystr(path)} has shape {np.shape(leaf)}; "
                f"{reference_name} has {np.shape(ref)}"
            )


def filter_normalize(direction, params, *, eps: float = 1e-10):
    r"""Li et al.'s filter normalisation of a direction in parameter space.

    For every tensor with two or more dimensions, each filter (one output unit: a slice along the
    last axis, which is the output axis of Flax's HWIO convolution kernels and ``[in, out]`` dense
    kernels) is rescaled to the norm of the same filter of the trained parameters:

    .. math:: d_{i,j} \leftarrow \frac{d_{i,j}}{\lVert d_{i,j} \rVert + \epsilon}
              \lVert \theta_{i,j} \rVert

    (layer ``i``, filter ``j``; ``ε = 1e-10`` as in the paper's code). Tensors with fewer than two
    dimensions (biases, BatchNorm scale and offset) get a zero direction, the paper's
    ``ignore='biasbn'``. This removes the scale invariance of ReLU networks: a direction moves each
    filter by an amount proportional to its own size, so landscapes of different networks can be
    compared. The paper's PyTorch code slices the first axis (``OIHW``, ``[out, in]``); the last
    axis here is the same filter in Flax's layout.

    Args:
      direction: a pytree shaped like ``params`` (e.g. Gaussian noise).
      params: the trained parameters (``nnx.State`` or any pytree of arrays).
      eps: added to each direction filter's norm.

    Returns:
      the normalised direction, same structure, shapes and dtypes as ``direction``.

    Raises:
      ValueError: ``direction`` and ``params`` differ in structure or in a leaf's shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> d = filter_normalize({"b": jnp.ones(2), "w": jnp.ones((2, 2))},
      ...                      {"b": jnp.ones(2), "w": jnp.array([[3.0, 0.0], [4.0, 1.0]])})
      >>> d["b"].tolist(), jnp.linalg.norm(d["w"], axis=0).round(4).tolist()
      ([0.0, 0.0], [5.0, 1.0])
    """
    _check_like(direction, params, "direction", "params")

    def one(d, w):
        d = jnp.asarray(d)
        if d.ndim < 2:
            return jnp.zeros_like(d)
        axes = tuple(range(d.ndim - 1))
        d_norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=axes, keepdims=True))
        w_norm = jnp.sqrt(jnp.sum(jnp.square(jnp.asarray(w, d.dtype)), axis=axes, keepdims=True))
        return d / (d_norm + eps) * w_norm

    return jax.tree.map(one, direction, params)


def random_direction(key, params):
    """A filter-normalised Gaussian direction (Li et al. 2018, Section 4).

    Each leaf is drawn from ``N(0, 1)`` with its own key, then `filter_normalize` rescales each
    filter to the trained filter's norm and zeroes biases and BatchNorm parameters. Two calls with
    different keys give the two (nearly orthogonal, in high dimension) axes of a 2-D plot.

    Args:
      key: a `jax.random` key.
      params: the trained parameters (``inference_split(model)[1]``).

    Returns:
      a direction shaped like ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> w = {"kernel": jnp.full((2, 2, 1, 3), 1.5), "bias": jnp.ones(3)}
      >>> d = random_direction(jax.random.key(0), w)
      >>> jnp.linalg.norm(d["kernel"].reshape(-1, 3), axis=0).round(4).tolist(), d["bias"].tolist()
      ([3.0, 3.0, 3.0], [0.0, 0.0, 0.0])
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    noise = [
        jax.random.normal(k, np.shape(leaf), jnp.result_type(leaf)) for k, leaf in zip(keys, leaves)
    ]
    return filter_normalize(jax.tree.unflatten(treedef, noise), params)


# --------------------------------------------------------------------------------------------
# Evaluation


def _data(data, batch_size: int):
    if isinstance(data, dict):
        if "image" not in data or "label" not in data:
            raise ValueError(f"data must have 'image' and 'label' entries; got {sorted(data)}")
        x, y = data["image"], data["label"]
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(f"data must be {{'image': x, 'label': y}} or (x, y); got {type(data)}")
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"data needs as many labels as images (and at least one); got image {x.shape} and "
            f"label {y.shape}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    n = x.shape[0]
    bs = min(int(batch_size), n)
    nb = -(-n // bs)
    pad = nb * bs - n
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
    rs = lambda a: a.reshape(nb, bs, *a.shape[1:])  # noqa: E731
    return rs(x), rs(y), rs(w), n


def _default_loss(*, y_true, y_pred):
    import optax

    if y_true.ndim == y_pred.ndim:
        return optax.softmax_cross_entropy(y_pred, y_true)
    return optax.softmax_cross_entropy_with_integer_labels(y_pred, y_true.astype(jnp.int32))


def _resolve_loss(loss) -> Callable:
    if loss is None:
        return _default_loss
    from fnn import losses

    return losses.get(loss)


def _correct(y_true, y_pred):
    if y_pred.ndim < 2 or y_pred.shape[-1] < 2:
        return jnp.full(y_pred.shape[:1], jnp.nan, jnp.float32)
    label = jnp.argmax(y_true, -1) if y_true.ndim == y_pred.ndim else y_true
    return (jnp.argmax(y_pred, -1) == label).astype(jnp.float32)


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.floating)


def _stack(directions):
    return jax.tree.map(lambda *ds: jnp.stack(ds), *directions)


def _shift(origin, stacked, c):
    def one(o, d):
        if not _is_float(o):
            return o
        return o + jnp.tensordot(c.astype(d.dtype), d, axes=1).astype(o.dtype)

    return jax.tree.map(one, origin, stacked)


@functools.partial(jax.jit, static_argnames=("graphdef", "loss_fn", "points_per_batch"))
def _program(
    params,
    rest,
    dparams,
    drest,
    coefficients,
    xb,
    yb,
    wb,
    n,
    *,
    graphdef,
    loss_fn,
    points_per_batch,
):
    # Module level, so a second grid of the same model, data shape and loss reuses the program.
    def at(c):
        p = _shift(params, dparams, c)
        r = rest if drest is None else _shift(rest, drest, c)

        def body(carry, batch):
            x, y, w = batch
            out = nnx.merge(graphdef, p, r)(x)
            per_example = loss_fn(y_true=y, y_pred=out)
            return (
                carry[0] + jnp.sum(w * per_example.astype(jnp.float32)),
                carry[1] + jnp.sum(w * _correct(y, out)),
            ), None

        zero = jnp.zeros((), jnp.float32)
        (total_loss, total_correct), _ = jax.lax.scan(body, (zero, zero), (xb, yb, wb))
        return total_loss / n, total_correct / n

    return jax.lax.map(at, coefficients, batch_size=points_per_batch)


def _evaluate(
    graphdef,
    params,
    rest,
    param_directions: Sequence,
    rest_directions: Sequence | None,
    coefficients: np.ndarray,
    data,
    *,
    loss,
    batch_size: int,
    points_per_batch: int,
    rows: int,
    progress: bool,
):
    """Loss and accuracy at ``params + Σ_k c_k d_k`` for each row ``c`` of ``coefficients``."""
    xb, yb, wb, n = _data(data, batch_size)
    loss_fn = _resolve_loss(loss)
    if isinstance(points_per_batch, bool) or not isinstance(points_per_batch, (int, np.integer)):
        raise ValueError(f"points_per_batch must be a positive int, got {points_per_batch!r}")
    if points_per_batch < 1:
        raise ValueError(f"points_per_batch must be a positive int, got {points_per_batch}")
    dparams = _stack(param_directions)
    drest = None if rest_directions is None else _stack(rest_directions)

    coefficients = np.asarray(coefficients, np.float32)
    chunks = np.split(coefficients, rows)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="landscape", unit="row")
    args = (params, rest, dparams, drest)
    data_args = (jnp.asarray(xb), jnp.asarray(yb), jnp.asarray(wb))
    losses, accuracies = [], []
    for chunk in chunks:
        lo, acc = _program(
            *args,
            jnp.asarray(chunk),
            *data_args,
            jnp.float32(n),
            graphdef=graphdef,
            loss_fn=loss_fn,
            points_per_batch=int(points_per_batch),
        )
        losses.append(np.asarray(lo))
        accuracies.append(np.asarray(acc))
    return np.concatenate(losses), np.concatenate(accuracies)


def _coordinates(values, span, steps, name: str) -> np.ndarray:
    if values is not None:
        values = np.asarray(values, np.float64)
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(
                f"{name} must be a non-empty 1-D array of finite numbers, got {values}"
            )
        return values
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int (points along each axis), got {steps!r}")
    lo, hi = (float(v) for v in span)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"span must be (low, high) with low <= high, got {span!r}")
    return np.linspace(lo, hi, int(steps))


def line(
    model,
    data,
    direction,
    *,
    alphas=None,
    span=(-1.0, 1.0),
    steps: int = 21,
    loss=None,
    batch_size: int = 256,
    points_per_batch: int = 1,
) -> Curve:
    r"""Loss and accuracy along one direction: :math:`f(\alpha) = L(\theta^* + \alpha\, d)`.

    Li et al.'s 1-D plot; with a `random_direction` it shows how flat or sharp the minimum
    ``θ*`` is in filter-normalised units (``α = 1`` moves every filter by its own norm).

    Args:
      model: the trained `flax.nnx.Module` (or its ``(graphdef, params, rest)``); evaluated in
        inference mode, BatchNorm statistics fixed.
      data: a fixed, un-augmented ``{"image": [N, ...], "label": [N] or [N, C]}`` or ``(x, y)``.
      direction: a pytree shaped like the model's ``nnx.Param`` state (`random_direction`).
      alphas: ``[K]`` step sizes; default ``linspace(*span, steps)``.
      span, steps: the default range of ``α`` and its number of points (positive).
      loss: ``None`` for softmax cross-entropy of logits (integer or one-hot labels), a Keras
        name for `fnn.losses.get` (a model with softmax outputs:
        ``"sparse_categorical_crossentropy"``) or a callable ``(*, y_true, y_pred) -> [B]``.
      batch_size: data examples per forward pass.
      points_per_batch: grid points evaluated together under ``vmap`` (``lax.map``'s
        ``batch_size``); 1 runs them one after another, which is fastest for convolutions on CPU.

    Returns:
      a `Curve` (``alphas``, mean ``loss``, top-1 ``accuracy``), NumPy ``[K]``.

    Raises:
      ValueError: a direction of another structure or shape than the parameters, ``steps`` or
        ``batch_size`` not a positive int, an empty or mislabelled data set.

    Examples:
      >>> import jax, numpy as np
      >>> from flax import nnx
      >>> model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
      >>> x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
      >>> d = random_direction(jax.random.key(1), inference_split(model)[1])
      >>> curve = line(model, (x, y), d, steps=5)
      >>> curve.alphas.tolist(), curve.loss.shape
      ([-1.0, -0.5, 0.0, 0.5, 1.0], (5,))
    """
    graphdef, params, rest = inference_split(model)
    _check_like(direction, params, "direction", "the model's parameters")
    alphas = _coordinates(alphas, span, steps, "alphas")
    lo, acc = _evaluate(
        graphdef,
        params,
        rest,
        [direction],
        None,
        alphas[:, None],
        data,
        loss=loss,
        batch_size=batch_size,
        points_per_batch=points_per_batch,
        rows=1,
        progress=False,
    )
    return Curve(alphas, lo, acc)


def interpolate(
    model_a,
    model_b,
    data,
    *,
    alphas=None,
    span=(-0.5, 1.5),
    steps: int = 21,
    loss=None,
    batch_size: int = 256,
    points_per_batch: int = 1,
) -> Curve:
    r"""Loss and accuracy on the straight line between two solutions (Goodfellow et al. 2015).

    .. math:: \theta(\alpha) = (1 - \alpha)\,\theta_a + \alpha\,\theta_b

    so ``α = 0`` is ``model_a`` and ``α = 1`` is ``model_b`` (Keskar et al. and Li et al. draw it
    between a small-batch and a large-batch minimum, ``α`` beyond ``[0, 1]`` extrapolates). The
    BatchNorm running statistics are interpolated the same way (Li et al.'s code does too), so that
    each end point is exactly its model; integer state (RNG counters) is ``model_a``'s. Not
    filter-normalised: the difference of two solutions is already a meaningful direction.

    Args:
      model_a, model_b: two trained instances of the same architecture (modules or split parts).
      data, loss, batch_size, points_per_batch: as in `line`.
      alphas: ``[K]`` positions; default ``linspace(*span, steps)``.
      span, steps: default range (``[-0.5, 1.5]``) and number of points (positive).

    Returns:
      a `Curve`.

    Raises:
      ValueError: the two models differ in architecture (tree structure or a parameter's shape).

    Examples:
      >>> import numpy as np
      >>> from flax import nnx
      >>> a, b = nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.Linear(4, 3, rngs=nnx.Rngs(1))
      >>> x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
      >>> interpolate(a, b, (x, y), steps=3, span=(0, 1)).alphas.tolist()
      [0.0, 0.5, 1.0]
    """
    graphdef, params_a, rest_a = inference_split(model_a)
    _, params_b, rest_b = inference_split(model_b)
    _check_like(params_b, params_a, "model_b's parameters", "model_a's parameters")
    _check_like(rest_b, rest_a, "model_b's other state", "model_a's other state")
    alphas = _coordinates(alphas, span, steps, "alphas")

    def diff(b, a):
        return (b - a) if _is_float(a) else a

    dparams = jax.tree.map(diff, params_b, params_a)
    drest = jax.tree.map(diff, rest_b, rest_a)
    lo, acc = _evaluate(
        graphdef,
        params_a,
        rest_a,
        [dparams],
        [drest],
        alphas[:, None],
        data,
        loss=loss,
        batch_size=batch_size,
        points_per_batch=points_per_batch,
        rows=1,
        progress=False,
    )
    return Curve(alphas, lo, acc)


def surface(
    model,
    data,
    directions,
    *,
    x=None,
    y=None,
    span=(-1.0, 1.0),
    steps: int = 21,
    loss=None,
    batch_size: int = 256,
    points_per_batch: int = 1,
    progress: bool = False,
) -> Surface:
    r"""Loss and accuracy on a 2-D grid: :math:`f(\alpha, \beta) = L(\theta^* + \alpha\,\delta +
    \beta\,\eta)` (Li et al. 2018, Section 3, with two filter-normalised directions).

    One compiled program evaluates a row of the grid (``lax.map`` over its points, ``lax.scan``
    over the data batches); every row reuses it.

    Args:
      model: the trained module (or split parts), evaluated in inference mode.
      data: a fixed, un-augmented set (as in `line`).
      directions: ``(δ, η)``, two pytrees shaped like the parameters (`random_direction` twice).
      x, y: ``[J]`` and ``[I]`` coordinates along ``δ`` and ``η``; default
        ``linspace(*span, steps)`` each.
      span, steps: the default range and points per axis (positive).
      loss, batch_size, points_per_batch: as in `line`.
      progress: show a tqdm bar over the rows.

    Returns:
      a `Surface` with ``loss[i, j]`` and ``accuracy[i, j]`` at ``(x[j], y[i])``.

    Raises:
      ValueError: not exactly two directions, a direction unlike the parameters, or bad
        ``steps``/``span``/``batch_size``.

    Examples:
      >>> import jax, numpy as np
      >>> from flax import nnx
      >>> model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
      >>> params = inference_split(model)[1]
      >>> ds = [random_direction(jax.random.key(k), params) for k in (1, 2)]
      >>> x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
      >>> surface(model, (x, y), ds, steps=3).loss.shape
      (3, 3)
    """
    graphdef, params, rest = inference_split(model)
    if not isinstance(directions, (tuple, list)) or len(directions) != 2:
        length = len(directions) if hasattr(directions, "__len__") else "?"
        raise ValueError(
            "directions must be a pair (delta, eta) of parameter-shaped pytrees, got "
            f"{type(directions).__name__} of length {length}"
        )
    for k, d in enumerate(directions):
        _check_like(d, params, f"directions[{k}]", "the model's parameters")
    xs = _coordinates(x, span, steps, "x")
    ys = _coordinates(y, span, steps, "y")
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)  # row-major: y outer, x inner
    lo, acc = _evaluate(
        graphdef,
        params,
        rest,
        list(directions),
        None,
        grid,
        data,
        loss=loss,
        batch_size=batch_size,
        points_per_batch=points_per_batch,
        rows=len(ys),
        progress=progress,
    )
    shape = (len(ys), len(xs))
    return Surface(xs, ys, lo.reshape(shape), acc.reshape(shape))
