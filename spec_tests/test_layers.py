"""Spec tests for `fnn.layers.Maxout` (slide: "Maxout neuron", max(w1ᵀx + b1, w2ᵀx + b2)).

Proven three ways: a float64 NumPy transcription of the slide's formula with the layer's own
weights; the slide's claims (it generalises ReLU and Leaky ReLU, |x| in one unit); and
invariants (shapes, parameter count, eager == jit == vmap, no recompilation, training lowers a
loss). Bad input raises clear errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fnn import activations, losses
from fnn.layers import Maxout

D, M, PIECES = 3, 4, 2


@pytest.fixture(scope="module")
def layer():
    return Maxout(D, M, pieces=PIECES, rngs=nnx.Rngs(0))


def _set(layer, kernel, bias):
    layer.linear.kernel[...] = jnp.asarray(kernel, jnp.float32)
    layer.linear.bias[...] = jnp.asarray(bias, jnp.float32)


def test_matches_slide_formula_oracle(layer):
    x = np.random.default_rng(0).normal(size=(5, D))
    w = np.asarray(layer.linear.kernel[...], np.float64)  # [D, M * k]
    b = np.asarray(layer.linear.bias[...], np.float64)
    want = np.empty((5, M))
    for j in range(M):  # unit j: max over its k pieces i of w_{jk+i}ᵀx + b_{jk+i}
        pieces = [x @ w[:, j * PIECES + i] + b[j * PIECES + i] for i in range(PIECES)]
        want[:, j] = np.max(pieces, axis=0)
    np.testing.assert_allclose(layer(jnp.asarray(x, jnp.float32)), want, rtol=1e-5, atol=1e-6)


def test_shapes_and_parameter_count():
    layer = Maxout(D, M, pieces=3, rngs=nnx.Rngs(1))
    assert layer(jnp.ones((7, D))).shape == (7, M)
    assert layer(jnp.ones((2, 5, D))).shape == (2, 5, M)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    assert n_params == D * M * 3 + M * 3  # k times the parameters of a Dense(M)
    no_bias = Maxout(D, M, pieces=3, use_bias=False, rngs=nnx.Rngs(1))
    assert sum(p.size for p in jax.tree.leaves(nnx.state(no_bias, nnx.Param))) == D * M * 3


def test_generalises_relu_leaky_relu_and_abs():
    layer = Maxout(1, 3, pieces=2, rngs=nnx.Rngs(0))
    # unit 0: max(0, x) = ReLU; unit 1: max(0.1x, x) = Leaky ReLU; unit 2: max(-x, x) = |x|.
    _set(layer, [[0.0, 1.0, 0.1, 1.0, -1.0, 1.0]], np.zeros(6))
    x = jnp.linspace(-3.0, 3.0, 13)[:, None]
    out = layer(x)
    np.testing.assert_array_equal(out[:, 0], activations.relu(x[:, 0]))
    np.testing.assert_allclose(out[:, 1], activations.leaky_relu(x[:, 0]), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 2], jnp.abs(x[:, 0]))


def test_eager_jit_vmap_agree_without_recompiling(layer):
    graphdef, state = nnx.split(layer)

    traces = []  # a Python side effect runs once per trace, i.e. once per compilation

    @jax.jit
    def apply(state, x):
        traces.append(x.shape)
        return nnx.merge(graphdef, state)(x)

    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6, D)), jnp.float32)
    eager = layer(x)
    np.testing.assert_allclose(apply(state, x), eager, rtol=1e-6)
    apply(state, x + 1.0)  # new values, same shapes: no recompilation
    assert traces == [x.shape]
    np.testing.assert_allclose(jax.vmap(lambda v: apply(state, v))(x), eager, rtol=1e-6)


def test_training_lowers_the_loss():
    # Fit y = |x1| - |x2| (piecewise linear: maxout's home ground) for a few Adam steps.
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(-2, 2, (64, 2)), jnp.float32)
    y = jnp.abs(x[:, :1]) - jnp.abs(x[:, 1:])
    model = nnx.Sequential(Maxout(2, 8, rngs=nnx.Rngs(0)), nnx.Linear(8, 1, rngs=nnx.Rngs(1)))
    graphdef, params = nnx.split(model)
    tx = optax.adam(0.05)
    opt_state = tx.init(params)

    def loss_fn(params):
        pred = nnx.merge(graphdef, params)(x)
        return losses.reduce(losses.mean_squared_error(y_true=y, y_pred=pred))

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    first = None
    for _ in range(60):
        params, opt_state, loss = step(params, opt_state)
        first = float(loss) if first is None else first
    assert float(loss_fn(params)) < 0.25 * first


def test_bad_input():
    with pytest.raises(ValueError, match="Maxout: pieces must be an integer >= 1, got 0"):
        Maxout(D, M, pieces=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Maxout: out_features must be an integer >= 1, got 2.5"):
        Maxout(D, 2.5, rngs=nnx.Rngs(0))
    layer = Maxout(D, M, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"last axis of in_features=3, got shape \(5, 4\)"):
        layer(jnp.ones((5, 4)))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        layer(jnp.float32(1.0))
