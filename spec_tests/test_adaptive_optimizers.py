"""Slides "Adaptive learning rates": AdaGrad, RMSProp, Adam (simplified and bias-corrected), and
Keras' list — Adadelta, Adagrad, Adam, Adamax, Ftrl, Nadam, RMSprop — plus AdamW and AMSGrad.

Tier 1: float64 NumPy transcriptions of each update rule (slide / paper / Keras source), stepped
50 steps on random quadratics and compared at every step. Tier 2: the Optax optimizer of the same
name over 100 steps on a parabola, Rosenbrock and a small CNN (float32, rtol 1e-6), and the
Keras-convention variants against Keras 3's own published test values (and, optionally, Keras
itself). Tier 3: hypothesis properties, eager == jit == vmap, no recompilation; bad input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from optimizer_problems import make_problems, trajectory

from fnn import optimizers as fo

STEPS = 50

# ------------------------------------------------------------------------------------------------
# Tier 1: float64 oracles
# ------------------------------------------------------------------------------------------------


def random_quadratic(seed: int, n: int = 5):
    """L(θ) = ½ θᵀAθ − bᵀθ, A symmetric positive definite; ∇L = Aθ − b (float64)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * rng.uniform(0.5, 4.0, n)) @ q.T
    return a, rng.standard_normal(n), rng.standard_normal(n)


def oracle(rule: str, grad, theta, steps: int, **h):
    """Transcriptions of the update rules, one NumPy float64 step at a time."""
    z = np.zeros_like(theta)
    s = {"m": z.copy(), "v": z.copy(), "vmax": z.copy(), "u": z.copy(), "b": z.copy()}
    s["G"] = np.full_like(theta, h.get("g0", 0.0))
    s["n"] = np.full_like(theta, h.get("n0", 0.1))
    s["prod"] = 1.0
    eta, out = h["eta"], []
    for t in range(1, steps + 1):
        g = grad(theta)
        b1, b2, eps = h.get("b1"), h.get("b2"), h.get("eps")
        if rule == "adagrad":  # slide: G ← G + ∇², θ ← θ − η∇/√(G + ε)
            s["G"] = s["G"] + g**2
            theta = theta - eta * g / np.sqrt(s["G"] + eps)
        elif rule == "rmsprop":  # slide: E ← ρE + (1−ρ)∇², θ ← θ − η∇/√(E + ε)
            rho = h["rho"]
            s["v"] = rho * s["v"] + (1 - rho) * g**2
            denom = s["v"] + eps
            if h.get("centered"):
                s["m"] = rho * s["m"] + (1 - rho) * g
                denom = denom - s["m"] ** 2
            step = eta * g / np.sqrt(denom)
            if h.get("momentum") is not None:  # Keras: b ← γb + step, θ ← θ − b
                s["b"] = h["momentum"] * s["b"] + step
                step = s["b"]
            theta = theta - step
        elif rule in ("adam", "adam_keras", "adam_simplified", "amsgrad", "amsgrad_keras"):
            if h.get("wd"):  # Keras' decoupled decay before the step: θ ← θ(1 − ηλ)
                theta = theta * (1 - eta * h["wd"])
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g**2
            if rule == "adam_simplified":  # slide: θ ← θ − η m/√(v + ε)
                theta = theta - eta * s["m"] / np.sqrt(s["v"] + eps)
            elif rule in ("adam", "amsgrad"):  # Kingma & Ba: m̂/(√v̂ + ε)
                m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
                if rule == "amsgrad":  # Optax: running max of v̂
                    s["vmax"] = np.maximum(s["vmax"], v_hat)
                    v_hat = s["vmax"]
                theta = theta - eta * m_hat / (np.sqrt(v_hat + h.get("eps_root", 0.0)) + eps)
            else:  # Keras: η √(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε), AMSGrad on the raw v
                v = s["v"]
                if rule == "amsgrad_keras":
                    s["vmax"] = np.maximum(s["vmax"], v)
                    v = s["vmax"]
                alpha = eta * np.sqrt(1 - b2**t) / (1 - b1**t)
                theta = theta - alpha * s["m"] / (np.sqrt(v) + eps)
        elif rule == "adamw":  # Optax/Loshchilov-Hutter: θ ← θ − η(m̂/(√v̂ + ε) + λθ)
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g**2
            m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
            theta = theta - eta * (m_hat / (np.sqrt(v_hat) + eps) + h["wd"] * theta)
        elif rule in ("adamax", "adamax_keras"):
            s["m"] = b1 * s["m"] + (1 - b1) * g
            if rule == "adamax":  # Optax: u ← max(β₂u, |∇| + ε), θ ← θ − η m̂/u
                s["u"] = np.maximum(b2 * s["u"], np.abs(g) + eps)
                theta = theta - eta * s["m"] / (1 - b1**t) / s["u"]
            else:  # Keras: u ← max(β₂u, |∇|), θ ← θ − η m̂/(u + ε)
                s["u"] = np.maximum(b2 * s["u"], np.abs(g))
                theta = theta - eta * s["m"] / ((1 - b1**t) * (s["u"] + eps))
        elif rule == "nadam":  # Optax: m̄ = β₁m/(1−β₁ᵗ⁺¹) + (1−β₁)∇/(1−β₁ᵗ)
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g**2
            m_bar = b1 * s["m"] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
            theta = theta - eta * m_bar / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
        elif rule == "nadam_keras":  # Dozat's schedule μₜ = β₁(1 − ½·0.96ᵗ)
            mu_t = b1 * (1 - 0.5 * 0.96**t)
            mu_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
            s["prod"] = s["prod"] * mu_t
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g**2
            m_bar = mu_next * s["m"] / (1 - s["prod"] * mu_next) + (1 - mu_t) * g / (1 - s["prod"])
            theta = theta - eta * m_bar / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
        elif rule == "adadelta":  # Zeiler 2012
            rho = h["rho"]
            s["v"] = rho * s["v"] + (1 - rho) * g**2
            delta = np.sqrt(s["u"] + eps) / np.sqrt(s["v"] + eps) * g
            s["u"] = rho * s["u"] + (1 - rho) * delta**2
            theta = theta - eta * delta
        elif rule == "ftrl":  # Keras' Ftrl.update_step
            p = -h["lr_power"]
            l2 = h["l2"] + h["beta"] / (2 * eta)
            g_s = g + 2 * h["l2_shrink"] * theta
            n_new = s["n"] + g**2
            s["b"] = s["b"] + g_s - (n_new**p - s["n"] ** p) / eta * theta
            quadratic = n_new**p / eta + 2 * l2
            theta = (np.clip(s["b"], -h["l1"], h["l1"]) - s["b"]) / quadratic
            s["n"] = n_new
        else:
            raise AssertionError(rule)
        out.append(theta)
    return np.stack(out)


ADAM = dict(eta=0.05, b1=0.9, b2=0.99, eps=1e-3)
ORACLE_CASES = {
    # id: (fnn factory, oracle rule, oracle hyperparameters)
    "adagrad_slide_G0=0": (
        lambda: fo.adagrad(0.3, initial_accumulator_value=0.0, eps=1e-7),
        "adagrad",
        dict(eta=0.3, eps=1e-7, g0=0.0),
    ),
    "adagrad_keras_G0=0.1": (lambda: fo.adagrad(0.3), "adagrad", dict(eta=0.3, eps=1e-7, g0=0.1)),
    "rmsprop": (lambda: fo.rmsprop(0.01, 0.9, 1e-6), "rmsprop", dict(eta=0.01, rho=0.9, eps=1e-6)),
    "rmsprop_centered_momentum": (
        lambda: fo.rmsprop(0.01, 0.8, 1e-6, centered=True, momentum=0.5),
        "rmsprop",
        dict(eta=0.01, rho=0.8, eps=1e-6, centered=True, momentum=0.5),
    ),
    "adam": (lambda: fo.adam(0.05, 0.9, 0.99, 1e-3), "adam", ADAM),
    "adam_eps_root": (
        lambda: fo.adam(0.05, 0.9, 0.99, 1e-3, eps_root=1e-4),
        "adam",
        dict(ADAM, eps_root=1e-4),
    ),
    "adam_keras": (
        lambda: fo.adam(0.05, 0.9, 0.99, 1e-3, convention="keras"),
        "adam_keras",
        ADAM,
    ),
    "adam_simplified": (lambda: fo.adam_simplified(0.05, 0.9, 0.99, 1e-3), "adam_simplified", ADAM),
    "adamw": (
        lambda: fo.adamw(0.05, 0.9, 0.99, 1e-3, weight_decay=0.1),
        "adamw",
        dict(ADAM, wd=0.1),
    ),
    "adamw_keras": (
        lambda: fo.adamw(0.05, 0.9, 0.99, 1e-3, weight_decay=0.1, convention="keras"),
        "adam_keras",
        dict(ADAM, wd=0.1),
    ),
    "amsgrad": (lambda: fo.amsgrad(0.05, 0.9, 0.99, 1e-3), "amsgrad", ADAM),
    "amsgrad_keras": (
        lambda: fo.amsgrad(0.05, 0.9, 0.99, 1e-3, convention="keras"),
        "amsgrad_keras",
        ADAM,
    ),
    "adamax": (lambda: fo.adamax(0.05, 0.9, 0.99, 1e-3), "adamax", ADAM),
    "adamax_keras": (
        lambda: fo.adamax(0.05, 0.9, 0.99, 1e-3, convention="keras"),
        "adamax_keras",
        ADAM,
    ),
    "nadam": (lambda: fo.nadam(0.05, 0.9, 0.99, 1e-3), "nadam", ADAM),
    "nadam_keras": (
        lambda: fo.nadam(0.05, 0.9, 0.99, 1e-3, convention="keras"),
        "nadam_keras",
        ADAM,
    ),
    "adadelta": (lambda: fo.adadelta(1.0, 0.9, 1e-4), "adadelta", dict(eta=1.0, rho=0.9, eps=1e-4)),
    "ftrl": (
        lambda: fo.ftrl(0.2, -0.5, 0.1, 0.01, 0.02, 0.01, 0.3),
        "ftrl",
        dict(eta=0.2, lr_power=-0.5, n0=0.1, l1=0.01, l2=0.02, l2_shrink=0.01, beta=0.3),
    ),
}


def run_fnn(tx, grad, theta0, steps):
    update = jax.jit(tx.update)
    params = jnp.asarray(theta0)
    state = tx.init(params)
    out = []
    for _ in range(steps):
        updates, state = update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return np.stack(out), state


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", list(ORACLE_CASES))
def test_oracle_float64_every_step(case, seed):
    make, rule, hyper = ORACLE_CASES[case]
    a, b, theta0 = random_quadratic(seed)
    expected = oracle(rule, lambda t: a @ t - b, theta0, STEPS, **hyper)
    with jax.enable_x64(True):
        ours, _ = run_fnn(make(), lambda p: jnp.asarray(a) @ p - jnp.asarray(b), theta0, STEPS)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_keras_adam_is_optax_adam_with_eps_scaled_by_sqrt_of_bias_correction():
    """Keras' ε sits on the uncorrected √v: identical to Optax's with ε/√(1 − β₂ᵗ) at step t."""
    a, b, theta0 = random_quadratic(4)
    grad = lambda t: a @ t - b  # noqa: E731
    keras = oracle("adam_keras", grad, theta0, STEPS, **ADAM)
    theta, m, v, rebuilt = theta0.copy(), 0 * theta0, 0 * theta0, []
    b1, b2, eps, eta = ADAM["b1"], ADAM["b2"], ADAM["eps"], ADAM["eta"]
    for t in range(1, STEPS + 1):
        g = grad(theta)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        eps_t = eps / np.sqrt(1 - b2**t)
        theta = theta - eta * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps_t)
        rebuilt.append(theta)
    np.testing.assert_allclose(keras, np.stack(rebuilt), rtol=1e-12)
    optax_form = oracle("adam", grad, theta0, STEPS, **ADAM)
    assert np.max(np.abs(keras - optax_form)) > 1e-4  # a real, visible difference at ε = 1e-3


# ------------------------------------------------------------------------------------------------
# Tier 2: cross-check against Optax, float32, 100 steps, parabola / Rosenbrock / small CNN
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def problems():
    """Parabola, Rosenbrock and a small CNN's loss; all float32, with their initial params."""
    return make_problems()  # compiled once, shared by every optimizer


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


OPTAX_TWINS = {
    "adagrad": (lambda: fo.adagrad(0.1), lambda: optax.adagrad(0.1)),
    "rmsprop": (lambda: fo.rmsprop(1e-2), lambda: optax.rmsprop(1e-2)),
    "rmsprop_centered": (
        lambda: fo.rmsprop(1e-2, centered=True),
        lambda: optax.rmsprop(1e-2, centered=True),
    ),
    "adam": (lambda: fo.adam(1e-2), lambda: optax.adam(1e-2)),
    "adam_eps_root": (
        lambda: fo.adam(1e-2, eps=1e-6, eps_root=1e-8),
        lambda: optax.adam(1e-2, eps=1e-6, eps_root=1e-8),
    ),
    "adamw": (
        lambda: fo.adamw(1e-2, weight_decay=0.1),
        lambda: optax.adamw(1e-2, weight_decay=0.1),
    ),
    "amsgrad": (lambda: fo.amsgrad(1e-2), lambda: optax.amsgrad(1e-2)),
    "adamax": (lambda: fo.adamax(1e-2), lambda: optax.adamax(1e-2)),
    "nadam": (lambda: fo.nadam(1e-2), lambda: optax.nadam(1e-2)),
    "adadelta": (lambda: fo.adadelta(1.0, eps=1e-4), lambda: optax.adadelta(1.0, eps=1e-4)),
    "adam_schedule": (
        lambda: fo.adam(optax.cosine_decay_schedule(1e-2, 100)),
        lambda: optax.adam(optax.cosine_decay_schedule(1e-2, 100)),
    ),
}


@pytest.mark.parametrize("name", list(OPTAX_TWINS))
def test_matches_optax_of_the_same_name(problems, name):
    ours, theirs = OPTAX_TWINS[name]
    (_, our_state), our_traj = trajectory(ours(), problems)
    (_, their_state), their_traj = trajectory(theirs(), problems)
    assert_trees_close(our_traj, their_traj, rtol=1e-6, atol=1e-7)
    assert int(our_state.count) == 100


def test_rmsprop_momentum_equals_optax_for_constant_lr(problems):
    """Keras/slide form b ← γb + η∇/√(·) vs Optax's trace × η: equal up to rounding."""
    (_, _), ours = trajectory(fo.rmsprop(1e-2, momentum=0.9), problems)
    (_, _), theirs = trajectory(optax.rmsprop(1e-2, momentum=0.9), problems)
    assert_trees_close(ours, theirs, rtol=1e-6, atol=1e-6)


LION_TWINS = {
    "default_decay": (lambda: fo.lion(3e-3), lambda: optax.lion(3e-3)),
    "no_decay": (
        lambda: fo.lion(3e-3, b1=0.8, b2=0.95, weight_decay=None),
        lambda: optax.lion(3e-3, b1=0.8, b2=0.95, weight_decay=0.0),
    ),
    "schedule_masked_decay": (
        lambda: fo.lion(optax.cosine_decay_schedule(3e-3, 100), weight_decay=0.1, mask=_kernels),
        lambda: optax.lion(optax.cosine_decay_schedule(3e-3, 100), weight_decay=0.1, mask=_kernels),
    ),
}


def _kernels(params):  # decay every leaf except the CNN's biases
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not jax.tree_util.keystr(path).endswith("_b']"), params
    )


@pytest.mark.parametrize("case", list(LION_TWINS))
def test_lion_is_optax_lion_bit_for_bit(problems, case):
    """The Optax convention computes optax.lion's operations in optax.lion's order: equal bits
    over 100 steps on the parabola, Rosenbrock and the small CNN (with decay, mask, schedule)."""
    ours, theirs = LION_TWINS[case]
    (_, our_state), our_traj = trajectory(ours(), problems)
    (_, their_state), their_traj = trajectory(theirs(), problems)
    for x, y in zip(jax.tree.leaves(our_traj), jax.tree.leaves(their_traj)):
        np.testing.assert_array_equal(x, y)
    # The momentum too: sign() would hide a rounding difference in m from the trajectory.
    for x, y in zip(jax.tree.leaves(our_state.mu), jax.tree.leaves(their_state[0].mu)):
        np.testing.assert_array_equal(x, y)
    assert int(our_state.count) == 100


def test_lion_steps_are_plus_minus_eta_and_momentum_uses_b2():
    """Chen et al. 2023, Algorithm 2: c = β₁m + (1 − β₁)∇, θ ← θ − η(sign c + λθ), m ← β₂m + (1 − β₂)∇.
    A float64 transcription over 30 steps (β₁ = 0.5, β₂ = 0.9 make the two betas' roles visible)."""
    rng = np.random.default_rng(3)
    theta, m = rng.standard_normal(6), np.zeros(6)
    grads = rng.standard_normal((30, 6))
    eta, lam, ours = 0.01, 0.2, []
    tx = fo.lion(eta, b1=0.5, b2=0.9, weight_decay=lam)
    with jax.enable_x64(True):
        p = jnp.asarray(theta)
        state = tx.init(p)
        for g in grads:
            u, state = tx.update(jnp.asarray(g), state, p)
            p = p + u
            ours.append(np.asarray(p))
    expected = []
    for g in grads:
        c = 0.5 * m + 0.5 * g
        theta = theta - eta * (np.sign(c) + lam * theta)
        m = 0.9 * m + 0.1 * g
        expected.append(theta)
    np.testing.assert_allclose(np.stack(ours), np.stack(expected), rtol=1e-12, atol=1e-14)


def test_simplified_adam_early_steps_differ_from_bias_corrected_adam():
    """Without bias correction the first step is η(1−β₁)/√(1−β₂) ≈ 3.16η, not η (β = 0.9, 0.999)."""
    g = jnp.asarray([2.0, -0.5, 1e-2])
    for tx, expected in [
        (fo.adam(1.0, eps=0.0), np.sign(g)),
        (fo.adam_simplified(1.0, eps=0.0), np.sign(g) * 0.1 / np.sqrt(0.001)),
    ]:
        u, _ = tx.update(g, tx.init(jnp.zeros(3)))
        np.testing.assert_allclose(-u, expected, rtol=1e-5)
    # With a constant gradient the two agree once β₁ᵗ, β₂ᵗ ≈ 0 (here β = 0.5, 0.8 and t = 100).
    steps = {}
    for name, tx in [
        ("bc", fo.adam(1.0, 0.5, 0.8, 0.0)),
        ("simple", fo.adam_simplified(1.0, 0.5, 0.8, 0.0)),
    ]:
        s, first = tx.init(jnp.zeros(3)), None
        for t in range(100):
            u, s = tx.update(g, s)
            first = u if t == 0 else first
        steps[name] = (np.asarray(first), np.asarray(u))
    assert not np.allclose(steps["bc"][0], steps["simple"][0], rtol=0.1)
    np.testing.assert_allclose(steps["bc"][1], steps["simple"][1], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Keras-convention variants reproduce Keras 3's published numbers
# (keras/src/optimizers/*_test.py, Keras 3.15: test_single_step and test_correctness_with_golden)
# ------------------------------------------------------------------------------------------------

SINGLE_STEP = {  # Keras' Optimizer(learning_rate=0.5), grads [1, 6, 7, 2], vars [1, 2, 3, 4]
    "adam": [0.5, 1.5, 2.5, 3.5],
    "adamw": [0.4980, 1.4960, 2.494, 3.492],
    "adamax": [0.5, 1.5, 2.5, 3.5],
    "nadam": [0.4686, 1.4686, 2.4686, 3.4686],
    "adagrad": [0.5233, 1.5007, 2.5005, 3.5061],
    "rmsprop": [-0.5811, 0.4189, 1.4189, 2.4189],
    "adadelta": [0.9993, 1.9993, 2.9993, 3.9993],
    "ftrl": [0.2218, 1.3954, 2.3651, 2.8814],
    "lion": [0.5, 1.5, 2.5, 3.5],
}


@pytest.mark.parametrize("name", list(SINGLE_STEP))
def test_keras_single_step(name):
    tx = fo.get(name, learning_rate=0.5)
    p = jnp.array([1.0, 2.0, 3.0, 4.0])
    u, _ = tx.update(jnp.array([1.0, 6.0, 7.0, 2.0]), tx.init(p), p)
    np.testing.assert_allclose(p + u, SINGLE_STEP[name], rtol=1e-4, atol=1e-4)


def _tile(col):
    return np.tile(np.asarray(col)[:, None], (1, 10))


GOLDEN = {  # Keras' own name, overrides, golden values after steps 1..5
    "lion": ("lion", {}, _tile([0.999, 0.998, 0.997, 0.996, 0.995])),
    "adam_amsgrad": (
        "adam",
        dict(amsgrad=True),
        _tile([0.999, 0.9982, 0.9974, 0.9965, 0.9955]),
    ),
    "adagrad": (
        "adagrad",
        dict(learning_rate=0.2, initial_accumulator_value=0.3, epsilon=1e-6),
        [
            [0.9963] * 10,
            [0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209],
            [0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891],
            [0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579],
            [0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825],
        ],
    ),
    "rmsprop_centered": (
        "rmsprop",
        dict(centered=True),
        _tile([0.9967, 0.9933, 0.9908, 0.9885, 0.9864]),
    ),
    "adamw": (
        "adamw",
        dict(learning_rate=1.0, weight_decay=0.5, epsilon=2),
        [
            [0.4998] * 10,
            [0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382],
            [0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027, 0.1003],
            [0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294, 0.0258],
            [0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113, -0.0159],
        ],
    ),
    "adamax": (
        "adamax",
        dict(learning_rate=0.2, beta_1=0.85, beta_2=0.95, epsilon=1e-6),
        [
            [0.8] * 10,
            [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
            [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
            [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
            [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126],
        ],
    ),
    "nadam": (
        "nadam",
        dict(learning_rate=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5),
        [
            [0.4281] * 10,
            [
                -0.1738,
                -0.1731,
                -0.1726,
                -0.1723,
                -0.1721,
                -0.172,
                -0.1719,
                -0.1718,
                -0.1718,
                -0.1717,
            ],
            [
                -0.7115,
                -0.7103,
                -0.7096,
                -0.7092,
                -0.709,
                -0.7088,
                -0.7086,
                -0.7085,
                -0.7085,
                -0.7084,
            ],
            [
                -1.2335,
                -1.2322,
                -1.2313,
                -1.2309,
                -1.2306,
                -1.2304,
                -1.2302,
                -1.2301,
                -1.23,
                -1.2299,
            ],
            [
                -1.7492,
                -1.7478,
                -1.7469,
                -1.7464,
                -1.7461,
                -1.7459,
                -1.7457,
                -1.7456,
                -1.7455,
                -1.7454,
            ],
        ],
    ),
    "adadelta": (
        "adadelta",
        dict(learning_rate=1.0, rho=0.8, epsilon=1e-6),
        _tile([0.9978, 0.9947, 0.9915, 0.9882, 0.9849]),
    ),
    "ftrl": (
        "ftrl",
        dict(
            learning_rate=0.05,
            learning_rate_power=-0.2,
            initial_accumulator_value=0.4,
            l1_regularization_strength=0.05,
            l2_regularization_strength=0.15,
            l2_shrinkage_regularization_strength=0.01,
            beta=0.3,
        ),
        [
            [0.0] * 10,
            [
                -0.0034,
                -0.0077,
                -0.0118,
                -0.0157,
                -0.0194,
                -0.023,
                -0.0263,
                -0.0294,
                -0.0325,
                -0.0354,
            ],
            [
                -0.0078,
                -0.0162,
                -0.0242,
                -0.0317,
                -0.0387,
                -0.0454,
                -0.0516,
                -0.0575,
                -0.0631,
                -0.0685,
            ],
            [
                -0.0121,
                -0.0246,
                -0.0363,
                -0.0472,
                -0.0573,
                -0.0668,
                -0.0757,
                -0.0842,
                -0.0922,
                -0.0999,
            ],
            [
                -0.0164,
                -0.0328,
                -0.0481,
                -0.0623,
                -0.0753,
                -0.0875,
                -0.099,
                -0.1098,
                -0.1201,
                -0.1299,
            ],
        ],
    ),
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_keras_golden_values(case):
    name, overrides, golden = GOLDEN[case]
    tx = fo.get(name, **overrides)
    x = jnp.ones(10)
    state = tx.init(x)
    u, state = tx.update(jnp.full((10,), 0.01), state, x)
    x = x + u
    for row in golden:
        np.testing.assert_allclose(x, row, rtol=5e-4, atol=5e-4)
        u, state = tx.update(jnp.arange(0.1, 1.05, 0.1), state, x)
        x = x + u


@pytest.mark.parametrize(
    "name", ["adagrad", "rmsprop", "adamw", "adamax", "nadam", "adadelta", "lion"]
)
def test_keras_weight_decay(name):
    x = jnp.asarray(2.0)
    for _ in range(3):  # Keras applies three optimizers with zero gradients to var1
        tx = fo.get(name, learning_rate=1.0, weight_decay=0.004)
        u, _ = tx.update(jnp.zeros(()), tx.init(x), x)
        x = x + u
    np.testing.assert_allclose(x, 1.9760959, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Keras' float32 arithmetic, transcribed op for op in NumPy float32 (keras/src/optimizers/*.py,
# update_step, Keras 3.15): Keras casts β, 0.96 and η to float32 before using them, while Python
# constants such as `1 - self.beta_1` are formed in float64 and rounded once. Run eagerly, fnn's
# Keras convention must reproduce these bits exactly, step after step.
# ------------------------------------------------------------------------------------------------

F32 = np.float32


def over(x, scalar):
    """Keras' ``ops.divide(x, scalar)`` as XLA computes it: XLA's algebraic simplifier rewrites
    a division by a broadcast scalar into a multiplication by its float32 reciprocal."""
    return x * (F32(1) / scalar)


def keras_float32(rule, x0, grads, lr, wd=None, **h):
    """Keras 3's update_step in NumPy float32; returns θ after each step."""
    x, out = np.array(x0, F32), []
    z = np.zeros_like(x)
    s = dict(m=z.copy(), v=z.copy(), vhat=z.copy(), b=z.copy(), a=z.copy(), prod=F32(1.0))
    s["acc"] = np.full_like(x, F32(h.get("initial_accumulator_value", 0.1)))
    lr = F32(lr)
    for it, g in enumerate(grads):
        g = np.asarray(g, F32)
        if wd is not None:  # base_optimizer._apply_weight_decay, before the step
            x = x - x * F32(wd) * lr
        b1, b2, eps = h.get("beta_1"), h.get("beta_2"), h.get("epsilon", 1e-7)
        t = F32(it + 1)
        if rule == "sgd":
            gamma = h.get("momentum", 0.0)
            if gamma:
                s["b"] = s["b"] * F32(gamma) - g * lr
                x = x + (s["b"] * F32(gamma) - g * lr if h.get("nesterov") else s["b"])
            else:
                x = x - g * lr
        elif rule == "adagrad":
            s["acc"] = s["acc"] + np.square(g)
            x = x - (lr * g) / np.sqrt(s["acc"] + eps)
        elif rule == "rmsprop":
            rho = h.get("rho", 0.9)
            s["v"] = rho * s["v"] + (1 - rho) * np.square(g)
            if h.get("centered"):
                s["a"] = rho * s["a"] + (1 - rho) * g
                denominator = s["v"] - np.square(s["a"]) + eps
            else:
                denominator = s["v"] + eps
            increment = (lr * g) / np.sqrt(denominator)
            if h.get("momentum"):
                s["b"] = h["momentum"] * s["b"] + increment
                increment = s["b"]
            x = x - increment
        elif rule == "adam":
            alpha = lr * np.sqrt(1 - F32(b2) ** t) / (1 - F32(b1) ** t)
            s["m"] = s["m"] + (g - s["m"]) * (1 - b1)
            s["v"] = s["v"] + (np.square(g) - s["v"]) * (1 - b2)
            v = s["v"]
            if h.get("amsgrad"):
                s["vhat"] = np.maximum(s["vhat"], v)
                v = s["vhat"]
            x = x - (s["m"] * alpha) / (np.sqrt(v) + eps)
        elif rule == "adamax":
            s["m"] = s["m"] + (g - s["m"]) * (1 - b1)
            s["v"] = np.maximum(b2 * s["v"], np.abs(g))
            x = x - (lr * s["m"]) / ((1 - F32(b1) ** t) * (s["v"] + eps))
        elif rule == "nadam":
            # _backend_update_step first: Π ← Π·β₁·(1 − ½·0.96ᵗ) (β₁ a Python float here)
            s["prod"] = s["prod"] * b1 * (1.0 - 0.5 * F32(0.96) ** t)
            beta_1, beta_2, decay = F32(b1), F32(b2), F32(0.96)
            u_t = beta_1 * (1.0 - 0.5 * decay**t)
            u_t_1 = beta_1 * (1.0 - 0.5 * decay ** F32(it + 2))
            u_product_t_1 = s["prod"] * u_t_1
            s["m"] = s["m"] + (g - s["m"]) * (1 - beta_1)  # 1 − float32(β₁)
            s["v"] = s["v"] + (np.square(g) - s["v"]) * (1 - beta_2)
            m_hat = over(u_t_1 * s["m"], 1 - u_product_t_1) + over((1 - u_t) * g, 1 - s["prod"])
            v_hat = over(s["v"], 1 - beta_2**t)
            x = x - (m_hat * lr) / (np.sqrt(v_hat) + eps)
        elif rule == "adadelta":
            rho = h.get("rho", 0.95)
            s["v"] = rho * s["v"] + (1 - rho) * np.square(g)  # accumulated_grad
            delta = -(np.sqrt(s["b"] + eps) * g) / np.sqrt(s["v"] + eps)
            s["b"] = rho * s["b"] + (1 - rho) * np.square(delta)  # accumulated_delta_var
            x = x + lr * delta
        elif rule == "lion":
            beta_1, beta_2 = F32(b1), F32(b2)
            x = x - lr * np.sign(s["m"] * beta_1 + g * (1.0 - beta_1))
            s["m"] = s["m"] * beta_2 + g * (1.0 - beta_2)
        elif rule == "ftrl":  # learning_rate_power −0.5, no l1/l2/β
            new_acc = s["acc"] + np.square(g)
            s["a"] = s["a"] + (g - over(new_acc**0.5 - s["acc"] ** 0.5, lr) * x)  # linear
            quadratic = over(new_acc**0.5, lr) + 2 * (0.0 + 0.0 / (2.0 * lr))
            x = (np.clip(s["a"], -0.0, 0.0) - s["a"]) / quadratic
            s["acc"] = new_acc
        out.append(x.copy())
    return np.stack(out)


KERAS_F32 = {  # case -> (fnn optimizer, oracle rule, Keras hyperparameters, exact)
    "sgd": (lambda: fo.get("sgd", learning_rate=0.05), "sgd", {}, True),
    "momentum": (lambda: fo.get("momentum", learning_rate=0.05), "sgd", dict(momentum=0.9), True),
    "nesterov": (
        lambda: fo.get("nesterov", learning_rate=0.05),
        "sgd",
        dict(momentum=0.9, nesterov=True),
        True,
    ),
    "adagrad": (lambda: fo.get("adagrad", learning_rate=0.05), "adagrad", {}, True),
    "rmsprop": (lambda: fo.get("rmsprop", learning_rate=0.05), "rmsprop", {}, True),
    "rmsprop_centered_momentum": (
        lambda: fo.get("rmsprop", learning_rate=0.05, centered=True, momentum=0.5),
        "rmsprop",
        dict(centered=True, momentum=0.5),
        True,
    ),
    "adam": (
        lambda: fo.get("adam", learning_rate=0.05),
        "adam",
        dict(beta_1=0.9, beta_2=0.999),
        True,
    ),
    "amsgrad": (
        lambda: fo.get("amsgrad", learning_rate=0.05),
        "adam",
        dict(beta_1=0.9, beta_2=0.999, amsgrad=True),
        True,
    ),
    "adamax": (
        lambda: fo.get("adamax", learning_rate=0.05),
        "adamax",
        dict(beta_1=0.9, beta_2=0.999),
        True,
    ),
    "nadam": (
        lambda: fo.get("nadam", learning_rate=0.05),
        "nadam",
        dict(beta_1=0.9, beta_2=0.999),
        True,
    ),
    "nadam_b1_0.7": (
        lambda: fo.get("nadam", learning_rate=0.05, beta_1=0.7, beta_2=0.99),
        "nadam",
        dict(beta_1=0.7, beta_2=0.99),
        True,
    ),
    "adadelta": (lambda: fo.get("adadelta", learning_rate=1.0), "adadelta", {}, True),
    "lion": (
        lambda: fo.get("lion", learning_rate=0.05),
        "lion",
        dict(beta_1=0.9, beta_2=0.99),
        True,
    ),
    "ftrl": (lambda: fo.get("ftrl", learning_rate=0.05), "ftrl", {}, False),
}
KERAS_F32_DECAY = [
    "sgd",
    "momentum",
    "adagrad",
    "rmsprop",
    "adam",
    "adamax",
    "nadam",
    "adadelta",
    "lion",
]


def _keras_case(case, wd):
    make, rule, hyper, exact = KERAS_F32[case]
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal(16).astype(F32)
    grads = [(rng.standard_normal(16) * 10.0 ** rng.uniform(-2, 1)).astype(F32) for _ in range(60)]
    lr = 1.0 if rule == "adadelta" else 0.05
    expected = keras_float32(rule, x0, grads, lr, wd=wd, **hyper)
    tx = (
        make()
        if wd is None
        else fo.get(_GET_NAME.get(case, case), **_overrides(case), weight_decay=wd)
    )
    p = jnp.asarray(x0)
    state, ours = tx.init(p), []
    for g in grads:  # eagerly: one XLA operation at a time, as Keras runs apply_gradients
        u, state = tx.update(jnp.asarray(g), state, p)
        p = p + u
        ours.append(np.asarray(p))
    return np.stack(ours), expected, exact


_GET_NAME = {"rmsprop_centered_momentum": "rmsprop", "nadam_b1_0.7": "nadam"}


def _overrides(case):
    lr = 1.0 if case == "adadelta" else 0.05
    return {"learning_rate": lr}


@pytest.mark.parametrize("case", list(KERAS_F32))
def test_keras_convention_is_keras_float32_arithmetic_bit_for_bit(case):
    ours, expected, exact = _keras_case(case, None)
    if exact:
        np.testing.assert_array_equal(ours, expected)
    else:  # FTRL: Keras assigns θ_new; θ + (θ_new − θ) rounds once, at the old θ's scale
        np.testing.assert_allclose(ours, expected, rtol=2e-7, atol=5e-7)


@pytest.mark.parametrize("case", KERAS_F32_DECAY)
def test_keras_weight_decay_is_keras_float32_arithmetic(case):
    ours, expected, _ = _keras_case(case, 0.1)
    # θ − θλη is assigned before the step; (θ₁ + u) − θ is exact whenever θ keeps its binary
    # exponent within a factor of 2 (Sterbenz), i.e. all but a rare step near θ = 0.
    assert np.mean(ours == expected) > 0.9  # bit for bit wherever Sterbenz applies
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)  # one rounding elsewhere


def test_keras_nadam_uses_one_minus_float32_beta():
    """Keras forms 1 − β₁ from float32 β₁: 1 − f32(0.9) = 0.10000002, not f32(0.1) = 0.1."""
    assert F32(1) - F32(0.9) != F32(1 - 0.9)
    g = jnp.asarray([3.0], jnp.float32)
    _, state = fo.get("nadam").update(g, fo.get("nadam").init(jnp.zeros(1)))
    assert np.asarray(state.mu)[0] == F32(3.0) * (F32(1) - F32(0.9))
    assert np.asarray(state.mu)[0] != F32(3.0) * F32(1 - 0.9)
    # Keras' Adam, by contrast, multiplies by the Python constant 1 − 0.9, rounded once.
    _, state = fo.get("adam").update(g, fo.get("adam").init(jnp.zeros(1)))
    assert np.asarray(state.mu)[0] == F32(3.0) * F32(1 - 0.9)


KERAS_NAMES = [
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "adadelta",
    "ftrl",
    "lion",
]
KERAS_VARIANTS = {  # fnn get() name + overrides, the Keras class name + config
    "amsgrad": ("amsgrad", {}, "adam", dict(amsgrad=True)),
    "momentum": ("momentum", {}, "sgd", dict(momentum=0.9)),
    "nesterov": ("nesterov", {}, "sgd", dict(momentum=0.9, nesterov=True)),
    "rmsprop_centered": ("rmsprop", dict(centered=True), "rmsprop", dict(centered=True)),
    "rmsprop_momentum": ("rmsprop", dict(momentum=0.9), "rmsprop", dict(momentum=0.9)),
    "nadam_b1_0.8": ("nadam", dict(b1=0.8), "nadam", dict(beta_1=0.8)),
    "lion_b_0.7_0.95": ("lion", dict(b1=0.7, b2=0.95), "lion", dict(beta_1=0.7, beta_2=0.95)),
}
for _name in ["sgd", "adam", "adagrad", "rmsprop", "adamax", "nadam", "adadelta", "ftrl", "lion"]:
    KERAS_VARIANTS[f"{_name}_decay"] = (
        _name,
        dict(weight_decay=0.05),
        _name,
        {"weight_decay": 0.05},
    )
for _name in KERAS_NAMES:
    KERAS_VARIANTS[_name] = (_name, {}, _name, {})


@pytest.mark.crosscheck
@pytest.mark.parametrize("case", list(KERAS_VARIANTS))
def test_crosscheck_against_keras(case):
    """fnn.optimizers.get(name) against Keras 3 itself, 200 random gradients, bit for bit.

    Both run op by op (eagerly); then every update is Keras' to the last bit. Exceptions, each a
    single rounding per step, not a drift: FTRL (Keras assigns θ_new, an Optax update adds
    θ_new − θ) and weight decay when θ changes its binary exponent by more than one in a step.
    """
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    name, overrides, kname, kconfig = KERAS_VARIANTS[case]
    k_opt = keras.optimizers.get({"class_name": kname, "config": dict(kconfig, learning_rate=0.01)})
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(32).astype(np.float32)
    var = keras.Variable(x0)
    tx = fo.get(name, learning_rate=0.01, **overrides)
    p = jnp.asarray(x0)
    state = tx.init(p)
    for step in range(200):
        g = (rng.standard_normal(32) * 10.0 ** rng.uniform(-3, 1)).astype(np.float32)
        k_opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        u, state = tx.update(jnp.asarray(g), state, p)
        p = p + u
        theirs = keras.ops.convert_to_numpy(var)
        if name == "ftrl":  # θ + (θ_new − θ) rounds once at the scale of the old θ (|θ| < 4)
            np.testing.assert_allclose(p, theirs, rtol=1e-6, atol=5e-7, err_msg=f"step {step}")
        elif name == "adamw" or "weight_decay" in overrides:
            np.testing.assert_allclose(p, theirs, rtol=1e-6, atol=1e-7, err_msg=f"step {step}")
        else:
            np.testing.assert_array_equal(p, theirs, err_msg=f"step {step}")


# ------------------------------------------------------------------------------------------------
# Tier 3: properties, eager == jit == vmap, no recompilation
# ------------------------------------------------------------------------------------------------


@jax.jit
def _adagrad_effective_steps(grads):
    eps, eta = 1e-7, 0.1
    tx = fo.adagrad(eta, initial_accumulator_value=0.0, eps=eps)

    def body(s, g):
        _, s = tx.update(g, s)
        return s, eta * jax.lax.rsqrt(s.sum_of_squares + eps)  # η/√(G + ε) per coordinate

    return jax.lax.scan(body, tx.init(grads[0]), grads)[1]


@given(
    st.lists(
        st.lists(st.floats(-1e3, 1e3, width=32), min_size=3, max_size=3), min_size=8, max_size=8
    )
)
def test_adagrad_effective_step_size_never_increases(grads):
    steps = np.asarray(_adagrad_effective_steps(jnp.asarray(grads, jnp.float32)))
    assert np.all(np.diff(steps, axis=0) <= 0)


_FIRST_ADAM_STEP = jax.jit(lambda g: fo.adam(0.01).update(g, fo.adam(0.01).init(g))[0])


@given(
    st.lists(
        st.floats(1e-3, 1e4).flatmap(lambda x: st.sampled_from([x, -x])),
        min_size=5,
        max_size=5,
    )
)
def test_first_bias_corrected_adam_step_has_magnitude_eta(grads):
    g = jnp.asarray(grads, jnp.float32)
    u = np.asarray(_FIRST_ADAM_STEP(g))
    # m̂₁ = ∇, v̂₁ = ∇², so |Δθ| = η|∇|/(|∇| + ε) ≈ η (within 1e-5 for |∇| ≥ 1e-3), against ∇.
    # In float32, 1 − β₂ = 1 − 0.999 carries a relative rounding error of ~6e-5 (Optax's too).
    np.testing.assert_allclose(np.abs(u), 0.01, rtol=1e-4)
    np.testing.assert_array_equal(np.sign(u), -np.sign(grads))


# Invariants for every rule. Each configuration compiles ONE program, shared by every property:
# K = 4 updates from a fresh state, parameters held fixed (no rule below reads them except FTRL
# and weight decay, whose first step is from θ₀ anyway).

K, N = 4, 5
ETA = 0.01


def _nadam_keras_first_step_bound(b1):
    """Keras Nadam at t = 1: m̄ = ∇(1 + μ₂(1 − β₁)/(1 − μ₁μ₂)), μₜ = β₁(1 − ½·0.96ᵗ)."""
    mu1, mu2 = b1 * (1 - 0.5 * 0.96), b1 * (1 - 0.5 * 0.96**2)
    return 1 + mu2 * (1 - b1) / (1 - mu1 * mu2)


# name -> (optimizer, bound on |Δθ₁| / η for any gradient, or "linear" (|Δθ₁| = factor·η|∇|))
EVERY_RULE = {
    "sgd": (lambda: fo.sgd(ETA), ("linear", 1.0)),
    "momentum": (lambda: fo.momentum(ETA, 0.9), ("linear", 1.0)),
    "nesterov": (lambda: fo.nesterov(ETA, 0.9), ("linear", 1.9)),
    "adagrad": (lambda: fo.adagrad(ETA), 1.0),  # η|∇|/√(G₀ + ∇² + ε) ≤ η
    "adagrad_keras": (lambda: fo.adagrad(ETA, convention="keras"), 1.0),
    "rmsprop": (lambda: fo.rmsprop(ETA), 1 / np.sqrt(0.1)),  # η|∇|/√((1 − ρ)∇² + ε)
    "rmsprop_keras": (lambda: fo.rmsprop(ETA, convention="keras"), 1 / np.sqrt(0.1)),
    "rmsprop_centered": (lambda: fo.rmsprop(ETA, centered=True), 1 / np.sqrt(0.9 * 0.1)),
    "rmsprop_momentum": (lambda: fo.rmsprop(ETA, momentum=0.9), 1 / np.sqrt(0.1)),
    # η·√(ε/((1 − ρ)∇² + ε))·|∇| ≤ η·√(ε/(1 − ρ)) when |∇| ≥ 1, ≤ η always: use the latter.
    "adadelta": (lambda: fo.adadelta(ETA), 1.0),
    "adadelta_keras": (lambda: fo.adadelta(ETA, convention="keras"), 1.0),
    "adam": (lambda: fo.adam(ETA), 1.0),  # m̂₁ = ∇, v̂₁ = ∇²: η|∇|/(|∇| + ε)
    "adam_keras": (lambda: fo.adam(ETA, eps=1e-7, convention="keras"), 1.0),
    "adam_simplified": (lambda: fo.adam_simplified(ETA), 0.1 / np.sqrt(0.001)),
    "amsgrad": (lambda: fo.amsgrad(ETA), 1.0),
    "amsgrad_keras": (lambda: fo.amsgrad(ETA, convention="keras"), 1.0),
    "adamax": (lambda: fo.adamax(ETA), 1.0),
    "adamax_keras": (lambda: fo.adamax(ETA, convention="keras"), 1.0),
    "nadam": (lambda: fo.nadam(ETA), (1 + 2 * 0.9) / (1 + 0.9)),  # β₁/(1 + β₁) + 1
    "nadam_keras": (
        lambda: fo.nadam(ETA, eps=1e-7, convention="keras"),
        _nadam_keras_first_step_bound(0.9),
    ),
    "lion": (lambda: fo.lion(ETA, weight_decay=None), 1.0),  # |sign| = 1
    "lion_keras": (lambda: fo.lion(ETA, convention="keras", weight_decay=None), 1.0),
}

# Scale invariance, update(c∇) = update(∇) for c > 0, holds exactly in arithmetic when ε = 0
# (Adam family, RMSProp, AdaGrad with G₀ = 0) and for Lion's sign; with ε > 0 it is the limit
# ε ≪ √v̂ (Adam, AMSGrad, Nadam), ε ≪ max(β₂u, |∇|) (AdaMax), ε ≪ E[∇²] (RMSProp, AdaDelta:
# its ε also sits in the numerator √(E[Δ²] + ε), which sets the step's size, not its
# dependence on ∇) and ε + G₀ ≪ Σ∇² (AdaGrad). In float32 it is bit for bit for c = 2ᵏ: every
# intermediate then scales by a power of two, which rounding commutes with.
SCALE_FREE = {
    "adagrad": lambda: fo.adagrad(ETA, initial_accumulator_value=0.0, eps=0.0),
    "adagrad_keras": lambda: fo.adagrad(ETA, 0.0, 0.0, convention="keras"),
    "rmsprop": lambda: fo.rmsprop(ETA, eps=0.0),
    "rmsprop_keras": lambda: fo.rmsprop(ETA, eps=0.0, convention="keras"),
    "rmsprop_centered_momentum": lambda: fo.rmsprop(ETA, eps=0.0, centered=True, momentum=0.9),
    "adadelta": lambda: fo.adadelta(1.0, eps=1e-30),  # ε below half an ulp of E[∇²]
    "adadelta_keras": lambda: fo.adadelta(1.0, eps=1e-30, convention="keras"),
    "adam": lambda: fo.adam(ETA, eps=0.0),
    "adam_keras": lambda: fo.adam(ETA, eps=0.0, convention="keras"),
    "adam_simplified": lambda: fo.adam_simplified(ETA, eps=0.0),
    "amsgrad": lambda: fo.amsgrad(ETA, eps=0.0),
    "amsgrad_keras": lambda: fo.amsgrad(ETA, eps=0.0, convention="keras"),
    "adamax": lambda: fo.adamax(ETA, eps=0.0),
    "adamax_keras": lambda: fo.adamax(ETA, eps=0.0, convention="keras"),
    "nadam": lambda: fo.nadam(ETA, eps=0.0),
    "nadam_keras": lambda: fo.nadam(ETA, eps=0.0, convention="keras"),
    "lion": lambda: fo.lion(ETA, weight_decay=None),  # any ε: Lion has none
    "lion_keras": lambda: fo.lion(ETA, convention="keras", weight_decay=None),
}
LINEAR = ["sgd", "momentum", "nesterov"]  # update(c∇) = c·update(∇): homogeneous, not invariant
_RUNS: dict = {}


def _run(key, make):
    """The K updates of `make()` for gradients [K, N] at fixed params [N]: one compiled program."""
    if key not in _RUNS:
        tx = make()

        def run(params, grads):
            def body(state, g):
                u, state = tx.update(g, state, params)
                return state, u

            return jax.lax.scan(body, tx.init(params), grads)[1]

        _RUNS[key] = jax.jit(run)
    return _RUNS[key]


def _normal_f32(lo, hi):
    """Signed float32 magnitudes in [lo, hi] (normal numbers: XLA:CPU flushes subnormals)."""
    magnitude = st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32)
    return st.tuples(magnitude, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])


_grads = hnp.arrays(np.float32, (K, N), elements=_normal_f32(1e-2, 1e2))
_params = hnp.arrays(np.float32, (N,), elements=_normal_f32(1e-3, 1e3))


@given(_params)
def test_zero_gradient_leaves_parameters_unchanged_for_every_rule(params):
    """No gradient, no step: every rule (no weight decay) leaves θ exactly as it was, K steps
    from a fresh state. FTRL is the exception, below: its iterate is a function of z."""
    zeros = np.zeros((K, N), np.float32)
    for name, (make, _) in EVERY_RULE.items():
        updates = np.asarray(_run(name, make)(params, zeros))
        applied = params + updates  # θ + u, as optax.apply_updates
        np.testing.assert_array_equal(applied, np.broadcast_to(params, (K, N)), err_msg=name)


@given(_params)
def test_ftrl_with_zero_gradients_sits_at_its_proximal_point(params):
    """FTRL's θ is (clip(z, ±λ₁) − z)/q, with z = 0 after zero gradients: θ₁ = 0 from any θ₀
    (Keras' Ftrl does the same), and it stays there."""
    updates = np.asarray(_run("ftrl", lambda: fo.ftrl(ETA))(params, np.zeros((K, N), np.float32)))
    np.testing.assert_array_equal(params + updates[0], 0.0)


@given(_grads, st.integers(-12, 12))
def test_scale_invariance_bit_for_bit_for_powers_of_two(grads, k):
    """update(c∇) = update(∇) for c = 2ᵏ, every step, bit for bit (see SCALE_FREE)."""
    params = np.ones(N, np.float32)
    c = np.float32(2.0**k)
    for name, make in SCALE_FREE.items():
        run = _run(("scale", name), make)
        np.testing.assert_array_equal(run(params, grads * c), run(params, grads), err_msg=name)
    for name in LINEAR:
        run = _run(name, EVERY_RULE[name][0])
        np.testing.assert_array_equal(run(params, grads * c), c * run(params, grads), err_msg=name)


@given(_grads, st.floats(1e-3, 1e3))
def test_scale_invariance_within_rounding_for_any_positive_factor(grads, c):
    params = np.ones(N, np.float32)
    scaled = (grads * np.float32(c)).astype(np.float32)
    for name, make in SCALE_FREE.items():
        if name.startswith("lion"):
            continue  # sign(c·x) = sign(x) exactly; a rounding near x = 0 could flip it
        run = _run(("scale", name), make)
        # atol: centered RMSProp's E − M² cancels, so small steps carry its rounding.
        np.testing.assert_allclose(
            run(params, scaled), run(params, grads), rtol=2e-5, atol=1e-6 * ETA, err_msg=name
        )


@given(
    hnp.arrays(np.float32, (N,), elements=st.floats(0.5, 4.0, width=32)),
    hnp.arrays(np.float32, (N,), elements=_normal_f32(1.0, 10.0)),
)
def test_first_step_descends_a_convex_quadratic(curvature, offset):
    """L(θ) = ½Σaᵢ(θᵢ − θ*ᵢ)², a ∈ [0.5, 4], |θ₀ − θ*| ∈ [1, 10], η = 0.01: every rule's first
    step moves each coordinate against its gradient, by less than twice its distance to θ*, so
    L decreases (later steps of momentum methods may overshoot; `test_sgd_never_increases...`
    covers plain gradient descent over many steps)."""
    theta0 = np.zeros(N, np.float32)
    target = -offset  # θ₀ − θ* = offset
    g = curvature * (theta0 - target)
    grads = np.broadcast_to(g, (K, N)).astype(np.float32)

    def loss(t):
        return 0.5 * np.sum(curvature.astype(np.float64) * (t - target.astype(np.float64)) ** 2)

    for name, (make, _) in EVERY_RULE.items():
        step = np.asarray(_run(name, make)(theta0, grads))[0].astype(np.float64)
        assert np.all(np.sign(step) == -np.sign(g)), name
        assert np.all(np.abs(step) < 2 * np.abs(offset)), name
        assert loss(theta0 + step) < loss(theta0), name


@given(hnp.arrays(np.float32, (K, N), elements=_normal_f32(1e-6, 1e6)))
def test_first_step_is_bounded(grads):
    """|Δθ₁| ≤ bound·η whatever the gradient's size (Adam family, AdaMax, Lion: η; Nadam:
    η(1 + 2β₁)/(1 + β₁) (Optax) or η(1 + μ₂(1 − β₁)/(1 − μ₁μ₂)) (Keras); RMSProp η/√(1 − ρ),
    centered η/√(ρ(1 − ρ)); AdaGrad, AdaDelta η; the slide's simplified Adam η(1 − β₁)/√(1 − β₂));
    gradient descent is linear instead: |Δθ₁| = η|∇| (Nesterov (1 + γ)η|∇|). The 1e-6 allows the
    float32 rounding of 1 − β (e.g. 1 − f32(0.999) ≠ 0.001)."""
    params = np.ones(N, np.float32)
    for name, (make, bound) in EVERY_RULE.items():
        first = np.abs(np.asarray(_run(name, make)(params, grads))[0]).astype(np.float64)
        if isinstance(bound, tuple):
            expected = bound[1] * ETA * np.abs(grads[0].astype(np.float64))
            np.testing.assert_allclose(first, expected, rtol=1e-6, err_msg=name)
        else:
            assert np.all(first <= bound * ETA * (1 + 1e-6)), (name, first.max() / ETA, bound)
    lion = np.abs(np.asarray(_run("lion", EVERY_RULE["lion"][0])(params, grads))[0])
    np.testing.assert_array_equal(lion, np.float32(ETA))  # Lion: exactly η per coordinate
    ftrl = np.asarray(_run("ftrl", lambda: fo.ftrl(ETA))(params, grads))[0]
    assert np.all(np.abs(params + ftrl) <= np.abs(params) + ETA * (1 + 1e-6))  # |θ₁| ≤ |θ₀| + η


ALL = {
    "adagrad": lambda: fo.adagrad(0.1),
    "rmsprop": lambda: fo.rmsprop(0.01, centered=True, momentum=0.9),
    "adam": lambda: fo.adam(optax.linear_schedule(0.1, 0.0, 10)),
    "adam_keras_amsgrad": lambda: fo.adam(0.1, amsgrad=True, convention="keras"),
    "adam_simplified": lambda: fo.adam_simplified(0.1),
    "adamw": lambda: fo.adamw(0.1, weight_decay=0.01),
    "adamax": lambda: fo.adamax(0.1, convention="keras"),
    "nadam": lambda: fo.nadam(0.1),
    "nadam_keras": lambda: fo.nadam(0.1, convention="keras"),
    "adadelta": lambda: fo.adadelta(1.0),
    "ftrl": lambda: fo.ftrl(0.1, l1_regularization_strength=0.01),
    "lion": lambda: fo.lion(optax.linear_schedule(0.1, 0.0, 10)),
    "lion_keras_decay": lambda: fo.lion(0.1, convention="keras", weight_decay=0.1),
    "rmsprop_keras": lambda: fo.rmsprop(0.01, momentum=0.5, convention="keras"),
    "adagrad_keras": lambda: fo.adagrad(0.1, convention="keras", weight_decay=0.01),
    "adadelta_keras": lambda: fo.adadelta(1.0, convention="keras"),
}


@pytest.mark.parametrize("name", list(ALL))
def test_eager_equals_jit_equals_vmap_and_no_recompilation(name):
    tx = ALL[name]()
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: 0.3 * p - 0.2, params)
    state0 = tx.init(params)
    eager, s = [], state0
    for _ in range(3):
        u, s = tx.update(grads, s, params)
        eager.append(u)
    traces = []

    def update(g, s, p):
        traces.append(1)
        return tx.update(g, s, p)

    jitted, s = jax.jit(update), state0
    for k in range(3):
        u, s = jitted(grads, s, params)
        assert_trees_close(u, eager[k], rtol=1e-6, atol=1e-7)
    assert len(traces) == 1, "the second update recompiled"
    # vmap over a batch of 4 independent problems equals running each alone.
    batch = jax.tree.map(lambda p: jnp.stack([p * (1 + k) for k in range(4)]), params)
    gbatch = jax.tree.map(lambda p: 0.3 * p - 0.2, batch)
    vstate = jax.vmap(tx.init)(batch)
    vu, _ = jax.vmap(tx.update)(gbatch, vstate, batch)
    for k in range(4):
        pk = jax.tree.map(lambda x, k=k: x[k], batch)
        gk = jax.tree.map(lambda x, k=k: x[k], gbatch)
        uk, _ = tx.update(gk, tx.init(pk), pk)
        assert_trees_close(jax.tree.map(lambda x, k=k: x[k], vu), uk, rtol=1e-6, atol=1e-7)


def test_inject_hyperparams_schedules_b1_and_keras_convention():
    tx = optax.inject_hyperparams(fo.adam)(
        learning_rate=optax.linear_schedule(0.1, 0.0, 10), b1=0.5, convention="keras"
    )
    p = jnp.zeros(3)
    state = tx.init(p)
    update = jax.jit(tx.update)
    for _ in range(3):
        _, state = update(jnp.ones(3), state, p)
    assert float(fo.learning_rate(state)) == pytest.approx(0.08)
    reference = fo.adam(optax.linear_schedule(0.1, 0.0, 10), b1=0.5, convention="keras")
    s = reference.init(p)
    for _ in range(3):
        _, s = reference.update(jnp.ones(3), s, p)
    np.testing.assert_allclose(state.inner_state.mu, s.mu, rtol=1e-6)


def test_get_defaults_are_keras():
    state = fo.get("adam").init(jnp.zeros(2))
    assert float(state.learning_rate) == pytest.approx(1e-3)
    # Keras Adam's ε = 1e-7 on the uncorrected √v: a zero-variance first step of a tiny gradient.
    g = jnp.asarray([1e-6, 1e-6])
    u, _ = fo.get("adam").update(g, fo.get("adam").init(g))
    expected = 1e-3 * np.sqrt(1 - 0.999) / (1 - 0.9) * 0.1e-6 / (np.sqrt(0.001e-12) + 1e-7)
    np.testing.assert_allclose(-np.asarray(u), expected, rtol=1e-5)
    assert isinstance(fo.get("RMSprop").init(jnp.zeros(1)), fo.RmspropState)
    assert fo.get("adamw", beta_1=0.8) is not None
    # Lion: Keras' Lion() is lr 1e-3, β = (0.9, 0.99), no weight decay (Optax's default is 1e-3),
    # so get("lion") needs no params; the factory's Optax default decay does.
    lion = fo.get("Lion")
    u, state = lion.update(jnp.asarray([2.0, -3.0]), lion.init(jnp.zeros(2)))
    np.testing.assert_array_equal(u, np.float32([-1e-3, 1e-3]))
    assert isinstance(state, fo.LionState) and float(state.learning_rate) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lion with weight_decay needs params"):
        fo.lion().update(jnp.ones(2), fo.lion().init(jnp.zeros(2)))
    assert "lion" in fo.names()


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: fo.adam(0.1, b1=1.0), r"b1 must be in \[0, 1\), got 1.0"),
        (lambda: fo.adam(0.1, b2=-0.1), r"b2 must be in \[0, 1\), got -0.1"),
        (lambda: fo.nadam(0.1, b2=1.5), r"b2 must be in \[0, 1\), got 1.5"),
        (lambda: fo.adamax(0.1, b1=float("nan")), r"b1 must be in \[0, 1\), got nan"),
        (lambda: fo.rmsprop(0.1, decay=1.0), r"decay must be in \[0, 1\), got 1.0"),
        (lambda: fo.adadelta(1.0, rho=-0.5), r"rho must be in \[0, 1\), got -0.5"),
        (lambda: fo.adagrad(-1.0), r"learning_rate must be a finite number >= 0.*got -1.0"),
        (lambda: fo.adam(float("inf")), r"learning_rate must be a finite number >= 0.*got inf"),
        (lambda: fo.adam(0.1, eps=-1e-8), r"eps must be a finite number >= 0, got -1e-08"),
        (lambda: fo.adam(0.1, convention="torch"), r"convention must be one of.*got 'torch'"),
        (lambda: fo.ftrl(0.0), r"learning_rate must be a finite number > 0.*got 0.0"),
        (
            lambda: fo.ftrl(0.1, learning_rate_power=0.5),
            r"learning_rate_power must be <= 0, got 0.5",
        ),
        (lambda: fo.get("rmsprop", rho=1.2), r"decay must be in \[0, 1\), got 1.2"),
        (lambda: fo.get("adam", beta_1=-0.9), r"b1 must be in \[0, 1\), got -0.9"),
        (lambda: fo.lion(0.1, b1=1.5), r"b1 must be in \[0, 1\], got 1.5"),
        (lambda: fo.lion(0.1, b2=-0.1), r"b2 must be in \[0, 1\], got -0.1"),
        (lambda: fo.lion(0.1, weight_decay=-1.0), r"weight_decay must be a finite number >= 0"),
        (lambda: fo.lion(-0.1), r"learning_rate must be a finite number >= 0.*got -0.1"),
        (lambda: fo.lion(0.1, convention="torch"), r"convention must be one of.*got 'torch'"),
        (lambda: fo.rmsprop(0.1, convention="tf"), r"convention must be one of.*got 'tf'"),
        (lambda: fo.adagrad(0.1, convention="tf"), r"convention must be one of.*got 'tf'"),
        (lambda: fo.adadelta(0.1, convention="tf"), r"convention must be one of.*got 'tf'"),
    ],
)
def test_bad_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_trees_and_missing_params():
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    tx = fo.adam(0.1)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"grads tree does not match.*expected \{\['b'\]: \(3,\)"):
        tx.update([jnp.zeros((2, 3)), jnp.zeros(3)], state)
    with pytest.raises(ValueError, match=r"grads leaf \['b'\] has shape \(4,\).*has shape \(3,\)"):
        tx.update({"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)}, state)
    for needs in [fo.adamw(0.1), fo.ftrl(0.1)]:
        with pytest.raises(ValueError, match="needs params"):
            needs.update(params, needs.init(params))


def test_flat_buffer_equals_the_per_leaf_update():
    """`flatten`: the parameters as one flat buffer; the update is exactly the per-leaf one."""
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.arange(4.0)}
    flat, unflatten = fo.flatten(params)
    assert flat.shape == (16,)
    loss = lambda p: jnp.sum(jnp.sin(p["w"]) ** 2) + jnp.sum(p["b"] ** 3)  # noqa: E731
    tx = fo.adam(0.1)
    tree_state, flat_state = tx.init(params), tx.init(flat)
    p_tree, p_flat = params, flat
    for _ in range(5):
        u, tree_state = tx.update(jax.grad(loss)(p_tree), tree_state, p_tree)
        p_tree = optax.apply_updates(p_tree, u)
        g_flat = jax.grad(lambda f: loss(unflatten(f)))(p_flat)  # gradients arrive flat
        u, flat_state = tx.update(g_flat, flat_state, p_flat)
        p_flat = optax.apply_updates(p_flat, u)
    assert_trees_close(unflatten(p_flat), p_tree, rtol=1e-6, atol=1e-7)


def test_fused_adam_is_a_deprecated_alias_of_adam():
    """The fused path was removed (BENCHMARKS.md); the names warn and compute adam."""
    with pytest.warns(
        DeprecationWarning, match="fused_adam is deprecated: use fnn.optimizers.adam"
    ):
        tx = fo.fused_adam(1e-2, convention="keras", weight_decay=0.1)
    p = jnp.linspace(-1.0, 1.0, 6)
    g = jnp.cos(3 * p)
    reference = fo.adam(1e-2, convention="keras", weight_decay=0.1)
    u, state = tx.update(g, tx.init(p), p)
    np.testing.assert_array_equal(u, reference.update(g, reference.init(p), p)[0])
    assert isinstance(state, fo.AdamState)
    with pytest.warns(DeprecationWarning, match="fused_adam is deprecated"):
        keras_default = fo.get("fused_adam")
    np.testing.assert_array_equal(
        keras_default.update(g, keras_default.init(p))[0],
        fo.get("adam").update(g, fo.get("adam").init(p))[0],
    )
    with pytest.warns(DeprecationWarning, match="FusedAdamState is deprecated"):
        assert fo.FusedAdamState is fo.AdamState
    assert "fused_adam" not in fo.names() and "fused_adam" not in fo.__all__
