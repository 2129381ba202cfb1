"""The lecture's optimizers as pure functions packaged as `optax.GradientTransformation`.

Data contract
-------------
Every optimizer here is an ``optax.GradientTransformation``: ``init(params) -> state`` and
``update(grads, state, params=None) -> (updates, new_state)``, both pure. ``params`` and ``grads``
are pytrees of floating-point arrays with the same structure and leaf shapes; ``updates`` has that
structure too and is *added* to the parameters (``optax.apply_updates(params, updates)``), so
``updates = -η·direction``. Each state is a typed ``NamedTuple`` whose first two fields are

* ``count``: int32 scalar, the number of updates applied so far (``t − 1`` inside the update that
  produces step ``t``);
* ``learning_rate``: float32 scalar (float64 under ``jax.enable_x64``), the learning rate used by the most recent update (before the
  first update, the rate the first update will use). `learning_rate` reads it back from any
  state, also inside ``optax.chain`` / ``optax.masked`` / ``optax.inject_hyperparams``.

followed by per-parameter slots (trees shaped like ``params``). They work with ``optax.chain``
(e.g. after ``optax.clip_by_global_norm``), learning-rate schedules, ``optax.masked``,
``optax.inject_hyperparams`` and ``optax.apply_updates``.

Step convention (the same as Optax's and Keras'): in the update that produces step ``t = 1, 2,
…`` a learning-rate *schedule* is evaluated at ``count = t − 1`` (so the first update uses
``schedule(0)``), while bias corrections use ``t`` (``1 − β₁ᵗ``).

Two sets of defaults
--------------------
* The factories (`adam`, `rmsprop`, ...) take Optax's hyperparameter names and Optax's defaults,
  and compute Optax's formulas unless ``convention="keras"`` asks for Keras' formulation.
* `get` (``fnn.optimizers.get("adam")``) returns the Keras optimizer of that name: Keras' default
  hyperparameters and Keras' formulation, as the lecture's ``compile(optimizer="adam")`` does.

| name | slide / paper rule (per element) | Keras convention differs by |
|---|---|---|
| `sgd` | θ ← θ − η∇ | (same) |
| `momentum` | v ← γv + η∇, θ ← θ − v | (same; Optax/PyTorch keep v/η) |
| `nesterov` | v ← γv + η∇, θ ← θ − (γv + η∇) | (same) |
| `adagrad` | G ← G + ∇², θ ← θ − η∇/√(G + ε) | (same rule, Keras' rounding) |
| `rmsprop` | E ← ρE + (1−ρ)∇², θ ← θ − η∇/√(E + ε) | (same rule, Keras' rounding) |
| `adam` | bias-corrected m̂/(√v̂ + ε) | ε added to the uncorrected √v |
| `adam_simplified` | m/√(v + ε), no bias correction | — |
| `adamw` | adam + decoupled decay η·λ·θ | (same decay, Keras' adam) |
| `amsgrad` | adam with v̂max = max(v̂max, v̂) | max of the raw v |
| `adamax` | m̂ / max(β₂u, \\|∇\\| + ε) | m̂ / (max(β₂u, \\|∇\\|) + ε) |
| `nadam` | Nesterov-Adam (Optax: b1·m̂ₜ₊₁ + (1−b1)ĝ) | Dozat's μₜ = β₁(1 − ½·0.96ᵗ) |
| `adadelta` | Zeiler's Δ = −√(E[Δ²]+ε)/√(E[∇²]+ε)·∇ | (same rule, Keras' rounding) |
| `lion` | θ ← θ − η(sign(β₁m + (1−β₁)∇) + λθ), m ← β₂m + (1−β₂)∇ | decay before the step |
| `ftrl` | FTRL-Proximal (Keras only) | — |

Keras' float32 arithmetic
-------------------------
``convention="keras"`` (and every `get` optimizer) computes Keras 3's formula in Keras' order of
float32 operations, casts included (Nadam's ``1 − β₁`` is ``1 − float32(β₁)``; weight decay is
``θ − θ·λ·η`` assigned before the step). Run eagerly, each update is then bit for bit that of
Keras on its JAX backend (where XLA also turns ``x / scalar`` into ``x · (1/scalar)``), step after
step; the exceptions are one rounding in some steps (the spec tests keep them within 1e-6
relative over 60–200 steps): FTRL (Keras assigns θ_new, an Optax update adds θ_new − θ) and weight
decay in a step that changes θ by more than a factor of two (θ₂ − θ is then rounded). Under
``jax.jit`` XLA:CPU contracts ``a·b + c`` into fused multiply-adds, in fnn's programs and in
Keras' compiled train steps alike, so each compiled update agrees to a few ulps (and, like any
rounding, the differences then accumulate over the steps).

Flat buffers; no fused path
---------------------------
`flatten` views a parameter tree as one flat buffer (the loss unflattens it), so any rule here
updates it in a few big loops instead of a few per leaf. ``fused_adam`` (Adam with interleaved
moments for such buffers) was removed in favour of `adam`: measured side by side it reached
1.0–1.2× Optax Adam, never the 1.3× it was kept for, because XLA:CPU cannot write θ, m and v in
one loop (``BENCHMARKS.md``). The name remains as a deprecated alias of `adam`.

References: the lecture slides "Training CNNs: optimizers"; Kingma & Ba 2015 (Adam, AdaMax);
Duchi et al. 2011 (AdaGrad); Tieleman & Hinton 2012 (RMSProp); Zeiler 2012 (AdaDelta); Dozat
2016 (Nadam); Loshchilov & Hutter 2019 (AdamW); Reddi et al. 2018 (AMSGrad); McMahan et al. 2013
(FTRL-Proximal); Chen et al. 2023 (Lion).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from fnn._validation import lookup

__all__ = [
    "AdadeltaState",
    "AdagradState",
    "AdamState",
    "AdamaxState",
    "FtrlState",
    "LionState",
    "MomentumState",
    "NadamState",
    "RmspropState",
    "SgdState",
    "adadelta",
    "adagrad",
    "adam",
    "adam_simplified",
    "adamax",
    "adamw",
    "amsgrad",
    "flatten",
    "ftrl",
    "get",
    "learning_rate",
    "lion",
    "momentum",
    "nadam",
    "names",
    "nesterov",
    "rmsprop",
    "sgd",
]

ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]
_CONVENTIONS = ("optax", "keras")


# ----------------------------------------------------------------------------------------------
# States. count: int32 [], learning_rate: float32 []; slots are trees shaped like params.
# ----------------------------------------------------------------------------------------------


class SgdState(NamedTuple):
    """State of `sgd`: only the step counter and the last learning rate."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32


class MomentumState(NamedTuple):
    """State of `momentum` / `nesterov`: the slide's velocity ``v`` (already scaled by η)."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    velocity: Any  # tree like params


class AdagradState(NamedTuple):
    """State of `adagrad`: the running sum of squared gradients ``G``."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    sum_of_squares: Any  # tree like params


class RmspropState(NamedTuple):
    """State of `rmsprop`: ``nu`` = E[∇²]; ``mu`` = E[∇] when centered; ``momentum`` buffer."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    nu: Any  # tree like params
    mu: Any  # tree like params, or None when not centered
    momentum: Any  # tree like params, or None without momentum


class AdamState(NamedTuple):
    """State of `adam`, `adamw`, `amsgrad`, `adam_simplified`: moments ``mu``, ``nu``."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    mu: Any  # tree like params: first moment m
    nu: Any  # tree like params: second moment v
    nu_max: Any  # tree like params (AMSGrad's running max), or None


class AdamaxState(NamedTuple):
    """State of `adamax`: first moment ``mu`` and the exponentially weighted infinity norm."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    mu: Any  # tree like params
    nu: Any  # tree like params: u = max(β₂u, |∇|)


class NadamState(NamedTuple):
    """State of `nadam`; ``mu_product`` = Πμₛ of Dozat's momentum schedule (Keras convention)."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    mu: Any  # tree like params
    nu: Any  # tree like params
    mu_product: jax.Array  # shape=(), dtype=float32 (float64 under x64); 1 for Optax


class AdadeltaState(NamedTuple):
    """State of `adadelta`: running averages E[∇²] (``e_g``) and E[Δθ²] (``e_x``)."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    e_g: Any  # tree like params
    e_x: Any  # tree like params


class LionState(NamedTuple):
    """State of `lion`: the momentum ``mu`` (an EMA of gradients with β₂)."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    mu: Any  # tree like params


class FtrlState(NamedTuple):
    """State of `ftrl`: the accumulator ``n`` of squared gradients and the linear term ``z``."""

    count: jax.Array  # shape=(), dtype=int32
    learning_rate: jax.Array  # shape=(), dtype=float32
    accumulator: Any  # tree like params
    linear: Any  # tree like params


# ----------------------------------------------------------------------------------------------
# Validation (only concrete values are checked: inside jit / inject_hyperparams they are traced).
# ----------------------------------------------------------------------------------------------


def _concrete(x) -> float | None:
    """``float(x)`` for a concrete scalar, None for tracers and schedules."""
    if callable(x) or isinstance(x, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(x)
    except Exception:  # noqa: BLE001 - anything not array-like is reported by the caller
        return None
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise TypeError(f"expected a real scalar, got {type(x).__name__} with shape {arr.shape}")
    return float(arr)


def _check_lr(learning_rate, *, positive: bool = False) -> None:
    if learning_rate is None:
        raise ValueError("learning_rate must be a finite number >= 0 or a schedule, got None")
    if callable(learning_rate):
        return
    value = _concrete(learning_rate)
    if value is None:
        return
    bad = not math.isfinite(value) or value < 0 or (positive and value == 0)
    if bad:
        expected = "> 0" if positive else ">= 0"
        raise ValueError(
            f"learning_rate must be a finite number {expected} or an Optax schedule, "
            f"got {learning_rate!r}"
        )


def _check_unit(name: str, value, *, closed: bool = False) -> None:
    """Check ``value`` ∈ [0, 1) (or [0, 1] when closed)."""
    v = _concrete(value)
    if v is None:
        return
    ok = math.isfinite(v) and 0.0 <= v and (v <= 1.0 if closed else v < 1.0)
    if not ok:
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def _check_nonneg(name: str, value) -> None:
    if value is None and name == "weight_decay":
        return
    v = _concrete(value)
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _is_on(value) -> bool:
    """Static switch: False for a concrete 0 (or None), True otherwise (also when traced)."""
    if value is None:
        return False
    v = _concrete(value)
    return v is None or v != 0.0


def _check_convention(convention: str) -> None:
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {_CONVENTIONS}, got {convention!r}")


def _check_adam_args(learning_rate, b1, b2, eps, eps_root, weight_decay, convention) -> bool:
    """The Adam family's hyperparameter checks (``eps_root`` None: the rule has none).

    Returns whether ``convention`` is ``"keras"``.
    """
    _check_lr(learning_rate)
    _check_unit("b1", b1)
    _check_unit("b2", b2)
    _check_nonneg("eps", eps)
    if eps_root is not None:
        _check_nonneg("eps_root", eps_root)
    _check_nonneg("weight_decay", weight_decay)
    _check_convention(convention)
    return convention == "keras"


# ----------------------------------------------------------------------------------------------
# Shared machinery
# ----------------------------------------------------------------------------------------------


def _lr_value(learning_rate, count) -> jax.Array:
    """The learning rate for the update taking the state from ``count`` to ``count + 1``."""
    lr = learning_rate(count) if callable(learning_rate) else learning_rate
    return jnp.asarray(lr, dtype=_float())


def _describe(tree) -> str:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    shown = ", ".join(
        f"{jax.tree_util.keystr(path) or '<root>'}: {tuple(np.shape(leaf))}"
        for path, leaf in leaves[:6]
    )
    more = f", ... ({len(leaves)} leaves)" if len(leaves) > 6 else ""
    return "{" + shown + more + "}"


def _check_tree(grads, reference, what: str):
    """Raise a ValueError when ``grads`` does not match ``reference`` (structure and shapes)."""
    g_def = jax.tree.structure(grads)
    r_def = jax.tree.structure(reference)
    if g_def != r_def:
        raise ValueError(
            f"grads tree does not match the {what} tree: expected {_describe(reference)}, "
            f"got {_describe(grads)}"
        )
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(reference)):
        if np.shape(g) != np.shape(r):
            raise ValueError(
                f"grads leaf {jax.tree_util.keystr(path) or '<root>'} has shape "
                f"{tuple(np.shape(g))}, but the {what} leaf has shape {tuple(np.shape(r))}"
            )


def _map(fn: Callable, n_out: int, tree, *others):
    """Apply ``fn`` leaf-wise to ``tree`` and ``others`` (None entries allowed) and unzip.

    ``fn`` returns a tuple of ``n_out`` arrays per leaf; the result is a tuple of ``n_out`` trees
    shaped like ``tree``.
    """
    treedef = jax.tree.structure(tree)
    leaves = treedef.flatten_up_to(tree)
    other_leaves = [[None] * len(leaves) if o is None else treedef.flatten_up_to(o) for o in others]
    outs = [fn(*args) for args in zip(leaves, *other_leaves)]
    return tuple(treedef.unflatten([o[i] for o in outs]) for i in range(n_out))


def _needs_params(name: str, params):
    if params is None:
        raise ValueError(
            f"{name} needs params: call tx.update(grads, state, params) (weight decay / FTRL "
            "use the current parameter values)"
        )


def _float():
    """JAX's default float dtype: float32, or float64 under ``jax.enable_x64``."""
    return jnp.result_type(float)


def _pow(base: float | jax.Array, count: jax.Array) -> jax.Array:
    """``base ** count`` in the default float dtype (count is int32)."""
    return jnp.asarray(base, _float()) ** count.astype(_float())


def _zeros_like(params):
    return jax.tree.map(jnp.zeros_like, params)


def _keras_decay(u, p, eta, weight_decay):
    """Keras' decoupled weight decay around the update ``u``, as one additive update.

    Keras first assigns ``θ₁ = θ − θ·λ·η`` (in this order, in θ's dtype), then ``θ₂ = θ₁ + u``.
    Returned is ``θ₂ − θ``: ``θ + (θ₂ − θ)`` gives Keras' θ₂ exactly whenever θ₂ lies within a factor
    of 2 of θ (Sterbenz), i.e. for every step that does not change θ's binary exponent by more than one.
    """
    decayed = p - p * jnp.asarray(weight_decay, p.dtype) * eta.astype(p.dtype)
    return (decayed + u) - p


def _optimizer(
    name: str,
    state_type: type,
    learning_rate: ScalarOrSchedule,
    weight_decay,
    mask,
    rule: Callable,
    init_fields: Callable[[Any], dict] = lambda params: {},
    *,
    params_required: bool = False,
    slot_shape: Callable[[Any], Any] = lambda slot: slot,
) -> optax.GradientTransformation:
    """Package a rule's per-leaf equations as an ``optax.GradientTransformation``.

    The scaffolding every rule shares lives here, so that each factory states only its own
    equations. ``name`` names the rule in errors; ``learning_rate``, ``weight_decay`` and
    ``mask`` are the factory's arguments as given. ``init(params)`` is
    ``state_type(count=0, learning_rate=η(0), **init_fields(params))``.
    ``update(grads, state, params)``:

    1. requires ``params`` when ``params_required``; checks ``grads`` against the state's first
       slot (the field after ``learning_rate``, mapped to params' shapes by ``slot_shape``) or,
       for a state without slots, against ``params`` when they are given;
    2. ``lr`` = η at the old count, ``count`` = the old count + 1 (the step t this update makes);
    3. when weight decay is on, requires ``params`` and resolves ``mask`` (a tree of bools or a
       function of params; None decays every leaf);
    4. ``rule(lr, count, state)`` returns ``leaf(g, *slots, p, decayed) -> (update, *slots)``,
       mapped over the leaves of ``grads``, of each slot (the state's fields after
       ``learning_rate``, in order; a slot that is None stays None), of ``params`` (None when
       not given) and ``decayed`` (a Python bool: weight decay applies to this leaf). ``rule``
       may return ``(leaf, scalars)`` instead: ``scalars`` replaces those (non-slot) fields.
    """
    decay_on = _is_on(weight_decay)

    def init_fn(params):
        count = jnp.zeros([], jnp.int32)
        return state_type(
            count=count, learning_rate=_lr_value(learning_rate, count), **init_fields(params)
        )

    def update_fn(grads, state, params=None):
        if params_required:
            _needs_params(name, params)
        if len(state) > 2:
            _check_tree(grads, slot_shape(state[2]), "optimizer state (params)")
        elif params is not None:
            _check_tree(grads, params, "params")
        lr = _lr_value(learning_rate, state.count)
        count = optax.safe_increment(state.count)
        treedef = jax.tree.structure(grads)
        decayed = [decay_on] * treedef.num_leaves
        if decay_on:
            _needs_params(f"{name} with weight_decay", params)
            if mask is not None:
                chosen = treedef.flatten_up_to(mask(params) if callable(mask) else mask)
                decayed = [d is None or bool(d) for d in chosen]
        made = rule(lr, count, state)
        leaf, scalars = made if isinstance(made, tuple) else (made, {})
        fields = [f for f in state._fields[2:] if f not in scalars]
        slots = [getattr(state, f) for f in fields]
        updates, *new = _map(
            leaf, 1 + len(fields), grads, *slots, params, treedef.unflatten(decayed)
        )
        new_slots = {f: None if old is None else s for f, old, s in zip(fields, slots, new)}
        return updates, state_type(count=count, learning_rate=lr, **new_slots, **scalars)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------------------------
# Gradient descent: sgd, momentum, nesterov
# ----------------------------------------------------------------------------------------------


def sgd(
    learning_rate: ScalarOrSchedule = 0.01,
    momentum: float | None = None,
    nesterov: bool = False,
    *,
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""Gradient descent: ``θ ← θ − η ∇θ L`` (batch, mini-batch or stochastic).

    The slide's three variants differ only in the data the gradient is taken over: the whole
    training set (batch GD, the gradient of the mean loss), a mini-batch, or one example (SGD).
    The rule is the same. With ``momentum`` this returns `momentum` (the slide's form).

    Args:
      learning_rate: η, a float ≥ 0 or an Optax schedule ``count -> η``. Keras' default is 0.01.
      momentum: γ; None (or 0 without ``nesterov``) gives plain gradient descent.
      nesterov: use Nesterov's look-ahead (see `nesterov`).
      weight_decay: λ or None (off), Keras' decoupled decay ``θ ← θ(1 − ηλ)`` before the step (0 = off).
      mask: pytree of bools (or a function of params) choosing which leaves are decayed.

    Returns:
      ``optax.GradientTransformation`` with state `SgdState` (or `MomentumState`).

    Optax ``optax.sgd(η)``, Keras ``SGD(η)`` and PyTorch ``SGD(lr=η)`` compute the same thing.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> tx = sgd(0.1)
      >>> params = {"w": jnp.array([1.0, 2.0])}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([1.0, -1.0])}, state)
      >>> optax.apply_updates(params, updates)["w"]
      Array([0.9, 2.1], dtype=float32)
    """
    if momentum is not None:
        m = _concrete(momentum)
        if m is None or m != 0.0 or nesterov:
            return globals()["momentum"](
                learning_rate, momentum, nesterov, weight_decay=weight_decay, mask=mask
            )
    _check_lr(learning_rate)
    _check_nonneg("weight_decay", weight_decay)

    def rule(lr, count, state):
        step = -lr if callable(learning_rate) else -learning_rate

        def leaf(g, p, decayed):
            u = jnp.asarray(step, g.dtype) * g
            if decayed:
                u = _keras_decay(u, p, lr, weight_decay)
            return (u,)

        return leaf

    return _optimizer("sgd", SgdState, learning_rate, weight_decay, mask, rule)


def momentum(
    learning_rate: ScalarOrSchedule = 0.01,
    momentum: float = 0.9,
    nesterov: bool = False,
    *,
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""SGD with momentum in the slide's form: ``v ← γ v + η ∇``, ``θ ← θ − v``.

    With ``nesterov=True`` the step looks ahead: ``θ ← θ − (γ v + η ∇)`` (after updating v).

    Args:
      learning_rate: η, a float ≥ 0 or an Optax schedule.
      momentum: γ ∈ [0, 1).
      nesterov: Nesterov accelerated gradient (Sutskever et al. 2013, as Keras and Optax write it).
      weight_decay: λ or None (off), Keras' decoupled decay ``θ ← θ(1 − ηλ)`` before the step.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `MomentumState`; ``velocity`` is the slide's v.

    How others differ: Keras ``SGD(momentum=γ)`` keeps ``m = −v`` and is identical. Optax
    ``optax.sgd(η, momentum=γ)`` and PyTorch keep a trace ``b ← γ b + ∇`` and step ``−η b``; for a
    constant η, ``v = η b`` exactly, but with a learning-rate schedule the slide's v remembers
    each past gradient with the η of *its* step while Optax rescales the whole trace by today's η.
    Some texts (and fastai) use the EMA ``v ← β v + (1 − β)∇``, i.e. η' = η/(1 − β).

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = momentum(0.1, momentum=0.9)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.ones(2), state)
      >>> u, state = tx.update(jnp.ones(2), state)
      >>> state.velocity  # 0.9·0.1 + 0.1
      Array([0.19, 0.19], dtype=float32)
    """
    _check_lr(learning_rate)
    _check_unit("momentum", momentum)
    _check_nonneg("weight_decay", weight_decay)

    def rule(lr, count, state):
        def leaf(g, v, p, decayed):
            eta = lr.astype(g.dtype)
            g_eta = eta * g
            v = momentum * v + g_eta
            u = -(momentum * v + g_eta) if nesterov else -v
            if decayed:
                u = _keras_decay(u, p, eta, weight_decay)
            return u, v

        return leaf

    def init_fields(params):
        return dict(velocity=_zeros_like(params))

    return _optimizer(
        "momentum", MomentumState, learning_rate, weight_decay, mask, rule, init_fields
    )


def nesterov(
    learning_rate: ScalarOrSchedule = 0.01,
    momentum: float = 0.9,
    *,
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""Nesterov momentum: ``v ← γ v + η ∇``, ``θ ← θ − (γ v + η ∇)``.

    The gradient is evaluated at the current θ, and the step uses the velocity one step ahead
    (Sutskever et al. 2013's reformulation, used by Keras, Optax and PyTorch).

    Args:
      learning_rate: η, a float ≥ 0 or an Optax schedule.
      momentum: γ ∈ [0, 1).
      weight_decay: λ or None (off), Keras' decoupled decay.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `MomentumState`.

    Keras ``SGD(momentum=γ, nesterov=True)`` is identical; Optax ``optax.sgd(η, γ,
    nesterov=True)`` and PyTorch equal it for a constant η (``v = η·trace``).

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = nesterov(0.1, momentum=0.5)
      >>> u, _ = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
      >>> u  # -(0.5·0.1 + 0.1)
      Array([-0.15], dtype=float32)
    """
    return globals()["momentum"](
        learning_rate, momentum, nesterov=True, weight_decay=weight_decay, mask=mask
    )


# ----------------------------------------------------------------------------------------------
# Adaptive learning rates: adagrad, rmsprop, adadelta
# ----------------------------------------------------------------------------------------------


def adagrad(
    learning_rate: ScalarOrSchedule = 0.001,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    convention: str = "optax",
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""AdaGrad, the slide's form: ``G ← G + ∇²``, ``θ ← θ − η ∇ / √(G + ε)``.

    Each coordinate's effective step ``η/√(G + ε)`` can only shrink, since G only grows.

    Args:
      learning_rate: η (Keras default 0.001).
      initial_accumulator_value: G₀. The slide starts at 0; Keras and Optax start at 0.1 (the
        default here), which keeps the first steps ≤ η·|∇|/√0.1.
      eps: ε, added inside the root (as Keras and Optax do).
      convention: ``"optax"`` (``∇·rsqrt(G + ε)``, 0 where G = 0, as ``optax.adagrad``) or
        ``"keras"`` (``η∇/√(G + ε)`` in that order, float32 op for op as Keras 3's ``Adagrad``).
        The same rule; the two round differently (≈ 1 ulp per step).
      weight_decay: λ or None (off), Keras' decoupled decay.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `AdagradState`.

    PyTorch's ``Adagrad`` starts at 0 and puts ε
    outside the root: ``η ∇/(√G + ε)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = adagrad(0.5, initial_accumulator_value=0.0, eps=0.0)
      >>> u, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> u  # -0.5·2/√4
      Array([-0.5], dtype=float32)
    """
    _check_lr(learning_rate)
    _check_nonneg("initial_accumulator_value", initial_accumulator_value)
    _check_nonneg("eps", eps)
    _check_nonneg("weight_decay", weight_decay)
    _check_convention(convention)
    keras = convention == "keras"

    def rule(lr, count, state):
        def leaf(g, s, p, decayed):
            eta = lr.astype(g.dtype)
            s = g * g + s
            if keras:  # Keras: θ −= (η∇)/√(G + ε); the where only keeps G = ε = 0 from 0/0
                u = -jnp.where(s > 0, (eta * g) / jnp.sqrt(s + eps), 0.0).astype(g.dtype)
            else:
                scale = jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0).astype(g.dtype)
                u = -eta * (scale * g)
            if decayed:
                u = _keras_decay(u, p, eta, weight_decay)
            return u, s

        return leaf

    def init_fields(params):
        g0 = jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        return dict(sum_of_squares=g0)

    return _optimizer("adagrad", AdagradState, learning_rate, weight_decay, mask, rule, init_fields)


def rmsprop(
    learning_rate: ScalarOrSchedule = 0.001,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    centered: bool = False,
    momentum: float | None = None,
    *,
    convention: str = "optax",
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""RMSProp, the slide's form: ``E ← ρE + (1 − ρ)∇²``, ``θ ← θ − η ∇ / √(E + ε)``.

    Centered (Graves 2013): also ``M ← ρM + (1 − ρ)∇`` and divide by ``√(E − M² + ε)``.
    With momentum γ (Keras' form, like the slide's momentum): ``b ← γb + η∇/√(·)``, ``θ ← θ − b``.

    Args:
      learning_rate: η (Keras default 0.001).
      decay: ρ ∈ [0, 1) (Keras calls it ``rho``; default 0.9 in both).
      eps: ε, inside the root (Optax default 1e-8, Keras 1e-7).
      initial_scale: E₀ (0 in Keras and Optax).
      centered: subtract the squared running mean of ∇.
      momentum: γ or None.
      convention: ``"optax"`` (``∇·rsqrt(E + ε)``, as ``optax.rmsprop``) or ``"keras"``
        (``(η∇)/√(E + ε)``, float32 op for op as Keras 3's ``RMSprop``): the same rule, rounded
        differently (≈ 1 ulp per step).
      weight_decay: λ or None (off), Keras' decoupled decay.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `RmspropState`.

    ``optax.rmsprop`` (``eps_in_sqrt=True``, its default) and Keras ``RMSprop`` compute the same
    rule without momentum; with momentum, Optax traces the unscaled step and multiplies by
    today's η (equal for a constant η). PyTorch puts ε outside the root: ``η∇/(√E + ε)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = rmsprop(0.1, decay=0.0, eps=0.0)
      >>> u, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> u  # -0.1·3/√9
      Array([-0.1], dtype=float32)
    """
    _check_lr(learning_rate)
    _check_unit("decay", decay)
    _check_nonneg("eps", eps)
    _check_nonneg("initial_scale", initial_scale)
    _check_nonneg("weight_decay", weight_decay)
    if momentum is not None:
        _check_unit("momentum", momentum)
    _check_convention(convention)
    keras = convention == "keras"

    def rule(lr, count, state):
        def leaf(g, nu, mu, b, p, decayed):
            eta = lr.astype(g.dtype)
            nu = (1 - decay) * (g * g) + decay * nu
            if centered:
                mu = (1 - decay) * g + decay * mu
                denominator = nu - mu * mu + eps
            else:
                denominator = nu + eps
            if keras:
                step = (eta * g) / jnp.sqrt(denominator)
            else:
                step = eta * (g * jax.lax.rsqrt(denominator))
            if momentum is not None:
                b = momentum * b + step
                u = -b
            else:
                u = -step
            if decayed:
                u = _keras_decay(u, p, eta, weight_decay)
            return u, nu, mu, b

        return leaf

    def init_fields(params):
        return dict(
            nu=jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params),
            mu=_zeros_like(params) if centered else None,
            momentum=_zeros_like(params) if momentum is not None else None,
        )

    return _optimizer("rmsprop", RmspropState, learning_rate, weight_decay, mask, rule, init_fields)


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    *,
    convention: str = "optax",
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""AdaDelta (Zeiler 2012): a step with the units of θ, no hand-tuned rate needed.

    ``E[∇²] ← ρE[∇²] + (1 − ρ)∇²``; ``Δ = √(E[Δ²] + ε) / √(E[∇²] + ε) · ∇``;
    ``E[Δ²] ← ρE[Δ²] + (1 − ρ)Δ²``; ``θ ← θ − η Δ``.

    Args:
      learning_rate: η (1.0 in the paper and PyTorch; Keras' default is 0.001).
      rho: ρ ∈ [0, 1) (Optax 0.9, Keras 0.95).
      eps: ε (Optax 1e-6, Keras 1e-7).
      convention: ``"optax"`` (``(√(E[Δ²]+ε)/√(E[∇²]+ε))·∇``, as ``optax.adadelta``) or
        ``"keras"`` (``(√(E[Δ²]+ε)·∇)/√(E[∇²]+ε)``, float32 op for op as Keras 3's
        ``Adadelta``): the same rule, rounded differently.
      weight_decay: λ or None (off), Keras' decoupled decay.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `AdadeltaState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = adadelta(1.0, rho=0.0, eps=1.0)
      >>> u, _ = tx.update(jnp.array([0.0]), tx.init(jnp.zeros(1)))
      >>> u
      Array([-0.], dtype=float32)
    """
    _check_lr(learning_rate)
    _check_unit("rho", rho)
    _check_nonneg("eps", eps)
    _check_nonneg("weight_decay", weight_decay)
    _check_convention(convention)
    keras = convention == "keras"

    def rule(lr, count, state):
        def leaf(g, e_g, e_x, p, decayed):
            eta = lr.astype(g.dtype)
            e_g = (1 - rho) * (g * g) + rho * e_g
            if keras:
                delta = (jnp.sqrt(e_x + eps) * g) / jnp.sqrt(e_g + eps)
            else:
                delta = (jnp.sqrt(e_x + eps) / jnp.sqrt(e_g + eps)) * g
            e_x = (1 - rho) * (delta * delta) + rho * e_x
            u = -(eta * delta)
            if decayed:
                u = _keras_decay(u, p, eta, weight_decay)
            return u, e_g, e_x

        return leaf

    def init_fields(params):
        return dict(e_g=_zeros_like(params), e_x=_zeros_like(params))

    return _optimizer(
        "adadelta", AdadeltaState, learning_rate, weight_decay, mask, rule, init_fields
    )


# ----------------------------------------------------------------------------------------------
# Adam family
# ----------------------------------------------------------------------------------------------


def adam(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    bias_correction: bool = True,
    amsgrad: bool = False,
    convention: str = "optax",
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""Adam (Kingma & Ba 2015), bias-corrected.

    ``m ← β₁m + (1 − β₁)∇``, ``v ← β₂v + (1 − β₂)∇²``, ``m̂ = m/(1 − β₁ᵗ)``,
    ``v̂ = v/(1 − β₂ᵗ)``, ``θ ← θ − η m̂ / (√(v̂ + ε_root) + ε)``.

    ``bias_correction=False, eps=0, eps_root=ε`` is the slide's "Adam (simplified)",
    ``θ ← θ − η m/√(v + ε)`` (see `adam_simplified`); its first steps are about
    ``1/(1 − β₁) = 10×`` too small compared to bias-corrected Adam.

    Args:
      learning_rate: η (Keras default 0.001; Optax has none).
      b1: β₁ ∈ [0, 1) (Keras ``beta_1``).
      b2: β₂ ∈ [0, 1) (Keras ``beta_2``).
      eps: ε outside the root (Optax 1e-8, Keras ``epsilon`` 1e-7).
      eps_root: ε inside the root (Optax's ``eps_root``).
      bias_correction: divide the moments by ``1 − βᵗ``.
      amsgrad: AMSGrad (Reddi et al. 2018): use the running max of the second moment.
      convention: ``"optax"`` (the formula above, = ``optax.adam``) or ``"keras"`` (Keras 3's
        ``Adam``): ``θ ← θ − η·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε)``, i.e. ε is added to the
        *uncorrected* √v (Optax's formula with ε/√(1 − β₂ᵗ), a larger ε early on); with AMSGrad Keras keeps the max of
        the raw v, Optax the max of v̂.
      weight_decay: λ, decoupled weight decay (`adamw`): ``θ ← θ − ηλθ`` — Keras applies it as
        ``θ ← θ(1 − ηλ)`` before the step, which is the same update.
      mask: pytree of bools or a function of params: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `AdamState`.

    PyTorch's ``Adam`` is the Optax formula; its ``weight_decay`` is an L2 penalty added to the
    gradient, not decoupled decay (use ``torch.optim.AdamW`` / `adamw` for that).

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = adam(0.1)
      >>> u, state = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
      >>> [round(x, 4) for x in u.tolist()]  # the first bias-corrected step is ≈ -η·sign(∇)
      [-0.1, 0.1]
    """
    keras = _check_adam_args(learning_rate, b1, b2, eps, eps_root, weight_decay, convention)

    def rule(lr, count, state):
        if bias_correction:
            bc1 = 1 - _pow(b1, count)
            bc2 = 1 - _pow(b2, count)
        else:
            bc1 = bc2 = jnp.ones([], _float())
        if keras:
            alpha = lr * jnp.sqrt(bc2) / bc1

        def leaf(g, m, v, vmax, p, decayed):
            if keras:
                m = m + (g - m) * (1 - b1)
                v = v + (g * g - v) * (1 - b2)
                v_use = v
                if amsgrad:
                    vmax = jnp.maximum(vmax, v)
                    v_use = vmax
                u = -(m * alpha.astype(g.dtype)) / (jnp.sqrt(v_use + eps_root) + eps)
            else:
                m = (1 - b1) * g + b1 * m
                v = (1 - b2) * (g * g) + b2 * v
                m_hat = m / bc1.astype(m.dtype) if bias_correction else m
                v_hat = v / bc2.astype(v.dtype) if bias_correction else v
                if amsgrad:
                    vmax = jnp.maximum(vmax, v_hat)
                    v_hat = vmax
                direction = m_hat / (jnp.sqrt(v_hat + eps_root) + eps)
                if decayed:  # optax.adamw: −η(direction + λθ)
                    return -lr.astype(g.dtype) * (direction + weight_decay * p), m, v, vmax
                u = -lr.astype(g.dtype) * direction
            if decayed:
                u = _keras_decay(u, p, lr, weight_decay)
            return u, m, v, vmax

        return leaf

    def init_fields(params):
        return dict(
            mu=_zeros_like(params),
            nu=_zeros_like(params),
            nu_max=_zeros_like(params) if amsgrad else None,
        )

    return _optimizer("adam", AdamState, learning_rate, weight_decay, mask, rule, init_fields)


def adam_simplified(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    r"""The slide's "Adam (simplified)": no bias correction, ε under the root.

    ``m ← β₁m + (1 − β₁)∇``, ``v ← β₂v + (1 − β₂)∇²``, ``θ ← θ − η m / √(v + ε)``.

    Equal to ``adam(learning_rate, b1, b2, eps=0, eps_root=eps, bias_correction=False)``.
    Because m and v start at 0, the first step is ``η(1 − β₁)∇/√((1 − β₂)∇² + ε)`` ≈ ``0.1·η/√0.001
    ≈ 3.2η`` per unit-size gradient for the defaults, not η: bias correction fixes exactly this.

    Args:
      learning_rate: η.
      b1: β₁ ∈ [0, 1).
      b2: β₂ ∈ [0, 1).
      eps: ε, under the root.

    Returns:
      ``optax.GradientTransformation`` with state `AdamState`.

    Optax: ``optax.adam(η, b1, b2, eps=0, eps_root=ε)`` still bias-corrects; Keras and PyTorch
    have no switch for it.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = adam_simplified(1.0, b1=0.5, b2=0.75, eps=0.0)
      >>> u, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> u  # -(0.5·2)/√(0.25·4)
      Array([-1.], dtype=float32)
    """
    return adam(learning_rate, b1, b2, eps=0.0, eps_root=eps, bias_correction=False)


def adamw(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 1e-4,
    mask=None,
    *,
    amsgrad: bool = False,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""AdamW (Loshchilov & Hutter 2019): Adam plus decoupled weight decay.

    ``θ ← θ − η (m̂/(√(v̂ + ε_root) + ε) + λθ)``, Adam's moments as in `adam`.

    Args:
      learning_rate: η (Keras default 0.001).
      b1: β₁ ∈ [0, 1).
      b2: β₂ ∈ [0, 1).
      eps: ε (Optax 1e-8, Keras 1e-7).
      eps_root: ε inside the root.
      weight_decay: λ (Optax default 1e-4, Keras 0.004). Note η multiplies λ, as in Optax, Keras
        and PyTorch (the paper uses a separate schedule multiplier).
      mask: pytree of bools or a function of params; True leaves are decayed.
      amsgrad: AMSGrad variant.
      convention: ``"optax"`` or ``"keras"`` (see `adam`). Keras decays ``θ ← θ(1 − ηλ)``
        before the Adam step: mathematically the same update.

    Returns:
      ``optax.GradientTransformation`` with state `AdamState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = adamw(0.1, weight_decay=0.5)
      >>> u, _ = tx.update(jnp.array([0.0]), tx.init(jnp.ones(1)), jnp.ones(1))
      >>> u  # gradient 0: only the decay -η·λ·θ
      Array([-0.05], dtype=float32)
    """
    return adam(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        amsgrad=amsgrad,
        convention=convention,
        weight_decay=weight_decay,
        mask=mask,
    )


def amsgrad(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""AMSGrad (Reddi et al. 2018): Adam whose denominator never decreases.

    Optax: ``v̂max ← max(v̂max, v̂)``, ``θ ← θ − η m̂/(√(v̂max + ε_root) + ε)``.
    Keras (``Adam(amsgrad=True)``, ``convention="keras"``): ``vmax ← max(vmax, v)`` of the *raw*
    v, then Keras' Adam step with vmax. They differ because v̂ = v/(1 − β₂ᵗ) shrinks over time.

    Args:
      learning_rate: η.
      b1: β₁ ∈ [0, 1).
      b2: β₂ ∈ [0, 1).
      eps: ε.
      eps_root: ε inside the root.
      convention: ``"optax"`` or ``"keras"``.

    Returns:
      ``optax.GradientTransformation`` with state `AdamState` (``nu_max`` holds the max).

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = amsgrad(0.1)
      >>> u, state = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> round(float(u[0]), 4)
      -0.1
    """
    return adam(learning_rate, b1, b2, eps, eps_root, amsgrad=True, convention=convention)


def adamax(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    convention: str = "optax",
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""AdaMax (Kingma & Ba 2015, §7.1): Adam with the infinity norm.

    ``m ← β₁m + (1 − β₁)∇``; Optax: ``u ← max(β₂u, |∇| + ε)``, ``θ ← θ − η m̂/u``;
    Keras (``convention="keras"``): ``u ← max(β₂u, |∇|)``, ``θ ← θ − η m̂/(u + ε)`` — ε outside the
    max. ``m̂ = m/(1 − β₁ᵗ)``; u needs no bias correction.

    Args:
      learning_rate: η.
      b1: β₁ ∈ [0, 1).
      b2: β₂ ∈ [0, 1).
      eps: ε (Optax 1e-8, Keras 1e-7).
      convention: ``"optax"`` or ``"keras"``.
      weight_decay: λ or None (off), Keras' decoupled decay.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `AdamaxState`.

    PyTorch's ``Adamax`` follows Optax (ε inside the max).

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = adamax(0.5, eps=0.0)
      >>> u, _ = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
      >>> u.round(4)
      Array([-0.5], dtype=float32)
    """
    keras = _check_adam_args(learning_rate, b1, b2, eps, None, weight_decay, convention)

    def rule(lr, count, state):
        bc1 = 1 - _pow(b1, count)

        def leaf(g, m, u_inf, p, decayed):
            eta = lr.astype(g.dtype)
            if keras:
                m = m + (g - m) * (1 - b1)
                u_inf = jnp.maximum(b2 * u_inf, jnp.abs(g))
                u = -(eta * m) / (bc1.astype(g.dtype) * (u_inf + eps))
            else:
                m = (1 - b1) * g + b1 * m
                u_inf = jnp.maximum(jnp.abs(g) + eps, b2 * u_inf)
                u = -eta * ((m / bc1.astype(m.dtype)) / u_inf)
            if decayed:
                u = _keras_decay(u, p, eta, weight_decay)
            return u, m, u_inf

        return leaf

    def init_fields(params):
        return dict(mu=_zeros_like(params), nu=_zeros_like(params))

    return _optimizer("adamax", AdamaxState, learning_rate, weight_decay, mask, rule, init_fields)


def nadam(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    convention: str = "optax",
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""Nadam (Dozat 2016): Adam with Nesterov momentum.

    Optax (``optax.nadam``, Timothy Dozat's Algorithm 2 with a constant β₁):
    ``m̄ = β₁ m/(1 − β₁ᵗ⁺¹) + (1 − β₁) ∇/(1 − β₁ᵗ)``, ``θ ← θ − η m̄/(√(v̂ + ε_root) + ε)``.

    Keras (``convention="keras"``) uses Dozat's momentum schedule
    ``μₜ = β₁(1 − ½·0.96ᵗ)`` with ``Πₜ = μ₁⋯μₜ``:
    ``m̄ = μₜ₊₁ m/(1 − Πₜμₜ₊₁) + (1 − μₜ)∇/(1 − Πₜ)``, ``θ ← θ − η m̄/(√v̂ + ε)``.

    Args:
      learning_rate: η.
      b1: β₁ ∈ [0, 1).
      b2: β₂ ∈ [0, 1).
      eps: ε (Optax 1e-8, Keras 1e-7).
      eps_root: ε inside the root (Optax convention only).
      convention: ``"optax"`` or ``"keras"``.
      weight_decay: λ or None (off), Keras' decoupled decay.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `NadamState`.

    PyTorch's ``NAdam`` uses the Keras schedule (``momentum_decay=0.004`` ≈ 0.96 per 10 steps
    in its own parametrisation, so numbers differ slightly).

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = nadam(0.1)
      >>> u, state = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> float(u[0]) < 0
      True
    """
    keras = _check_adam_args(learning_rate, b1, b2, eps, eps_root, weight_decay, convention)

    def rule(lr, count, state):
        if keras:
            # Keras 3's float32 arithmetic, op for op: β₁, β₂ and 0.96 are cast to float32
            # first, so 1 − β₁ is 1 − f32(β₁) (0.10000002 for β₁ = 0.9, not f32(0.1)); Π is
            # updated as (Π·β₁)·(1 − ½·0.96ᵗ), while μₜ and μₜ₊₁ multiply by β₁ last.
            f = _float()
            t = count.astype(f)
            beta_1, beta_2, decay = (jnp.asarray(x, f) for x in (b1, b2, 0.96))
            mu_product = state.mu_product * jnp.asarray(b1, f) * (1.0 - 0.5 * decay**t)
            k = dict(
                one_minus_b1=1 - beta_1,
                one_minus_b2=1 - beta_2,
                mu_t1=beta_1 * (1.0 - 0.5 * decay ** (t + 1)),
                one_minus_mu_t=1 - beta_1 * (1.0 - 0.5 * decay**t),
                one_minus_product=1 - mu_product,
                bc2=1 - beta_2**t,
            )
            k["one_minus_product_next"] = 1 - mu_product * k["mu_t1"]
        else:
            mu_product = state.mu_product
            bc1 = 1 - _pow(b1, count)
            bc1_next = 1 - _pow(b1, count + 1)
            bc2 = 1 - _pow(b2, count)

        def leaf(g, m, v, p, decayed):
            eta = lr.astype(g.dtype)
            if keras:
                c = {name: x.astype(g.dtype) for name, x in k.items()}
                m = m + (g - m) * c["one_minus_b1"]
                v = v + (g * g - v) * c["one_minus_b2"]
                m_bar = (c["mu_t1"] * m) / c["one_minus_product_next"] + (
                    c["one_minus_mu_t"] * g
                ) / c["one_minus_product"]
                v_hat = v / c["bc2"]
                u = -((m_bar * eta) / (jnp.sqrt(v_hat) + eps))
            else:
                m = (1 - b1) * g + b1 * m
                v = (1 - b2) * (g * g) + b2 * v
                m_bar = b1 * (m / bc1_next.astype(m.dtype)) + (1 - b1) * (g / bc1.astype(g.dtype))
                v_hat = v / bc2.astype(v.dtype)
                u = -eta * (m_bar / (jnp.sqrt(v_hat + eps_root) + eps))
            if decayed:
                u = _keras_decay(u, p, eta, weight_decay)
            return u, m, v

        return leaf, dict(mu_product=mu_product)

    def init_fields(params):
        return dict(
            mu=_zeros_like(params), nu=_zeros_like(params), mu_product=jnp.ones([], _float())
        )

    return _optimizer("nadam", NadamState, learning_rate, weight_decay, mask, rule, init_fields)


def lion(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: float = 0.9,
    b2: float = 0.99,
    *,
    convention: str = "optax",
    weight_decay: float | None = 1e-3,
    mask=None,
) -> optax.GradientTransformation:
    r"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of a
    momentum interpolation.

    ``c = β₁m + (1 − β₁)∇``, ``θ ← θ − η(sign(c) + λθ)``, ``m ← β₂m + (1 − β₂)∇``.
    Every coordinate moves by exactly η (plus decay) whatever the gradient's size, so Lion wants a
    learning rate 3–10× smaller than AdamW's and a λ 3–10× larger (the paper). It keeps one slot
    (m), Adam two. β₁ (the step's interpolation) and β₂ (the momentum's memory) differ: β₂ > β₁
    remembers gradients longer than the step weighs them.

    Args:
      learning_rate: η ≥ 0 or a schedule (Optax has no default; Keras 0.001, the default here).
      b1: β₁ ∈ [0, 1] (Optax and Keras 0.9; Keras ``beta_1``).
      b2: β₂ ∈ [0, 1] (Optax and Keras 0.99; Keras ``beta_2``).
      convention: ``"optax"`` (= ``optax.lion``: ``−η(sign(c) + λθ)``) or ``"keras"`` (Keras 3's
        ``Lion`` in float32 op for op: β cast to float32 first, decay ``θ ← θ − θλη`` applied
        before the step).
      weight_decay: λ ≥ 0 or None (off). The default 1e-3 is Optax's; Keras' default is None,
        which `get` uses.
      mask: pytree of bools or a function of params: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `LionState`.

    PyTorch has no Lion in ``torch.optim``. ``sign(0) = 0``: a coordinate whose c is exactly 0
    does not move (Optax, Keras and the paper's ``sign`` agree).

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = lion(0.1, weight_decay=None)
      >>> u, state = tx.update(jnp.array([3.0, -1e-6, 0.0]), tx.init(jnp.zeros(3)))
      >>> u  # ±η whatever the gradient's size; 0 where c = 0
      Array([-0.1,  0.1, -0. ], dtype=float32)
    """
    _check_lr(learning_rate)
    _check_unit("b1", b1, closed=True)
    _check_unit("b2", b2, closed=True)
    _check_nonneg("weight_decay", weight_decay)
    _check_convention(convention)
    keras = convention == "keras"

    def rule(lr, count, state):
        def leaf(g, m, p, decayed):
            eta = lr.astype(g.dtype)
            if keras:  # float32 β, 1 − β in float32, decay before the step
                beta_1, beta_2 = jnp.asarray(b1, g.dtype), jnp.asarray(b2, g.dtype)
                u = -(eta * jnp.sign(m * beta_1 + g * (1.0 - beta_1)))
                m = m * beta_2 + g * (1.0 - beta_2)
                if decayed:
                    u = _keras_decay(u, p, eta, weight_decay)
                return u, m
            direction = jnp.sign((1.0 - b1) * g + b1 * m)
            m = (1 - b2) * g + b2 * m
            if decayed:
                direction = direction + weight_decay * p
            return -eta * direction, m

        return leaf

    def init_fields(params):
        return dict(mu=_zeros_like(params))

    return _optimizer("lion", LionState, learning_rate, weight_decay, mask, rule, init_fields)


def ftrl(
    learning_rate: ScalarOrSchedule = 0.001,
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1_regularization_strength: float = 0.0,
    l2_regularization_strength: float = 0.0,
    l2_shrinkage_regularization_strength: float = 0.0,
    beta: float = 0.0,
    *,
    weight_decay: float | None = None,
    mask=None,
) -> optax.GradientTransformation:
    r"""FTRL-Proximal (McMahan et al. 2013) exactly as Keras 3's ``Ftrl`` computes it.

    With ``p = −learning_rate_power`` (½ by default), λ₂' = λ₂ + β/(2η):
    ``ĝ = ∇ + 2λ_shrink θ``; ``n' = n + ∇²``; ``z ← z + ĝ − (n'ᵖ − nᵖ)/η · θ``;
    ``θ ← (clip(z, −λ₁, λ₁) − z) / (n'ᵖ/η + 2λ₂')``; ``n ← n'``.
    The new θ depends on the old one, so ``update`` needs ``params``. Optax has no FTRL;
    PyTorch neither. Hyperparameter names are Keras' (no Optax name exists).

    Args:
      learning_rate: η > 0.
      learning_rate_power: −p ≤ 0.
      initial_accumulator_value: n₀ ≥ 0.
      l1_regularization_strength: λ₁ ≥ 0 (sparsity: |z| ≤ λ₁ gives θ = 0).
      l2_regularization_strength: λ₂ ≥ 0.
      l2_shrinkage_regularization_strength: λ_shrink ≥ 0 (acts on the gradient).
      beta: β ≥ 0.
      weight_decay: λ or None (off), Keras' decoupled decay ``θ ← θ(1 − ηλ)`` applied before the step.
      mask: which leaves weight decay applies to.

    Returns:
      ``optax.GradientTransformation`` with state `FtrlState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = ftrl(0.5)
      >>> p = jnp.array([1.0])
      >>> u, _ = tx.update(jnp.array([1.0]), tx.init(p), p)
      >>> (p + u).round(4)  # Keras' own single-step test value
      Array([0.2218], dtype=float32)
    """
    _check_lr(learning_rate, positive=True)
    lrp = _concrete(learning_rate_power)
    if lrp is not None and not (math.isfinite(lrp) and lrp <= 0):
        raise ValueError(f"learning_rate_power must be <= 0, got {learning_rate_power!r}")
    for name, value in [
        ("initial_accumulator_value", initial_accumulator_value),
        ("l1_regularization_strength", l1_regularization_strength),
        ("l2_regularization_strength", l2_regularization_strength),
        ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength),
        ("beta", beta),
        ("weight_decay", weight_decay),
    ]:
        _check_nonneg(name, value)

    def rule(lr, count, state):
        def leaf(g, n, z, p_old, decayed):
            eta = lr.astype(g.dtype)
            p = p_old
            if decayed:
                p = p - p * jnp.asarray(weight_decay, p.dtype) * eta  # Keras: θ − θ·λ·η
            l2 = l2_regularization_strength + beta / (2.0 * eta)
            g_shrink = g + 2 * l2_shrinkage_regularization_strength * p
            n_new = n + g * g
            power = -learning_rate_power
            z = z + (g_shrink - ((n_new**power - n**power) / eta) * p)
            quadratic = n_new**power / eta + 2 * l2
            l1 = l1_regularization_strength
            p_new = (jnp.clip(z, -l1, l1) - z) / quadratic
            return p_new - p_old, n_new, z

        return leaf

    def init_fields(params):
        n0 = jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        return dict(accumulator=n0, linear=_zeros_like(params))

    return _optimizer(
        "ftrl",
        FtrlState,
        learning_rate,
        weight_decay,
        mask,
        rule,
        init_fields,
        params_required=True,
    )


# ----------------------------------------------------------------------------------------------
# Reading the learning rate back; flat-buffer view; the Keras registry
# ----------------------------------------------------------------------------------------------


def learning_rate(state) -> jax.Array:
    """The learning rate in an optimizer state: η of the most recent update.

    Before the first update it is the rate the first update will use (``schedule(0)``); after
    the update that produced step t it is ``schedule(t − 1)``, the η that step used. Searches
    ``optax.chain`` tuples, ``optax.masked`` and ``optax.inject_hyperparams`` states (where it
    reads ``hyperparams["learning_rate"]``, which follows the same convention) and returns the
    first learning rate found, depth first.

    Args:
      state: any optimizer state containing an fnn state or an ``InjectHyperparamsState``.

    Returns:
      float32 scalar array.

    Raises:
      ValueError: if the state holds no learning rate (e.g. a plain ``optax.adam`` state).

    Examples:
      >>> import optax, jax.numpy as jnp
      >>> tx = optax.chain(optax.clip_by_global_norm(1.0), adam(optax.linear_schedule(1.0, 0.0, 10)))
      >>> state = tx.init(jnp.zeros(3))
      >>> _, state = tx.update(jnp.ones(3), state)
      >>> _, state = tx.update(jnp.ones(3), state)
      >>> learning_rate(state)  # the 2nd update used schedule(1)
      Array(0.9, dtype=float32)
    """
    found = _find_lr(state)
    if found is None:
        raise ValueError(
            "state holds no learning rate: expected an fnn optimizer state (with a "
            "`learning_rate` field) or an optax.inject_hyperparams state, got "
            f"{type(state).__name__}"
        )
    return found


def _find_lr(state):
    # optax.InjectHyperparamsState and InjectStatefulHyperparamsState (not a subclass of it).
    if isinstance(getattr(state, "hyperparams", None), dict) and hasattr(state, "inner_state"):
        if "learning_rate" in state.hyperparams:
            return jnp.asarray(state.hyperparams["learning_rate"])
        return _find_lr(state.inner_state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        if "count" in state._fields and "learning_rate" in state._fields:
            return state.learning_rate
    if isinstance(state, (tuple, list)):
        items = list(state)
    elif isinstance(state, dict):
        items = list(state.values())
    else:
        return None
    for item in items:
        found = _find_lr(item)
        if found is not None:
            return found
    return None


def flatten(params) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """View a parameter pytree as one flat buffer (``jax.flatten_util.ravel_pytree``).

    PyTorch's fused/foreach optimizers update all tensors in one kernel. The JAX counterpart is
    to keep the parameters as one 1-D buffer and unflatten (slices and reshapes that XLA fuses
    away) inside the loss: gradients then arrive flat, and any optimizer here runs a few loops
    over the whole buffer instead of a few per leaf. On XLA:CPU this measured 0.9–1.2× the
    per-leaf update for Adam (``BENCHMARKS.md``): worth it for trees of thousands of tiny
    leaves, not as a speed-up for ordinary networks.

    Args:
      params: pytree of arrays (all of one float dtype for a lossless round trip).

    Returns:
      ``(flat, unflatten)``: ``flat`` has shape ``[P]`` (P = total number of parameters) and
      ``unflatten(flat)`` rebuilds the pytree.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
      >>> flat, unflatten = flatten(params)
      >>> flat.shape
      (9,)
      >>> loss = lambda f: jnp.sum(unflatten(f)["w"] ** 2)
      >>> tx = adam(0.1)
      >>> state = tx.init(flat)
      >>> updates, state = tx.update(jax.grad(loss)(flat), state)
      >>> unflatten(optax.apply_updates(flat, updates))["w"].shape
      (2, 3)
    """
    return ravel_pytree(params)


# Keras 3 identifiers -> (factory, Keras defaults in fnn/Optax argument names).
_KERAS = {
    "sgd": (sgd, dict(learning_rate=0.01, momentum=None, nesterov=False)),
    "momentum": (momentum, dict(learning_rate=0.01, momentum=0.9)),
    "nesterov": (nesterov, dict(learning_rate=0.01, momentum=0.9)),
    "adagrad": (
        adagrad,
        dict(learning_rate=0.001, initial_accumulator_value=0.1, eps=1e-7, convention="keras"),
    ),
    "rmsprop": (rmsprop, dict(learning_rate=0.001, decay=0.9, eps=1e-7, convention="keras")),
    "adam": (adam, dict(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-7, convention="keras")),
    "adam_simplified": (adam_simplified, dict(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-7)),
    "amsgrad": (amsgrad, dict(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-7, convention="keras")),
    "adamw": (
        adamw,
        dict(
            learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-7, weight_decay=0.004, convention="keras"
        ),
    ),
    "adamax": (adamax, dict(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-7, convention="keras")),
    "nadam": (nadam, dict(learning_rate=0.001, b1=0.9, b2=0.999, eps=1e-7, convention="keras")),
    "adadelta": (adadelta, dict(learning_rate=0.001, rho=0.95, eps=1e-7, convention="keras")),
    "lion": (
        lion,
        dict(learning_rate=0.001, b1=0.9, b2=0.99, weight_decay=None, convention="keras"),
    ),
    "ftrl": (ftrl, dict(learning_rate=0.001)),
}

# Keras argument names accepted by `get` as overrides.
_KERAS_ARG_NAMES = {"beta_1": "b1", "beta_2": "b2", "epsilon": "eps"}


def names() -> list[str]:
    """The identifiers `get` accepts (Keras' lower-cased names plus the lecture's variants)."""
    return sorted(_KERAS)


_DEPRECATED = "fnn.optimizers.fused_adam is deprecated: use fnn.optimizers.adam (the same numbers)"


def fused_adam(*args, **kwargs) -> optax.GradientTransformation:
    """Deprecated alias of `adam` (same arguments, same numbers, state `AdamState`).

    The fused path (Adam with interleaved moments over a flat buffer) was removed: it never
    earned the 1.3× over Optax Adam it was kept for (``BENCHMARKS.md``).

    Examples:
      >>> import warnings
      >>> with warnings.catch_warnings(record=True) as caught:
      ...     warnings.simplefilter("always")
      ...     tx = fused_adam(0.1)
      >>> caught[0].category.__name__
      'DeprecationWarning'
    """
    warnings.warn(_DEPRECATED, DeprecationWarning, stacklevel=2)
    return adam(*args, **kwargs)


def __getattr__(name: str):
    if name == "FusedAdamState":
        warnings.warn(
            "fnn.optimizers.FusedAdamState is deprecated: fused_adam is now adam, whose state "
            "is AdamState",
            DeprecationWarning,
            stacklevel=2,
        )
        return AdamState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get(name_or_tx, **overrides) -> optax.GradientTransformation:
    """The optimizer for a Keras identifier, with Keras 3's defaults and formulation.

    ``get("adam")`` is Keras' ``Adam()``: η = 0.001, β₁ = 0.9, β₂ = 0.999, ε = 1e-7 and
    ``convention="keras"`` — what the lecture's ``model.compile(optimizer="adam")`` uses.
    Defaults: sgd η=0.01 (no momentum); rmsprop η=0.001, ρ=0.9, ε=1e-7; adagrad η=0.001,
    G₀=0.1, ε=1e-7; adamw λ=0.004; adadelta η=0.001, ρ=0.95, ε=1e-7; ftrl η=0.001; lion η=0.001,
    β₁=0.9, β₂=0.99, no weight decay.
    ``overrides`` replace them, in fnn/Optax names (``b1``, ``eps``, ``decay``) or Keras'
    (``beta_1``, ``beta_2``, ``epsilon``; ``rho`` for RMSprop). Names are case-insensitive.

    Args:
      name_or_tx: an identifier from `names` (``"adam"``, ``"RMSprop"``, ...), an existing
        ``optax.GradientTransformation`` (returned unchanged; then no overrides are allowed), or
        a factory such as ``fnn.optimizers.adam`` or ``optax.adam``, called with ``overrides``.
      **overrides: hyperparameters to change.

    Returns:
      ``optax.GradientTransformation``.

    Raises:
      ValueError: unknown name (with a "did you mean"), or overrides given with a transformation.
      TypeError: an override the optimizer does not take; a factory that returns no
        transformation.

    Examples:
      >>> tx = get("adam", learning_rate=3e-4)
      >>> import jax.numpy as jnp
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> learning_rate(state)
      Array(0.0003, dtype=float32)
    """
    if isinstance(name_or_tx, optax.GradientTransformation):
        if overrides:
            raise ValueError(
                f"overrides {sorted(overrides)} cannot be applied to an existing "
                "optax.GradientTransformation; pass an optimizer name instead"
            )
        return name_or_tx
    if callable(name_or_tx) and not isinstance(name_or_tx, str):
        tx = name_or_tx(**overrides)
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(
                "a callable optimizer must return an optax.GradientTransformation, got "
                f"{type(tx).__name__} from {getattr(name_or_tx, '__name__', name_or_tx)!r}"
            )
        return tx
    if isinstance(name_or_tx, str) and name_or_tx.lower() == "fused_adam":
        warnings.warn(_DEPRECATED, DeprecationWarning, stacklevel=2)
        name_or_tx = "adam"
    factory, defaults = lookup("optimizer", name_or_tx, _KERAS)
    kwargs = dict(defaults)
    key = name_or_tx.lower()
    for arg, value in overrides.items():
        if key == "rmsprop" and arg == "rho":
            arg = "decay"
        arg = _KERAS_ARG_NAMES.get(arg, arg)
        kwargs[arg] = value
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise TypeError(f"optimizer {name_or_tx!r} got an unexpected override: {err}") from err
