"""Metrics for `fnn.train`: per-example values, and epoch metrics accumulated as sums.

Two kinds of metric, one protocol.

**Means of per-example values.** A pure function ``metric(*, y_true, y_pred) -> [N]`` returns
one value per example, exactly like the losses in `fnn.losses`; the epoch value is their mean,
kept as a `Mean` ``(total, count)``. Keras' "accuracy" is ::

    accuracy = 1/N Σᵢ 1[argmax_k ŷᵢₖ = yᵢ]

with ``y_true`` the labels ``yᵢ`` (integer class ids ``[N]`` or one-hot ``[N, K]``) and ``y_pred``
the model outputs ``ŷ`` (``[N, K]`` probabilities or logits; argmax is the same for both).

**Epoch metrics that are not such means** (precision, recall, F1, AUC, IoU, Dice, a confusion
matrix): a ratio of counts. Their epoch value is the ratio of the epoch's summed counts,
``Σ_batches TP / Σ_batches (TP + FP)``, not the mean of per-batch ratios (a different number
whenever batches differ; Keras' ``update_state``/``result`` semantics). Each is an `EpochMetric`:
an immutable pytree whose leaves are the counts and whose options (thresholds, number of
classes, ...) are static, with CLU's ``clu.metrics`` pattern:

* ``m.empty()``: zero counts, same options (the neutral element of ``merge``);
* ``m.from_batch(y_true, y_pred, sample_weight=None)``: the counts of one batch;
* ``a.merge(b)``: elementwise sums of the counts, so it is associative and commutative, and a
  data-parallel step merges across devices by summing (``psum``) like any other array;
* ``m.compute()``: the metric from the counts, divided once.

``AUC(curve="PR")``, ``Precision(thresholds=0.3)``, ``MeanIoU(num_classes=5)`` are what a Keras
user writes in ``compile(metrics=[...])``; `get` maps Keras' names (``"precision"``, ``"auc"``,
``"f1_score"``, ``"mean_io_u"``, ...) to default instances. `Mean` follows the same protocol
(``empty``/``merge``/``compute``, with ``from_values`` as its batch constructor), and
`MeanMetric` wraps a per-example function as an `EpochMetric`, so a training loop can treat
every metric alike (see `resolve`).

Counts are float32 sums, as in Keras: exact up to 2²⁴ ≈ 16.7 M weighted entries per count (a
segmentation epoch of 4,000 64×64 maps is 16.4 M pixels); beyond that the counts round.

Labels of the wrong kind (one-hot labels given to a sparse metric, class ids of the wrong shape,
probabilities where class ids are expected) raise a ``ValueError`` naming the metric and the
expected and actual shapes and dtypes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnn._validation import lookup

__all__ = [
    "Mean",
    "EpochMetric",
    "MeanMetric",
    "Precision",
    "Recall",
    "TruePositives",
    "FalsePositives",
    "TrueNegatives",
    "FalseNegatives",
    "AUC",
    "F1Score",
    "FBetaScore",
    "ConfusionMatrix",
    "MeanIoU",
    "IoU",
    "Dice",
    "direction",
    "sparse_categorical_accuracy",
    "categorical_accuracy",
    "binary_accuracy",
    "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "mean_squared_error",
    "mean_absolute_error",
    "get",
    "resolve",
    "resolve_accuracy",
]

# keras.backend.epsilon(): Keras adds it to the denominators of F1, IoU (and we of Dice).
_EPSILON = 1e-7


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


# --------------------------------------------------------------------------------------------
# Label checks (shared)
# --------------------------------------------------------------------------------------------


def _desc(x) -> str:
    return f"shape {tuple(np.shape(x))} {jnp.asarray(x).dtype}"


def _label_error(metric: str, expected: str, y_true, y_pred, hint: str = "") -> ValueError:
    return ValueError(
        f"{metric}: expected {expected}; got y_true {_desc(y_true)} and y_pred "
        f"{_desc(y_pred)}.{' ' + hint if hint else ''}"
    )


def _sparse_labels(metric: str, y_true, y_pred, *, one_hot_alternative: str):
    """Class ids ``y_pred.shape[:-1]`` (a trailing 1 is dropped) for scores ``[..., K]``."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    expected = "integer class ids of shape y_pred.shape[:-1] (or with a trailing 1) and scores"
    if y_pred.ndim < 2:
        raise _label_error(metric, f"{expected} with a class axis, y_pred (N, K)", y_true, y_pred)
    lead = y_pred.shape[:-1]
    if y_true.shape == lead + (1,) and y_pred.shape[-1] != 1:
        y_true = y_true[..., 0]
    if y_true.shape != lead:
        hint = ""
        if y_true.shape == y_pred.shape:
            hint = f"One-hot labels? Use {one_hot_alternative!r}."
        raise _label_error(metric, f"{expected} (..., K)", y_true, y_pred, hint)
    if not (
        jnp.issubdtype(y_true.dtype, jnp.integer) or jnp.issubdtype(y_true.dtype, jnp.floating)
    ):
        raise _label_error(metric, "integer (or float) class ids", y_true, y_pred)
    return y_true.astype(jnp.int32), y_pred


def _one_hot_labels(metric: str, y_true, y_pred, *, sparse_alternative: str):
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if y_pred.ndim < 2 or y_true.shape != y_pred.shape:
        hint = ""
        if y_pred.ndim >= 2 and y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,)):
            hint = f"Integer class ids? Use {sparse_alternative!r}."
        raise _label_error(
            metric,
            "one-hot labels with y_pred's shape (N, K), K the class axis",
            y_true,
            y_pred,
            hint,
        )
    return y_true, y_pred


def _per_example(values):
    """``[N]`` from per-entry values ``[N, ...]`` (the mean over each example's entries)."""
    return values if values.ndim == 1 else jnp.mean(values.reshape(values.shape[0], -1), axis=-1)


def _check_k(metric: str, k) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{metric}: k must be a positive int, got {k!r}")
    return int(k)


# --------------------------------------------------------------------------------------------
# Per-example metrics (averaged with `Mean`)
# --------------------------------------------------------------------------------------------


def sparse_categorical_accuracy(*, y_true, y_pred):
    """``1[argmax_k ŷᵢₖ = yᵢ]`` per example, with integer labels.

    For maps (segmentation: labels ``[N, H, W]``, scores ``[N, H, W, K]``) the value of an example
    is its pixel accuracy, the mean over its pixels.
    Labels outside ``[0, K)`` match no argmax and count as wrong (0), eagerly and under ``jit``
    alike (`fnn.trainer.Trainer.fit` / ``evaluate`` reject them on the host first).

    Args:
      y_true: integer class ids ``[N]`` (or ``[N, 1]``, as Keras accepts).
      y_pred: scores ``[N, K]`` (probabilities or logits).

    Returns:
      float32 ``[N]`` of 0/1.

    Raises:
      ValueError: labels that are not class ids of shape ``y_pred.shape[:-1]`` (e.g. one-hot).

    Examples:
      >>> import jax.numpy as jnp
      >>> sparse_categorical_accuracy(y_true=jnp.array([1, 0]), y_pred=jnp.array([[0.2, 0.8], [0.3, 0.7]]))
      Array([1., 0.], dtype=float32)
    """
    y_true, y_pred = _sparse_labels(
        "sparse_categorical_accuracy", y_true, y_pred, one_hot_alternative="categorical_accuracy"
    )
    return _per_example((jnp.argmax(y_pred, axis=-1) == y_true).astype(jnp.float32))


def categorical_accuracy(*, y_true, y_pred):
    """``1[argmax ŷᵢ = argmax yᵢ]`` per example, with one-hot (or soft) labels ``[N, K]``.

    Raises:
      ValueError: labels whose shape is not ``y_pred``'s (e.g. integer class ids).

    Examples:
      >>> import jax.numpy as jnp
      >>> categorical_accuracy(y_true=jnp.array([[0.0, 1.0]]), y_pred=jnp.array([[0.4, 0.6]]))
      Array([1.], dtype=float32)
    """
    y_true, y_pred = _one_hot_labels(
        "categorical_accuracy", y_true, y_pred, sparse_alternative="sparse_categorical_accuracy"
    )
    hit = jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)
    return _per_example(hit.astype(jnp.float32))


def binary_accuracy(*, y_true, y_pred, threshold: float = 0.5):
    """``mean_j 1[(ŷᵢⱼ > t) = yᵢⱼ]`` per example (Keras' rule; the mean runs over the last axis).

    ``threshold`` t is 0.5 for probabilities; for logits use ``threshold=0.0`` (Keras keeps 0.5
    whatever the loss's ``from_logits``, which is wrong for logits).

    Args:
      y_true: 0/1 labels ``[N]`` or ``[N, L]``.
      y_pred: probabilities (or logits with ``threshold=0``), same shape as ``y_true`` (a
        trailing axis of 1 on either side is dropped, as Keras does).

    Returns:
      float32 ``[N]``.

    Raises:
      ValueError: shapes that differ other than by a trailing 1 (e.g. class ids against ``K``
        scores: that is `sparse_categorical_accuracy`).

    Examples:
      >>> import jax.numpy as jnp
      >>> binary_accuracy(y_true=jnp.array([1.0, 0.0]), y_pred=jnp.array([0.9, 0.7]))
      Array([1., 0.], dtype=float32)
    """
    y_true, y_pred = _same_shape("binary_accuracy", y_true, y_pred)
    hit = ((y_pred > threshold).astype(jnp.float32) == y_true.astype(jnp.float32)).astype(
        jnp.float32
    )
    return _per_example(hit)


def _same_shape(metric: str, y_true, y_pred):
    """Keras' ``squeeze_or_expand_to_same_rank``: drop a trailing 1, then require equal shapes."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape or y_pred.ndim == 0:
        hint = ""
        if y_pred.ndim >= 2 and y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,)):
            hint = "Integer class ids against K scores? Use a sparse metric."
        raise _label_error(
            metric, "y_true and y_pred of the same shape (N, ...)", y_true, y_pred, hint
        )
    return y_true, y_pred


def sparse_top_k_categorical_accuracy(*, y_true, y_pred, k: int = 5):
    """``1[yᵢ among the k largest ŷᵢ]`` per example, integer labels ``[N]``, scores ``[N, K]``.

    Ties count as hits (``tf.math.in_top_k``'s rule): the label's score needs fewer than ``k``
    strictly larger scores. With ``k ≥ K`` every example is a hit, as in Keras.

    Raises:
      ValueError: one-hot labels, labels of another shape, or ``k`` not a positive int.

    Examples:
      >>> import jax.numpy as jnp
      >>> sparse_top_k_categorical_accuracy(y_true=jnp.array([0]), y_pred=jnp.array([[0.3, 0.5, 0.2]]), k=2)
      Array([1.], dtype=float32)
    """
    name = "sparse_top_k_categorical_accuracy"
    k = _check_k(name, k)
    y_true, y_pred = _sparse_labels(
        name, y_true, y_pred, one_hot_alternative="top_k_categorical_accuracy"
    )
    # Out-of-range ids are clamped by take_along_axis's default; Keras' in_top_k counts them as
    # misses, which the clip below plus the equality check reproduces.
    valid = (y_true >= 0) & (y_true < y_pred.shape[-1])
    true_score = jnp.take_along_axis(
        y_pred, jnp.clip(y_true, 0, y_pred.shape[-1] - 1)[..., None], axis=-1
    )
    rank = jnp.sum(y_pred > true_score, axis=-1)
    return _per_example(((rank < k) & valid).astype(jnp.float32))


def top_k_categorical_accuracy(*, y_true, y_pred, k: int = 5):
    """Top-k accuracy with one-hot labels ``[N, K]`` (see `sparse_top_k_categorical_accuracy`).

    Examples:
      >>> import jax.numpy as jnp
      >>> top_k_categorical_accuracy(y_true=jnp.array([[1.0, 0, 0]]), y_pred=jnp.array([[0.3, 0.5, 0.2]]), k=1)
      Array([0.], dtype=float32)
    """
    name = "top_k_categorical_accuracy"
    _check_k(name, k)
    y_true, y_pred = _one_hot_labels(
        name, y_true, y_pred, sparse_alternative="sparse_top_k_categorical_accuracy"
    )
    return sparse_top_k_categorical_accuracy(y_true=jnp.argmax(y_true, axis=-1), y_pred=y_pred, k=k)


def _regression_pair(metric: str, y_true, y_pred):
    y_true, y_pred = jnp.asarray(y_true, jnp.float32), jnp.asarray(y_pred, jnp.float32)
    if y_true.size != y_pred.size or y_pred.ndim == 0:
        raise _label_error(metric, "y_true with y_pred's shape (N, ...)", y_true, y_pred)
    return y_true.reshape(y_pred.shape), y_pred


def mean_squared_error(*, y_true, y_pred):
    """``1/D Σⱼ (yᵢⱼ - ŷᵢⱼ)²`` per example (the mean runs over all non-batch axes).

    Examples:
      >>> import jax.numpy as jnp
      >>> mean_squared_error(y_true=jnp.array([[1.0, 2.0]]), y_pred=jnp.array([[0.0, 0.0]]))
      Array([2.5], dtype=float32)
    """
    y_true, y_pred = _regression_pair("mean_squared_error", y_true, y_pred)
    return _per_example(jnp.square(y_pred - y_true))


def mean_absolute_error(*, y_true, y_pred):
    """``1/D Σⱼ |yᵢⱼ - ŷᵢⱼ|`` per example (the mean runs over all non-batch axes).

    Examples:
      >>> import jax.numpy as jnp
      >>> mean_absolute_error(y_true=jnp.array([[1.0, 2.0]]), y_pred=jnp.array([[0.0, 0.0]]))
      Array([1.5], dtype=float32)
    """
    y_true, y_pred = _regression_pair("mean_absolute_error", y_true, y_pred)
    return _per_example(jnp.abs(y_pred - y_true))


# --------------------------------------------------------------------------------------------
# Epoch metrics: pytrees of counts with empty / from_batch / merge / compute
# --------------------------------------------------------------------------------------------


class EpochMetric:
    """Base of metrics kept as sums over the epoch and divided once (CLU's pattern).

    A subclass names its count arrays in ``_arrays`` (pytree leaves) and its options in
    ``_options`` (static: part of the tree structure, so two states merge only when their
    options agree, and ``jax.jit`` retraces when options change). Instances are immutable.

    Protocol: ``empty()``, ``from_batch(y_true, y_pred, sample_weight=None)``, ``merge(other)``
    (elementwise sums: associative, commutative, ``empty()`` is neutral) and ``compute()``.
    ``sample_weight`` is ``[N]`` (one weight per example, broadcast over its entries, e.g. the
    pixels of a map) or has the labels' shape; weight 0 removes an entry (padding).

    Examples:
      >>> import jax.numpy as jnp
      >>> m = Recall()
      >>> state = m.empty()
      >>> for y, p in [([1, 1], [0.9, 0.2]), ([1, 0], [0.8, 0.7])]:
      ...     state = state.merge(m.from_batch(jnp.array(y), jnp.array(p)))
      >>> float(state.compute())  # 2 of the epoch's 3 positives found
      0.6666666865348816
    """

    _arrays: ClassVar[tuple[str, ...]] = ()
    _options: ClassVar[tuple[str, ...]] = ("name",)
    name: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(
            cls, lambda m: m._tree_flatten(), functools.partial(_tree_unflatten, cls)
        )

    def _tree_flatten(self):
        return [getattr(self, a) for a in self._arrays], self._config()

    def _config(self) -> tuple:
        return tuple(getattr(self, o) for o in self._options)

    def _set(self, **fields):
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is immutable; merge returns a new state")

    def _replace(self, **arrays) -> EpochMetric:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(arrays)
        return new

    def _zeros(self) -> dict:
        raise NotImplementedError

    def empty(self) -> EpochMetric:
        """Zero counts with these options: the neutral element of `merge`."""
        return self._replace(**self._zeros())

    def from_batch(self, y_true, y_pred, sample_weight=None) -> EpochMetric:
        """The counts of one batch (a new state with these options; ``self``'s counts unused)."""
        raise NotImplementedError

    def empty_for(self, y_true, y_pred, sample_weight=None) -> EpochMetric:
        """Zero counts shaped as a batch like this one gives (``jax.eval_shape``, no compute).

        `empty` cannot know shapes that are inferred from the outputs (``num_classes=None``);
        a compiled loop whose carry must keep one shape starts from this instead.
        """
        shapes = jax.eval_shape(self.from_batch, y_true, y_pred, sample_weight)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def merge(self, other: EpochMetric) -> EpochMetric:
        """Both parts together: elementwise sums of the counts."""
        if type(other) is not type(self) or other._config() != self._config():
            raise ValueError(
                f"{self.name}: cannot merge {other!r} into {self!r} (another metric or other options)"
            )
        return self._replace(**{a: getattr(self, a) + getattr(other, a) for a in self._arrays})

    def compute(self) -> jax.Array:
        """The metric from the accumulated counts."""
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"{self.name} is an epoch metric (counts summed over the epoch, divided once), not a "
            "per-example function: use m.from_batch(y_true, y_pred), merge and compute"
        )

    def __repr__(self) -> str:
        opts = ", ".join(f"{o}={getattr(self, o)!r}" for o in self._options)
        return f"{type(self).__name__}({opts})"


def _tree_unflatten(cls, config, arrays):
    obj = object.__new__(cls)
    obj.__dict__.update(zip(cls._options, config))
    obj.__dict__.update(zip(cls._arrays, arrays))
    return obj


class MeanMetric(EpochMetric):
    """A per-example metric ``fn(*, y_true, y_pred) -> [N]`` as an `EpochMetric` (a `Mean`).

    ``from_batch`` holds ``(Σ wᵢ vᵢ, Σ wᵢ)``; ``compute`` divides (Keras' ``MeanMetricWrapper``).

    Examples:
      >>> import jax.numpy as jnp
      >>> m = MeanMetric(binary_accuracy)
      >>> a = m.from_batch(jnp.array([1.0, 0.0]), jnp.array([0.9, 0.2]))
      >>> b = m.from_batch(jnp.array([1.0]), jnp.array([0.1]))
      >>> round(float(a.merge(b).compute()), 4), a.merge(b).name
      (0.6667, 'binary_accuracy')
    """

    _arrays = ("total", "count")
    _options = ("fn", "name")

    def __init__(self, fn: Callable, *, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"MeanMetric: fn must be callable, got {type(fn).__name__}")
        self._set(fn=fn, name=name or name_of(fn), **self._zeros())

    def _zeros(self):
        return {"total": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}

    def from_batch(self, y_true, y_pred, sample_weight=None):
        values = jnp.asarray(self.fn(y_true=y_true, y_pred=y_pred), jnp.float32)
        mean = Mean.from_values(values, _example_weights(self.name, sample_weight, values.shape))
        return self._replace(total=mean.total, count=mean.count)

    def compute(self):
        return self.total / self.count


def _example_weights(metric, sample_weight, shape):
    if sample_weight is None:
        return None
    w = jnp.asarray(sample_weight, jnp.float32)
    if w.shape != shape:
        raise ValueError(f"{metric}: sample_weight must have shape {shape}, got {w.shape}")
    return w


def _entry_weights(metric: str, sample_weight, shape) -> jax.Array:
    """Weights with ``shape``: ``[N]`` per example is broadcast over each example's entries."""
    if sample_weight is None:
        return jnp.ones(shape, jnp.float32)
    w = jnp.asarray(sample_weight, jnp.float32)
    if w.ndim <= len(shape):
        w = w.reshape(w.shape + (1,) * (len(shape) - w.ndim))
    try:
        return jnp.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"{metric}: sample_weight must be [N] (one per example) or broadcast to the labels' "
            f"shape {tuple(shape)}, got shape {tuple(jnp.shape(sample_weight))}"
        ) from None


# ---- thresholded confusion counts (Keras' confusion_metrics) ------------------------------------


def _check_thresholds(metric: str, thresholds) -> tuple[float, ...]:
    values = (thresholds,) if np.ndim(thresholds) == 0 else tuple(np.ravel(thresholds))
    if not values or not all(0.0 <= float(t) <= 1.0 for t in values):
        raise ValueError(f"{metric}: thresholds must lie in [0, 1], got {thresholds!r}")
    return tuple(float(t) for t in values)


def _binary_pair(metric: str, y_true, y_pred, sample_weight):
    """Flattened 0/1 labels, scores and weights, Keras' shape rules plus sparse labels.

    ``y_true`` with ``y_pred``'s shape (a trailing 1 on either side is dropped); class ids
    ``y_pred.shape[:-1]`` against ``K > 1`` scores are one-hot encoded (fnn; Keras asks for
    one-hot labels). Labels are binarised as Keras does (nonzero is positive).
    """
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        raise _label_error(metric, "float scores y_pred (probabilities)", y_true, y_pred)
    if (
        y_pred.ndim >= 2
        and y_pred.shape[-1] > 1
        and y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,))
    ):
        y_true = jax.nn.one_hot(y_true.reshape(y_pred.shape[:-1]), y_pred.shape[-1])
    y_true, y_pred = _same_shape(metric, y_true, y_pred)
    w = _entry_weights(metric, sample_weight, y_pred.shape)
    return (y_true != 0).astype(jnp.float32), y_pred.astype(jnp.float32), w


def _keep_top_k(y_pred, k):
    """Keras' ``_filter_top_k``: scores outside each row's top k become -1e10."""
    _, idx = jax.lax.top_k(y_pred, k)
    mask = jnp.sum(jax.nn.one_hot(idx, y_pred.shape[-1], dtype=y_pred.dtype), axis=-2)
    return y_pred * mask + -1e10 * (1 - mask)


def _counts_at(thresholds, y_true, y_pred, w):
    """``(tp, fp, tn, fn)``, each ``[T]``: ``Σ w·1[ŷ > t]·y`` and so on, per threshold t."""
    t = jnp.asarray(thresholds, jnp.float32)[:, None]
    pred = (y_pred.reshape(1, -1) > t).astype(jnp.float32)
    pos = (y_true * w).reshape(1, -1)
    neg = ((1 - y_true) * w).reshape(1, -1)
    tp, fp = jnp.sum(pred * pos, axis=1), jnp.sum(pred * neg, axis=1)
    return tp, fp, jnp.sum(neg) - fp, jnp.sum(pos) - tp


class _Thresholded(EpochMetric):
    """tp, fp, tn, fn at fixed thresholds (``ŷ > t`` is a positive prediction), as Keras."""

    _arrays = ("true_positives", "false_positives", "true_negatives", "false_negatives")
    _options = ("thresholds", "top_k", "class_id", "scalar", "name")
    _default_name: ClassVar[str] = ""

    def __init__(self, thresholds=None, *, top_k=None, class_id=None, name=None):
        metric = name or self._default_name
        if top_k is not None:
            top_k = _check_k(f"{metric}: top_k", top_k)
        if thresholds is None:
            # Keras: 0.5, or -1e10 with top_k (every top-k score is a positive prediction).
            values = (0.5,) if top_k is None else (-1e10,)
        else:
            values = _check_thresholds(metric, thresholds)
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, int)):
            raise ValueError(f"{metric}: class_id must be an int, got {class_id!r}")
        self._set(
            thresholds=values,
            top_k=top_k,
            class_id=class_id,
            scalar=thresholds is None or np.ndim(thresholds) == 0,
            name=metric,
        )
        self._set(**self._zeros())

    def _zeros(self):
        z = jnp.zeros((len(self.thresholds),), jnp.float32)
        return dict(zip(self._arrays, (z, z, z, z)))

    def from_batch(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, w = _binary_pair(self.name, y_true, y_pred, sample_weight)
        if self.top_k is not None:
            if y_pred.ndim < 2:
                raise _label_error(self.name, "scores (N, K) for top_k", y_true, y_pred)
            y_pred = _keep_top_k(y_pred, self.top_k)
        if self.class_id is not None:
            if y_pred.ndim < 2 or not 0 <= self.class_id < y_pred.shape[-1]:
                raise _label_error(
                    self.name, f"scores (N, K) with class_id {self.class_id} < K", y_true, y_pred
                )
            y_true, y_pred, w = (a[..., self.class_id] for a in (y_true, y_pred, w))
        counts = _counts_at(self.thresholds, y_true, y_pred, w)
        return self._replace(**dict(zip(self._arrays, counts)))

    def compute(self):
        value = self._ratio()
        return value[0] if self.scalar else value


def _divide_no_nan(a, b):
    return jnp.where(b == 0, 0.0, a / jnp.where(b == 0, 1.0, b))


class Precision(_Thresholded):
    """Precision ``TP / (TP + FP)`` over the epoch, Keras' ``keras.metrics.Precision``.

    ``ŷ > t`` is a positive prediction (``thresholds`` t, default 0.5; a list gives one value per
    threshold). Multi-unit outputs are flattened (every entry is a binary decision: micro
    averaging over classes); ``top_k`` keeps only each row's k largest scores as positives,
    ``class_id`` scores one column. Integer class ids against ``K > 1`` scores are one-hot encoded
    (Keras requires one-hot labels). 0 when nothing was predicted positive (Keras'
    ``divide_no_nan``; scikit-learn's ``precision_score`` warns and gives 0 too).

    Examples:
      >>> import jax.numpy as jnp
      >>> m = Precision()
      >>> s = m.from_batch(jnp.array([1, 0, 1, 0]), jnp.array([0.9, 0.8, 0.3, 0.1]))
      >>> float(s.compute())
      0.5
    """

    _default_name = "precision"

    def _ratio(self):
        return _divide_no_nan(self.true_positives, self.true_positives + self.false_positives)


class Recall(_Thresholded):
    """Recall ``TP / (TP + FN)`` over the epoch, Keras' ``keras.metrics.Recall``.

    Same options and label rules as `Precision`.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = Recall(thresholds=[0.2, 0.5]).from_batch(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.3]))
      >>> s.compute().tolist()
      [1.0, 0.5]
    """

    _default_name = "recall"

    def _ratio(self):
        return _divide_no_nan(self.true_positives, self.true_positives + self.false_negatives)


class TruePositives(_Thresholded):
    """Weighted count of true positives ``Σ w·1[ŷ > t]·y`` (Keras' ``TruePositives``).

    `FalsePositives`, `TrueNegatives` and `FalseNegatives` are the other three counts.

    Examples:
      >>> import jax.numpy as jnp
      >>> y, p = jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.3])
      >>> [float(m.from_batch(y, p).compute()) for m in (TruePositives(), FalsePositives())]
      [1.0, 1.0]
    """

    _default_name = "true_positives"

    def _ratio(self):
        return self.true_positives


class FalsePositives(_Thresholded):
    """Weighted count of false positives ``Σ w·1[ŷ > t]·(1 − y)`` (Keras' ``FalsePositives``)."""

    _default_name = "false_positives"

    def _ratio(self):
        return self.false_positives


class TrueNegatives(_Thresholded):
    """Weighted count of true negatives ``Σ w·1[ŷ ≤ t]·(1 − y)`` (Keras' ``TrueNegatives``)."""

    _default_name = "true_negatives"

    def _ratio(self):
        return self.true_negatives


class FalseNegatives(_Thresholded):
    """Weighted count of false negatives ``Σ w·1[ŷ ≤ t]·y`` (Keras' ``FalseNegatives``)."""

    _default_name = "false_negatives"

    def _ratio(self):
        return self.false_negatives


# ---- AUC -----------------------------------------------------------------------------------------


class AUC(EpochMetric):
    """Area under the ROC or precision–recall curve, Keras' thresholded approximation.

    The epoch's tp, fp, tn, fn are summed at ``T = num_thresholds`` thresholds ``t₀ = −ε,
    tᵢ = i/(T−1) (0 < i < T−1), t_{T−1} = 1 + ε`` (ε = 1e-7), bucketed in O(N + T) as Keras does
    (``ŷ`` is clipped to [0, 1]; ``ŷ > tᵢ`` is positive). From the T curve points:

    * ``curve="ROC"``, ``summation_method="interpolation"`` (default): the trapezoidal rule,
      ``Σᵢ (FPRᵢ − FPRᵢ₊₁)·(TPRᵢ + TPRᵢ₊₁)/2``;
    * ``curve="PR"``, ``"interpolation"``: Davis & Goadrich's (2006) interpolation, precision
      interpolated between points as TP and TP + FP vary linearly (Keras' closed form,
      ``interpolate_pr_auc``); not a trapezoid, which overestimates PR areas;
    * ``"minoring"``/``"majoring"``: left/right Riemann sums with the min/max of the two heights.

    Differences: scikit-learn's ``roc_auc_score`` is exact (every distinct score is a threshold),
    and ``average_precision_score`` is the step sum ``Σ (Rₙ − Rₙ₋₁) Pₙ`` without interpolation;
    on 2,000 well-spread scores (spec_tests/test_metrics.py's data, 5 seeds) the default ROC AUC
    was within 1.2e-4 of ``roc_auc_score`` and the PR AUC within 2.5e-4 of
    ``average_precision_score``; but scores packed between two thresholds collapse into one
    point (4 scores in (0.5, 0.5005): 0.5 here, 0.75 exact). Keras'
    ``multi_label`` and ``label_weights`` are not offered (outputs are flattened, Keras' default).
    ``from_logits=True`` applies the sigmoid first. Empty classes give 0 (``divide_no_nan``).

    Examples:
      >>> import jax.numpy as jnp
      >>> y = jnp.array([0, 0, 1, 1]); p = jnp.array([0.1, 0.4, 0.35, 0.8])
      >>> round(float(AUC().from_batch(y, p).compute()), 4)  # exact ROC AUC: 0.75
      0.75
      >>> pr = AUC(curve="PR").from_batch(y, p)
      >>> pr.name
      'auc'
    """

    _arrays = ("true_positives", "false_positives", "true_negatives", "false_negatives")
    _options = ("num_thresholds", "curve", "summation_method", "thresholds", "from_logits", "name")

    def __init__(
        self,
        num_thresholds: int = 200,
        *,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        thresholds=None,
        from_logits: bool = False,
        name: str = "auc",
    ):
        curve = str(curve).upper()
        if curve not in ("ROC", "PR"):
            raise ValueError(f"{name}: curve must be 'ROC' or 'PR', got {curve!r}")
        method = str(summation_method).lower()
        if method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(
                f"{name}: summation_method must be 'interpolation', 'minoring' or 'majoring', "
                f"got {summation_method!r}"
            )
        if thresholds is not None:
            inner = tuple(sorted(_check_thresholds(name, thresholds)))
            num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int):
                raise ValueError(
                    f"{name}: num_thresholds must be an int > 1, got {num_thresholds!r}"
                )
            if num_thresholds <= 1:
                raise ValueError(f"{name}: num_thresholds must be > 1, got {num_thresholds}")
            inner = None
        self._set(
            num_thresholds=num_thresholds,
            curve=curve,
            summation_method=method,
            thresholds=inner,
            from_logits=bool(from_logits),
            name=name,
        )
        self._set(**self._zeros())

    def _zeros(self):
        z = jnp.zeros((self.num_thresholds,), jnp.float32)
        return dict(zip(self._arrays, (z, z, z, z)))

    def all_thresholds(self) -> np.ndarray:
        """The T thresholds, ``[−ε, …, 1 + ε]`` (float32, as Keras builds them)."""
        if self.thresholds is not None:
            inner = list(self.thresholds)
        else:
            t = self.num_thresholds
            inner = [(i + 1) / (t - 1) for i in range(t - 2)]
        return np.asarray([0.0 - _EPSILON, *inner, 1.0 + _EPSILON], np.float32)

    def from_batch(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, w = _binary_pair(self.name, y_true, y_pred, sample_weight)
        if self.from_logits:
            y_pred = jax.nn.sigmoid(y_pred)
        y_true, y_pred, w = y_true.reshape(-1), y_pred.reshape(-1), w.reshape(-1)
        if self.thresholds is not None:
            counts = _counts_at(self.all_thresholds(), y_true, y_pred, w)
            return self._replace(**dict(zip(self._arrays, counts)))
        t = self.num_thresholds
        # Keras' bucketing: ŷ lands in bucket ceil(ŷ (T−1)) − 1 (≥ 0), and the count at
        # threshold i is the reverse cumulative sum of the buckets ≥ i.
        p = jnp.clip(y_pred, 0.0, 1.0)
        bucket = jnp.maximum(jnp.ceil(p * jnp.float32(t - 1)) - 1, 0).astype(jnp.int32)
        pos, neg = y_true * w, (1 - y_true) * w
        tp = jnp.cumsum(jax.ops.segment_sum(pos, bucket, t)[::-1])[::-1]
        fp = jnp.cumsum(jax.ops.segment_sum(neg, bucket, t)[::-1])[::-1]
        return self._replace(
            true_positives=tp,
            false_positives=fp,
            true_negatives=jnp.sum(neg) - fp,
            false_negatives=jnp.sum(pos) - tp,
        )

    def compute(self):
        tp, fp, tn, fn = (getattr(self, a) for a in self._arrays)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_auc(tp, fp, fn)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = jnp.minimum(y[:-1], y[1:])
        else:
            heights = jnp.maximum(y[:-1], y[1:])
        return jnp.sum((x[:-1] - x[1:]) * heights)


def _interpolated_pr_auc(tp, fp, fn):
    """Davis & Goadrich interpolation between successive thresholds A → B (Keras' closed form).

    With P = TP + FP linear between points, precision is ``(TP_A + s (P − P_A)) / P`` with slope
    ``s = ΔTP/ΔP``; integrating over recall gives ``s (ΔTP + c·log(P_A / P_B)) / (TP_B + FN_B)``
    with intercept ``c = TP_B − s P_B``.
    """
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _divide_no_nan(dtp, jnp.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = jnp.where(both, _divide_no_nan(p[:-1], jnp.maximum(p[1:], 0)), 1.0)
    increment = _divide_no_nan(
        slope * (dtp + intercept * jnp.log(ratio)), jnp.maximum(tp[1:] + fn[1:], 0)
    )
    return jnp.sum(increment)


# ---- F-scores ------------------------------------------------------------------------------------


class FBetaScore(EpochMetric):
    """F-β over the epoch, Keras' ``keras.metrics.FBetaScore``.

    Per class k (columns of ``[N, K]`` outputs), with the epoch's sums TPₖ, FPₖ, FNₖ::

        Pₖ = TPₖ / (TPₖ + FPₖ + ε),  Rₖ = TPₖ / (TPₖ + FNₖ + ε),
        Fₖ = (1 + β²) Pₖ Rₖ / (β² Pₖ + Rₖ + ε)                      (ε = 1e-7, as Keras)

    ``average``: ``None`` (the vector F, Keras' default), ``"micro"`` (TP, FP, FN summed over
    classes first), ``"macro"`` (mean of Fₖ), ``"weighted"`` (mean weighted by each class's
    support ``Σ yₖ``). ``threshold=None`` marks each row's largest score as the prediction
    (Keras' rule; ties all count), else ``ŷ > threshold``.

    Labels: one-hot ``[N, K]`` as in Keras, or integer class ids ``[N]`` (fnn one-hot encodes
    them; Keras raises). Leading axes are flattened, so segmentation maps ``[N, H, W, K]`` work.
    scikit-learn's ``f1_score`` is the same number without the ε terms (and warns where Keras
    returns 0).

    Examples:
      >>> import jax.numpy as jnp
      >>> s = F1Score(average="macro").from_batch(jnp.array([0, 1, 1]), jnp.array([[0.8, 0.2], [0.4, 0.6], [0.7, 0.3]]))
      >>> round(float(s.compute()), 4)
      0.6667
    """

    _arrays = ("true_positives", "false_positives", "false_negatives", "intermediate_weights")
    _options = ("average", "beta", "threshold", "num_classes", "name")

    def __init__(
        self,
        average: str | None = None,
        beta: float = 1.0,
        threshold: float | None = None,
        *,
        num_classes: int | None = None,
        name: str = "fbeta_score",
    ):
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(
                f"{name}: average must be None, 'micro', 'macro' or 'weighted', got {average!r}"
            )
        if not isinstance(beta, int | float) or isinstance(beta, bool) or beta <= 0:
            raise ValueError(f"{name}: beta must be a number > 0, got {beta!r}")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"{name}: threshold must be None or in [0, 1], got {threshold!r}")
        self._set(
            average=average,
            beta=float(beta),
            threshold=None if threshold is None else float(threshold),
            num_classes=num_classes,
            name=name,
        )
        self._set(**self._zeros())

    def _zeros(self):
        # Unknown K: scalar zeros, still neutral for merge (they broadcast).
        shape = () if self.average == "micro" or self.num_classes is None else (self.num_classes,)
        z = jnp.zeros(shape, jnp.float32)
        return dict(zip(self._arrays, (z, z, z, z)))

    def from_batch(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
        if not jnp.issubdtype(y_pred.dtype, jnp.floating):
            raise _label_error(self.name, "float scores y_pred (N, K)", y_true, y_pred)
        if y_pred.ndim == 1:
            y_pred = y_pred[:, None]
        k = y_pred.shape[-1]
        if k > 1 and y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,)):
            y_true = jax.nn.one_hot(y_true.reshape(y_pred.shape[:-1]), k)
        elif y_true.shape == y_pred.shape[:-1] and k == 1:
            y_true = y_true[..., None]
        if y_true.shape != y_pred.shape:
            raise _label_error(
                self.name,
                "one-hot labels with y_pred's shape (N, K) or class ids (N,)",
                y_true,
                y_pred,
            )
        if self.num_classes is not None and k != self.num_classes:
            raise _label_error(self.name, f"y_pred with {self.num_classes} classes", y_true, y_pred)
        w = _entry_weights(self.name, sample_weight, y_pred.shape[:-1])[..., None]
        y_true = y_true.astype(jnp.float32).reshape(-1, k)
        y_pred = y_pred.astype(jnp.float32).reshape(-1, k)
        w = w.reshape(-1, 1)
        if self.threshold is None:
            top = jnp.max(y_pred, axis=-1, keepdims=True)
            hard = (y_pred >= top) & (jnp.abs(y_pred) > 1e-9)
        else:
            hard = y_pred > self.threshold
        hard = hard.astype(jnp.float32)
        axis = None if self.average == "micro" else 0
        sums = [
            jnp.sum(v * w, axis=axis)
            for v in (hard * y_true, hard * (1 - y_true), (1 - hard) * y_true, y_true)
        ]
        return self._replace(**dict(zip(self._arrays, sums)))

    def compute(self):
        tp, fp, fn, support = (getattr(self, a) for a in self._arrays)
        precision = tp / (tp + fp + _EPSILON)
        recall = tp / (tp + fn + _EPSILON)
        b2 = self.beta**2
        f = (1 + b2) * precision * recall / (b2 * precision + recall + _EPSILON)
        if self.average == "weighted":
            return jnp.sum(f * support / (jnp.sum(support) + _EPSILON))
        if self.average is not None:
            return jnp.mean(f)
        return f


class F1Score(FBetaScore):
    """F1, `FBetaScore` with β = 1 (Keras' ``keras.metrics.F1Score``; named ``"f1_score"``).

    Examples:
      >>> import jax.numpy as jnp
      >>> s = F1Score(threshold=0.5).from_batch(jnp.array([[1.0], [0.0], [1.0]]), jnp.array([[0.9], [0.6], [0.2]]))
      >>> [round(v, 4) for v in s.compute().tolist()]  # P = R = 1/2
      [0.5]
    """

    _options = FBetaScore._options

    def __init__(self, average=None, threshold=None, *, num_classes=None, name="f1_score"):
        super().__init__(average, 1.0, threshold, num_classes=num_classes, name=name)


# ---- confusion matrix, IoU, Dice -----------------------------------------------------------------


def _class_maps(metric: str, y_true, y_pred, num_classes, threshold):
    """``(true ids, predicted ids, K)`` from labels and outputs of a classifier or segmenter.

    Accepted (shapes without the class axis may be ``[N]`` or maps ``[N, H, W]``):
    scores ``[..., K]`` (K > 1) → argmax, with class ids ``[...]`` (or ``[..., 1]``) or one-hot
    labels ``[..., K]``; one score ``[..., 1]`` or ``[N]`` → ``ŷ > threshold`` (two classes);
    integer class ids ``y_pred`` with the labels' shape (``num_classes`` required).
    """
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    expected = (
        "class ids y_true (N, ...) [or one-hot (N, ..., K)] with scores y_pred (N, ..., K), "
        "one score (N, ..., 1) for two classes, or integer class ids y_pred (N, ...)"
    )
    if jnp.issubdtype(y_pred.dtype, jnp.integer) or y_pred.dtype == jnp.bool_:
        if y_true.shape == y_pred.shape + (1,):
            y_true = y_true[..., 0]
        elif y_pred.shape == y_true.shape + (1,):
            y_pred = y_pred[..., 0]
        if y_true.shape != y_pred.shape:
            raise _label_error(metric, expected, y_true, y_pred)
        if num_classes is None:
            raise _label_error(
                metric, "num_classes=... when y_pred holds class ids (not scores)", y_true, y_pred
            )
        pred, k = y_pred.astype(jnp.int32), num_classes
    elif not jnp.issubdtype(y_pred.dtype, jnp.floating) or y_pred.ndim == 0:
        raise _label_error(metric, expected, y_true, y_pred)
    elif y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        scores = y_pred if y_pred.ndim == 1 else y_pred[..., 0]
        if y_true.shape == scores.shape + (1,):
            y_true = y_true[..., 0]
        if y_true.shape != scores.shape:
            raise _label_error(metric, expected, y_true, y_pred)
        pred, k = (scores > threshold).astype(jnp.int32), 2
    else:
        k, lead = y_pred.shape[-1], y_pred.shape[:-1]
        pred = jnp.argmax(y_pred, axis=-1).astype(jnp.int32)
        if y_true.shape == y_pred.shape:  # one-hot labels (Keras' OneHotMeanIoU)
            y_true = jnp.argmax(y_true, axis=-1)
        elif y_true.shape == lead + (1,):
            y_true = y_true[..., 0]
        if y_true.shape != lead:
            raise _label_error(metric, expected, y_true, y_pred)
    if num_classes is not None and k != num_classes:
        raise _label_error(
            metric, f"outputs for num_classes={num_classes} classes (got {k})", y_true, y_pred
        )
    if not (
        jnp.issubdtype(y_true.dtype, jnp.integer)
        or jnp.issubdtype(y_true.dtype, jnp.floating)
        or y_true.dtype == jnp.bool_
    ):
        raise _label_error(metric, "integer class ids y_true", y_true, y_pred)
    return y_true.astype(jnp.int32), pred, k


class ConfusionMatrix(EpochMetric):
    """The epoch's confusion matrix ``C[i, j] = Σ w·1[y = i, ŷ = j]`` (rows true, columns predicted).

    The same layout as scikit-learn's ``confusion_matrix`` and ``tf.math.confusion_matrix``.
    Outputs are turned into class ids as `MeanIoU` describes (argmax of ``[..., K]`` scores, or
    ``ŷ > threshold`` for one score); ids outside ``[0, K)`` and ``ignore_class`` entries are
    dropped, as Keras' IoU metrics drop them. ``num_classes`` is inferred from the scores' class
    axis when not given (a state built by ``empty()`` before any batch then has shape ``()``,
    still neutral for ``merge``). Keras has no confusion-matrix metric.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = ConfusionMatrix(num_classes=3).from_batch(jnp.array([0, 2, 2]), jnp.array([0, 1, 2]))
      >>> s.compute().tolist()
      [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    """

    _arrays = ("matrix",)
    _options = ("num_classes", "ignore_class", "threshold", "target_class_ids", "name")
    _default_name: ClassVar[str] = "confusion_matrix"

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        target_class_ids: Sequence[int] | None = None,
        ignore_class: int | None = None,
        threshold: float = 0.5,
        name: str | None = None,
    ):
        name = name or self._default_name
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")
        ids = None if target_class_ids is None else tuple(int(c) for c in target_class_ids)
        if ids is not None and (
            not ids or (num_classes and not all(0 <= c < num_classes for c in ids))
        ):
            raise ValueError(
                f"{name}: target_class_ids must be class ids in [0, {num_classes}), got "
                f"{target_class_ids!r}"
            )
        self._set(
            num_classes=num_classes,
            ignore_class=ignore_class,
            threshold=float(threshold),
            target_class_ids=ids,
            name=name,
        )
        self._set(**self._zeros())

    def _zeros(self):
        k = self.num_classes
        return {"matrix": jnp.zeros(() if k is None else (k, k), jnp.float32)}

    def from_batch(self, y_true, y_pred, sample_weight=None):
        true, pred, k = _class_maps(self.name, y_true, y_pred, self.num_classes, self.threshold)
        w = _entry_weights(self.name, sample_weight, true.shape)
        keep = (true >= 0) & (true < k) & (pred >= 0) & (pred < k)
        if self.ignore_class is not None:
            keep &= true != self.ignore_class
        w = jnp.where(keep, w, 0.0).reshape(-1)
        index = (jnp.where(keep, true, 0) * k + jnp.where(keep, pred, 0)).reshape(-1)
        matrix = jax.ops.segment_sum(w, index, k * k).reshape(k, k)
        if self.target_class_ids is not None and max(self.target_class_ids) >= k:
            raise ValueError(f"{self.name}: target_class_ids {self.target_class_ids} ≥ {k} classes")
        return self._replace(matrix=matrix)

    def compute(self):
        return self.matrix

    def _overlap(self, dice: bool):
        """Per-class ``TP / (TP + FP + FN)`` (IoU) or ``2TP / (2TP + FP + FN)`` (Dice)."""
        tp = jnp.diagonal(self.matrix)
        union = jnp.sum(self.matrix, axis=0) + jnp.sum(self.matrix, axis=1)
        return (2 * tp, union) if dice else (tp, union - tp)

    def _mean_over_targets(self, dice: bool):
        num, den = self._overlap(dice)
        if self.target_class_ids is not None:
            ids = jnp.asarray(self.target_class_ids)
            num, den = num[ids], den[ids]
        valid = den > 1e-9
        per_class = jnp.where(valid, num / (den + _EPSILON), 0.0)
        return jnp.sum(per_class) / (jnp.sum(valid) + _EPSILON)

    def per_class(self) -> jax.Array:
        """IoU per class ``[K]`` (`Dice`: Dice per class); NaN for a class absent from both
        labels and predictions (0/0), where `compute` leaves it out of the mean."""
        num, den = self._overlap(isinstance(self, Dice))
        return num / den


class MeanIoU(ConfusionMatrix):
    """Mean intersection over union, Keras' ``keras.metrics.MeanIoU`` semantics.

    The epoch's confusion matrix C is summed first; then, per class k,
    ``IoUₖ = TPₖ / (TPₖ + FPₖ + FNₖ) = C[k,k] / (Σⱼ C[k,j] + Σᵢ C[i,k] − C[k,k])`` and the result
    is the mean over classes with a nonzero denominator (Keras adds ε = 1e-7). This is not the
    mean of per-batch (or per-image) IoUs: a class rare in one batch weighs as much as in
    another there. `per_class` gives the IoU vector.

    Outputs: scores ``[..., K]`` (argmax, Keras' ``sparse_y_pred=False``) or class ids
    (``sparse_y_pred=True``, Keras' default; then ``num_classes`` is required); one score
    ``[..., 1]`` is thresholded at ``threshold`` (two classes, Keras' ``BinaryIoU``). Labels:
    class ids ``[...]`` or one-hot ``[..., K]`` (``OneHotMeanIoU``). ``ignore_class`` entries and
    ids outside ``[0, K)`` are dropped. ``num_classes`` (required by Keras) is inferred from the
    class axis of the scores here. ``target_class_ids`` averages over those classes only (Keras'
    ``IoU``; one id gives that class's IoU).

    Examples:
      >>> import jax.numpy as jnp
      >>> y = jnp.array([[0, 0], [1, 1]]); p = jnp.array([[0, 1], [1, 1]])
      >>> round(float(MeanIoU(num_classes=2).from_batch(y, p).compute()), 4)  # (1/2 + 2/3) / 2
      0.5833
    """

    _default_name = "mean_io_u"

    def compute(self):
        return self._mean_over_targets(dice=False)


class IoU(MeanIoU):
    """IoU of ``target_class_ids`` (Keras' ``keras.metrics.IoU``; all classes when ``None``).

    Examples:
      >>> import jax.numpy as jnp
      >>> y = jnp.array([0, 0, 1, 1]); p = jnp.array([0, 1, 1, 1])
      >>> round(float(IoU(num_classes=2, target_class_ids=[1]).from_batch(y, p).compute()), 4)
      0.6667
    """

    _default_name = "io_u"


class Dice(ConfusionMatrix):
    """Mean Dice coefficient (F1 per class) over the epoch, from the summed confusion matrix.

    ``Diceₖ = 2 TPₖ / (2 TPₖ + FPₖ + FNₖ)``, averaged over classes with a nonzero denominator
    (or over ``target_class_ids``, e.g. ``[1]`` for the foreground of a binary mask), ε = 1e-7 as
    in `MeanIoU`. Per class, Dice = 2 IoU / (1 + IoU). This is the "global" Dice of the epoch's
    pixels, not the mean of per-image Dice scores (which weighs small objects more). Keras has
    the Dice *loss* (on probabilities), not this metric; inputs and options are `MeanIoU`'s.

    Examples:
      >>> import jax.numpy as jnp
      >>> y = jnp.array([0, 0, 1, 1]); p = jnp.array([0, 1, 1, 1])
      >>> round(float(Dice(num_classes=2, target_class_ids=[1]).from_batch(y, p).compute()), 4)
      0.8
    """

    _default_name = "dice"

    def compute(self):
        return self._mean_over_targets(dice=True)


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


_TABLE: dict[str, Callable | None] = {
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

# Epoch metrics by Keras' snake-case class names (``keras.metrics.get``), plus fnn's own.
_EPOCH_TABLE: dict[str, Callable[[], EpochMetric]] = {
    "precision": Precision,
    "recall": Recall,
    "true_positives": TruePositives,
    "false_positives": FalsePositives,
    "true_negatives": TrueNegatives,
    "false_negatives": FalseNegatives,
    "auc": AUC,
    "f1_score": F1Score,
    "fbeta_score": FBetaScore,
    "mean_io_u": MeanIoU,
    "mean_iou": MeanIoU,
    "io_u": IoU,
    "iou": MeanIoU,
    "dice": Dice,
    "confusion_matrix": ConfusionMatrix,
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


def get(identifier) -> Callable | EpochMetric | None:
    """A metric from a Keras name, an `EpochMetric`, or a callable ``f(*, y_true, y_pred) -> [N]``.

    Names of means of per-example values (``"sparse_categorical_accuracy"``, ``"mse"``, ...) give
    the function; names of epoch metrics (``"precision"``, ``"recall"``, ``"auc"``,
    ``"f1_score"``, ``"fbeta_score"``, ``"mean_io_u"``/``"iou"``, ``"io_u"``, ``"dice"``,
    ``"confusion_matrix"``, ``"true_positives"``, ...) give a default instance (``num_classes``
    inferred from the outputs); pass an instance (``AUC(curve="PR")``) for other options.
    Returns ``None`` for ``"accuracy"``/``"acc"``, which `resolve` settles once the label and
    output shapes are known. Unknown names raise a ``ValueError`` with a "did you mean".

    Examples:
      >>> get("sparse_categorical_accuracy").__name__
      'sparse_categorical_accuracy'
      >>> get("mse").__name__
      'mean_squared_error'
      >>> get("auc")
      AUC(num_thresholds=200, curve='ROC', summation_method='interpolation', thresholds=None, from_logits=False, name='auc')
    """
    if isinstance(identifier, EpochMetric) or callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _EPOCH_TABLE:
        return _EPOCH_TABLE[identifier.lower()]()
    return lookup("metric", identifier, {**_TABLE, **_EPOCH_TABLE})


def resolve(identifier, y_true_shape, y_pred_shape) -> EpochMetric:
    """Any metric identifier as an `EpochMetric`, for a training loop that treats all alike.

    ``"accuracy"`` follows `resolve_accuracy`; a per-example function becomes a `MeanMetric`
    named as the logs name it (`name_of`).

    Examples:
      >>> m = resolve("accuracy", (8,), (8, 10))
      >>> type(m).__name__, m.fn.__name__, m.name
      ('MeanMetric', 'sparse_categorical_accuracy', 'accuracy')
      >>> resolve("recall", (8,), (8,)).name
      'recall'
    """
    m = get(identifier)
    if m is None:
        m = resolve_accuracy(tuple(y_true_shape), tuple(y_pred_shape))
    if isinstance(m, EpochMetric):
        return m
    return MeanMetric(m, name=name_of(identifier))


# Log names whose larger values are better / worse, matched as the whole name or its last
# "_"-separated words (so "val_class_accuracy", "box_iou" and "precision_at_recall" resolve).
_BETTER_HIGH = (
    "accuracy", "acc", "auc", "precision", "recall", "sensitivity", "specificity", "f1_score",
    "fbeta_score", "io_u", "iou", "dice", "true_positives", "true_negatives", "r2_score",
    "cosine_similarity", "map",
)  # fmt: skip
_BETTER_LOW = (
    "loss", "error", "crossentropy", "hinge", "false_positives", "false_negatives", "mse", "mae",
    "mape", "msle", "divergence", "poisson", "logcosh",
)  # fmt: skip


def direction(name: str) -> str | None:
    """``"max"`` if larger values of the log ``name`` are better, ``"min"`` if smaller, else None.

    What the callbacks' ``mode="auto"`` uses. Keras 3 reads each metric object's direction and
    raises when it finds none; Keras 2 guessed from the name ("acc" → max, anything else → min,
    so ``f1_score``, ``mean_io_u`` or ``dice`` were minimised). fnn decides from the name
    (without ``val_`` or an output's prefix) and returns None when it cannot tell.

    Examples:
      >>> [direction(n) for n in ("val_loss", "class_accuracy", "mean_io_u", "box_iou", "score")]
      ['min', 'max', 'max', 'max', None]
    """
    words = str(name).removeprefix("val_").lower().split("_")
    for n in range(len(words), 0, -1):  # the longest ending first: "true_positives" before "_pos"
        ending = "_".join(words[-n:])
        if ending in _BETTER_HIGH:
            return "max"
        if ending in _BETTER_LOW:
            return "min"
    return None


def name_of(identifier) -> str:
    """The key a metric gets in the logs (Keras uses the string it was given, or the object's
    ``name``)."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, EpochMetric):
        return identifier.name
    if isinstance(identifier, functools.partial):
        return name_of(identifier.func)
    return getattr(identifier, "__name__", type(identifier).__name__)
