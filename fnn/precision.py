"""Mixed precision as an opt-in policy: low-precision compute, float32 master weights.

Data contract: parameters stay float32 (the "master weights" the optimizer updates); layers compute
in ``policy.compute_dtype`` (bfloat16 or float16) by casting their inputs and parameters inside the
call (Flax's ``dtype=`` attribute); logits and the loss are float32 (``policy.output_dtype``).

Keras calls these policies ``"float32"``, ``"mixed_bfloat16"`` and ``"mixed_float16"``
(``keras.mixed_precision.set_global_policy``); PyTorch uses ``torch.autocast`` plus
``torch.amp.GradScaler`` for float16. bfloat16 has float32's exponent range, so it needs no loss
scaling; float16 (max 65504, smallest normal 6.1e-5) does: small gradients underflow to 0. The
dynamic loss scale here follows the usual rule (Micikevicius et al., "Mixed Precision Training",
2018; Keras' ``LossScaleOptimizer``, PyTorch's ``GradScaler``): multiply the loss by ``S``,
divide the gradients by ``S``; if any gradient is not finite, skip the update and halve ``S``;
after ``period`` finite steps in a row, double ``S``.

What training guarantees (`fnn.steps`, `fnn.trainer`):

* ``TrainState.create(model, tx, loss_scale="auto")`` (and ``compile(..., loss_scale="auto")``)
  gives a model that computes in float16 (`apply` with ``"mixed_float16"``, or any layer with
  ``dtype=float16``) a `DynamicLossScale` with Keras' defaults; float32 and bfloat16 models get
  none. ``loss_scale=None`` turns it off, a `DynamicLossScale` sets it explicitly (any model).
* The scale lives in the `TrainState` (``state.loss_scale``), so checkpoints save it and
  ``Trainer.restore`` brings it back; every train step (``make_train_step``, ``fit``) uses it.
* A step whose unscaled gradients are not all finite is skipped: parameters, optimizer state and
  BatchNorm statistics stay as they were (so a schedule's step count in the optimizer state
  does not advance, as in Keras), ``state.step`` (the key's counter) still counts it, ``S``
  halves. Such a step does not trip `fnn.callbacks.TerminateOnNaN`; a non-finite (unscaled)
  loss or non-finite parameters do. ``fit`` logs ``loss_scale`` (its value at the epoch's end),
  and ``grad_norm`` averages over applied steps only (NaN for an epoch of skipped steps).
* Model outputs in float16 or bfloat16 are cast to float32 before the loss and metrics, and
  ``predict`` returns float32.
* Trained with the defaults, the tiny CNN of ``spec_tests/test_precision.py`` follows its float32
  twin's per-epoch losses to within 1% relative over 3 epochs of Adam (measured: about 1e-4).
* With float32 compute, scaling by a power of two changes no parameter (tested bit for bit).

Keras' ``LossScaleOptimizer`` does the same inside the optimizer (its ``iterations`` do not count
a skipped step); PyTorch's ``GradScaler`` likewise skips ``optimizer.step()``. JMP's
``jmp.DynamicLossScale`` has the same rule, but JMP's last release is 0.0.4 (January 2023) and
this is thirty lines already tested here, so fnn adds no dependency for it.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from fnn._validation import lookup

__all__ = [
    "Policy",
    "get",
    "apply",
    "DynamicLossScale",
    "all_finite",
    "computes_in_float16",
    "resolve_loss_scale",
    "POLICIES",
]


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which dtype parameters are stored in, layers compute in, and outputs are returned in."""

    name: str
    param_dtype: jnp.dtype = jnp.float32
    compute_dtype: jnp.dtype = jnp.float32
    output_dtype: jnp.dtype = jnp.float32

    @property
    def needs_loss_scaling(self) -> bool:
        """True for float16 compute (bfloat16 and float32 do not underflow like float16)."""
        return jnp.dtype(self.compute_dtype) == jnp.float16


#: Keras' policy names.
POLICIES = {
    "float32": Policy("float32"),
    "mixed_bfloat16": Policy("mixed_bfloat16", compute_dtype=jnp.bfloat16),
    "mixed_float16": Policy("mixed_float16", compute_dtype=jnp.float16),
}


def get(policy: str | Policy) -> Policy:
    """A `Policy` from a Keras name (``"float32"``, ``"mixed_bfloat16"``, ``"mixed_float16"``).

    Examples:
      >>> get("mixed_bfloat16").compute_dtype
      <class 'jax.numpy.bfloat16'>
    """
    if isinstance(policy, Policy):
        return policy
    return lookup("precision policy", policy, POLICIES)


def apply(model: nnx.Module, policy: str | Policy) -> nnx.Module:
    """Set every layer of ``model`` that has a ``dtype`` attribute to compute in the policy's dtype.

    Convolutions, dense layers, BatchNorm (Flax computes its statistics in float32 whatever
    ``dtype`` is) get ``dtype = compute_dtype``; their parameters are untouched (float32), so the
    optimizer updates float32 master weights and autodiff returns float32 gradients (the casts are
    differentiated). Returns the same model, changed in place. `fnn.steps` and ``fit`` cast the
    model output to ``policy.output_dtype`` (float32) before the loss; a hand-written loop must
    do it itself (fnn's losses do their arithmetic in the logits' dtype).

    Examples:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> layer = apply(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), "mixed_bfloat16")
      >>> layer(jnp.ones((1, 3))).dtype, layer.kernel.dtype
      (dtype(bfloat16), dtype('float32'))
    """
    policy = get(policy)
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.Conv | nnx.Linear | nnx.BatchNorm | nnx.LayerNorm):
            module.dtype = policy.compute_dtype
    return model


def all_finite(tree) -> jax.Array:
    """``True`` when every element of every leaf is finite (a scalar bool array)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class DynamicLossScale(NamedTuple):
    """Dynamic loss scaling for float16 training.

    ``scale_loss(L) = S·L``; ``unscale(g) = g / S``; ``adjust(finite)``: if the gradients were
    not finite, ``S ← max(S / factor, min_scale)`` and the counter resets; otherwise the counter
    counts up and ``S ← S·factor`` every ``period`` finite steps. Skip the optimizer update when
    they were not finite (``jnp.where`` / `optax.apply_if_finite`). Defaults as Keras'
    ``LossScaleOptimizer`` (initial ``2**15``, growth every 2000 steps, factor 2).

    Examples:
      >>> import jax.numpy as jnp
      >>> ls = DynamicLossScale.create()
      >>> float(ls.scale_loss(jnp.float32(1.0)))
      32768.0
      >>> float(ls.adjust(jnp.array(False)).loss_scale)
      16384.0
    """

    loss_scale: jax.Array  # float32 scalar S
    counter: jax.Array  # int32 scalar: finite steps since the last change
    period: int = 2000
    factor: float = 2.0
    min_scale: float = 1.0

    @classmethod
    def create(cls, initial_scale: float = 2.0**15, *, period: int = 2000, factor: float = 2.0):
        if not initial_scale > 0:
            raise ValueError(f"initial_scale must be > 0, got {initial_scale}")
        if period < 1 or factor <= 1:
            raise ValueError(f"period must be >= 1 and factor > 1, got {period}, {factor}")
        return cls(jnp.float32(initial_scale), jnp.int32(0), period, factor)

    def scale_loss(self, loss):
        return loss * self.loss_scale.astype(loss.dtype)

    def unscale(self, grads):
        inv = 1.0 / self.loss_scale
        return jax.tree.map(lambda g: (g.astype(jnp.float32) * inv).astype(g.dtype), grads)

    def adjust(self, grads_finite) -> DynamicLossScale:
        grow = self.counter + 1 >= self.period
        scale = jnp.where(
            grads_finite,
            jnp.where(grow, self.loss_scale * self.factor, self.loss_scale),
            jnp.maximum(self.loss_scale / self.factor, self.min_scale),
        )
        counter = jnp.where(grads_finite & ~grow, self.counter + 1, 0).astype(jnp.int32)
        return self._replace(loss_scale=scale.astype(jnp.float32), counter=counter)


jax.tree_util.register_pytree_node(
    DynamicLossScale,
    lambda s: ((s.loss_scale, s.counter), (s.period, s.factor, s.min_scale)),
    lambda aux, children: DynamicLossScale(*children, *aux),
)


def computes_in_float16(model: nnx.Module) -> bool:
    """True when some layer of ``model`` computes in float16 (its ``dtype`` attribute).

    Examples:
      >>> from flax import nnx
      >>> computes_in_float16(apply(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), "mixed_float16"))
      True
      >>> computes_in_float16(apply(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), "mixed_bfloat16"))
      False
    """
    for _, module in nnx.iter_modules(model):
        dtype = getattr(module, "dtype", None)
        if dtype is not None and jnp.dtype(dtype) == jnp.float16:
            return True
    return False


def resolve_loss_scale(loss_scale, model: nnx.Module) -> DynamicLossScale | None:
    """The loss scale a `fnn.steps.TrainState` starts with.

    ``"auto"``: a fresh `DynamicLossScale` (Keras' defaults) when `computes_in_float16`, else
    ``None``; ``None`` or ``False``: no scaling; ``True``: a fresh `DynamicLossScale`; a
    `DynamicLossScale`: that one (e.g. ``DynamicLossScale.create(2.0**10, period=500)``).

    Examples:
      >>> from flax import nnx
      >>> resolve_loss_scale("auto", nnx.Linear(2, 2, rngs=nnx.Rngs(0))) is None
      True
      >>> model = apply(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), "mixed_float16")
      >>> float(resolve_loss_scale("auto", model).loss_scale)
      32768.0
    """
    if isinstance(loss_scale, DynamicLossScale):
        return loss_scale
    if isinstance(loss_scale, str) and loss_scale == "auto":
        return DynamicLossScale.create() if computes_in_float16(model) else None
    if loss_scale is None or loss_scale is False:
        return None
    if loss_scale is True:
        return DynamicLossScale.create()
    raise ValueError(
        f"loss_scale must be 'auto', None, True or a fnn.precision.DynamicLossScale, "
        f"got {loss_scale!r}"
    )
