"""Loss functions from the lecture (multiclass SVM, cross-entropy, L2/MSE, L1/MAE and the
``tf.keras.losses`` list) with Keras 3 semantics and numerics, plus the reduction
:math:`L = \\tfrac{1}{N}\\sum_i L_i` and the slide's "last-layer activation & loss" table.

Every loss of Keras 3.15 is here (focal, Dice, Tversky, Circle, CTC and generalized
cross-entropy included), with the slide's `multiclass_svm`, Optax's Crammer–Singer
`multiclass_hinge` and PyTorch's `smooth_l1` besides.

Data contract:

* Data arguments are keyword-only, ``y_true=`` and ``y_pred=``, so the Keras order
  (``y_true, y_pred``) and the Optax order (``predictions, targets``) can never be confused.
* Every loss returns **per-example values**: the class/feature axis (``axis``, default -1) is
  reduced as Keras reduces it (a mean for the elementwise losses, a sum for cross-entropy, KL,
  cosine), so ``[N, K]`` inputs give ``[N]`` and ``[N, H, W, K]`` give ``[N, H, W]``. Rank-1
  inputs ``[N]`` to the elementwise losses are N examples with one output each and give ``[N]``
  (Keras would average them into one scalar before weighting). Use `reduce` for the scalar.
* ``y_pred`` must be a floating array with a batch axis; low-precision floats (bfloat16,
  float16) are computed in float32, as Keras computes in ``floatx``.
* Shapes must match exactly: the silent ``(N,)`` against ``(N, 1)`` broadcast (which would turn
  N losses into N² terms) is a ``ValueError`` naming both shapes, as in Keras' loss functions.
  Keras' ``compile`` aligns such ranks before calling the loss; `align_ranks` is that step, for
  callers who want it explicitly. Sparse labels are integer class ids of shape ``y_pred.shape``
  without the class axis (``[N]``, or ``[N, 1]`` as Keras accepts); one-hot losses reject
  integer class ids and sparse losses reject one-hot labels.
* Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` with ``EPSILON = 1e-7``
  (``keras.backend.epsilon()``); ``from_logits=True`` paths use log-sum-exp (as
  `jax.nn.log_softmax` / `jax.nn.log_sigmoid`), finite even for logits of ±3.4e38.
* Edge of float32: wherever a loss's mathematical value is a finite float32, its value and
  gradient are finite for every finite float32 input (a property test draws the extremes for
  every loss `get` knows); the few places where this departs from Keras' arithmetic say so.

Names: `get` accepts the Keras string identifiers, their short aliases (``mse``, ``mae``,
``mape``, ``msle``, ``kld``, ``bce``, ``logcosh``, ...) and the Keras class names.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import boxes as _boxes
from fnn._validation import lookup, unknown_name_error

__all__ = [
    "CTC_LOG_FLOOR",
    "EPSILON",
    "LAST_LAYER_TABLE",
    "REDUCTIONS",
    "TASKS",
    "LastLayer",
    "align_ranks",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_generalized_cross_entropy",
    "categorical_hinge",
    "circle",
    "cosine_similarity",
    "ctc",
    "dice",
    "for_task",
    "get",
    "hinge",
    "huber",
    "kl_divergence",
    "log_cosh",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "mean_squared_logarithmic_error",
    "multiclass_hinge",
    "multiclass_svm",
    "poisson",
    "reduce",
    "smooth_l1",
    "sparse_categorical_crossentropy",
    "squared_hinge",
    "tversky",
]

EPSILON = 1e-7
"""Keras' fuzz factor ``keras.backend.epsilon()``: probability clipping and safe divisions."""

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


# ---------------------------------------------------------------------------------------------
# Input checks (static: shapes and dtypes only, so they run the same eagerly and under jit).


def _as_pred(y_pred, loss: str) -> Array:
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        raise TypeError(
            f"{loss}: y_pred must be a floating array (probabilities, scores or logits), got "
            f"dtype {y_pred.dtype} with shape {y_pred.shape}; cast it with .astype(jnp.float32)"
        )
    if jnp.finfo(y_pred.dtype).bits < 32:
        y_pred = y_pred.astype(jnp.float32)
    if y_pred.ndim == 0:
        raise ValueError(
            f"{loss}: y_pred has shape () (a scalar), which cannot be a batch; expected at least "
            "[batch] (or [batch, ...]). Wrap a single example as y_pred[None]"
        )
    return y_pred


def _as_true(y_true, y_pred: Array, loss: str, *, one_hot: bool = False) -> Array:
    """Dense labels/targets of exactly ``y_pred``'s shape, cast to its dtype."""
    y_true = jnp.asarray(y_true)
    if not (
        jnp.issubdtype(y_true.dtype, jnp.number) or y_true.dtype == jnp.bool_
    ) or jnp.issubdtype(y_true.dtype, jnp.complexfloating):
        raise TypeError(f"{loss}: y_true must be a real array, got dtype {y_true.dtype}")
    if y_true.shape != y_pred.shape:
        is_int = jnp.issubdtype(y_true.dtype, jnp.integer)
        if one_hot and is_int and y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,)):
            raise ValueError(
                f"{loss}: y_true has shape {y_true.shape} and integer dtype {y_true.dtype}, which "
                f"looks like class ids, but one-hot labels of y_pred's shape {y_pred.shape} are "
                "expected. Use sparse_categorical_crossentropy for integer labels, or one-hot "
                "encode them with jax.nn.one_hot(y_true, num_classes)"
            )
        raise ValueError(
            f"{loss}: y_true and y_pred must have the same shape, got y_true.shape="
            f"{y_true.shape} and y_pred.shape={y_pred.shape}. fnn does not broadcast (N,) "
            "against (N, 1): that silently compares every example with every other. Reshape one "
            "of them, or align them as Keras' compile does with fnn.losses.align_ranks"
        )
    return y_true.astype(y_pred.dtype)


def _class_axis(y_pred: Array, axis: int, loss: str) -> int:
    """Validate ``axis`` as a class axis of a batched ``y_pred`` (rank >= 2, not the batch)."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"{loss}: axis must be an int, got {axis!r}")
    if y_pred.ndim < 2:
        raise ValueError(
            f"{loss}: y_pred must have a batch axis and a class axis, [batch, ..., classes], got "
            f"shape {y_pred.shape}; wrap a single example as y_pred[None]"
        )
    if not -y_pred.ndim <= axis < y_pred.ndim:
        raise ValueError(f"{loss}: axis={axis} is out of range for y_pred of shape {y_pred.shape}")
    axis = int(axis) % y_pred.ndim
    if axis == 0:
        raise ValueError(
            f"{loss}: axis={axis} is the batch axis of y_pred (shape {y_pred.shape}); the class "
            "axis must be one of the others"
        )
    return axis


def _safe_mean(values: Array, axis) -> Array:
    """``jnp.mean`` (Keras' arithmetic), falling back to ``Σ (v / D)`` where the plain sum overflows.

    Two values of 3e38 have a representable mean, but their sum is inf: the fallback keeps the
    mean finite wherever it is (both branches have the finite gradient ``1/D``).
    """
    mean = jnp.mean(values, axis=axis)
    count = math.prod(values.shape[a] for a in ((axis,) if isinstance(axis, int) else axis))
    scaled = jnp.sum(values / jnp.asarray(count, values.dtype), axis=axis)
    return jnp.where(jnp.isfinite(mean), mean, scaled)


def _mean_last(values: Array, axis: int, loss: str) -> Array:
    """Keras' ``mean(..., axis)`` for elementwise losses; rank-1 inputs stay per example."""
    if values.ndim == 1:
        return values
    return _safe_mean(values, _class_axis(values, axis, loss))


def _concrete(value) -> bool:
    """Whether an option is a Python/NumPy value that can be checked now (not a jit tracer)."""
    return not isinstance(value, jax.core.Tracer)


def _check_option(value, name: str, loss: str, *, low: float, high=None, low_open=False):
    """Range-check a float option when it is concrete; traced options pass through."""
    if not _concrete(value):
        return value
    v = float(value)
    bad = (v <= low if low_open else v < low) or (high is not None and v > high)
    if bad or math.isnan(v):
        bounds = f"> {low}" if low_open else f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{loss}: {name} must be {bounds}, got {value!r}")
    return value


def _smooth(y_true: Array, label_smoothing, target: float, loss: str) -> Array:
    """``y (1 - ls) + ls · target`` (target 0.5 for binary, 1/K for categorical)."""
    ls = _check_option(label_smoothing, "label_smoothing", loss, low=0, high=1)
    if _concrete(ls) and float(ls) == 0.0:
        return y_true
    ls = jnp.asarray(ls, y_true.dtype)
    return y_true * (1.0 - ls) + ls * target


def _sparse_labels(y_true, y_pred: Array, axis: int, loss: str) -> Array:
    """Integer class ids of shape ``y_pred.shape`` minus ``axis`` (a trailing 1 is squeezed)."""
    y_true = jnp.asarray(y_true)
    expected = y_pred.shape[:axis] + y_pred.shape[axis + 1 :]
    if not jnp.issubdtype(y_true.dtype, jnp.integer):
        hint = (
            " They have y_pred's shape, so they look one-hot: use categorical_crossentropy, or "
            "pass jnp.argmax(y_true, axis=-1)."
            if y_true.shape == y_pred.shape
            else " Cast them with .astype(jnp.int32)."
        )
        raise TypeError(
            f"{loss}: y_true must be integer class ids of shape {expected}, got dtype "
            f"{y_true.dtype} with shape {y_true.shape}.{hint}"
        )
    if y_true.ndim == y_pred.ndim and y_true.shape[axis] == 1:
        y_true = jnp.squeeze(y_true, axis=axis)
    if y_true.shape != expected:
        raise ValueError(
            f"{loss}: y_true must be class ids of shape {expected} (y_pred's shape "
            f"{y_pred.shape} without class axis {axis}), got y_true.shape={y_true.shape}"
        )
    return y_true


def _check_label_range(labels: Array, num_classes: int, loss: str, ignore_class=None) -> None:
    """Eagerly (not under jit), reject class ids outside ``[0, num_classes)``."""
    if isinstance(labels, jax.core.Tracer):
        return
    values = np.asarray(labels)
    if ignore_class is not None:
        values = values[values != ignore_class]
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise ValueError(
            f"{loss}: y_true holds class ids outside [0, {num_classes}) for y_pred's "
            f"{num_classes} classes, e.g. {bad.flat[0]}"
            + ("" if ignore_class is None else f" (ignore_class={ignore_class})")
        )


def _clip_probabilities(p: Array) -> Array:
    return jnp.clip(p, EPSILON, 1.0 - EPSILON)


# ---------------------------------------------------------------------------------------------
# Probabilistic losses.


def binary_crossentropy(
    *,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""Binary cross-entropy, :math:`-[y \log p + (1 - y)\log(1 - p)]`, averaged over ``axis``.

    The binary / multilabel loss of the last-layer table (sigmoid outputs). Keras 3 numerics:

    * probabilities: :math:`p` = ``y_pred`` clipped to ``[1e-7, 1 - 1e-7]`` (so a confident wrong
      answer costs at most :math:`-\log 10^{-7} \approx 16.1`, and the gradient is zero beyond
      the clip, as in Keras);
    * ``from_logits=True``: :math:`-[y \log\sigma(z) + (1-y)\log\sigma(-z)]` with
      `jax.nn.log_sigmoid` (no clipping, finite for any finite logit);
    * label smoothing squeezes towards 0.5: :math:`y \leftarrow y(1 - ls) + 0.5\,ls`.

    Optax's `optax.losses.sigmoid_binary_cross_entropy(logits, labels)` is the ``from_logits``
    path without the mean over ``axis``; PyTorch's ``BCELoss`` clamps :math:`\log p` at -100
    instead of clipping :math:`p`.

    Args:
        y_true: targets in [0, 1], shape of ``y_pred`` (``[N]`` or ``[N, ..., D]``).
        y_pred: probabilities (or logits with ``from_logits=True``), ``[N]`` or ``[N, ..., D]``.
        from_logits: ``y_pred`` holds logits :math:`z`.
        label_smoothing: :math:`ls \in [0, 1]`.
        axis: the axis averaged over (ignored for rank-1 inputs).

    Returns:
        ``[N]`` for ``[N]`` or ``[N, D]`` inputs; ``y_pred.shape`` without ``axis`` otherwise.

    Examples:
        >>> import jax.numpy as jnp
        >>> loss = binary_crossentropy(y_true=jnp.array([[0.0, 1.0], [0.0, 0.0]]),
        ...                           y_pred=jnp.array([[0.6, 0.4], [0.4, 0.6]]))
        >>> np.asarray(loss).round(3)
        array([0.916, 0.714], dtype=float32)

    References:
        Keras 3, ``keras.losses.binary_crossentropy`` (``keras/src/losses/losses.py``)
    """
    name = "binary_crossentropy"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    y_true = _smooth(y_true, label_smoothing, 0.5, name)
    if from_logits:
        per_element = -(
            y_true * jax.nn.log_sigmoid(y_pred) + (1.0 - y_true) * jax.nn.log_sigmoid(-y_pred)
        )
    else:
        p = _clip_probabilities(y_pred)
        per_element = -(y_true * jnp.log(p) + (1.0 - y_true) * jnp.log(1.0 - p))
    return _mean_last(per_element, axis, name)


def _row_scale(p: Array, axis: int) -> Array:
    """1, or an exact power of two for rows that sum to more than :math:`2^{125}` (~4e37).

    XLA:CPU divides as ``p · (1/s)``, and :math:`1/s` is subnormal, flushed to 0, for
    :math:`s > 2^{126}`: such rows (and rows whose sum overflows) are scaled by
    :math:`2^{-(\\lceil\\log_2 K\\rceil + 3)}` first, which brings any sum of :math:`K`
    float32 values below :math:`2^{125}` without rounding a single probability.
    """
    k = p.shape[axis]
    small = 2.0 ** -(math.ceil(math.log2(max(k, 1))) + 3)
    total = jnp.sum(p, axis=axis, keepdims=True)
    return jnp.where(total <= 2.0**125, 1.0, small).astype(p.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _renormalise(p: Array, axis: int) -> Array:
    """``p / Σ_axis p``, as Keras renormalises probabilities, with three safeguards.

    An all-zero row is divided by 1 (Keras: 0/0 = NaN), so every class lands on the 1e-7 clip.
    A row whose sum is huge (or overflows) is scaled by an exact power of two first (Keras:
    p/inf = 0, every class on the clip). The derivative is written as ``(dp - q Σ dp) / s``: autodiff of
    ``p / s`` goes through ``1/s²``, which overflows (NaN gradient) once a row sums to less than
    ~1e-19.
    """
    p = p * _row_scale(p, axis)
    total = jnp.sum(p, axis=axis, keepdims=True)
    return p / jnp.where(total > 0, total, 1.0)


@_renormalise.defjvp
def _renormalise_jvp(axis, primals, tangents):
    (p,), (dp,) = primals, tangents
    scale = _row_scale(p, axis)
    p, dp = p * scale, dp * scale
    total = jnp.sum(p, axis=axis, keepdims=True)
    total = jnp.where(total > 0, total, 1.0)
    q = p / total
    return q, (dp - q * jnp.sum(dp, axis=axis, keepdims=True)) / total


def _cross_entropy(y_true: Array, y_pred: Array, axis: int, from_logits: bool) -> Array:
    r""":math:`-\sum_k y_k \log p_k` along ``axis``, Keras' arithmetic, finite for any finite input.

    From logits, :math:`\log p_k = (z_k - m) - \log\sum_j e^{z_j - m}` with :math:`m = \max_j z_j`
    (`jax.nn.log_softmax`'s arithmetic). When :math:`z_k - m` overflows (logits of ±3.4e38), the
    term is :math:`y_k z_k - y_k m - y_k \log\sum_j e^{z_j - m}` instead: 0 for a zero label
    (rather than :math:`0 \times (-\infty)` = NaN) and the exact finite value for a small one.
    """
    if not from_logits:
        # Keras renormalises along the class axis, then clips.
        return -jnp.sum(
            y_true * jnp.log(_clip_probabilities(_renormalise(y_pred, axis))), axis=axis
        )
    top = jax.lax.stop_gradient(jnp.max(y_pred, axis=axis, keepdims=True))
    shifted = y_pred - top
    ok = jnp.isfinite(shifted)
    shifted = jnp.where(ok, shifted, 0.0)
    lse = jnp.log(jnp.sum(jnp.where(ok, jnp.exp(shifted), 0.0), axis=axis, keepdims=True))
    terms = jnp.where(ok, y_true * (shifted - lse), y_true * y_pred - y_true * top - y_true * lse)
    return -jnp.sum(terms, axis=axis)


def categorical_crossentropy(
    *,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""Categorical cross-entropy, the slide's :math:`L_i = -\sum_k y_{ik} \log p_{ik}` (with
    one-hot :math:`y`, :math:`-\log p_{i,y_i}`).

    The multiclass single-label loss of the last-layer table (softmax outputs, one-hot labels).
    Keras 3 numerics:

    * probabilities: renormalised along ``axis`` (:math:`p \leftarrow p / \sum_k p_k`), then
      clipped to ``[1e-7, 1 - 1e-7]`` (the renormalisation's derivative is computed without
      :math:`1/(\sum_k p_k)^2`, so rows summing to ~1e-20, or to 0, keep a finite gradient where
      Keras' is NaN; rows summing beyond 4e37 are first scaled by a power of two, where Keras
      divides by inf or a flushed reciprocal and puts every class on the clip);
    * ``from_logits=True``: :math:`\log p = z - \log\sum_k e^{z_k}` (`jax.nn.log_softmax`);
    * label smoothing spreads over the :math:`K` classes: :math:`y \leftarrow y(1 - ls) + ls/K`.

    `optax.losses.softmax_cross_entropy(logits, labels)` equals the ``from_logits=True`` path;
    PyTorch's ``CrossEntropyLoss`` takes logits only, with integer or probability targets.

    Args:
        y_true: one-hot (or soft) labels, shape of ``y_pred``. Integer class ids raise an error
            pointing to `sparse_categorical_crossentropy`.
        y_pred: probabilities (or logits), ``[N, ..., K]``.
        from_logits: ``y_pred`` holds logits.
        label_smoothing: :math:`ls \in [0, 1]`.
        axis: class axis (not the batch axis 0).

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> categorical_crossentropy(y_true=jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        ...                          y_pred=jnp.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])).round(4)
        Array([0.0513, 2.3026], dtype=float32)

    References:
        Keras 3, ``keras.losses.categorical_crossentropy``; Szegedy et al.,
        `Rethinking the Inception Architecture <https://arxiv.org/abs/1512.00567>`_
        (label smoothing), 2015
    """
    name = "categorical_crossentropy"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    y_true = _as_true(y_true, y_pred, name, one_hot=True)
    y_true = _smooth(y_true, label_smoothing, 1.0 / y_pred.shape[axis], name)
    return _cross_entropy(y_true, y_pred, axis, from_logits)


def sparse_categorical_crossentropy(
    *,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
) -> Array:
    r"""Categorical cross-entropy with integer labels, the slide's
    :math:`L_i = -\log p_{i, y_i}` (``compile(loss='sparse_categorical_crossentropy')``).

    Same numerics as `categorical_crossentropy` (renormalise + clip, or log-softmax for logits).
    Entries whose label equals ``ignore_class`` (e.g. a "void" class -1 or 255 in segmentation)
    give a loss of exactly 0 with a zero gradient. Keras also divides the batch mean by the
    number of *valid* entries; to reproduce that, pass
    ``mask=(y_true != ignore_class)`` to `reduce`.

    Segmentation maps work as they are: labels ``[N, H, W]`` against ``[N, H, W, K]`` give one
    value per pixel, ``[N, H, W]``. Following Keras exactly, the batch loss is the sum over the
    valid pixels of the whole batch divided by their number (not a mean of per-image means):
    ``reduce(values, sample_weight, mask=labels != ignore_class)``, which ``fit`` applies to a
    loss bound with ``ignore_class``; per-image weights ``[N]`` spread over the pixels.

    Labels outside ``[0, K)`` raise a ``ValueError`` when called eagerly; under ``jit`` they cannot
    be checked and give 0 (as Keras' JAX backend does, through ``one_hot``), which is why
    `fnn.trainer.Trainer.fit` / ``evaluate`` check the labels on the host first.
    `optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)` equals the
    ``from_logits=True`` path; PyTorch's ``CrossEntropyLoss(ignore_index=...)`` is the analogue
    of ``ignore_class``.

    Args:
        y_true: integer class ids, ``y_pred.shape`` without ``axis`` (``[N]``), or with a
            trailing axis of 1 (``[N, 1]``), as Keras accepts. Float or one-hot labels raise.
        y_pred: probabilities (or logits), ``[N, ..., K]``.
        from_logits: ``y_pred`` holds logits.
        ignore_class: a class id whose entries are left out.
        axis: class axis of ``y_pred``.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> sparse_categorical_crossentropy(
        ...     y_true=jnp.array([1, 2]),
        ...     y_pred=jnp.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])).round(4)
        Array([0.0513, 2.3026], dtype=float32)
    """
    name = "sparse_categorical_crossentropy"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    labels = _sparse_labels(y_true, y_pred, axis, name)
    num_classes = y_pred.shape[axis]
    _check_label_range(labels, num_classes, name, ignore_class)
    valid = None if ignore_class is None else labels != ignore_class
    if valid is not None:
        labels = jnp.where(valid, labels, 0)
        # Neutral predictions for ignored entries keep their (discarded) loss and gradient finite.
        y_pred = jnp.where(jnp.expand_dims(valid, axis), y_pred, 1.0)
    # Out-of-range ids (possible only under jit) give 0, as Keras' one_hot-based loss does.
    in_range = (labels >= 0) & (labels < num_classes)
    valid = in_range if valid is None else valid & in_range
    index = jnp.expand_dims(jnp.where(in_range, labels, 0), axis)
    if from_logits:
        # -log p_y = log Σ_k e^(z_k - m) - (z_y - m): a gather, not a one-hot product, so a
        # logit 6.8e38 below the top (z_k - m = -inf) meets no 0 label (0 · -inf = NaN).
        top = jax.lax.stop_gradient(jnp.max(y_pred, axis=axis, keepdims=True))
        shifted = y_pred - top
        lse = jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))
        loss = lse - jnp.take_along_axis(shifted, index, axis=axis)
    else:
        log_p = jnp.log(_clip_probabilities(_renormalise(y_pred, axis)))
        loss = -jnp.take_along_axis(log_p, index, axis=axis)
    return jnp.where(valid, jnp.squeeze(loss, axis), 0.0)


def poisson(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Poisson negative log-likelihood (up to a constant), :math:`\hat y - y\log(\hat y +
    \epsilon)`, averaged over ``axis``, with :math:`\epsilon = 10^{-7}` (Keras).

    For count targets with a predicted rate :math:`\hat y > 0` (e.g. a softplus/exp output).
    PyTorch's ``PoissonNLLLoss(log_input=False)`` uses :math:`\epsilon = 10^{-8}`; Optax has
    none.

    Args:
        y_true: counts, shape of ``y_pred``.
        y_pred: predicted rates, ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> np.asarray(poisson(y_true=jnp.array([[1.0, 0.0]]), y_pred=jnp.array([[1.0, 1.0]]))).round(4)
        array([1.], dtype=float32)
    """
    name = "poisson"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    return _mean_last(y_pred - y_true * jnp.log(y_pred + EPSILON), axis, name)


def kl_divergence(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Kullback–Leibler divergence :math:`\sum_k y_k \log(y_k / p_k)` along ``axis``.

    As Keras, both distributions are clipped to ``[1e-7, 1]`` first, so zero targets add a tiny
    :math:`10^{-7}\log(10^{-7}/p)` term rather than exactly 0. Optax's
    `optax.losses.kl_divergence(log_predictions, targets)` takes *log*-predictions and treats
    :math:`0 \log 0 = 0`; PyTorch's ``KLDivLoss`` also takes log-predictions. They agree with this
    one for strictly positive distributions above the clip.

    Args:
        y_true: target distribution, shape of ``y_pred``.
        y_pred: predicted distribution, ``[N, ..., K]``.
        axis: distribution axis.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> kl_divergence(y_true=jnp.array([[0.5, 0.5]]), y_pred=jnp.array([[0.5, 0.5]]))
        Array([0.], dtype=float32)
    """
    name = "kl_divergence"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    y_true = _as_true(y_true, y_pred, name)
    y_true = jnp.clip(y_true, EPSILON, 1.0)
    y_pred = jnp.clip(y_pred, EPSILON, 1.0)
    return jnp.sum(y_true * jnp.log(y_true / y_pred), axis=axis)


# ---------------------------------------------------------------------------------------------
# Regression losses.


def mean_squared_error(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Mean squared error (the slide's L2 loss), :math:`\tfrac{1}{D}\sum_d (y_d - \hat y_d)^2`.

    Identifiers ``mean_squared_error``, ``mse``. `optax.losses.squared_error` is the
    unreduced :math:`(\hat y - y)^2`; `optax.losses.l2_loss` is **half** of it,
    :math:`\tfrac12(\hat y - y)^2` (its gradient is the plain residual). PyTorch's ``MSELoss``
    averages over all elements at once.

    Args:
        y_true: targets, shape of ``y_pred``.
        y_pred: predictions, ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> mean_squared_error(y_true=jnp.array([[0.0, 1.0]]), y_pred=jnp.array([[1.0, 1.0]]))
        Array([0.5], dtype=float32)
    """
    name = "mean_squared_error"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    return _mean_last(jnp.square(y_true - y_pred), axis, name)


def mean_absolute_error(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Mean absolute error (the slide's L1 loss), :math:`\tfrac{1}{D}\sum_d |y_d - \hat y_d|`.

    Identifiers ``mean_absolute_error``, ``mae``. Less sensitive to outliers than MSE; its
    gradient has constant magnitude. PyTorch: ``L1Loss``; Optax has no direct equivalent.

    Args:
        y_true: targets, shape of ``y_pred``.
        y_pred: predictions, ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> mean_absolute_error(y_true=jnp.array([[0.0, 1.0]]), y_pred=jnp.array([[2.0, 1.0]]))
        Array([1.], dtype=float32)
    """
    name = "mean_absolute_error"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    return _mean_last(jnp.abs(y_true - y_pred), axis, name)


def mean_absolute_percentage_error(
    *, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1
) -> Array:
    r"""Mean absolute percentage error, :math:`\tfrac{100}{D}\sum_d |y_d - \hat y_d| /
    \max(|y_d|, \epsilon)` with :math:`\epsilon = 10^{-7}` (Keras), identifiers ``mape``.

    Args:
        y_true: targets, shape of ``y_pred``.
        y_pred: predictions, ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values in percent, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> mean_absolute_percentage_error(y_true=jnp.array([[2.0, 4.0]]),
        ...                                y_pred=jnp.array([[1.0, 4.0]]))
        Array([25.], dtype=float32)
    """
    name = "mean_absolute_percentage_error"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    diff = jnp.abs((y_true - y_pred) / jnp.maximum(jnp.abs(y_true), EPSILON))
    return 100.0 * _mean_last(diff, axis, name)


def mean_squared_logarithmic_error(
    *, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1
) -> Array:
    r"""Mean squared logarithmic error, :math:`\tfrac{1}{D}\sum_d (\log(1 + \max(\hat y_d,
    \epsilon)) - \log(1 + \max(y_d, \epsilon)))^2` (Keras: values below :math:`\epsilon = 10^{-7}`
    are raised to it), identifiers ``msle``.

    Args:
        y_true: non-negative targets, shape of ``y_pred``.
        y_pred: non-negative predictions, ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> mean_squared_logarithmic_error(y_true=jnp.array([[0.0]]),
        ...                                y_pred=jnp.array([[jnp.e - 1]])).round(4)
        Array([1.], dtype=float32)
    """
    name = "mean_squared_logarithmic_error"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    diff = jnp.log1p(jnp.maximum(y_pred, EPSILON)) - jnp.log1p(jnp.maximum(y_true, EPSILON))
    return _mean_last(jnp.square(diff), axis, name)


def _l2_normalize(x: Array, axis: tuple[int, ...]) -> Array:
    r"""Keras' ``normalize``, :math:`x / \max(\|x\|, \epsilon)`, finite for any finite ``x``.

    The vector is first scaled by its largest magnitude :math:`m` (the result does not depend on
    :math:`m`, so :math:`m` is held constant for the gradient): :math:`\sum x^2` overflows for
    :math:`|x| > 1.8\cdot10^{19}` and underflows for subnormals, :math:`\sum (x/m)^2 \in [1, D]`
    never does. Where :math:`\|x\| \le \epsilon` (an all-zero vector included) the result is
    :math:`x/\epsilon`, and the discarded branch is fed safe values (no NaN gradient).
    """
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=axis, keepdims=True))
    # Below 1e-30 the norm is at most sqrt(D)·1e-30 < ε: the x/ε branch, and 1/m would overflow.
    scalable = m >= 1e-30
    m_safe = jnp.where(scalable, m, 1.0)
    # x/m in two steps of 1/sqrt(m): XLA:CPU divides as x·(1/m), and 1/m is subnormal (flushed
    # to 0) for m > 8.5e37.
    r = jax.lax.rsqrt(m_safe)
    xs = (x * r) * r
    ss = jnp.sum(jnp.square(xs), axis=axis, keepdims=True)  # ~1 or more where scalable
    ns = jnp.sqrt(jnp.where(scalable, ss, 1.0))  # sqrt'(0) = inf must not meet a 0 cotangent
    big = scalable & (m_safe * ns > EPSILON)
    return jnp.where(big, xs / jnp.where(big, ns, 1.0), x / EPSILON)


def _feature_axes(y_pred: Array, axis, loss: str) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints, or ``None`` for every axis but the batch axis) as a
    sorted tuple of non-batch axes."""
    if axis is None:
        return tuple(range(1, y_pred.ndim))
    if isinstance(axis, tuple | list):
        if not axis:
            raise ValueError(f"{loss}: axis must name at least one axis, got {axis!r}")
        axes = tuple(_class_axis(y_pred, a, loss) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{loss}: axis={tuple(axis)} names an axis twice")
        return tuple(sorted(axes))
    return (_class_axis(y_pred, axis, loss),)


def cosine_similarity(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int | tuple = -1) -> Array:
    r"""Cosine-similarity **loss**, :math:`-\cos(y, \hat y) = -\dfrac{y \cdot \hat y}{\|y\|\,\|\hat
    y\|}` along ``axis``: -1 for parallel vectors, 0 for orthogonal ones, +1 for opposite ones.

    Keras 3 returns the *negative* cosine so that minimising the loss maximises similarity; norms
    are floored at :math:`\epsilon = 10^{-7}`, so a zero vector gives 0. ``axis`` may be any
    non-batch axis or a tuple of them (``axis=(1, 2, 3)`` compares whole ``[H, W, C]`` maps), as
    Keras' ``normalize`` and ``sum`` take them; the batch axis 0 is refused (fnn returns one value
    per example; Keras would mix the examples). Each vector is scaled by its largest entry before
    the norm, so inputs up to ±3.4e38 and down to subnormals give the exact cosine and a finite
    gradient (Keras' :math:`\sum x^2` overflows beyond ~1.8e19: loss 0, gradient NaN).

    Optax's `optax.losses.cosine_similarity(predictions, targets)` returns **+cos** (the opposite
    sign) and `optax.losses.cosine_distance` returns :math:`1 - \cos` (= this loss + 1). PyTorch's
    ``CosineSimilarity`` returns +cos.

    Args:
        y_true: targets, shape of ``y_pred``.
        y_pred: predictions, ``[N, ..., D]``.
        axis: the axis (or axes) along which the vectors lie; not 0.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, D]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> cosine_similarity(y_true=jnp.array([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]),
        ...                   y_pred=jnp.array([[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])).round(4)
        Array([-0., -1.,  1.], dtype=float32)
        >>> maps = jnp.ones((2, 4, 4, 3))
        >>> cosine_similarity(y_true=maps, y_pred=2 * maps, axis=(1, 2, 3)).round(4)
        Array([-1., -1.], dtype=float32)
    """
    name = "cosine_similarity"
    y_pred = _as_pred(y_pred, name)
    if axis is None:
        raise TypeError(f"{name}: axis must be an int or a tuple of ints, got None")
    axes = _feature_axes(y_pred, axis, name)
    y_true = _as_true(y_true, y_pred, name)
    return -jnp.sum(_l2_normalize(y_true, axes) * _l2_normalize(y_pred, axes), axis=axes)


def huber(*, y_true: ArrayLike, y_pred: ArrayLike, delta: float = 1.0, axis: int = -1) -> Array:
    r"""Huber loss, averaged over ``axis``: with :math:`e = \hat y - y`,
    :math:`\tfrac12 e^2` for :math:`|e| \le \delta`, else :math:`\delta|e| - \tfrac12\delta^2`.

    Quadratic (MSE-like) near zero, linear (MAE-like) for large errors. Same values as Keras 3,
    `optax.losses.huber_loss` (elementwise) and PyTorch's ``HuberLoss``; the smooth L1 loss
    (PyTorch's ``SmoothL1Loss(beta)``, `smooth_l1`) is this divided by :math:`\delta = \beta`.
    Computed as :math:`\tfrac12 q^2 + \delta(|e| - q)` with :math:`q = \min(|e|, \delta)`
    (no ``where``): the gradient :math:`\mathrm{clip}(e, -\delta, \delta)` stays finite for
    any finite input, where Keras' ``where`` form gives NaN once :math:`e^2` or :math:`e`
    overflows.

    Args:
        y_true: targets, shape of ``y_pred``.
        y_pred: predictions, ``[N]`` or ``[N, ..., D]``.
        delta: :math:`\delta > 0`, where quadratic turns linear.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> huber(y_true=jnp.array([[0.0, 0.0]]), y_pred=jnp.array([[0.5, 3.0]]))
        Array([1.3125], dtype=float32)

    References:
        Huber, `Robust Estimation of a Location Parameter
        <https://doi.org/10.1214/aoms/1177703732>`_, 1964
    """
    name = "huber"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    _check_option(delta, "delta", name, low=0, low_open=True)
    return _mean_last(_huber_elementwise(jnp.abs(y_pred - y_true), delta, y_pred.dtype), axis, name)


def _huber_elementwise(err: Array, delta, dtype) -> Array:
    r""":math:`\tfrac12 q^2 + \delta(|e| - q)` with :math:`q = \min(|e|, \delta)`: Huber without a
    ``where``, so no branch's overflow (:math:`e^2` beyond 1.8e19, or :math:`|e|` = inf when
    :math:`\hat y - y` overflows) can reach the gradient, which stays :math:`\mathrm{clip}(e,
    -\delta, \delta)`."""
    d = jnp.asarray(delta, dtype)
    q = jnp.minimum(err, d)
    return 0.5 * jnp.square(q) + d * (err - q)


def log_cosh(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Log-cosh loss, :math:`\tfrac1D\sum_d \log\cosh(\hat y_d - y_d)`, identifiers ``log_cosh``,
    ``logcosh``.

    :math:`\approx e^2/2` for small errors and :math:`|e| - \log 2` for large ones; computed as
    :math:`|e| + \mathrm{softplus}(-2|e|) - \log 2`, which never overflows (``cosh`` would for
    :math:`|e| > 89`; Keras' and Optax's :math:`e + \mathrm{softplus}(-2e) - \log 2` does for
    :math:`e < -1.7\cdot10^{38}`, where the answer :math:`|e| - \log 2` is finite). Otherwise
    the same as Keras 3 and `optax.losses.log_cosh` (elementwise), including the formula's
    absolute error of ~1e-7 near :math:`e = 0` (``log 2`` cancels).

    Args:
        y_true: targets, shape of ``y_pred``.
        y_pred: predictions, ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> log_cosh(y_true=jnp.array([[0.0]]), y_pred=jnp.array([[0.0]]))
        Array([0.], dtype=float32)
    """
    name = "log_cosh"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    e = jnp.abs(y_pred - y_true)
    values = e + jnp.logaddexp(-2.0 * e, 0.0) - jnp.log(2.0).astype(e.dtype)
    return _mean_last(values, axis, name)


# ---------------------------------------------------------------------------------------------
# Hinge losses.


def _hinge_labels(y_true: Array) -> Array:
    # Keras: if every label is 0 or 1, map {0, 1} -> {-1, +1}; otherwise use them as given.
    is_binary = jnp.all((y_true == 0) | (y_true == 1))
    return jnp.where(is_binary, 2.0 * y_true - 1.0, y_true)


def hinge(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Binary hinge loss, :math:`\tfrac1D\sum_d \max(0, 1 - y_d \hat y_d)`, labels in {-1, +1}.

    As Keras 3, labels that are all 0 or 1 are first mapped to -1/+1 (a whole-array check, so one
    label outside {0, 1} anywhere leaves all labels as given). `optax.losses.hinge_loss(outputs,
    targets)` is elementwise and expects -1/+1 labels (no conversion).

    Args:
        y_true: labels in {-1, +1} or {0, 1}, shape of ``y_pred``.
        y_pred: scores (not probabilities), ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> hinge(y_true=jnp.array([1.0, 0.0]), y_pred=jnp.array([2.0, 0.5]))
        Array([0. , 1.5], dtype=float32)
    """
    name = "hinge"
    y_pred = _as_pred(y_pred, name)
    y_true = _hinge_labels(_as_true(y_true, y_pred, name))
    return _mean_last(jnp.maximum(1.0 - y_true * y_pred, 0.0), axis, name)


def squared_hinge(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Squared hinge loss, :math:`\tfrac1D\sum_d \max(0, 1 - y_d\hat y_d)^2`, labels in {-1, +1}
    (0/1 labels are converted as in `hinge`).

    Args:
        y_true: labels in {-1, +1} or {0, 1}, shape of ``y_pred``.
        y_pred: scores, ``[N]`` or ``[N, ..., D]``.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> squared_hinge(y_true=jnp.array([1.0, -1.0]), y_pred=jnp.array([2.0, 0.5]))
        Array([0.  , 2.25], dtype=float32)
    """
    name = "squared_hinge"
    y_pred = _as_pred(y_pred, name)
    y_true = _hinge_labels(_as_true(y_true, y_pred, name))
    return _mean_last(jnp.square(jnp.maximum(1.0 - y_true * y_pred, 0.0)), axis, name)


def categorical_hinge(*, y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    r"""Categorical hinge (Crammer–Singer), :math:`\max(0, 1 + \max_k (1-y_k)\hat y_k -
    \sum_k y_k \hat y_k)`: the best wrong score must trail the true score by a margin of 1.

    One-hot labels. Keras 3's ``neg = max((1 - y) * ŷ)`` is taken over *all* classes, with the
    true class contributing 0, so when every wrong score is negative ``neg`` is 0 rather than the
    best wrong score (kept here for Keras parity). The slide's multiclass SVM loss sums over the
    wrong classes instead: see `multiclass_svm`.

    Args:
        y_true: one-hot labels, shape of ``y_pred``.
        y_pred: scores, ``[N, ..., K]``.
        axis: class axis.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> categorical_hinge(y_true=jnp.array([[0.0, 1.0]]), y_pred=jnp.array([[0.5, 1.0]]))
        Array([0.5], dtype=float32)

    References:
        Crammer & Singer, `On the Algorithmic Implementation of Multiclass Kernel-based
        Vector Machines <https://jmlr.org/papers/v2/crammer01a.html>`_, JMLR 2001
    """
    name = "categorical_hinge"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    y_true = _as_true(y_true, y_pred, name, one_hot=True)
    pos = jnp.sum(y_true * y_pred, axis=axis)
    neg = jnp.max((1.0 - y_true) * y_pred, axis=axis)
    return jnp.maximum(neg - pos + 1.0, 0.0)


def multiclass_svm(
    *, y_true: ArrayLike, y_pred: ArrayLike, margin: float = 1.0, axis: int = -1
) -> Array:
    r"""The slide's multiclass SVM loss,
    :math:`L_i = \sum_{j \ne y_i} \max(0, f_j - f_{y_i} + \Delta)`, with :math:`f` = ``y_pred``
    (class scores), :math:`y_i` = ``y_true`` (an integer class id) and :math:`\Delta` =
    ``margin`` (1 on the slide).

    This is the Weston–Watkins form (CS231n): it *sums* the violations of all wrong classes.
    Keras has no such loss (`categorical_hinge` takes the single worst wrong class, one-hot);
    `optax.losses.multiclass_hinge_loss(scores, labels)` is the Crammer–Singer form
    :math:`\max_j(f_j + 1 - [j = y_i]) - f_{y_i}`, which equals this one when at most one wrong
    class violates the margin, and is smaller otherwise. PyTorch's ``MultiMarginLoss`` averages
    the sum over the :math:`K` classes.

    Args:
        y_true: integer class ids ``[N]`` (or ``[N, 1]``).
        y_pred: scores ``[N, K]`` (or ``[N, ..., K]`` with ``y_true`` of ``[N, ...]``).
        margin: :math:`\Delta \ge 0`.
        axis: class axis.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> # The slide's cat/car/frog example: scores for 3 images, true classes 0, 1, 2.
        >>> scores = jnp.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
        >>> np.asarray(multiclass_svm(y_true=jnp.array([0, 1, 2]), y_pred=scores)).round(2)
        array([ 2.9,  0. , 12.9], dtype=float32)

    References:
        Weston & Watkins, `Support Vector Machines for Multi-Class Pattern Recognition
        <https://www.esann.org/sites/default/files/proceedings/legacy/es1999-461.pdf>`_,
        ESANN 1999; CS231n notes, `Linear classification <https://cs231n.github.io/linear-classify/>`_
    """
    name = "multiclass_svm"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    _check_option(margin, "margin", name, low=0)
    labels = _sparse_labels(y_true, y_pred, axis, name)
    num_classes = y_pred.shape[axis]
    _check_label_range(labels, num_classes, name)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=y_pred.dtype, axis=axis)
    true_score = jnp.sum(one_hot * y_pred, axis=axis, keepdims=True)
    violations = jnp.maximum(0.0, y_pred - true_score + jnp.asarray(margin, y_pred.dtype))
    return jnp.sum(jnp.where(one_hot > 0, 0.0, violations), axis=axis)


# ---------------------------------------------------------------------------------------------
# Focal, segmentation, sequence and metric-learning losses (Keras 3), and two more margins.


def _focal_power(base: Array, gamma) -> Array:
    """``base ** gamma`` with ``0 ** 0 = 1`` and, for ``gamma = 0``, a zero (not NaN) gradient
    (``jnp.power``'s derivative ``γ·x^(γ-1)`` is ``0·inf`` there)."""
    if _concrete(gamma) and float(gamma) == 0.0:
        return jnp.ones_like(base)
    g = jnp.asarray(gamma, base.dtype)
    return jnp.where(g == 0, 1.0, jnp.power(jnp.where(g == 0, 1.0, base), g))


def binary_focal_crossentropy(
    *,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""Binary focal cross-entropy (Lin et al.'s focal loss), averaged over ``axis``:
    :math:`(1 - p_t)^\gamma \cdot \mathrm{BCE}(y, p)` with :math:`p_t = y p + (1 - y)(1 - p)`,
    times :math:`\alpha_t = y\alpha + (1 - y)(1 - \alpha)` when ``apply_class_balancing``.

    The factor :math:`(1 - p_t)^\gamma` down-weights the easy, well-classified entries (dense
    detection, where background dominates); :math:`\gamma = 0` without balancing is
    `binary_crossentropy`. Keras 3 numerics, reproduced exactly: labels are smoothed first
    (:math:`y \leftarrow y(1 - ls) + 0.5\,ls`), ``from_logits`` applies a sigmoid and then the
    *probability* path (BCE of :math:`p` clipped to ``[1e-7, 1 - 1e-7]``, so each entry costs at
    most :math:`16.1`, unlike `binary_crossentropy`'s log-sigmoid), and :math:`p_t` uses the
    unclipped :math:`p`. Optax's `optax.losses.sigmoid_focal_loss(logits, labels, alpha, gamma)`
    is the same loss from logits with log-sigmoid (no clip), elementwise, with ``alpha=None``
    meaning no balancing; torchvision's ``sigmoid_focal_loss`` likewise. The gradient at
    :math:`p_t = 1` is infinite for :math:`0 < \gamma < 1` (as :math:`x^\gamma` at 0).

    Args:
        y_true: targets in [0, 1], shape of ``y_pred``.
        y_pred: probabilities in [0, 1] (or logits with ``from_logits=True``), ``[N]`` or
            ``[N, ..., D]``.
        apply_class_balancing: weight positives by :math:`\alpha`, negatives by :math:`1-\alpha`.
        alpha: :math:`\alpha \in [0, 1]` (used only with ``apply_class_balancing``).
        gamma: focusing parameter :math:`\gamma \ge 0`.
        from_logits: ``y_pred`` holds logits.
        label_smoothing: :math:`ls \in [0, 1]`.
        axis: the axis averaged over (ignored for rank-1 inputs).

    Returns:
        ``[N]`` for ``[N]`` or ``[N, D]`` inputs; ``y_pred.shape`` without ``axis`` otherwise.

    Examples:
        >>> import jax.numpy as jnp
        >>> y, p = jnp.array([[0.0, 1.0], [0.0, 0.0]]), jnp.array([[0.6, 0.4], [0.4, 0.6]])
        >>> np.asarray(binary_focal_crossentropy(y_true=y, y_pred=p, gamma=2.0)).round(3)
        array([0.33 , 0.206], dtype=float32)

    References:
        Lin et al., `Focal Loss for Dense Object Detection <https://arxiv.org/abs/1708.02002>`_,
        2017; Keras 3, ``keras.losses.binary_focal_crossentropy``
    """
    name = "binary_focal_crossentropy"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    _check_option(alpha, "alpha", name, low=0, high=1)
    _check_option(gamma, "gamma", name, low=0)
    y_true = _smooth(y_true, label_smoothing, 0.5, name)
    p = jax.nn.sigmoid(y_pred) if from_logits else y_pred
    clipped = _clip_probabilities(p)
    bce = -(y_true * jnp.log(clipped) + (1.0 - y_true) * jnp.log(1.0 - clipped))
    p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
    focal = _focal_power(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        a = jnp.asarray(alpha, y_pred.dtype)
        focal = (y_true * a + (1.0 - y_true) * (1.0 - a)) * focal
    return _mean_last(focal, axis, name)


def categorical_focal_crossentropy(
    *,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    alpha=0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    r"""Categorical focal cross-entropy, :math:`-\sum_k \alpha_k (1 - p_k)^\gamma\, y_k \log p_k`
    along ``axis`` (one-hot labels).

    Keras 3 numerics, reproduced exactly: labels smoothed over the :math:`K` classes, logits
    through a softmax (then the probability path: so, unlike `categorical_crossentropy`'s
    log-softmax, each class costs at most :math:`16.1\alpha_k`), probabilities renormalised along
    ``axis`` and clipped to ``[1e-7, 1 - 1e-7]``; the factor uses the clipped :math:`p`.
    :math:`\alpha` is a scalar or one weight per class (e.g. inverse class frequencies), laid
    along ``axis`` (Keras broadcasts a list against the last axis only). Where Keras divides an
    all-zero row by 0 (NaN), every class sits at the clip here, as in `categorical_crossentropy`.
    Optax and PyTorch have no categorical focal loss.

    Args:
        y_true: one-hot (or soft) labels, shape of ``y_pred``.
        y_pred: probabilities (or logits), ``[N, ..., K]``.
        alpha: a float, or ``K`` floats, each >= 0.
        gamma: focusing parameter :math:`\gamma \ge 0`; 0 with ``alpha=1`` is
            `categorical_crossentropy` (probability path).
        from_logits: ``y_pred`` holds logits.
        label_smoothing: :math:`ls \in [0, 1]`.
        axis: class axis (not 0).

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> p = jnp.array([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]])
        >>> np.asarray(categorical_focal_crossentropy(y_true=y, y_pred=p)).round(4)
        array([3.000e-04, 6.759e-01], dtype=float32)

    References:
        Lin et al., `Focal Loss for Dense Object Detection <https://arxiv.org/abs/1708.02002>`_,
        2017; Keras 3, ``keras.losses.categorical_focal_crossentropy``
    """
    name = "categorical_focal_crossentropy"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    y_true = _as_true(y_true, y_pred, name, one_hot=True)
    _check_option(gamma, "gamma", name, low=0)
    num_classes = y_pred.shape[axis]
    if _concrete(alpha):
        a = np.asarray(alpha, np.float64)
        if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != num_classes):
            raise ValueError(
                f"{name}: alpha must be a float or {num_classes} floats (one per class of "
                f"y_pred's shape {y_pred.shape}, axis {axis}), got shape {a.shape}"
            )
        if np.any(np.isnan(a)) or np.any(a < 0):
            raise ValueError(f"{name}: alpha must be >= 0, got {alpha!r}")
    alpha = jnp.asarray(alpha, y_pred.dtype)
    if alpha.ndim == 1:
        alpha = alpha.reshape((-1,) + (1,) * (y_pred.ndim - 1 - axis))
    y_true = _smooth(y_true, label_smoothing, 1.0 / num_classes, name)
    p = jax.nn.softmax(y_pred, axis=axis) if from_logits else y_pred
    p = _clip_probabilities(_renormalise(p, axis))
    per_class = alpha * _focal_power(1.0 - p, gamma) * (-y_true * jnp.log(p))
    return jnp.sum(per_class, axis=axis)


def _overlap_sums(y_true: Array, y_pred: Array, axes: tuple[int, ...]):
    return (
        jnp.sum(y_true * y_pred, axis=axes),
        jnp.sum(y_true * (1.0 - y_pred), axis=axes),
        jnp.sum(y_pred * (1.0 - y_true), axis=axes),
    )


def dice(*, y_true: ArrayLike, y_pred: ArrayLike, axis=None) -> Array:
    r"""Dice loss, :math:`1 - \dfrac{2\sum y\hat y}{\sum y + \sum \hat y + \epsilon}` over
    ``axis``, with :math:`\epsilon = 10^{-7}` (Keras 3).

    One minus the (soft) Dice coefficient :math:`2|A \cap B| / (|A| + |B|)` of a predicted mask
    :math:`\hat y \in [0, 1]` and a target mask: a segmentation loss that does not care how much
    background there is. ``axis=None`` (the default) sums over every axis but the batch axis, so
    each example (a ``[H, W, C]`` mask) gets its own value. Keras' ``axis=None`` sums over the
    batch too and returns one number for the whole batch (its "global" Dice): pass both arrays
    reshaped to ``[1, -1]`` for that. Keras' ``dice(..., axis=(1, 2, 3))`` is this function's
    default on ``[N, H, W, C]``. Per-class Dice over ``[N, H, W, K]`` one-hot masks is
    ``axis=(1, 2)`` (gives ``[N, K]``). Neither Optax nor PyTorch has a Dice loss.

    Args:
        y_true: target mask (0/1 or soft), shape of ``y_pred``.
        y_pred: predicted mask in [0, 1] (e.g. a sigmoid output), ``[N, ...]``.
        axis: ``None``, a non-batch axis, or a tuple of them.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` with the default.

    Examples:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]])
        >>> p = jnp.array([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]])
        >>> np.asarray(dice(y_true=y, y_pred=p)).round(4)
        array([0.5   , 0.7576], dtype=float32)

    References:
        Milletari et al., `V-Net <https://arxiv.org/abs/1606.04797>`_, 2016; Keras 3,
        ``keras.losses.dice``
    """
    name = "dice"
    y_pred = _as_pred(y_pred, name)
    axes = _feature_axes(y_pred, axis, name)
    y_true = _as_true(y_true, y_pred, name)
    intersection = jnp.sum(y_true * y_pred, axis=axes)
    total = jnp.sum(y_true, axis=axes) + jnp.sum(y_pred, axis=axes)
    return 1.0 - 2.0 * intersection / (total + EPSILON)


def tversky(
    *, y_true: ArrayLike, y_pred: ArrayLike, alpha: float = 0.5, beta: float = 0.5, axis=None
) -> Array:
    r"""Tversky loss as Keras 3 computes it:
    :math:`1 - \dfrac{\sum y\hat y}{\sum y\hat y + \alpha\sum y(1-\hat y) + \beta\sum \hat y(1-y)
    + \epsilon}` over ``axis``, :math:`\epsilon = 10^{-7}`.

    A Dice loss with separate weights on the two kinds of error; :math:`\alpha = \beta = 0.5` is
    `dice`. **Which weight is which:** in Keras' code (and here) :math:`\alpha` multiplies
    :math:`\sum y(1 - \hat y)`, the *false negatives* (target pixels the prediction misses), and
    :math:`\beta` the *false positives*, although Keras' docstring says the opposite; Salehi et
    al. write :math:`\alpha` on the false positives. For the paper's convention swap them
    (``alpha=β_paper, beta=α_paper``); a test pins Keras' arithmetic. ``axis`` as in `dice`
    (default: every axis but the batch axis; Keras' default also sums over the batch).

    Args:
        y_true: target mask, shape of ``y_pred``.
        y_pred: predicted mask in [0, 1], ``[N, ...]``.
        alpha: weight :math:`\ge 0` of the false negatives :math:`\sum y(1-\hat y)`.
        beta: weight :math:`\ge 0` of the false positives :math:`\sum \hat y(1-y)`.
        axis: ``None``, a non-batch axis, or a tuple of them.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` with the default.

    Examples:
        >>> import jax.numpy as jnp
        >>> y, p = jnp.array([[1.0, 1.0, 0.0, 0.0]]), jnp.array([[1.0, 0.0, 1.0, 0.0]])
        >>> np.asarray(tversky(y_true=y, y_pred=p, alpha=0.7, beta=0.3)).round(4)  # 1 - 1/2
        array([0.5], dtype=float32)
        >>> missed_one = jnp.array([[1.0, 0.0, 0.0, 0.0]])  # 1 - 1 / (1 + 0.7 · 1 missed)
        >>> np.asarray(tversky(y_true=y, y_pred=missed_one, alpha=0.7, beta=0.3)).round(4)
        array([0.4118], dtype=float32)

    References:
        Salehi et al., `Tversky loss function for image segmentation
        <https://arxiv.org/abs/1706.05721>`_, 2017; Keras 3, ``keras.losses.tversky``
    """
    name = "tversky"
    y_pred = _as_pred(y_pred, name)
    axes = _feature_axes(y_pred, axis, name)
    y_true = _as_true(y_true, y_pred, name)
    _check_option(alpha, "alpha", name, low=0)
    _check_option(beta, "beta", name, low=0)
    tp, missed, spurious = _overlap_sums(y_true, y_pred, axes)
    a, b = jnp.asarray(alpha, y_pred.dtype), jnp.asarray(beta, y_pred.dtype)
    return 1.0 - tp / (tp + a * missed + b * spurious + EPSILON)


def _int_labels(y_true, expected_shape, loss: str, what: str = "y_true") -> Array:
    y_true = jnp.asarray(y_true)
    if not jnp.issubdtype(y_true.dtype, jnp.integer):
        raise TypeError(
            f"{loss}: {what} must be integer class ids of shape {expected_shape}, got dtype "
            f"{y_true.dtype} with shape {y_true.shape}; cast them with .astype(jnp.int32)"
        )
    if y_true.shape == tuple(expected_shape) + (1,):
        y_true = y_true[..., 0]
    if y_true.shape != tuple(expected_shape):
        raise ValueError(
            f"{loss}: {what} must have shape {tuple(expected_shape)}, got {what}.shape="
            f"{y_true.shape}"
        )
    return y_true


CTC_LOG_FLOOR = -1e30
"""`ctc` raises log-probabilities below this to it (only logit spreads beyond 1e30 reach it)."""


def ctc(*, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    r"""Connectionist temporal classification loss, :math:`-\log \sum_{\pi \in
    \mathcal{B}^{-1}(y)} \prod_t p_t(\pi_t)`: the negative log-probability of the label sequence
    :math:`y`, summed over every frame-by-frame path :math:`\pi` (blanks and repeats) that
    collapses to it (merge repeats, then drop blanks).

    Keras 3's ``keras.losses.ctc``: ``y_true`` holds the labels of each sequence, right-padded
    with 0, which is also the blank class (so real classes are ``1 .. K-1``); the label length is
    the number of non-zero entries and every frame of ``y_pred`` is used. ``y_pred`` holds logits
    (a log-softmax is applied). The forward recursion is `optax.ctc_loss` (Keras' JAX backend
    runs the same algorithm), so a label that cannot fit in :math:`T` frames costs about
    :math:`10^5` (Optax's ``log_epsilon``) rather than inf. Called eagerly, labels outside
    ``[0, K)`` and a 0 before the end of a label are errors (Keras would silently read a zero in
    the middle as the end of the label). Log-probabilities below :data:`CTC_LOG_FLOOR` (-1e30,
    reached only by logit spreads beyond 1e30) are raised to it, so value and gradient stay
    finite (:math:`0 \cdot (-\infty)` otherwise). PyTorch's ``CTCLoss`` takes log-probabilities
    ``[T, N, K]`` and explicit lengths, and divides by the label length by default.

    Args:
        y_true: integer labels ``[N, L]`` right-padded with 0.
        y_pred: logits ``[N, T, K]`` (class 0 is the blank).

    Returns:
        ``[N]``: one negative log-likelihood per sequence.

    Examples:
        >>> import jax.numpy as jnp
        >>> # Two frames, uniform over {blank, 1}: of the 4 paths, "1 1", "1 _" and "_ 1" give "1".
        >>> ctc(y_true=jnp.array([[1, 0]]), y_pred=jnp.zeros((1, 2, 2))).round(4)
        Array([0.2877], dtype=float32)

    References:
        Graves et al., `Connectionist Temporal Classification
        <https://www.cs.toronto.edu/~graves/icml_2006.pdf>`_, ICML 2006; Keras 3,
        ``keras.losses.ctc``
    """
    name = "ctc"
    y_pred = _as_pred(y_pred, name)
    if y_pred.ndim != 3:
        raise ValueError(
            f"{name}: y_pred must be logits of shape [batch, frames, classes], got shape "
            f"{y_pred.shape}"
        )
    batch, frames, num_classes = y_pred.shape
    y_true = jnp.asarray(y_true)
    if y_true.ndim != 2:
        raise ValueError(
            f"{name}: y_true must be integer labels of shape [batch, max_label_length] "
            f"([{batch}, L]), right-padded with 0, got shape {y_true.shape}"
        )
    labels = _int_labels(y_true, (batch, y_true.shape[1]), name)
    _check_label_range(labels, num_classes, name)
    if not isinstance(labels, jax.core.Tracer):
        values = np.asarray(labels)
        padding = values == 0
        inner = padding[:, :-1] & ~padding[:, 1:]
        if inner.any():
            row = int(np.argwhere(inner)[0, 0])
            raise ValueError(
                f"{name}: y_true row {row} is {values[row].tolist()}: 0 is the blank and the "
                "padding, so it may only come after the last label (right-padding)"
            )
    length = jnp.sum(labels != 0, axis=-1)
    label_paddings = (jnp.arange(labels.shape[1])[None, :] >= length[:, None]).astype(y_pred.dtype)
    logprobs = jnp.maximum(jax.nn.log_softmax(y_pred, axis=-1), CTC_LOG_FLOOR)
    return optax.ctc_loss(
        logprobs, jnp.zeros((batch, frames), y_pred.dtype), labels, label_paddings, blank_id=0
    )


def circle(
    *,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    ref_labels: ArrayLike | None = None,
    ref_embeddings: ArrayLike | None = None,
    remove_diagonal: bool = True,
    gamma: float = 80.0,
    margin: float = 0.4,
) -> Array:
    r"""Circle loss (Sun et al. 2020) for metric learning, Keras 3's ``keras.losses.circle``.

    With cosine similarities :math:`s_{ij} = \min(e_i \cdot r_j, 1)` between the L2-normalised
    embeddings :math:`e_i` (``y_pred``) and the references :math:`r_j` (the batch itself by
    default), positives :math:`P_i` (same label; :math:`j \ne i` with ``remove_diagonal``) and
    negatives :math:`N_i` (other labels), margin :math:`m` and scale :math:`\gamma`:

    .. math::
        L_i = \mathrm{softplus}\Big(\log\sum_{j \in P_i} e^{-\gamma\,[1 + m - s_{ij}]_+
        (s_{ij} - 1 + m)} + \log\sum_{j \in N_i} e^{\gamma\,[s_{ij} + m]_+ (s_{ij} - m)}\Big).

    (Keras writes it with distances :math:`d = 1 - s`; the same numbers.) An anchor without a
    positive (or without a negative) gets exactly 0 with a zero gradient. Keras also masks such
    zeros out of its mean (it divides by the number of values > 0): pass
    ``mask=values > 0`` to `reduce` for that. The loss couples the examples of a batch, so its
    value depends on the batch composition. Optax and PyTorch have no Circle loss.

    Args:
        y_true: integer labels ``[N]`` (or ``[N, 1]``).
        y_pred: L2-normalised embeddings ``[N, D]`` (e.g. after
            ``x / jnp.linalg.norm(x, axis=-1, keepdims=True)``; not normalised here, as Keras).
        ref_labels: labels ``[M]`` of ``ref_embeddings`` (give both or neither).
        ref_embeddings: reference embeddings ``[M, D]``; default: the batch.
        remove_diagonal: drop :math:`j = i` from the positives.
        gamma: scale :math:`\gamma > 0`.
        margin: relaxation :math:`m \ge 0`.

    Returns:
        ``[N]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> e = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> np.asarray(circle(y_true=jnp.array([0, 0, 1, 1]), y_pred=e, gamma=1.0)).round(4)
        array([0.9718, 1.0435, 1.0435, 0.9718], dtype=float32)

    References:
        Sun et al., `Circle Loss: A Unified Perspective of Pair Similarity Optimization
        <https://arxiv.org/abs/2002.10857>`_, CVPR 2020
    """
    name = "circle"
    y_pred = _as_pred(y_pred, name)
    if y_pred.ndim != 2:
        raise ValueError(
            f"{name}: y_pred must be embeddings of shape [batch, dim], got shape {y_pred.shape}"
        )
    labels = _int_labels(y_true, y_pred.shape[:1], name)
    if (ref_labels is None) != (ref_embeddings is None):
        raise ValueError(
            f"{name}: give ref_labels and ref_embeddings together (or neither, to compare the "
            f"batch with itself); got ref_labels={'None' if ref_labels is None else 'an array'} "
            f"and ref_embeddings={'None' if ref_embeddings is None else 'an array'}"
        )
    if ref_embeddings is None:
        refs, ref_ids = y_pred, labels
    else:
        refs = jnp.asarray(ref_embeddings).astype(y_pred.dtype)
        if refs.ndim != 2 or refs.shape[1] != y_pred.shape[1]:
            raise ValueError(
                f"{name}: ref_embeddings must have shape [M, {y_pred.shape[1]}] (y_pred's "
                f"dim), got {refs.shape}"
            )
        ref_ids = _int_labels(ref_labels, refs.shape[:1], name, "ref_labels")
    _check_option(gamma, "gamma", name, low=0, low_open=True)
    _check_option(margin, "margin", name, low=0)
    g, m = jnp.asarray(gamma, y_pred.dtype), jnp.asarray(margin, y_pred.dtype)
    distance = jnp.maximum(1.0 - y_pred @ refs.T, 0.0)
    positive = labels[:, None] == ref_ids[None, :]
    negative = ~positive
    if remove_diagonal:
        positive = positive & ~jnp.eye(*positive.shape, dtype=bool)
    pos_weight = jnp.maximum((m + distance) * positive, 0.0)
    neg_weight = jnp.maximum((1.0 + m - distance) * negative, 0.0)
    pos_logits = -g * pos_weight * (m - distance)
    neg_logits = g * neg_weight * (1.0 - m - distance)
    # Keras fills the left-out pairs with -inf; a large finite fill gives the same sums (exp of
    # it is 0) and, for an anchor with no positive, a loss of exactly 0 without a NaN gradient.
    fill = jnp.asarray(-1e30, y_pred.dtype)
    p_loss = jax.nn.logsumexp(jnp.where(positive, pos_logits, fill), axis=1)
    n_loss = jax.nn.logsumexp(jnp.where(negative, neg_logits, fill), axis=1)
    return jax.nn.softplus(p_loss + n_loss)


def categorical_generalized_cross_entropy(
    *, y_true: ArrayLike, y_pred: ArrayLike, q: float = 0.5, axis: int = -1
) -> Array:
    r"""Generalized cross-entropy (Zhang & Sabuncu 2018), :math:`\dfrac{1 - p_{y}^{\,q}}{q}` with
    :math:`p_y` the predicted probability of the true class (integer labels).

    A noise-robust loss between cross-entropy (:math:`q \to 0`: :math:`-\log p_y`) and MAE
    (:math:`q = 1`: :math:`1 - p_y`). Keras 3 numerics (no clipping: :math:`p_y = 0` costs
    :math:`1/q`), except that :math:`p_y` below the smallest normal float32 (1.2e-38) is raised
    to it for the gradient :math:`-p_y^{q-1}`, which is then finite (Keras': :math:`-\infty` at
    :math:`p_y = 0`, a NaN once multiplied by a zero softmax derivative). ``q`` in ``(0, 1)``
    (the Keras class's default 0.5; Keras' function has no default). Unlike Keras, labels out
    of range are an error (eagerly) and float labels are refused. Optax and PyTorch have no
    such loss.

    Args:
        y_true: integer class ids ``[N]`` (or ``[N, 1]``).
        y_pred: probabilities ``[N, ..., K]``.
        q: :math:`q \in (0, 1)`.
        axis: class axis.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> categorical_generalized_cross_entropy(
        ...     y_true=jnp.array([1]), y_pred=jnp.array([[0.75, 0.25]]), q=0.5)
        Array([1.], dtype=float32)

    References:
        Zhang & Sabuncu, `Generalized Cross Entropy Loss for Training Deep Neural Networks with
        Noisy Labels <https://arxiv.org/abs/1805.07836>`_, NeurIPS 2018
    """
    name = "categorical_generalized_cross_entropy"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    labels = _sparse_labels(y_true, y_pred, axis, name)
    num_classes = y_pred.shape[axis]
    _check_label_range(labels, num_classes, name)
    if _concrete(q) and not 0.0 < float(q) < 1.0:
        raise ValueError(f"{name}: q must be in (0, 1), got {q!r}")
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=y_pred.dtype, axis=axis)
    p = jnp.sum(y_pred * one_hot, axis=axis)
    # Below the smallest normal float (XLA:CPU flushes subnormals to 0) p is raised to it in the
    # value only: p^q changes by < 1e-26 and the gradient -p^(q-1) stays finite (-inf at p = 0).
    tiny = jnp.finfo(p.dtype).tiny
    p = p + jax.lax.stop_gradient(jnp.maximum(p, tiny) - p)
    qq = jnp.asarray(q, y_pred.dtype)
    return (1.0 - jnp.power(p, qq)) / qq


def multiclass_hinge(
    *, y_true: ArrayLike, y_pred: ArrayLike, margin: float = 1.0, axis: int = -1
) -> Array:
    r"""Crammer–Singer multiclass hinge loss,
    :math:`L_i = \max\big(0,\ \max_{j \ne y_i} (f_j - f_{y_i} + \Delta)\big)
    = \max_j (f_j + \Delta[j \ne y_i]) - f_{y_i}`, with integer labels.

    Only the *worst* wrong class counts, where the slide's `multiclass_svm` (Weston–Watkins)
    sums the violations of every wrong class; the two agree when at most one class violates the
    margin. With :math:`\Delta = 1` this is `optax.losses.multiclass_hinge_loss(scores, labels)`
    (which has no margin option). Keras' `categorical_hinge` is the one-hot analogue but takes
    its max over :math:`(1 - y)\hat y` *including the true class as 0*, so it differs when every
    wrong score is negative. The gradient is finite for any finite scores (the value overflows
    only where :math:`f_j - f_{y_i}` does).

    Args:
        y_true: integer class ids ``[N]`` (or ``[N, 1]``).
        y_pred: scores ``[N, K]`` (or ``[N, ..., K]``).
        margin: :math:`\Delta \ge 0`.
        axis: class axis.

    Returns:
        ``y_pred.shape`` without ``axis``: ``[N]`` for ``[N, K]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> scores = jnp.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
        >>> np.asarray(multiclass_hinge(y_true=jnp.array([0, 1, 2]), y_pred=scores)).round(2)
        array([2.9, 0. , 6.6], dtype=float32)

    References:
        Crammer & Singer, `On the Algorithmic Implementation of Multiclass Kernel-based
        Vector Machines <https://jmlr.org/papers/v2/crammer01a.html>`_, JMLR 2001
    """
    name = "multiclass_hinge"
    y_pred = _as_pred(y_pred, name)
    axis = _class_axis(y_pred, axis, name)
    _check_option(margin, "margin", name, low=0)
    labels = _sparse_labels(y_true, y_pred, axis, name)
    num_classes = y_pred.shape[axis]
    _check_label_range(labels, num_classes, name)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=y_pred.dtype, axis=axis)
    true_score = jnp.sum(one_hot * y_pred, axis=axis, keepdims=True)
    gaps = jnp.where(one_hot > 0, 0.0, y_pred - true_score + jnp.asarray(margin, y_pred.dtype))
    return jnp.max(gaps, axis=axis)


def smooth_l1(*, y_true: ArrayLike, y_pred: ArrayLike, beta: float = 1.0, axis: int = -1) -> Array:
    r"""Smooth L1 loss (Fast R-CNN's box regression loss), averaged over ``axis``: with
    :math:`e = \hat y - y`, :math:`\tfrac{1}{2\beta} e^2` for :math:`|e| < \beta`, else
    :math:`|e| - \tfrac12\beta`.

    It is the Huber loss divided by its threshold: ``smooth_l1(beta=b) == huber(delta=b) / b``,
    so the two coincide at :math:`\beta = \delta = 1` (Fast R-CNN's setting); the linear part
    has slope 1 whatever :math:`\beta`, where Huber's has slope :math:`\delta`.
    :math:`\beta = 0` is the plain L1 loss (`mean_absolute_error`). Same as PyTorch's
    ``SmoothL1Loss(beta=...)`` (elementwise, before its reduction) and torchvision's box
    regression; Keras has none (use `huber`), Optax has ``huber_loss`` only. Value and gradient
    are computed without a ``where`` (finite gradient :math:`\mathrm{clip}(e/\beta, -1, 1)` for
    any finite input).

    Args:
        y_true: targets, shape of ``y_pred``.
        y_pred: predictions (e.g. box offsets ``[N, 4]``), ``[N]`` or ``[N, ..., D]``.
        beta: :math:`\beta \ge 0`, where quadratic turns linear.
        axis: the axis averaged over.

    Returns:
        Per-example values, ``[N]`` for ``[N]`` or ``[N, D]`` inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> smooth_l1(y_true=jnp.array([[0.0, 0.0]]), y_pred=jnp.array([[0.5, 3.0]]))
        Array([1.3125], dtype=float32)
        >>> smooth_l1(y_true=jnp.array([[0.0, 0.0]]), y_pred=jnp.array([[0.5, 3.0]]), beta=0.5)
        Array([1.5], dtype=float32)

    References:
        Girshick, `Fast R-CNN <https://arxiv.org/abs/1504.08083>`_, ICCV 2015
    """
    name = "smooth_l1"
    y_pred = _as_pred(y_pred, name)
    y_true = _as_true(y_true, y_pred, name)
    _check_option(beta, "beta", name, low=0)
    b = jnp.asarray(beta, y_pred.dtype)
    err = jnp.abs(y_pred - y_true)
    q = jnp.minimum(err, b)
    quadratic = jnp.where(b > 0, 0.5 * jnp.square(q) / jnp.where(b > 0, b, 1.0), 0.0)
    return _mean_last(quadratic + (err - q), axis, name)


# ---------------------------------------------------------------------------------------------
# Keras' compile-level rank alignment (explicit, opt-in).


def align_ranks(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    """Keras' rank alignment for ``compile(loss=...)``: ``(N,)`` against ``(N, 1)`` made explicit.

    The loss *functions* here (and in Keras) refuse ``y_true`` of shape ``(N,)`` against
    ``y_pred`` of shape ``(N, 1)``. Keras' ``Loss`` objects, which ``compile`` uses, first call
    ``squeeze_or_expand_to_same_rank``: when the ranks differ by exactly one and the longer one
    ends in a 1, a rank-1 array gets a trailing axis (``(N,)`` -> ``(N, 1)``), otherwise the
    trailing 1 is squeezed. This function is that step, for a trainer that mimics ``compile``
    and calls it once on purpose; anything else is returned unchanged (so sparse labels ``(N,)``
    against ``(N, K)`` stay as they are).

    Args:
        y_true: labels or targets.
        y_pred: predictions.

    Returns:
        ``(y_true, y_pred)`` as JAX arrays, with aligned ranks where Keras aligns them.

    Examples:
        >>> import jax.numpy as jnp
        >>> y, p = align_ranks(jnp.array([0.0, 1.0]), jnp.array([[0.2], [0.9]]))
        >>> y.shape, p.shape
        ((2, 1), (2, 1))
    """
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)

    def fit(longer: Array, shorter: Array) -> tuple[Array, Array]:
        if longer.ndim == shorter.ndim + 1 and longer.shape[-1] == 1:
            if shorter.ndim == 1:
                return longer, shorter[:, None]
            return jnp.squeeze(longer, -1), shorter
        return longer, shorter

    if y_true.ndim > y_pred.ndim:
        y_true, y_pred = fit(y_true, y_pred)
    elif y_pred.ndim > y_true.ndim:
        y_pred, y_true = fit(y_pred, y_true)
    return y_true, y_pred


# ---------------------------------------------------------------------------------------------
# Reduction.

REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", "mean_with_sample_weight")
"""Accepted ``reduction`` values (``None`` means ``"none"``; ``"weighted_mean"`` is an alias of
``"mean_with_sample_weight"``)."""


def _broadcast_weight(weight: Array, values: Array, what: str) -> Array:
    """Scalar, ``values.shape``, a leading prefix of it, or ``values.shape + (1,)``."""
    if weight.shape == values.shape + (1,):
        weight = jnp.squeeze(weight, -1)
    if weight.ndim == 0 or weight.shape == values.shape:
        return weight
    if values.shape[: weight.ndim] == weight.shape:
        return weight.reshape(weight.shape + (1,) * (values.ndim - weight.ndim))
    raise ValueError(
        f"reduce: {what} of shape {weight.shape} does not fit values of shape {values.shape}; "
        f"expected (), {values.shape} or a leading part of it such as {values.shape[:1]}"
    )


def reduce(
    values: ArrayLike,
    sample_weight: ArrayLike | None = None,
    reduction: str | None = "sum_over_batch_size",
    *,
    mask: ArrayLike | None = None,
) -> Array:
    r"""Reduce per-example losses to the training loss, the slide's
    :math:`L = \tfrac{1}{N}\sum_i L_i`, with Keras 3's reductions.

    With weights :math:`w_i` = ``sample_weight`` (1 when omitted) and :math:`N` the number of
    *elements* of ``values`` (the batch size for ``[N]`` values):

    * ``"sum_over_batch_size"`` (Keras' default; alias ``"mean"``):
      :math:`\tfrac{1}{N}\sum_i w_i L_i`. The divisor is the element count, **not** the sum of
      the weights, so a weight of 0 still counts in :math:`N` (Keras 3 ``reduce_values``).
    * ``"sum"``: :math:`\sum_i w_i L_i`.
    * ``"mean_with_sample_weight"`` (alias ``"weighted_mean"``): the weighted mean
      :math:`\sum_i w_i L_i / \sum_i w_i` (0 when the weights sum to 0).
    * ``"none"`` / ``None``: the weighted values :math:`w_i L_i`, unreduced.

    ``mask`` (booleans, e.g. ``y_true != ignore_class``) follows Keras' masked losses: masked-out
    entries are dropped and ``sum_over_batch_size`` divides by the number of *valid* entries
    (for ``"sum"``, ``"none"`` and the weighted mean it acts as a 0/1 weight). Optax leaves the
    reduction to the caller (typically ``jnp.mean``, the unweighted case); PyTorch's
    ``reduction="mean"`` with a class ``weight`` divides by the sum of weights (the weighted
    mean here).

    Args:
        values: per-example losses ``[N]`` (or ``[N, ...]``), floating.
        sample_weight: ``()``, ``[N]``, ``[N, 1]`` or ``values.shape``.
        reduction: one of `REDUCTIONS`.
        mask: booleans shaped like ``values`` or a leading part of it.

    Returns:
        A scalar (or ``values.shape`` for ``"none"``).

    Raises:
        ValueError: ``values`` is empty (any reduction but ``"none"``), a weight or mask does
            not fit, or the reduction is unknown.

    Examples:
        >>> import jax.numpy as jnp
        >>> values = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> reduce(values)
        Array(2.5, dtype=float32)
        >>> reduce(values, sample_weight=jnp.array([1.0, 1.0, 0.0, 0.0]))  # divides by 4
        Array(0.75, dtype=float32)
        >>> reduce(values, jnp.array([1.0, 1.0, 0.0, 0.0]), "mean_with_sample_weight")
        Array(1.5, dtype=float32)

    References:
        Keras 3, ``keras.losses.Loss`` (``reduction``) and ``reduce_weighted_values`` in
        ``keras/src/losses/loss.py``
    """
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        raise TypeError(f"reduce: values must be floating, got dtype {values.dtype}")
    key = "none" if reduction is None else reduction
    if not isinstance(key, str):
        raise TypeError(f"reduce: reduction must be a string or None, got {reduction!r}")
    key = {"weighted_mean": "mean_with_sample_weight"}.get(key.lower(), key.lower())
    if key not in REDUCTIONS:
        raise unknown_name_error("reduction", reduction, REDUCTIONS + ("weighted_mean",))
    if values.size == 0 and key != "none" and values.ndim > 0:
        raise ValueError(
            f"reduce: values is empty (shape {values.shape}), so reduction={key!r} has nothing "
            "to reduce (a mean would be 0/0); check that the batch is not empty, or use "
            "reduction='none'"
        )
    weight = None
    if sample_weight is not None:
        weight = _broadcast_weight(
            jnp.asarray(sample_weight).astype(values.dtype), values, "sample_weight"
        )
    if mask is not None:
        m = _broadcast_weight(jnp.asarray(mask).astype(bool), values, "mask")
        m = jnp.broadcast_to(m, values.shape)
        if key in ("sum_over_batch_size", "mean"):
            total = values.size
            valid = jnp.sum(m.astype(values.dtype))
            m_weight = jnp.where(m, total / jnp.where(valid > 0, valid, 1.0), 0.0)
            m_weight = jnp.where(valid > 0, m_weight, 0.0).astype(values.dtype)
        else:
            m_weight = m.astype(values.dtype)
        weight = m_weight if weight is None else weight * m_weight
    weighted = values if weight is None else values * weight
    if key == "none" or values.ndim == 0:
        return weighted
    total = jnp.sum(weighted)
    if key == "sum":
        return total
    if key == "mean_with_sample_weight" and weight is not None:
        w_sum = jnp.sum(jnp.broadcast_to(weight, values.shape))
        return jnp.where(w_sum != 0, total / jnp.where(w_sum != 0, w_sum, 1.0), 0.0)
    return total / values.size


# ---------------------------------------------------------------------------------------------
# The slide's "last-layer activation & loss" table.


class LastLayer(NamedTuple):
    """One row of the slide's last-layer table (``activation`` ``None`` means linear)."""

    activation: str | None
    loss: str
    task: str
    alternatives: tuple[str, ...] = ()
    description: str = ""


LAST_LAYER_TABLE: dict[str, LastLayer] = {
    "binary": LastLayer(
        "sigmoid",
        "binary_crossentropy",
        "binary",
        (),
        "Binary classification: one sigmoid unit, labels 0/1.",
    ),
    "multiclass": LastLayer(
        "softmax",
        "categorical_crossentropy",
        "multiclass",
        ("sparse_categorical_crossentropy",),
        "Multiclass, single-label: K softmax units; one-hot labels "
        "(sparse_categorical_crossentropy for integer labels).",
    ),
    "multilabel": LastLayer(
        "sigmoid",
        "binary_crossentropy",
        "multilabel",
        (),
        "Multiclass, multi-label: K independent sigmoid units, multi-hot labels.",
    ),
    "regression": LastLayer(
        None,
        "mean_squared_error",
        "regression",
        (),
        "Regression to arbitrary values: linear output (no activation).",
    ),
    "regression_0_1": LastLayer(
        "sigmoid",
        "mean_squared_error",
        "regression_0_1",
        ("binary_crossentropy",),
        "Regression to values between 0 and 1: sigmoid output, MSE or binary cross-entropy.",
    ),
}
"""The slide's table, keyed by task: last-layer activation, loss, alternative losses."""

TASKS = tuple(LAST_LAYER_TABLE)

_TASK_ALIASES = {
    "multiclass_single_label": "multiclass",
    "multi_class": "multiclass",
    "multiclass_multilabel": "multilabel",
    "multi_label": "multilabel",
    "regression_to_0_1": "regression_0_1",
    "regression_01": "regression_0_1",
}


def for_task(task: str) -> LastLayer:
    """The slide's "last-layer activation & loss" table: what to put at the end of a model.

    =============================== ================ =======================================
    task                            last activation  loss
    =============================== ================ =======================================
    ``"binary"``                    sigmoid          binary_crossentropy
    ``"multiclass"`` (single-label) softmax          categorical_crossentropy
    ``"multilabel"``                sigmoid          binary_crossentropy
    ``"regression"`` (any values)   None (linear)    mse
    ``"regression_0_1"``            sigmoid          mse or binary_crossentropy
    =============================== ================ =======================================

    With logits outputs (no last activation), use the same loss with ``from_logits=True``: it is
    more stable (log-sum-exp) and what Optax and PyTorch expect.

    Args:
        task: a key of `LAST_LAYER_TABLE` (aliases such as ``"multiclass_single_label"`` and
            ``"multi_label"`` are accepted; case- and hyphen-insensitive).

    Returns:
        A `LastLayer` ``(activation, loss, task, alternatives, description)``; the first two
        unpack as ``activation, loss, *_ = for_task(...)``.

    Examples:
        >>> for_task("binary")[:2]
        ('sigmoid', 'binary_crossentropy')
        >>> for_task("regression").activation is None
        True
    """
    if not isinstance(task, str):
        raise TypeError(f"for_task: task must be a string, got {task!r}")
    key = task.lower().replace("-", "_").replace(" ", "_")
    key = _TASK_ALIASES.get(key, key)
    if key not in LAST_LAYER_TABLE:
        raise unknown_name_error("task", task, TASKS + tuple(_TASK_ALIASES))
    return LAST_LAYER_TABLE[key]


# ---------------------------------------------------------------------------------------------
# Identifiers.

_LOSSES: dict[str, Callable] = {
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "poisson": poisson,
    "kl_divergence": kl_divergence,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "cosine_similarity": cosine_similarity,
    "huber": huber,
    "log_cosh": log_cosh,
    "hinge": hinge,
    "squared_hinge": squared_hinge,
    "categorical_hinge": categorical_hinge,
    "multiclass_svm": multiclass_svm,
    "binary_focal_crossentropy": binary_focal_crossentropy,
    "categorical_focal_crossentropy": categorical_focal_crossentropy,
    "categorical_generalized_cross_entropy": categorical_generalized_cross_entropy,
    "dice": dice,
    "tversky": tversky,
    "circle": circle,
    "ctc": ctc,
    "multiclass_hinge": multiclass_hinge,
    "smooth_l1": smooth_l1,
    # Box losses live with the boxes (`fnn.boxes`: formats, IoU, NMS); registered here so that
    # compile(loss={"box": "giou_loss"}) works. A bare "iou" is not a loss name: in Keras (and
    # fnn.metrics) "iou" is the segmentation metric IoU / MeanIoU.
    "iou_loss": _boxes.iou_loss,
    "giou_loss": _boxes.giou_loss,
}

# Keras' short aliases (keras.losses.ALL_OBJECTS_DICT and keras._legacy.losses), Keras class
# names (lower-cased: lookup is case-insensitive) and the slide's names.
_ALIASES = {
    "bce": "binary_crossentropy",
    "kld": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "logcosh": "log_cosh",
    "huber_loss": "huber",
    "binarycrossentropy": "binary_crossentropy",
    "categoricalcrossentropy": "categorical_crossentropy",
    "sparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
    "kldivergence": "kl_divergence",
    "meansquarederror": "mean_squared_error",
    "meanabsoluteerror": "mean_absolute_error",
    "meanabsolutepercentageerror": "mean_absolute_percentage_error",
    "meansquaredlogarithmicerror": "mean_squared_logarithmic_error",
    "cosinesimilarity": "cosine_similarity",
    "squaredhinge": "squared_hinge",
    "categoricalhinge": "categorical_hinge",
    "multiclass_svm_loss": "multiclass_svm",
    "svm": "multiclass_svm",
    "binaryfocalcrossentropy": "binary_focal_crossentropy",
    "categoricalfocalcrossentropy": "categorical_focal_crossentropy",
    "categoricalgeneralizedcrossentropy": "categorical_generalized_cross_entropy",
    "multiclass_hinge_loss": "multiclass_hinge",
    "crammer_singer": "multiclass_hinge",
    "smooth_l1_loss": "smooth_l1",
    "smoothl1loss": "smooth_l1",
    "iouloss": "iou_loss",  # keras_cv.losses.IoULoss (its default mode is "log", not this)
    "giou": "giou_loss",
    "giouloss": "giou_loss",  # keras_cv.losses.GIoULoss
    "generalized_box_iou_loss": "giou_loss",  # torchvision.ops.generalized_box_iou_loss
}
# "Did you mean" suggestions and the "Known" list use the function names and Keras' short aliases.
_SUGGESTED = tuple(_LOSSES) + (
    "bce", "kld", "kullback_leibler_divergence", "mse", "mae", "mape", "msle", "logcosh",
    "huber_loss", "svm", "multiclass_hinge_loss", "smooth_l1_loss", "giou",
    "generalized_box_iou_loss",
)  # fmt: skip
_LOSSES.update({alias: _LOSSES[target] for alias, target in _ALIASES.items()})


def get(name_or_callable: str | Callable, **options) -> Callable:
    """Look up a loss by its Keras identifier (``compile(loss="sparse_categorical_crossentropy")``).

    Accepts every identifier of Keras 3's ``keras.losses.get``: the function names
    (``"binary_focal_crossentropy"``, ``"dice"``, ``"tversky"``, ``"circle"``, ``"ctc"``,
    ``"categorical_generalized_cross_entropy"``, ...), the aliases (``mse``, ``mae``, ``mape``,
    ``msle``, ``kld``, ``bce``; legacy ``kullback_leibler_divergence``, ``logcosh``) and the
    class names (``"MeanSquaredError"``, ``"CTC"``, ``"BinaryFocalCrossentropy"``, ...;
    case-insensitive, so an option such as ``from_logits`` goes in ``**options``). Also fnn's own:
    ``multiclass_svm`` (alias ``svm``), ``multiclass_hinge`` (aliases
    ``multiclass_hinge_loss``, ``crammer_singer``), ``smooth_l1`` (``smooth_l1_loss``), and the
    box losses of `fnn.boxes` on ``xyxy`` boxes ``[N, ..., 4]``: ``iou_loss`` (``1 - IoU``;
    alias ``IoULoss``) and ``giou_loss`` (``1 - GIoU``; aliases ``giou``, ``GIoULoss``,
    ``generalized_box_iou_loss``). Keras 3 itself has no box loss; keras_cv's ``IoULoss`` /
    ``GIoULoss`` classes take a ``bounding_box_format`` and ``IoULoss`` defaults to
    ``mode="log"`` (``-ln IoU``), where fnn's ``iou_loss`` is its ``mode="linear"``;
    torchvision's ``generalized_box_iou_loss`` is ``giou_loss`` with ``reduction="none"``.
    A bare ``"iou"`` is not a loss: it names the segmentation metric (`fnn.metrics`).
    A callable passes through unchanged.

    Args:
        name_or_callable: identifier or callable ``fn(*, y_true, y_pred, **options)``.
        **options: bound to the loss with `functools.partial`, e.g. ``from_logits=True``.

    Returns:
        ``fn(*, y_true, y_pred, **options) -> per-example values``.

    Raises:
        ValueError: unknown name, with a "did you mean" suggestion.
        TypeError: neither a string nor a callable.

    Examples:
        >>> get("mse") is mean_squared_error
        True
        >>> import jax.numpy as jnp
        >>> box, shifted = jnp.array([[0.0, 0, 2, 2]]), jnp.array([[1.0, 0, 3, 2]])
        >>> get("GIoULoss")(y_true=box, y_pred=shifted).round(4)
        Array([0.6667], dtype=float32)
        >>> get("categorical_crossentropy", from_logits=True)(
        ...     y_true=jnp.array([[1.0, 0.0]]), y_pred=jnp.array([[0.0, 0.0]])).round(4)
        Array([0.6931], dtype=float32)
    """
    if callable(name_or_callable):
        fn = name_or_callable
    elif isinstance(name_or_callable, str) and name_or_callable.lower() not in _LOSSES:
        # Suggest among the function names and short aliases, not the lower-cased class names.
        raise unknown_name_error("loss", name_or_callable, _SUGGESTED)
    else:
        fn = lookup("loss", name_or_callable, _LOSSES)
    return functools.partial(fn, **options) if options else fn
