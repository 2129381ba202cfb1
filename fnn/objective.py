"""What training minimises and reports: compile's ``loss``, ``metrics`` and ``loss_weights``.

One batch of ``B`` examples with weights ``wᵢ`` (``sample_weight`` times ``class_weight[yᵢ]``,
default 1) and padding mask ``mᵢ`` (0 for the rows that fill a short last batch) gives::

    L = λ · Σᵢ mᵢ wᵢ ℓ(yᵢ, ŷᵢ) / Σᵢ mᵢ        (Keras' "sum_over_batch_size"; λ = loss_weights)

and every metric as a mergeable state: a `fnn.metrics.Mean` of per-example values, or an epoch
metric's counts (`fnn.metrics.EpochMetric`: precision, AUC, IoU, ...), so an epoch's value is
exact however it is cut into batches and devices (the states are sums; the host divides once, at
logging time). `Objective` resolves Keras' names (`fnn.losses.get`,
`fnn.metrics.get`) once, when ``compile`` is called, and checks labels against the model's output
before any data reaches the device (`Objective.check_targets`).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fnn import metrics as metrics_lib

__all__ = ["Objective"]


def _name_of(fn) -> str:
    return metrics_lib.name_of(fn)


def _resolve_loss(loss) -> tuple[Callable, str]:
    if loss is None:
        raise ValueError("loss is required, e.g. loss='sparse_categorical_crossentropy'")
    if isinstance(loss, str | Callable):
        from fnn import losses as losses_lib

        fn = losses_lib.get(loss)
        return fn, loss if isinstance(loss, str) else _name_of(fn)
    raise TypeError(
        f"loss must be a Keras loss name or a callable f(*, y_true, y_pred) -> [N], "
        f"got {type(loss).__name__}"
    )


def _metric_list(metrics, argname: str) -> list:
    if metrics is None:
        return []
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        raise ValueError(
            f"{argname}: a dict of metrics per output applies only to multi-output models; "
            f"pass a list for a single-output model"
        )
    out = []
    for m in metrics:
        metrics_lib.get(m)  # raises "did you mean" for unknown names
        out.append(m)
    return out


def _loss_scale(loss_weights) -> float:
    if loss_weights is None:
        return 1.0
    if isinstance(loss_weights, Mapping):
        values = list(loss_weights.values())
    elif isinstance(loss_weights, Sequence):
        values = list(loss_weights)
    else:
        values = [loss_weights]
    if len(values) != 1 or not isinstance(values[0], numbers.Real):
        raise ValueError(
            "loss_weights: fnn models have a single output, so loss_weights must be one number "
            f"(or a one-element list/dict); got {loss_weights!r}"
        )
    return float(values[0])


def _ignore_class(loss_fn) -> int | None:
    """The ``ignore_class`` bound into a loss by `fnn.losses.get` (a `functools.partial`)."""
    if not isinstance(loss_fn, functools.partial):
        return None
    value = loss_fn.keywords.get("ignore_class")
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"ignore_class must be an int class id or None, got {value!r}")
    return None if value is None else int(value)


class Objective:
    """Loss and metrics of one batch, as mergeable `fnn.metrics.Mean` values and epoch states.

    Labels and outputs first go through `fnn.losses.align_ranks`, the rank alignment Keras'
    ``compile`` applies before its loss and metrics (``(N,)`` labels against a one-unit
    ``(N, 1)`` output become ``(N, 1)``; sparse labels ``(N,)`` against ``(N, K)`` stay).

    ``loss`` is ``Mean(λ Σᵢ wᵢ mᵢ ℓᵢ, Σᵢ mᵢ)`` (m = 1 for real examples, 0 for padding), so
    ``compute()`` is Keras' ``sum_over_batch_size``; a metric is ``Mean(Σ mᵢ vᵢ, Σ mᵢ)``; a
    weighted metric ``Mean(Σ wᵢ mᵢ vᵢ, Σ wᵢ mᵢ)`` (Keras' ``weighted_metrics``). An epoch metric
    (`fnn.metrics.EpochMetric`) gives its counts of the batch, ``m.from_batch(y, ŷ, mᵢ)`` (or
    ``wᵢ mᵢ`` when weighted), so padding rows count nothing; the accumulator merges them and the
    host calls ``compute``.

    A loss bound with ``ignore_class=c`` (``fnn.losses.get(name, ignore_class=c)``) is Keras'
    masked loss: each step's loss is ``λ Σᵢ wᵢ vᵢ ℓᵢ / Σᵢ vᵢ`` over the valid entries
    ``vᵢ = mᵢ [yᵢ ≠ c]`` (`fnn.losses.reduce` with ``mask=``), and the epoch's ``loss`` is the
    batch-size-weighted mean of those step losses, as Keras' loss tracker averages them. Metrics
    are not masked (Keras' are not either: an ignored label never counts as a correct guess).
    """

    def __init__(self, loss, *, metrics=None, weighted_metrics=None, loss_weights=None):
        self.loss_fn, self.loss_name = _resolve_loss(loss)
        self.ignore_class = _ignore_class(self.loss_fn)
        self.metrics = _metric_list(metrics, "metrics")
        self.weighted_metrics = _metric_list(weighted_metrics, "weighted_metrics")
        self.loss_scale = _loss_scale(loss_weights)
        names = [metrics_lib.name_of(m) for m in self.metrics]
        wnames = [metrics_lib.name_of(m) for m in self.weighted_metrics]
        self.metric_names = names
        self.weighted_names = [f"weighted_{n}" if n in names else n for n in wnames]
        if len(set(names + self.weighted_names)) != len(names) + len(self.weighted_names):
            raise ValueError(f"metrics: duplicate metric names {names + self.weighted_names}")
        self._stat_shapes = None  # set by check_targets, read by empty_stats

    @property
    def names(self) -> list[str]:
        return ["loss", *self.metric_names, *self.weighted_names]

    def loss_values(self, y_true, y_pred) -> jax.Array:
        """Per-example losses ``[B]`` after Keras' rank alignment."""
        from fnn import losses as losses_lib

        y_true, y_pred = losses_lib.align_ranks(y_true, y_pred)
        return self.loss_fn(y_true=y_true, y_pred=y_pred)

    def __call__(self, batch, y_pred) -> tuple[jax.Array, dict[str, metrics_lib.Mean]]:
        from fnn import losses as losses_lib

        n = y_pred.shape[0]
        mask = batch.get("mask", jnp.ones((n,), jnp.float32))
        weight = mask * batch["sample_weight"] if "sample_weight" in batch else mask
        per_ex = jnp.asarray(self.loss_values(batch["label"], y_pred), jnp.float32)
        count = jnp.sum(mask)
        if self.ignore_class is None:
            total = self.loss_scale * jnp.sum(per_ex * weight)
            loss = total / count
        else:
            valid = jnp.reshape(batch["label"] != self.ignore_class, (n,)) & (mask > 0)
            loss = self.loss_scale * losses_lib.reduce(per_ex, weight, mask=valid)
            total = loss * count
        stats = {"loss": metrics_lib.Mean(total, count)}
        y, y_pred = losses_lib.align_ranks(batch["label"], y_pred)
        for names, ms, w in (
            (self.metric_names, self.metrics, mask),
            (self.weighted_names, self.weighted_metrics, weight),
        ):
            for name, m in zip(names, ms):
                stats[name] = self._batch_state(m, y, y_pred, w)
        return loss, stats

    @staticmethod
    def _batch_state(m, y, y_pred, weight):
        """One batch's `Mean` of per-example values, or an epoch metric's counts."""
        metric = metrics_lib.resolve(m, jnp.shape(y), jnp.shape(y_pred))
        if isinstance(metric, metrics_lib.MeanMetric):
            return metrics_lib.Mean.from_values(metric.fn(y_true=y, y_pred=y_pred), weight)
        return metric.from_batch(y, y_pred, weight)

    def empty_stats(self) -> dict:
        """Zero accumulators shaped as `__call__`'s stats for the last checked labels and
        outputs (`check_targets`), so a compiled loop's carry keeps one shape even where an
        epoch metric infers its number of classes from the outputs."""
        if self._stat_shapes is None:
            raise RuntimeError("Objective.empty_stats: call check_targets(y, out) first")
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._stat_shapes)

    def check_targets(self, y: np.ndarray, out: jax.ShapeDtypeStruct, name: str = "y") -> None:
        """Check labels ``y`` against the model's output ``out`` (a batch's shape) on the host.

        Runs before any data reaches the device: the loss must accept the pair and give one value
        per example; sparse labels must be integer class ids inside the output's classes (other
        than ``ignore_class``); binary cross-entropy labels must lie in [0, 1].
        """
        batch_size = out.shape[0]
        y_spec = jax.ShapeDtypeStruct((batch_size, *y.shape[1:]), jnp.asarray(y[:1]).dtype)
        try:
            values = jax.eval_shape(lambda yt, yp: self.loss_values(yt, yp), y_spec, out)
        except Exception as e:  # noqa: BLE001 - re-raised with the shapes
            raise ValueError(
                f"the model's output shape {tuple(out.shape)} does not fit loss "
                f"{self.loss_name!r} with {name} of shape {(batch_size, *y.shape[1:])}: {e}"
            ) from e
        if getattr(values, "shape", None) != (batch_size,):
            raise ValueError(
                f"loss {self.loss_name!r} must return one value per example, shape "
                f"({batch_size},), for output {tuple(out.shape)} and {name} "
                f"{(batch_size, *y.shape[1:])}; it returned {getattr(values, 'shape', values)}"
            )
        sparse = y.ndim == 1 or (y.ndim == len(out.shape) and y.shape[-1] == 1)
        if sparse and len(out.shape) == 2 and out.shape[-1] > 1:
            k = out.shape[-1]
            if np.issubdtype(y.dtype, np.floating) and not np.array_equal(y, np.round(y)):
                raise ValueError(
                    f"{name} holds non-integer values but the model outputs {k} class scores "
                    f"for integer labels; pass class indices in [0, {k})"
                )
            kept = y if self.ignore_class is None else y[y != self.ignore_class]
            lo, hi = (kept.min(), kept.max()) if kept.size else (0, 0)
            if lo < 0 or hi >= k:
                also = (
                    ""
                    if self.ignore_class is None
                    else f" (other than ignore_class={self.ignore_class})"
                )
                raise ValueError(
                    f"{name} has labels outside [0, {k}){also} (the model's {k} output "
                    f"classes): min {lo}, max {hi}"
                )
        loss_name = self.loss_name
        if "binary" in loss_name and "crossentropy" in loss_name and (y.min() < 0 or y.max() > 1):
            raise ValueError(
                f"{name} must be in [0, 1] for loss {loss_name!r}; got min {y.min()}, max {y.max()}"
            )
        # The metrics' states for such batches: a metric's own label error (naming the metric and
        # both shapes) surfaces here, before any data reaches the device; `empty_stats` reads
        # the shapes.
        batch_spec = {"label": y_spec, "mask": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}
        self._stat_shapes = jax.eval_shape(lambda b, p: self(b, p)[1], batch_spec, out)
