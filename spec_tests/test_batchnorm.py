"""Spec tests for `fnn.layers.BatchNorm` (slide: batch normalisation), the layer every fnn network
with batch normalisation uses.

Proven three ways: a float64 NumPy transcription of the formula (batch statistics in training,
running averages with momentum, inference from the running averages); a cross-check against
`flax.nnx.BatchNorm`, whose numbers it must keep exactly (values, gradients, running statistics,
the state tree, every option); and the reason it exists: tracing it under `jax.jit` never asks a
traced value for its ``sharding`` (`flax.nnx.BatchNorm` does, twice per layer, and JAX answers
with an error message that walks the whole trace: quadratic in the network's depth).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from fnn.layers import BatchNorm

SHAPES = [(6, 3), (4, 5, 5, 2), (3, 2, 4, 4)]


def _pair(c, **kw):
    """fnn's layer and Flax's with the same initial parameters (the same rngs)."""
    return BatchNorm(c, rngs=nnx.Rngs(0), **kw), nnx.BatchNorm(c, rngs=nnx.Rngs(0), **kw)


def _randomise(layer, seed):
    rng = np.random.default_rng(seed)
    for name in ("scale", "bias"):
        p = getattr(layer, name)
        if p is not None:
            p[...] = jnp.asarray(rng.normal(size=p.shape), jnp.float32)
    layer.mean[...] = jnp.asarray(rng.normal(size=layer.mean.shape), jnp.float32)
    layer.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=layer.var.shape), jnp.float32)


def test_matches_the_formula_oracle():
    """Training: (x - mu_B) / sqrt(var_B + eps) * gamma + beta with the batch's biased variance,
    and mu <- m mu + (1 - m) mu_B; inference: the running averages."""
    m, eps = 0.9, 1e-3
    layer = BatchNorm(4, momentum=m, epsilon=eps, rngs=nnx.Rngs(0))
    _randomise(layer, 1)
    gamma, beta = (np.asarray(p[...], np.float64) for p in (layer.scale, layer.bias))
    mu0, var0 = (np.asarray(v[...], np.float64) for v in (layer.mean, layer.var))
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(8, 3, 3, 4))
    mu_b, var_b = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased, as Keras and Flax
    want = (x - mu_b) / np.sqrt(var_b + eps) * gamma + beta
    np.testing.assert_allclose(layer(jnp.asarray(x, jnp.float32)), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.mean[...], m * mu0 + (1 - m) * mu_b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.var[...], m * var0 + (1 - m) * var_b, rtol=1e-4, atol=1e-5)
    mu1, var1 = (np.asarray(v[...], np.float64) for v in (layer.mean, layer.var))
    want = (x - mu1) / np.sqrt(var1 + eps) * gamma + beta
    got = layer(jnp.asarray(x, jnp.float32), use_running_average=True)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(layer.mean[...], mu1)  # inference leaves the statistics alone


@given(
    shape=st.sampled_from(SHAPES),
    momentum=st.sampled_from([0.0, 0.9, 0.99]),
    epsilon=st.sampled_from([1e-5, 1e-3]),
    use_scale=st.booleans(),
    use_bias=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_keeps_flax_batchnorms_numbers(shape, momentum, epsilon, use_scale, use_bias, masked, seed):
    kw = dict(momentum=momentum, epsilon=epsilon, use_scale=use_scale, use_bias=use_bias)
    ours, flax = _pair(shape[-1], **kw)
    _randomise(ours, seed)
    _randomise(flax, seed)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(1.0, 2.0, size=shape), jnp.float32)
    mask = jnp.asarray(rng.random(shape) < 0.7) if masked else None
    for _ in range(2):  # two training calls: the running statistics compound
        np.testing.assert_array_equal(ours(x, mask=mask), flax(x, mask=mask))
    np.testing.assert_array_equal(ours.mean[...], flax.mean[...])
    np.testing.assert_array_equal(ours.var[...], flax.var[...])
    np.testing.assert_array_equal(
        ours(x, use_running_average=True), flax(x, use_running_average=True)
    )

    def loss(model, x):
        return jnp.sum(jnp.sin(model(x)))

    g_ours = nnx.grad(loss, argnums=(0, 1))(ours, x)
    g_flax = nnx.grad(loss, argnums=(0, 1))(flax, x)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_flax), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_same_state_tree_and_mode_switches_as_flax():
    ours, flax = _pair(3)
    assert isinstance(ours, nnx.BatchNorm)
    s_ours, s_flax = nnx.state(ours), nnx.state(flax)
    assert jax.tree.structure(s_ours) == jax.tree.structure(s_flax)
    for a, b in zip(jax.tree.leaves(s_ours), jax.tree.leaves(s_flax), strict=True):
        np.testing.assert_array_equal(a, b)
    ours.eval()  # model.eval() sets use_running_average, as for Flax's layer
    before = np.asarray(ours.mean[...])
    ours(jnp.ones((2, 3)))
    np.testing.assert_array_equal(ours.mean[...], before)
    ours.train()
    ours(jnp.ones((2, 3)))
    assert not np.array_equal(ours.mean[...], before)


def test_jitted_update_equals_eager():
    ours, eager = _pair(2, momentum=0.8)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(5, 4, 4, 2)), jnp.float32)

    @nnx.jit
    def step(model, x):
        return model(x)

    for _ in range(3):
        np.testing.assert_allclose(step(ours, x), eager(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.mean[...], eager.mean[...], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.var[...], eager.var[...], rtol=1e-6, atol=1e-7)


class _Net(nnx.Module):
    def __init__(self, norm, depth=4):
        self.norms = nnx.List([norm(3, rngs=nnx.Rngs(i)) for i in range(depth)])

    def __call__(self, x):
        for n in self.norms:
            x = jnp.tanh(n(x))
        return x


def _sharding_queries_while_tracing(norm, monkeypatch) -> int:
    """How often tracing a jitted training call asks a traced value for its ``sharding``."""
    core = jax._src.core
    calls = []
    original = core.Tracer.sharding

    def counted(self):
        calls.append(1)
        return original.fget(self)

    monkeypatch.setattr(core.Tracer, "sharding", property(counted))
    graphdef, state = nnx.split(_Net(norm))

    def forward(state, x):
        model = nnx.merge(graphdef, state)
        return model(x), nnx.state(model)

    jax.jit(forward).trace(state, jnp.ones((4, 3)))
    monkeypatch.undo()
    return len(calls)


def test_tracing_never_asks_a_tracer_for_its_sharding(monkeypatch):
    """The cost this layer removes: each query builds an error message over the whole trace so
    far. Flax's layer queries twice per layer (which also shows the probe sees the queries)."""
    assert _sharding_queries_while_tracing(BatchNorm, monkeypatch) == 0
    assert _sharding_queries_while_tracing(nnx.BatchNorm, monkeypatch) >= 8


def test_missing_mode_is_a_clear_error():
    layer = BatchNorm(3, use_running_average=None, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="use_running_average must be True or False"):
        layer(jnp.ones((2, 3)))
