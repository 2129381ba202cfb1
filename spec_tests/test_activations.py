"""Spec tests for the lecture's activation functions (slides: "Activation functions": sigmoid,
tanh, ReLU, Leaky ReLU, Maxout, ELU, and their derivatives), plus ReLU6, SELU, GELU, SiLU,
softplus, softmax and log-softmax.

Each function is proven three ways: (1) a float64 NumPy oracle transcribed from the slide's
formula, for the value and for the closed-form derivative; (2) a cross-check against `jax.nn`,
where known convention differences (Leaky ReLU's slope, GELU's default) are explicit tests;
(3) hypothesis invariants over the whole float32 range (finite value and gradient), the slides'
derivative bounds, eager == jit == vmap and no recompilation.
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import FLOAT32_MAX, finite_f32, moderate_f32

from fnn import activations as A

# ---------------------------------------------------------------------------------------------
# Float64 oracles, transcribed from the slides / papers (value, derivative).

_erfc = np.vectorize(math.erfc, otypes=[np.float64])
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_phi(x):  # standard normal CDF
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _np_gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _np_gelu_tanh_grad(x):
    u = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
    du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x**2)
    return 0.5 * (1.0 + np.tanh(u)) + 0.5 * x * (1.0 - np.tanh(u) ** 2) * du


ALPHA, SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

# name -> (fnn function, float64 value oracle, float64 derivative oracle)
ORACLES = {
    "sigmoid": (A.sigmoid, _np_sigmoid, lambda x: _np_sigmoid(x) * (1 - _np_sigmoid(x))),
    "tanh": (A.tanh, np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": (A.relu, lambda x: np.maximum(0.0, x), lambda x: (x > 0).astype(np.float64)),
    "leaky_relu": (
        A.leaky_relu,
        lambda x: np.maximum(0.1 * x, x),  # the slide's max(0.1x, x)
        lambda x: np.where(x >= 0, 1.0, 0.1),
    ),
    "elu": (
        A.elu,
        lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))),
    ),
    "selu": (
        A.selu,
        lambda x: SCALE * np.where(x > 0, x, ALPHA * np.expm1(np.minimum(x, 0))),
        lambda x: SCALE * np.where(x > 0, 1.0, ALPHA * np.exp(np.minimum(x, 0))),
    ),
    "gelu": (
        A.gelu,
        lambda x: x * _np_phi(x),
        lambda x: _np_phi(x) + x * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi),
    ),
    "gelu_tanh": (lambda x: A.gelu(x, approximate=True), _np_gelu_tanh, _np_gelu_tanh_grad),
    "silu": (
        A.silu,
        lambda x: x * _np_sigmoid(x),
        lambda x: _np_sigmoid(x) * (1 + x * (1 - _np_sigmoid(x))),
    ),
    "softplus": (A.softplus, lambda x: np.logaddexp(x, 0.0), _np_sigmoid),
    "relu6": (
        A.relu6,
        lambda x: np.minimum(np.maximum(x, 0.0), 6.0),
        lambda x: ((x > 0) & (x < 6)).astype(np.float64),
    ),
}
ELEMENTWISE = list(ORACLES)

# Points that avoid the kinks (0 and 6) where a derivative is a convention, not a formula.
GRID = np.concatenate([np.linspace(-12.0, 12.0, 97) + 0.01, [-80.0, -30.0, 30.0, 80.0]])
GRID_F32 = jnp.asarray(GRID, jnp.float32)

_value = {n: jax.jit(f) for n, (f, _, _) in ORACLES.items()}
_grad = {n: jax.jit(jax.vmap(jax.grad(f))) for n, (f, _, _) in ORACLES.items()}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_value_matches_float64_oracle(name):
    _, oracle, _ = ORACLES[name]
    got = np.asarray(_value[name](GRID_F32), np.float64)
    want = oracle(np.asarray(GRID_F32, np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_jax_grad_matches_closed_form_derivative(name):
    _, _, derivative = ORACLES[name]
    got = np.asarray(_grad[name](GRID_F32), np.float64)
    want = derivative(np.asarray(GRID_F32, np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_gelu_exact_keeps_the_negative_tail():
    # 1 + erf(x/√2) would cancel to 0 at x = -8; erfc keeps ~1e-15 of relative precision.
    x = np.array([-8.0, -6.0, -4.0])
    got = np.asarray(A.gelu(jnp.asarray(x, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, x * _np_phi(x), rtol=1e-5)
    assert np.all(got < 0)


# ---------------------------------------------------------------------------------------------
# Cross-checks against jax.nn, with the known convention differences as explicit tests.

SAME_AS_JAX_NN = {
    "sigmoid": (A.sigmoid, jax.nn.sigmoid),
    "tanh": (A.tanh, jnp.tanh),
    "relu": (A.relu, jax.nn.relu),
    "relu6": (A.relu6, jax.nn.relu6),
    "elu": (A.elu, jax.nn.elu),
    "selu": (A.selu, jax.nn.selu),
    "silu": (A.silu, jax.nn.silu),
    "softplus": (A.softplus, jax.nn.softplus),
    "gelu_exact": (A.gelu, lambda x: jax.nn.gelu(x, approximate=False)),
    "softmax": (A.softmax, jax.nn.softmax),
    "log_softmax": (A.log_softmax, jax.nn.log_softmax),
}


@pytest.mark.parametrize("name", list(SAME_AS_JAX_NN))
def test_matches_jax_nn(name):
    ours, theirs = SAME_AS_JAX_NN[name]
    x = jnp.linspace(-9.0, 9.0, 64).reshape(4, 16)

    @jax.jit  # one program per pair: cheaper than op-by-op dispatch of four computations
    def both(v):
        grad = [jax.grad(lambda u, f=f: (f(u) * jnp.cos(u)).sum())(v) for f in (ours, theirs)]
        return ours(v), theirs(v), *grad

    value, value_ref, grad, grad_ref = both(x)
    np.testing.assert_allclose(value, value_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-6)


def test_leaky_relu_slope_differs_from_jax_nn_and_keras():
    x = jnp.array([-3.0, -1.0, 0.0, 2.0])
    # Lecture default 0.1 == jax.nn with 0.1 ...
    np.testing.assert_array_equal(A.leaky_relu(x), jax.nn.leaky_relu(x, negative_slope=0.1))
    # ... jax.nn's own default is 0.01 (PyTorch too), Keras' is 0.2.
    np.testing.assert_array_equal(A.leaky_relu(x, 0.01), jax.nn.leaky_relu(x))
    np.testing.assert_allclose(A.leaky_relu(x, 0.2), [-0.6, -0.2, 0.0, 2.0], rtol=1e-6)
    assert not np.allclose(A.leaky_relu(x), jax.nn.leaky_relu(x))


def test_gelu_default_is_exact_unlike_jax_nn():
    x = jnp.linspace(-4.0, 4.0, 81)
    np.testing.assert_allclose(A.gelu(x), jax.nn.gelu(x, approximate=False), rtol=1e-6, atol=1e-7)
    # jax.nn.gelu loses up to ~2.5e-7 to the cancellation in 1 + tanh(u) for x < 0; fnn's
    # x·σ(2u) form does not (test_value_matches_float64_oracle holds it to 2e-7).
    np.testing.assert_allclose(A.gelu(x, approximate=True), jax.nn.gelu(x), rtol=1e-6, atol=5e-7)
    gap = np.max(np.abs(np.asarray(A.gelu(x)) - np.asarray(jax.nn.gelu(x))))
    assert 1e-4 < gap < 1e-3  # the tanh approximation is close, but not the same function


def test_gelu_tanh_gradient_finite_where_jax_nn_is_nan():
    x = jnp.array([-1e20, 1e20, 3e38], jnp.float32)
    assert np.isnan(jax.vmap(jax.grad(jax.nn.gelu))(x)).all()  # x³ overflows in jax.nn.gelu
    g = jax.vmap(jax.grad(lambda v: A.gelu(v, approximate=True)))(x)
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# The slides' claims about derivatives.

_dsigmoid = jax.jit(jax.vmap(jax.grad(A.sigmoid)))
_dtanh = jax.jit(jax.vmap(jax.grad(A.tanh)))
_drelu = jax.jit(jax.vmap(jax.grad(A.relu)))
_dleaky = jax.jit(jax.vmap(jax.grad(A.leaky_relu)))
_delu = jax.jit(jax.vmap(jax.grad(A.elu)))

VEC = 32
any_f32_vec = hnp.arrays(np.float32, VEC, elements=finite_f32)


@given(any_f32_vec)
def test_slide_derivative_bounds(x):
    x = jnp.asarray(x)
    assert np.all(np.asarray(_dsigmoid(x)) <= 0.25)  # vanishing gradient: σ' ≤ 1/4
    assert np.all(np.asarray(_dsigmoid(x)) >= 0.0)
    assert np.all(np.asarray(_dtanh(x)) <= 1.0)
    assert np.all(np.asarray(_dtanh(x)) >= 0.0)
    assert set(np.unique(np.asarray(_drelu(x)))) <= {0.0, 1.0}
    assert set(np.unique(np.asarray(_dleaky(x)))) <= {np.float32(0.1), 1.0}
    assert np.all((np.asarray(_delu(x)) >= 0) & (np.asarray(_delu(x)) <= 1.0))


def test_derivative_maxima_are_reached_at_zero():
    assert float(jax.grad(A.sigmoid)(0.0)) == 0.25
    assert float(jax.grad(A.tanh)(0.0)) == 1.0


def test_kink_conventions():
    # The value of a derivative at a kink is a convention; fnn follows jax.nn.
    assert float(jax.grad(A.relu)(0.0)) == 0.0
    assert float(jax.grad(A.leaky_relu)(0.0)) == 1.0
    assert float(jax.grad(A.relu6)(0.0)) == 0.0
    assert float(jax.grad(A.relu6)(6.0)) == 0.0
    # ELU (alpha=1) is differentiable at 0: both one-sided derivatives and jax.grad give 1.
    assert float(jax.grad(A.elu)(0.0)) == 1.0


def test_elu_continuous_at_zero():
    h = np.float32(1e-4)
    for alpha in (0.5, 1.0, 2.0):
        left, mid, right = (float(A.elu(v, alpha)) for v in (-h, 0.0, h))
        assert mid == 0.0
        assert abs(left - mid) < 3 * alpha * h and abs(right - mid) < 3 * h
    # One-sided slopes agree for alpha = 1 (the slide's ELU), differ otherwise.
    slope_left = float(jax.grad(A.elu)(-1e-6))
    slope_right = float(jax.grad(A.elu)(1e-6))
    assert slope_left == pytest.approx(slope_right, rel=1e-5)
    assert float(jax.grad(lambda v: A.elu(v, 2.0))(-1e-6)) == pytest.approx(2.0, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Stability over the whole float32 range.

# selu's exact value exceeds float32 for x > FLT_MAX / λ; every other function stays finite.
_FULL_RANGE = [n for n in ELEMENTWISE if n != "selu"]
_value_and_grad = {
    n: jax.jit(lambda x, f=ORACLES[n][0]: (f(x), jax.vmap(jax.grad(f))(x))) for n in ELEMENTWISE
}
EXTREMES = jnp.array(
    [-FLOAT32_MAX, -3e38, -1e30, -1e4, -100.0, -1e-30, -0.0, 0.0, 1e-45, 1e4, 1e30, 3e38],
    jnp.float32,
)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_finite_value_and_gradient_at_extremes(name):
    x = EXTREMES if name != "selu" else EXTREMES[EXTREMES < FLOAT32_MAX / SCALE]
    if name != "selu":
        x = jnp.concatenate([x, jnp.array([FLOAT32_MAX], jnp.float32)])
    value, grad = _value_and_grad[name](x)
    assert np.isfinite(np.asarray(value)).all(), (name, value)
    assert np.isfinite(np.asarray(grad)).all(), (name, grad)


def test_selu_overflows_only_beyond_float32():
    assert np.isfinite(float(A.selu(jnp.float32(FLOAT32_MAX / SCALE * 0.999))))
    assert np.isinf(float(A.selu(jnp.float32(FLOAT32_MAX))))  # exact value 3.58e38 > FLT_MAX


@given(any_f32_vec)
def test_finite_value_and_gradient_over_full_float32_range(x):
    x = jnp.asarray(x)
    for name in _FULL_RANGE:
        value, grad = _value_and_grad[name](x)
        assert np.isfinite(np.asarray(value)).all(), (name, x, value)
        assert np.isfinite(np.asarray(grad)).all(), (name, x, grad)
    value, grad = _value_and_grad["selu"](jnp.clip(x, None, FLOAT32_MAX / SCALE * 0.999))
    assert np.isfinite(np.asarray(value)).all() and np.isfinite(np.asarray(grad)).all()


_softmax_vg = jax.jit(
    lambda x: (A.softmax(x), jax.grad(lambda v: (A.softmax(v) * jnp.arange(VEC)).sum())(x))
)
_log_softmax_vg = jax.jit(lambda x: (A.log_softmax(x), jax.grad(lambda v: A.log_softmax(v)[0])(x)))


@given(any_f32_vec)
def test_softmax_finite_over_full_float32_range(x):
    p, g = _softmax_vg(jnp.asarray(x))
    assert np.isfinite(np.asarray(p)).all() and np.isfinite(np.asarray(g)).all()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)


@given(hnp.arrays(np.float32, VEC, elements=st.floats(-1.5e38, 1.5e38)))
def test_log_softmax_finite_when_the_exact_value_is(x):
    # A row spanning at most 3e38 keeps x - max(x) in float32, so the result is representable.
    value, grad = _log_softmax_vg(jnp.asarray(x))
    assert np.isfinite(np.asarray(value)).all() and np.isfinite(np.asarray(grad)).all()
    assert np.all(np.asarray(value) <= 0.0)


# ---------------------------------------------------------------------------------------------
# Softmax invariants.

_softmax = jax.jit(A.softmax)
_log_softmax = jax.jit(A.log_softmax)


@given(
    hnp.arrays(np.float32, (3, 5), elements=moderate_f32),
    st.floats(-1e3, 1e3, width=32),
)
def test_softmax_shift_invariance(x, c):
    p = _softmax(jnp.asarray(x))
    np.testing.assert_allclose(_softmax(jnp.asarray(x) + c), p, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p).sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(np.asarray(_log_softmax(jnp.asarray(x)))), p, atol=1e-6)


def test_softmax_oracle_and_axis():
    x = np.random.default_rng(0).normal(size=(3, 4, 5))
    for axis in (0, 1, -1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        want = e / e.sum(axis=axis, keepdims=True)
        np.testing.assert_allclose(A.softmax(jnp.asarray(x, jnp.float32), axis=axis), want, 1e-5)
        np.testing.assert_allclose(
            A.log_softmax(jnp.asarray(x, jnp.float32), axis=axis), np.log(want), atol=1e-5
        )


# ---------------------------------------------------------------------------------------------
# Maxout.


def _np_maxout(x, pieces, axis):
    x = np.moveaxis(x, axis, -1)
    out = x.reshape(x.shape[:-1] + (x.shape[-1] // pieces, pieces)).max(-1)
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize(
    ("shape", "pieces", "axis"),
    [((4, 6), 2, -1), ((4, 6), 3, 1), ((2, 3, 3, 8), 4, -1), ((6, 5), 3, 0)],
)
def test_maxout_oracle(shape, pieces, axis):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    got = A.maxout(jnp.asarray(x), pieces, axis=axis)
    np.testing.assert_array_equal(got, _np_maxout(x, pieces, axis))


def test_maxout_groups_are_contiguous():
    x = jnp.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(A.maxout(x, 2), [[1.0, 3.0, 5.0]])  # not interleaved [3, 4, 5]
    np.testing.assert_array_equal(A.maxout(x, 3), [[2.0, 5.0]])
    np.testing.assert_array_equal(A.maxout(x, 1), x)


def test_maxout_gradient_flows_to_the_max_only():
    x = jnp.array([[1.0, 5.0, -2.0, -3.0]])
    g = jax.grad(lambda v: A.maxout(v, 2).sum())(x)
    np.testing.assert_array_equal(g, [[0.0, 1.0, 1.0, 0.0]])


def test_maxout_with_two_pieces_generalises_relu_and_leaky_relu():
    z = jnp.linspace(-3.0, 3.0, 13)
    relu_pair = jnp.stack([jnp.zeros_like(z), z], -1).reshape(-1)  # max(0, z)
    leaky_pair = jnp.stack([0.1 * z, z], -1).reshape(-1)  # max(0.1 z, z)
    np.testing.assert_array_equal(A.maxout(relu_pair, 2), A.relu(z))
    np.testing.assert_allclose(A.maxout(leaky_pair, 2), A.leaky_relu(z), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"pieces": 4},
            r"axis 1 of x \(shape \(2, 6\)\) has length 6, which is not divisible by "
            r"pieces=4",
        ),
        ({"pieces": 0}, "pieces must be an integer >= 1, got 0"),
        ({"pieces": 2.0}, "pieces must be an integer >= 1, got 2.0"),
        ({"pieces": 2, "axis": 2}, r"axis=2 is out of range for x of shape \(2, 6\)"),
    ],
)
def test_maxout_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        A.maxout(jnp.ones((2, 6)), **kwargs)


# ---------------------------------------------------------------------------------------------
# ReLU's Keras options: negative_slope a, max_value M, threshold t (keras.activations.relu).


def _np_relu_options(x, a=0.0, m=None, t=0.0):
    """Keras 3's combination, float64: min(x, M) above t, a(x − t) at or below t."""
    x = np.asarray(x, np.float64)
    above = x if m is None else np.minimum(x, m)
    return np.where(x > t, above, a * (x - t))


def _np_relu_options_grad(x, a=0.0, m=None, t=0.0):
    x = np.asarray(x, np.float64)
    above = np.ones_like(x) if m is None else (x < m).astype(np.float64)
    return np.where(x > t, above, a)


RELU_OPTIONS = [  # (negative_slope, max_value, threshold)
    (a, m, t)
    for a in (0.0, 0.1, 0.3)
    for m in (None, 2.5, 6.0, float("inf"))
    for t in (0.0, 0.5, 3.0)
]
_X_OPT = np.concatenate([np.linspace(-8.0, 8.0, 161), [-0.0, 0.5, 2.5, 3.0, 6.0]]).astype(
    np.float32
)


@pytest.mark.parametrize("a, m, t", RELU_OPTIONS)
def test_relu_options_match_float64_oracle(a, m, t):
    ours = A.relu(_X_OPT, negative_slope=a, max_value=m, threshold=t)
    assert ours.dtype == jnp.float32 and ours.shape == _X_OPT.shape
    np.testing.assert_allclose(ours, _np_relu_options(_X_OPT, a, m, t), rtol=1e-6, atol=1e-6)


_relu_grad = jax.jit(
    jax.vmap(jax.grad(A.relu), in_axes=(0, None, None, None)), static_argnums=(1, 2, 3)
)


@pytest.mark.parametrize("a, m, t", RELU_OPTIONS)
def test_relu_options_gradient(a, m, t):
    grad = np.asarray(_relu_grad(jnp.asarray(_X_OPT), a, m, t))
    assert np.isfinite(grad).all()
    kinks = np.isin(_X_OPT, [0.0, t] + ([] if m is None else [m]))
    expected = _np_relu_options_grad(_X_OPT, a, m, t)[~kinks]
    np.testing.assert_allclose(grad[~kinks], expected, rtol=1e-7)  # a is float32(a)
    if t > 0:  # the jump at t: 0 from the step (as jax.nn.relu at its kink), a from the slope
        assert float(jax.grad(A.relu)(jnp.float32(t), a, m, t)) == pytest.approx(0.0)


def test_relu_options_reduce_to_leaky_relu_and_relu6():
    x = jnp.asarray(_X_OPT)
    np.testing.assert_array_equal(A.relu(x), jax.nn.relu(x))
    np.testing.assert_array_equal(A.relu(x, negative_slope=0.2), A.leaky_relu(x, 0.2))
    np.testing.assert_array_equal(A.relu(x, max_value=6.0), A.relu6(x))
    assert float(jax.grad(lambda v: A.relu(v, negative_slope=0.2))(0.0)) == 1.0  # as leaky_relu


_opt_slope = st.sampled_from([0.0, 0.01, 0.2, 1.0])
_opt_max = st.one_of(st.none(), st.floats(0.0, 1e6))
_opt_threshold = st.one_of(st.just(0.0), st.floats(0.0, 1e6))


@given(any_f32_vec, _opt_slope, _opt_max, _opt_threshold)
def test_relu_options_finite_monotone_and_capped(x, a, m, t):
    """Non-decreasing, ≤ M, equal to x strictly between t and M; value and gradient finite
    over the whole float32 range (for a ≤ 1; a·(x − t) beyond float32 is the exact value)."""
    x = np.sort(x)
    value = np.asarray(A.relu(jnp.asarray(x), negative_slope=a, max_value=m, threshold=t))
    grad = np.asarray(jax.vmap(jax.grad(lambda v: A.relu(v, a, m, t)))(jnp.asarray(x)))
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    assert np.all(np.diff(value) >= 0)
    if m is not None:
        assert np.all(value <= np.float32(m))
    inside = (x > t) & (m is None or x < np.float32(m))
    # XLA:CPU may flush subnormal floats to zero (the strategies draw them on purpose): whether
    # a selection keeps one depends on the program XLA emits (a worker that ran other tests
    # first once kept 1.6e-39), so either the value or its flushed form is exact
    flushed = np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0), x)
    exact = (value == x) | (value == flushed)
    assert exact[inside].all(), (x[inside & ~exact], value[inside & ~exact])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"negative_slope": -0.1}, ValueError, r"negative_slope must be a number >= 0, got -0.1"),
        ({"negative_slope": float("nan")}, ValueError, r"negative_slope must be .*got nan"),
        ({"max_value": -1.0}, ValueError, r"max_value must be a number >= 0 or None, got -1.0"),
        ({"threshold": -0.5}, ValueError, r"threshold must be a number >= 0, got -0.5"),
        ({"threshold": float("inf")}, ValueError, r"threshold must be a number >= 0, got inf"),
        ({"max_value": "6"}, TypeError, r"max_value must be a real number, got '6'"),
        ({"negative_slope": None}, TypeError, r"negative_slope must be a real number, got None"),
    ],
)
def test_relu_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        A.relu(jnp.ones(3), **kwargs)


@pytest.mark.crosscheck
@pytest.mark.parametrize("a, m, t", RELU_OPTIONS)
def test_relu_options_match_keras(a, m, t):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    theirs = keras.activations.relu(_X_OPT, negative_slope=a, max_value=m, threshold=t)
    ours = A.relu(_X_OPT, negative_slope=a, max_value=m, threshold=t)
    np.testing.assert_array_equal(np.asarray(ours), keras.ops.convert_to_numpy(theirs))


# ---------------------------------------------------------------------------------------------
# eager == jit == vmap, no recompilation, get(), bad input.

ALL_FUNCTIONS = {n: f for n, (f, _, _) in ORACLES.items()} | {
    "softmax": A.softmax,
    "log_softmax": A.log_softmax,
    "maxout": lambda x: A.maxout(x, 2),
    "linear": A.linear,
}


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
def test_eager_jit_vmap_agree_without_recompiling(name):
    f = ALL_FUNCTIONS[name]
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4, 6)) * 4, jnp.float32)
    eager = f(x)
    traces = []  # a Python side effect runs once per trace, i.e. once per compilation

    @jax.jit
    def jitted(v):
        traces.append(v.shape)
        return f(v)

    np.testing.assert_allclose(jitted(x), eager, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.vmap(f)(x), eager, rtol=1e-6, atol=1e-7)
    jitted(x + 1.0)  # new values, same shapes: no recompilation
    assert traces == [x.shape]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sigmoid", A.sigmoid),
        ("ReLU", A.relu),
        ("swish", A.silu),
        ("silu", A.silu),
        ("leaky_relu", A.leaky_relu),
        ("gelu", A.gelu),
        ("linear", A.linear),
        (None, A.linear),
        ("softmax", A.softmax),
        ("maxout", A.maxout),
        ("elu", A.elu),
        ("selu", A.selu),
        ("relu6", A.relu6),
        ("softplus", A.softplus),
        ("tanh", A.tanh),
        ("log_softmax", A.log_softmax),
    ],
)
def test_get(name, expected):
    assert A.get(name) is expected


def test_get_passes_callables_through_and_suggests_names():
    assert A.get(jnp.sin) is jnp.sin
    with pytest.raises(ValueError, match="Unknown activation 'rellu'. Did you mean 'relu'"):
        A.get("rellu")
    with pytest.raises(ValueError, match="Did you mean 'leaky_relu'"):
        A.get("leaky_rlu")
    with pytest.raises(TypeError, match="activation must be a string identifier or a callable"):
        A.get(3)


def test_integer_input_is_promoted_and_complex_rejected():
    assert A.relu(jnp.array([-1, 2])).dtype == jnp.float32
    np.testing.assert_array_equal(A.relu(jnp.array([-1, 2])), [0.0, 2.0])
    with pytest.raises(TypeError, match="x must be a real floating array, got dtype complex64"):
        A.sigmoid(jnp.array([1j], jnp.complex64))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_is_preserved(dtype):
    # One compiled program for all functions: eager dispatch would compile every op per dtype.
    outputs = jax.jit(lambda x: {n: f(x) for n, f in ALL_FUNCTIONS.items()})(
        jnp.ones((2, 4), dtype)
    )
    assert {n: y.dtype for n, y in outputs.items()} == dict.fromkeys(ALL_FUNCTIONS, dtype)


# ---------------------------------------------------------------------------------------------
# Optional: against PyTorch and Keras 3 (where installed, e.g. /work/venv-peers).

_X_PEER = np.linspace(-6.0, 6.0, 121, dtype=np.float32)


@pytest.mark.crosscheck
def test_matches_pytorch_functional():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = torch.from_numpy(_X_PEER)
    pairs = {
        "sigmoid": (A.sigmoid(_X_PEER), torch.sigmoid(t)),
        "tanh": (A.tanh(_X_PEER), torch.tanh(t)),
        "relu": (A.relu(_X_PEER), F.relu(t)),
        "relu6": (A.relu6(_X_PEER), F.relu6(t)),
        "elu": (A.elu(_X_PEER), F.elu(t)),
        "selu": (A.selu(_X_PEER), F.selu(t)),
        "silu": (A.silu(_X_PEER), F.silu(t)),
        "softplus": (A.softplus(_X_PEER), F.softplus(t)),
        # PyTorch's GELU is exact by default, like fnn's; "tanh" is the approximation.
        "gelu": (A.gelu(_X_PEER), F.gelu(t)),
        "gelu_tanh": (A.gelu(_X_PEER, approximate=True), F.gelu(t, approximate="tanh")),
        # PyTorch's leaky slope is 0.01: equal to fnn only when passed explicitly.
        "leaky_relu_0.01": (A.leaky_relu(_X_PEER, 0.01), F.leaky_relu(t)),
        "softmax": (A.softmax(_X_PEER), torch.softmax(t, 0)),
    }
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
    assert not np.allclose(A.leaky_relu(_X_PEER), F.leaky_relu(t).numpy())


@pytest.mark.crosscheck
def test_matches_keras_activations():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    K = keras.activations
    pairs = {
        "sigmoid": (A.sigmoid(_X_PEER), K.sigmoid(_X_PEER)),
        "elu": (A.elu(_X_PEER), K.elu(_X_PEER)),
        "selu": (A.selu(_X_PEER), K.selu(_X_PEER)),
        "silu": (A.silu(_X_PEER), K.silu(_X_PEER)),
        "swish": (A.get("swish")(_X_PEER), K.get("swish")(_X_PEER)),
        "gelu": (A.gelu(_X_PEER), K.gelu(_X_PEER)),  # both exact by default
        "relu6": (A.relu6(_X_PEER), K.relu6(_X_PEER)),
        # Keras' leaky slope is 0.2.
        "leaky_relu_0.2": (A.leaky_relu(_X_PEER, 0.2), K.leaky_relu(_X_PEER)),
    }
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-6, atol=1e-6, err_msg=name)


def test_docstring_examples_run():
    import doctest

    import fnn.layers

    for module in (A, fnn.layers):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, module.__name__
