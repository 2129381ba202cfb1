"""fnn.pool: max/avg pooling as reshapes (oracle, cross-check with Flax, invariants, bad input)."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from fnn.pool import avg_pool, max_pool


def _oracle_max_pool(x, k):
    """float64 loops: the max of each k×k tile, and the input gradient of sum(y * g).

    The gradient goes to the first maximal element of each window in row-major order.
    """
    n, h, w, c = x.shape
    y = np.zeros((n, h // k[0], w // k[1], c))
    return_idx = {}
    for b, i, j, ch in itertools.product(range(n), range(h // k[0]), range(w // k[1]), range(c)):
        best = None
        for a, d in itertools.product(range(k[0]), range(k[1])):
            v = x[b, i * k[0] + a, j * k[1] + d, ch]
            if best is None or v > best:
                best, where = v, (i * k[0] + a, j * k[1] + d)
        y[b, i, j, ch] = best
        return_idx[(b, i, j, ch)] = where
    return y, return_idx


# A few fixed (window, shape) cases, so one compiled program serves many drawn examples (XLA
# compiles once per shape): windows with a 1, non-square and 3×3 ones; a "VALID" remainder in
# either axis, none, or both; a single output row; batch 1 and 2; 1 to 3 channels.
_CASES = (
    ((1, 1), (1, 3, 2, 2)),
    ((2, 2), (2, 5, 4, 3)),
    ((3, 2), (1, 7, 6, 1)),
    ((1, 3), (2, 2, 8, 1)),
    ((3, 3), (1, 3, 5, 2)),
)


@st.composite
def _images(draw, ties: bool = False):
    k, shape = draw(st.sampled_from(_CASES))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.integers(-2, 3, shape) if ties else rng.normal(size=shape)
    return x.astype(np.float32), k


@functools.cache
def _jitted(fn, *static):
    """One jitted `fn` per static configuration (jit then compiles once per input shape)."""
    return jax.jit(functools.partial(fn, *static))


def _max_pool_value_and_vjp(k, x, g):
    y, vjp = jax.vjp(lambda t: max_pool(t, k, strides=k), x)
    return y, vjp(g)[0]


@given(_images(ties=True))
def test_max_pool_oracle_values_and_first_max_gradient(case):
    x, k = case
    g = np.random.default_rng(0).normal(
        size=(x.shape[0], x.shape[1] // k[0], x.shape[2] // k[1], x.shape[3])
    )
    y_ref, where = _oracle_max_pool(x.astype(np.float64), k)
    dx_ref = np.zeros(x.shape)
    for (b, i, j, ch), (r, s) in where.items():
        dx_ref[b, r, s, ch] += g[b, i, j, ch]
    y, dx = _jitted(_max_pool_value_and_vjp, k)(jnp.asarray(x), jnp.asarray(g, jnp.float32))
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=0)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)


def _avg_pool(k, x):
    return avg_pool(x, k, strides=k)


@given(_images(ties=True))
def test_avg_pool_oracle(case):
    x, k = case
    n, h, w, c = x.shape
    x64 = x.astype(np.float64)[:, : h - h % k[0], : w - w % k[1]]
    ref = x64.reshape(n, h // k[0], k[0], w // k[1], k[1], c).mean(axis=(2, 4))
    np.testing.assert_allclose(_jitted(_avg_pool, k)(jnp.asarray(x)), ref, rtol=1e-6, atol=1e-6)


def _values_and_gradients(ours, flax, k, x):
    def loss(pool):
        return lambda t: jnp.sum(pool(t, k, strides=k) ** 3)

    return (
        ours(x, k, strides=k),
        flax(x, k, strides=k),
        jax.grad(loss(ours))(x),
        jax.grad(loss(flax))(x),
    )


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("ours, flax", [(max_pool, nnx.max_pool), (avg_pool, nnx.avg_pool)])
@given(data=st.data())
def test_equals_flax_values_and_gradients(ours, flax, ties, data):
    x, k = data.draw(_images(ties=ties))
    y, y_flax, dx, dx_flax = _jitted(_values_and_gradients, ours, flax, k)(jnp.asarray(x))
    # max: the same element, bit for bit; avg: the same mean up to the order of the additions
    np.testing.assert_allclose(y, y_flax, rtol=1e-6, atol=0)
    np.testing.assert_allclose(dx, dx_flax, rtol=1e-6)


@pytest.mark.parametrize(
    "strides, padding",
    [((1, 1), "VALID"), ((2, 2), "SAME"), (None, "VALID"), ((2, 2), ((1, 0), (0, 1)))],
)
@pytest.mark.parametrize("ours, flax", [(max_pool, nnx.max_pool), (avg_pool, nnx.avg_pool)])
def test_other_settings_fall_back_to_flax(ours, flax, strides, padding):
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
    np.testing.assert_array_equal(
        ours(x, (2, 2), strides, padding), flax(x, (2, 2), strides, padding)
    )


def test_forward_mode_and_1d_3d():
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    t = jax.random.normal(jax.random.key(2), x.shape)
    y, ty = jax.jvp(lambda a: max_pool(a, (2, 2), (2, 2)), (x,), (t,))
    y_ref, ty_ref = jax.jvp(lambda a: nnx.max_pool(a, (2, 2), (2, 2)), (x,), (t,))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(ty, ty_ref, rtol=1e-6)
    for shape, k in [((2, 6, 3), (3,)), ((1, 4, 4, 6, 2), (2, 2, 3))]:
        v = jax.random.normal(jax.random.key(3), shape)
        np.testing.assert_array_equal(max_pool(v, k, k), nnx.max_pool(v, k, k))
        np.testing.assert_allclose(
            jax.grad(lambda a, k=k: jnp.sum(max_pool(a, k, k) ** 2))(v),
            jax.grad(lambda a, k=k: jnp.sum(nnx.max_pool(a, k, k) ** 2))(v),
            rtol=1e-6,
        )


def _pools_and_gradients(k, x):
    return (
        max_pool(x, k, k),
        jax.grad(lambda t: jnp.sum(max_pool(t, k, k)))(x),
        jax.grad(lambda t: jnp.sum(avg_pool(t, k, k)))(x),
    )


@given(_images())
def test_invariants(case):
    x, k = case
    y, dmax, davg = _jitted(_pools_and_gradients, k)(jnp.asarray(x))
    n, h, w, c = x.shape
    tiles = x[:, : h - h % k[0], : w - w % k[1]].reshape(n, h // k[0], k[0], w // k[1], k[1], c)
    y = np.asarray(y)
    # y is one of its window's elements and no element exceeds it
    assert bool(np.all(tiles <= y[:, :, None, :, None]))
    assert bool(np.all(np.any(tiles == y[:, :, None, :, None], axis=(2, 4))))
    # the gradient of sum(y) is a 0/1 mask with exactly one 1 per window; avg spreads 1/(kh kw)
    assert set(np.unique(np.asarray(dmax))) <= {0.0, 1.0}
    assert float(dmax.sum()) == y.size
    np.testing.assert_allclose(davg.sum(), y.size, rtol=1e-5)


def test_fast_path_has_no_select_and_scatter():
    """The point of the module: its gradient compiles without XLA's select-and-scatter loop."""
    x = jnp.ones((2, 8, 8, 4))
    hlo = jax.jit(jax.grad(lambda t: jnp.sum(max_pool(t, (2, 2), (2, 2)) ** 2))).lower(x).as_text()
    assert "select_and_scatter" not in hlo
    flax_hlo = jax.jit(jax.grad(lambda t: jnp.sum(nnx.max_pool(t, (2, 2), (2, 2)) ** 2)))
    assert "select_and_scatter" in flax_hlo.lower(x).as_text()


@pytest.mark.parametrize("pool", [max_pool, avg_pool])
def test_bad_inputs(pool):
    with pytest.raises(ValueError, match=r"window_shape must be positive, got \(0, 2\)"):
        pool(jnp.ones((1, 4, 4, 1)), (0, 2))
    with pytest.raises(ValueError, match=r"2 spatial axes .* got shape \(4, 4\)"):
        pool(jnp.ones((4, 4)), (2, 2))
