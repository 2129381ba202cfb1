"""Spec tests for fnn.precision: Keras-named policies, float32 master weights, loss scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------------------------
# Loss scaling wired into the train step (fnn.steps) and fit (fnn.trainer)
# --------------------------------------------------------------------------------------------

_SCCE = dict(loss="sparse_categorical_crossentropy")


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 3)).astype(np.float32)
    y = (x[:, :4, :4, 0].mean((1, 2)) > 0).astype(np.int32) + 2 * (x[..., 1].mean((1, 2)) > 0)
    return x, y.astype(np.int32)


def _loss():
    from fnn import losses

    return losses.get("sparse_categorical_crossentropy", from_logits=True)


def _trainer(policy, **kw):
    from fnn import train

    model = precision.apply(_Net(nnx.Rngs(0)), policy)
    return train.compile(model, optimizer="adam", loss=_loss(), devices=1, **kw)


def _state(policy, loss_scale="auto", tx=None):
    import optax

    from fnn.steps import TrainState

    model = precision.apply(_Net(nnx.Rngs(0)), policy)
    return TrainState.create(model, tx or optax.adam(1e-2), loss_scale=loss_scale)


def _batch(n=16):
    x, y = _data(n)
    return {"image": jnp.asarray(x), "label": jnp.asarray(y)}


def _copy(tree):
    return jax.tree.map(lambda a: np.array(a), tree)


def test_loss_scale_is_chosen_from_the_compute_dtype():
    assert _state("float32").loss_scale is None
    assert _state("mixed_bfloat16").loss_scale is None  # bfloat16 has float32's range
    ls = _state("mixed_float16").loss_scale
    assert (float(ls.loss_scale), int(ls.counter), ls.period, ls.factor) == (2.0**15, 0, 2000, 2)
    assert _state("mixed_float16", loss_scale=None).loss_scale is None
    explicit = precision.DynamicLossScale.create(4.0, period=3)
    got = _state("float32", loss_scale=explicit).loss_scale  # a copy: the step donates it
    assert (float(got.loss_scale), got.period) == (4.0, 3) and got.loss_scale is not explicit[0]
    assert float(_state("float32", loss_scale=True).loss_scale.loss_scale) == 2.0**15


def test_float16_fit_tracks_float32():
    """Cross-check: the same tiny CNN, data and seed, trained 3 epochs with Adam in float32 and in
    mixed_float16 (loss scaling on by default): per-epoch losses agree within 1% relative."""
    x, y = _data()
    losses = {}
    for policy in ("float32", "mixed_float16"):
        trainer = _trainer(policy)
        history = trainer.fit(x, y, batch_size=16, epochs=3, verbose=0).history
        losses[policy] = history["loss"]
    ls = trainer.state.loss_scale
    assert history["loss_scale"] == [2.0**15] * 3  # no overflow on this model: never lowered
    assert int(ls.counter) == 12  # 3 epochs x 4 steps, all applied
    assert losses["float32"][-1] < losses["float32"][0]  # it trains
    np.testing.assert_allclose(losses["mixed_float16"], losses["float32"], rtol=1e-2)


def test_train_step_loss_scaling_rescues_float16_underflow():
    """With the loss weighted by 1e-8, float16 backward flushes the gradients to (nearly) zero
    without scaling; with the default scale the step's gradient norm matches float32's."""
    from fnn.steps import make_train_step

    step = make_train_step(_loss(), loss_weights=1e-8)
    norms = {}
    for name, policy, loss_scale in [
        ("f32", "float32", "auto"),
        ("f16", "mixed_float16", None),
        ("f16_scaled", "mixed_float16", "auto"),
    ]:
        _, m = step(_state(policy, loss_scale), _batch(), jax.random.key(0))
        norms[name] = float(m["grad_norm"])
    assert norms["f32"] > 0
    assert norms["f16"] < 0.5 * norms["f32"]  # underflow lost most of the gradient
    assert norms["f16_scaled"] == pytest.approx(norms["f32"], rel=0.05)


def test_overflow_skips_the_step_and_halves_the_scale():
    """Injected overflow: a scale of 2**40 makes float16 cotangents infinite. The step changes
    nothing but ``step`` and the scale (halved, counter reset); its loss is reported unscaled."""
    from fnn.steps import make_train_step

    state = _state("mixed_float16", precision.DynamicLossScale.create(2.0**40, period=3))
    state = state.replace(loss_scale=state.loss_scale._replace(counter=jnp.int32(2)))
    before = _copy((state.params, state.opt_state, state.model_state))
    step = make_train_step(_loss())
    state, m = step(state, _batch(), jax.random.key(0))
    assert not np.isfinite(float(m["grad_norm"]))
    assert np.isfinite(float(m["loss"])) and 0.5 < float(m["loss"]) < 5  # unscaled
    assert int(state.step) == 1
    assert (float(state.loss_scale.loss_scale), int(state.loss_scale.counter)) == (2.0**39, 0)
    assert float(m["loss_scale"]) == 2.0**39
    after = _copy((state.params, state.opt_state, state.model_state))
    jax.tree.map(np.testing.assert_array_equal, after, before)


def test_scale_doubles_after_period_finite_steps():
    """Oracle (the rule by hand): period=3 from S=4: (4, 1), (4, 2), (8, 0), (8, 1); every
    finite step updates the parameters."""
    from fnn.steps import make_train_step

    state = _state("mixed_float16", precision.DynamicLossScale.create(4.0, period=3))
    step = make_train_step(_loss())
    seen = []
    for i in range(4):
        kernel = np.array(state.params["head"]["kernel"][...])
        state, _ = step(state, _batch(), jax.random.key(i))
        assert not np.array_equal(kernel, state.params["head"]["kernel"][...])
        seen.append((float(state.loss_scale.loss_scale), int(state.loss_scale.counter)))
    assert seen == [(4.0, 1), (4.0, 2), (8.0, 0), (8.0, 1)]


def test_skipped_steps_do_not_stop_fit_but_a_nonfinite_loss_does():
    """From S = 2**30 fit skips steps (halving S each time) and then trains: no
    FloatingPointError. A loss that is itself not finite still stops fit (TerminateOnNaN)."""
    x, y = _data()
    trainer = _trainer(
        "mixed_float16",
        loss_scale=precision.DynamicLossScale.create(2.0**30),
        steps_per_execution=2,  # the scale is carried through lax.scan
    )
    start = _copy(trainer.state.params)
    history = trainer.fit(x, y, batch_size=16, epochs=4, verbose=0).history
    final = float(trainer.state.loss_scale.loss_scale)
    assert final < 2.0**30 and history["loss_scale"][-1] == final
    assert trainer.nonfinite_step is None
    assert all(np.isfinite(history["loss"]))  # the unscaled loss of every step
    # grad_norm averages over applied steps: none in the first epoch, some in the last.
    assert np.isnan(history["grad_norm"][0]) and np.isfinite(history["grad_norm"][-1])
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), start, _copy(trainer.state.params))
    assert all(jax.tree.leaves(moved))

    from fnn import train

    def nan_loss(*, y_true, y_pred):
        return jnp.mean(y_pred, axis=-1) * jnp.nan

    model = precision.apply(_Net(nnx.Rngs(0)), "mixed_float16")
    bad = train.compile(model, optimizer="adam", loss=nan_loss, devices=1)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        bad.fit(x, y.astype(np.float32), batch_size=16, epochs=1, verbose=0)


def test_checkpoint_restores_the_loss_scale(tmp_path):
    """Resume: S and its counter come back from a checkpoint, and a resumed epoch equals the
    uninterrupted one bit for bit."""
    x, y = _data()
    ls = precision.DynamicLossScale.create(2.0**12, period=3)
    trainer = _trainer("mixed_float16", loss_scale=ls)
    trainer.fit(x, y, batch_size=16, epochs=1, verbose=0)
    saved = trainer.state.loss_scale
    assert (float(saved.loss_scale), int(saved.counter)) == (2.0**13, 1)  # 4 steps, period 3
    trainer.save(tmp_path, epoch=1)

    resumed = _trainer("mixed_float16", loss_scale=ls)
    assert int(resumed.state.loss_scale.counter) == 0
    assert resumed.restore(tmp_path) == 1
    got = resumed.state.loss_scale
    assert (float(got.loss_scale), int(got.counter), got.period) == (2.0**13, 1, 3)

    trainer.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0)
    resumed.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0)

    def arrays(s):
        return _copy((s.step, s.params, s.opt_state, s.model_state, s.loss_scale))

    jax.tree.map(np.testing.assert_array_equal, arrays(resumed.state), arrays(trainer.state))


def test_checkpoints_between_scaled_and_unscaled_states(tmp_path):
    """A float32 checkpoint restores into a float16 state (which keeps its fresh scale), and a
    float16 one into an unscaled state (the saved scale is dropped)."""
    from fnn import checkpoints

    f32, f16 = _state("float32"), _state("mixed_float16")
    checkpoints.save_checkpoint(tmp_path / "a", f32, epoch=1)
    restored, _ = checkpoints.restore_checkpoint(tmp_path / "a", f16)
    assert float(restored.loss_scale.loss_scale) == 2.0**15
    f16 = f16.replace(loss_scale=f16.loss_scale._replace(counter=jnp.int32(5)))
    checkpoints.save_checkpoint(tmp_path / "b", f16, epoch=1)
    restored, _ = checkpoints.restore_checkpoint(tmp_path / "b", f32)
    assert restored.loss_scale is None
    restored, _ = checkpoints.restore_checkpoint(tmp_path / "b", _state("mixed_float16"))
    assert int(restored.loss_scale.counter) == 5


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_predict_and_evaluate_return_float32(policy):
    x, y = _data(16)
    trainer = _trainer(policy, metrics=["accuracy"])
    out = trainer.predict(x, batch_size=8, verbose=0)
    assert out.dtype == np.float32 and out.shape == (16, 5)
    loss, acc = trainer.evaluate(x, y, batch_size=8, verbose=0)
    assert np.isfinite(loss) and 0 <= acc <= 1


def test_bad_loss_scale():
    with pytest.raises(ValueError, match="loss_scale must be 'auto', None, True or .*got 2.0"):
        _state("float32", loss_scale=2.0)
    with pytest.raises(ValueError, match="loss_scale must be .*got 'dynamic'"):
        _trainer("mixed_float16", loss_scale="dynamic")


_linear_step = {}


@settings(max_examples=10)
@given(k=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_power_of_two_scale_is_exact_in_float32(k, seed):
    """Invariant: scaling by S = 2**k and unscaling is exact in float32 (no overflow here), so a
    float32 step with any such scale gives the same parameters as the unscaled step."""
    import optax

    from fnn.steps import TrainState, make_train_step

    def mse(*, y_true, y_pred):
        return jnp.mean((y_pred - y_true) ** 2, axis=-1)

    if not _linear_step:
        _linear_step["step"] = make_train_step(mse)
    rng = np.random.default_rng(seed)
    batch = {"image": rng.normal(size=(8, 3)).astype(np.float32)}
    batch["label"] = rng.normal(size=(8, 2)).astype(np.float32)
    states = [
        TrainState.create(nnx.Linear(3, 2, rngs=nnx.Rngs(seed)), optax.sgd(0.1), loss_scale=ls)
        for ls in (None, precision.DynamicLossScale.create(2.0**k))
    ]
    plain, scaled = (_linear_step["step"](s, batch, jax.random.key(0))[0] for s in states)
    jax.tree.map(np.testing.assert_array_equal, _copy(scaled.params), _copy(plain.params))
