"""Evaluation preprocessing of the zoo's frameworks, in JAX: resize, centre crop, normalise.

Data contract: images ``[N, H, W, C]`` or ``[H, W, C]`` (``C`` 3, or 1 repeated to RGB), uint8
(0..255) or float in ``value_range``; results are float32 ``[N, h, w, 3]``. Pure JAX (shapes are
static), so it runs under `jax.jit` and on the accelerator.

Resizing is `jax.image.resize` (separable, triangle kernel for ``"bilinear"``, Keys cubic with
``a = -0.5`` for ``"bicubic"``), with antialiasing: when shrinking by a factor ``s`` the kernel is
stretched by ``s``, exactly Pillow's ``Image.resize(..., BILINEAR | BICUBIC)`` filter (pixel
centres at ``(i + 0.5)·s``, weights renormalised at the borders). torchvision resizes PIL
images with Pillow and tensors with ``torch.nn.functional.interpolate(..., antialias=True)``,
whose antialiased kernel is the same filter. The two differ in rounding, and fnn follows the input:

* uint8 images are resized as Pillow does (torchvision's PIL path, the usual ImageNet evaluation):
  one axis, rounded and clipped to 0..255, then the other, rounded and clipped. Pillow resizes
  the width first, except when the height shrinks and the width grows (measured on Pillow
  13.0; the wrong order puts bicubic up to 19 levels off on noise); its 22-bit fixed-point
  weights leave one-level differences (tested). The clipping matters for bicubic, whose
  overshoot Pillow clips between the passes.
* float images are resized in float32 without rounding or clipping: torchvision's tensor path
  (cross-checked to 1e-4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn.models.zoo_spec import Preprocess

__all__ = ["apply", "center_crop", "normalize", "resize", "resize_short_side"]

_METHODS = {"bilinear": "linear", "bicubic": "cubic"}


def _as_batch(images) -> jax.Array:
    x = jnp.asarray(images)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be [N, H, W, 3] or [H, W, 3] (RGB, or 1 gray channel), got shape "
            f"{tuple(jnp.shape(images))}"
        )
    return x


def resize(images, size: tuple[int, int], *, method: str = "bilinear", antialias: bool = True):
    """Resizes ``[N, H, W, C]`` images to ``size = (h, w)``: Pillow's filter, in float32.

    ``out[i] = Σ_j k((j + 0.5 − (i + 0.5)·s) / max(s, 1)) · x[j] / Σ_j k(...)`` per axis, with
    ``s = H / h`` and ``k`` the triangle (bilinear) or Keys cubic (``a = −0.5``) kernel; without
    ``antialias`` the kernel is not stretched (``tf.image.resize``'s default, aliasing when
    shrinking). uint8 input follows Pillow's 8-bit passes (one axis, round, clip, the other,
    round, clip; within one level of Pillow); float input is torchvision's tensor path.

    Args:
      images: ``[N, H, W, C]`` array (any dtype; computed in float32).
      size: ``(h, w)`` of the result.
      method: ``"bilinear"`` or ``"bicubic"``.
      antialias: stretch the kernel when shrinking (Pillow, torchvision >= 0.17 default).

    Returns:
      float32 ``[N, h, w, C]`` (whole numbers in 0..255 for uint8 input).

    Examples:
      >>> import numpy as np
      >>> resize(np.full((1, 4, 6, 3), 7, np.uint8), (2, 3)).shape
      (1, 2, 3, 3)
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    x = jnp.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {tuple(x.shape)}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (h, w), got {tuple(size)}")
    pillow = x.dtype == jnp.uint8
    x = x.astype(jnp.float32)
    n, _, _, c = x.shape
    kernel = _METHODS[method]
    if pillow:  # Pillow's 8-bit passes, each rounded and clipped
        height_first = h < x.shape[1] and w > x.shape[2]  # Pillow's order (measured, 13.0)
        for axis in (1, 2) if height_first else (2, 1):
            if (h, w)[axis - 1] != x.shape[axis]:
                shape = list(x.shape)
                shape[axis] = (h, w)[axis - 1]
                x = _round_u8(jax.image.resize(x, shape, kernel, antialias=antialias))
        return x
    if (h, w) == x.shape[1:3]:
        return x
    return jax.image.resize(
        x, (x.shape[0], h, w, x.shape[3]), _METHODS[method], antialias=antialias
    )


def _round_u8(x):
    return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)


def resize_short_side(images, short: int, *, method: str = "bilinear", antialias: bool = True):
    """torchvision's ``Resize(short)``: the short side becomes ``short``, the long side
    ``int(short · long / short_side)`` (truncated, as torchvision computes it).

    Examples:
      >>> import numpy as np
      >>> resize_short_side(np.zeros((1, 300, 451, 3), np.uint8), 256).shape
      (1, 256, 384, 3)
    """
    x = jnp.asarray(images)
    h, w = x.shape[1:3]
    if h <= w:
        size = (short, int(short * w / h))
    else:
        size = (int(short * h / w), short)
    return resize(x, size, method=method, antialias=antialias)


def center_crop(images, size: tuple[int, int]) -> jax.Array:
    """torchvision's ``CenterCrop``: top ``= int(round((H − h) / 2))`` (Python's round, half to
    even), left likewise; a crop larger than the image is an error here (torchvision pads).

    Examples:
      >>> import numpy as np
      >>> center_crop(np.arange(25.0).reshape(1, 5, 5, 1), (2, 2))[0, :, :, 0].tolist()  # 1.5 -> 2
      [[12.0, 13.0], [17.0, 18.0]]
    """
    x = jnp.asarray(images)
    height, width = x.shape[1:3]
    h, w = int(size[0]), int(size[1])
    if h > height or w > width:
        raise ValueError(f"crop {(h, w)} is larger than the images {(height, width)}")
    top, left = int(round((height - h) / 2.0)), int(round((width - w) / 2.0))
    return x[:, top : top + h, left : left + w]


def apply(images, spec: Preprocess, *, value_range: tuple[float, float] = (0.0, 255.0)):
    """Prepares images as ``spec`` says (`fnn.models.zoo_spec.Preprocess`).

    With ``spec.resize``: resize the short side to it, centre-crop ``spec.size`` (torchvision's
    ``Resize(256), CenterCrop(224)``). Otherwise: centre square of ``crop_fraction`` of the short
    side, resized to ``spec.size`` in float (TensorFlow's EfficientNet-Lite). With ``resize``,
    uint8 images are resized as Pillow does (torchvision's PIL path), floats unrounded (its
    tensor path). Then pixels ``p`` in
    0..255 (RGB, or BGR with ``spec.bgr``) become ``(p − mean) / std``. torchvision's
    ``ToTensor`` divides by 255 first and normalises with mean/std in 0..1 units: the same values.

    Args:
      images: ``[N, H, W, 3]`` / ``[H, W, 3]`` (or 1 gray channel), uint8 or float.
      spec: the model's preprocessing (``fnn.pretrained.load(...).preprocess`` binds it).
      value_range: ``(low, high)`` of float pixels, e.g. ``(0, 1)``; uint8 is always 0..255.

    Returns:
      float32 ``[N, h, w, 3]``.

    Examples:
      >>> import numpy as np
      >>> from fnn.models.zoo_spec import torchvision_preprocess
      >>> apply(np.zeros((300, 451, 3), np.uint8), torchvision_preprocess()).shape
      (1, 224, 224, 3)
    """
    x = _as_batch(images)
    lo, hi = (0.0, 255.0) if x.dtype == jnp.uint8 else value_range
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    if spec.resize is not None:  # uint8 stays uint8 here: Pillow's rounding (torchvision on PIL)
        x = resize_short_side(x, spec.resize, method=spec.interpolation, antialias=spec.antialias)
        x = center_crop(x, spec.size)
    else:
        if not 0 < spec.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {spec.crop_fraction}")
        n, h, w, _ = x.shape
        crop = max(1, int(spec.crop_fraction * min(h, w)))
        top, left = (h - crop + 1) // 2, (w - crop + 1) // 2
        x = x[:, top : top + crop, left : left + crop].astype(jnp.float32)  # TF: float
        x = resize(x, spec.size, method=spec.interpolation, antialias=spec.antialias)
    return _normalize(x, spec, lo, hi)


def _normalize(x, spec: Preprocess, lo, hi):
    x = (x.astype(jnp.float32) - lo) * (255.0 / (hi - lo))
    if spec.bgr:
        x = x[..., ::-1]
    mean = jnp.asarray(spec.mean, jnp.float32)
    std = jnp.asarray(spec.std, jnp.float32)
    return (x - mean) / std


def normalize(images, spec: Preprocess, *, value_range: tuple[float, float] = (0.0, 255.0)):
    """Only the pixel part of `apply`: ``(p − mean) / std`` (after ``bgr``), no resize or crop.

    For dense tasks on a pretrained backbone (boxes, masks, ``features=True``): the images keep
    their size, so boxes and masks stay aligned, yet the backbone sees the pixel statistics it
    was trained on. ``fnn.pretrained.load(...).preprocess(images, keep_size=True)`` binds it.

    Args:
      images: ``[N, H, W, 3]`` / ``[H, W, 3]`` (or 1 gray channel), uint8 or float.
      spec: the model's preprocessing.
      value_range: ``(low, high)`` of float pixels; uint8 is always 0..255.

    Returns:
      float32 ``[N, H, W, 3]``.

    Examples:
      >>> import numpy as np
      >>> from fnn.models.zoo_spec import torchvision_preprocess
      >>> x = normalize(np.full((8, 8, 3), 0.5), torchvision_preprocess(), value_range=(0, 1))
      >>> x.shape, [round(float(v), 3) for v in x[0, 0, 0]]  # (0.5 - mean) / std
      ((1, 8, 8, 3), [0.066, 0.196, 0.418])
    """
    x = _as_batch(images)
    lo, hi = (0.0, 255.0) if x.dtype == jnp.uint8 else value_range
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    return _normalize(x, spec, lo, hi)
