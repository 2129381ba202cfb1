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

__all__ = ["Objective", "JointLoss"]


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
    if not isinstance(metrics, Sequence):
        raise TypeError(
            f"{argname} must be a list of metric names or callables (or a dict of them per "
            f"output), got {type(metrics).__name__}"
        )
    out = []
    for m in metrics:
        metrics_lib.get(m)  # raises "did you mean" for unknown names
        out.append(m)
    return out


def _loss_weight(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a number, got {value!r}")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{where} must be finite and >= 0, got {value!r}")
    return float(value)


def _ignore_class(loss_fn) -> int | None:
    """The ``ignore_class`` bound into a loss by `fnn.losses.get` (a `functools.partial`)."""
    if not isinstance(loss_fn, functools.partial):
        return None
    value = loss_fn.keywords.get("ignore_class")
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"ignore_class must be an int class id or None, got {value!r}")
    return None if value is None else int(value)


def _output_keys(tree) -> tuple | None:
    """``None`` for one array output; the dict keys, or tuple indices, of several."""
    if isinstance(tree, Mapping):
        return tuple(tree)
    if isinstance(tree, tuple | list):
        return tuple(range(len(tree)))
    return None


def _output_name(key) -> str:
    return f"output_{key}" if isinstance(key, int) else str(key)


def _per_output(value, keys: tuple, argname: str, *, default):
    """Keras' rule for a compile argument given once for all outputs, as a dict keyed by output
    name, or as a list in output order: the value of each output (``default`` if absent)."""
    names = [_output_name(k) for k in keys]
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - set(names))
        if unknown:
            raise ValueError(
                f"{argname} has keys {unknown} that match no model output; the outputs are "
                f"{names} (and {argname} gives {sorted(map(str, value))})"
            )
        return [value.get(n, value.get(k, default)) for k, n in zip(keys, names)]
    if isinstance(value, list | tuple) and not (
        argname in ("metrics", "weighted_metrics")
        and not any(isinstance(v, list | tuple | Mapping) for v in value)
    ):
        if len(value) != len(keys):
            raise ValueError(
                f"{argname} is a list of {len(value)} entries but the model has {len(keys)} "
                f"outputs {names}"
            )
        return list(value)
    return [value] * len(keys)


# Losses that take probabilities unless from_logits=True, and what "a probability" means there.
_PROBABILITY_LOSSES = {
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
    "categorical_crossentropy": "categorical",
    "sparse_categorical_crossentropy": "categorical",
    "categorical_focal_crossentropy": "categorical",
}
PROBABILITY_CHECK = "_not_probabilities"  # the stat counting rows that are not probabilities


def _probability_kind(loss_fn) -> str | None:
    """``"binary"`` / ``"categorical"`` for a probability loss used without ``from_logits``."""
    import inspect

    fn = loss_fn.func if isinstance(loss_fn, functools.partial) else loss_fn
    kind = _PROBABILITY_LOSSES.get(getattr(fn, "__name__", ""))
    if kind is None:
        return None
    try:
        from_logits = inspect.signature(loss_fn).parameters["from_logits"].default
    except (KeyError, TypeError, ValueError):
        return None
    return None if from_logits else kind


def _not_probabilities(p, kind: str, mask) -> jax.Array:
    """How many (real) rows of outputs ``p`` cannot be probabilities: values outside [0, 1], or,
    for a categorical loss, a last axis that does not sum to 1 (softmax outputs do, to ~1e-6;
    the 1e-2 tolerance lets bfloat16 outputs through)."""
    p = jnp.asarray(p, jnp.float32)
    bad = (p < -1e-6) | (p > 1 + 1e-6)
    if kind == "categorical" and p.ndim >= 2 and p.shape[-1] > 1:
        bad = bad | (jnp.abs(jnp.sum(p, axis=-1, keepdims=True) - 1) > 1e-2)
    rows = jnp.any(bad.reshape(p.shape[0], -1), axis=1)
    return jnp.sum(rows * mask)


class JointLoss:
    """A loss over ALL the outputs and ALL the labels at once: ``fn(*, y_true, y_pred) -> [B]``
    with ``y_true`` the whole label structure and ``y_pred`` the model's whole output structure.

    ``compile(loss={"class": ..., "box": ...})`` gives each output its own loss on its own
    labels. Some losses need several targets together: CenterNet's builds its heat maps from
    the boxes AND the class ids of the (augmented) batch, and its size and offset terms count
    only the centre cells of the heat map. ``compile(loss=JointLoss(fn))`` hands ``fn`` the
    labels as given to ``fit`` (e.g. ``y={"box": [N, M, 4], "label": [N, M]}``, keys that need
    not match the outputs) and the model's output dict; ``fn`` returns one value per example,
    reduced as every fnn loss is (``sample_weight``, the padding mask, ``loss_weights`` as one
    number), logged as ``loss``. ``metrics`` are then callables ``m(*, y_true, y_pred) -> [B]`` of
    the same whole structures (names such as ``"accuracy"`` need one output's shapes).

    Keras' way to the same thing is to subclass ``keras.Model`` and override ``compute_loss(x,
    y, y_pred, sample_weight)``; a PyTorch loop calls such a loss by hand (torchvision's
    detection models compute it inside ``forward`` in training mode).

    Examples:
      >>> import jax.numpy as jnp
      >>> def centre_loss(*, y_true, y_pred):  # a loss reading two labels and two outputs
      ...     return jnp.abs(y_pred["a"] + y_pred["b"] - y_true["x"] * y_true["w"]).mean(-1)
      >>> objective = Objective(JointLoss(centre_loss))
      >>> batch = {"label": {"x": jnp.ones((2, 3)), "w": jnp.full((2, 3), 2.0)}}
      >>> loss, _ = objective(batch, {"a": jnp.ones((2, 3)), "b": jnp.zeros((2, 3))})
      >>> float(loss), objective.names
      (1.0, ['loss'])
    """

    def __init__(self, fn, *, name: str | None = None):
        if not callable(fn):
            raise TypeError(
                f"JointLoss takes a callable fn(*, y_true, y_pred) -> [B], got {type(fn).__name__}"
            )
        self.fn = fn
        self.__name__ = name or _name_of(fn)

    def __call__(self, *, y_true, y_pred):
        return self.fn(y_true=y_true, y_pred=y_pred)

    def __repr__(self) -> str:
        return f"JointLoss({self.__name__})"


class _Head:
    """One output's loss and metrics: ``key`` selects it from the outputs and labels."""

    def __init__(self, key, prefix: str, loss, weight, metrics, weighted_metrics):
        self.key, self.prefix = key, prefix
        self.loss_fn, self.loss_name = _resolve_loss(loss)
        self.ignore_class = _ignore_class(self.loss_fn)
        self.scale = 1.0 if weight is None else _loss_weight(weight, f"loss_weights[{prefix!r}]")
        self.metrics = _metric_list(metrics, "metrics")
        self.weighted_metrics = _metric_list(weighted_metrics, "weighted_metrics")
        names = [metrics_lib.name_of(m) for m in self.metrics]
        wnames = [metrics_lib.name_of(m) for m in self.weighted_metrics]
        wnames = [f"weighted_{n}" if n in names else n for n in wnames]
        if len(set(names + wnames)) != len(names) + len(wnames):
            raise ValueError(f"metrics: duplicate metric names {names + wnames}")
        pre = f"{prefix}_" if prefix else ""
        self.metric_names = [pre + n for n in names]
        self.weighted_names = [pre + n for n in wnames]
        self.loss_log = f"{pre}loss" if prefix else None
        self.probabilities = _probability_kind(self.loss_fn)

    def pick(self, tree):
        return tree if self.key is None else tree[self.key]


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

    **Several outputs** (a model returning a dict, or a tuple, of arrays), Keras' way: ``loss``,
    ``loss_weights``, ``metrics`` and ``weighted_metrics`` may be dicts keyed by output name (or
    lists in output order; one loss or one flat metric list applies to every output), labels are
    a dict (tuple) of the same structure, and

        L = Σₒ λₒ · Σᵢ wᵢ mᵢ ℓₒ(yₒᵢ, ŷₒᵢ) / Σᵢ mᵢ

    with logs ``loss`` (that total), ``<output>_loss`` (each output's own loss, before its λ, as
    Keras 3 records it) and ``<output>_<metric>``; a tuple's outputs are named ``output_0``, ...
    An output without a loss is not trained (Keras' ``None`` entry). A key that matches no
    output is an error naming both sets of keys.

    A loss bound with ``ignore_class=c`` (``fnn.losses.get(name, ignore_class=c)``) is Keras'
    masked loss: each step's loss is ``λ Σᵢ wᵢ vᵢ ℓᵢ / Σᵢ vᵢ`` over the valid entries
    ``vᵢ = mᵢ [yᵢ ≠ c]`` (`fnn.losses.reduce` with ``mask=``), and the epoch's ``loss`` is the
    batch-size-weighted mean of those step losses, as Keras' loss tracker averages them. Metrics
    are not masked (Keras' are not either: an ignored label never counts as a correct guess).

    Examples:
      >>> import jax.numpy as jnp
      >>> objective = Objective({"class": "sparse_categorical_crossentropy", "box": "mse"},
      ...                       loss_weights={"class": 1.0, "box": 5.0})
      >>> y_pred = {"class": jnp.array([[0.9, 0.1]]), "box": jnp.array([[0.5, 0.5]])}
      >>> labels = {"class": jnp.array([0]), "box": jnp.array([[0.5, 0.7]])}
      >>> loss, stats = objective({"label": labels}, y_pred)
      >>> objective.names
      ['loss', 'class_loss', 'box_loss']
      >>> round(float(loss), 4)  # -log 0.9 + 5 · (0² + 0.2²) / 2
      0.2054
    """

    def __init__(self, loss, *, metrics=None, weighted_metrics=None, loss_weights=None):
        if loss is None:
            raise ValueError("loss is required, e.g. loss='sparse_categorical_crossentropy'")
        self._config = dict(
            loss=loss, metrics=metrics, weighted_metrics=weighted_metrics, loss_weights=loss_weights
        )
        self.heads: list[_Head] | None = None
        self.output_keys = None
        self._stat_shapes = None  # set by check_targets, read by empty_stats
        self.joint = isinstance(loss, JointLoss)
        if self.joint:
            self._bind_joint()
            return
        single = (
            isinstance(loss, str | Callable)
            and not isinstance(metrics, Mapping)
            and not isinstance(weighted_metrics, Mapping)
            and not isinstance(loss_weights, Mapping)
            and not (isinstance(loss_weights, Sequence) and len(loss_weights) > 1)
        )
        if single:  # checked now, bound to a one-array output until a model says otherwise
            self._bind_single()
        elif not isinstance(loss, Mapping | list | tuple | str) and not callable(loss):
            _resolve_loss(loss)  # the type error

    def _bind_single(self):
        c = self._config
        weights = c["loss_weights"]
        for arg in ("loss_weights", "metrics", "weighted_metrics"):
            value = c[arg]
            if isinstance(value, Mapping) or (
                arg == "loss_weights" and isinstance(value, Sequence) and len(value) != 1
            ):
                raise ValueError(
                    f"{arg}={value!r} is given per output, but the model returns one array; "
                    f"pass {'one number' if arg == 'loss_weights' else 'a list'}"
                )
        if isinstance(weights, Sequence):
            weights = weights[0]
        self.heads = [_Head(None, "", c["loss"], weights, c["metrics"], c["weighted_metrics"])]
        self.output_keys = None

    def _bind_joint(self):
        c = self._config
        for arg in ("loss_weights", "metrics", "weighted_metrics"):
            value = c[arg]
            if isinstance(value, Mapping):
                raise ValueError(
                    f"{arg}={value!r} is given per output, but loss is a JointLoss of all the "
                    f"outputs together; pass {'one number' if arg == 'loss_weights' else 'a list'}"
                )
        for arg in ("metrics", "weighted_metrics"):
            value = c[arg]
            named = [m for m in _metric_list(value, arg) if isinstance(m, str)]
            if named:
                raise ValueError(
                    f"{arg}={named!r}: with a JointLoss, metrics are callables m(*, y_true, "
                    f"y_pred) -> [B] of the whole label and output structures (a name needs "
                    f"one output's shapes)"
                )
        weights = c["loss_weights"]
        if isinstance(weights, Sequence):
            if len(weights) != 1:
                raise ValueError(f"loss_weights={weights!r}: a JointLoss takes one number")
            weights = weights[0]
        self.heads = [_Head(None, "", c["loss"], weights, c["metrics"], c["weighted_metrics"])]
        self.output_keys = None

    def bind(self, y_pred) -> Objective:
        """Fix the output structure (from the model's outputs or their shapes); idempotent."""
        if self.joint:
            return self
        keys = _output_keys(y_pred)
        if keys is None:
            if self.output_keys is not None or self.heads is None:
                if not isinstance(self._config["loss"], str | Callable):
                    raise ValueError(
                        f"loss is given per output ({self._config['loss']!r}) but the model "
                        f"returns one array"
                    )
                self._bind_single()
            return self
        if self.output_keys is not None and sorted(map(str, self.output_keys)) == sorted(
            map(str, keys)
        ):
            return self  # the same outputs (JAX may hand a dict back with its keys sorted)
        if not keys:
            raise ValueError("the model returns an empty dict/tuple of outputs")
        c = self._config
        losses = _per_output(c["loss"], keys, "loss", default=None)
        weights = _per_output(c["loss_weights"], keys, "loss_weights", default=None)
        metrics = _per_output(c["metrics"], keys, "metrics", default=None)
        weighted = _per_output(c["weighted_metrics"], keys, "weighted_metrics", default=None)
        heads = [
            _Head(k, _output_name(k), lo, w, m, wm)
            for k, lo, w, m, wm in zip(keys, losses, weights, metrics, weighted)
            if lo is not None
        ]
        if not heads:
            raise ValueError(f"loss: no output of {[_output_name(k) for k in keys]} has a loss")
        self.heads, self.output_keys = heads, keys
        return self

    @property
    def names(self) -> list[str]:
        heads = self.heads or []
        losses = [h.loss_log for h in heads if h.loss_log]
        metrics = [n for h in heads for n in h.metric_names]
        weighted = [n for h in heads for n in h.weighted_names]
        return ["loss", *losses, *metrics, *weighted]

    def _batch_state(self, m, y, y_pred, weight):
        """One batch's `Mean` of per-example values, or an epoch metric's counts."""
        shapes = ((), ()) if self.joint else (jnp.shape(y), jnp.shape(y_pred))
        metric = metrics_lib.resolve(m, *shapes)
        if isinstance(metric, metrics_lib.MeanMetric):
            values = metric.fn(y_true=y, y_pred=y_pred)
            return metrics_lib.Mean.from_values(_per_example(values, weight.shape[0]), weight)
        return metric.from_batch(y, y_pred, weight)

    def empty_stats(self) -> dict:
        """Zero accumulators shaped as `__call__`'s stats for the last checked labels and
        outputs (`check_targets`), so a compiled loop's carry keeps one shape even where an
        epoch metric infers its number of classes from the outputs."""
        if self._stat_shapes is None:
            raise RuntimeError("Objective.empty_stats: call check_targets(y, out) first")
        # NumPy zeros: the trainer transfers them (jax.numpy zeros compile a program per shape)
        return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), self._stat_shapes)

    def __call__(self, batch, y_pred) -> tuple[jax.Array, dict[str, metrics_lib.Mean]]:
        from fnn import losses as losses_lib

        self.bind(y_pred)
        labels = batch["label"]
        if not self.joint:
            _check_label_keys(labels, self.output_keys)
        n = jax.tree.leaves(y_pred)[0].shape[0]
        mask = batch.get("mask", jnp.ones((n,), jnp.float32))
        weight = mask * batch["sample_weight"] if "sample_weight" in batch else mask
        count = jnp.sum(mask)
        total = jnp.zeros((), jnp.float32)
        stats = {}
        for h in self.heads:
            y, p = h.pick(labels), h.pick(y_pred)
            values = jnp.asarray(_head_values(h, y, p), jnp.float32)
            if h.ignore_class is None:
                head_total = jnp.sum(_per_example(values, n) * weight)
            else:
                real = jnp.reshape(mask > 0, (n,) + (1,) * (values.ndim - 1))
                valid = jnp.reshape(losses_lib.align_ranks(y, p)[0] != h.ignore_class, values.shape)
                head_total = losses_lib.reduce(values, weight, mask=valid & real) * count
            total = total + h.scale * head_total
            if h.loss_log:
                stats[h.loss_log] = metrics_lib.Mean(head_total, count)
            if not self.joint:
                y, p = losses_lib.align_ranks(y, p)
            for names, ms, w in (
                (h.metric_names, h.metrics, mask),
                (h.weighted_names, h.weighted_metrics, weight),
            ):
                for name, m in zip(names, ms):
                    stats[name] = self._batch_state(m, y, p, w)
        stats = {"loss": metrics_lib.Mean(total, count), **stats}
        checked = [h for h in self.heads if h.probabilities]
        if checked:  # read once, after fit's first execution (fnn.trainer)
            stats[PROBABILITY_CHECK] = sum(
                _not_probabilities(h.pick(y_pred), h.probabilities, mask) for h in checked
            )
        return total / count, stats

    def probability_error(self, rows: int, batch_size: int) -> ValueError:
        """The error for outputs that a probability loss cannot take (logits, most likely)."""
        names = [h.loss_name for h in self.heads if h.probabilities]
        return ValueError(
            f"loss {', '.join(map(repr, names))} expects probabilities (from_logits=False), but "
            f"{rows} of the first {batch_size} outputs are not: values outside [0, 1], or rows "
            f"that do not sum to 1. A model that outputs logits (fnn.models.ReferenceCNN does "
            f"by default) needs loss=fnn.losses.get({names[0]!r}, from_logits=True); otherwise "
            f"end the model with a softmax (sigmoid for a binary loss)"
        )

    def check_targets(self, y, out, name: str = "y") -> None:
        """Check labels ``y`` against the model's output ``out`` (shapes of one batch) on the host.

        Runs before any data reaches the device: label keys must match the outputs; per output,
        the loss must accept the pair and give one value per example; sparse labels must be
        integer class ids inside the output's classes (other than ``ignore_class``); binary
        cross-entropy labels must lie in [0, 1].
        """
        self.bind(out)
        if self.joint:
            _check_joint(self.heads[0], y, out, name)
        else:
            _check_label_keys(y, self.output_keys, name=name)
        for h in self.heads if not self.joint else ():
            where = name if h.key is None else f"{name}[{h.key!r}]"
            _check_head(h, np.asarray(h.pick(y)), h.pick(out), where)
            _warn_multi_hot_accuracy(h, np.asarray(h.pick(y)), where)
        # The metrics' states for such batches: a metric's own label error (naming the metric and
        # both shapes) surfaces here, before any data reaches the device; `empty_stats` reads
        # the shapes.
        batch_size = jax.tree.leaves(out)[0].shape[0]
        labels = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((batch_size, *a.shape[1:]), _jax_dtype(a)),
            y,
        )
        batch_spec = {"label": labels, "mask": jax.ShapeDtypeStruct((batch_size,), jnp.float32)}
        self._stat_shapes = jax.eval_shape(lambda b, p: self(b, p)[1], batch_spec, out)


def _per_example(values, n: int) -> jax.Array:
    """Per-example values ``[n]`` from a loss's (or metric's) values ``[n, ...]``: a per-pixel
    loss ``[n, H, W]`` becomes each image's mean. Every example has as many entries, so the
    batch mean of these is Keras' ``sum_over_batch_size`` over all the entries."""
    values = jnp.asarray(values, jnp.float32)
    return values if values.ndim == 1 else values.reshape(n, -1).mean(axis=1)


def _head_values(head: _Head, y_true, y_pred) -> jax.Array:
    from fnn import losses as losses_lib

    if isinstance(head.loss_fn, JointLoss):
        return head.loss_fn(y_true=y_true, y_pred=y_pred)

    y_true, y_pred = losses_lib.align_ranks(y_true, y_pred)
    return head.loss_fn(y_true=y_true, y_pred=y_pred)


def _check_label_keys(labels, keys, *, name: str = "y") -> None:
    """Labels must have the outputs' structure: one array, or the same dict keys / tuple length."""
    have = _output_keys(labels)
    if keys is None and have is None:
        return
    if keys is None:
        raise ValueError(
            f"{name} is a {type(labels).__name__} of labels {list(have)}, but the model returns "
            f"one array"
        )
    want = [_output_name(k) for k in keys]
    if have is None:
        raise ValueError(
            f"the model returns several outputs {want}; pass {name} as a dict with those keys"
        )
    got = [_output_name(k) for k in have]
    if set(got) != set(want):
        raise ValueError(
            f"{name} has label keys {sorted(got)} but the model's outputs are {sorted(want)}"
        )


def _jax_dtype(a) -> np.dtype:
    """The dtype ``a`` has on the device (int64 → int32 without x64), read on the host:
    ``jnp.asarray(a[:1]).dtype`` would compile a program for the transfer."""
    dtype = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
    if jnp.issubdtype(dtype, np.number) or jnp.issubdtype(dtype, np.bool_):
        return jax.dtypes.canonicalize_dtype(dtype)
    return jnp.asarray(a[:1]).dtype  # strings, objects: the error jax.numpy gives


def _check_joint(head: _Head, y, out, name: str) -> None:
    """A JointLoss must take the whole label and output structures and give ``[B]``."""
    batch_size = jax.tree.leaves(out)[0].shape[0]
    y_spec = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct((batch_size, *np.shape(a)[1:]), _jax_dtype(a)), y
    )
    try:
        values = jax.eval_shape(lambda yt, yp: head.loss_fn(y_true=yt, y_pred=yp), y_spec, out)
    except Exception as e:  # noqa: BLE001 - re-raised with the structures
        raise ValueError(
            f"loss {head.loss_name!r} cannot take {name} {_shapes(y_spec)} with the model's "
            f"outputs {_shapes(out)}: {type(e).__name__}: {e}"
        ) from e
    if getattr(values, "shape", None) != (batch_size,):
        raise ValueError(
            f"loss {head.loss_name!r} must return one value per example, shape ({batch_size},), "
            f"for {name} {_shapes(y_spec)} and outputs {_shapes(out)}; it returned "
            f"{getattr(values, 'shape', values)}"
        )


def _shapes(tree) -> str:
    return str(jax.tree.map(lambda a: tuple(a.shape), tree))


def _check_head(head: _Head, y: np.ndarray, out, name: str) -> None:
    batch_size = out.shape[0]
    y_spec = jax.ShapeDtypeStruct((batch_size, *y.shape[1:]), _jax_dtype(y))
    try:
        values = jax.eval_shape(lambda yt, yp: _head_values(head, yt, yp), y_spec, out)
    except Exception as e:  # noqa: BLE001 - re-raised with the shapes
        raise ValueError(
            f"the model's output shape {tuple(out.shape)} does not fit loss "
            f"{head.loss_name!r} with {name} of shape {(batch_size, *y.shape[1:])}: {e}"
        ) from e
    shape = getattr(values, "shape", None)
    if shape is None or shape[:1] != (batch_size,):
        raise ValueError(
            f"loss {head.loss_name!r} must return one value per example, shape "
            f"({batch_size},) (or one per entry, ({batch_size}, ...), such as a loss per "
            f"pixel), for output {tuple(out.shape)} and {name} {(batch_size, *y.shape[1:])}; "
            f"it returned {getattr(values, 'shape', values)}"
        )
    sparse = y.ndim == 1 or (y.ndim == len(out.shape) and y.shape[-1] == 1)
    dense_map = (  # class ids per entry [N, H, W] against scores [N, H, W, K] (segmentation)
        len(out.shape) > 2 and y.shape[1:] == tuple(out.shape[1:-1]) and y.dtype.kind in "iu"
    )
    if (sparse and len(out.shape) == 2 or dense_map) and out.shape[-1] > 1:
        k = out.shape[-1]
        if np.issubdtype(y.dtype, np.floating) and not np.array_equal(y, np.round(y)):
            raise ValueError(
                f"{name} holds non-integer values but the model outputs {k} class scores "
                f"for integer labels; pass class indices in [0, {k})"
            )
        ignore = head.ignore_class
        kept = y if ignore is None else y[y != ignore]
        lo, hi = (kept.min(), kept.max()) if kept.size else (0, 0)
        if lo < 0 or hi >= k:
            also = "" if ignore is None else f" (other than ignore_class={ignore})"
            raise ValueError(
                f"{name} has labels outside [0, {k}){also} (the model's {k} output "
                f"classes): min {lo}, max {hi}"
            )
    loss_name = head.loss_name
    if "binary" in loss_name and "crossentropy" in loss_name and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{name} must be in [0, 1] for loss {loss_name!r}; got min {y.min()}, max {y.max()}"
        )


def _warn_multi_hot_accuracy(head: _Head, y: np.ndarray, name: str) -> None:
    """Keras resolves ``"accuracy"`` on ``[N, K]`` labels to categorical accuracy (argmax match),
    which is meaningless for multi-hot labels; fnn does the same, and says so."""
    asked = [m for m in head.metrics + head.weighted_metrics if m in ("accuracy", "acc")]
    if not asked or y.ndim != 2 or y.shape[-1] < 2 or not np.isin(y, (0, 1)).all():
        return
    if (y.sum(-1) != 1).any():
        import warnings

        warnings.warn(
            f"metrics=['accuracy'] with multi-hot {name} (rows with several 1s) is Keras' "
            f"categorical accuracy (does the argmax hit a 1?), as in Keras; for per-label "
            f"accuracy use metrics=['binary_accuracy']",
            UserWarning,
            stacklevel=4,
        )
