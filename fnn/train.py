"""The slides' training loop: forward, loss, backward, update, iterate, validate.

Data contract:

* A batch is a dict ``{"image": [B, ...] float32, "label": [B] int or [B, K], "sample_weight":
  optional [B]}`` (the `fnn.data` layout). Models are Flax NNX modules taking ``image``.
* A train step is a pure function ``(state, batch, key) -> (state, metrics)`` compiled with
  `jax.jit`, the state donated (its buffers are updated in place; do not reuse the old state).
  The step's randomness (Dropout, augmentation layers) is ``fold_in(key, state.step)``, so the
  same state, batch and key always give the same result, and a resumed run repeats an
  uninterrupted one bit for bit.
* `TrainState` keeps the model as ``params`` (`nnx.Param`) and ``model_state`` (everything else:
  BatchNorm statistics, RNG streams) separately, plus the optimizer state, so the optimizer sees
  only parameters and BatchNorm statistics change only in training.

One step computes, for a batch of ``B`` examples with weights ``wᵢ`` (``sample_weight`` times
``class_weight[yᵢ]``, default 1)::

    L(θ) = λ · 1/B Σᵢ wᵢ ℓ(yᵢ, f_θ(xᵢ))          (Keras' "sum_over_batch_size"; λ = loss_weights)
    g = ∇_θ L(θ),   (u, s) = tx.update(g, s, θ),   θ ← θ + η_scale · u

``η_scale`` is 1 unless a learning-rate callback changed it. Metrics: ``loss``, every compiled
metric, ``learning_rate`` (when the optimizer exposes it, e.g. `optax.inject_hyperparams` or
`fnn.optimizers`), ``grad_norm`` ‖g‖₂ and ``param_norm`` ‖θ‖₂ (after the update).

`compile` returns a `Trainer` with Keras' ``fit`` / ``evaluate`` / ``predict``. Inputs are
in-memory arrays (or an `fnn.data` dict), or a stream: a data source that ``fit`` reads through
`fnn.data.loader` (Grain: shuffling, prefetch, ``workers``), or a ready loader. Differences from
Keras, all deliberate: in-memory data is copied to the device once and every epoch's shuffle is a
device permutation; the host does not touch the loop between steps except at logging time
(callbacks' ``on_train_batch_end`` receive lazy logs that synchronise only when read);
``TerminateOnNaN`` is on by default and raises an error naming the step rather than stopping
quietly; arguments that cannot apply raise errors instead of being ignored. The last, partial
batch of an epoch is padded to the full batch size with examples from the start of the epoch's
permutation that carry zero weight, so every step has one shape (one compilation) and the loss is
exactly Keras' mean over the real examples (padded examples do enter BatchNorm's batch
statistics). The compiled train, eval and predict programs take batches, never the whole
dataset (a small program of their own gathers each execution's batches from the uploaded
arrays), so fitting the same model on another subset size compiles nothing big again, on the
persistent compilation cache even across trainers. PyTorch has no ``fit``; its loop is written
by hand (``loss.backward(); opt.step()``), which is `make_train_step` here.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from fnn import metrics as metrics_lib
from fnn import parallel, runtime

__all__ = [
    "TrainState",
    "make_train_step",
    "make_eval_step",
    "compile",
    "Trainer",
    "History",
]

_NO_BAD_STEP = np.iinfo(np.int32).max


# --------------------------------------------------------------------------------------------
# Train state
# --------------------------------------------------------------------------------------------


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

    @classmethod
    def create(cls, model: nnx.Module, tx: optax.GradientTransformation) -> TrainState:
        """Split ``model`` once into graph definitions, params and model state; init ``tx``."""
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
        _, params, model_state = nnx.split(model, nnx.Param, ...)
        params, model_state = _own_copies((params, model_state))
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=_init_optimizer(tx, params),
            lr_scale=jnp.ones((), jnp.float32),
            spec=ModelSpec(model, tx),
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


# --------------------------------------------------------------------------------------------
# Objective: loss + metrics on one batch
# --------------------------------------------------------------------------------------------


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


def _resolve_optimizer(optimizer) -> optax.GradientTransformation:
    if optimizer is None:
        raise ValueError("optimizer is required, e.g. optimizer='adam'")
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if isinstance(optimizer, str | Callable):
        from fnn import optimizers as optimizers_lib

        tx = optimizers_lib.get(optimizer)
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"optimizer {optimizer!r} did not give an optax.GradientTransformation")
        return tx
    raise TypeError(
        f"optimizer must be a name (e.g. 'adam') or an optax.GradientTransformation, "
        f"got {type(optimizer).__name__}"
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
    """Loss and metrics of one batch, as mergeable `fnn.metrics.Mean` values.

    Labels and outputs first go through `fnn.losses.align_ranks`, the rank alignment Keras'
    ``compile`` applies before its loss and metrics (``(N,)`` labels against a one-unit
    ``(N, 1)`` output become ``(N, 1)``; sparse labels ``(N,)`` against ``(N, K)`` stay).

    ``loss`` is ``Mean(λ Σᵢ wᵢ mᵢ ℓᵢ, Σᵢ mᵢ)`` (m = 1 for real examples, 0 for padding), so
    ``compute()`` is Keras' ``sum_over_batch_size``; a metric is ``Mean(Σ mᵢ vᵢ, Σ mᵢ)``; a
    weighted metric ``Mean(Σ wᵢ mᵢ vᵢ, Σ wᵢ mᵢ)`` (Keras' ``weighted_metrics``).

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

    @property
    def names(self) -> list[str]:
        return ["loss", *self.metric_names, *self.weighted_names]

    def loss_values(self, y_true, y_pred) -> jax.Array:
        """Per-example losses ``[B]`` after Keras' rank alignment."""
        from fnn import losses as losses_lib

        y_true, y_pred = losses_lib.align_ranks(y_true, y_pred)
        return self.loss_fn(y_true=y_true, y_pred=y_pred)

    def _fn(self, m, y_true, y_pred):
        fn = metrics_lib.get(m)
        if fn is None:  # "accuracy": Keras' shape rule
            fn = metrics_lib.resolve_accuracy(jnp.shape(y_true), jnp.shape(y_pred))
        return fn

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
        for name, m in zip(self.metric_names, self.metrics):
            stats[name] = metrics_lib.Mean.from_values(
                self._fn(m, y, y_pred)(y_true=y, y_pred=y_pred), mask
            )
        for name, m in zip(self.weighted_names, self.weighted_metrics):
            stats[name] = metrics_lib.Mean.from_values(
                self._fn(m, y, y_pred)(y_true=y, y_pred=y_pred), weight
            )
        return loss, stats


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def _train_core(objective: Objective, *, update_batch_stats: bool = True):
    """The un-jitted step: ``(state, batch, key) -> (state, stats)`` with `Mean` stats."""

    def step(state: TrainState, batch, key):
        spec = state.spec
        graphdef = spec.graphdef if update_batch_stats else spec.frozen_graphdef
        step_key = jax.random.fold_in(key, state.step)

        seeded = _reseeded(spec, state.params, state.model_state, step_key)

        def loss_fn(params):
            model = nnx.merge(graphdef, params, seeded, copy=True)
            y_pred = model(batch["image"])
            loss, stats = objective(batch, y_pred)
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            return loss, (stats, model_state)

        (loss, (stats, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        grad_norm = optax.tree.norm(grads)
        new_state = state.apply_gradients(grads, model_state=model_state)
        stats = dict(stats)
        lr = learning_rate(new_state.opt_state)
        if lr is not None:
            stats["learning_rate"] = lr * state.lr_scale
        stats["grad_norm"] = grad_norm
        stats["param_norm"] = optax.tree.norm(new_state.params)
        stats["_loss"] = loss
        return new_state, stats

    return step


def _eval_core(objective: Objective):
    def step(state: TrainState, batch, key):
        model_state = _reseeded(
            state.spec, state.params, state.model_state, jax.random.fold_in(key, state.step)
        )
        model = nnx.merge(state.spec.eval_graphdef, state.params, model_state)
        y_pred = model(batch["image"])
        loss, stats = objective(batch, y_pred)
        return stats

    return step


def _public_metrics(stats) -> dict[str, jax.Array]:
    out = {}
    for k, v in stats.items():
        if k == "_loss":
            continue
        out[k] = v.compute() if isinstance(v, metrics_lib.Mean) else v
    return out


def _constrain(batch, mesh, *, stacked: bool = False):
    """Split ``batch`` over the mesh's ``"data"`` axis: axis 0, or axis 1 of ``[k, B, ...]``."""
    if mesh is None or mesh.devices.size == 1:
        return batch
    sharding = _stacked_sharding(mesh) if stacked else parallel.batch_sharding(mesh)
    return jax.lax.with_sharding_constraint(batch, sharding)


def make_train_step(
    loss,
    *,
    metrics=None,
    weighted_metrics=None,
    loss_weights=None,
    update_batch_stats: bool = True,
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
      metrics: Keras metric names or callables ``f(*, y_true, y_pred) -> [B]``.
      weighted_metrics: metrics averaged with ``batch["sample_weight"]``.
      loss_weights: a number λ multiplying the loss.
      update_batch_stats: ``False`` keeps BatchNorm in inference mode (running statistics used
        and left unchanged) while the parameters train, e.g. for a frozen base; independent of
        which parameters the optimizer freezes.
      mesh: a `jax.sharding.Mesh` with a ``"data"`` axis: the batch is split over it.
      jit: ``False`` returns the plain Python function (debugging).

    Returns:
      ``step(state, batch, key)`` with ``batch = {"image": [B,...], "label": [B] or [B,K],
      "sample_weight": optional [B]}`` and ``key`` a `jax.random.key`; metrics are float32
      scalars ``loss``, each metric, ``learning_rate`` (when readable), ``grad_norm``,
      ``param_norm``.

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
    core = _train_core(objective, update_batch_stats=update_batch_stats)

    def step(state, batch, key):
        state, stats = core(state, _constrain(batch, mesh), key)
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
        return _public_metrics(core(state, _constrain(batch, mesh), key))

    return jax.jit(step) if jit else step


# --------------------------------------------------------------------------------------------
# Checkpoints (Orbax)
# --------------------------------------------------------------------------------------------


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree):
    """Typed PRNG keys become their uint32 key data (Orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_saveable(tree, like):
    return jax.tree.map(
        lambda x, ref: (
            jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x
        ),
        tree,
        like,
    )


def _checkpoint_tree(state: TrainState, weights_only: bool) -> dict:
    tree = {"params": state.params, "model_state": state.model_state}
    if not weights_only:
        tree.update(step=state.step, opt_state=state.opt_state, lr_scale=state.lr_scale)
    return _to_saveable(tree)


def _manager(directory, *, create: bool):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def save_checkpoint(
    directory,
    state: TrainState,
    *,
    epoch: int,
    weights_only: bool = False,
    metadata: dict | None = None,
) -> None:
    """Save ``state`` with Orbax under ``directory/<epoch>`` (atomic: a temporary folder is renamed).

    An existing checkpoint of the same ``epoch`` is replaced only after the new one is complete.

    Args:
      directory: the checkpoint folder (created if missing).
      state: the `TrainState`; ``weights_only`` keeps params and model state only (Keras'
        ``save_weights_only``), otherwise step, optimizer state and learning-rate scale too.
      epoch: the number of completed epochs (the Orbax step).
      metadata: JSON-serialisable extras stored next to the arrays.
    """
    import orbax.checkpoint as ocp

    tree = _checkpoint_tree(state, weights_only)
    meta = {"epoch": int(epoch), "weights_only": bool(weights_only), **(metadata or {})}
    with _manager(directory, create=True) as mngr:
        if epoch in mngr.all_steps():
            # Write the replacement beside the old one first, so a crash never loses both.
            tmp = os.path.join(os.fspath(directory), f".replacing_{epoch}")
            with _manager(tmp, create=True) as side:
                side.save(
                    epoch,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
                    ),
                )
            mngr.delete(epoch)
            os.replace(
                os.path.join(tmp, str(epoch)), os.path.join(os.fspath(directory), str(epoch))
            )
            os.rmdir(tmp) if not os.listdir(tmp) else None
            mngr.reload()
        else:
            mngr.save(
                epoch,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
                ),
            )


def restore_checkpoint(
    directory, state: TrainState, *, epoch: int | None = None
) -> tuple[TrainState, dict]:
    """Read a checkpoint written by `save_checkpoint` into the structure of ``state``.

    Args:
      directory: the checkpoint folder.
      state: a `TrainState` of the same model and optimizer (its arrays give shapes, dtypes and
        shardings; its values are replaced).
      epoch: which checkpoint; the latest when ``None``.

    Returns:
      ``(state, metadata)``; ``metadata["epoch"]`` is the number of completed epochs, the
      ``initial_epoch`` to resume `Trainer.fit` from.

    Examples:
      >>> import tempfile, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> state = TrainState.create(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> folder = tempfile.mkdtemp()
      >>> save_checkpoint(folder, state, epoch=3)
      >>> blank = TrainState.create(nnx.Linear(2, 1, rngs=nnx.Rngs(1)), optax.sgd(0.1))
      >>> restored, meta = restore_checkpoint(folder, blank)
      >>> meta["epoch"], bool(jnp.all(restored.params["kernel"] == state.params["kernel"]))
      (3, True)
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"directory: no checkpoint folder at {path}")
    with _manager(path, create=False) as mngr:
        steps = mngr.all_steps()
        if not steps:
            raise FileNotFoundError(f"directory: no checkpoints in {path}")
        if epoch is None:
            epoch = max(steps)
        if epoch not in steps:
            raise ValueError(
                f"epoch={epoch} has no checkpoint in {path}; available: {sorted(steps)}"
            )
        meta = mngr.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        template = _checkpoint_tree(state, meta.get("weights_only", False))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = mngr.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    like = {"params": state.params, "model_state": state.model_state}
    if not meta.get("weights_only", False):
        like.update(step=state.step, opt_state=state.opt_state, lr_scale=state.lr_scale)
    restored = _from_saveable(restored, like)
    return state.replace(**restored), meta


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _array(value, name: str) -> np.ndarray:
    if isinstance(value, jax.Array):
        value = np.asarray(jax.device_get(value))
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from e
    if arr.dtype == object:
        raise TypeError(f"{name}: expected a numeric array, got dtype object")
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array with a leading batch axis, got a scalar")
    return arr


def _check_finite(arr, name: str) -> None:
    """`fnn.data.check_finite` (imported lazily: `fnn.data` pulls in Grain)."""
    from fnn import data as data_lib

    data_lib.check_finite(arr, name)


def _unpack_xy(x, y, name: str = "x"):
    """Accept ``(x, y)`` or a dataset dict ``{"image": ..., "label": ...}`` (the fnn.data layout)."""
    if isinstance(x, Mapping):
        if y is not None:
            raise ValueError(f"{name} is a dict with 'image' and 'label'; do not pass y as well")
        missing = {"image", "label"} - set(x)
        if missing:
            raise ValueError(
                f"{name}: a dataset dict needs keys 'image' and 'label'; missing {sorted(missing)}"
            )
        return x["image"], x["label"], x.get("sample_weight")
    return x, y, None


def _is_stream(x) -> bool:
    return not isinstance(x, np.ndarray | jax.Array | Mapping | list | tuple) and (
        hasattr(x, "__iter__") or hasattr(x, "__next__")
    )


def _prepare_arrays(x, y, sample_weight, class_weight, *, name="x"):
    """Host-side checks; returns float32 x, y, float32 weights [N]."""
    x, y, sw_in_dict = _unpack_xy(x, y, name)
    if sample_weight is None:
        sample_weight = sw_in_dict
    if x is None:
        raise ValueError(f"{name} is required")
    if _is_stream(x):
        raise TypeError(
            f"{name}: expected in-memory arrays (NumPy/JAX) or a dict {{'image', 'label'}}, got "
            f"{type(x).__name__}; iterate a streaming pipeline yourself with make_train_step"
        )
    x = _array(x, name)
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise TypeError(f"{name}: expected numbers, got dtype {x.dtype}")
    if y is None:
        raise ValueError(f"y is required with {name} (labels [N] or [N, K])")
    y = _array(y, "y")
    from fnn import data as data_lib

    data_lib.check_same_length(**{name: x, "y": y})
    _check_finite(x, name)
    _check_finite(y, "y")
    n = len(x)
    weights = np.ones((n,), np.float32)
    if sample_weight is not None:
        sw = _array(sample_weight, "sample_weight").astype(np.float32)
        if sw.shape != (n,):
            raise ValueError(
                f"sample_weight must have shape ({n},) like x's batch axis, got {sw.shape}"
            )
        _check_finite(sw, "sample_weight")
        if (sw < 0).any():
            raise ValueError(f"sample_weight must be non-negative; got a minimum of {sw.min()}")
        weights = weights * sw
    if class_weight is not None:
        weights = weights * _class_weights(class_weight, y)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    elif x.dtype != np.float32:
        x = x.astype(np.float32)
    return x, y, weights


def _class_ids(y: np.ndarray) -> np.ndarray:
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1).reshape(len(y))
    return y.reshape(len(y)).astype(np.int64)


def _class_weights(class_weight, y: np.ndarray) -> np.ndarray:
    if not isinstance(class_weight, Mapping):
        raise TypeError(
            f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}"
        )
    ids = _class_ids(y)
    present = np.unique(ids)
    missing = sorted(int(c) for c in present if int(c) not in class_weight)
    if missing:
        raise ValueError(
            f"class_weight has no weight for classes {missing} present in y; it covers "
            f"{sorted(class_weight)}"
        )
    table = np.zeros(int(max(max(class_weight), present.max())) + 1, np.float32)
    for c, w in class_weight.items():
        if not isinstance(c, numbers.Integral) or c < 0:
            raise ValueError(f"class_weight keys must be class indices >= 0, got {c!r}")
        table[int(c)] = float(w)
    return table[ids]


def _check_streaming_args(max_queue_size, workers, use_multiprocessing):
    given = {
        k: v
        for k, v, default in (
            ("max_queue_size", max_queue_size, 10),
            ("workers", workers, 1),
            ("use_multiprocessing", use_multiprocessing, False),
        )
        if v != default
    }
    if given:
        raise ValueError(
            f"{', '.join(f'{k}={v!r}' for k, v in given.items())}: these configure worker "
            f"processes that read a streaming dataset; in-memory arrays are already on the "
            f"device and need none (leave them at their defaults, or use fnn.data's streaming "
            f"loader)"
        )


def _positive_int(value, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _epochs(epochs, initial_epoch) -> int:
    epochs = _positive_int(epochs, "epochs")
    if not isinstance(initial_epoch, numbers.Integral) or not 0 <= initial_epoch <= epochs:
        raise ValueError(
            f"initial_epoch must be an int in [0, epochs={epochs}], got {initial_epoch!r}"
        )
    return epochs


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


# --------------------------------------------------------------------------------------------
# Compiled loops over device-resident data
# --------------------------------------------------------------------------------------------


def _perm_length(data, steps: int, batch_size: int) -> int:
    """Length of an epoch's row order: whole batches covering every uploaded row (at least
    ``steps`` batches), so ``steps_per_epoch`` or a ``validation_split`` (fewer real rows of
    the same upload) reuse the compiled runner instead of changing its input shape."""
    rows = len(jax.tree.leaves(data)[0])
    return max(steps, -(-rows // batch_size)) * batch_size


def _gather_steps(data, perm, start, n, *, k: int, batch_size: int, mesh):
    """The uploaded rows of steps ``start .. start + k - 1``, stacked ``[k, B, ...]``.

    Step ``j`` takes rows ``perm[j·B : (j+1)·B]``; ``mask`` is 0 past the epoch's ``n`` real
    rows. This is a program of its own, so that the train, eval and predict programs take
    batches and never the whole dataset: a new dataset size (another subset, another split,
    another fold) compiles only this gather, not the model again. Fine-tuning EfficientNet
    on four subset sizes compiled its train step four times, 5.6-7.2 s each, before.
    """
    offset = start * batch_size
    idx = jax.lax.dynamic_slice_in_dim(perm, offset, k * batch_size)
    batches = {
        key: jnp.take(v, idx, axis=0).reshape(k, batch_size, *v.shape[1:])
        for key, v in data.items()
    }
    real = offset + jnp.arange(k * batch_size) < n
    batches["mask"] = real.astype(jnp.float32).reshape(k, batch_size)
    return _constrain(batches, mesh, stacked=True)


def _stacked_sharding(mesh):
    """``[k, B, ...]`` batches: the batch axis (1) split over ``"data"``."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))


def _accumulate_train(acc, stats, step, names):
    """Merge one step's stats into the epoch accumulator (all on the device)."""
    new = {name: acc[name].merge(stats[name]) for name in names}
    new["grad_norm"] = acc["grad_norm"].merge(
        metrics_lib.Mean(stats["grad_norm"], jnp.ones((), jnp.float32))
    )
    new["param_norm"] = stats["param_norm"]
    if "learning_rate" in acc:
        new["learning_rate"] = stats["learning_rate"]
    bad = ~(jnp.isfinite(stats["_loss"]) & jnp.isfinite(stats["grad_norm"]))
    first = acc["nonfinite_step"] == _NO_BAD_STEP
    new["nonfinite_step"] = jnp.where(bad & first, step, acc["nonfinite_step"])
    return new


def _is_streaming_input(x) -> bool:
    """A name/path to stream, a random-access source, an fnn.data.Loader or any batch iterable."""
    if isinstance(x, str | os.PathLike):
        return True
    if isinstance(x, np.ndarray | jax.Array | Mapping | list | tuple) or x is None:
        return False
    return (
        hasattr(x, "__iter__")
        or hasattr(x, "__next__")
        or (hasattr(x, "__len__") and hasattr(x, "__getitem__"))
    )


class _LazyLogs(Mapping):
    """Logs that fetch device values only when a callback reads them (logging time)."""

    def __init__(self, fetch: Callable[[], dict]):
        self._fetch = fetch
        self._value: dict | None = None

    def _get(self) -> dict:
        if self._value is None:
            self._value = self._fetch()
        return self._value

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())


class History:
    """Per-epoch logs of `Trainer.fit`: ``history.history["loss"][e]`` (Keras' ``History``).

    Attributes:
      history: dict name → list of floats, one per completed epoch.
      epoch: list of epoch indices (0-based) that completed.
      params: ``{"epochs", "steps", "verbose"}``.
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict = {}

    def _append(self, epoch: int, logs: Mapping) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class Trainer:
    """A compiled model: Keras' ``fit`` / ``evaluate`` / ``predict`` over a `TrainState`.

    Built by `compile`; see it for the arguments. Attributes: ``state`` (the current
    `TrainState`), ``model`` (the user's module; updated in place at the end of ``fit``),
    ``mesh``, ``stop_training`` (callbacks set it), ``history``.

    Examples:
      A binary task: a one-unit sigmoid output and ``(N,)`` labels (aligned as in Keras).

      >>> import numpy as np
      >>> from flax import nnx
      >>> class Logistic(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.dense = nnx.Linear(2, 1, rngs=rngs)
      ...     def __call__(self, x):
      ...         return nnx.sigmoid(self.dense(x))
      >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
      >>> y = (x[:, 0] > 0).astype(np.int32)
      >>> trainer = compile(Logistic(nnx.Rngs(0)), optimizer="adam", loss="binary_crossentropy",
      ...                   metrics=["accuracy"], devices=1)
      >>> history = trainer.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
      >>> sorted(history.history)[:3], len(history.history["val_loss"])
      (['accuracy', 'grad_norm', 'learning_rate'], 2)
      >>> loss, accuracy = trainer.evaluate(x, y, batch_size=16, verbose=0)
      >>> trainer.predict(x[:5], batch_size=5, verbose=0).shape
      (5, 1)
    """

    def __init__(
        self,
        model,
        *,
        optimizer,
        loss,
        metrics=None,
        loss_weights=None,
        weighted_metrics=None,
        run_eagerly: bool = False,
        steps_per_execution: int = 1,
        seed: int = 0,
        devices=None,
        terminate_on_nan: bool = True,
        update_batch_stats: bool = True,
    ):
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        self.model = model
        self.tx = _resolve_optimizer(optimizer)
        self.objective = Objective(
            loss, metrics=metrics, weighted_metrics=weighted_metrics, loss_weights=loss_weights
        )
        if not isinstance(run_eagerly, bool):
            raise TypeError(f"run_eagerly must be True or False, got {run_eagerly!r}")
        self.run_eagerly = run_eagerly
        self.steps_per_execution = _positive_int(steps_per_execution, "steps_per_execution")
        if not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = int(seed)
        self.terminate_on_nan = bool(terminate_on_nan)
        self.update_batch_stats = bool(update_batch_stats)
        self.mesh = parallel.make_mesh(devices)
        self.state = parallel.replicate(TrainState.create(model, self.tx), self.mesh)
        self._has_lr = learning_rate(self.state.opt_state) is not None
        key = jax.random.key(self.seed)
        self._shuffle_key, self._step_key = jax.random.split(key)
        self._runners: dict = {}
        self.stop_training = False
        self.history: History | None = None
        self.nonfinite_step: int | None = None
        self._stream_iterator = None  # the streaming input being read (its position is saved)
        self._iterator_state = None  # a restored stream position, used by the next fit

    # -- learning rate ------------------------------------------------------------------------

    def _base_lr(self) -> float:
        lr = learning_rate(self.state.opt_state)
        if lr is None:
            raise ValueError(
                "the learning rate cannot be read from this optimizer's state; use "
                "fnn.optimizers.get(...) or wrap it with optax.inject_hyperparams(...)"
            )
        return float(lr)

    @property
    def learning_rate(self) -> float:
        """The current learning rate: the optimizer's times the callbacks' scale."""
        return self._base_lr() * float(self.state.lr_scale)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        base = self._base_lr()
        if base == 0:
            raise ValueError("the optimizer's learning rate is 0; it cannot be rescaled")
        self.scale_learning_rate(float(value) / base / float(self.state.lr_scale))

    def scale_learning_rate(self, factor: float) -> None:
        """Multiply every future update by ``factor`` (works with any optimizer)."""
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"factor must be finite and >= 0, got {factor}")
        scale = jnp.asarray(float(self.state.lr_scale) * factor, jnp.float32)
        self.state = self.state.replace(
            lr_scale=jax.device_put(scale, parallel.replicated(self.mesh))
        )

    # -- weights --------------------------------------------------------------------------------

    def get_weights(self):
        """A copy of ``(params, model_state)`` (on the device)."""
        return jax.tree.map(jnp.copy, (self.state.params, self.state.model_state))

    def set_weights(self, weights) -> None:
        """Replace ``(params, model_state)`` with a copy of ``weights`` (see `get_weights`)."""
        params, model_state = jax.tree.map(jnp.copy, weights)
        self.state = self.state.replace(params=params, model_state=model_state)

    def _sync_model(self) -> None:
        nnx.update(self.model, *jax.tree.map(jnp.copy, (self.state.params, self.state.model_state)))

    def save(self, directory, *, epoch: int, weights_only: bool = False) -> None:
        """Write the state to ``directory/<epoch>`` with Orbax (see `save_checkpoint`)."""
        meta = {"seed": self.seed}
        iterator = getattr(self, "_stream_iterator", None)
        if iterator is not None and hasattr(iterator, "get_state"):
            import base64

            # The streaming input's position: a resumed fit continues with the next batch.
            meta["iterator_state"] = base64.b64encode(iterator.get_state()).decode("ascii")
        save_checkpoint(
            directory, self.state, epoch=epoch, weights_only=weights_only, metadata=meta
        )

    def restore(self, directory, *, epoch: int | None = None) -> int:
        """Load a checkpoint (the latest by default); returns the epoch to resume ``fit`` from.

        Examples:
          ``trainer.fit(x, y, epochs=4, initial_epoch=trainer.restore("ckpt"))``
        """
        state, meta = restore_checkpoint(directory, self.state, epoch=epoch)
        self.state = parallel.replicate(state, self.mesh)
        if meta.get("iterator_state"):
            import base64

            self._iterator_state = base64.b64decode(meta["iterator_state"])
        self._sync_model()
        return int(meta["epoch"])

    # -- compiled loops ---------------------------------------------------------------------

    def _jit(self, fn, **kw):
        return fn if self.run_eagerly else jax.jit(fn, **kw)

    def _call(self, fn, *args):
        if self.run_eagerly:
            with jax.disable_jit():
                return fn(*args)
        return fn(*args)

    def _acc_init(self, kind: str):
        acc = {name: metrics_lib.Mean.empty() for name in self.objective.names}
        if kind == "train":
            acc["grad_norm"] = metrics_lib.Mean.empty()
            acc["param_norm"] = jnp.zeros((), jnp.float32)
            if self._has_lr:
                acc["learning_rate"] = jnp.zeros((), jnp.float32)
            acc["nonfinite_step"] = jnp.asarray(_NO_BAD_STEP, jnp.int32)
        return parallel.replicate(acc, self.mesh)

    def _runner(self, kind: str, k: int, batch_size: int):
        """The compiled program running ``k`` steps on batches stacked ``[k, B, ...]``.

        ``kind``: ``"train"``, ``"eval"`` or ``"predict"``. Batches come from `_gatherer`
        (uploaded arrays) or from the host (streams); the program is the same for both and
        depends only on ``k``, ``B`` and the model, not on the dataset.
        """
        cache_key = (kind, k, batch_size)
        if cache_key in self._runners:
            return self._runners[cache_key]
        mesh = self.mesh
        names = self.objective.names

        def scan(one, carry, batches):
            if k == 1:
                return one(carry, jax.tree.map(lambda b: b[0], batches))
            return jax.lax.scan(one, carry, batches)

        if kind == "train":
            core = _train_core(self.objective, update_batch_stats=self.update_batch_stats)

            def run(state, acc, batches, key):
                def one(carry, batch):
                    state, acc = carry
                    step = state.step
                    state, stats = core(state, _constrain(batch, mesh), key)
                    return (state, _accumulate_train(acc, stats, step, names)), None

                return scan(one, (state, acc), batches)[0]

            fn = self._jit(run, donate_argnums=(0, 1))
        elif kind == "eval":
            core = _eval_core(self.objective)

            def run(state, acc, batches, key):
                def one(acc, batch):
                    stats = core(state, _constrain(batch, mesh), key)
                    return {name: acc[name].merge(stats[name]) for name in names}, None

                return scan(one, acc, batches)[0]

            fn = self._jit(run, donate_argnums=(1,))
        else:  # predict

            def run(state, batches):
                model = nnx.merge(state.spec.eval_graphdef, state.params, state.model_state)

                def one(_, batch):
                    return None, model(_constrain(batch, mesh)["image"])

                return jax.lax.scan(one, None, batches)[1]

            fn = self._jit(run)
        self._runners[cache_key] = fn
        return fn

    def _gatherer(self, k: int, batch_size: int):
        """The compiled `_gather_steps` for ``k`` steps of ``batch_size`` rows."""
        cache_key = ("gather", k, batch_size)
        if cache_key not in self._runners:
            gather = functools.partial(_gather_steps, k=k, batch_size=batch_size, mesh=self.mesh)
            self._runners[cache_key] = self._jit(gather)
        return self._runners[cache_key]

    def _device_steps(self, data, perm, done: int, n, k: int, batch_size: int):
        return self._call(self._gatherer(k, batch_size), data, perm, done, n)

    def _perm(self, n: int, total: int, epoch: int, shuffle: bool, start: int = 0):
        """Row indices of one epoch, ``total`` long: rows ``start .. start+n-1``, permuted on the
        device when ``shuffle`` (key ``fold_in(shuffle_key, epoch)``), then repeated from the
        beginning to fill the last batch (those repeats get zero weight)."""
        if not shuffle:
            order = np.resize(np.arange(start, start + n, dtype=np.int32), total)
            return jax.device_put(order, parallel.replicated(self.mesh))
        key = ("perm", n, total)
        if key not in self._runners:

            def perm_fn(shuffle_key, epoch):
                p = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
                reps = -(-total // n)
                return jnp.tile(p, reps)[:total].astype(jnp.int32)

            self._runners[key] = jax.jit(perm_fn, out_shardings=parallel.replicated(self.mesh))
        perm = self._runners[key](self._shuffle_key, epoch)
        return perm + start if start else perm

    def _upload(self, x, y=None, w=None):
        data = {"image": x}
        if y is not None:
            data["label"] = y
            data["sample_weight"] = w
        return parallel.replicate(data, self.mesh)

    # -- shape checks -------------------------------------------------------------------------

    def _probe_output(self, x_shape, batch_size):
        spec = jax.ShapeDtypeStruct((batch_size, *x_shape[1:]), jnp.float32)
        graphdef = self.state.spec.eval_graphdef

        def forward(params, model_state, x):
            return nnx.merge(graphdef, params, model_state)(x)

        try:
            out = jax.eval_shape(forward, self.state.params, self.state.model_state, spec)
        except Exception as e:  # noqa: BLE001 - re-raised with the shapes
            raise ValueError(
                f"the model cannot take inputs of shape {(batch_size, *x_shape[1:])} "
                f"(x has shape {tuple(x_shape)}): {type(e).__name__}: {e}"
            ) from e
        if not isinstance(out, jax.ShapeDtypeStruct):
            raise ValueError(
                f"the model returns {type(out).__name__}; fnn.train supports models with one "
                f"array output"
            )
        return out

    def _check_targets(self, y: np.ndarray, x_shape, batch_size: int, name: str = "y") -> None:
        out = self._probe_output(x_shape, batch_size)
        y_spec = jax.ShapeDtypeStruct((batch_size, *y.shape[1:]), jnp.asarray(y[:1]).dtype)
        loss_name = self.objective.loss_name
        try:
            values = jax.eval_shape(lambda yt, yp: self.objective.loss_values(yt, yp), y_spec, out)
        except Exception as e:  # noqa: BLE001 - re-raised with the shapes
            raise ValueError(
                f"the model's output shape {tuple(out.shape)} does not fit loss {loss_name!r} "
                f"with {name} of shape {(batch_size, *y.shape[1:])}: {e}"
            ) from e
        if getattr(values, "shape", None) != (batch_size,):
            raise ValueError(
                f"loss {loss_name!r} must return one value per example, shape ({batch_size},), "
                f"for output {tuple(out.shape)} and {name} {(batch_size, *y.shape[1:])}; it "
                f"returned {getattr(values, 'shape', values)}"
            )
        sparse = y.ndim == 1 or (y.ndim == len(out.shape) and y.shape[-1] == 1)
        if sparse and len(out.shape) == 2 and out.shape[-1] > 1:
            k = out.shape[-1]
            if np.issubdtype(y.dtype, np.floating) and not np.array_equal(y, np.round(y)):
                raise ValueError(
                    f"{name} holds non-integer values but the model outputs {k} class scores "
                    f"for integer labels; pass class indices in [0, {k})"
                )
            ignore = self.objective.ignore_class
            kept = y if ignore is None else y[y != ignore]
            lo, hi = (kept.min(), kept.max()) if kept.size else (0, 0)
            if lo < 0 or hi >= k:
                also = "" if ignore is None else f" (other than ignore_class={ignore})"
                raise ValueError(
                    f"{name} has labels outside [0, {k}){also} (the model's {k} output "
                    f"classes): min {lo}, max {hi}"
                )
        if "binary" in loss_name and "crossentropy" in loss_name and (y.min() < 0 or y.max() > 1):
            raise ValueError(
                f"{name} must be in [0, 1] for loss {loss_name!r}; got min {y.min()}, max {y.max()}"
            )

    # -- fit ----------------------------------------------------------------------------------

    def fit(
        self,
        x=None,
        y=None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose="auto",
        callbacks=None,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        class_weight: Mapping | None = None,
        sample_weight=None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq=1,
        max_queue_size: int = 10,
        workers: int = 1,
        use_multiprocessing: bool = False,
    ) -> History:
        """Train for ``epochs`` epochs (Keras' ``Model.fit`` arguments and meaning).

        Every argument is checked before the first step (x/y lengths, NaN/inf, label range, the
        model output against the loss, batch sizes against the data and the devices, ...); an
        argument that cannot apply raises a ``ValueError`` rather than being ignored.

        Args:
          x: inputs ``[N, ...]`` (NumPy or JAX), or a dataset dict ``{"image", "label"}``
            (copied to the device once); or a stream: a data source that ``fit`` streams with
            `fnn.data.loader` (``"tfds:<name>"``, a folder, any random-access source such as
            ``fnn.data.ArraySource``), or a ready ``fnn.data.Loader`` / iterable of batch dicts.
            Streamed batches are fed from the host, ``steps_per_execution`` at a time, and the
            stream's position is saved with `fnn.callbacks.ModelCheckpoint`.
          y: labels ``[N]`` (class ids) or ``[N, K]``; ``None`` for dicts and streams.
          batch_size: examples per step (default 32); a multiple of the device count.
          epochs: train until this epoch index (with ``initial_epoch``, as Keras counts).
          verbose: ``"auto"``/1 a tqdm bar per epoch, 2 one line per epoch, 0 silent.
          callbacks: `fnn.callbacks.Callback` instances. ``TerminateOnNaN`` is added unless
            ``compile(..., terminate_on_nan=False)``.
          validation_split: the fraction in (0, 1) of the data, taken from the end before
            shuffling, held out for validation (Keras' rule). 0 means none.
          validation_data: ``(x_val, y_val)``, ``(x_val, y_val, sample_weight_val)`` or a dataset
            dict; evaluated at the end of each validation epoch (``val_`` logs).
          shuffle: reshuffle the training data each epoch (a device permutation seeded by
            ``compile(seed=)`` and the epoch index).
          class_weight: ``{class: weight}``; multiplies each example's loss weight.
          sample_weight: ``[N]`` per-example loss weights.
          initial_epoch: the epoch to start from (resuming; see `Trainer.restore`).
          steps_per_epoch: steps per epoch, at most ``ceil(N / batch_size)`` (default that).
          validation_steps: validation batches per evaluation (default all).
          validation_batch_size: default ``batch_size``.
          validation_freq: validate every this many epochs, or at the epochs (1-based) listed.
          max_queue_size, workers, use_multiprocessing: Keras' reader settings, passed to the
            Grain loader ``fit`` builds for a data source (worker processes when
            ``use_multiprocessing``, else reader threads; ``max_queue_size`` batches
            prefetched). With in-memory arrays, or a loader built elsewhere, a non-default value
            raises: there is nothing for it to configure.

        Returns:
          `History` whose ``history`` maps ``loss``, each metric, ``learning_rate``,
          ``grad_norm``, ``param_norm`` and the ``val_`` values to per-epoch lists.
        """
        from fnn import callbacks as callbacks_lib

        if _is_streaming_input(x):
            return self._fit_stream(
                x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                callbacks=callbacks, validation_split=validation_split,
                validation_data=validation_data, shuffle=shuffle, class_weight=class_weight,
                sample_weight=sample_weight, initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                validation_batch_size=validation_batch_size, validation_freq=validation_freq,
                max_queue_size=max_queue_size, workers=workers,
                use_multiprocessing=use_multiprocessing,
            )  # fmt: skip
        _check_streaming_args(max_queue_size, workers, use_multiprocessing)
        verbose = _verbosity(verbose)
        epochs = _epochs(epochs, initial_epoch)
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
        x, y, w = _prepare_arrays(x, y, sample_weight, class_weight)
        if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(
                f"validation_split must be a fraction in (0, 1) (or 0 for none), got {validation_split!r}"
            )
        val, full, vstream, vbs_stream = None, None, None, None
        if validation_split > 0:
            if validation_data is not None:
                raise ValueError("pass validation_split or validation_data, not both")
            from fnn import data as data_lib

            # Keras' rule, split_at = floor(N (1 - f)). Both parts stay in one device copy:
            # training reads rows [0, split_at), validation rows [split_at, N).
            full = (x, y, w)
            (x, y, w), val = data_lib.validation_split(full, validation_split)
        else:
            val, vstream, vbs_stream, validation_steps = self._validation_source(
                validation_data, validation_batch_size, validation_steps, batch_size or 32,
                needs="validation_data or validation_split",
            )  # fmt: skip
        n = len(x)
        batch_size = _positive_int(32 if batch_size is None else batch_size, "batch_size")
        steps = self._batches(
            n,
            batch_size,
            steps_per_epoch,
            examples="training examples",
            steps_name="steps_per_epoch",
        )
        self._check_targets(y, x.shape, batch_size)
        val_freq = self._validation_freq(validation_freq)
        vdata = vbs = vsteps = None
        if val is not None:
            vbs, vsteps = self._validation_batches(
                val, validation_batch_size, validation_steps, batch_size
            )
        cbs = callbacks_lib.CallbackList(
            callbacks,
            trainer=self,
            add_history=True,
            terminate_on_nan=self.terminate_on_nan,
            verbose=verbose,
            epochs=epochs,
            steps=steps,
        )

        # All checks passed: copy the data to the device once.
        if full is not None:
            data = vdata = self._upload(*full)
            vstart = n
        else:
            data = self._upload(x, y, w)
            vdata = self._upload(*val) if val is not None else None
            vstart = 0
        k = self.steps_per_execution
        self.stop_training = False
        self.nonfinite_step = None
        self._initial_epoch = int(initial_epoch)
        self._stream_iterator = None
        validate = self._validator(
            val, vdata, vbs, vsteps, vstream, vbs_stream, validation_steps, vstart
        )

        def train_epoch(epoch):
            perm = self._perm(n, _perm_length(data, steps, batch_size), epoch, shuffle)
            acc = self._acc_init("train")
            done = 0
            while done < steps:
                kk = min(k, steps - done)
                batches = self._device_steps(data, perm, done, n, kk, batch_size)
                run = self._runner("train", kk, batch_size)
                self.state, acc = self._call(run, self.state, acc, batches, self._step_key)
                done += kk
                cbs.on_train_batch_end(done - 1, _LazyLogs(lambda a=acc: self._logs(a)))
            return acc

        return self._run_epochs(cbs, initial_epoch, epochs, train_epoch, validate, val_freq)

    def _run_epochs(self, cbs, initial_epoch, epochs, train_epoch, validate, val_freq):
        """The epoch loop both fit paths share: callbacks, validation, early stop, history.

        ``train_epoch(epoch)`` runs one epoch's steps and returns the metric accumulator.
        """
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            logs = self._logs(train_epoch(epoch))  # logging time: the host waits for the epoch
            if validate is not None and (epoch + 1) in val_freq:
                logs.update({f"val_{kname}": v for kname, v in validate().items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end()
        self._sync_model()
        self.history = cbs.history
        return cbs.history

    def _fit_stream(self, x, y, *, batch_size, epochs, verbose, callbacks, validation_split,
                    validation_data, shuffle, class_weight, sample_weight, initial_epoch,
                    steps_per_epoch, validation_steps, validation_batch_size, validation_freq,
                    max_queue_size, workers, use_multiprocessing) -> History:  # fmt: skip
        """``fit`` over a stream: batches come from the host (Grain), one compiled step each."""
        from fnn import callbacks as callbacks_lib
        from fnn import data as data_lib

        for name, value in (("y", y), ("sample_weight", sample_weight)):
            if value is not None:
                raise ValueError(
                    f"{name}: a streaming x yields batches that carry their labels (and an "
                    f"optional 'sample_weight'); do not pass {name} as well"
                )
        if validation_split:
            raise ValueError(
                "validation_split needs in-memory arrays (as in Keras); with a streaming x pass "
                "validation_data"
            )
        verbose = _verbosity(verbose)
        epochs = _epochs(epochs, initial_epoch)
        ready_made = hasattr(x, "__iter__") and not (
            hasattr(x, "__getitem__") and hasattr(x, "__len__")
        )
        if ready_made:  # an fnn.data.Loader or any iterable of batches: already configured
            try:
                _check_streaming_args(max_queue_size, workers, use_multiprocessing)
            except ValueError as e:
                raise ValueError(
                    "max_queue_size, workers and use_multiprocessing configure the loader fit "
                    "builds from a data source; x is already an iterable of batches, so set them "
                    "where it was built (fnn.data.loader(..., workers=...))"
                ) from e
            if not isinstance(shuffle, bool):
                raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
            own = getattr(x, "batch_size", None)
            if batch_size is not None and own is not None and batch_size != own:
                raise ValueError(f"batch_size={batch_size} differs from x's batch size {own}")
            batch_size = _positive_int(own or batch_size or 32, "batch_size")
            loader = x
        else:  # a data source (name, folder, random-access source): stream it with Grain
            batch_size = _positive_int(32 if batch_size is None else batch_size, "batch_size")
            if not isinstance(shuffle, bool):
                raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
            loader = data_lib.loader(
                x, batch_size=batch_size, shuffle=shuffle, seed=self.seed, num_epochs=None,
                workers=workers, use_multiprocessing=use_multiprocessing,
                max_queue_size=max_queue_size,
            )  # fmt: skip
        parallel.check_batch_size(batch_size, self.mesh)
        if steps_per_epoch is None:
            try:
                steps = len(loader)
            except TypeError:
                raise ValueError(
                    "steps_per_epoch is required when x is an iterable without a length"
                ) from None
        else:
            steps = _positive_int(steps_per_epoch, "steps_per_epoch")
        iterator = iter(loader)
        state = getattr(self, "_iterator_state", None)
        if state is not None and hasattr(iterator, "set_state"):
            iterator.set_state(state)  # resume the stream where the checkpoint left it
        self._iterator_state = None
        first = self._next_batch(iterator, loader)
        images, labels = self._host_batch(first, batch_size, name="the first batch")
        self._check_targets(labels, images.shape, batch_size, name="the stream's labels")
        val, vstream, vbs_stream, validation_steps = self._validation_source(
            validation_data, validation_batch_size, validation_steps, batch_size,
            needs="validation_data",
        )  # fmt: skip
        vdata = vbs = vsteps = None
        if val is not None:
            vbs, vsteps = self._validation_batches(
                val, validation_batch_size, validation_steps, batch_size
            )
            vdata = self._upload(*val)
        val_freq = self._validation_freq(validation_freq)
        cbs = callbacks_lib.CallbackList(
            callbacks, trainer=self, add_history=True, terminate_on_nan=self.terminate_on_nan,
            verbose=verbose, epochs=epochs, steps=steps,
        )  # fmt: skip
        k = self.steps_per_execution
        self.stop_training = False
        self.nonfinite_step = None
        self._initial_epoch = int(initial_epoch)
        self._stream_iterator = iterator
        validate = self._validator(val, vdata, vbs, vsteps, vstream, vbs_stream, validation_steps)
        pending = first

        def train_epoch(epoch):
            nonlocal pending
            acc = self._acc_init("train")
            done = 0
            while done < steps:
                kk = min(k, steps - done)  # K host batches, stacked, run as one lax.scan
                raws = []
                for _ in range(kk):
                    raws.append(
                        pending if pending is not None else self._next_batch(iterator, loader)
                    )
                    pending = None
                batches = self._device_batches(raws, batch_size, class_weight)
                run = self._runner("train", kk, batch_size)
                self.state, acc = self._call(run, self.state, acc, batches, self._step_key)
                done += kk
                cbs.on_train_batch_end(done - 1, _LazyLogs(lambda a=acc: self._logs(a)))
            return acc

        return self._run_epochs(cbs, initial_epoch, epochs, train_epoch, validate, val_freq)

    def _stream_loader(self, x, batch_size: int, *, name: str):
        """A one-pass, unshuffled loader over a data source (or ``x`` itself if ready-made)."""
        from fnn import data as data_lib

        if hasattr(x, "__iter__") and not (hasattr(x, "__getitem__") and hasattr(x, "__len__")):
            own = getattr(x, "batch_size", None)
            if own is not None and own != batch_size:
                raise ValueError(
                    f"{name}: its batch size {own} differs from batch_size={batch_size}"
                )
            return x
        return data_lib.loader(x, batch_size=batch_size, shuffle=False, num_epochs=1)

    def _evaluate_stream(self, loader, batch_size: int, steps: int | None, *, name: str):
        """Loss and metrics over a stream, ``steps_per_execution`` host batches per call."""
        iterator = iter(loader)
        acc = self._acc_init("eval")
        done, checked = 0, False
        while steps is None or done < steps:
            want = (
                self.steps_per_execution
                if steps is None
                else min(self.steps_per_execution, steps - done)
            )
            raws = []
            for _ in range(want):
                try:
                    raws.append(next(iterator))
                except StopIteration:
                    break
            if not raws:
                break
            if not checked:
                images, labels = self._host_batch(raws[0], batch_size, name=f"{name}'s first batch")
                self._check_targets(labels, images.shape, batch_size, name=f"{name}'s labels")
                checked = True
            run = self._runner("eval", len(raws), batch_size)
            acc = self._call(
                run, self.state, acc, self._device_batches(raws, batch_size, None), self._step_key
            )
            done += len(raws)
        if done == 0:
            raise ValueError(f"{name} yielded no batches")
        if steps is not None and done < steps:
            raise ValueError(f"{name} ran out after {done} batches; steps={steps} were asked for")
        return self._logs(acc)

    @staticmethod
    def _next_batch(iterator, loader):
        try:
            return next(iterator)
        except StopIteration:
            raise ValueError(
                "x ran out of batches before steps_per_epoch × epochs steps; build it with "
                "num_epochs=None (fnn.data.loader) or lower steps_per_epoch"
            ) from None

    def _host_batch(self, raw, batch_size, *, name):
        if isinstance(raw, Mapping):
            images, labels = raw.get("image"), raw.get("label")
        elif isinstance(raw, tuple | list) and len(raw) >= 2:
            images, labels = raw[0], raw[1]
        else:
            raise TypeError(
                f"{name}: a stream must yield dicts {{'image', 'label'}} or (x, y) tuples, got "
                f"{type(raw).__name__}"
            )
        images = _array(images, f"{name} 'image'").astype(np.float32)
        labels = _array(labels, f"{name} 'label'")
        if len(images) != len(labels) or len(images) > batch_size:
            raise ValueError(
                f"{name}: {len(images)} images and {len(labels)} labels; expected equal numbers, "
                f"at most batch_size={batch_size}"
            )
        _check_finite(images, f"{name} 'image'")
        return images, labels

    def _device_batches(self, raws, batch_size, class_weight):
        """Host batches → one ``[k, B, ...]`` device array per key, split over ``"data"``."""
        host = [self._host_padded(raw, batch_size, class_weight) for raw in raws]
        stacked = {key: np.stack([h[key] for h in host]) for key in host[0]}
        return jax.device_put(stacked, _stacked_sharding(self.mesh))

    def _host_padded(self, raw, batch_size, class_weight):
        images, labels = self._host_batch(raw, batch_size, name="a streamed batch")
        n = len(images)
        weights = np.ones((n,), np.float32)
        if isinstance(raw, Mapping) and raw.get("sample_weight") is not None:
            weights = weights * np.asarray(raw["sample_weight"], np.float32)
        if class_weight is not None:
            weights = weights * _class_weights(class_weight, labels)
        mask = np.zeros((batch_size,), np.float32)
        mask[:n] = 1.0
        if n < batch_size:  # pad with repeats that carry zero weight: one shape, one compile
            pad = lambda a: np.resize(a, (batch_size, *a.shape[1:]))  # noqa: E731
            images, labels, weights = pad(images), pad(labels), pad(weights)
        return {"image": images, "label": labels, "sample_weight": weights, "mask": mask}

    def _validation_freq(self, validation_freq):
        if isinstance(validation_freq, numbers.Integral) and not isinstance(validation_freq, bool):
            if validation_freq < 1:
                raise ValueError(f"validation_freq must be >= 1, got {validation_freq}")
            f = int(validation_freq)

            class _Every:
                def __contains__(self, epoch):
                    return epoch % f == 0

            return _Every()
        if isinstance(validation_freq, Sequence | set | frozenset) and all(
            isinstance(e, numbers.Integral) and e >= 1 for e in validation_freq
        ):
            return set(int(e) for e in validation_freq)
        raise ValueError(
            f"validation_freq must be a positive int or a collection of epochs (1-based), "
            f"got {validation_freq!r}"
        )

    def _validation_source(
        self, validation_data, validation_batch_size, validation_steps, batch_size, *, needs
    ):
        """``(arrays, stream loader, stream batch size, steps)`` for ``validation_data`` (any may be
        ``None``); validation arguments without validation data raise, naming ``needs``."""
        val = vstream = vbs_stream = None
        if validation_data is not None and _is_streaming_input(validation_data):
            vbs_stream = _positive_int(validation_batch_size or batch_size, "validation_batch_size")
            parallel.check_batch_size(vbs_stream, self.mesh, name="validation_batch_size")
            vstream = self._stream_loader(validation_data, vbs_stream, name="validation_data")
            validation_steps = _positive_int(validation_steps, "validation_steps", allow_none=True)
        elif validation_data is not None:
            val = self._validation_tuple(validation_data)
        else:
            for arg, value in (
                ("validation_steps", validation_steps),
                ("validation_batch_size", validation_batch_size),
            ):
                if value is not None:
                    raise ValueError(f"{arg}={value!r} needs {needs}")
        return val, vstream, vbs_stream, validation_steps

    def _validation_batches(self, val, validation_batch_size, validation_steps, batch_size):
        """Batch size and number of batches for in-memory validation arrays (checked)."""
        vx, vy, _ = val
        vbs = _positive_int(
            batch_size if validation_batch_size is None else validation_batch_size,
            "validation_batch_size",
        )
        vbs = min(vbs, len(vx)) if validation_batch_size is None else vbs
        vsteps = self._batches(
            len(vx), vbs, validation_steps, examples="validation examples",
            batch_name="validation_batch_size", steps_name="validation_steps", label="validation ",
        )  # fmt: skip
        self._check_targets(vy, vx.shape, vbs, name="validation y")
        return vbs, vsteps

    def _validator(self, val, vdata, vbs, vsteps, vstream, vbs_stream, vsteps_stream, vstart=0):
        """``() -> logs`` evaluating the validation data (in memory or streamed), or ``None``."""
        if val is not None:
            return functools.partial(
                self._evaluate_device, vdata, len(val[0]), vbs, vsteps, start=vstart
            )
        if vstream is not None:
            return functools.partial(
                self._evaluate_stream, vstream, vbs_stream, vsteps_stream, name="validation_data"
            )
        return None

    def _validation_tuple(self, validation_data):
        if isinstance(validation_data, Mapping):
            return _prepare_arrays(validation_data, None, None, None, name="validation_data")
        if isinstance(validation_data, tuple | list) and len(validation_data) in (2, 3):
            vx, vy, *rest = validation_data
            return _prepare_arrays(
                vx, vy, rest[0] if rest else None, None, name="validation_data x"
            )
        raise ValueError(
            "validation_data must be (x_val, y_val), (x_val, y_val, sample_weight_val) or a "
            f"dict with 'image' and 'label', got {type(validation_data).__name__}"
            + (
                f" of length {len(validation_data)}"
                if isinstance(validation_data, tuple | list)
                else ""
            )
        )

    def _logs(self, acc) -> dict[str, float]:
        host = jax.device_get(acc)
        logs = {}
        for name, v in host.items():
            if name == "nonfinite_step":
                if int(v) != _NO_BAD_STEP and self.nonfinite_step is None:
                    self.nonfinite_step = int(v)
                continue
            logs[name] = float(v.total / v.count) if isinstance(v, metrics_lib.Mean) else float(v)
        return logs

    def _evaluate_device(self, vdata, n, batch_size, steps, start=0) -> dict[str, float]:
        perm = self._perm(n, _perm_length(vdata, steps, batch_size), 0, False, start=start)
        acc = self._acc_init("eval")
        done = 0
        while done < steps:
            kk = min(self.steps_per_execution, steps - done)
            batches = self._device_steps(vdata, perm, done, n, kk, batch_size)
            run = self._runner("eval", kk, batch_size)
            acc = self._call(run, self.state, acc, batches, self._step_key)
            done += kk
        return self._logs(acc)

    # -- evaluate / predict -------------------------------------------------------------------

    def evaluate(
        self,
        x=None,
        y=None,
        batch_size: int | None = None,
        verbose="auto",
        sample_weight=None,
        steps: int | None = None,
        callbacks=None,
        return_dict: bool = False,
    ):
        """Loss and metrics over ``(x, y)`` in inference mode (Keras' ``Model.evaluate``).

        Returns:
          the loss (float) when no metrics were compiled, else ``[loss, *metrics]``; with
          ``return_dict`` a dict name → float.

        Examples:
          ``loss, acc = trainer.evaluate(x_test, y_test)``
        """
        from fnn import callbacks as callbacks_lib

        _verbosity(verbose)
        if _is_streaming_input(x):
            for arg, value in (("y", y), ("sample_weight", sample_weight)):
                if value is not None:
                    raise ValueError(f"{arg}: a streaming x carries its labels; do not pass {arg}")
            batch_size = _positive_int(
                getattr(x, "batch_size", None) or batch_size or 32, "batch_size"
            )
            parallel.check_batch_size(batch_size, self.mesh)
            steps = None if steps is None else _positive_int(steps, "steps")
            loader = self._stream_loader(x, batch_size, name="x")
            cbs = callbacks_lib.CallbackList(callbacks, trainer=self)
            cbs.on_test_begin()
            logs = self._evaluate_stream(loader, batch_size, steps, name="x")
            cbs.on_test_end(logs)
            return self._evaluate_result(logs, return_dict)
        x, y, w = _prepare_arrays(x, y, sample_weight, None)
        n = len(x)
        batch_size = _positive_int(min(32, n) if batch_size is None else batch_size, "batch_size")
        steps = self._batches(n, batch_size, steps, examples="examples")
        self._check_targets(y, x.shape, batch_size)
        cbs = callbacks_lib.CallbackList(callbacks, trainer=self)
        cbs.on_test_begin()
        logs = self._evaluate_device(self._upload(x, y, w), n, batch_size, steps)
        cbs.on_test_end(logs)
        return self._evaluate_result(logs, return_dict)

    def _evaluate_result(self, logs, return_dict: bool):
        """Keras' evaluate return: the logs dict, or the loss and metrics (a scalar if only one)."""
        if return_dict:
            return logs
        values = [logs[name] for name in self.objective.names]
        return values[0] if len(values) == 1 else values

    def _batches(
        self,
        n,
        batch_size,
        steps,
        *,
        examples,
        batch_name="batch_size",
        steps_name="steps",
        label="",
    ) -> int:
        """Check ``batch_size`` (and the mesh) against ``n`` examples; return the batch count."""
        if batch_size > n:
            raise ValueError(
                f"{batch_name}={batch_size} is larger than the {n} {examples}; use at most {n}"
            )
        parallel.check_batch_size(batch_size, self.mesh, name=batch_name)
        full = -(-n // batch_size)
        steps = full if steps is None else _positive_int(steps, steps_name)
        if steps > full:
            raise ValueError(
                f"{steps_name}={steps} exceeds the {full} {label}batches of {batch_size} in the "
                f"{n} {examples}"
            )
        return steps

    def predict(
        self,
        x,
        batch_size: int | None = None,
        verbose="auto",
        steps: int | None = None,
        callbacks=None,
    ) -> np.ndarray:
        """Model outputs for ``x`` in inference mode, as a NumPy array ``[N, ...]``.

        Examples:
          ``probs = trainer.predict(x_test)``
        """
        from fnn import callbacks as callbacks_lib

        _verbosity(verbose)
        if isinstance(x, Mapping):
            x = x.get("image")
        if x is None or _is_stream(x):
            raise TypeError("x: expected in-memory inputs [N, ...] or a dict with 'image'")
        x = _array(x, "x")
        _check_finite(x, "x")
        x = x.astype(np.float32)
        n = len(x)
        batch_size = _positive_int(min(32, n) if batch_size is None else batch_size, "batch_size")
        steps = self._batches(n, batch_size, steps, examples="examples")
        self._probe_output(x.shape, batch_size)
        cbs = callbacks_lib.CallbackList(callbacks, trainer=self)
        cbs.on_predict_begin()
        data = self._upload(x)
        perm = self._perm(n, _perm_length(data, steps, batch_size), 0, False)
        outs, done = [], 0
        while done < steps:
            kk = min(self.steps_per_execution, steps - done)
            batches = self._device_steps(data, perm, done, n, kk, batch_size)
            out = self._call(self._runner("predict", kk, batch_size), self.state, batches)
            outs.append(out.reshape(kk * batch_size, *out.shape[2:]))
            done += kk
        result = np.asarray(jax.device_get(jnp.concatenate(outs)))[: min(n, steps * batch_size)]
        cbs.on_predict_end()
        return result


def compile(
    model: nnx.Module,
    *,
    optimizer="rmsprop",
    loss=None,
    metrics=None,
    loss_weights=None,
    weighted_metrics=None,
    run_eagerly: bool = False,
    steps_per_execution: int = 1,
    jit_compile="auto",
    seed: int = 0,
    devices=None,
    terminate_on_nan: bool = True,
    update_batch_stats: bool = True,
) -> Trainer:
    """Keras' ``model.compile(...)``: bind a model, an optimizer, a loss and metrics for training.

    The slides' ``model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
    metrics=["accuracy"])`` becomes ``trainer = fnn.train.compile(model, optimizer="adam",
    loss="sparse_categorical_crossentropy", metrics=["accuracy"])``; then ``trainer.fit(...)``.

    Args:
      model: a Flax NNX module taking ``[B, ...]`` inputs (trained in place by ``fit``).
      optimizer: a name for `fnn.optimizers.get` (Keras defaults; Keras' default is
        ``"rmsprop"``) or an `optax.GradientTransformation` (e.g. wrapped by
        `fnn.transfer.freeze`); it receives the full parameter tree.
      loss: a Keras loss name for `fnn.losses.get` or a callable ``f(*, y_true, y_pred) -> [B]``.
        As in Keras, labels and outputs are first rank-aligned (`fnn.losses.align_ranks`), so
        ``(N,)`` binary labels fit a one-unit ``(N, 1)`` output; other mismatches raise before
        the first step. A loss bound with ``ignore_class`` (``fnn.losses.get(
        "sparse_categorical_crossentropy", ignore_class=-1)``) averages over valid entries only.
      metrics: names (``"accuracy"`` resolves from the shapes as in Keras) or callables.
      loss_weights: one number λ scaling the loss (fnn models have one output).
      weighted_metrics: metrics averaged with ``sample_weight`` / ``class_weight``.
      run_eagerly: run the steps without `jax.jit` (slow; for debugging with prints/pdb).
      steps_per_execution: K steps per compiled call, as one `jax.lax.scan` (fewer dispatches;
        models should use `fnn.conv.Conv` so the scan's backward convolutions stay fast on CPU).
      jit_compile: ``"auto"`` or ``True`` (fnn always compiles unless ``run_eagerly``); ``False``
        is rejected, use ``run_eagerly=True``.
      seed: seeds the epoch shuffles and the step keys (Dropout, augmentation).
      devices: ``None`` for all local devices (data parallel over a ``"data"`` mesh axis), an
        int, a list of devices or a `jax.sharding.Mesh`.
      terminate_on_nan: add `fnn.callbacks.TerminateOnNaN` to every ``fit``.
      update_batch_stats: ``False`` keeps every BatchNorm in inference mode while training.

    Returns:
      a `Trainer`.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> from flax import nnx
      >>> def mse(*, y_true, y_pred):
      ...     return jnp.mean((y_pred - y_true) ** 2, axis=-1)
      >>> trainer = compile(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optimizer=optax.sgd(0.1), loss=mse, devices=1)
      >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
      >>> history = trainer.fit(x, x[:, :1], batch_size=16, epochs=3, verbose=0)
      >>> history.history["loss"][-1] < history.history["loss"][0]
      True
    """
    if jit_compile not in ("auto", True):
        raise ValueError(
            f"jit_compile={jit_compile!r}: fnn always compiles its steps; for un-jitted "
            f"debugging pass run_eagerly=True"
        )
    return Trainer(
        model,
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        loss_weights=loss_weights,
        weighted_metrics=weighted_metrics,
        run_eagerly=run_eagerly,
        steps_per_execution=steps_per_execution,
        seed=seed,
        devices=devices,
        terminate_on_nan=terminate_on_nan,
        update_batch_stats=update_batch_stats,
    )
