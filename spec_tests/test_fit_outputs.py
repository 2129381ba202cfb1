"""Models with several outputs in ``compile`` / ``fit`` / ``evaluate`` / ``predict``, Keras' way.

Oracle: the compiled loss of a batch is Σₒ λₒ · mean ℓₒ, transcribed in NumPy below. Invariants:
``steps_per_execution``, data parallelism and checkpoint resume give the same numbers as the
plain run; a single-output model is untouched (the rest of the suite). Bad inputs: keys that
match no output, labels of the wrong structure, per-output arguments for a one-array model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fnn.train import compile as fnn_compile
from fnn.train import make_eval_step

N, BATCH = 48, 16


class TwoHeads(nnx.Module):
    """A shared trunk with a class head (3 logits) and a box head (4 numbers)."""

    def __init__(self, rngs, *, as_tuple=False):
        self.trunk = nnx.Linear(6, 16, rngs=rngs)
        self.cls = nnx.Linear(16, 3, rngs=rngs)
        self.box = nnx.Linear(16, 4, rngs=rngs)
        self.as_tuple = as_tuple

    def __call__(self, x):
        h = nnx.relu(self.trunk(x))
        if self.as_tuple:
            return self.cls(h), self.box(h)
        return {"class": self.cls(h), "box": self.box(h)}


def _ce_logits(*, y_true, y_pred):
    return optax.softmax_cross_entropy_with_integer_labels(y_pred, y_true)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6)).astype(np.float32)
    y = {
        "class": rng.integers(0, 3, N).astype(np.int32),
        "box": rng.uniform(size=(N, 4)).astype(np.float32),
    }
    return x, y


LOSS = {"class": _ce_logits, "box": "mse"}
WEIGHTS = {"class": 1.0, "box": 5.0}


def _compile(**kw):
    kw.setdefault("optimizer", optax.sgd(0.05))
    kw.setdefault("loss", LOSS)
    kw.setdefault("loss_weights", WEIGHTS)
    kw.setdefault("metrics", {"class": ["accuracy"]})
    kw.setdefault("devices", 1)
    return fnn_compile(kw.pop("model", None) or TwoHeads(nnx.Rngs(0)), **kw)


def _numpy_loss(model, x, y):
    """float64 oracle: 1.0 · mean CE(class) + 5.0 · mean over examples of mean((b̂ − b)²)."""
    out = jax.tree.map(lambda a: np.asarray(a, np.float64), model(jnp.asarray(x)))
    z = out["class"] - out["class"].max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -logp[np.arange(len(x)), y["class"]]
    mse = ((out["box"] - y["box"]) ** 2).mean(-1)
    return ce.mean() + 5.0 * mse.mean(), ce.mean(), mse.mean()


def test_fit_logs_every_output_as_keras_names_them(data):
    x, y = data
    t = _compile()
    h = t.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, validation_split=0.25)
    for key in ("loss", "class_loss", "box_loss", "class_accuracy"):
        assert key in h.history and "val_" + key in h.history, sorted(h.history)
        assert len(h.history[key]) == 2
    # the total is the weighted sum of the per-output losses (Keras 3 logs them before λ)
    for prefix in ("", "val_"):
        total = np.array(h.history[prefix + "loss"])
        parts = np.array(h.history[prefix + "class_loss"]) + 5.0 * np.array(
            h.history[prefix + "box_loss"]
        )
        np.testing.assert_allclose(total, parts, rtol=1e-5)
    assert h.history["loss"][1] < h.history["loss"][0]


def test_evaluate_matches_the_numpy_oracle(data):
    x, y = data
    model = TwoHeads(nnx.Rngs(1))
    t = _compile(model=model)
    loss, class_loss, box_loss, acc = t.evaluate(x, y, batch_size=BATCH, verbose=0)
    want, want_ce, want_mse = _numpy_loss(model, x, y)
    np.testing.assert_allclose([loss, class_loss, box_loss], [want, want_ce, want_mse], rtol=2e-5)
    pred = np.argmax(np.asarray(model(jnp.asarray(x))["class"]), -1)
    assert acc == pytest.approx(np.mean(pred == y["class"]))
    logs = t.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "class_loss", "box_loss", "class_accuracy"]


def test_predict_returns_the_outputs_structure(data):
    x, _ = data
    model = TwoHeads(nnx.Rngs(2))
    out = _compile(model=model).predict(x[:20], batch_size=BATCH, verbose=0)
    assert set(out) == {"class", "box"} and out["class"].shape == (20, 3)
    np.testing.assert_allclose(
        out["box"], np.asarray(model(jnp.asarray(x[:20]))["box"]), rtol=1e-5, atol=1e-6
    )


def test_make_eval_step_takes_dict_losses(data):
    from fnn.train import TrainState

    x, y = data
    model = TwoHeads(nnx.Rngs(3))
    state = TrainState.create(model, optax.sgd(0.1))
    step = make_eval_step(LOSS, loss_weights=WEIGHTS)
    m = step(
        state, {"image": jnp.asarray(x), "label": jax.tree.map(jnp.asarray, y)}, jax.random.key(0)
    )
    np.testing.assert_allclose(float(m["loss"]), _numpy_loss(model, x, y)[0], rtol=2e-5)


def test_tuple_outputs_are_named_output_i(data):
    x, y = data
    t = _compile(
        model=TwoHeads(nnx.Rngs(0), as_tuple=True),
        loss=[_ce_logits, "mse"],
        loss_weights=[1.0, 5.0],
        metrics=[["accuracy"], []],
    )
    h = t.fit(x, (y["class"], y["box"]), batch_size=BATCH, epochs=1, verbose=0)
    assert {"loss", "output_0_loss", "output_1_loss", "output_0_accuracy"} <= set(h.history)


def test_one_loss_applies_to_every_output(data):
    x, y = data
    t = _compile(loss="mse", loss_weights=None, metrics=None)
    labels = {"class": np.eye(3, dtype=np.float32)[y["class"]], "box": y["box"]}
    h = t.fit(x, labels, batch_size=BATCH, epochs=1, verbose=0)
    np.testing.assert_allclose(
        h.history["loss"], np.add(h.history["class_loss"], h.history["box_loss"]), rtol=1e-5
    )


def test_an_output_without_a_loss_is_not_trained(data):
    x, y = data
    model = TwoHeads(nnx.Rngs(0))
    box_before = np.asarray(model.box.kernel[...]).copy()
    t = _compile(model=model, loss={"class": _ce_logits}, loss_weights=None, metrics=None)
    h = t.fit(x, {"class": y["class"], "box": y["box"]}, batch_size=BATCH, epochs=1, verbose=0)
    assert "box_loss" not in h.history
    np.testing.assert_array_equal(np.asarray(model.box.kernel[...]), box_before)


def test_steps_per_execution_and_devices_match_the_plain_run(data):
    x, y = data
    kw = dict(batch_size=BATCH, epochs=2, verbose=0, shuffle=False)
    plain = _compile().fit(x, y, **kw).history
    scanned = _compile(steps_per_execution=2).fit(x, y, **kw).history
    parallel = _compile(devices=2).fit(x, y, **kw).history
    for other in (scanned, parallel):
        for key in plain:
            np.testing.assert_allclose(other[key], plain[key], rtol=1e-5, err_msg=key)


def test_resume_is_bit_identical(data, tmp_path):
    from fnn.callbacks import ModelCheckpoint

    x, y = data
    kw = dict(batch_size=BATCH, verbose=0)
    full = _compile().fit(x, y, epochs=3, **kw).history
    first = _compile()
    first.fit(x, y, epochs=1, callbacks=[ModelCheckpoint(tmp_path / "ckpt")], **kw)
    resumed = _compile()
    start = resumed.restore(tmp_path / "ckpt")
    h = resumed.fit(x, y, epochs=3, initial_epoch=start, **kw).history
    for key in ("loss", "class_loss", "box_loss", "class_accuracy"):
        assert h[key] == full[key][1:], key


def test_keys_that_match_no_output_name_both_sets(data):
    x, y = data
    with pytest.raises(
        ValueError,
        match=r"loss has keys \['boxes'\] that match no model output; the outputs are \['class', 'box'\]",
    ):
        _compile(loss={"class": _ce_logits, "boxes": "mse"}, loss_weights=None).fit(
            x, y, batch_size=BATCH, verbose=0
        )
    with pytest.raises(ValueError, match=r"loss_weights has keys \['cls'\]"):
        _compile(loss_weights={"cls": 1.0}).fit(x, y, batch_size=BATCH, verbose=0)
    with pytest.raises(ValueError, match=r"metrics has keys \['score'\]"):
        _compile(metrics={"score": ["accuracy"]}).fit(x, y, batch_size=BATCH, verbose=0)


def test_labels_must_have_the_outputs_structure(data):
    x, y = data
    t = _compile()
    with pytest.raises(
        ValueError,
        match=r"y has label keys \['class'\] but the model's outputs are \['box', 'class'\]",
    ):
        t.fit(x, {"class": y["class"]}, batch_size=BATCH, verbose=0)
    with pytest.raises(ValueError, match=r"several outputs \['class', 'box'\]; pass y as a dict"):
        t.fit(x, y["class"], batch_size=BATCH, verbose=0)
    with pytest.raises(ValueError, match=r"y\['class'\] has 47"):
        t.fit(x, {"class": y["class"][:-1], "box": y["box"]}, batch_size=BATCH, verbose=0)
    with pytest.raises(ValueError, match=r"class_weight applies to one output"):
        t.fit(x, y, batch_size=BATCH, verbose=0, class_weight={0: 1.0, 1: 1.0, 2: 1.0})
    with pytest.raises(ValueError, match=r"y\['class'\] has labels outside \[0, 3\)"):
        t.fit(x, {"class": y["class"] + 3, "box": y["box"]}, batch_size=BATCH, verbose=0)
    assert int(t.state.step) == 0


def test_per_output_arguments_for_a_one_array_model_are_errors(data):
    x, y = data

    class One(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x):
            return self.dense(x)

    t = fnn_compile(
        One(nnx.Rngs(0)), optimizer="sgd", loss=_ce_logits, loss_weights=[1.0, 2.0], devices=1
    )
    with pytest.raises(
        ValueError,
        match=r"loss_weights=\[1.0, 2.0\] is given per output, but the model returns one array",
    ):
        t.fit(x, y["class"], batch_size=BATCH, verbose=0)
    t = fnn_compile(One(nnx.Rngs(0)), optimizer="sgd", loss=LOSS, devices=1)
    with pytest.raises(
        ValueError, match=r"loss is given per output .* but the model returns one array"
    ):
        t.fit(x, y["class"], batch_size=BATCH, verbose=0)
    for bad in (-1.0, float("nan")):
        t = _compile(loss_weights={"class": 1.0, "box": bad})
        with pytest.raises(ValueError, match=r"loss_weights\['box'\] must be finite and >= 0"):
            t.fit(x, y, batch_size=BATCH, verbose=0)
