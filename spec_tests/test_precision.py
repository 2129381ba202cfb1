"""Spec tests for fnn.precision: Keras-named policies, float32 master weights, loss scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fnn import precision
from fnn.conv import Conv


def test_policy_names_match_keras():
    assert precision.get("float32").compute_dtype == jnp.float32
    assert precision.get("mixed_bfloat16").compute_dtype == jnp.bfloat16
    assert precision.get("Mixed_Float16").compute_dtype == jnp.float16
    assert all(p.param_dtype == jnp.float32 for p in precision.POLICIES.values())
    assert precision.get("mixed_float16").needs_loss_scaling
    assert not precision.get("mixed_bfloat16").needs_loss_scaling


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.conv = Conv(3, 8, (3, 3), strides=2, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.head = nnx.Linear(4 * 4 * 8, 5, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.bn(self.conv(x)))
        return self.head(h.reshape(h.shape[0], -1))


def test_bf16_compute_keeps_float32_master_weights_and_gradients():
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    ref = _Net(nnx.Rngs(0))
    mixed = precision.apply(_Net(nnx.Rngs(0)), "mixed_bfloat16")
    assert mixed.conv.kernel.dtype == jnp.float32 and mixed.head.kernel.dtype == jnp.float32
    y = mixed(x)
    assert y.dtype == jnp.bfloat16
    # bf16 has 8 significant bits: agreement to ~1e-2 relative, not better.
    np.testing.assert_allclose(np.float32(y), ref(x), rtol=5e-2, atol=5e-2)

    def loss(m):
        return jnp.mean(m(x).astype(jnp.float32) ** 2)

    grads = nnx.grad(loss)(mixed)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    g_ref = nnx.grad(loss)(ref)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=0.1, atol=0.05)


def test_float32_policy_is_the_identity():
    x = jnp.ones((2, 8, 8, 3))
    a, b = _Net(nnx.Rngs(1)), precision.apply(_Net(nnx.Rngs(1)), "float32")
    np.testing.assert_array_equal(a(x), b(x))


def test_dynamic_loss_scale_rule():
    """Oracle: the rule written out by hand for a sequence of finite / non-finite steps."""
    ls = precision.DynamicLossScale.create(8.0, period=2)
    adjust = jax.jit(lambda s, f: s.adjust(f))
    expected = []
    s, c = 8.0, 0
    for finite in [True, True, True, False, True, True, False, False]:
        if finite:
            c += 1
            if c >= 2:
                s, c = s * 2, 0
        else:
            s, c = max(s / 2, 1.0), 0
        expected.append((s, c))
        ls = adjust(ls, jnp.array(finite))
        assert (float(ls.loss_scale), int(ls.counter)) == expected[-1]
    # Never below min_scale.
    tiny = precision.DynamicLossScale.create(1.0)
    assert float(tiny.adjust(jnp.array(False)).loss_scale) == 1.0


def test_loss_scaling_rescues_float16_underflow():
    """float16 compute: a cotangent of 1e-8 flushes to zero; scaled by 2**15 it survives."""
    w = jnp.float32(1.0)  # the float32 master weight

    def loss(w):
        h = w.astype(jnp.float16)
        return (h * jnp.float16(1e-4)) * jnp.float16(1e-4)  # d loss / d w = 1e-8

    assert float(jax.grad(loss)(w)) == 0.0
    ls = precision.DynamicLossScale.create()
    g = jax.grad(lambda w: ls.scale_loss(loss(w)))(w)
    (g,) = jax.tree.leaves(ls.unscale([g]))
    assert g.dtype == jnp.float32
    assert float(g) == pytest.approx(1e-8, rel=0.05)
    assert bool(precision.all_finite({"a": jnp.ones(3), "b": jnp.zeros(2)}))
    assert not bool(precision.all_finite([jnp.array([1.0, jnp.inf])]))


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown precision policy 'mixed_bf16'.*mixed_bfloat16"):
        precision.get("mixed_bf16")
    with pytest.raises(TypeError, match="model must be a flax.nnx.Module, got dict"):
        precision.apply({}, "float32")
    with pytest.raises(ValueError, match="initial_scale must be > 0, got 0"):
        precision.DynamicLossScale.create(0.0)
    with pytest.raises(ValueError, match="period must be >= 1 and factor > 1"):
        precision.DynamicLossScale.create(period=0)
