"""Issue 16, "Invalid input is never accepted silently": each bad input of fit / evaluate /
predict and of the augmentation ops is a clear error naming what is wrong, raised before the
first step (the trainer's state is untouched)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fnn
from fnn import augment
from fnn.train import compile as fnn_compile

N = 16


def _ce(*, y_true, y_pred):
    return fnn.losses.sparse_categorical_crossentropy(
        y_true=y_true, y_pred=y_pred, from_logits=True
    )


@pytest.fixture(scope="module")
def trainer():
    return fnn_compile(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), optimizer=optax.sgd(0.1), loss=_ce,
                       metrics=["accuracy"], devices=1)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(0).normal(size=(N, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32)


def _refused(trainer, error, match, **fit_args):
    before = jax.tree.map(np.asarray, (trainer.state.step, trainer.state.params))
    with pytest.raises(error, match=match):
        trainer.fit(batch_size=8, epochs=1, verbose=0, **fit_args)
    after = jax.tree.map(np.asarray, (trainer.state.step, trainer.state.params))
    jax.tree.map(np.testing.assert_array_equal, before, after)  # not one step was taken


@pytest.mark.parametrize(
    "class_weight, error, match",
    [
        ({0: -1.0, 1: 1.0}, ValueError, r"class_weight\[0\] must be finite and >= 0, got -1.0"),
        ({0: float("nan"), 1: 1.0}, ValueError, r"class_weight\[0\] must be finite.*nan"),
        ({0: 1.0, 1: float("inf")}, ValueError, r"class_weight\[1\] must be finite.*inf"),
        ({"0": 1.0, "1": 1.0}, ValueError, r"keys must be class indices .*got '0' \(str\)"),
        ({0: 1.0, 1: "2"}, TypeError, r"class_weight\[1\] must be a number, got '2'"),
        ({0: 1.0, True: 1.0}, ValueError, r"keys must be class indices .*got True"),
        ({}, ValueError, r"class_weight is an empty dict"),
    ],
)
def test_bad_class_weight(trainer, data, class_weight, error, match):
    _refused(trainer, error, match, x=data[0], y=data[1], class_weight=class_weight)


def test_complex_inputs_and_labels(trainer, data):
    x, y = data
    _refused(trainer, TypeError, r"x: complex values \(dtype complex64\)", x=x + 1j, y=y)
    _refused(trainer, TypeError, r"y: complex values \(dtype complex128\)", x=x, y=y + 0j)


def test_string_labels(trainer, data):
    words = np.where(data[1] == 1, "cat", "dog")
    _refused(trainer, TypeError, r"y: expected numbers, got strings \(dtype <U3\)", x=data[0],
             y=words)  # fmt: skip
    with pytest.raises(TypeError, match="got strings"):
        trainer.evaluate(data[0], words, verbose=0)


def test_float64_values_that_overflow_float32(trainer, data):
    x, y = data
    big = x.astype(np.float64)
    big[3, 1] = 1e39
    _refused(trainer, ValueError, r"x: values overflow float32 \(the largest magnitude is 1e\+39",
             x=big, y=y)  # fmt: skip
    sw = np.ones(N)
    sw[0] = 1e300
    _refused(trainer, ValueError, r"sample_weight: values overflow float32", x=x, y=y,
             sample_weight=sw)  # fmt: skip
    regression = fnn_compile(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), optimizer=optax.sgd(0.1),
                             loss="mse", devices=1)  # fmt: skip
    target = x[:, :1].astype(np.float64) * 1e300
    _refused(regression, ValueError, r"y: values overflow float32", x=x, y=target)


def test_loss_weights_negative_or_non_finite():
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="loss_weights"):
            fnn_compile(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), optimizer="sgd", loss=_ce,
                        loss_weights=bad, devices=1)  # fmt: skip


def test_out_of_range_class_ids_are_checked_on_the_host(trainer, data):
    """Under jit the loss would be finite and meaningless; fit and evaluate check the labels
    on the host before anything reaches the device."""
    x, y = data
    bad = y.copy()
    bad[5] = 2  # two classes: ids 0 and 1
    _refused(trainer, ValueError, r"min 0, max 2", x=x, y=bad)
    with pytest.raises(ValueError, match=r"min 0, max 2"):
        trainer.evaluate(x, bad, verbose=0)
    bad[5] = -1
    _refused(trainer, ValueError, r"min -1, max 1", x=x, y=bad)


def test_empty_inputs(trainer, data):
    empty = data[0][:0]
    with pytest.raises(ValueError, match=r"x: no examples \(shape \(0, 3\)\)"):
        trainer.evaluate(empty, data[1][:0], verbose=0)
    with pytest.raises(ValueError, match=r"x: no examples \(shape \(0, 3\)\)"):
        trainer.predict(empty, verbose=0)
    _refused(trainer, ValueError, r"x: no examples", x=empty, y=data[1][:0])


def test_nan_images_through_the_augmentation_ops():
    image = np.ones((6, 6, 3), np.float32)
    image[2, 3, 1] = np.nan
    key = jax.random.key(0)
    eager = [
        lambda: augment.rotate(image, 0.1),
        lambda: augment.flip(image),
        lambda: augment.adjust_brightness(image, 0.1),
        lambda: augment.random_zoom(key, image, 0.2),
        lambda: augment.apply_batch(key, image[None], lambda k, i: augment.random_flip(k, i)),
    ]
    for op in eager:
        with pytest.raises(ValueError, match=r"contains 1 non-finite pixel value \(NaN or inf\)"):
            op()
    # Under jit the values are traced and cannot be checked (documented): NaN stays NaN.
    out = jax.jit(lambda im: augment.rotate(im, 0.1))(jnp.asarray(image))
    assert bool(jnp.isnan(out).any())
