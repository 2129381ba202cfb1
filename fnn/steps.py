"""The train state and the pure, compiled steps: what a hand-written training loop uses.

* A train step is a pure function ``(state, batch, key) -> (state, metrics)`` compiled with
  `jax.jit`, the state donated (its buffers are updated in place; do not reuse the old state).
  The step's randomness (Dropout, augmentation layers) is ``fold_in(key, state.step)``, so the
  same state, batch and key always give the same result, and a resumed run repeats an
  uninterrupted one bit for bit.
* `TrainState` keeps the model as ``params`` (`nnx.Param`) and ``model_state`` (everything else:
  BatchNorm statistics, RNG streams) separately, plus the optimizer state, so the optimizer sees
  only parameters and BatchNorm statistics change only in training.
* A batch is a dict ``{"image": [B, ...] float32, "label": [B] int or [B, K], "sample_weight":
  optional [B]}`` (the `fnn.data` layout). Models are Flax NNX modules taking ``image``.

One step computes (`fnn.objective` for the loss ``L`` and its metrics)::

    g = ∇_θ L(θ),   (u, s) = tx.update(g, s, θ),   θ ← θ + η_scale · u

``η_scale`` is 1 unless a learning-rate callback changed it. With a loss scale (float16 models,
`fnn.precision`): ``g = ∇_θ (S·L) / S``, and a step whose ``g`` is not finite is skipped.
Metrics: ``loss``, every compiled metric, ``learning_rate`` (when the optimizer exposes it, e.g.
`optax.inject_hyperparams` or `fnn.optimizers`), ``grad_norm`` ‖g‖₂ and ``param_norm`` ‖θ‖₂
(after the update).

`make_runner` wraps the same step in the K-step programs (`jax.lax.scan`) that
`fnn.trainer.Trainer` runs, with on-device epoch accumulators. PyTorch has no ``fit``; its loop
is written by hand (``loss.backward(); opt.step()``), which is `make_train_step` here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from fnn import metrics as metrics_lib
from fnn import parallel, precision, runtime
from fnn.objective import PROBABILITY_CHECK, Objective

__all__ = [
    "TrainState",
    "learning_rate",
    "make_train_step",
    "make_eval_step",
    "make_runner",
    "check_augment",
]


class ModelSpec:
    """The static half of a `TrainState`: graph definitions and the optimizer (hashed by identity).

    ``graphdef`` has Dropout on and BatchNorm updating (``model.train()``), ``frozen_graphdef``
    Dropout on and BatchNorm in inference mode, ``eval_graphdef`` both off (``model.eval()``).
    Modules that pin their own mode (a frozen pretrained base) keep it in all three.
    """

    def __init__(self, model: nnx.Module, tx: optax.GradientTransformation):
        def split(**mode):
            view = nnx.view(model, raise_if_not_found=False, **mode)
            return nnx.split(view, nnx.Param, ...)[0]

        self.graphdef = split(deterministic=False, use_running_average=False)
        self.frozen_graphdef = split(deterministic=False, use_running_average=True)
        self.eval_graphdef = split(deterministic=True, use_running_average=True)
        self.tx = tx
        self.rng_tags = tuple(
            sorted(
                {
                    stream.key.tag
                    for _, stream in nnx.iter_graph(model)
                    if isinstance(stream, nnx.RngStream)
                }
            )
        )


# Own copies of a model's arrays (donation must never delete the arrays the user's model still
# holds), as one program compiled without LLVM optimisation (`fnn.runtime.QUICK_COMPILE`),
# instead of one compiled copy program per parameter shape; module-level, so later TrainStates
# of the same model reuse it.
_own_copies = jax.jit(
    lambda tree: jax.tree.map(jnp.copy, tree), compiler_options=runtime.QUICK_COMPILE
)


def _init_optimizer(tx: optax.GradientTransformation, params):
    """``tx.init(params)`` as one quickly compiled program.

    Run eagerly, Adam's zeros compile one program per parameter shape: 1.7-2.1 s for
    EfficientNet-Lite0 on a cold compilation cache, 0.6 s this way (``BENCHMARKS.md``). A state
    that is not all arrays (a hand-written transformation keeping Python objects) is built eagerly.
    """
    try:
        return jax.jit(tx.init, compiler_options=runtime.QUICK_COMPILE)(params)
    except TypeError:
        return tx.init(params)


class TrainState(struct.PyTreeNode):
    """Everything a training step reads and writes, as one pytree.

    Attributes:
      step: int32 ``[]``, the number of optimizer steps taken (the key is folded with it).
      params: `nnx.State` of the model's `nnx.Param` variables (what the optimizer updates).
      model_state: `nnx.State` of every other variable (BatchNorm ``mean``/``var``, RNG streams).
      opt_state: the optimizer's state for ``params``.
      lr_scale: float32 ``[]``, multiplies every update (learning-rate callbacks set it).
      spec: static `ModelSpec` (graph definitions and ``tx``).
      loss_scale: a `fnn.precision.DynamicLossScale` (float16 training) or ``None``.

    Flax's ``flax.training.train_state.TrainState`` keeps ``batch_stats`` outside the state and
    ``apply_fn``/``tx`` static in the same way; Keras hides all of this inside the model.

    Examples:
      >>> import optax
      >>> from flax import nnx
      >>> state = TrainState.create(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> int(state.step), sorted(state.params.keys())
      (0, ['bias', 'kernel'])
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    lr_scale: jax.Array
    spec: ModelSpec = struct.field(pytree_node=False)
    loss_scale: Any = None

    @classmethod
    def create(
        cls, model: nnx.Module, tx: optax.GradientTransformation, *, loss_scale="auto"
    ) -> TrainState:
        """Split ``model`` once into graph definitions, params and model state; init ``tx``.

        ``loss_scale``: ``"auto"`` (a `fnn.precision.DynamicLossScale` when the model computes in
        float16), ``None`` (none) or a ``DynamicLossScale`` (`fnn.precision.resolve_loss_scale`).
        """
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
        _, params, model_state = nnx.split(model, nnx.Param, ...)
        loss_scale = precision.resolve_loss_scale(loss_scale, model)
        params, model_state, loss_scale = _own_copies((params, model_state, loss_scale))
        return cls(
            step=jax.device_put(np.zeros((), np.int32)),  # transfers: jnp.zeros compiles
            params=params,
            model_state=model_state,
            opt_state=_init_optimizer(tx, params),
            lr_scale=jax.device_put(np.ones((), np.float32)),
            spec=ModelSpec(model, tx),
            loss_scale=loss_scale,
        )

    @property
    def tx(self) -> optax.GradientTransformation:
        return self.spec.tx

    def apply_gradients(self, grads, **changes) -> TrainState:
        """One optimizer update ``θ ← θ + lr_scale · tx.update(g, s, θ)``; ``step += 1``."""
        updates, opt_state = self.spec.tx.update(grads, self.opt_state, self.params)
        updates = jax.tree.map(lambda u: u * self.lr_scale.astype(u.dtype), updates)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            **changes,
        )

    def model(self, *, train: bool = False) -> nnx.Module:
        """A fresh module holding this state (eval mode unless ``train``)."""
        graphdef = self.spec.graphdef if train else self.spec.eval_graphdef
        return nnx.merge(graphdef, self.params, self.model_state)


def _reseeded(spec: ModelSpec, params, model_state, key: jax.Array):
    """``model_state`` with every RNG stream keyed from ``key`` (one fold per stream name)."""
    if not spec.rng_tags:
        return model_state
    model = nnx.merge(spec.graphdef, params, model_state)
    nnx.reseed(model, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(spec.rng_tags)})
    return nnx.split(model, nnx.Param, ...)[2]


def learning_rate(opt_state) -> jax.Array | None:
    """The learning rate an optimizer state exposes, or ``None`` when it exposes none.

    Delegates to `fnn.optimizers.learning_rate` (fnn states, ``optax.chain`` / ``masked``
    tuples, ``optax.inject_hyperparams`` states), which raises where this returns ``None`` (the
    trainer then logs no ``learning_rate``, as for a plain ``optax.adam(1e-3)``).

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
      >>> learning_rate(tx.init(jnp.zeros(2)))
      Array(0.1, dtype=float32)
      >>> learning_rate(optax.sgd(0.1).init(jnp.zeros(2))) is None
      True
    """
    from fnn import optimizers as optimizers_lib

    try:
        return jnp.asarray(optimizers_lib.learning_rate(opt_state), jnp.float32)
    except ValueError:
        return None


def _global_norm(tree) -> jax.Array:
    """‖tree‖₂ over all leaves, as one reduction over their concatenation.

    The value of ``optax.tree.norm``, which reduces each leaf separately: for EfficientNet-Lite0's
    ``grad_norm`` and ``param_norm`` that was 737 of its train step's 2,347 XLA fusions and a
    sixth of its compile time (``BENCHMARKS.md``, ``benchmarks/bench_compile.py``). A NaN or ±inf
    in any leaf gives a non-finite norm (``TerminateOnNaN`` relies on it). Accumulates in float32
    at least.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    flat = jnp.concatenate([jnp.ravel(x) for x in leaves])
    flat = flat.astype(jnp.promote_types(flat.dtype, jnp.float32))
    return jnp.sqrt(jnp.sum(flat * flat))


def _float32_outputs(y_pred):
    """float16 / bfloat16 model outputs as float32 (the policy's output dtype, `fnn.precision`):
    losses, metrics and ``predict`` never compute in a 16-bit float."""

    if isinstance(y_pred, dict):  # keep the model's key order (jax.tree.map would sort it)
        return {k: _float32_outputs(v) for k, v in y_pred.items()}
    if isinstance(y_pred, tuple | list):
        values = [_float32_outputs(v) for v in y_pred]
        return type(y_pred)(*values) if hasattr(y_pred, "_fields") else type(y_pred)(values)
    low = jnp.issubdtype(y_pred.dtype, jnp.floating) and jnp.dtype(y_pred.dtype).itemsize < 4
    return y_pred.astype(jnp.float32) if low else y_pred


def _scaled_update(state: TrainState, grads, model_state):
    """Unscale ``grads``; apply them if all finite, else keep the state (but count the step);
    adjust the loss scale. Returns the new state, the unscaled grads and the finite flag."""
    ls = state.loss_scale
    grads = ls.unscale(grads)
    finite = precision.all_finite(grads)
    applied = state.apply_gradients(grads, model_state=model_state)
    kept = (state.params, state.opt_state, state.model_state)
    params, opt_state, model_state = jax.lax.cond(
        finite,
        lambda: (applied.params, applied.opt_state, applied.model_state),
        lambda: kept,
    )
    new_state = applied.replace(
        params=params, opt_state=opt_state, model_state=model_state, loss_scale=ls.adjust(finite)
    )
    return new_state, grads, finite


# ``augment``'s key is ``fold_in(fold_in(key, step), AUGMENT_FOLD)``: its own stream, apart from
# the model's RNG streams (``fold_in(fold_in(key, step), i)`` for the i-th stream name).
AUGMENT_FOLD = 1 << 20


def check_augment(augment):
    """``augment`` itself: ``None`` or a callable ``fn(key, x, y) -> (x, y)``; else a TypeError."""
    if augment is not None and not callable(augment):
        raise TypeError(
            f"augment must be a callable fn(key, x, y) -> (x, y) applied to each training "
            f"batch, or None; got {type(augment).__name__} {augment!r}"
        )
    return augment


def _describe(tree) -> str:
    return str(jax.tree.map(lambda a: f"{tuple(jnp.shape(a))} {jnp.result_type(a)}", tree))


def _augment_batch(augment, key: jax.Array, batch, mesh=None):
    """``batch`` with ``(image, label)`` replaced by ``augment(key, image, label)``.

    The result must keep the structure, shapes and dtypes of ``(x, y)`` (checked while the step
    is traced, so a wrong ``augment`` fails before the first step runs, naming both).
    """
    x, y = batch["image"], batch["label"]
    out = augment(key, x, y)
    want = f"(x, y) with x {_describe(x)} and y {_describe(y)}"
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise ValueError(
            f"augment(key, x, y) must return a pair {want}; it returned "
            f"{type(out).__name__} {_describe(out) if jax.tree.leaves(out) else out!r}"
        )
    new_x, new_y = out
    same = jax.tree.structure((x, y)) == jax.tree.structure((new_x, new_y)) and all(
        jnp.shape(a) == jnp.shape(b) and jnp.result_type(a) == jnp.result_type(b)
        for a, b in zip(jax.tree.leaves((x, y)), jax.tree.leaves((new_x, new_y)))
    )
    if not same:
        raise ValueError(
            f"augment(key, x, y) must return {want} (the same structure, shapes and dtypes as "
            f"it was given); it returned x {_describe(new_x)} and y {_describe(new_y)}"
        )
    return parallel.constrain_batch({**batch, "image": new_x, "label": new_y}, mesh)


def _train_core(objective: Objective, *, update_batch_stats: bool = True, augment=None,
                mesh=None):  # fmt: skip
    """The un-jitted step: ``(state, batch, key) -> (state, stats)`` with `Mean` stats."""

    def step(state: TrainState, batch, key):
        spec = state.spec
        graphdef = spec.graphdef if update_batch_stats else spec.frozen_graphdef
        step_key = jax.random.fold_in(key, state.step)
        ls = state.loss_scale
        if augment is not None:  # training only: evaluate and predict never augment
            batch = _augment_batch(augment, jax.random.fold_in(step_key, AUGMENT_FOLD), batch, mesh)

        seeded = _reseeded(spec, state.params, state.model_state, step_key)

        def loss_fn(params):
            model = nnx.merge(graphdef, params, seeded, copy=True)
            y_pred = _float32_outputs(model(batch["image"]))
            loss, stats = objective(batch, y_pred)
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            scaled = loss if ls is None else ls.scale_loss(loss)
            return scaled, (loss, stats, model_state)

        (_, (loss, stats, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        stats = dict(stats)
        if ls is None:
            new_state = state.apply_gradients(grads, model_state=model_state)
        else:
            new_state, grads, finite = _scaled_update(state, grads, model_state)
            stats["loss_scale"] = new_state.loss_scale.loss_scale
            stats["_grads_finite"] = finite
        grad_norm = _global_norm(grads)
        lr = learning_rate(new_state.opt_state)
        if lr is not None:
            stats["learning_rate"] = lr * state.lr_scale
        stats["grad_norm"] = grad_norm
        stats["param_norm"] = _global_norm(new_state.params)
        stats["_loss"] = loss
        return new_state, stats

    return step


def _eval_core(objective: Objective):
    def step(state: TrainState, batch, key):
        model_state = _reseeded(
            state.spec, state.params, state.model_state, jax.random.fold_in(key, state.step)
        )
        model = nnx.merge(state.spec.eval_graphdef, state.params, model_state)
        y_pred = _float32_outputs(model(batch["image"]))
        loss, stats = objective(batch, y_pred)
        return stats

    return step


def _public_metrics(stats) -> dict[str, jax.Array]:
    out = {}
    for k, v in stats.items():
        if k.startswith("_"):  # internal: the raw loss, the probability check
            continue
        out[k] = v.compute() if isinstance(v, metrics_lib.Mean | metrics_lib.EpochMetric) else v
    return out


def make_train_step(
    loss,
    *,
    metrics=None,
    weighted_metrics=None,
    loss_weights=None,
    update_batch_stats: bool = True,
    augment=None,
    mesh=None,
    jit: bool = True,
):
    """A pure, compiled train step ``step(state, batch, key) -> (state, metrics)``.

    The step is forward → loss → backward → update (module docstring for the formula), compiled
    once with `jax.jit` and ``state`` donated. The model is merged from ``state.spec`` inside the
    compiled function (Flax NNX's performance guide: split once outside, merge inside), so a
    call costs one dispatch. Dropout and augmentation use ``fold_in(key, state.step)``.

    Args:
      loss: a Keras loss name (``"sparse_categorical_crossentropy"``) or a callable
        ``f(*, y_true, y_pred) -> [B]``, through `fnn.losses.get`.
      metrics: Keras metric names, callables ``f(*, y_true, y_pred) -> [B]`` or epoch metrics
        (`fnn.metrics.EpochMetric`, e.g. ``fnn.metrics.AUC(curve="PR")``; per step, the
        batch's value).
      weighted_metrics: metrics averaged with ``batch["sample_weight"]``.
      loss_weights: a number λ multiplying the loss.
      update_batch_stats: ``False`` keeps BatchNorm in inference mode (running statistics used
        and left unchanged) while the parameters train, e.g. for a frozen base; independent of
        which parameters the optimizer freezes.
      augment: ``None`` or ``fn(key, x, y) -> (x, y)``, run on the batch before the forward
        pass (see `fnn.trainer.compile`).
      mesh: a `jax.sharding.Mesh` with a ``"data"`` axis: the batch is split over it.
      jit: ``False`` returns the plain Python function (debugging).

    Loss scaling follows ``state.loss_scale`` (`TrainState.create`'s ``loss_scale="auto"``
    turns it on for float16 models; `fnn.precision`): the loss is scaled by ``S``, the gradients
    unscaled, a non-finite step skipped and ``S`` adjusted, all inside this compiled step.

    Returns:
      ``step(state, batch, key)`` with ``batch = {"image": [B,...], "label": [B] or [B,K],
      "sample_weight": optional [B]}`` and ``key`` a `jax.random.key`; metrics are float32
      scalars ``loss`` (unscaled), each metric, ``learning_rate`` (when readable),
      ``grad_norm`` (of the unscaled gradients; not finite on a skipped step), ``param_norm``,
      and with a loss scale ``loss_scale`` (``S`` after this step's adjustment).

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> def mse(*, y_true, y_pred):
      ...     return jnp.mean((y_pred - y_true) ** 2, axis=-1)
      >>> state = TrainState.create(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> step = make_train_step(mse)
      >>> batch = {"image": jnp.ones((4, 3)), "label": jnp.zeros((4, 1))}
      >>> state, m = step(state, batch, jax.random.key(0))
      >>> int(state.step), sorted(m)
      (1, ['grad_norm', 'loss', 'param_norm'])
    """
    objective = Objective(
        loss, metrics=metrics, weighted_metrics=weighted_metrics, loss_weights=loss_weights
    )
    core = _train_core(
        objective,
        update_batch_stats=update_batch_stats,
        augment=check_augment(augment),
        mesh=mesh,
    )

    def step(state, batch, key):
        state, stats = core(state, parallel.constrain_batch(batch, mesh), key)
        return state, _public_metrics(stats)

    return jax.jit(step, donate_argnums=0) if jit else step


def make_eval_step(
    loss, *, metrics=None, weighted_metrics=None, loss_weights=None, mesh=None, jit=True
):
    """A pure, compiled evaluation step ``step(state, batch, key) -> metrics``.

    Dropout off, BatchNorm with its running statistics (``model.eval()``), nothing updated; the
    metrics are the batch means of the loss and of each metric (see `make_train_step`).

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> def mse(*, y_true, y_pred):
      ...     return jnp.mean((y_pred - y_true) ** 2, axis=-1)
      >>> state = TrainState.create(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> m = make_eval_step(mse)(state, {"image": jnp.ones((4, 3)), "label": jnp.zeros((4, 1))}, jax.random.key(0))
      >>> sorted(m)
      ['loss']
    """
    objective = Objective(
        loss, metrics=metrics, weighted_metrics=weighted_metrics, loss_weights=loss_weights
    )
    core = _eval_core(objective)

    def step(state, batch, key):
        return _public_metrics(core(state, parallel.constrain_batch(batch, mesh), key))

    return jax.jit(step) if jit else step


# --------------------------------------------------------------------------------------------
# K-step programs with epoch accumulators (what `fnn.trainer.Trainer` runs)
# --------------------------------------------------------------------------------------------

NO_BAD_STEP = np.iinfo(np.int32).max  # "no non-finite step yet" in an accumulator


def init_accumulator(
    kind: str, objective: Objective, *, has_lr: bool, mesh, loss_scale: bool = False
):
    """Empty epoch sums for ``kind`` ``"train"`` or ``"eval"``, replicated over ``mesh``.

    Made on the host and transferred: zeros made with `jax.numpy` compile a program per shape.
    """
    acc = objective.empty_stats()  # Means and epoch-metric counts, shaped by check_targets
    if kind == "train":
        acc["grad_norm"] = metrics_lib.Mean(np.zeros((), np.float32), np.zeros((), np.float32))
        acc["param_norm"] = np.zeros((), np.float32)
        if has_lr:
            acc["learning_rate"] = np.zeros((), np.float32)
        if loss_scale:
            acc["loss_scale"] = np.zeros((), np.float32)
        acc["nonfinite_step"] = np.asarray(NO_BAD_STEP, np.int32)
    return parallel.replicate(acc, mesh)


def _merge_stats(acc, stats, names):
    """The objective's stats merged into the accumulator, and the probability check's count."""
    new = {name: acc[name].merge(stats[name]) for name in names}
    if PROBABILITY_CHECK in acc:
        new[PROBABILITY_CHECK] = acc[PROBABILITY_CHECK] + stats[PROBABILITY_CHECK]
    return new


def _accumulate_train(acc, stats, step, names):
    """Merge one step's stats into the epoch accumulator (all on the device)."""
    new = _merge_stats(acc, stats, names)
    if "_grads_finite" in stats:  # loss scaling: the mean over applied steps only
        applied = stats["_grads_finite"]
        grad_norm = metrics_lib.Mean(
            jnp.where(applied, stats["grad_norm"], 0.0), applied.astype(jnp.float32)
        )
    else:
        grad_norm = metrics_lib.Mean(stats["grad_norm"], jnp.ones((), jnp.float32))
    new["grad_norm"] = acc["grad_norm"].merge(grad_norm)
    new["param_norm"] = stats["param_norm"]
    if "learning_rate" in acc:
        new["learning_rate"] = stats["learning_rate"]
    if "loss_scale" in acc:
        new["loss_scale"] = stats["loss_scale"]
    first = acc["nonfinite_step"] == NO_BAD_STEP
    new["nonfinite_step"] = jnp.where(_nonfinite(stats) & first, step, acc["nonfinite_step"])
    return new


def _nonfinite(stats) -> jax.Array:
    """The step's loss, gradient norm or updated parameters (their norm) are NaN or infinite.

    With loss scaling (`fnn.precision`) a non-finite gradient is a skipped step, not an error:
    only the (unscaled) loss and the updated parameters count.
    """
    ok = jnp.isfinite(stats["_loss"]) & jnp.isfinite(stats["param_norm"])
    if "_grads_finite" not in stats:
        ok = ok & jnp.isfinite(stats["grad_norm"])
    return ~ok


def _log_value(v):
    """A float, or a NumPy array for a metric whose value is one (Keras' ``F1Score`` with
    ``average=None``, a confusion matrix), as Keras' logs keep it."""
    v = np.asarray(v)
    return float(v) if v.ndim == 0 else v


def read_accumulator(acc) -> tuple[dict[str, float], int | None]:
    """Host logs ``{name: float}`` from an accumulator, and the first non-finite step (or None).

    This is the host's one wait for the device per logging point.
    """
    host = jax.device_get(acc)
    logs, bad = {}, None
    for name, v in host.items():
        if name == "nonfinite_step":
            bad = None if int(v) == NO_BAD_STEP else int(v)
        elif name == "grad_norm" and float(v.count) == 0:  # every step skipped (loss scaling)
            logs[name] = float("nan")
        elif not name.startswith("_"):
            logs[name] = _log_value(v.compute() if hasattr(v, "compute") else v)
    return logs, bad


def make_runner(kind: str, objective: Objective, *, k: int, mesh, update_batch_stats=True,
                keep_last_finite: bool = False, augment=None):  # fmt: skip
    """The un-jitted program running ``k`` steps on batches stacked ``[k, B, ...]``.

    ``kind``: ``"train"`` ``(state, acc, batches, key) -> (state, acc)``, ``"eval"``
    ``(state, acc, batches, key) -> acc`` or ``"predict"`` ``(state, batches) -> [k, B, ...]``.
    ``k > 1`` is one `jax.lax.scan` (Keras' ``steps_per_execution``); the program depends only
    on ``k``, the batch shape and the model, never on the dataset. With ``keep_last_finite``
    (`fnn.callbacks.TerminateOnNaN` on), a step whose loss, gradient norm or updated
    parameters are not finite, and every later step of the epoch, leaves the state unchanged
    (one select per state array and step, fused with the update): the state stays at the last
    good step. ``augment`` (train only) transforms each batch first (`fnn.trainer.compile`).
    """
    names = objective.names

    def scan(one, carry, batches):
        if k == 1:
            return one(carry, jax.tree.map(lambda b: b[0], batches))
        return jax.lax.scan(one, carry, batches)

    if kind == "train":
        core = _train_core(
            objective, update_batch_stats=update_batch_stats, augment=augment, mesh=mesh
        )

        def run(state, acc, batches, key):
            def one(carry, batch):
                state, acc = carry
                step = state.step
                new, stats = core(state, parallel.constrain_batch(batch, mesh), key)
                acc = _accumulate_train(acc, stats, step, names)
                if keep_last_finite:
                    good = acc["nonfinite_step"] == NO_BAD_STEP
                    new = jax.tree.map(lambda n, o: jnp.where(good, n, o), new, state)
                return (new, acc), None

            return scan(one, (state, acc), batches)[0]

        return run
    if kind == "eval":
        core = _eval_core(objective)

        def run(state, acc, batches, key):
            def one(acc, batch):
                stats = core(state, parallel.constrain_batch(batch, mesh), key)
                return _merge_stats(acc, stats, names), None

            return scan(one, acc, batches)[0]

        return run
    if kind == "predict":

        def run(state, batches):
            model = nnx.merge(state.spec.eval_graphdef, state.params, state.model_state)

            def one(_, batch):
                out = model(parallel.constrain_batch(batch, mesh)["image"])
                return None, _float32_outputs(out)

            return jax.lax.scan(one, None, batches)[1]

        return run
    raise ValueError(f"kind must be 'train', 'eval' or 'predict', got {kind!r}")


def probe_output(state: TrainState, x_shape, batch_size: int) -> jax.ShapeDtypeStruct:
    """The model's output for a batch of ``batch_size`` inputs shaped like ``x_shape[1:]``,
    by `jax.eval_shape` (nothing runs); a model that cannot take them is a clear error."""
    spec = jax.ShapeDtypeStruct((batch_size, *x_shape[1:]), jnp.float32)
    graphdef = state.spec.eval_graphdef

    order = {}

    def forward(params, model_state, x):
        out = _float32_outputs(nnx.merge(graphdef, params, model_state)(x))
        if isinstance(out, dict):  # JAX returns dicts key-sorted; Keras names follow the model
            order["keys"] = tuple(out)
        return out

    try:
        out = jax.eval_shape(forward, state.params, state.model_state, spec)
        if "keys" in order:
            out = {k: out[k] for k in order["keys"]}
    except Exception as e:  # noqa: BLE001 - re-raised with the shapes
        raise ValueError(
            f"the model cannot take inputs of shape {(batch_size, *x_shape[1:])} "
            f"(x has shape {tuple(x_shape)}): {type(e).__name__}: {e}"
        ) from e
    leaves, _ = jax.tree.flatten(out)
    if (
        not leaves
        or not all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
        or (not isinstance(out, jax.ShapeDtypeStruct | dict | tuple | list))
    ):
        raise ValueError(
            f"the model returns {type(out).__name__}; fnn.train supports models that return "
            f"an array, or a dict (tuple) of arrays for several outputs"
        )
    return out
