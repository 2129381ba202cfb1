"""Loss functions from the lecture (multiclass SVM, cross-entropy, L2/MSE, L1/MAE and the
``tf.keras.losses`` list) with Keras 3 semantics and numerics, plus the reduction
:math:`L = \\tfrac{1}{N}\\sum_i L_i` and the slide's "last-layer activation & loss" table.

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
  (``keras.backend.epsilon()``); ``from_logits=True`` paths use log-sum-exp
  (`jax.nn.log_softmax` / `jax.nn.log_sigmoid`), so logits of ±1e4 give finite values and
  gradients.

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

from fnn._validation import lookup, unknown_name_error

__all__ = [
    "EPSILON",
    "LAST_LAYER_TABLE",
    "REDUCTIONS",
    "TASKS",
    "LastLayer",
    "align_ranks",
    "binary_crossentropy",
    "categorical_crossentropy",
    "categorical_hinge",
    "cosine_similarity",
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
    "multiclass_svm",
    "poisson",
    "reduce",
    "sparse_categorical_crossentropy",
    "squared_hinge",
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


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _renormalise(p: Array, axis: int) -> Array:
    """``p / Σ_axis p``, as Keras renormalises probabilities, with two safeguards.

    An all-zero row is divided by 1 (Keras: 0/0 = NaN), so every class lands on the 1e-7 clip.
    The derivative is written as ``(dp - q Σ dp) / s``: autodiff of ``p / s`` goes through
    ``1/s²``, which overflows (NaN gradient) once a row sums to less than ~1e-19.
    """
    total = jnp.sum(p, axis=axis, keepdims=True)
    return p / jnp.where(total > 0, total, 1.0)


@_renormalise.defjvp
def _renormalise_jvp(axis, primals, tangents):
    (p,), (dp,) = primals, tangents
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
      Keras' is NaN);
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

    Labels outside ``[0, K)`` raise a ``ValueError`` when called eagerly; under ``jit`` they cannot
    be checked and give 0 (as Keras' JAX backend does, through ``one_hot``).
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
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=y_pred.dtype, axis=axis)
    loss = _cross_entropy(one_hot, y_pred, axis, from_logits)
    if valid is not None:
        loss = jnp.where(valid, loss, 0.0)
    return loss


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

    Quadratic (MSE-like) near zero, linear (MAE-like) for large errors. Same as Keras 3 and
    `optax.losses.huber_loss` (elementwise) and PyTorch's ``HuberLoss``; PyTorch's
    ``SmoothL1Loss`` is this divided by :math:`\delta`.

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
    if key == "none" or values.ndim == 0 or values.size == 0:
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
}
# "Did you mean" suggestions and the "Known" list use the function names and Keras' short aliases.
_SUGGESTED = tuple(_LOSSES) + (
    "bce", "kld", "kullback_leibler_divergence", "mse", "mae", "mape", "msle", "logcosh",
    "huber_loss", "svm",
)  # fmt: skip
_LOSSES.update({alias: _LOSSES[target] for alias, target in _ALIASES.items()})


def get(name_or_callable: str | Callable, **options) -> Callable:
    """Look up a loss by its Keras identifier (``compile(loss="sparse_categorical_crossentropy")``).

    Accepts the function names of this module, Keras' aliases (``mse``, ``mae``, ``mape``,
    ``msle``, ``kld``, ``kullback_leibler_divergence``, ``bce``, ``logcosh``), Keras class names
    (``"MeanSquaredError"``, ``"CategoricalCrossentropy"``, ...; case-insensitive) and
    ``multiclass_svm`` (alias ``svm``). A callable passes through unchanged.

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
