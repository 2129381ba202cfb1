"""Spec tests for fnn.preprocessing: Pillow's antialiased resize, torchvision's evaluation transform.

Oracles: Pillow itself (``Image.resize``, 8-bit, rounding after each pass: fnn is within one
level), torchvision's size and crop formulas written out here, and a Pillow + NumPy pipeline for
``Resize(256), CenterCrop(224), ToTensor, Normalize``. Cross-check (optional): torchvision's
transforms on tensors (float, antialiased) to 1e-4. Invariants (hypothesis): a constant image stays
constant, resizing is linear in the pixels.
"""

import sys
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnn import preprocessing, pretrained
from fnn.models.zoo_spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    keras_preprocess,
    torchvision_preprocess,
)

Image = pytest.importorskip("PIL.Image")
skimage_data = pytest.importorskip("skimage.data")

PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def pil_resize(image: np.ndarray, size, method) -> np.ndarray:
    """Pillow's 8-bit resize of an HWC uint8 image to ``size = (h, w)``."""
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), PIL_FILTERS[method]))


def fnn_resize_u8(image: np.ndarray, size, method) -> np.ndarray:
    out = np.asarray(preprocessing.resize(image[None], size, method=method))[0]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
@pytest.mark.parametrize(
    "size", [(17, 29), (64, 40), (101, 150), (300, 451), (240, 700), (450, 360), (600, 1353)]
)
def test_resize_matches_pillow_within_one_level(method, size):
    photo = skimage_data.chelsea()  # (300, 451, 3): shrink, anisotropic, identity, enlarge
    got, want = fnn_resize_u8(photo, size, method), pil_resize(photo, size, method)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_resize_matches_pillow_on_noise(method):
    """Noise is the hard case (every pixel differs from its neighbours)."""
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for size in [(5, 7), (18, 26), (36, 52), (50, 90), (29, 79), (55, 42), (74, 159)]:
        got, want = fnn_resize_u8(image, size, method), pil_resize(image, size, method)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, size


def test_no_antialias_differs_from_pillow_when_shrinking():
    """Sabotage guard: without antialiasing a 4x shrink aliases, far from Pillow."""
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    plain = np.asarray(preprocessing.resize(image[None], (16, 16), antialias=False))[0]
    assert np.abs(plain - pil_resize(image, (16, 16), "bilinear")).max() > 20


@pytest.mark.parametrize(
    "shape, short, expected",
    [((300, 451), 256, (256, 384)), ((451, 300), 256, (384, 256)), ((100, 100), 64, (64, 64))],
)
def test_resize_short_side_uses_torchvision_truncation(shape, short, expected):
    # torchvision: long = int(short * long / short_side): 256 * 451 / 300 = 384.85 -> 384.
    out = preprocessing.resize_short_side(np.zeros((1, *shape, 3), np.uint8), short)
    assert out.shape[1:3] == expected


@pytest.mark.parametrize("height, crop, top", [(293, 224, 34), (295, 224, 36), (256, 224, 16)])
def test_center_crop_rounds_half_to_even_as_torchvision(height, crop, top):
    # torchvision: top = int(round((H - h) / 2)); 69 / 2 = 34.5 -> 34, 71 / 2 = 35.5 -> 36.
    x = np.arange(height, dtype=np.float32).reshape(1, height, 1, 1).repeat(crop, axis=2)
    out = np.asarray(preprocessing.center_crop(x, (crop, crop)))
    assert out[0, 0, 0, 0] == top and out.shape == (1, crop, crop, 1)


def torchvision_oracle(image: np.ndarray) -> np.ndarray:
    """Resize(256) (Pillow, bilinear), CenterCrop(224), ToTensor, Normalize: in NumPy."""
    h, w = image.shape[:2]
    size = (256, int(256 * w / h)) if h <= w else (int(256 * h / w), 256)
    x = pil_resize(image, size, "bilinear").astype(np.float64) / 255.0
    top, left = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
    x = x[top : top + 224, left : left + 224]
    return (x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


@pytest.mark.parametrize("photo", ["chelsea", "coffee", "astronaut"])
def test_torchvision_transform_against_pillow_oracle(photo):
    image = getattr(skimage_data, photo)()
    got = np.asarray(preprocessing.apply(image, torchvision_preprocess()))[0]
    want = torchvision_oracle(image)
    # one 8-bit level of Pillow's rounding, in normalised units
    assert np.abs(got - want).max() <= 1.0 / 255 / min(IMAGENET_STD) + 1e-5


def test_value_range_gray_and_bgr():
    image = skimage_data.chelsea()
    spec = torchvision_preprocess()
    as_floats = preprocessing.apply(image / 255.0, spec, value_range=(0.0, 1.0))
    # floats are not rounded (tensor path), uint8 is (Pillow path): one level apart at most
    level = 1.0 / 255 / min(IMAGENET_STD)
    np.testing.assert_allclose(as_floats, preprocessing.apply(image, spec), atol=level + 1e-4)
    gray = skimage_data.camera()  # [H, W] uint8
    out = np.asarray(preprocessing.apply(gray, spec))
    np.testing.assert_allclose(
        out[..., 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0],
        out[..., 2] * IMAGENET_STD[2] + IMAGENET_MEAN[2],
        atol=1e-5,
    )
    caffe = np.asarray(
        preprocessing.apply(
            np.full((32, 32, 3), [10, 20, 30], np.uint8), keras_preprocess("caffe", 32)
        )
    )
    np.testing.assert_allclose(caffe[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_efficientnet_lite_spec_equals_the_original_preprocess():
    image = skimage_data.coffee()
    spec = pretrained.spec("efficientnet_lite1").preprocess
    np.testing.assert_array_equal(
        preprocessing.apply(image, spec), pretrained.preprocess(image, size=240)
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: preprocessing.apply(np.zeros((2, 4, 4, 4)), torchvision_preprocess()), r"\[N, H"),
        (lambda: preprocessing.resize(np.zeros((1, 4, 4, 3)), (2, 2), method="area"), "method"),
        (lambda: preprocessing.resize(np.zeros((1, 4, 4, 3)), (0, 2)), "positive"),
        (lambda: preprocessing.center_crop(np.zeros((1, 4, 4, 3)), (5, 2)), "larger"),
        (lambda: keras_preprocess("bgr"), "mode"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@given(
    value=st.floats(0, 255),
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    out_h=st.integers(1, 40),
    out_w=st.integers(1, 40),
    method=st.sampled_from(["bilinear", "bicubic"]),
)
def test_constant_image_stays_constant(value, h, w, out_h, out_w, method):
    x = np.full((1, h, w, 3), value, np.float32)
    out = np.asarray(preprocessing.resize(x, (out_h, out_w), method=method))
    np.testing.assert_allclose(out, value, atol=1e-3)


@given(seed=st.integers(0, 2**16), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_resize_is_linear(seed, a, b):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, 1, 13, 9, 3)).astype(np.float32)
    f = lambda z: np.asarray(preprocessing.resize(z, (5, 7)))  # noqa: E731
    np.testing.assert_allclose(f(a * x + b * y), a * f(x) + b * f(y), atol=1e-4)


@pytest.mark.crosscheck
@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
def test_crosscheck_torchvision_tensor_transform(photo):
    torch = pytest.importorskip("torch")
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    transforms = pytest.importorskip("torchvision.transforms")
    image = getattr(skimage_data, photo)()
    pipeline = transforms.Compose(
        [
            transforms.Resize(256, antialias=True),
            transforms.CenterCrop(224),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    ref = pipeline(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
    floats = image.astype(np.float32) / 255.0  # float input: the tensor path, unrounded
    got = np.asarray(preprocessing.apply(floats, torchvision_preprocess(), value_range=(0, 1)))[0]
    np.testing.assert_allclose(got, ref.permute(1, 2, 0).numpy(), atol=1e-4)
    got = np.asarray(preprocessing.apply(image, torchvision_preprocess()))[0]  # uint8: PIL path
    pil = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    ref_pil = np.asarray(pil(Image.fromarray(image)), np.float64) / 255.0
    ref_pil = (ref_pil - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.abs(got - ref_pil).max() <= 1.0 / 255 / min(IMAGENET_STD) + 1e-5
