"""Spec tests for `fnn.augment` (lecture: data augmentation; Keras 3 preprocessing layers).

Slide: "Increase the number of training data by randomly shifting/cropping/rotating original
data ... Can be incorporated in keras as a preprocessing layer in the model!" with
``RandomFlip("horizontal_and_vertical")`` and ``RandomRotation(0.2)``.

Tiers: (1) float64 NumPy oracles of the geometry written here (inverse mapping, fill modes through
``np.pad``, bilinear weights) and of the colour formulas; (2) literal Keras conventions (the fill
mode diagrams, rot90, the way Keras draws each parameter) and, optionally, Keras 3 itself
(``crosscheck``); (3) invariants (flip twice, rotation by 0, constant images, whole-pixel shifts),
eager == jit == vmap, no recompilation, per-image draws, reproducibility, NNX train/eval, and every
bad-input error.
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import assume, given
from hypothesis import strategies as st

from fnn import augment

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
SHAPE = (6, 9, 2)  # non-square, so rows and columns cannot be confused
FILL = -0.75  # a fill value no pixel has

# ------------------------------------------------------------------------------------------------
# float64 oracle: inverse mapping, fill mode by np.pad, bilinear/nearest interpolation
# ------------------------------------------------------------------------------------------------

# Keras' fill-mode diagrams in NumPy's vocabulary: reflect (d c b a | a b c d | d c b a) is
# np.pad's "symmetric", nearest (a a | a b c d | d d) is "edge".
NP_PAD = {"reflect": "symmetric", "wrap": "wrap", "nearest": "edge", "constant": "constant"}


def round_half_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def np_sample(image, y_in, x_in, interpolation, fill_mode, fill_value=FILL):
    """Read a float64 copy of ``image`` at (y_in, x_in) [H', W'] through a padded extension."""
    image = np.asarray(image, np.float64)
    h, w, _ = image.shape
    pad = 8 * max(h, w)
    kw = {"constant_values": fill_value} if fill_mode == "constant" else {}
    ext = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode=NP_PAD[fill_mode], **kw)
    assert np.abs(y_in).max() < pad - 2 and np.abs(x_in).max() < pad - 2
    if interpolation == "nearest":
        return ext[round_half_away(y_in).astype(int) + pad, round_half_away(x_in).astype(int) + pad]
    y0, x0 = np.floor(y_in), np.floor(x_in)
    wy, wx = (y_in - y0)[..., None], (x_in - x0)[..., None]
    y0, x0 = y0.astype(int) + pad, x0.astype(int) + pad
    return (
        (1 - wy) * (1 - wx) * ext[y0, x0]
        + (1 - wy) * wx * ext[y0, x0 + 1]
        + wy * (1 - wx) * ext[y0 + 1, x0]
        + wy * wx * ext[y0 + 1, x0 + 1]
    )


def grid(shape):
    h, w = shape[:2]
    y, x = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    return y, x, (h - 1) / 2, (w - 1) / 2


def np_rotate(image, angle, interpolation, fill_mode):
    """Counter-clockwise by ``angle`` about the centre: input point = R(angle)·(p - c) + c."""
    y, x, cy, cx = grid(image.shape)
    c, s = math.cos(angle), math.sin(angle)
    x_in = cx + c * (x - cx) - s * (y - cy)
    y_in = cy + s * (x - cx) + c * (y - cy)
    return np_sample(image, y_in, x_in, interpolation, fill_mode), (y_in, x_in)


def np_zoom(image, zy, zx, interpolation, fill_mode):
    y, x, cy, cx = grid(image.shape)
    return np_sample(image, cy + zy * (y - cy), cx + zx * (x - cx), interpolation, fill_mode)


def np_translate(image, dy, dx, interpolation, fill_mode):
    y, x, _, _ = grid(image.shape)
    return np_sample(image, y - dy, x - dx, interpolation, fill_mode)


def tie_margin(*coords):
    """Distance of the nearest coordinate to a rounding tie (x.5) of nearest interpolation."""
    return min(np.abs(np.abs(c - np.floor(c)) - 0.5).min() for c in coords)


def image_from(seed, shape=SHAPE, dtype=np.float32):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(dtype)


seeds = st.integers(0, 2**31 - 1)

# One compiled function per (op, interpolation, fill_mode); parameters are traced, so every
# hypothesis example reuses it.


@functools.cache
def jitted(op, interpolation, fill_mode):
    fn = getattr(augment, op)
    return jax.jit(
        lambda image, *params: fn(
            image, *params, interpolation=interpolation, fill_mode=fill_mode, fill_value=FILL
        )
    )


BILINEAR_TOL = dict(rtol=0, atol=3e-5)  # float32 coordinates vs float64 ones, pixels in [0, 1]

# ------------------------------------------------------------------------------------------------
# Oracles of the deterministic ops
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
@given(seed=seeds, angle=st.floats(-2 * math.pi, 2 * math.pi))
def test_rotate_matches_float64_oracle(fill_mode, interpolation, seed, angle):
    image = image_from(seed)
    angle = float(np.float32(angle))
    expected, coords = np_rotate(image, angle, interpolation, fill_mode)
    if interpolation == "nearest":
        assume(tie_margin(*coords) > 1e-3)  # float32 vs float64 may round a tie differently
    got = jitted("rotate", interpolation, fill_mode)(image, angle)
    assert got.shape == image.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, **BILINEAR_TOL)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
@given(seed=seeds, zy=st.floats(0.3, 2.5), zx=st.floats(0.3, 2.5))
def test_zoom_matches_float64_oracle(fill_mode, seed, zy, zx):
    image = image_from(seed)
    zy, zx = float(np.float32(zy)), float(np.float32(zx))
    got = jitted("zoom", "bilinear", fill_mode)(image, zy, zx)
    np.testing.assert_allclose(got, np_zoom(image, zy, zx, "bilinear", fill_mode), **BILINEAR_TOL)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
@given(seed=seeds, dy=st.floats(-12, 12), dx=st.floats(-20, 20))
def test_translate_matches_float64_oracle(fill_mode, seed, dy, dx):
    image = image_from(seed)
    dy, dx = float(np.float32(dy)), float(np.float32(dx))
    got = jitted("translate", "bilinear", fill_mode)(image, dy, dx)
    expected = np_translate(image, dy, dx, "bilinear", fill_mode)
    np.testing.assert_allclose(got, expected, **BILINEAR_TOL)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
@given(
    seed=seeds,
    linear=st.lists(st.floats(-1.5, 1.5), min_size=4, max_size=4),
    shift=st.lists(st.floats(-8, 8), min_size=2, max_size=2),
    projective=st.lists(st.floats(-0.02, 0.02), min_size=2, max_size=2),
)
def test_affine_transform_matches_float64_oracle(fill_mode, seed, linear, shift, projective):
    """x_in = (a0 x + a1 y + a2)/k, y_in = (b0 x + b1 y + b2)/k, k = c0 x + c1 y + 1."""
    image = image_from(seed)
    (a0, a1, b0, b1), (a2, b2), (c0, c1) = linear, shift, projective
    t = np.array([a0, a1, a2, b0, b1, b2, c0, c1], np.float32)
    a0, a1, a2, b0, b1, b2, c0, c1 = t.astype(np.float64)
    y, x, _, _ = grid(image.shape)
    k = c0 * x + c1 * y + 1
    expected = np_sample(image, (b0 * x + b1 * y + b2) / k, (a0 * x + a1 * y + a2) / k,
                         "bilinear", fill_mode)  # fmt: skip
    f = jitted("affine_transform", "bilinear", fill_mode)
    np.testing.assert_allclose(f(image, t), expected, rtol=0, atol=1e-4)
    # The 6-vector form is the affine case (c0 = c1 = 0).
    affine = np_sample(image, b0 * x + b1 * y + b2, a0 * x + a1 * y + a2, "bilinear", fill_mode)
    np.testing.assert_allclose(f(image, t[:6]), affine, **BILINEAR_TOL)


@pytest.mark.parametrize(
    "fill_mode, shifted_right, shifted_left",
    [
        # Keras' diagrams for the row (a b c d) = (1 2 3 4), shifted by its whole width: the
        # output shows exactly the extension beyond the left / right edge.
        ("reflect", [4, 3, 2, 1], [4, 3, 2, 1]),  # (d c b a | a b c d | d c b a)
        ("wrap", [1, 2, 3, 4], [1, 2, 3, 4]),  # (a b c d | a b c d | a b c d)
        ("nearest", [1, 1, 1, 1], [4, 4, 4, 4]),  # (a a a a | a b c d | d d d d)
        ("constant", [9, 9, 9, 9], [9, 9, 9, 9]),  # (k k k k | a b c d | k k k k)
    ],
)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_fill_modes_are_kerass_diagrams(fill_mode, shifted_right, shifted_left, interpolation):
    row = jnp.array([1.0, 2, 3, 4]).reshape(1, 4, 1)
    kw = dict(interpolation=interpolation, fill_mode=fill_mode, fill_value=9.0)
    np.testing.assert_array_equal(augment.translate(row, 0, 4, **kw)[0, :, 0], shifted_right)
    np.testing.assert_array_equal(augment.translate(row, 0, -4, **kw)[0, :, 0], shifted_left)
    # Reflect repeats with period 2n: shifting by 8 brings the row back.
    if fill_mode in ("reflect", "wrap"):
        np.testing.assert_array_equal(augment.translate(row, 0, 8, **kw)[0, :, 0], [1, 2, 3, 4])


def test_bilinear_weights_between_pixels():
    """Half a pixel right: each output is the mean of two neighbours; a quarter: 3:1 weights."""
    row = jnp.array([0.0, 4, 8, 16]).reshape(1, 4, 1)
    half = augment.translate(row, 0, 0.5, fill_mode="nearest")[0, :, 0]
    np.testing.assert_allclose(half, [0, 2, 6, 12])
    quarter = augment.translate(row, 0, -0.25, fill_mode="constant", fill_value=100.0)[0, :, 0]
    np.testing.assert_allclose(quarter, [1, 5, 10, 0.75 * 16 + 0.25 * 100])


@given(seed=seeds)
def test_flip_matches_numpy_and_twice_is_identity(seed):
    image = image_from(seed)
    oracle = {
        "horizontal": image[:, ::-1],
        "vertical": image[::-1, :],
        "horizontal_and_vertical": image[::-1, ::-1],
    }
    for mode, expected in oracle.items():
        once = augment.flip(image, mode)
        np.testing.assert_array_equal(once, expected)
        np.testing.assert_array_equal(augment.flip(once, mode), image)


def test_flip_and_crop_accept_integer_images():
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert augment.flip(image).dtype == jnp.uint8
    np.testing.assert_array_equal(augment.crop(image, 1, 1, 1, 2), image[1:2, 1:3])


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_rotation_by_zero_is_identity(fill_mode, interpolation):
    image = image_from(1)
    got = augment.rotate(image, 0.0, interpolation=interpolation, fill_mode=fill_mode)
    np.testing.assert_array_equal(got, image)


@pytest.mark.parametrize("n", [4, 5])
@pytest.mark.parametrize(
    "angle, k", [(math.pi / 2, 1), (math.pi, 2), (3 * math.pi / 2, 3), (-math.pi / 2, -1)]
)
def test_rotation_by_quarter_turns_with_nearest_is_rot90(n, angle, k):
    """Positive = counter-clockwise, as np.rot90 with positive k (rows point down)."""
    image = image_from(2, (n, n, 3))
    for fill_mode in FILL_MODES:
        got = augment.rotate(image, angle, interpolation="nearest", fill_mode=fill_mode)
        np.testing.assert_array_equal(got, np.rot90(image, k))


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "nearest"])
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_constant_image_stays_constant(fill_mode, interpolation):
    image = np.full(SHAPE, 0.3, np.float32)
    kw = dict(interpolation=interpolation, fill_mode=fill_mode)
    for out in (
        augment.rotate(image, 0.7, **kw),
        augment.zoom(image, 0.6, 1.7, **kw),
        augment.translate(image, 2.5, -3.25, **kw),
    ):
        np.testing.assert_allclose(out, image, rtol=1e-6)


def test_constant_fill_is_the_exception():
    image = np.full(SHAPE, 0.3, np.float32)
    out = np.asarray(augment.rotate(image, 0.7, fill_mode="constant", fill_value=FILL))
    assert out.min() < 0.3 and np.isclose(out[SHAPE[0] // 2, SHAPE[1] // 2], 0.3).all()


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@given(seed=seeds, dy=st.integers(-7, 7), dx=st.integers(-10, 10))
def test_translation_by_whole_pixels_is_exact(interpolation, seed, dy, dx):
    image = image_from(seed)
    wrap = jitted("translate", interpolation, "wrap")(image, float(dy), float(dx))
    np.testing.assert_array_equal(wrap, np.roll(image, (dy, dx), axis=(0, 1)))
    const = np.asarray(jitted("translate", interpolation, "constant")(image, float(dy), float(dx)))
    h, w, _ = image.shape
    ys, xs = np.arange(h) - dy, np.arange(w) - dx  # out[y, x] = in[y - dy, x - dx]
    inside = ((ys >= 0) & (ys < h))[:, None, None] & ((xs >= 0) & (xs < w))[None, :, None]
    expected = np.where(inside, image[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)], FILL)
    np.testing.assert_array_equal(const, expected)


@given(seed=seeds, data=st.data())
def test_crop_is_a_window(seed, data):
    image = image_from(seed)
    h = data.draw(st.integers(1, SHAPE[0]))
    w = data.draw(st.integers(1, SHAPE[1]))
    top = data.draw(st.integers(0, SHAPE[0] - h))
    left = data.draw(st.integers(0, SHAPE[1] - w))
    np.testing.assert_array_equal(
        augment.crop(image, top, left, h, w), image[top : top + h, left : left + w]
    )


def test_smart_resize_crops_largest_centred_window_then_resizes():
    image = image_from(3, (6, 8, 2)).astype(np.float64)
    # Target 3x3 (aspect 1): window 6x6 at column 1; halving with half-pixel centres and no
    # antialiasing averages each 2x2 block.
    window = image[:, 1:7]
    expected = window.reshape(3, 2, 3, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(augment.smart_resize(image.astype(np.float32), 3, 3), expected,
                               rtol=0, atol=1e-6)  # fmt: skip
    # Same aspect ratio and size: a pure centre crop.
    np.testing.assert_array_equal(augment.smart_resize(image, 6, 6), image[:, 1:7])


@given(seed=seeds, factor=st.floats(0, 3), low=st.floats(-1, 0), high=st.floats(1, 2))
def test_adjust_contrast_matches_oracle(seed, factor, low, high):
    image = image_from(seed).astype(np.float64) * 2 - 0.5
    mean = image.mean(axis=(0, 1), keepdims=True)  # per channel, over height and width
    expected = np.clip((image - mean) * factor + mean, low, high)
    got = augment.adjust_contrast(image.astype(np.float32), factor, value_range=(low, high))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@given(seed=seeds, delta=st.floats(-300, 300))
def test_adjust_brightness_matches_oracle(seed, delta):
    image = image_from(seed).astype(np.float64) * 255
    expected = np.clip(image + delta, 0, 255)
    got = augment.adjust_brightness(image.astype(np.float32), delta)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# How the random wrappers draw their parameters (Keras' rules), recovered from the outputs
# ------------------------------------------------------------------------------------------------

N_KEYS = 64
KEYS = jax.random.split(jax.random.key(1234), N_KEYS)
# Bilinear interpolation reproduces a linear ramp exactly inside the image, so the drawn
# parameters can be read back from the output's slopes and offsets at the centre.
RAMP_X = np.tile(np.arange(9, dtype=np.float32)[None, :, None], (9, 1, 1))
RAMP_Y = np.transpose(RAMP_X, (1, 0, 2))
RAMPS = np.concatenate([RAMP_X, RAMP_Y], axis=-1)  # channel 0: x, channel 1: y


def draws(fn, image=RAMPS):
    return np.asarray(jax.jit(jax.vmap(fn, in_axes=(0, None)))(KEYS, image), np.float64)


def assert_spread(values, low, high, tol=1e-4):
    """All inside [low, high], and spread over it (64 uniform draws reach both ends' 15%)."""
    assert values.min() >= low - tol and values.max() <= high + tol, (values.min(), values.max())
    span = high - low
    assert values.min() < low + 0.15 * span and values.max() > high - 0.15 * span


@pytest.mark.parametrize(
    "factor, low, high", [(0.2, -0.2, 0.2), (-0.1, -0.1, 0.1), ((0.3, -0.05), -0.05, 0.3)]
)
def test_random_rotation_draws_fraction_of_full_turn(factor, low, high):
    out = draws(lambda k, x: augment.random_rotation(k, x, factor))
    # At the centre: d out_x/dx = cos θ, d out_x/dy = -sin θ.
    c = out[:, 4, 5, 0] - out[:, 4, 4, 0]
    s = -(out[:, 5, 4, 0] - out[:, 4, 4, 0])
    assert_spread(np.arctan2(s, c) / (2 * np.pi), low, high)


def test_random_translation_draws_fractions_of_height_and_width():
    out = draws(lambda k, x: augment.random_translation(k, x, 0.2, (0.0, 0.3)))
    dx = 4 - out[:, 4, 4, 0]  # out_x = x - dx
    dy = 4 - out[:, 4, 4, 1]
    assert_spread(dy / 9, -0.2, 0.2)
    assert_spread(dx / 9, 0.0, 0.3)


def test_random_zoom_draws_one_plus_factor_and_shares_it_when_width_is_none():
    out = draws(lambda k, x: augment.random_zoom(k, x, 0.4))
    zx = out[:, 4, 5, 0] - out[:, 4, 4, 0]
    zy = out[:, 5, 4, 1] - out[:, 4, 4, 1]
    assert_spread(zy, 0.6, 1.4)
    np.testing.assert_allclose(zx, zy, atol=1e-5)  # aspect ratio kept: one draw
    out = draws(lambda k, x: augment.random_zoom(k, x, (0.1, 0.2), (-0.5, -0.3)))
    zx = out[:, 4, 5, 0] - out[:, 4, 4, 0]
    zy = out[:, 5, 4, 1] - out[:, 4, 4, 1]
    assert_spread(zy, 1.1, 1.2)
    assert_spread(zx, 0.5, 0.7)


def test_random_contrast_draws_like_keras_including_single_number_quirk():
    image = image_from(5, (8, 8, 3)) * 0.5 + 0.25
    mean = image.mean(axis=(0, 1))
    for factor, low, high in [(0.5, 1.0, 1.5), ((0.5, 0.5), 0.5, 1.5), ((0.2, 0.4), 0.8, 1.4)]:
        out = draws(lambda k, x, f=factor: augment.random_contrast(k, x, f, value_range=(-9, 9)),
                    image)  # fmt: skip
        a = (out - mean) / (image - mean)  # one factor per image, shared by its channels
        assert np.ptp(a, axis=(1, 2, 3)).max() < 1e-3
        assert_spread(a[:, 0, 0, 0], low, high, tol=1e-3)


def test_random_brightness_draws_fraction_of_value_range():
    image = np.full((4, 4, 3), 500.0, np.float32)
    out = draws(lambda k, x: augment.random_brightness(k, x, 0.2, value_range=(0, 1000)), image)
    delta = out - 500
    assert np.ptp(delta, axis=(1, 2, 3)).max() < 1e-3
    assert_spread(delta[:, 0, 0, 0], -200, 200, tol=1e-2)
    out = draws(lambda k, x: augment.random_brightness(k, x, (0.5, 1.0), value_range=(0, 255)),
                image)  # fmt: skip
    assert out.max() == 255 and out.min() >= 100 + 0.5 * 255 - 1e-3


def test_random_flip_is_a_coin_per_draw_and_flips_both_axes_together():
    image = image_from(6, (4, 5, 1))
    out = draws(lambda k, x: augment.random_flip(k, x), image)
    both = np.all(out == image[::-1, ::-1], axis=(1, 2, 3))
    none = np.all(out == image, axis=(1, 2, 3))
    assert np.all(both | none)  # Keras 3: one draw for "horizontal_and_vertical"
    assert 16 <= both.sum() <= 48
    out = draws(lambda k, x: augment.random_flip(k, x, "horizontal"), image)
    assert np.all(np.all(out == image[:, ::-1], axis=(1, 2, 3)) | np.all(out == image, (1, 2, 3)))


def test_random_crop_covers_every_offset():
    image = np.arange(5 * 6, dtype=np.float32).reshape(5, 6, 1)
    out = draws(lambda k, x: augment.random_crop(k, x, 3, 4), image)
    tops, lefts = out[:, 0, 0, 0] // 6, out[:, 0, 0, 0] % 6
    assert set(tops) == {0, 1, 2} and set(lefts) == {0, 1, 2}
    for o, t, l in zip(out, tops.astype(int), lefts.astype(int)):
        np.testing.assert_array_equal(o, image[t : t + 3, l : l + 4])


# ------------------------------------------------------------------------------------------------
# Randomness: per-image draws, reproducibility, eager == jit == vmap, no recompilation
# ------------------------------------------------------------------------------------------------

RANDOM_OPS = {
    "flip": lambda k, x: augment.random_flip(k, x),
    "rotation": lambda k, x: augment.random_rotation(k, x, 0.2),
    "translation": lambda k, x: augment.random_translation(k, x, 0.2, 0.2),
    "zoom": lambda k, x: augment.random_zoom(k, x, 0.3, 0.2),
    "crop": lambda k, x: augment.random_crop(k, x, 4, 6),
    "contrast": lambda k, x: augment.random_contrast(k, x, 0.5, value_range=(0, 1)),
    "brightness": lambda k, x: augment.random_brightness(k, x, 0.3, value_range=(0, 1)),
    "composed": augment.compose(
        functools.partial(augment.random_flip, mode="horizontal"),
        functools.partial(augment.random_rotation, factor=0.1, fill_mode="wrap"),
    ),
}


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_eager_jit_vmap_agree_and_same_key_same_output(name):
    fn = RANDOM_OPS[name]
    images = np.stack([image_from(s) for s in range(3)])
    keys = jax.random.split(jax.random.key(7), 3)
    eager = np.stack([fn(k, x) for k, x in zip(keys, images)])
    jit = jax.jit(fn)
    np.testing.assert_allclose(np.stack([jit(k, x) for k, x in zip(keys, images)]), eager,
                               rtol=0, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(jax.vmap(fn)(keys, images), eager, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(jit(keys[0], images[0]), jit(keys[0], images[0]))
    assert jit(keys[0], images[0]).dtype == images.dtype


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_batch_gets_a_draw_per_image(name):
    images = np.broadcast_to(image_from(8), (6, *SHAPE))
    out = np.asarray(augment.apply_batch(jax.random.key(3), images, RANDOM_OPS[name]))
    distinct = {o.tobytes() for o in out}
    # A coin has two faces; a 4x6 crop of a 6x9 image has 12 positions.
    assert len(distinct) >= {"flip": 2, "crop": 3}.get(name, 6)
    again = augment.apply_batch(jax.random.key(3), images, RANDOM_OPS[name])
    np.testing.assert_array_equal(again, out)  # same key, same batch
    other = augment.apply_batch(jax.random.key(4), images, RANDOM_OPS[name])
    assert not np.array_equal(other, out)


def test_no_recompilation_per_step():
    aug = RANDOM_OPS["composed"]
    step = jax.jit(lambda key, step, x: augment.apply_batch(jax.random.fold_in(key, step), x, aug))
    key = jax.random.key(0)
    a = step(key, 0, np.stack([image_from(0)] * 2))
    b = step(key, 1, np.stack([image_from(1)] * 2))
    assert step._cache_size() == 1
    assert not np.array_equal(a, b)


def test_low_precision_images_keep_their_dtype():
    for dtype in (jnp.bfloat16, jnp.float16):
        out = augment.random_rotation(jax.random.key(0), jnp.asarray(image_from(0), dtype), 0.2)
        assert out.dtype == dtype and out.shape == SHAPE
    ref = augment.rotate(image_from(0), 0.3)
    low = augment.rotate(jnp.asarray(image_from(0), jnp.bfloat16), 0.3)
    np.testing.assert_allclose(np.asarray(low, np.float32), ref, atol=2e-2)


# ------------------------------------------------------------------------------------------------
# NNX layers
# ------------------------------------------------------------------------------------------------

LAYERS = {
    "RandomFlip": lambda rngs: augment.RandomFlip("horizontal", rngs=rngs),
    "RandomRotation": lambda rngs: augment.RandomRotation(0.2, rngs=rngs),
    "RandomTranslation": lambda rngs: augment.RandomTranslation(0.2, 0.1, rngs=rngs),
    "RandomZoom": lambda rngs: augment.RandomZoom(0.2, rngs=rngs),
    "RandomCrop": lambda rngs: augment.RandomCrop(4, 6, rngs=rngs),
    "RandomContrast": lambda rngs: augment.RandomContrast(0.5, value_range=(0, 1), rngs=rngs),
    "RandomBrightness": lambda rngs: augment.RandomBrightness(0.2, value_range=(0, 1), rngs=rngs),
}
BATCH = np.stack([image_from(s) for s in range(4)])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_trains_randomly_and_is_identity_in_eval(name):
    model = nnx.Sequential(LAYERS[name](nnx.Rngs(0)))
    first, second = model(BATCH), model(BATCH)
    assert first.dtype == BATCH.dtype
    assert first.shape == ((4, 4, 6, 2) if name == "RandomCrop" else BATCH.shape)
    assert not np.array_equal(first, second)  # the stream advances: a new draw every call
    # Reproducible from the seed.
    np.testing.assert_array_equal(nnx.Sequential(LAYERS[name](nnx.Rngs(0)))(BATCH), first)
    model.eval()
    if name == "RandomCrop":  # eval keeps the output size: centre window, resized
        expected = jax.vmap(lambda x: augment.smart_resize(x, 4, 6))(BATCH)
        np.testing.assert_array_equal(model(BATCH), expected)
    else:
        np.testing.assert_array_equal(model(BATCH), BATCH)
    model.train()
    assert not np.array_equal(model(BATCH), BATCH)
    # A key at call time overrides the stream; one HWC image gets one draw.
    layer = LAYERS[name](None)
    key = jax.random.key(5)
    np.testing.assert_array_equal(layer(BATCH, rngs=key), layer(BATCH, rngs=key))
    assert layer(BATCH[0], rngs=key).ndim == 3


def test_layer_inside_jitted_step_matches_functional_path_and_does_not_recompile():
    model = nnx.Sequential(
        augment.RandomFlip(rngs=nnx.Rngs(1)), augment.RandomRotation(0.2, rngs=nnx.Rngs(2))
    )
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, x):
        m = nnx.merge(graphdef, state)
        return nnx.state(m), m(x)

    eager = nnx.Sequential(
        augment.RandomFlip(rngs=nnx.Rngs(1)), augment.RandomRotation(0.2, rngs=nnx.Rngs(2))
    )
    outs = []
    for _ in range(2):
        state, y = step(state, BATCH)
        outs.append(y)
        np.testing.assert_allclose(y, eager(BATCH), rtol=0, atol=1e-5)
    assert step._cache_size() == 1
    assert not np.array_equal(outs[0], outs[1])


def test_nnx_view_switches_layers_like_dropout():
    """``nnx.view(model, deterministic=...)`` (how a trainer builds its eval graph) is honoured."""
    model = nnx.Sequential(
        augment.RandomZoom(0.3, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1))
    )
    evaluation = nnx.view(model, deterministic=True)
    np.testing.assert_array_equal(evaluation(BATCH), BATCH)
    assert not np.array_equal(nnx.view(evaluation, deterministic=False)(BATCH), BATCH)
    assert model.layers[0].deterministic is False  # the view did not change the model


def test_random_crop_center_inference_option():
    layer = augment.RandomCrop(2, 4, inference="center", deterministic=True)
    np.testing.assert_array_equal(layer(BATCH), BATCH[:, 2:4, 2:6])


def test_layer_without_rngs_in_training_says_how_to_fix():
    with pytest.raises(ValueError, match=r"RandomRotation.*no random stream.*rngs"):
        augment.RandomRotation(0.1)(BATCH)
    assert augment.RandomRotation(0.1, deterministic=True)(BATCH) is not None


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

KEY = jax.random.key(0)
IMG = image_from(0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: augment.rotate(np.ones((4, 4), np.float32), 0.1),
        lambda: augment.flip(np.ones((2, 4, 4, 3), np.float32)),
        lambda: augment.random_rotation(KEY, np.ones((2, 4, 4, 3), np.float32), 0.1),
    ],
)
def test_wrong_rank_for_single_image_ops(call):
    with pytest.raises(ValueError, match=r"`image`.*\[height, width, channels\].*got shape"):
        call()


def test_wrong_rank_for_batches_and_layers():
    with pytest.raises(ValueError, match=r"`images`.*rank 4.*got shape \(6, 9, 2\)"):
        augment.apply_batch(KEY, IMG, RANDOM_OPS["flip"])
    with pytest.raises(ValueError, match=r"RandomZoom.*NHWC.*got shape \(1, 2, 6, 9, 2\)"):
        augment.RandomZoom(0.1, rngs=nnx.Rngs(0))(BATCH[None, :2])


def test_integer_images_where_floats_are_required():
    ints = np.zeros(SHAPE, np.int32)
    for call in (
        lambda: augment.rotate(ints, 0.1),
        lambda: augment.zoom(ints, 1.1),
        lambda: augment.translate(ints, 1, 1),
        lambda: augment.adjust_contrast(ints, 1.2),
        lambda: augment.random_brightness(KEY, ints, 0.1),
    ):
        with pytest.raises(TypeError, match=r"`image`.*floating.*got int32"):
            call()
    with pytest.raises(TypeError, match=r"RandomRotation.*floating.*got dtype uint8"):
        augment.RandomRotation(0.1, rngs=nnx.Rngs(0))(np.zeros((2, *SHAPE), np.uint8))


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: augment.random_rotation(KEY, IMG, 1.5), r"`factor`.*\[-1.0, 1.0\].*factor=1.5"),
        (lambda: augment.RandomRotation((0.1, -2)), r"`factor`.*\[-1.0, 1.0\].*\(0.1, -2\)"),
        (lambda: augment.RandomRotation("0.2"), r"`factor`.*number.*factor='0.2'"),
        (lambda: augment.RandomRotation((0.1, 0.2, 0.3)), r"`factor`.*pair.*\(0.1, 0.2, 0.3\)"),
        (lambda: augment.RandomZoom(-1.0), r"`height_factor`.*\(-1.0, 1.0\].*=-1.0"),
        (lambda: augment.random_zoom(KEY, IMG, 0.1, 1.2), r"`width_factor`.*\(-1.0, 1.0\].*1.2"),
        (lambda: augment.RandomTranslation(0.1, 2.0), r"`width_factor`.*\[-1.0, 1.0\].*2.0"),
        (lambda: augment.RandomContrast(-0.1), r"`factor`.*\[0.0, 1.0\].*-0.1"),
        (lambda: augment.random_contrast(KEY, IMG, (0.2, 1.5)), r"`factor`.*\[0.0, 1.0\].*1.5"),
        (lambda: augment.RandomBrightness(1.2), r"`factor`.*\[-1.0, 1.0\].*1.2"),
        (lambda: augment.RandomBrightness(0.1, value_range=(1, 0)), r"`value_range`.*\(1, 0\)"),
        (lambda: augment.adjust_brightness(IMG, 0.1, value_range=(0,)), r"`value_range`.*\(0,\)"),
    ],
)
def test_factor_and_range_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_crop_larger_than_the_image():
    with pytest.raises(ValueError, match=r"crop size \(height=7, width=2\).*larger.*height=6"):
        augment.random_crop(KEY, IMG, 7, 2)
    with pytest.raises(ValueError, match=r"crop size \(height=2, width=10\).*width=9"):
        augment.crop(IMG, 0, 0, 2, 10)
    with pytest.raises(ValueError, match=r"crop size .*larger.*\(6, 9, 2\)"):
        augment.RandomCrop(8, 8, rngs=nnx.Rngs(0))(BATCH)
    with pytest.raises(ValueError, match=r"crop size .*larger"):
        augment.RandomCrop(8, 8, deterministic=True)(BATCH)
    with pytest.raises(ValueError, match=r"`height` must be a positive Python int.*height=0"):
        augment.RandomCrop(0, 3)


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: augment.rotate(IMG, 0.1, fill_mode="reflekt"), ValueError, "Did you mean 'reflect'"),
        (lambda: augment.rotate(IMG, 0.1, interpolation="cubic"), ValueError, r"`interpolation`.*bilinear"),
        (lambda: augment.flip(IMG, "diagonal"), ValueError, r"`mode`.*horizontal"),
        (lambda: augment.RandomFlip(mode=None), TypeError, r"`mode`.*got None"),
        (lambda: augment.affine_transform(IMG, np.ones(5)), ValueError, r"`transform`.*\[8\].*\(5,\)"),
        (lambda: augment.compose(), ValueError, "at least one"),
        (lambda: augment.compose(RANDOM_OPS["flip"], 3), TypeError, r"step 1.*callable.*int"),
        (lambda: augment.apply_batch(KEY, BATCH, "flip"), TypeError, r"`fn`.*callable.*str"),
        (lambda: augment.RandomCrop(2, 2, inference="smart"), ValueError, r"`inference`.*resize"),
        (lambda: augment.RandomFlip(rngs=0), TypeError, r"`rngs`.*nnx.Rngs"),
    ],
)  # fmt: skip
def test_bad_options(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


# ------------------------------------------------------------------------------------------------
# Optional: Keras 3 itself, same drawn parameters -> same images
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("Keras is loaded with a backend other than JAX")
    return keras


@pytest.mark.crosscheck
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_keras_layers_same_parameters_same_images(keras, fill_mode, interpolation):
    images = np.stack([image_from(s, (7, 10, 3)) * 255 for s in range(4)])
    kw = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=3.0)
    tol = dict(rtol=0, atol=2e-3)  # pixels in [0, 255]: float32 coordinate rounding only

    layer = keras.layers.RandomRotation((-0.5, 0.5), seed=1, **kw)
    t = layer.get_random_transformation(images, training=True)
    ours = jax.vmap(lambda x, a: augment.rotate(x, a * math.pi / 180, **kw))(images, t["angle"])
    np.testing.assert_allclose(ours, layer.transform_images(images, t), **tol)

    layer = keras.layers.RandomZoom((-0.5, 0.6), (-0.3, 0.9), seed=2, **kw)
    t = layer.get_random_transformation(images, training=True)
    ours = jax.vmap(lambda x, zy, zx: augment.zoom(x, zy[0], zx[0], **kw))(
        images, t["height_zoom"], t["width_zoom"]
    )
    np.testing.assert_allclose(ours, layer.transform_images(images, t), **tol)

    layer = keras.layers.RandomTranslation(0.5, (-0.4, 0.7), seed=3, **kw)
    t = layer.get_random_transformation(images, training=True)
    ours = jax.vmap(lambda x, d: augment.translate(x, d[1], d[0], **kw))(images, t["translations"])
    np.testing.assert_allclose(ours, layer.transform_images(images, t), **tol)


@pytest.mark.crosscheck
def test_keras_flip_crop_colour_and_resize(keras):
    images = np.stack([image_from(s, (7, 10, 3)) * 255 for s in range(8)])
    for mode in augment.FLIP_MODES:
        layer = keras.layers.RandomFlip(mode, seed=1)
        t = layer.get_random_transformation(images, training=True)
        ours = jax.vmap(lambda x, f, m=mode: jnp.where(f, augment.flip(x, m), x))(
            images, t["flips"]
        )
        np.testing.assert_array_equal(ours, layer.transform_images(images, t))

    layer = keras.layers.RandomCrop(4, 6, seed=1)
    top, left = layer.get_random_transformation(images, training=True)
    np.testing.assert_array_equal(
        jax.vmap(lambda x: augment.crop(x, top, left, 4, 6))(images),
        layer.transform_images(images, (top, left)),
    )

    layer = keras.layers.RandomContrast((0.4, 0.6), seed=1)
    t = layer.get_random_transformation(images, training=True)
    ours = jax.vmap(lambda x, a: augment.adjust_contrast(x, a[0, 0, 0]))(
        images, t["contrast_factor"]
    )
    np.testing.assert_allclose(ours, layer.transform_images(images, t), rtol=1e-5, atol=1e-3)

    layer = keras.layers.RandomBrightness(0.4, seed=1)
    t = layer.get_random_transformation(images, training=True)
    ours = jax.vmap(lambda x, d: augment.adjust_brightness(x, d[0, 0, 0]))(images, t["rgb_delta"])
    np.testing.assert_allclose(ours, layer.transform_images(images, t), rtol=1e-6, atol=1e-3)

    for size in [(4, 6), (5, 5), (7, 3)]:
        expected = keras.ops.image.resize(images, size, crop_to_aspect_ratio=True)
        ours = jax.vmap(lambda x, s=size: augment.smart_resize(x, *s))(images)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-3)


@pytest.mark.crosscheck
def test_keras_factor_parsing_matches(keras):
    """The (lower, upper) Keras derives from each factor is the range fnn draws from."""
    assert keras.layers.RandomContrast(0.2).factor == (0, 0.2)  # the quirk fnn reproduces
    assert tuple(keras.layers.RandomRotation(-0.3).factor) == (-0.3, 0.3)
    assert tuple(keras.layers.RandomBrightness((0.4, -0.1)).factor) == (-0.1, 0.4)
