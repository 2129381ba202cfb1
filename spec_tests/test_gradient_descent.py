"""Slides "Gradient descent": batch / mini-batch / stochastic GD, SGD with momentum, Nesterov.

Three tiers per rule: float64 NumPy transcriptions of the slide equations (oracles); Optax's
optimizer of the same name (the slide's momentum v equals Optax's trace times η for a constant η,
and differs under a schedule); hypothesis properties, eager == jit, no recompilation. Plus Keras'
own published test values, composition with Optax, reading the learning rate back, and errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimizer_problems import make_problems, trajectory

from fnn import optimizers as fo

# ------------------------------------------------------------------------------------------------
# Problems
# ------------------------------------------------------------------------------------------------


def random_quadratic(seed: int, n: int = 5):
    """L(θ) = ½ θᵀAθ − bᵀθ with A symmetric positive definite (float64); ∇L = Aθ − b."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = rng.uniform(0.5, 4.0, n)
    a = (q * eig) @ q.T
    b = rng.standard_normal(n)
    theta0 = rng.standard_normal(n)
    return a, b, theta0


def run_fnn(tx, grad_fn, theta0, steps):
    """Iterate tx on grad_fn for `steps` steps; returns the [steps, ...] trajectory (after each step)."""
    update = jax.jit(tx.update)
    params = jnp.asarray(theta0)
    state = tx.init(params)
    out = []
    for _ in range(steps):
        updates, state = update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return np.stack(out), state


# ------------------------------------------------------------------------------------------------
# Tier 1: float64 oracles of the slide equations, 50 steps on random quadratics, every step
# ------------------------------------------------------------------------------------------------


def oracle_sgd(a, b, theta, lrs):
    out = []
    for eta in lrs:
        theta = theta - eta * (a @ theta - b)  # θ ← θ − η∇L
        out.append(theta)
    return np.stack(out)


def oracle_momentum(a, b, theta, lrs, gamma, nesterov=False):
    v = np.zeros_like(theta)
    out = []
    for eta in lrs:
        g = a @ theta - b
        v = gamma * v + eta * g  # v ← γv + η∇
        theta = theta - (gamma * v + eta * g if nesterov else v)  # θ ← θ − v
        out.append(theta)
    return np.stack(out)


STEPS = 50


def SCHEDULE(count):  # noqa: N802 - a constant-like schedule: η = 0.2·0.5^(count/10)
    """Exponential decay computed in the default float dtype (float64 under x64)."""
    return 0.2 * 0.5 ** (jnp.asarray(count, jnp.result_type(float)) / 10)


def schedule_values(n):
    """η_t = schedule(t − 1) for t = 1..n, in float64 (the step convention)."""
    return [0.2 * 0.5 ** (k / 10) for k in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scheduled", [False, True], ids=["constant", "schedule"])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_oracle_float64_every_step(rule, scheduled, seed):
    a, b, theta0 = random_quadratic(seed)
    lrs = schedule_values(STEPS) if scheduled else [0.1] * STEPS
    lr = SCHEDULE if scheduled else 0.1
    with jax.enable_x64(True):
        tx = {
            "sgd": lambda: fo.sgd(lr),
            "momentum": lambda: fo.momentum(lr, momentum=0.8),
            "nesterov": lambda: fo.nesterov(lr, momentum=0.8),
        }[rule]()
        traj, _ = run_fnn(tx, lambda p: jnp.asarray(a) @ p - jnp.asarray(b), theta0, STEPS)
    if rule == "sgd":
        expected = oracle_sgd(a, b, theta0, lrs)
    else:
        expected = oracle_momentum(a, b, theta0, lrs, 0.8, nesterov=rule == "nesterov")
    assert traj.dtype == np.float64
    np.testing.assert_allclose(traj, expected, rtol=1e-12, atol=1e-12)


def test_oracle_weight_decay_is_keras_decoupled_decay():
    """Keras: θ ← θ(1 − ηλ) before the step, then the step with the gradient."""
    a, b, theta0 = random_quadratic(3)
    eta, lam, gamma = 0.05, 0.1, 0.9
    theta, v, expected = theta0.copy(), np.zeros_like(theta0), []
    for _ in range(STEPS):
        g = a @ theta - b
        theta = theta * (1 - eta * lam)
        v = gamma * v + eta * g
        theta = theta - v
        expected.append(theta)
    with jax.enable_x64(True):
        tx = fo.momentum(eta, gamma, weight_decay=lam)
        traj, _ = run_fnn(tx, lambda p: jnp.asarray(a) @ p - jnp.asarray(b), theta0, STEPS)
    np.testing.assert_allclose(traj, np.stack(expected), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Batch, mini-batch and stochastic gradient descent: the same rule, different batches
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((12, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(12)
    return x, y


def mse_loss(w, x, y):
    return jnp.mean((x @ w - y) ** 2)


def test_batch_gd_step_is_gradient_of_mean_loss_over_whole_dataset(regression_data):
    x, y = regression_data
    w0 = np.array([0.3, 0.1, -0.2])
    eta = 0.05
    # Oracle: ∇ of L = 1/N Σ (xᵢᵀw − yᵢ)² is 2/N Xᵀ(Xw − y), i.e. the mean of per-example grads.
    per_example = np.stack([2 * (xi @ w0 - yi) * xi for xi, yi in zip(x, y)])
    full_grad = 2 / len(y) * x.T @ (x @ w0 - y)
    np.testing.assert_allclose(per_example.mean(0), full_grad, rtol=1e-12)
    with jax.enable_x64(True):
        tx = fo.sgd(eta)
        grad = jax.grad(mse_loss)(jnp.asarray(w0), jnp.asarray(x), jnp.asarray(y))
        updates, _ = tx.update(grad, tx.init(jnp.asarray(w0)))
        w1 = np.asarray(optax.apply_updates(jnp.asarray(w0), updates))
    np.testing.assert_allclose(w1, w0 - eta * full_grad, rtol=1e-12)


@pytest.mark.parametrize("batch_size", [12, 4, 1], ids=["batch", "mini-batch", "stochastic"])
def test_one_epoch_of_gd_with_any_batch_size_follows_the_same_rule(regression_data, batch_size):
    """An epoch = N/B steps θ ← θ − η∇L_batch; B = N is batch GD, B = 1 is SGD."""
    x, y = regression_data
    w0, eta = np.zeros(3), 0.05
    w = w0.copy()
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        w = w - eta * 2 / len(yb) * xb.T @ (xb @ w - yb)
    with jax.enable_x64(True):
        tx = fo.sgd(eta)
        params = jnp.asarray(w0)
        state = tx.init(params)
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            g = jax.grad(mse_loss)(params, jnp.asarray(xb), jnp.asarray(yb))
            updates, state = tx.update(g, state)
            params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params), w, rtol=1e-12)
    assert int(state.count) == len(y) // batch_size


def test_mini_batch_gradients_average_to_the_full_batch_gradient(regression_data):
    x, y = regression_data
    w = jnp.asarray([0.3, 0.1, -0.2])
    with jax.enable_x64(True):
        w = jnp.asarray(w, jnp.float64)
        full = jax.grad(mse_loss)(w, jnp.asarray(x), jnp.asarray(y))
        minis = [
            jax.grad(mse_loss)(w, jnp.asarray(x[i : i + 4]), jnp.asarray(y[i : i + 4]))
            for i in range(0, 12, 4)
        ]
    np.testing.assert_allclose(np.mean(minis, axis=0), full, rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# Tier 2: cross-check against Optax (float32, 100 steps, parabola / Rosenbrock / small CNN)
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


def test_sgd_matches_optax_sgd(problems):
    _, ours = trajectory(fo.sgd(1e-3), problems)
    _, theirs = trajectory(optax.sgd(1e-3), problems)
    assert_trees_close(ours, theirs)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_slide_form_equals_optax_trace_times_lr_for_constant_lr(problems, nesterov):
    """Slide: v ← γv + η∇, θ ← θ − v. Optax: b ← γb + ∇, θ ← θ − ηb. Constant η: v = ηb.

    The two forms round differently (η∇ + γv vs η(∇ + γb)), so in float32 they agree to rounding
    (Rosenbrock's large gradients amplify it to ~4e-7); in float64 they agree to 1e-12.
    """
    eta, gamma = 1e-3, 0.9
    (_, our_state), ours = trajectory(fo.momentum(eta, gamma, nesterov=nesterov), problems)
    (_, their_state), theirs = trajectory(
        optax.sgd(eta, momentum=gamma, nesterov=nesterov), problems
    )
    assert_trees_close(ours, theirs, rtol=1e-6, atol=1e-6)
    trace = their_state[0].trace
    assert_trees_close(our_state.velocity, jax.tree.map(lambda b: eta * b, trace), atol=1e-6)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), problems[0])
        problems64 = (params64, problems[1])
        (_, our_state), ours = trajectory(fo.momentum(eta, gamma, nesterov=nesterov), problems64)
        (_, their_state), theirs = trajectory(
            optax.sgd(eta, momentum=gamma, nesterov=nesterov), problems64
        )
        assert_trees_close(ours, theirs, rtol=1e-12, atol=1e-12)
        velocity = jax.tree.map(lambda b: eta * b, their_state[0].trace)
        assert_trees_close(our_state.velocity, velocity, rtol=1e-12, atol=1e-14)


def test_momentum_with_schedule_differs_from_optax_as_the_oracles_predict():
    """Under a schedule the slide's v keeps each gradient's own η; Optax rescales by today's η."""
    a, b, theta0 = random_quadratic(5)
    lrs = schedule_values(STEPS)
    slide = oracle_momentum(a, b, theta0, lrs, 0.8)
    # Optax oracle: trace b ← γb + ∇, θ ← θ − η_t b.
    theta, trace, optax_like = theta0.copy(), np.zeros_like(theta0), []
    for eta in lrs:
        trace = 0.8 * trace + (a @ theta - b)
        theta = theta - eta * trace
        optax_like.append(theta)
    optax_like = np.stack(optax_like)
    with jax.enable_x64(True):
        grad = lambda p: jnp.asarray(a) @ p - jnp.asarray(b)  # noqa: E731
        ours, _ = run_fnn(fo.momentum(SCHEDULE, 0.8), grad, theta0, STEPS)
        theirs, _ = run_fnn(optax.sgd(SCHEDULE, momentum=0.8), grad, theta0, STEPS)
    np.testing.assert_allclose(ours, slide, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(theirs, optax_like, rtol=1e-12, atol=1e-12)
    # Identical on the first step (v = η₀∇ = η₀b), different once η has changed.
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    assert np.max(np.abs(ours[10:] - theirs[10:])) > 1e-3


# ------------------------------------------------------------------------------------------------
# Keras' published test values (keras/src/optimizers/sgd_test.py, Keras 3.15)
# ------------------------------------------------------------------------------------------------


def test_keras_sgd_single_step():
    tx = fo.get("SGD", learning_rate=0.5)
    p = jnp.array([1.0, 2.0, 3.0, 4.0])
    u, _ = tx.update(jnp.array([1.0, 6.0, 7.0, 2.0]), tx.init(p), p)
    np.testing.assert_allclose(p + u, [0.5, -1.0, -0.5, 3.0], rtol=1e-4, atol=1e-4)


def test_keras_sgd_nesterov_golden():
    # Keras' SGD(nesterov=True) with its default momentum 0 is plain SGD with η = 0.01.
    golden = np.array(
        [
            [0.9999] * 10,
            [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
            [0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799],
            [0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
            [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599],
        ]
    )
    tx = fo.get("sgd", nesterov=True, momentum=0.0)
    x = jnp.ones(10)
    state = tx.init(x)
    u, state = tx.update(jnp.full((10,), 0.01), state, x)
    x = x + u
    for row in golden:
        np.testing.assert_allclose(x, row, rtol=5e-4, atol=5e-4)
        u, state = tx.update(jnp.arange(0.1, 1.05, 0.1), state, x)
        x = x + u


def test_keras_sgd_weight_decay():
    x = jnp.asarray(2.0)
    for _ in range(3):  # Keras' test applies three optimizers with zero gradients to var1
        tx = fo.get("sgd", learning_rate=1.0, weight_decay=0.004)
        u, _ = tx.update(jnp.zeros(()), tx.init(x), x)
        x = x + u
    np.testing.assert_allclose(x, 1.9760959, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Tier 3: properties, eager == jit, no recompilation
# ------------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**16), frac=st.floats(0.05, 1.0))
def test_sgd_never_increases_a_convex_quadratic_with_small_steps(seed, frac):
    a, b, theta0 = random_quadratic(seed, n=4)
    eta = frac / np.linalg.eigvalsh(a).max()  # η ≤ 1/L guarantees descent
    traj = oracle_sgd(a, b, theta0, [eta] * 20)
    ours = np.asarray(
        _SGD_RUN(
            jnp.asarray(a, jnp.float32),
            jnp.asarray(b, jnp.float32),
            jnp.asarray(theta0, jnp.float32),
            jnp.float32(eta),
        )
    )
    np.testing.assert_allclose(ours, traj, rtol=1e-4, atol=1e-5)
    loss = lambda t: 0.5 * t @ a @ t - b @ t  # noqa: E731
    losses = [loss(theta0)] + [loss(t) for t in ours.astype(np.float64)]
    assert all(l1 <= l0 + 1e-5 * abs(l0) + 1e-6 for l0, l1 in zip(losses, losses[1:]))


@jax.jit
def _SGD_RUN(a, b, theta, eta):  # noqa: N802 - compiled once, reused across examples
    tx = fo.sgd(eta)

    def body(carry, _):
        p, s = carry
        u, s = tx.update(a @ p - b, s)
        p = p + u
        return (p, s), p

    return jax.lax.scan(body, (theta, tx.init(theta)), None, length=20)[1]


@jax.jit
def _momentum_vs_sgd(grads, theta):
    def run(tx):
        def body(carry, g):
            p, s = carry
            u, s = tx.update(g, s)
            return (p + u, s), p + u

        return jax.lax.scan(body, (theta, tx.init(theta)), grads)[1]

    return run(fo.momentum(0.1, momentum=0.0)), run(fo.sgd(0.1))


@given(
    grads=st.lists(
        st.lists(st.floats(-10, 10, width=32), min_size=3, max_size=3), min_size=5, max_size=5
    ),
)
def test_momentum_with_gamma_zero_is_sgd(grads):
    g = jnp.asarray(grads, jnp.float32)
    ours, sgd = _momentum_vs_sgd(g, jnp.zeros(3, jnp.float32))
    # Equal up to XLA's choice of fusing p + (−η∇) into one FMA or not (one rounding).
    np.testing.assert_allclose(np.asarray(ours), np.asarray(sgd), rtol=1e-6, atol=1e-6)


_ZERO_STEP = jax.jit(lambda p: fo.sgd(0.3).update(jnp.zeros_like(p), fo.sgd(0.3).init(p), p)[0])


# Normal floats only: XLA:CPU flushes subnormal operands to zero (6.8e-41 + 0 gives 0), found by
# hypothesis on Python 3.12 / JAX 0.12; that is the platform's float mode, not the update rule.
@given(
    params=st.lists(st.floats(-1e6, 1e6, width=32, allow_subnormal=False), min_size=4, max_size=4)
)
def test_zero_gradient_leaves_sgd_parameters_unchanged(params):
    p = jnp.asarray(params, jnp.float32)
    np.testing.assert_array_equal(np.asarray(optax.apply_updates(p, _ZERO_STEP(p))), params)


GD_RULES = {
    "sgd": lambda: fo.sgd(0.1),
    "momentum": lambda: fo.momentum(0.1, 0.9),
    "nesterov": lambda: fo.nesterov(0.1, 0.9),
    "sgd_schedule_wd": lambda: fo.sgd(optax.linear_schedule(0.1, 0.0, 5), weight_decay=0.01),
}


@pytest.mark.parametrize("name", list(GD_RULES))
def test_eager_equals_jit_equals_vmap_and_second_update_does_not_recompile(name):
    tx = GD_RULES[name]()
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: 0.1 * p + 1.0, params)
    state = tx.init(params)
    eager = []
    s = state
    for _ in range(3):
        u, s = tx.update(grads, s, params)
        eager.append(u)
    traces = []

    def update(g, s, p):
        traces.append(1)
        return tx.update(g, s, p)

    jitted = jax.jit(update)
    s = state
    for k in range(3):
        u, s = jitted(grads, s, params)
        # Keras' decay form (θ − θλη + u) − θ carries one rounding of θ (|θ| ≤ 5 here), which
        # XLA may contract into an FMA under jit.
        assert_trees_close(u, eager[k], rtol=1e-6, atol=1e-6)
    assert len(traces) == 1
    # vmap over 3 independent problems equals running each alone.
    batch = jax.tree.map(lambda p: jnp.stack([p, 2 * p, -p]), params)
    gbatch = jax.tree.map(lambda p: 0.1 * p + 1.0, batch)
    vu, _ = jax.vmap(tx.update)(gbatch, jax.vmap(tx.init)(batch), batch)
    for k in range(3):
        pk, gk = (jax.tree.map(lambda x, k=k: x[k], t) for t in (batch, gbatch))
        uk, _ = tx.update(gk, tx.init(pk), pk)
        assert_trees_close(jax.tree.map(lambda x, k=k: x[k], vu), uk, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Optax composition and reading back the learning rate
# ------------------------------------------------------------------------------------------------


def test_chain_with_clipping_clips_before_the_step():
    g = {"w": jnp.array([3.0, 4.0])}  # norm 5
    tx = optax.chain(optax.clip_by_global_norm(1.0), fo.sgd(0.1))
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["w"], [-0.06, -0.08], rtol=1e-6)


def test_masked_leaves_untouched_leaves_to_the_caller():
    params = {"w": jnp.ones(2), "frozen": jnp.ones(2)}
    tx = optax.masked(fo.momentum(0.1, 0.9), {"w": True, "frozen": False})
    state = tx.init(params)
    u, state = tx.update(params, state, params)
    np.testing.assert_allclose(u["w"], [-0.1, -0.1], rtol=1e-6)
    np.testing.assert_array_equal(u["frozen"], params["frozen"])  # passed through unmasked
    assert float(fo.learning_rate(state)) == pytest.approx(0.1)


def test_inject_hyperparams_changes_the_step_and_is_read_back():
    tx = optax.inject_hyperparams(fo.momentum)(learning_rate=0.1, momentum=0.5)
    p = jnp.zeros(2)
    state = tx.init(p)
    state.hyperparams["learning_rate"] = jnp.asarray(0.01)
    u, state = jax.jit(tx.update)(jnp.ones(2), state, p)
    np.testing.assert_allclose(u, [-0.01, -0.01], rtol=1e-6)
    assert float(fo.learning_rate(state)) == pytest.approx(0.01)


def test_learning_rate_is_read_from_an_injected_optax_optimizer():
    # optax.inject_hyperparams(optax.adam) builds an InjectStatefulHyperparamsState whose inner
    # Optax state has no learning rate: the rate must come from its hyperparams.
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.25)
    state = tx.init(jnp.zeros(2))
    _, state = tx.update(jnp.ones(2), state)
    assert float(fo.learning_rate(state)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="holds no learning rate"):
        fo.learning_rate(optax.adam(0.25).init(jnp.zeros(2)))


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_learning_rate_is_schedule_at_count_minus_one(steps):
    schedule = optax.linear_schedule(1.0, 0.0, 10)
    tx = optax.chain(optax.clip(1.0), fo.nesterov(schedule, 0.9))
    p = jnp.zeros(2)
    state = tx.init(p)
    for _ in range(steps):
        _, state = tx.update(jnp.ones(2), state, p)
    expected = schedule(max(steps - 1, 0))
    assert float(fo.learning_rate(state)) == pytest.approx(float(expected))
    assert int(state[1].count) == steps


def test_learning_rate_of_a_state_without_one_is_an_error():
    with pytest.raises(ValueError, match="no learning rate"):
        fo.learning_rate(optax.sgd(0.1).init(jnp.zeros(2)))


def test_get_uses_keras_defaults_and_names():
    assert fo.get("sgd").init(jnp.zeros(1)).learning_rate == pytest.approx(0.01)
    state = fo.get("SGD", momentum=0.9).init(jnp.zeros(1))
    assert isinstance(state, fo.MomentumState)
    tx = optax.sgd(0.1)
    assert fo.get(tx) is tx
    assert isinstance(fo.get(optax.adam, learning_rate=0.1), optax.GradientTransformation)
    assert float(fo.get(fo.sgd).init(jnp.zeros(1)).learning_rate) == pytest.approx(0.01)
    with pytest.raises(TypeError, match="must return an optax.GradientTransformation, got int"):
        fo.get(lambda: 3)
    assert set(fo.names()) >= {"sgd", "momentum", "nesterov", "adam", "rmsprop", "ftrl"}


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number >= 0.*got"):
        fo.sgd(lr)
    with pytest.raises(ValueError, match="learning_rate"):
        fo.get("sgd", learning_rate=lr)


@pytest.mark.parametrize("gamma", [-0.1, 1.0, 1.5])
def test_bad_momentum(gamma):
    with pytest.raises(ValueError, match=rf"momentum must be in \[0, 1\), got {gamma}"):
        fo.momentum(0.1, gamma)


def test_grads_tree_not_matching_params_tree():
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    tx = fo.momentum(0.1)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"grads tree does not match.*expected.*'b'.*got.*"):
        tx.update({"w": jnp.zeros((2, 3))}, state)
    with pytest.raises(ValueError, match=r"grads leaf \['w'\] has shape \(3, 2\).*shape \(2, 3\)"):
        tx.update({"w": jnp.zeros((3, 2)), "b": jnp.zeros(3)}, state)
    with pytest.raises(ValueError, match="grads tree does not match the params tree"):
        fo.sgd(0.1).update({"w": jnp.zeros(2)}, fo.sgd(0.1).init(params), params)


def test_unknown_name_and_bad_overrides():
    with pytest.raises(ValueError, match="Unknown optimizer 'sdg'. Did you mean 'sgd'"):
        fo.get("sdg")
    with pytest.raises(TypeError, match="'sgd' got an unexpected override"):
        fo.get("sgd", beta_3=0.1)
    with pytest.raises(ValueError, match="cannot be applied to an existing"):
        fo.get(optax.sgd(0.1), learning_rate=0.2)


def test_weight_decay_without_params_is_an_error():
    tx = fo.sgd(0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
