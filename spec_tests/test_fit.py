"""Slides: "iterate, validate" — Keras-like compile / fit / evaluate / predict and its bad inputs.

Oracles: float64 NumPy cross-entropy over `predict`'s outputs, hand-run `make_train_step` loops.
Invariants: checkpoint resume is bit-identical to an uninterrupted run, ``steps_per_execution``
and ``run_eagerly`` match one jit per step, padded last batches give exact means, no implicit
device-to-host transfer inside ``fit``. Every bad input raises before the first step.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fnn
from fnn.callbacks import ModelCheckpoint
from fnn.models import SimpleCNN
from fnn.train import compile as fnn_compile
from fnn.train import make_train_step

N, BATCH = 96, 16


def _model(*, dropout=0.25, batch_norm=True, seed=0):
    return SimpleCNN(
        10,
        input_shape=(8, 8, 1),
        filters=(4,),
        dense=(8,),
        batch_norm=batch_norm,
        dropout=dropout,
        output_activation=None,
        rngs=nnx.Rngs(seed),
    )


def _ce_logits(*, y_true, y_pred):
    return fnn.losses.sparse_categorical_crossentropy(
        y_true=y_true, y_pred=y_pred, from_logits=True
    )


def _np_ce(logits, labels):
    logits = np.asarray(logits, np.float64)
    z = logits - logits.max(-1, keepdims=True)
    return -(z - np.log(np.exp(z).sum(-1, keepdims=True)))[np.arange(len(labels)), labels]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, N).astype(np.int32)
    return x, y


def _compile(**kw):
    kw.setdefault("optimizer", "adam")
    kw.setdefault("loss", _ce_logits)
    kw.setdefault("metrics", ["accuracy"])
    kw.setdefault("devices", 1)
    model = kw.pop("model", None) or _model()
    return fnn_compile(model, **kw)


@pytest.fixture(scope="module")
def trainer():
    """One compiled trainer reused by the tests (reset to its initial state with `fresh`)."""
    t = _compile()
    t._initial = jax.tree.map(jnp.copy, t.state)
    return t


def fresh(t):
    t.state = jax.tree.map(jnp.copy, t._initial)
    return t


def _leaves(tree):
    return [
        np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
        for a in jax.tree.leaves(tree)
    ]


def _assert_trees_equal(a, b):
    for u, v in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for u, v in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


# ---- fit ----------------------------------------------------------------------------------------


def test_fit_trains_records_history_and_updates_model(trainer, data):
    x, y = data
    t = fresh(trainer)
    h = t.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, validation_data=(x[:32], y[:32]))
    assert isinstance(h, fnn.train.History) and h.epoch == [0, 1, 2]
    assert set(h.history) == {
        "loss",
        "accuracy",
        "learning_rate",
        "grad_norm",
        "param_norm",
        "val_loss",
        "val_accuracy",
    }
    assert all(len(v) == 3 for v in h.history.values())
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["learning_rate"] == pytest.approx([1e-3] * 3)  # Keras' Adam default
    assert int(t.state.step) == 3 * (N // BATCH)
    # fit trains the user's model in place (Keras semantics), with its own copy of the arrays.
    _, params, _ = nnx.split(t.model, nnx.Param, ...)
    _assert_trees_equal(params, t.state.params)


def test_no_implicit_device_to_host_transfer_between_steps(trainer, data):
    x, y = data
    t = fresh(trainer)
    # Logging fetches with an explicit jax.device_get; anything implicit inside the loop fails.
    start = int(t.state.step)
    with jax.transfer_guard_device_to_host("disallow"):
        history = t.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    # The guarded run really trained: two epochs of steps, with losses logged per epoch.
    assert int(t.state.step) == start + 2 * -(-len(x) // BATCH)
    assert len(history.history["loss"]) == 2


def test_checkpoint_resume_is_bit_identical(trainer, data, tmp_path):
    """2 epochs, stop, restore the Orbax checkpoint, 2 more == 4 uninterrupted, bit for bit."""
    x, y = data
    kw = dict(batch_size=BATCH, verbose=0, validation_data=(x[:32], y[:32]))
    t = fresh(trainer)
    t.fit(x, y, epochs=2, callbacks=[ModelCheckpoint(tmp_path / "ckpt")], **kw)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["1", "2"]

    uninterrupted = fresh(t).fit(x, y, epochs=4, **kw)
    straight = jax.tree.map(jnp.copy, t.state)

    start = t.restore(tmp_path / "ckpt")  # replaces step, params, BatchNorm stats, optimizer
    assert start == 2 and int(t.state.step) == 2 * N // BATCH
    resumed = t.fit(x, y, epochs=4, initial_epoch=start, **kw)
    _assert_trees_equal(straight.params, t.state.params)
    _assert_trees_equal(straight.opt_state, t.state.opt_state)
    _assert_trees_equal(straight.model_state, t.state.model_state)
    assert int(t.state.step) == int(straight.step)
    assert resumed.history["loss"] == uninterrupted.history["loss"][2:]
    assert resumed.history["val_loss"] == uninterrupted.history["val_loss"][2:]


def test_steps_per_execution_matches_single_steps(sgd_trainer, data):
    x, y = data
    kw = dict(batch_size=BATCH, epochs=2, steps_per_epoch=4, verbose=0)
    t = fresh(sgd_trainer)
    h1 = t.fit(x, y, **kw)
    one = jax.tree.map(jnp.copy, t.state)
    t.steps_per_execution = 3  # 4 steps per epoch: one lax.scan of 3 steps, then 1 step
    try:
        h3 = fresh(t).fit(x, y, **kw)
    finally:
        t.steps_per_execution = 1
    assert int(t.state.step) == int(one.step) == 8
    _assert_trees_close(one.params, t.state.params, rtol=2e-5)
    _assert_trees_close(one.model_state, t.state.model_state, rtol=2e-5)
    np.testing.assert_allclose(h1.history["loss"], h3.history["loss"], rtol=1e-5)


class _FlaxConvNet(nnx.Module):
    """Plain flax.nnx.Conv layers: the model the steps_per_execution pathology hit."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.dense = nnx.Linear(8 * 8 * 4, 10, rngs=rngs)

    def __call__(self, x):
        return self.dense(nnx.relu(self.conv(x)).reshape(x.shape[0], -1))


def test_steps_per_execution_makes_flax_convolutions_loop_safe(data):
    """K > 1 swaps nnx.Conv's convolution for fnn.conv's (fast in lax.scan on CPU): same
    numbers as one step per call; K = 1 leaves the model alone."""
    from jax import lax

    x, y = data
    kw = dict(batch_size=BATCH, epochs=1, steps_per_epoch=4, verbose=0, shuffle=False)
    single = _FlaxConvNet(nnx.Rngs(0))
    h1 = _compile(model=single, optimizer=optax.sgd(0.1), metrics=None).fit(x, y, **kw)
    assert single.conv.conv_general_dilated is lax.conv_general_dilated
    looped = _FlaxConvNet(nnx.Rngs(0))
    h4 = _compile(model=looped, optimizer=optax.sgd(0.1), metrics=None, steps_per_execution=4)
    h4 = h4.fit(x, y, **kw)
    assert looped.conv.conv_general_dilated is fnn.conv.conv_general_dilated
    np.testing.assert_allclose(h1.history["loss"], h4.history["loss"], rtol=1e-5)
    _assert_trees_close(nnx.state(single, nnx.Param), nnx.state(looped, nnx.Param), rtol=2e-5)


@pytest.fixture(scope="module")
def sgd_trainer():
    t = _compile(model=_model(dropout=0.0), optimizer=optax.sgd(0.1), metrics=None)
    t._initial = jax.tree.map(jnp.copy, t.state)
    return t


def test_run_eagerly_matches_jit(sgd_trainer, data):
    x, y = data
    kw = dict(batch_size=BATCH, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    jitted = fresh(sgd_trainer)
    jitted.fit(x, y, **kw)
    eager = _compile(model=_model(dropout=0.0), optimizer=optax.sgd(0.1), run_eagerly=True)
    eager.fit(x, y, **kw)
    _assert_trees_close(jitted.state.params, eager.state.params, rtol=1e-4, atol=1e-6)


def test_fit_equals_hand_written_step_loop(sgd_trainer, data):
    """fit with shuffle=False is make_train_step over consecutive batches (the slide's loop)."""
    x, y = data
    t = fresh(sgd_trainer)
    state = jax.tree.map(jnp.copy, t.state)
    t.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    step = make_train_step(_ce_logits)
    for i in range(N // BATCH):
        sl = slice(i * BATCH, (i + 1) * BATCH)
        state, _ = step(state, {"image": x[sl], "label": y[sl]}, t._step_key)
    _assert_trees_close(state.params, t.state.params, rtol=1e-5, atol=1e-6)


def test_new_dataset_sizes_reuse_the_compiled_programs(sgd_trainer, data):
    """Only the small gather program depends on the data's size; train/eval/predict do not."""
    x, y = data
    t = fresh(sgd_trainer)
    for rows in (N, N - 3, N // 2 + 1):  # three sizes, partial last batches included
        t.fit(x[:rows], y[:rows], batch_size=BATCH, epochs=1, verbose=0)
        t.evaluate(x[:rows], y[:rows], batch_size=BATCH, verbose=0)
        t.predict(x[:rows], batch_size=BATCH, verbose=0)
    for kind in ("train", "eval", "predict"):
        assert t._runners[(kind, 1, BATCH)]._cache_size() == 1, kind
    assert t.feeder._programs[("gather", 1, BATCH)]._cache_size() > 1


def test_validation_split_takes_the_last_fraction(trainer, data):
    x, y = data
    t = fresh(trainer)
    h = t.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, validation_split=0.25)
    assert int(t.state.step) == 72 // BATCH + (72 % BATCH > 0)
    ev = t.evaluate(x[72:], y[72:], batch_size=BATCH, return_dict=True)
    assert h.history["val_loss"][0] == pytest.approx(ev["loss"], rel=1e-6)
    assert h.history["val_accuracy"][0] == pytest.approx(ev["accuracy"], rel=1e-6)


def test_validation_freq(trainer, data):
    x, y = data
    t = fresh(trainer)
    kw = dict(batch_size=BATCH, verbose=0, validation_data=(x[:32], y[:32]), steps_per_epoch=1)
    assert len(t.fit(x, y, epochs=4, validation_freq=2, **kw).history["val_loss"]) == 2
    assert len(t.fit(x, y, epochs=3, validation_freq=[1, 3], **kw).history["val_loss"]) == 2


def test_class_weight_is_a_per_class_sample_weight(trainer, data):
    x, y = data
    cw = {c: 0.5 + 0.1 * c for c in range(10)}
    t = fresh(trainer)
    t.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, class_weight=cw)
    by_class = jax.tree.map(jnp.copy, t.state.params)
    fresh(t).fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        verbose=0,
        sample_weight=np.array([cw[c] for c in y], np.float32),
    )
    _assert_trees_equal(by_class, t.state.params)


def test_shuffle_is_a_seeded_permutation_per_epoch(trainer, data):
    x, y = data
    t = fresh(trainer)
    kw = dict(batch_size=BATCH, verbose=0, steps_per_epoch=2)
    t.fit(x, y, epochs=1, **kw)
    epoch0 = jax.tree.map(jnp.copy, t.state.params)
    fresh(t).fit(x, y, epochs=1, **kw)
    _assert_trees_equal(epoch0, t.state.params)  # same seed, same epoch: same order
    fresh(t).fit(x, y, epochs=2, initial_epoch=1, **kw)
    assert not np.array_equal(_leaves(epoch0)[0], _leaves(t.state.params)[0])  # epoch 1's order
    fresh(t).fit(x, y, epochs=1, shuffle=False, **kw)
    unshuffled = jax.tree.map(jnp.copy, t.state.params)
    fresh(t).fit(x, y, epochs=2, initial_epoch=1, shuffle=False, **kw)
    # Dropout still differs by step key but the step number is the same (0, 1): equal.
    _assert_trees_equal(unshuffled, t.state.params)


def test_steps_per_epoch_and_initial_epoch(trainer, data):
    x, y = data
    t = fresh(trainer)
    t.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    run = t._runners[("train", 1, BATCH)]
    compiled = run._cache_size()
    t = fresh(t)
    h = t.fit(x, y, batch_size=BATCH, epochs=3, initial_epoch=1, steps_per_epoch=2, verbose=0)
    assert h.epoch == [1, 2] and int(t.state.step) == 4
    # Fewer steps, or fewer real rows of the same arrays, reuse the compiled step.
    t.fit(x, y, batch_size=BATCH, epochs=1, validation_split=0.25, verbose=0)
    assert run._cache_size() == compiled


# ---- evaluate and predict -----------------------------------------------------------------------


def test_evaluate_and_predict_match_float64_oracle_with_partial_batches(trainer, data):
    x, y = data
    t = fresh(trainer)
    t.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    # 96 = 9·10 + 6: the last batch is padded with zero-weight examples.
    probs = t.predict(x, batch_size=10)
    assert probs.shape == (N, 10)
    np.testing.assert_allclose(
        probs, np.asarray(t.state.model()(jnp.asarray(x))), rtol=1e-5, atol=1e-6
    )
    want_loss = _np_ce(probs, y).mean()
    want_acc = np.mean(probs.argmax(-1) == y)
    for bs in (10, 32):
        loss, acc = t.evaluate(x, y, batch_size=bs)
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert acc == pytest.approx(want_acc, abs=1e-7)
    d = t.evaluate({"image": x, "label": y}, batch_size=32, return_dict=True)
    assert set(d) == {"loss", "accuracy"}


# ---- NaN, failed runs, checkpoints --------------------------------------------------------------


def _snapshot(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out


def test_terminate_on_nan_names_the_step_and_keeps_checkpoints(data, tmp_path):
    x, y = data
    # A learning rate that turns NaN at optimizer count 9: the update of step 9 (the 4th step of
    # epoch 2, 6 steps per epoch) makes the params NaN; that update is the first non-finite one.
    poisoned = optax.sgd(lambda count: jnp.where(count >= 9, jnp.nan, 0.01))
    t = _compile(model=_model(dropout=0.0), optimizer=poisoned, metrics=None)
    initial = jax.tree.map(jnp.copy, t.state)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(
        FloatingPointError, match=r"non-finite loss, gradient or parameters at step 9 \(epoch 2\)"
    ):
        t.fit(x, y, batch_size=BATCH, epochs=5, verbose=0, callbacks=[ModelCheckpoint(ckpt)])
    assert os.listdir(ckpt) == ["1"]  # epoch 1 was good and saved; epoch 2 never was
    assert int(t.state.step) == 9  # the state after the last good step
    assert all(np.isfinite(a).all() for a in _leaves(t.state.params))
    t.restore(ckpt)
    assert all(np.isfinite(a).all() for a in _leaves(t.state.params))
    # With K steps per execution the step inside the lax.scan is still named exactly.
    t.state = jax.tree.map(jnp.copy, initial)
    t.steps_per_execution = 4
    with pytest.raises(FloatingPointError, match=r"at step 9 \(epoch 2\)"):
        t.fit(x, y, batch_size=BATCH, epochs=5, verbose=0)


def test_failed_runs_never_overwrite_checkpoints(trainer, data, tmp_path):
    x, y = data
    t = fresh(trainer)
    ckpt = tmp_path / "ckpt"
    t.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[ModelCheckpoint(ckpt)])
    before = _snapshot(ckpt)
    bad_x = x.copy()
    bad_x[5, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"x contains \d+ non-finite values? \(NaN or inf\)"):
        fresh(t).fit(
            bad_x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[ModelCheckpoint(ckpt)]
        )
    assert _snapshot(ckpt) == before
    assert int(t.state.step) == 0  # nothing ran


# ---- bad input: clear errors before the first step ----------------------------------------------


def _bad_fit_cases(x, y):
    yy = y.copy()
    yy[3] = 10
    inf_x = x.copy()
    inf_x[2] = np.inf
    return [
        (
            dict(x=x, y=y[:-1]),
            r"same number of examples.*but x has 96, y has 95",
        ),
        (
            dict(x=x, y=yy),
            r"y has labels outside \[0, 10\) \(the model's 10 output classes\): min 0, max 10",
        ),
        (dict(x=x, y=-yy), r"labels outside \[0, 10\).*min -10"),
        (
            dict(x=inf_x, y=y),
            r"x contains 64 non-finite values \(NaN or inf\); the first is inf at index \(2, 0, 0, 0\)",
        ),
        (
            dict(x=x, y=y, validation_split=1.5),
            r"validation_split must be a fraction in \(0, 1\).*got 1.5",
        ),
        (
            dict(x=x, y=y, validation_split=-0.1),
            r"validation_split must be a fraction in \(0, 1\).*got -0.1",
        ),
        (dict(x=x, y=y, batch_size=200), r"batch_size=200 is larger than the 96 training examples"),
        (dict(x=x, y=y, workers=4), r"workers=4: these configure worker processes"),
        (dict(x=x, y=y, use_multiprocessing=True), r"use_multiprocessing=True"),
        (dict(x=x, y=y, max_queue_size=3), r"max_queue_size=3"),
        (
            dict(x=x, y=y, validation_steps=2),
            r"validation_steps=2 needs validation_data or validation_split",
        ),
        (dict(x=x, y=y, validation_batch_size=8), r"validation_batch_size=8 needs validation_data"),
        (
            dict(x=x, y=y, steps_per_epoch=7),
            r"steps_per_epoch=7 exceeds the 6 batches of 16 in the 96",
        ),
        (dict(x=x, y=y, epochs=0), r"epochs must be a positive integer, got 0"),
        (
            dict(x=x, y=y, epochs=2, initial_epoch=3),
            r"initial_epoch must be an int in \[0, epochs=2\], got 3",
        ),
        (dict(x=x, y=y, class_weight={0: 1.0}), r"class_weight has no weight for classes \[1, 2"),
        (
            dict(x=x, y=y, sample_weight=np.ones(5)),
            r"sample_weight must have shape \(96,\).*got \(5,\)",
        ),
        (dict(x=x, y=y, sample_weight=-np.ones(96)), r"sample_weight must be non-negative"),
        (
            dict(x=x, y=y, validation_data=(x,)),
            r"validation_data must be \(x_val, y_val\).*of length 1",
        ),
        (
            dict(x=x, y=y, validation_data=(x, y), validation_split=0.2),
            r"validation_split or validation_data, not both",
        ),
        (
            dict(x=x, y=y, validation_data=(x, y), validation_steps=9),
            r"validation_steps=9 exceeds the 6 validation batches",
        ),
        (dict(x=x, y=y, validation_freq=0), r"validation_freq must be >= 1, got 0"),
        (dict(x=x, y=y, verbose=5), r"verbose must be 'auto', 0, 1 or 2, got 5"),
        (dict(x=x, y=y, shuffle="batch"), r"shuffle must be True or False, got 'batch'"),
        (
            dict(x=x, y=y, callbacks=[print]),
            r"callbacks: expected fnn.callbacks.Callback instances",
        ),
        (dict(x=x[:, :4], y=y), r"the model cannot take inputs of shape \(16, 4, 8, 1\)"),
        (
            dict(x=x, y=np.eye(10)[y][:, :3]),
            r"the model's output shape \(16, 10\) does not fit loss",
        ),
    ]


def test_bad_fit_inputs_raise_before_the_first_step(trainer, data):
    x, y = data
    t = fresh(trainer)
    for kwargs, message in _bad_fit_cases(x, y):
        kwargs.setdefault("batch_size", BATCH)
        with pytest.raises((ValueError, TypeError), match=message):
            t.fit(verbose=kwargs.pop("verbose", 0), **kwargs)
        assert int(t.state.step) == 0, kwargs


def test_unknown_names_and_compile_arguments(data):
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adma'. Did you mean .*'adam'"):
        _compile(optimizer="adma")
    with pytest.raises(ValueError, match=r"Unknown loss 'categorical_crossentropi'. Did you mean"):
        _compile(loss="categorical_crossentropi")
    with pytest.raises(ValueError, match=r"Unknown metric 'accurasy'. Did you mean 'accuracy'"):
        _compile(metrics=["accurasy"])
    with pytest.raises(ValueError, match=r"steps_per_execution must be a positive integer, got 0"):
        _compile(steps_per_execution=0)
    with pytest.raises(ValueError, match=r"loss_weights=-1.0|loss_weights\[''\] must be finite"):
        _compile(loss_weights=-1.0)  # (per-output weights for a one-array model: test_fit_outputs)
    with pytest.raises(ValueError, match=r"jit_compile=False: fnn always compiles"):
        _compile(jit_compile=False)
    with pytest.raises(TypeError, match=r"model must be a flax.nnx.Module, got function"):
        fnn_compile(lambda x: x, optimizer="adam", loss="mse")


def test_loss_weights_scale_the_loss(trainer, data):
    x, y = data
    t = fresh(trainer)
    base = t.evaluate(x, y, batch_size=32)[0]
    scaled = _compile(loss_weights=2.5, metrics=None)
    scaled.state = jax.tree.map(jnp.copy, trainer._initial)
    assert scaled.evaluate(x, y, batch_size=32) == pytest.approx(2.5 * base, rel=1e-6)


def test_string_loss_and_optimizer_from_the_slides(data):
    """The slides' compile: softmax output, 'sparse_categorical_crossentropy', 'adam', 'accuracy'."""
    x, y = data
    model = SimpleCNN(10, input_shape=(8, 8, 1), filters=(4,), dense=(), rngs=nnx.Rngs(0))
    t = fnn_compile(
        model,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        devices=1,
    )
    h = t.fit({"image": x, "label": y}, batch_size=32, epochs=2, verbose=0)
    assert h.history["loss"][1] < h.history["loss"][0]
    probs = t.predict(x[:5], batch_size=5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


# ---- streaming input (Grain, through fnn.data.loader) -------------------------------------------


def test_streamed_batches_match_device_resident_fit(sgd_trainer, data):
    x, y = data
    ds = {"image": x, "label": y}
    t = fresh(sgd_trainer)
    t.fit(ds, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    in_memory = jax.tree.map(jnp.copy, t.state)
    loader = fnn.data.loader(ds, batch_size=BATCH, shuffle=False, num_epochs=None)
    h = fresh(t).fit(loader, epochs=2, verbose=0)
    assert h.epoch == [0, 1] and int(t.state.step) == 2 * N // BATCH
    _assert_trees_equal(in_memory.params, t.state.params)
    # steps_per_execution on a stream: 3 host batches stacked and run as one lax.scan.
    t.steps_per_execution = 3
    try:
        loader = fnn.data.loader(ds, batch_size=BATCH, shuffle=False, num_epochs=None)
        h3 = fresh(t).fit(loader, epochs=2, verbose=0)
    finally:
        t.steps_per_execution = 1
    assert int(t.state.step) == 2 * N // BATCH
    _assert_trees_close(in_memory.params, t.state.params, rtol=2e-5)
    np.testing.assert_allclose(h3.history["loss"], h.history["loss"], rtol=1e-5)


def test_fit_builds_a_loader_with_the_worker_arguments(sgd_trainer, data):
    x, y = data
    t = fresh(sgd_trainer)
    source = fnn.data.ArraySource({"image": x, "label": y})
    h = t.fit(
        source,
        batch_size=BATCH,
        epochs=2,
        workers=2,
        max_queue_size=4,
        verbose=0,
        validation_data=(x[:32], y[:32]),
    )
    assert int(t.state.step) == 2 * N // BATCH and len(h.history["val_loss"]) == 2


def test_streamed_resume_is_bit_identical(sgd_trainer, data, tmp_path):
    """The stream's position is saved with the checkpoint: resuming continues with the next batch."""
    x, y = data
    ds = {"image": x, "label": y}

    def loader():
        return fnn.data.loader(ds, batch_size=BATCH, shuffle=True, seed=5, num_epochs=None)

    t = fresh(sgd_trainer)
    t.fit(loader(), epochs=4, verbose=0)
    straight = jax.tree.map(jnp.copy, t.state.params)
    fresh(t).fit(loader(), epochs=2, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c")])
    fresh(t)
    start = t.restore(tmp_path / "c")
    t.fit(loader(), epochs=4, initial_epoch=start, verbose=0)
    _assert_trees_equal(straight, t.state.params)


def test_bad_streaming_inputs(sgd_trainer, data):
    x, y = data
    t = fresh(sgd_trainer)
    loader = fnn.data.loader({"image": x, "label": y}, batch_size=BATCH, num_epochs=None)
    with pytest.raises(ValueError, match=r"x is already an iterable of batches, so set them"):
        t.fit(loader, workers=3, verbose=0)
    with pytest.raises(
        ValueError, match=r"y: a streaming x yields batches that carry their labels"
    ):
        t.fit(loader, y=y, verbose=0)
    with pytest.raises(ValueError, match=r"validation_split needs in-memory arrays"):
        t.fit(loader, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"batch_size=32 differs from x's batch size 16"):
        t.fit(loader, batch_size=32, verbose=0)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    nan_loader = fnn.data.loader({"image": bad, "label": y}, batch_size=BATCH, shuffle=False)
    with pytest.raises(ValueError, match=r"the first batch 'image' contains \d+ non-finite value"):
        t.fit(nan_loader, verbose=0)
    yy = y.copy()
    yy[0] = 12
    with pytest.raises(ValueError, match=r"the stream's labels has labels outside \[0, 10\)"):
        t.fit(
            fnn.data.loader({"image": x, "label": yy}, batch_size=BATCH, shuffle=False), verbose=0
        )
    with pytest.raises(ValueError, match=r"steps_per_epoch is required"):
        t.fit(iter([{"image": x[:BATCH], "label": y[:BATCH]}]), verbose=0)
    assert int(t.state.step) == 0


def test_evaluate_and_validate_on_streams(sgd_trainer, data):
    x, y = data
    ds = {"image": x, "label": y}
    t = fresh(sgd_trainer)
    in_memory = t.evaluate(x, y, batch_size=BATCH)
    assert t.evaluate(fnn.data.ArraySource(ds), batch_size=16) == pytest.approx(in_memory, rel=1e-6)
    # 96 = 40 + 40 + 16: the last streamed batch is padded with zero-weight rows; the mean is exact.
    assert t.evaluate(fnn.data.ArraySource(ds), batch_size=40) == pytest.approx(in_memory, rel=1e-6)
    loader = fnn.data.loader(ds, batch_size=BATCH, shuffle=False)
    h = t.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, validation_data=loader)
    assert h.history["val_loss"][0] == pytest.approx(t.evaluate(x, y, batch_size=BATCH), rel=1e-6)
    with pytest.raises(ValueError, match=r"ran out after 6 batches; steps=7"):
        t.evaluate(loader, steps=7)
