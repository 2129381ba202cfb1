"""Training whose targets move with the inputs, and losses that see more than one output's labels.

* ``compile(augment=fn)``, ``fn(key, x, y) -> (x, y)`` on the whole batch inside the compiled
  train step: it changes training and only training (evaluate, predict and validation never see
  it), the same seed gives the same numbers, and so do ``steps_per_execution``, data parallelism
  and a resumed run; boxes move with the images (a model that reads the box off the image scores
  a loss of exactly 0 only when they do); a wrong ``fn`` is an error naming ``augment``, the
  expected and the actual structure.
* `fnn.objective.JointLoss`: one loss over all outputs and all labels (CenterNet's), against a
  float64 NumPy oracle.
* Per-pixel losses (segmentation): ``[N, H, W]`` values are averaged as Keras averages them
  (oracle: the mean over every pixel; with ``ignore_class`` over the valid pixels).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fnn import augment as aug
from fnn import losses
from fnn.objective import JointLoss
from fnn.train import TrainState, make_train_step
from fnn.train import compile as fnn_compile

N, BATCH, S = 32, 16, 8


def _images_with_boxes(n=N, seed=0):
    """``[n, 8, 8, 1]`` images, each with one bright rectangle, its class and its xyxy box."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, (n, S, S, 1)).astype(np.float32)
    box = np.zeros((n, 4), np.float32)
    for i in range(n):
        x1, y1 = rng.integers(0, 4, 2)
        w, h = rng.integers(1, 4, 2)
        x[i, y1 : y1 + h, x1 : x1 + w] = 1.0
        box[i] = [x1, y1, x1 + w, y1 + h]
    assert (box[:, 0] + box[:, 2] != S).any()  # not all symmetric: a flip moves them
    return x, {"class": rng.integers(0, 3, n).astype(np.int32), "box": box}


@pytest.fixture(scope="module")
def data():
    return _images_with_boxes()


class TwoHeads(nnx.Module):
    def __init__(self, rngs):
        self.cls = nnx.Linear(S * S, 3, rngs=rngs)
        self.box = nnx.Linear(S * S, 4, rngs=rngs)

    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        return {"class": self.cls(h), "box": self.box(h)}


def flip_boxes(key, x, y):
    """Random flips of images and boxes, one draw per image: the examples' augmentation."""

    def one(k, image, box):
        image, t = aug.random_flip_with_targets(k, image, {"box": box})
        return image, t["box"]

    x, box = jax.vmap(one)(jax.random.split(key, x.shape[0]), x, y["box"])
    return x, {**y, "box": box}


LOSS = {"class": losses.get("sparse_categorical_crossentropy", from_logits=True), "box": "mse"}


def _compile(**kw):
    kw.setdefault("optimizer", optax.sgd(0.05))
    kw.setdefault("loss", LOSS)
    kw.setdefault("metrics", {"class": ["accuracy"]})
    kw.setdefault("devices", 1)
    return fnn_compile(kw.pop("model", None) or TwoHeads(nnx.Rngs(0)), **kw)


FIT = dict(batch_size=BATCH, verbose=0, shuffle=False)


def _params(trainer):
    return [np.asarray(a) for a in jax.tree.leaves(trainer.state.params)]


# ---------------------------------------------------------------------------------------------
# What augment changes, and what it does not.


def test_augment_changes_training(data):
    x, y = data
    plain, flipped = _compile(), _compile(augment=flip_boxes)
    h0 = plain.fit(x, y, epochs=2, **FIT).history
    h1 = flipped.fit(x, y, epochs=2, **FIT).history
    assert h0["box_loss"][0] != h1["box_loss"][0]
    assert any(not np.array_equal(a, b) for a, b in zip(_params(plain), _params(flipped)))


def test_augment_runs_in_training_only(data):
    x, y = data
    # sgd(0): the weights never move, so every difference comes from the augmentation.
    shift = lambda key, x, y: (x + 3.0, {**y, "box": y["box"] + 5.0})  # noqa: E731
    kw = dict(optimizer=optax.sgd(0.0), epochs=1, validation_data=(x, y), **FIT)
    fit_kw = {k: kw.pop(k) for k in ("epochs", "validation_data", *FIT)}
    plain, shifted = _compile(**kw), _compile(augment=shift, **kw)
    h0, h1 = plain.fit(x, y, **fit_kw).history, shifted.fit(x, y, **fit_kw).history
    assert h1["box_loss"][0] > h0["box_loss"][0] + 1.0  # training saw the shifted batches
    for key in ("val_loss", "val_class_loss", "val_box_loss", "val_class_accuracy"):
        assert h1[key] == h0[key], key  # validation did not
    assert h0["val_loss"] == h0["loss"]  # (and the plain run's training = its validation)
    e0 = plain.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    e1 = shifted.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert e0 == e1
    p0, p1 = plain.predict(x, batch_size=BATCH, verbose=0), shifted.predict(x, verbose=0)
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k])


def test_augment_is_deterministic_given_the_seed(data):
    x, y = data
    runs = [_compile(augment=flip_boxes, seed=s).fit(x, y, epochs=2, **FIT) for s in (3, 3, 4)]
    a, b, c = (r.history for r in runs)
    assert a == b
    assert a["box_loss"] != c["box_loss"]


def test_steps_per_execution_and_devices_give_the_same_augmentation(data):
    x, y = data
    plain = _compile(augment=flip_boxes).fit(x, y, epochs=2, **FIT).history
    scanned = _compile(augment=flip_boxes, steps_per_execution=2).fit(x, y, epochs=2, **FIT)
    parallel = _compile(augment=flip_boxes, devices=2).fit(x, y, epochs=2, **FIT)
    for other in (scanned.history, parallel.history):
        for key in plain:
            np.testing.assert_allclose(other[key], plain[key], rtol=1e-5, err_msg=key)


def test_resume_repeats_the_uninterrupted_augmented_run(data, tmp_path):
    from fnn.callbacks import ModelCheckpoint

    x, y = data
    kw = dict(batch_size=BATCH, verbose=0)
    full = _compile(augment=flip_boxes).fit(x, y, epochs=3, **kw).history
    first = _compile(augment=flip_boxes)
    first.fit(x, y, epochs=1, callbacks=[ModelCheckpoint(tmp_path / "ckpt")], **kw)
    resumed = _compile(augment=flip_boxes)
    h = resumed.fit(x, y, epochs=3, initial_epoch=resumed.restore(tmp_path / "ckpt"), **kw)
    for key in ("loss", "class_loss", "box_loss", "class_accuracy"):
        assert h.history[key] == full[key][1:], key


def test_make_train_step_augments_before_the_forward_pass(data):
    x, y = data
    batch = {"image": jnp.asarray(x[:BATCH]), "label": jax.tree.map(lambda a: a[:BATCH], y)}

    def flip_all(key, x, y):
        del key
        x, t = jax.vmap(lambda i, b: aug.flip_with_targets(i, {"box": b}))(x, y["box"])
        return x, {**y, "box": t["box"]}

    flipped_x, flipped_y = flip_all(None, batch["image"], batch["label"])
    key = jax.random.key(0)
    s1, m1 = make_train_step(LOSS, augment=flip_all)(
        TrainState.create(TwoHeads(nnx.Rngs(0)), optax.sgd(0.1)), batch, key
    )
    s2, m2 = make_train_step(LOSS)(
        TrainState.create(TwoHeads(nnx.Rngs(0)), optax.sgd(0.1)),
        {"image": flipped_x, "label": flipped_y},
        key,
    )
    assert float(m1["loss"]) == float(m2["loss"])
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Boxes move with the images.


class BoxReader(nnx.Module):
    """Reads the bright rectangle's box off the image (times a trainable scale, initially 1)."""

    def __init__(self):
        self.scale = nnx.Param(jnp.ones(()))

    def __call__(self, x):
        on = x[..., 0] > 0.5  # [B, H, W]
        cols, rows = jnp.any(on, axis=1), jnp.any(on, axis=2)

        def extent(a):
            first = jnp.argmax(a, axis=-1)
            return first, a.shape[-1] - jnp.argmax(a[:, ::-1], axis=-1)

        (x1, x2), (y1, y2) = extent(cols), extent(rows)
        return jnp.stack([x1, y1, x2, y2], -1).astype(jnp.float32) * self.scale


def _box_reader_loss(data, augment):
    x, y = data
    t = fnn_compile(BoxReader(), optimizer=optax.sgd(0.0), loss="mse", devices=1, augment=augment)
    return t.fit(x, y["box"], epochs=1, **FIT).history["loss"][0]


def test_boxes_move_with_the_images(data):
    def flip_box(key, x, box):
        return flip_boxes(key, x, {"box": box})[0], flip_boxes(key, x, {"box": box})[1]["box"]

    def flip_image_only(key, x, box):
        return jnp.flip(x, axis=2), box

    def flip_both(key, x, box):
        x, t = jax.vmap(lambda i, b: aug.flip_with_targets(i, {"box": b}))(x, box)
        return x, t["box"]

    assert _box_reader_loss(data, None) == 0.0  # the reader reads the boxes exactly
    assert _box_reader_loss(data, flip_image_only) > 0.5  # a box left behind is wrong
    assert _box_reader_loss(data, flip_both) == 0.0  # every box mirrored with its image
    assert _box_reader_loss(data, flip_box) == 0.0  # random flips, one draw per image


# ---------------------------------------------------------------------------------------------
# A wrong augment.


def test_augment_that_is_not_callable_is_a_type_error():
    with pytest.raises(
        TypeError, match=r"augment must be a callable fn\(key, x, y\) -> \(x, y\) .* got int 3"
    ):
        _compile(augment=3)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda k, x, y: x, r"a pair \(x, y\) with x \(16, 8, 8, 1\) float32 and y"),
        (
            lambda k, x, y: (x, {"class": y["class"]}),
            r"\(x, y\) with x \(16, 8, 8, 1\) float32 and y \{'box': '\(16, 4\) "
            r"float32', 'class': '\(16,\) int32'\} \(the same structure, shapes and dtypes as it "
            r"was given\); it returned x \(16, 8, 8, 1\) float32 and y "
            r"\{'class': '\(16,\) int32'\}",
        ),
        (lambda k, x, y: (x[:, :4], y), r"it returned x \(16, 4, 8, 1\) float32"),
        (
            lambda k, x, y: (x, {**y, "class": y["class"].astype(jnp.float32)}),
            r"it returned x .* 'class': '\(16,\) float32'",
        ),
    ],
    ids=["not-a-pair", "missing-key", "wrong-shape", "wrong-dtype"],
)
def test_augment_returning_the_wrong_structure_names_expected_and_actual(data, bad, match):
    x, y = data
    t = _compile(augment=bad)
    with pytest.raises(ValueError, match=r"augment\(key, x, y\) must return .*" + match):
        t.fit(x, y, epochs=1, **FIT)
    assert int(t.state.step) == 0  # raised while compiling, before any step


# ---------------------------------------------------------------------------------------------
# JointLoss: one loss over every output and every label.


def _centre_loss(*, y_true, y_pred):
    """Reads two labels and both outputs: |box − target| where the label is valid, + CE."""
    valid = (y_true["label"] >= 0).astype(jnp.float32)
    l1 = jnp.abs(y_pred["box"] - y_true["target"]).mean(-1) * valid
    ce = optax.softmax_cross_entropy_with_integer_labels(
        y_pred["class"], jnp.maximum(y_true["label"], 0)
    )
    return l1 + ce * valid


def test_joint_loss_matches_the_numpy_oracle(data):
    x, y = data
    labels = {"label": np.where(np.arange(N) % 4 == 0, -1, y["class"]), "target": y["box"]}
    model = TwoHeads(nnx.Rngs(1))
    t = _compile(model=model, loss=JointLoss(_centre_loss), metrics=None, loss_weights=2.0)
    got = t.evaluate(x, labels, batch_size=BATCH, verbose=0, return_dict=True)
    out = jax.tree.map(lambda a: np.asarray(a, np.float64), model(jnp.asarray(x)))
    valid = labels["label"] >= 0
    z = out["class"] - out["class"].max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -logp[np.arange(N), np.maximum(labels["label"], 0)]
    want = 2.0 * np.mean((np.abs(out["box"] - labels["target"]).mean(-1) + ce) * valid)
    assert list(got) == ["loss"]
    np.testing.assert_allclose(got["loss"], want, rtol=2e-5)
    h = t.fit(x, labels, epochs=3, **FIT).history
    assert h["loss"][-1] < h["loss"][0]


def test_joint_loss_bad_inputs(data):
    x, y = data
    with pytest.raises(TypeError, match="JointLoss takes a callable"):
        JointLoss("mse")
    with pytest.raises(ValueError, match=r"metrics=\['accuracy'\]: with a JointLoss, metrics"):
        _compile(loss=JointLoss(_centre_loss), metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"loss_weights=\{'box': 1.0\} is given per output"):
        _compile(loss=JointLoss(_centre_loss), metrics=None, loss_weights={"box": 1.0})
    t = _compile(loss=JointLoss(lambda *, y_true, y_pred: y_pred["box"]), metrics=None)
    with pytest.raises(
        ValueError,
        match=r"loss '<lambda>' must return one value per example, shape \(16,\), .* it "
        r"returned \(16, 4\)",
    ):
        t.fit(x, y, epochs=1, **FIT)
    t = _compile(loss=JointLoss(_centre_loss), metrics=None)
    with pytest.raises(ValueError, match=r"loss '_centre_loss' cannot take y \{.*'class'"):
        t.fit(x, y, epochs=1, **FIT)  # no "label" / "target" keys


# ---------------------------------------------------------------------------------------------
# Per-pixel losses and metrics (segmentation).


class PixelLogits(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


def _pixel_ce(logits, labels, ignore=None):
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, np.maximum(labels, 0)[..., None], -1)[..., 0]
    keep = np.ones_like(ce, bool) if ignore is None else labels != ignore
    return ce[keep].mean(), (np.argmax(z, -1) == labels).mean()


def test_pixelwise_crossentropy_is_the_mean_over_every_pixel(data):
    x, _ = data
    masks = np.random.default_rng(1).integers(0, 3, (N, S, S)).astype(np.int32)
    model = PixelLogits(nnx.Rngs(0))
    ce = losses.get("sparse_categorical_crossentropy", from_logits=True)
    t = fnn_compile(model, optimizer="adam", loss=ce, metrics=["accuracy"], devices=1)
    got = t.evaluate(x, masks, batch_size=BATCH, verbose=0, return_dict=True)
    want, accuracy = _pixel_ce(model(jnp.asarray(x)), masks)
    np.testing.assert_allclose(got["loss"], want, rtol=2e-5)
    assert got["accuracy"] == pytest.approx(accuracy, rel=1e-6)
    # ignore_class: the mean over the valid pixels of each batch (Keras' masked loss)
    ignored = np.where(masks == 2, -1, masks)
    ce = losses.get("sparse_categorical_crossentropy", from_logits=True, ignore_class=-1)
    t = fnn_compile(model, optimizer="adam", loss=ce, devices=1)
    got = t.evaluate(x, ignored, batch_size=N, verbose=0)
    np.testing.assert_allclose(got, _pixel_ce(model(jnp.asarray(x)), ignored, -1)[0], rtol=2e-5)


def test_pixel_labels_outside_the_classes_are_an_error(data):
    x, _ = data
    masks = np.full((N, S, S), 3, np.int32)
    ce = losses.get("sparse_categorical_crossentropy", from_logits=True)
    t = fnn_compile(PixelLogits(nnx.Rngs(0)), optimizer="adam", loss=ce, devices=1)
    with pytest.raises(ValueError, match=r"y has labels outside \[0, 3\) .* min 3, max 3"):
        t.fit(x, masks, batch_size=BATCH, verbose=0)
