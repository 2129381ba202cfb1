"""Training loops for models with several outputs and targets that augmentation must move too.

Until ``fit`` takes multi-output models (dict outputs, a loss per output), the application
examples (localization, detection, segmentation) train with these three functions. They reuse
`fnn.train.TrainState` (split once, merge inside the compiled step, BatchNorm in train mode)
and differ from `fnn.train.make_train_step` in two ways:

* the loss sees the whole batch dict and the whole output pytree, ``loss_fn(outputs, batch) ->
  (loss, metrics)``, so a dict of outputs (``{"class", "box"}``) and dict targets work;
* ``augment(key, batch) -> batch`` runs inside the compiled step, before the forward pass, on
  the image AND its targets (boxes, masks: the `fnn.augment.*_with_targets` functions), with one key per
  step (``fold_in(key, step)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["make_step", "predict", "train"]


def make_step(loss_fn: Callable, *, augment: Callable | None = None, jit: bool = True):
    """A compiled train step ``step(state, batch, key) -> (state, metrics)``.

    ``loss = loss_fn(model(batch["image"]), batch)[0]``, gradients with respect to
    ``state.params``, one optimizer update; BatchNorm statistics are updated. ``metrics`` holds
    ``"loss"``, every entry of the ``loss_fn``'s metrics dict and ``"grad_norm"``.

    Args:
      loss_fn: ``(outputs, batch) -> (scalar loss, dict of scalar metrics)``.
      augment: optional ``(key, batch) -> batch`` applied first (a batch function: vmap a
        single-example augmentation over ``jax.random.split(key, B)``).
      jit: ``False`` returns the plain function.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> from fnn.train import TrainState
      >>> def loss_fn(out, batch):
      ...     return jnp.mean((out - batch["y"]) ** 2), {}
      >>> state = TrainState.create(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> step = make_step(loss_fn)
      >>> state, m = step(state, {"image": jnp.ones((4, 2)), "y": jnp.zeros((4, 1))},
      ...                 jax.random.key(0))
      >>> int(state.step), sorted(m)
      (1, ['grad_norm', 'loss'])
    """

    def step(state, batch, key):
        key = jax.random.fold_in(key, state.step)
        if augment is not None:
            batch = augment(key, batch)

        def objective(params):
            model = nnx.merge(state.spec.graphdef, params, state.model_state, copy=True)
            loss, metrics = loss_fn(model(batch["image"]), batch)
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, model_state)

        (loss, (metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        state = state.apply_gradients(grads, model_state=model_state)
        return state, {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}

    return jax.jit(step, donate_argnums=0) if jit else step


def predict(state, images, *, batch_size: int = 256):
    """Outputs of the model in ``state`` (inference mode) on ``images``, batch by batch, as NumPy.

    Examples:
      >>> import numpy as np, optax
      >>> from flax import nnx
      >>> from fnn.train import TrainState
      >>> state = TrainState.create(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> predict(state, np.ones((5, 2)), batch_size=2).shape
      (5, 3)
    """
    forward = _forward(state.spec.eval_graphdef)
    n = len(images)
    outs = []
    for start in range(0, n, batch_size):
        chunk = np.asarray(images[start : start + batch_size])
        pad = batch_size - len(chunk) if n > batch_size else 0
        if pad:  # one compiled shape for every chunk
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = forward(state.params, state.model_state, jnp.asarray(chunk))
        outs.append(jax.tree.map(lambda a, p=pad: np.asarray(a)[: len(a) - p], out))
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)


_FORWARDS: dict = {}


def _forward(graphdef):
    if graphdef not in _FORWARDS:
        _FORWARDS[graphdef] = jax.jit(lambda p, s, x: nnx.merge(graphdef, p, s)(x))
    return _FORWARDS[graphdef]


def train(
    state, data: dict, step, *, steps: int, batch_size: int, seed: int = 0, log_every: int = 0
):
    """Run ``steps`` train steps on shuffled batches of the in-memory dict ``data``.

    Every epoch is a fresh permutation (seeded); the last incomplete batch of an epoch is
    dropped, so one compiled shape serves every step. Returns ``(state, last metrics)`` (a dict
    of floats); prints the metrics every ``log_every`` steps when ``log_every > 0``.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> from flax import nnx
      >>> from fnn.train import TrainState
      >>> state = TrainState.create(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> step = make_step(lambda out, b: (jnp.mean((out - b["y"]) ** 2), {}))
      >>> data = {"image": np.ones((8, 2), np.float32), "y": np.zeros((8, 1), np.float32)}
      >>> state, m = train(state, data, step, steps=3, batch_size=4)
      >>> int(state.step)
      3
    """
    n = len(next(iter(data.values())))
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}"
        )
    device = jax.device_put({k: np.asarray(v) for k, v in data.items()})
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    take = jax.jit(lambda d, i: jax.tree.map(lambda a: a[i], d))
    per_epoch = n // batch_size
    metrics = {}
    start = time.time()
    for t in range(steps):
        if t % per_epoch == 0:
            perm = rng.permutation(n)
        idx = perm[(t % per_epoch) * batch_size : (t % per_epoch + 1) * batch_size]
        state, metrics = step(state, take(device, jnp.asarray(idx)), key)
        if log_every and (t + 1) % log_every == 0:
            print(
                f"step {t + 1}: "
                + ", ".join(f"{k} {float(v):.4f}" for k, v in metrics.items())
                + f" ({time.time() - start:.0f} s)"
            )
    return state, {k: float(v) for k, v in metrics.items()}
