"""Slides' last-layer table through ``fit``: label shapes Keras' ``compile`` aligns, masked losses.

Oracles: float64 NumPy binary cross-entropy (Keras' clipping at ε = 1e-7) of the model's own
predictions, and float64 NumPy sparse cross-entropy averaged over the valid entries of each batch
(Keras' ``ignore_class``). Invariants: ``(N,)`` and ``(N, 1)`` labels train identically; a step
with ignored entries equals a step on the valid entries alone. Bad shapes still raise before the
first step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fnn
from fnn.models import SimpleCNN
from fnn.train import compile as fnn_compile

N, BATCH = 40, 16  # 40 = 2 full batches + a partial one of 8
EPS = 1e-7  # Keras' backend.epsilon(), the clip of binary_crossentropy


def _binary_model():
    return SimpleCNN(
        1, input_shape=(6, 6, 1), filters=(4,), dense=(), task="binary", rngs=nnx.Rngs(0)
    )


def _multiclass_model(k=3):
    return SimpleCNN(
        k, input_shape=(6, 6, 1), filters=(4,), dense=(), output_activation=None, rngs=nnx.Rngs(1)
    )


def _np_bce(p, y):
    p = np.clip(np.asarray(p, np.float64).reshape(-1), EPS, 1 - EPS)
    y = np.asarray(y, np.float64).reshape(-1)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _np_sparse_ce(logits, labels):
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    safe = np.where(labels >= 0, labels, 0)
    return -logp[np.arange(len(labels)), safe]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6, 6, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int32)
    return x, y


@pytest.fixture(scope="module")
def binary_trainer():
    t = fnn_compile(
        _binary_model(),
        optimizer=optax.sgd(0.1),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        devices=1,
    )
    t._initial = jax.tree.map(jnp.copy, t.state)
    return t


def _fresh(t):
    t.state = jax.tree.map(jnp.copy, t._initial)
    return t


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_binary_fit_on_rank1_labels_matches_float64_bce(binary_trainer, data, dtype):
    x, y = data
    y = y.astype(dtype)
    t = _fresh(binary_trainer)
    # One full-batch epoch: the recorded loss is the loss of the initial model's predictions.
    p0 = t.predict(x, batch_size=N, verbose=0)
    assert p0.shape == (N, 1)
    h = t.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(h.history["loss"][0], _np_bce(p0, y).mean(), rtol=1e-5)
    np.testing.assert_allclose(
        h.history["accuracy"][0], np.mean((p0[:, 0] > 0.5) == (y > 0.5)), rtol=1e-6
    )
    # More steps with a partial last batch, then evaluate against the oracle of predict.
    h = t.fit(x, y, batch_size=BATCH, epochs=3, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    p = t.predict(x, batch_size=BATCH, verbose=0)
    logs = t.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], _np_bce(p, y).mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], np.mean((p[:, 0] > 0.5) == (y > 0.5)))


def test_rank1_and_column_labels_train_identically(binary_trainer, data):
    x, y = data
    runs = []
    for labels in (y, y[:, None]):
        t = _fresh(binary_trainer)
        t.fit(x, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        runs.append(jax.tree.leaves(t.state.params))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mismatched_binary_labels_raise_before_the_first_step(binary_trainer, data):
    x, y = data
    t = _fresh(binary_trainer)
    before = [np.asarray(a) for a in jax.tree.leaves(t.state.params)]
    y3 = np.eye(3, dtype=np.float32)[y]  # (N, 3) against the model's (N, 1)
    with pytest.raises(ValueError, match=r"output shape \(16, 1\).*y of shape \(16, 3\)"):
        t.fit(x, y3, batch_size=BATCH, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y must be in \[0, 1\].*max 2"):
        t.fit(x, y * 2, batch_size=BATCH, epochs=1, verbose=0)
    assert int(t.state.step) == 0
    for a, b in zip(before, jax.tree.leaves(t.state.params), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


# ---- ignore_class -------------------------------------------------------------------------------


def _ignore_loss():
    return fnn.losses.get("sparse_categorical_crossentropy", from_logits=True, ignore_class=-1)


@pytest.fixture(scope="module")
def masked():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, N).astype(np.int32)
    y[[0, 1, 2, 5, 17, 30, 33, 34, 35]] = -1  # 4, 1 and 4 ignored in the batches of 16, 16, 8
    return x, y


def test_ignore_class_averages_over_valid_entries_like_keras(masked):
    x, y = masked
    t = fnn_compile(_multiclass_model(), optimizer="sgd", loss=_ignore_loss(), devices=1)
    logits = t.predict(x, batch_size=BATCH, verbose=0)
    per_ex = _np_sparse_ce(logits, y)
    valid = y != -1
    # Keras: each batch's loss is the mean over its valid entries; the epoch's loss is the
    # batch-size-weighted mean of those (its loss tracker weights by batch size).
    batch_losses, sizes = [], []
    for start in range(0, N, BATCH):
        sl = slice(start, start + BATCH)
        batch_losses.append(per_ex[sl][valid[sl]].mean())
        sizes.append(len(per_ex[sl]))
    expected = np.average(batch_losses, weights=sizes)
    logs = t.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    # Not the plain mean over all entries (ignored ones counted as 0), which differs here.
    assert not np.isclose(expected, per_ex[valid].sum() / N, rtol=1e-3)


def test_ignore_class_step_equals_a_step_on_the_valid_entries(masked):
    x, y = masked
    valid = y != -1
    params = []
    for xs, ys in ((x, y), (x[valid], y[valid])):
        t = fnn_compile(
            _multiclass_model(), optimizer=optax.sgd(0.5), loss=_ignore_loss(), devices=1
        )
        t.fit(xs, ys, batch_size=len(xs), epochs=1, shuffle=False, verbose=0)
        params.append(jax.tree.leaves(t.state.params))
    for a, b in zip(*params, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_ignore_class_bad_inputs(masked):
    x, y = masked
    t = fnn_compile(_multiclass_model(), optimizer="sgd", loss=_ignore_loss(), devices=1)
    bad = y.copy()
    bad[3] = 3
    with pytest.raises(ValueError, match=r"outside \[0, 3\) \(other than ignore_class=-1\).*max 3"):
        t.fit(x, bad, batch_size=BATCH, epochs=1, verbose=0)
    bad[3] = -2
    with pytest.raises(ValueError, match=r"ignore_class=-1.*min -2"):
        t.fit(x, bad, batch_size=BATCH, epochs=1, verbose=0)
    assert int(t.state.step) == 0
    loss = fnn.losses.get("sparse_categorical_crossentropy", ignore_class=0.5)
    with pytest.raises(TypeError, match=r"ignore_class must be an int class id.*0\.5"):
        fnn_compile(_multiclass_model(), optimizer="sgd", loss=loss, devices=1)


# ---- logits fed to a probability loss; accuracy on multi-hot labels ---------------------------


def test_logits_with_a_probability_loss_stop_after_the_first_execution(data):
    """A model ending in logits trained with loss="sparse_categorical_crossentropy"
    (from_logits=False) would train to a meaningless loss; fit raises after its first
    execution, naming from_logits=True."""
    x, y = data
    t = fnn_compile(
        _multiclass_model(), optimizer="sgd", loss="sparse_categorical_crossentropy", devices=1
    )
    with pytest.raises(ValueError, match=r"expects probabilities.*from_logits=True"):
        t.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    assert int(t.state.step) == 1  # stopped after one step, not after two epochs
    binary_logits = SimpleCNN(
        1, input_shape=(6, 6, 1), filters=(4,), dense=(), output_activation=None, rngs=nnx.Rngs(0)
    )
    t = fnn_compile(binary_logits, optimizer="sgd", loss="binary_crossentropy", devices=1)
    x_big = x * 100.0  # logits far outside [0, 1]
    with pytest.raises(ValueError, match=r"'binary_crossentropy' expects probabilities"):
        t.fit(x_big, y, batch_size=BATCH, epochs=1, verbose=0)


def test_probabilities_and_logits_with_from_logits_train(data):
    x, y = data
    ok = fnn_compile(
        _multiclass_model(),
        optimizer="sgd",
        loss=fnn.losses.get("sparse_categorical_crossentropy", from_logits=True),
        devices=1,
    )
    ok.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    softmax = SimpleCNN(3, input_shape=(6, 6, 1), filters=(4,), dense=(), rngs=nnx.Rngs(1))
    probs = fnn_compile(softmax, optimizer="sgd", loss="sparse_categorical_crossentropy", devices=1)
    probs.fit(x, y, batch_size=BATCH, steps_per_epoch=2, epochs=2, verbose=0)
    assert int(probs.state.step) == 4


def test_accuracy_on_multi_hot_labels_warns_and_names_binary_accuracy(data):
    x, _ = data
    model = SimpleCNN(
        3, input_shape=(6, 6, 1), filters=(4,), dense=(), task="multilabel", rngs=nnx.Rngs(2)
    )
    multi_hot = (np.random.default_rng(1).uniform(size=(N, 3)) > 0.5).astype(np.float32)
    t = fnn_compile(
        model, optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"], devices=1
    )
    with pytest.warns(UserWarning, match=r"multi-hot y .*metrics=\['binary_accuracy'\]"):
        t.fit(x, multi_hot, batch_size=BATCH, epochs=1, verbose=0)
    one_hot = np.eye(3, dtype=np.float32)[np.arange(N) % 3]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.fit(x, one_hot, batch_size=BATCH, epochs=1, verbose=0)
