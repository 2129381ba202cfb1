"""Data augmentation on the device: Keras 3 preprocessing semantics as pure JAX.

The lecture: "Increase the number of training data by randomly shifting/cropping/rotating original
data ... change the input data at each training step so that the CNN never sees the same image
every step", and "Can be incorporated in keras as a preprocessing layer in the model!"
(``RandomFlip("horizontal_and_vertical")``, ``RandomRotation(0.2)``).

Data contract
-------------
* **Single-image ops.** Every op takes ONE image, an ``[H, W, C]`` (HWC, channels-last) array.
  Batches go through :func:`jax.vmap`; :func:`apply_batch` does that with one key per image, so
  every image of a batch gets its own random draw (Keras draws per image too, except
  ``RandomCrop``, which uses one offset per batch).
* **dtype.** Geometric ops that interpolate (``rotate``, ``translate``, ``zoom``,
  ``affine_transform``, ``smart_resize``) and colour ops (``adjust_contrast``,
  ``adjust_brightness``) need a floating image and return the same dtype (a ``TypeError`` names
  the dtype otherwise; Keras silently casts to ``float32``). ``flip`` and ``crop`` move pixels
  only and accept any dtype. Shapes are preserved, except by ``crop``/``smart_resize``.
* **Value range.** Geometric ops never clip. Colour ops clip to ``value_range`` (Keras' default
  ``(0, 255)``; pass ``(0, 1)`` for images scaled to [0, 1]).
* **NaN / inf.** Called eagerly on concrete arrays, every op (and `apply_batch`) raises a
  ``ValueError`` counting the non-finite pixels; under `jax.jit` / `jax.vmap` values are traced
  and not checked: a NaN pixel stays NaN and spreads to its interpolation neighbours, as in
  Keras (``fit`` checks its inputs on the host instead).
* **Geometry (Keras' ``affine_transform``).** Pixel ``(row y, column x)`` has integer
  coordinates; the image centre is ``((H-1)/2, (W-1)/2)``. A transform maps each OUTPUT pixel
  to the INPUT point it samples (inverse mapping): ``x_in = a0 x + a1 y + a2``,
  ``y_in = b0 x + b1 y + b2``. The input is read at non-integer points with ``"bilinear"``
  (default) or ``"nearest"`` (round half away from zero) interpolation; neighbours outside the
  image come from ``fill_mode``, applied to each integer neighbour index, exactly as Keras 3 on
  the JAX backend does through ``jax.scipy.ndimage.map_coordinates``:

  =============  ==========================  ============================================
  fill_mode      extension of ``a b c d``    rule for an index ``i`` on an axis of size n
  =============  ==========================  ============================================
  ``reflect``    ``d c b a | a b c d | d c``  mirror about the pixel EDGE (period 2n)
  ``wrap``       ``a b c d | a b c d | a b``  ``i mod n``
  ``constant``   ``k k k k | a b c d | k k``  ``fill_value`` (blended at the border)
  ``nearest``    ``a a a a | a b c d | d d``  ``clip(i, 0, n-1)``
  =============  ==========================  ============================================

* **Targets.** ``*_with_targets`` versions of the geometric ops (flip, rotate, translate, zoom,
  their random wrappers, ``affine_with_targets``) take ``(image, targets)`` and move the targets
  with the image: masks (``"*mask*"`` keys, ``[H, W(, C)]``) by nearest neighbour, ``xyxy`` boxes
  (``"box"``) as the box of their transformed corners clipped to the image, and a box's
  ``"label"`` becomes ``-1`` when the box leaves the image (Keras 3's layers transform
  ``bounding_boxes`` this way). Their image ``fill_mode`` defaults to ``"constant"``.
* **Randomness.** Random wrappers take ``key`` first and draw their parameter exactly as the
  Keras 3 layer draws it; the same key always gives the same output. Layers hold an
  ``nnx.RngStream`` (collection ``"augment"``) and are the identity in evaluation mode
  (``model.eval()``), as ``nnx.Dropout`` is.

The sampler is a gather-based bilinear interpolation, vmapped over the batch: on XLA:CPU it was the
fastest of the implementations measured (see ``BENCHMARKS.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from fnn._validation import lookup

__all__ = [
    "FILL_MODES",
    "FLIP_MODES",
    "INTERPOLATIONS",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "adjust_brightness",
    "adjust_contrast",
    "affine_transform",
    "affine_with_targets",
    "apply_batch",
    "compose",
    "crop",
    "flip",
    "flip_with_targets",
    "random_brightness",
    "random_contrast",
    "random_crop",
    "random_flip",
    "random_flip_with_targets",
    "random_rotation",
    "random_rotation_with_targets",
    "random_translation",
    "random_translation_with_targets",
    "random_zoom",
    "random_zoom_with_targets",
    "rotate",
    "rotate_with_targets",
    "smart_resize",
    "translate",
    "translate_with_targets",
    "zoom",
    "zoom_with_targets",
]

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")

Array = jax.Array
# A random augmentation of one image: (key, image [H, W, C]) -> image.
Augmentation = Callable[[Array, Array], Array]


# --------------------------------------------------------------------------------------------------
# Validation (eager, on static Python values and shapes; never on traced values)
# --------------------------------------------------------------------------------------------------


def _check_image(image, *, name: str = "image", floating: bool = True) -> Array:
    """Return ``image`` as an array after checking it is one HWC image (and floating if needed)."""
    image = jnp.asarray(image)
    if image.ndim != 3:
        raise ValueError(
            f"`{name}` must be a single image of shape [height, width, channels] (rank 3, HWC); "
            f"got shape {tuple(image.shape)} (rank {image.ndim}). For a batch [N, H, W, C] use "
            "`fnn.augment.apply_batch` or `jax.vmap`."
        )
    if floating and not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must have a floating dtype (float16/bfloat16/float32/float64); got "
            f"{image.dtype}. Convert first, e.g. `{name}.astype(jnp.float32)` (Keras casts "
            "silently; fnn does not, so integer pixels are never interpolated by accident)."
        )
    _check_finite(image, name)
    return image


def _check_finite(images: Array, name: str) -> None:
    """Concrete floating arrays only (a traced value cannot be inspected: see the module doc)."""
    if isinstance(images, jax.core.Tracer) or not jnp.issubdtype(images.dtype, jnp.inexact):
        return
    bad = int(jnp.size(images) - jnp.count_nonzero(jnp.isfinite(images)))
    if bad:
        raise ValueError(
            f"`{name}` contains {bad} non-finite pixel value{'s' if bad > 1 else ''} (NaN or "
            f"inf) of {images.size}; augmentation would spread them. Clean the images first."
        )


def _check_batch(images, *, name: str = "images") -> Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"`{name}` must be a batch of shape [batch, height, width, channels] (rank 4, NHWC); "
            f"got shape {tuple(images.shape)} (rank {images.ndim})."
        )
    _check_finite(images, name)
    return images


def _choice(kind: str, value: str, options: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"`{kind}` must be one of {', '.join(options)}; got {value!r}")
    return lookup(f"`{kind}`", value, {o: o for o in options})


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _factor_range(
    factor, name: str, low: float, high: float, *, open_low: bool = False
) -> tuple[float, float]:
    """Keras' ``_set_factor``: a number ``f`` -> ``(max(-|f|, low), |f|)``; a pair -> sorted.

    Every number must lie in ``[low, high]`` (``(low, high]`` when ``open_low``).
    """
    interval = f"{'(' if open_low else '['}{low}, {high}]"

    def in_range(v) -> bool:
        return (v > low if open_low else v >= low) and v <= high

    if _is_number(factor):
        if not in_range(factor):
            raise ValueError(
                f"`{name}` must be a number in {interval} or a pair (lower, upper) of such "
                f"numbers; got {name}={factor!r}."
            )
        f = abs(float(factor))
        return (max(-f, float(low)), f)
    if isinstance(factor, (tuple, list)) and len(factor) == 2 and all(map(_is_number, factor)):
        if not all(in_range(v) for v in factor):
            raise ValueError(
                f"`{name}` values must lie in {interval}; got {name}={tuple(factor)!r}."
            )
        lower, upper = sorted(float(v) for v in factor)
        return (lower, upper)
    raise ValueError(
        f"`{name}` must be a number in {interval} or a pair (lower, upper) of such numbers; "
        f"got {name}={factor!r}."
    )


def _value_range(value_range) -> tuple[float, float]:
    if (
        not isinstance(value_range, (tuple, list))
        or len(value_range) != 2
        or not all(map(_is_number, value_range))
        or not value_range[0] < value_range[1]
    ):
        raise ValueError(
            "`value_range` must be a pair (low, high) of numbers with low < high, e.g. (0, 255) "
            f"or (0, 1); got value_range={value_range!r}."
        )
    return float(value_range[0]), float(value_range[1])


def _positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive Python int; got {name}={value!r}.")
    return int(value)


# --------------------------------------------------------------------------------------------------
# The sampler: inverse mapping + fill mode + interpolation, by gathers
# --------------------------------------------------------------------------------------------------


def _fix_index(index: Array, size: int, fill_mode: str) -> Array:
    """Map an integer index on an axis of ``size`` pixels into ``[0, size)`` by the fill mode."""
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a: period 2n, mirrored about edges
        m = jnp.mod(index, 2 * size)
        return jnp.where(m < size, m, 2 * size - 1 - m)
    if fill_mode == "wrap":
        return jnp.mod(index, size)
    # nearest, and constant (whose out-of-range taps are masked afterwards; clip keeps the gather
    # in bounds)
    return jnp.clip(index, 0, size - 1)


def _taps(coord: Array, interpolation: str) -> list[tuple[Array, Array | None]]:
    """Integer neighbour indices and their 1-D interpolation weights along one axis."""
    if interpolation == "nearest":
        # lax.round rounds half away from zero, as map_coordinates(order=0) does (not numpy's
        # half-to-even).
        return [(lax.round(coord).astype(jnp.int32), None)]
    lower = jnp.floor(coord)
    upper_weight = coord - lower
    index = lower.astype(jnp.int32)
    return [(index, 1 - upper_weight), (index + 1, upper_weight)]


def _sample(
    image: Array, y: Array, x: Array, interpolation: str, fill_mode: str, fill_value
) -> Array:
    """Read ``image [H, W, C]`` at real coordinates ``y, x [H', W']`` -> ``[H', W', C]``."""
    height, width, channels = image.shape
    flat = image.reshape(height * width, channels)
    out = None
    for iy, wy in _taps(y, interpolation):
        fy = _fix_index(iy, height, fill_mode)
        for ix, wx in _taps(x, interpolation):
            fx = _fix_index(ix, width, fill_mode)
            values = flat.at[fy * width + fx].get(mode="promise_in_bounds")
            if fill_mode == "constant":
                inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
                values = jnp.where(inside[..., None], values, jnp.asarray(fill_value, image.dtype))
            if wy is None:  # nearest: one tap, weight 1
                out = values
                continue
            term = (wy * wx).astype(image.dtype)[..., None] * values
            out = term if out is None else out + term
    return out


def _coord_dtype(image: Array):
    # Coordinates in float32 even for bfloat16/float16 images (a 224-pixel grid does not fit in
    # 8 mantissa bits); float64 images keep float64.
    return jnp.promote_types(image.dtype, jnp.float32)


def _warp(image, a0, a1, a2, b0, b1, b2, *, interpolation, fill_mode, fill_value) -> Array:
    """Sample ``image`` at ``x_in = a0 x + a1 y + a2``, ``y_in = b0 x + b1 y + b2``."""
    interpolation = _choice("interpolation", interpolation, INTERPOLATIONS)
    fill_mode = _choice("fill_mode", fill_mode, FILL_MODES)
    height, width, _ = image.shape
    dtype = _coord_dtype(image)
    x = jnp.arange(width, dtype=dtype)[None, :]
    y = jnp.arange(height, dtype=dtype)[:, None]
    a0, a1, a2, b0, b1, b2 = (jnp.asarray(v, dtype) for v in (a0, a1, a2, b0, b1, b2))
    x_in = a0 * x + a1 * y + a2
    y_in = b0 * x + b1 * y + b2
    return _sample(image, y_in, x_in, interpolation, fill_mode, fill_value)


# --------------------------------------------------------------------------------------------------
# Deterministic ops (single image, parameters given)
# --------------------------------------------------------------------------------------------------


def affine_transform(
    image,
    transform,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "constant",
    fill_value=0.0,
) -> Array:
    """Sample one image through an inverse projective/affine map (Keras' ``affine_transform``).

    For each output pixel ``(x, y)`` (column, row) the input is read at

        x_in = (a0 x + a1 y + a2) / k,   y_in = (b0 x + b1 y + b2) / k,   k = c0 x + c1 y + 1,

    with ``transform = [a0, a1, a2, b0, b1, b2, c0, c1]`` (``c0 = c1 = 0`` for an affine map; a
    6-vector is read as ``[a0, a1, a2, b0, b1, b2]``). This is the transform vector of
    ``keras.ops.image.affine_transform`` and ``tf.raw_ops.ImageProjectiveTransformV3``, and
    :func:`rotate`, :func:`zoom` and :func:`translate` are special cases of it.

    .. note:: The defaults (``fill_mode="constant"``) are those of ``keras.ops.image``; the
       Keras *layers* (and this module's ``rotate``/``zoom``/``translate``) default to
       ``"reflect"``. Keras' JAX backend does not apply ``c0, c1`` as documented; fnn does.

    Args:
      image: ``[H, W, C]`` floating image.
      transform: ``[8]`` or ``[6]`` array (may be traced).
      interpolation: ``"bilinear"`` or ``"nearest"``.
      fill_mode: ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"`` (module docstring).
      fill_value: value outside the image when ``fill_mode="constant"``.

    Returns:
      ``[H, W, C]``, the dtype of ``image``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> image = jnp.arange(12.0).reshape(3, 4, 1)
      >>> shift_right = jnp.array([1.0, 0, -1, 0, 1, 0, 0, 0])  # x_in = x - 1
      >>> augment.affine_transform(image, shift_right)[..., 0]
      Array([[ 0.,  0.,  1.,  2.],
             [ 0.,  4.,  5.,  6.],
             [ 0.,  8.,  9., 10.]], dtype=float32)
    """
    image = _check_image(image)
    transform = jnp.asarray(transform)
    if transform.shape not in ((8,), (6,)):
        raise ValueError(
            "`transform` must have shape [8] ([a0, a1, a2, b0, b1, b2, c0, c1]) or [6]; got shape "
            f"{tuple(transform.shape)}."
        )
    if transform.shape == (6,):
        return _warp(
            image, *transform, interpolation=interpolation, fill_mode=fill_mode,
            fill_value=fill_value,
        )  # fmt: skip
    interpolation = _choice("interpolation", interpolation, INTERPOLATIONS)
    fill_mode = _choice("fill_mode", fill_mode, FILL_MODES)
    height, width, _ = image.shape
    dtype = _coord_dtype(image)
    a0, a1, a2, b0, b1, b2, c0, c1 = (transform[i].astype(dtype) for i in range(8))
    x = jnp.arange(width, dtype=dtype)[None, :]
    y = jnp.arange(height, dtype=dtype)[:, None]
    k = c0 * x + c1 * y + 1
    x_in = (a0 * x + a1 * y + a2) / k
    y_in = (b0 * x + b1 * y + b2) / k
    return _sample(image, y_in, x_in, interpolation, fill_mode, fill_value)


def flip(image, mode: str = "horizontal") -> Array:
    """Mirror one image: ``"horizontal"`` (left-right), ``"vertical"`` (up-down) or both.

    ``out[y, x] = in[y, W-1-x]`` (horizontal), ``in[H-1-y, x]`` (vertical); both = a 180° turn.
    Equivalent to ``jnp.flip`` on the width/height axes (``tf.image.flip_left_right``,
    ``dm_pix.flip_left_right``). Any dtype.

    Args:
      image: ``[H, W, C]``.
      mode: ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.flip(jnp.arange(3.0).reshape(1, 3, 1), "horizontal")[..., 0]
      Array([[2., 1., 0.]], dtype=float32)
    """
    image = _check_image(image, floating=False)
    mode = _choice("mode", mode, FLIP_MODES)
    axes = {"horizontal": (1,), "vertical": (0,), "horizontal_and_vertical": (0, 1)}[mode]
    return jnp.flip(image, axis=axes)


def rotate(
    image,
    angle,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "reflect",
    fill_value=0.0,
) -> Array:
    """Rotate one image by ``angle`` radians, counter-clockwise, about its centre.

    Inverse mapping about the centre ``c = ((W-1)/2, (H-1)/2)`` (Keras ``RandomRotation``):

        [x_in - cx]   [cos θ  -sin θ] [x - cx]
        [y_in - cy] = [sin θ   cos θ] [y - cy],     θ = ``angle``.

    With rows pointing down, this turns the picture counter-clockwise for ``θ > 0``; ``θ = π/2``
    with ``"nearest"`` equals ``np.rot90(image)`` on a square image.

    .. note:: ``angle`` is in radians. Keras' ``RandomRotation(factor)`` draws a *fraction of a
       full turn*; :func:`random_rotation` does the same and calls this with ``2π·fraction``.
       ``dm_pix.rotate`` takes radians too but rotates the other way, about ``(H/2, W/2)``, and
       fills with a constant; ``torchvision``'s ``rotate`` takes degrees.

    Args:
      image: ``[H, W, C]`` floating image.
      angle: scalar, radians (may be traced); positive is counter-clockwise.
      interpolation: ``"bilinear"`` (default) or ``"nearest"``.
      fill_mode: ``"reflect"`` (default), ``"wrap"``, ``"constant"`` or ``"nearest"``.
      fill_value: value outside the image when ``fill_mode="constant"``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp, numpy as np
      >>> from fnn import augment
      >>> image = jnp.arange(9.0).reshape(3, 3, 1)
      >>> out = augment.rotate(image, jnp.pi / 2, interpolation="nearest")
      >>> bool((out == np.rot90(image)).all())
      True
    """
    image = _check_image(image)
    height, width, _ = image.shape
    theta = jnp.asarray(angle, _coord_dtype(image))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    return _warp(
        image,
        cos,
        -sin,
        cx - cx * cos + cy * sin,
        sin,
        cos,
        cy - cx * sin - cy * cos,
        interpolation=interpolation,
        fill_mode=fill_mode,
        fill_value=fill_value,
    )


def translate(
    image,
    dy,
    dx,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "reflect",
    fill_value=0.0,
) -> Array:
    """Shift one image by ``dy`` pixels down and ``dx`` pixels right (Keras ``RandomTranslation``).

    ``out[y, x] = in(y - dy, x - dx)``: positive ``dx`` moves the content right, positive ``dy``
    moves it down; fractional shifts interpolate. Keras' layer draws a *fraction* of the height
    and width; :func:`random_translation` does that and calls this with pixels.

    Args:
      image: ``[H, W, C]`` floating image.
      dy: scalar vertical shift in pixels (may be traced); positive = down.
      dx: scalar horizontal shift in pixels (may be traced); positive = right.
      interpolation: ``"bilinear"`` (default) or ``"nearest"``.
      fill_mode: ``"reflect"`` (default, as Keras' layer), ``"wrap"``, ``"constant"``,
        ``"nearest"``.
      fill_value: value outside the image when ``fill_mode="constant"``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> row = jnp.arange(4.0).reshape(1, 4, 1)
      >>> augment.translate(row, 0, 1, fill_mode="constant")[..., 0]
      Array([[0., 0., 1., 2.]], dtype=float32)
    """
    image = _check_image(image)
    return _warp(
        image, 1, 0, -jnp.asarray(dx), 0, 1, -jnp.asarray(dy),
        interpolation=interpolation, fill_mode=fill_mode, fill_value=fill_value,
    )  # fmt: skip


def zoom(
    image,
    height_zoom,
    width_zoom=None,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "reflect",
    fill_value=0.0,
) -> Array:
    """Zoom one image about its centre by the sampling scales ``zy, zx`` (Keras ``RandomZoom``).

    ``x_in = cx + zx (x - cx)``, ``y_in = cy + zy (y - cy)`` with ``c = ((W-1)/2, (H-1)/2)``:
    a scale ``z > 1`` reads a larger area, so the picture **zooms out** (content shrinks by
    ``1/z``); ``z < 1`` zooms in. Keras' layer draws ``z = 1 + factor`` (positive factor = zoom
    out); :func:`random_zoom` does the same and calls this.

    Args:
      image: ``[H, W, C]`` floating image.
      height_zoom: ``zy``, scalar > 0 (may be traced).
      width_zoom: ``zx``; ``None`` uses ``zy`` (keeps the aspect ratio).
      interpolation: ``"bilinear"`` (default) or ``"nearest"``.
      fill_mode: ``"reflect"`` (default), ``"wrap"``, ``"constant"`` or ``"nearest"``.
      fill_value: value outside the image when ``fill_mode="constant"``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> row = jnp.arange(5.0).reshape(1, 5, 1)
      >>> augment.zoom(row, 1.0, 2.0, fill_mode="nearest")[..., 0]  # zoom out 2x horizontally
      Array([[0., 0., 2., 4., 4.]], dtype=float32)
    """
    image = _check_image(image)
    height, width, _ = image.shape
    dtype = _coord_dtype(image)
    zy = jnp.asarray(height_zoom, dtype)
    zx = zy if width_zoom is None else jnp.asarray(width_zoom, dtype)
    return _warp(
        image, zx, 0, (width - 1) / 2 * (1 - zx), 0, zy, (height - 1) / 2 * (1 - zy),
        interpolation=interpolation, fill_mode=fill_mode, fill_value=fill_value,
    )  # fmt: skip


def crop(image, top, left, height: int, width: int) -> Array:
    """Cut the ``height × width`` window whose top-left pixel is ``(top, left)``.

    ``out[y, x] = in[top + y, left + x]``; ``top``/``left`` may be traced (``lax.dynamic_slice``,
    so they are clamped into the image, as XLA does); ``height``/``width`` are static ints.
    Any dtype.

    Args:
      image: ``[H, W, C]``.
      top: row offset, ``0 <= top <= H - height``.
      left: column offset, ``0 <= left <= W - width``.
      height: output height (Python int, ``<= H``).
      width: output width (Python int, ``<= W``).

    Returns:
      ``[height, width, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.crop(jnp.arange(16.0).reshape(4, 4, 1), 1, 2, 2, 2)[..., 0]
      Array([[ 6.,  7.],
             [10., 11.]], dtype=float32)
    """
    image = _check_image(image, floating=False)
    height, width = _check_crop_size(image, height, width)
    return lax.dynamic_slice(
        image, (jnp.asarray(top, jnp.int32), jnp.asarray(left, jnp.int32), jnp.int32(0)),
        (height, width, image.shape[2]),
    )  # fmt: skip


def _check_crop_size(image: Array, height, width) -> tuple[int, int]:
    height = _positive_int(height, "height")
    width = _positive_int(width, "width")
    if height > image.shape[0] or width > image.shape[1]:
        raise ValueError(
            f"crop size (height={height}, width={width}) is larger than the image "
            f"(height={image.shape[0]}, width={image.shape[1]}, shape {tuple(image.shape)})."
        )
    return height, width


def smart_resize(image, height: int, width: int) -> Array:
    """Centre-crop the largest window with the target aspect ratio, then resize (bilinear).

    The inference behaviour that Keras documents for ``RandomCrop`` and implements as
    ``keras.ops.image.resize(..., crop_to_aspect_ratio=True)``: window
    ``h_c = min(H, int(W·height/width))``, ``w_c = min(W, int(H·width/height))`` at offset
    ``(int((H-h_c)/2), int((W-w_c)/2))``, then ``jax.image.resize(..., "bilinear",
    antialias=False)`` to ``[height, width]`` (half-pixel centres, like Keras on JAX).

    Args:
      image: ``[H, W, C]`` floating image.
      height: output height (Python int).
      width: output width (Python int).

    Returns:
      ``[height, width, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.smart_resize(jnp.ones((6, 8, 3)), 3, 3).shape
      (3, 3, 3)
    """
    image = _check_image(image)
    height = _positive_int(height, "height")
    width = _positive_int(width, "width")
    in_h, in_w, channels = image.shape
    crop_h = max(min(in_h, int(float(in_w * height) / width)), 1)
    crop_w = max(min(in_w, int(float(in_h * width) / height)), 1)
    top, left = int(float(in_h - crop_h) / 2), int(float(in_w - crop_w) / 2)
    window = image[top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return window
    return jax.image.resize(window, (height, width, channels), "bilinear", antialias=False)


def adjust_contrast(image, factor, *, value_range=(0, 255)) -> Array:
    """Scale each channel's deviation from its mean: ``(x - μ_c)·factor + μ_c``, then clip.

    ``μ_c`` is the mean of channel ``c`` over height and width of this image (Keras
    ``RandomContrast``, ``tf.image.adjust_contrast``); the result is clipped to ``value_range``
    as Keras does (``tf.image`` does not clip).

    Args:
      image: ``[H, W, C]`` floating image.
      factor: scalar contrast factor (may be traced); 1 = unchanged, 0 = flat mean image.
      value_range: ``(low, high)`` of the pixel values; Keras' default ``(0, 255)``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.adjust_contrast(jnp.array([[[0.25], [0.75]]]), 2.0, value_range=(0, 1))[..., 0]
      Array([[0., 1.]], dtype=float32)
    """
    image = _check_image(image)
    low, high = _value_range(value_range)
    mean = jnp.mean(jnp.mean(image, axis=0, keepdims=True), axis=1, keepdims=True)
    out = (image - mean) * jnp.asarray(factor, image.dtype) + mean
    return jnp.clip(out, low, high).astype(image.dtype)


def adjust_brightness(image, delta, *, value_range=(0, 255)) -> Array:
    """Add ``delta`` to every pixel and clip to ``value_range`` (Keras ``RandomBrightness``).

    ``out = clip(x + delta, low, high)``. ``delta`` is in pixel units; Keras' layer draws
    ``delta = r·(high - low)`` with ``r`` in ``[-factor, factor]``, as
    :func:`random_brightness` does. ``tf.image.adjust_brightness``/``dm_pix`` add without clipping.

    Args:
      image: ``[H, W, C]`` floating image.
      delta: scalar offset (may be traced).
      value_range: ``(low, high)``; Keras' default ``(0, 255)``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.adjust_brightness(jnp.array([[[0.5], [0.9]]]), 0.2, value_range=(0, 1))[..., 0]
      Array([[0.7, 1. ]], dtype=float32)
    """
    image = _check_image(image)
    low, high = _value_range(value_range)
    return jnp.clip(image + jnp.asarray(delta, image.dtype), low, high).astype(image.dtype)


# --------------------------------------------------------------------------------------------------
# Random wrappers: key first, draw the parameter the way the Keras 3 layer draws it
# --------------------------------------------------------------------------------------------------


def _uniform(key, low: float, high: float, dtype=jnp.float32) -> Array:
    return jax.random.uniform(key, (), dtype, minval=low, maxval=high)


def random_flip(key, image, mode: str = "horizontal_and_vertical") -> Array:
    """Flip with probability 1/2 (Keras ``RandomFlip``): one draw ``u ~ U[0, 1)``, flip if ``u ≤ ½``.

    .. warning:: As in Keras 3, ``"horizontal_and_vertical"`` makes ONE draw and applies both
       flips together (the image is unchanged or turned 180°); Keras 2 and ``torchvision``
       draw the two flips independently. For independent flips use
       ``compose(partial(random_flip, mode="horizontal"), partial(random_flip, mode="vertical"))``.

    Args:
      key: a PRNG key.
      image: ``[H, W, C]``, any dtype.
      mode: ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"`` (Keras' default).

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.random_flip(jax.random.key(0), jnp.ones((4, 4, 3))).shape
      (4, 4, 3)
    """
    image = _check_image(image, floating=False)
    flipped = flip(image, mode)
    return jnp.where(jax.random.uniform(key, ()) <= 0.5, flipped, image)


def random_rotation(
    key,
    image,
    factor,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "reflect",
    fill_value=0.0,
) -> Array:
    """Rotate by a random fraction of a full turn (Keras ``RandomRotation(factor)``).

    ``θ = 2π·u``, ``u ~ U[lower, upper)``: a number ``f`` gives ``[-|f|, |f|]``, a pair
    ``(lower, upper)`` is used as given (sorted). ``factor=0.2`` (the slide) rotates by up to
    ±72°. Positive is counter-clockwise; see :func:`rotate` for the geometry.

    Args:
      key: a PRNG key.
      image: ``[H, W, C]`` floating image.
      factor: number in ``[-1, 1]`` or pair of such numbers (fractions of 2π).
      interpolation, fill_mode, fill_value: as in :func:`rotate`.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.random_rotation(jax.random.key(0), jnp.ones((8, 8, 3)), 0.2).shape
      (8, 8, 3)
    """
    lower, upper = _factor_range(factor, "factor", -1.0, 1.0)
    image = _check_image(image)
    angle = _uniform(key, 2 * math.pi * lower, 2 * math.pi * upper, _coord_dtype(image))
    return rotate(
        image, angle, interpolation=interpolation, fill_mode=fill_mode, fill_value=fill_value
    )


def random_translation(
    key,
    image,
    height_factor,
    width_factor,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "reflect",
    fill_value=0.0,
) -> Array:
    """Shift by random fractions of the height and width (Keras ``RandomTranslation``).

    ``dy = H·u_y``, ``dx = W·u_x`` with ``u ~ U[lower, upper)`` per factor (a number ``f`` gives
    ``[-|f|, |f|]``; a pair is sorted); positive moves the content down / right (see
    :func:`translate`). Two independent draws.

    Args:
      key: a PRNG key.
      image: ``[H, W, C]`` floating image.
      height_factor: number in ``[-1, 1]`` or pair; fraction of the height.
      width_factor: number in ``[-1, 1]`` or pair; fraction of the width.
      interpolation, fill_mode, fill_value: as in :func:`translate`.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.random_translation(jax.random.key(0), jnp.ones((8, 8, 3)), 0.1, 0.1).shape
      (8, 8, 3)
    """
    h_low, h_high = _factor_range(height_factor, "height_factor", -1.0, 1.0)
    w_low, w_high = _factor_range(width_factor, "width_factor", -1.0, 1.0)
    image = _check_image(image)
    height, width, _ = image.shape
    ky, kx = jax.random.split(key)
    dtype = _coord_dtype(image)
    dy = _uniform(ky, h_low, h_high, dtype) * height
    dx = _uniform(kx, w_low, w_high, dtype) * width
    return translate(
        image, dy, dx, interpolation=interpolation, fill_mode=fill_mode, fill_value=fill_value
    )


def random_zoom(
    key,
    image,
    height_factor,
    width_factor=None,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "reflect",
    fill_value=0.0,
) -> Array:
    """Zoom by random scales ``z = 1 + u`` (Keras ``RandomZoom``); positive factor = zoom out.

    ``zy = 1 + u_y``, ``u_y ~ U[lower, upper)`` from ``height_factor`` (a number ``f`` gives
    ``[-|f|, |f|]``, a pair is sorted); ``zx`` likewise from ``width_factor``, or ``zx = zy``
    (same draw, aspect ratio kept) when ``width_factor`` is ``None``. See :func:`zoom`.

    Args:
      key: a PRNG key.
      image: ``[H, W, C]`` floating image.
      height_factor: number in ``(-1, 1]`` or pair of such numbers.
      width_factor: like ``height_factor``, or ``None``.
      interpolation, fill_mode, fill_value: as in :func:`zoom`.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.random_zoom(jax.random.key(0), jnp.ones((8, 8, 3)), 0.2).shape
      (8, 8, 3)
    """
    h_low, h_high = _factor_range(height_factor, "height_factor", -1.0, 1.0, open_low=True)
    if width_factor is not None:
        w_low, w_high = _factor_range(width_factor, "width_factor", -1.0, 1.0, open_low=True)
    image = _check_image(image)
    ky, kx = jax.random.split(key)
    dtype = _coord_dtype(image)
    zy = _uniform(ky, 1.0 + h_low, 1.0 + h_high, dtype)
    zx = None if width_factor is None else _uniform(kx, 1.0 + w_low, 1.0 + w_high, dtype)
    return zoom(
        image, zy, zx, interpolation=interpolation, fill_mode=fill_mode, fill_value=fill_value
    )


def random_crop(key, image, height: int, width: int) -> Array:
    """Cut a random ``height × width`` window, offsets uniform over every valid position.

    ``top ~ U{0, …, H - height}``, ``left ~ U{0, …, W - width}`` (Keras draws
    ``int(U[0, H - height + 1))``, the same distribution).

    .. note:: Differences from Keras 3's ``RandomCrop``: fnn draws an offset per image (Keras one
       per batch); when the image equals the target along one axis Keras centre-crops the other
       axis without randomness, fnn still draws it; and a crop larger than the image is an error
       here (Keras resizes up).

    Args:
      key: a PRNG key.
      image: ``[H, W, C]``, any dtype.
      height: crop height (Python int, ``<= H``).
      width: crop width (Python int, ``<= W``).

    Returns:
      ``[height, width, C]``, same dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.random_crop(jax.random.key(0), jnp.ones((32, 32, 3)), 28, 28).shape
      (28, 28, 3)
    """
    image = _check_image(image, floating=False)
    height, width = _check_crop_size(image, height, width)
    ky, kx = jax.random.split(key)
    top = jax.random.randint(ky, (), 0, image.shape[0] - height + 1)
    left = jax.random.randint(kx, (), 0, image.shape[1] - width + 1)
    return crop(image, top, left, height, width)


def random_contrast(key, image, factor, *, value_range=(0, 255)) -> Array:
    """Random contrast ``(x - μ_c)·a + μ_c``, ``a ~ U[1 - lower, 1 + upper)`` (Keras ``RandomContrast``).

    .. warning:: Keras 3 parses a single number ``f`` as ``(lower, upper) = (0, f)``, so
       ``RandomContrast(0.2)`` draws ``a`` in ``[1, 1.2)`` and never *lowers* the contrast (its
       docstring says ``[1 - f, 1 + f]``). fnn reproduces the code, not the docstring: pass
       ``factor=(f, f)`` for ``[1 - f, 1 + f)``.

    Args:
      key: a PRNG key.
      image: ``[H, W, C]`` floating image.
      factor: number in ``[0, 1]`` or pair ``(lower, upper)`` of such numbers.
      value_range: ``(low, high)`` to clip to; Keras' default ``(0, 255)``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> augment.random_contrast(jax.random.key(0), jnp.ones((4, 4, 3)), 0.5).shape
      (4, 4, 3)
    """
    lower, upper = _factor_range(factor, "factor", 0.0, 1.0)
    image = _check_image(image)
    _value_range(value_range)
    contrast = _uniform(key, 1.0 - lower, 1.0 + upper, _coord_dtype(image))
    return adjust_contrast(image, contrast, value_range=value_range)


def random_brightness(key, image, factor, *, value_range=(0, 255)) -> Array:
    """Random offset ``δ = r·(high - low)``, ``r ~ U[lower, upper)``, then clip (Keras ``RandomBrightness``).

    A number ``f`` gives ``r`` in ``[-|f|, |f|]``; a pair is sorted. ``r = -1`` makes the image
    ``low`` (black), ``r = 1`` makes it ``high`` (white).

    Args:
      key: a PRNG key.
      image: ``[H, W, C]`` floating image.
      factor: number in ``[-1, 1]`` or pair of such numbers.
      value_range: ``(low, high)``; Keras' default ``(0, 255)``.

    Returns:
      ``[H, W, C]``, same dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> out = augment.random_brightness(jax.random.key(0), jnp.full((2, 2, 3), 0.5), 0.2,
      ...                                 value_range=(0, 1))
      >>> bool((jnp.abs(out - 0.5) <= 0.2).all())
      True
    """
    lower, upper = _factor_range(factor, "factor", -1.0, 1.0)
    image = _check_image(image)
    low, high = _value_range(value_range)
    delta = _uniform(key, lower, upper, _coord_dtype(image)) * (high - low)
    return adjust_brightness(image, delta, value_range=value_range)


# --------------------------------------------------------------------------------------------------
# Composition and batching
# --------------------------------------------------------------------------------------------------


def compose(*steps: Augmentation | Sequence[Augmentation]) -> Augmentation:
    """Chain random augmentations ``(key, image) -> image`` into one, each with its own subkey.

    ``compose(f1, ..., fn)(key, x) = fn(k_n, ... f1(k_1, x))`` with ``k_1..k_n = split(key, n)``
    (like ``keras.Sequential`` of preprocessing layers, or ``torchvision``'s ``Compose``). Bind
    options with ``functools.partial``; wrap a deterministic op as ``lambda key, x: op(x)``.

    Args:
      *steps: callables ``(key, image) -> image``, or one list/tuple of them.

    Returns:
      A callable ``(key, image [H, W, C]) -> image``.

    Examples:
      >>> import functools, jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> aug = augment.compose(
      ...     functools.partial(augment.random_flip, mode="horizontal"),
      ...     functools.partial(augment.random_rotation, factor=0.2),
      ... )
      >>> aug(jax.random.key(0), jnp.ones((8, 8, 3))).shape
      (8, 8, 3)
    """
    if len(steps) == 1 and isinstance(steps[0], (list, tuple)):
        steps = tuple(steps[0])
    if not steps:
        raise ValueError("`compose` needs at least one augmentation step; got none.")
    for i, step in enumerate(steps):
        if not callable(step):
            raise TypeError(
                f"`compose` step {i} must be a callable (key, image) -> image; got "
                f"{type(step).__name__}."
            )

    def composed(key, image):
        keys = jax.random.split(key, len(steps))
        for k, step in zip(keys, steps):
            image = step(k, image)
        return image

    return composed


def apply_batch(key, images, fn: Augmentation) -> Array:
    """Apply a random single-image augmentation to a batch, one independent key per image.

    ``out[i] = fn(k_i, images[i])`` with ``k_0..k_{N-1} = split(key, N)``, as ``jax.vmap``. Each
    image gets its own draw (a single batch-wide draw would lower the variety; see
    cleverhans#695). Inside a jitted train step, derive ``key`` as ``fold_in(seed_key, step)``.

    Args:
      key: a PRNG key.
      images: ``[N, H, W, C]``.
      fn: a callable ``(key, image [H, W, C]) -> image``.

    Returns:
      ``fn``'s outputs stacked, ``[N, H', W', C']``.

    Examples:
      >>> import functools, jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> rotate = functools.partial(augment.random_rotation, factor=0.2)
      >>> augment.apply_batch(jax.random.key(0), jnp.ones((4, 8, 8, 3)), rotate).shape
      (4, 8, 8, 3)
    """
    images = _check_batch(images)
    if not callable(fn):
        raise TypeError(f"`fn` must be a callable (key, image) -> image; got {type(fn).__name__}.")
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(fn)(keys, images)


# --------------------------------------------------------------------------------------------------
# NNX layers
# --------------------------------------------------------------------------------------------------


class _RandomImageLayer(nnx.Module):
    """Shared machinery: rank/dtype checks, the RNG stream and the train/eval switch.

    Like ``nnx.Dropout``: ``deterministic=True`` (set by ``model.eval()``) makes the layer the
    identity; ``model.train()`` sets it back to ``False``. Keys come from the ``rngs`` stream
    given at construction (collection ``rng_collection``, default ``"augment"``, falling back to
    ``"default"``) or from ``rngs=`` at call time (a key, ``RngStream`` or ``Rngs``).
    """

    _floating = True

    def __init__(
        self,
        *,
        deterministic: bool = False,
        rng_collection: str = "augment",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ):
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs[rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise TypeError(f"`rngs` must be nnx.Rngs, nnx.RngStream or None; got {type(rngs)}.")

    def _augment_one(self, key: Array, image: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inference(self, images: Array) -> Array:
        return images

    def _key(self, rngs) -> Array:
        rngs = self.rngs if rngs is None else rngs
        if rngs is None:
            raise ValueError(
                f"{type(self).__name__} is in training mode (deterministic=False) but has no "
                "random stream: pass `rngs=nnx.Rngs(seed)` to the constructor or `rngs=` (a key) "
                "to the call, or call `model.eval()`."
            )
        if isinstance(rngs, nnx.Rngs):
            return rngs[self.rng_collection]()
        if isinstance(rngs, nnx.RngStream):
            return rngs()
        return rngs

    def __call__(self, images, *, deterministic: bool | None = None, rngs: Any = None) -> Array:
        """Augment ``images`` (``[N, H, W, C]`` or one ``[H, W, C]``) in training mode.

        Args:
          images: ``[N, H, W, C]`` batch (each image its own draw) or one ``[H, W, C]`` image.
          deterministic: overrides the attribute for this call; ``True`` = evaluation.
          rngs: optional key, ``nnx.RngStream`` or ``nnx.Rngs`` used instead of the stored one.

        Returns:
          The augmented batch, same shape and dtype (``RandomCrop``: ``[N, height, width, C]``).
        """
        images = jnp.asarray(images)
        name = type(self).__name__
        if images.ndim not in (3, 4):
            raise ValueError(
                f"{name} expects images of shape [batch, height, width, channels] (NHWC) or one "
                f"[height, width, channels] image; got shape {tuple(images.shape)} "
                f"(rank {images.ndim})."
            )
        if self._floating and not jnp.issubdtype(images.dtype, jnp.floating):
            raise TypeError(
                f"{name} expects floating images; got dtype {images.dtype}. Convert first, e.g. "
                "`images.astype(jnp.float32)`."
            )
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic:
            return self._inference(images)
        key = self._key(rngs)
        if images.ndim == 3:
            return self._augment_one(key, images)
        return apply_batch(key, images, self._augment_one)

    def set_view(self, deterministic: bool | None = None):
        """Used by ``nnx.view``: ``deterministic=True`` turns augmentation off."""
        if deterministic is not None:
            self.deterministic = deterministic


class RandomFlip(_RandomImageLayer):
    """Keras ``RandomFlip``: flip each training image with probability ½ (see :func:`random_flip`).

    The slide's ``RandomFlip("horizontal_and_vertical")``. In Keras 3 that mode flips both axes
    together (one draw), which fnn reproduces; stack ``RandomFlip("horizontal")`` and
    ``RandomFlip("vertical")`` for independent flips. Identity after ``model.eval()``.

    Args:
      mode: ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"`` (default).
      deterministic: ``True`` = evaluation mode (identity); toggled by ``train()``/``eval()``.
      rng_collection: the ``nnx.Rngs`` stream to draw from (default ``"augment"``).
      rngs: ``nnx.Rngs`` (or ``RngStream``); may be omitted if a key is passed at call time.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn import augment
      >>> layer = augment.RandomFlip("horizontal", rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 4, 4, 3))).shape
      (2, 4, 4, 3)
    """

    _floating = False

    def __init__(self, mode: str = "horizontal_and_vertical", **kwargs):
        super().__init__(**kwargs)
        self.mode = _choice("mode", mode, FLIP_MODES)

    def _augment_one(self, key, image):
        return random_flip(key, image, self.mode)


class _GeometricLayer(_RandomImageLayer):
    def __init__(
        self,
        *,
        interpolation: str = "bilinear",
        fill_mode: str = "reflect",
        fill_value: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.interpolation = _choice("interpolation", interpolation, INTERPOLATIONS)
        self.fill_mode = _choice("fill_mode", fill_mode, FILL_MODES)
        self.fill_value = float(fill_value)

    def _sampling(self) -> dict:
        return dict(
            interpolation=self.interpolation, fill_mode=self.fill_mode, fill_value=self.fill_value
        )


class RandomRotation(_GeometricLayer):
    """Keras ``RandomRotation``: rotate each training image by ``2π·U[lower, upper)``.

    The slide's ``RandomRotation(0.2)``: up to ±0.2 of a full turn (±72°), counter-clockwise for
    positive angles, reflect fill, bilinear (see :func:`random_rotation`, :func:`rotate`). Unlike
    Keras' layer (``supports_jit=False``, which makes Keras on JAX leave the train step
    uncompiled), this runs inside the jitted step.

    Args:
      factor: number in ``[-1, 1]`` or pair (fractions of 2π).
      interpolation: ``"bilinear"`` (default) or ``"nearest"``.
      fill_mode: ``"reflect"`` (default), ``"wrap"``, ``"constant"``, ``"nearest"``.
      fill_value: value outside the image for ``"constant"``.
      deterministic, rng_collection, rngs: as in :class:`RandomFlip`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn import augment
      >>> layer = augment.RandomRotation(0.2, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 8, 8, 3))).shape
      (2, 8, 8, 3)
    """

    def __init__(self, factor, **kwargs):
        self.factor = _factor_range(factor, "factor", -1.0, 1.0)
        super().__init__(**kwargs)

    def _augment_one(self, key, image):
        return random_rotation(key, image, self.factor, **self._sampling())


class RandomTranslation(_GeometricLayer):
    """Keras ``RandomTranslation``: shift by ``(H·u_y, W·u_x)`` pixels (positive = down/right).

    Args:
      height_factor: number in ``[-1, 1]`` or pair; fraction of the height.
      width_factor: number in ``[-1, 1]`` or pair; fraction of the width.
      interpolation, fill_mode, fill_value: as in :class:`RandomRotation`.
      deterministic, rng_collection, rngs: as in :class:`RandomFlip`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn import augment
      >>> augment.RandomTranslation(0.1, 0.1, rngs=nnx.Rngs(0))(jnp.ones((2, 8, 8, 3))).shape
      (2, 8, 8, 3)
    """

    def __init__(self, height_factor, width_factor, **kwargs):
        self.height_factor = _factor_range(height_factor, "height_factor", -1.0, 1.0)
        self.width_factor = _factor_range(width_factor, "width_factor", -1.0, 1.0)
        super().__init__(**kwargs)

    def _augment_one(self, key, image):
        return random_translation(
            key, image, self.height_factor, self.width_factor, **self._sampling()
        )


class RandomZoom(_GeometricLayer):
    """Keras ``RandomZoom``: sampling scale ``1 + U[lower, upper)``; positive factor = zoom out.

    Args:
      height_factor: number in ``(-1, 1]`` or pair.
      width_factor: like ``height_factor``; ``None`` (default) reuses the height draw.
      interpolation, fill_mode, fill_value: as in :class:`RandomRotation`.
      deterministic, rng_collection, rngs: as in :class:`RandomFlip`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn import augment
      >>> augment.RandomZoom(0.2, rngs=nnx.Rngs(0))(jnp.ones((2, 8, 8, 3))).shape
      (2, 8, 8, 3)
    """

    def __init__(self, height_factor, width_factor=None, **kwargs):
        self.height_factor = _factor_range(height_factor, "height_factor", -1.0, 1.0, open_low=True)
        self.width_factor = (
            None
            if width_factor is None
            else _factor_range(width_factor, "width_factor", -1.0, 1.0, open_low=True)
        )
        super().__init__(**kwargs)

    def _augment_one(self, key, image):
        return random_zoom(key, image, self.height_factor, self.width_factor, **self._sampling())


class RandomCrop(_RandomImageLayer):
    """Keras ``RandomCrop``: a random ``height × width`` window per training image.

    In evaluation mode (``model.eval()``) the output keeps the same size: by default the
    largest centred window with the target aspect ratio, resized (:func:`smart_resize`), which is
    what Keras documents (Keras 3.15's code actually returns the uncropped input there, so the
    output shape changes between training and inference); ``inference="center"`` cuts the
    centred ``height × width`` window instead (same scale as the training crops, as
    ``torchvision``'s ``CenterCrop``). See :func:`random_crop` for the other differences.

    Args:
      height: crop height (Python int).
      width: crop width (Python int).
      inference: ``"resize"`` (default) or ``"center"``.
      deterministic, rng_collection, rngs: as in :class:`RandomFlip`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn import augment
      >>> layer = augment.RandomCrop(6, 6, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 8, 8, 3))).shape
      (2, 6, 6, 3)
      >>> layer.eval()
      >>> layer(jnp.ones((2, 8, 8, 3))).shape
      (2, 6, 6, 3)
    """

    _floating = False

    def __init__(self, height: int, width: int, *, inference: str = "resize", **kwargs):
        super().__init__(**kwargs)
        self.height = _positive_int(height, "height")
        self.width = _positive_int(width, "width")
        self.inference = _choice("inference", inference, ("resize", "center"))

    def _augment_one(self, key, image):
        return random_crop(key, image, self.height, self.width)

    def _inference(self, images):
        single = images.ndim == 3
        batch = images[None] if single else images
        _check_crop_size(batch[0], self.height, self.width)
        if self.inference == "center":
            top = (batch.shape[1] - self.height) // 2
            left = (batch.shape[2] - self.width) // 2
            out = batch[:, top : top + self.height, left : left + self.width]
        else:
            if not jnp.issubdtype(batch.dtype, jnp.floating):
                raise TypeError(
                    "RandomCrop(inference='resize') resizes, so it expects floating images; got "
                    f"dtype {batch.dtype}. Convert first or use inference='center'."
                )
            out = jax.vmap(lambda im: smart_resize(im, self.height, self.width))(batch)
        return out[0] if single else out


class _ColorLayer(_RandomImageLayer):
    def __init__(self, factor, value_range, bounds: tuple[float, float], **kwargs):
        self.factor = _factor_range(factor, "factor", *bounds)
        self.value_range = _value_range(value_range)
        super().__init__(**kwargs)


class RandomContrast(_ColorLayer):
    """Keras ``RandomContrast``: ``(x - μ_c)·a + μ_c``, ``a ~ U[1 - lower, 1 + upper)``, clipped.

    One ``a`` per image (shared by its channels), ``μ_c`` per image and channel. Keras 3 reads a
    number ``f`` as ``(0, f)`` (contrast only increases); pass ``(f, f)`` for ``[1 - f, 1 + f)``
    (see :func:`random_contrast`).

    Args:
      factor: number in ``[0, 1]`` or pair of such numbers.
      value_range: ``(low, high)``, default ``(0, 255)`` as Keras.
      deterministic, rng_collection, rngs: as in :class:`RandomFlip`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn import augment
      >>> layer = augment.RandomContrast((0.2, 0.2), value_range=(0, 1), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 4, 4, 3))).shape
      (2, 4, 4, 3)
    """

    def __init__(self, factor, value_range=(0, 255), **kwargs):
        super().__init__(factor, value_range, (0.0, 1.0), **kwargs)

    def _augment_one(self, key, image):
        return random_contrast(key, image, self.factor, value_range=self.value_range)


class RandomBrightness(_ColorLayer):
    """Keras ``RandomBrightness``: add ``r·(high - low)``, ``r ~ U[lower, upper)``, then clip.

    Args:
      factor: number in ``[-1, 1]`` (gives ``[-|f|, |f|]``) or pair of such numbers.
      value_range: ``(low, high)``, default ``(0, 255)`` as Keras.
      deterministic, rng_collection, rngs: as in :class:`RandomFlip`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn import augment
      >>> layer = augment.RandomBrightness(0.2, value_range=(0, 1), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 4, 4, 3))).shape
      (2, 4, 4, 3)
    """

    def __init__(self, factor, value_range=(0, 255), **kwargs):
        super().__init__(factor, value_range, (-1.0, 1.0), **kwargs)

    def _augment_one(self, key, image):
        return random_brightness(key, image, self.factor, value_range=self.value_range)


# --------------------------------------------------------------------------------------------------
# Target-aware geometry: the same transform for the image, its masks and its boxes
# --------------------------------------------------------------------------------------------------
#
# ``targets`` is a dict. Keys containing ``"mask"`` hold masks ``[H, W]`` or ``[H, W, C]`` (bool
# or integer class maps; moved with nearest-neighbour sampling, 0 outside the image); ``"box"``
# holds ``xyxy`` pixel boxes ``[..., 4]`` (`fnn.boxes`: pixel ``(i, j)`` covers ``[j, j+1) ×
# [i, i+1)``); a ``"label"`` of shape ``box.shape[:-1]`` becomes ``-1`` for a box pushed wholly out
# of the image; anything else passes through. Boxes: the box of the four transformed corners,
# clipped to the image, as Keras 3's preprocessing layers transform ``bounding_boxes``. Under a
# rotation that is not a multiple of 90° this box is larger than the box of the rotated object
# (a rotated circle's corners stick out), exactly as in Keras and torchvision.transforms.v2.
# The image's ``fill_mode`` defaults to ``"constant"`` here (Keras' layers default to
# ``"reflect"``): a reflected object would appear in the image with no mask and no box.


def _targets(targets) -> dict:
    if not isinstance(targets, dict):
        raise TypeError(
            f"`targets` must be a dict such as {{'box': [M, 4], 'mask': [H, W]}}; got "
            f"{type(targets).__name__}."
        )
    return dict(targets)


def _check_target_shapes(image: Array, targets: dict) -> None:
    height, width = image.shape[:2]
    for name, value in targets.items():
        shape = jnp.shape(value)
        if "mask" in name and tuple(shape[:2]) != (height, width):
            raise ValueError(
                f"targets[{name!r}] must be a mask [H, W] or [H, W, C] matching the image's "
                f"(H, W) = ({height}, {width}); got shape {tuple(shape)}."
            )
        if name == "box" and (len(shape) < 1 or shape[-1] != 4):
            raise ValueError(
                f"targets['box'] must be xyxy boxes [..., 4]; got shape {tuple(shape)}."
            )


def _warp_mask(mask, params, fill_value=0) -> Array:
    mask = jnp.asarray(mask)
    squeeze = mask.ndim == 2
    values = (mask[..., None] if squeeze else mask).astype(jnp.float32)
    out = _warp(
        values, *params, interpolation="nearest", fill_mode="constant", fill_value=fill_value
    )
    out = out[..., 0] if squeeze else out
    return out > 0.5 if mask.dtype == jnp.bool_ else jnp.round(out).astype(mask.dtype)


def _transform_boxes(boxes, params, height: int, width: int) -> Array:
    """Forward-map ``xyxy`` boxes through the inverse sampling map ``params``; box of corners."""
    boxes = jnp.asarray(boxes, jnp.float32)
    a0, a1, a2, b0, b1, b2 = (jnp.asarray(p, jnp.float32) for p in params)
    det = a0 * b1 - a1 * b0
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    xs = jnp.stack([x1, x2, x2, x1], -1) - 0.5  # continuous -> pixel-centre coordinates
    ys = jnp.stack([y1, y1, y2, y2], -1) - 0.5
    u, v = xs - a2, ys - b2  # solve [a0 a1; b0 b1] [x_out, y_out] = [u, v]
    x_out = (b1 * u - a1 * v) / det + 0.5
    y_out = (a0 * v - b0 * u) / det + 0.5
    out = jnp.stack([x_out.min(-1), y_out.min(-1), x_out.max(-1), y_out.max(-1)], -1)
    hi = jnp.asarray([width, height, width, height], jnp.float32)
    return jnp.clip(out, 0.0, hi)


def _apply_to_targets(targets: dict, *, mask_fn, box_fn) -> dict:
    out = {}
    for name, value in targets.items():
        if "mask" in name:
            out[name] = mask_fn(value)
        elif name == "box":
            out[name] = box_fn(value)
        else:
            out[name] = value
    if "box" in out and "label" in out and jnp.shape(out["label"]) == jnp.shape(out["box"])[:-1]:
        b = out["box"]
        gone = (b[..., 2] <= b[..., 0]) | (b[..., 3] <= b[..., 1])
        out["label"] = jnp.where(gone, -1, out["label"])
    return out


def affine_with_targets(
    image,
    targets,
    transform,
    *,
    interpolation: str = "bilinear",
    fill_mode: str = "constant",
    fill_value=0.0,
) -> tuple[Array, dict]:
    """Apply one affine map to an image and to its targets (masks, boxes, labels).

    ``transform = [a0, a1, a2, b0, b1, b2]`` is the inverse sampling map of
    :func:`affine_transform` (output pixel ``(x, y)`` reads input ``(a0 x + a1 y + a2, b0 x +
    b1 y + b2)``); it must be invertible. The image is sampled as :func:`affine_transform` does;
    masks with ``"nearest"`` and 0 outside; each box becomes the box of its four corners mapped
    forward, clipped to the image (the section comment above `affine_with_targets` in the source
    and the module docstring give the target dict's layout).

    Args:
      image: ``[H, W, C]`` floating image.
      targets: dict with optional ``"box"`` ``[..., 4]``, ``"label"``, ``"*mask*"`` ``[H, W(, C)]``.
      transform: ``[6]`` (may be traced).
      interpolation, fill_mode, fill_value: for the image.

    Returns:
      ``(image, targets)`` transformed.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> shift_right = jnp.array([1.0, 0, -2, 0, 1, 0])  # x_in = x - 2
      >>> _, t = augment.affine_with_targets(jnp.zeros((8, 8, 1)), {"box": jnp.array([[1.0, 1, 3, 3]])},
      ...                                    shift_right)
      >>> t["box"].tolist()
      [[3.0, 1.0, 5.0, 3.0]]
    """
    image = _check_image(image)
    targets = _targets(targets)
    _check_target_shapes(image, targets)
    transform = jnp.asarray(transform)
    if transform.shape != (6,):
        raise ValueError(
            f"`transform` must have shape [6] ([a0, a1, a2, b0, b1, b2]); got shape "
            f"{tuple(transform.shape)}."
        )
    params = tuple(transform[i] for i in range(6))
    height, width, _ = image.shape
    out = _warp(
        image, *params, interpolation=interpolation, fill_mode=fill_mode, fill_value=fill_value
    )
    return out, _apply_to_targets(
        targets,
        mask_fn=lambda m: _warp_mask(m, params),
        box_fn=lambda b: _transform_boxes(b, params, height, width),
    )


def _rotation_params(height: int, width: int, angle) -> tuple:
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    return cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos


def _zoom_params(height: int, width: int, zy, zx) -> tuple:
    return zx, 0.0, (width - 1) / 2 * (1 - zx), 0.0, zy, (height - 1) / 2 * (1 - zy)


def flip_with_targets(image, targets, mode: str = "horizontal") -> tuple[Array, dict]:
    """:func:`flip` for an image and its targets: masks flip with it, boxes mirror
    (``x1' = W - x2``, ``x2' = W - x1`` horizontally; likewise in y).

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> _, t = augment.flip_with_targets(jnp.zeros((4, 10, 1)), {"box": jnp.array([1.0, 0, 3, 2])})
      >>> t["box"].tolist()
      [7.0, 0.0, 9.0, 2.0]
    """
    image = _check_image(image, floating=False)
    mode = _choice("mode", mode, FLIP_MODES)
    targets = _targets(targets)
    _check_target_shapes(image, targets)
    height, width = image.shape[:2]
    horizontal, vertical = mode != "vertical", mode != "horizontal"
    axes = (0,) * vertical + (1,) * horizontal

    def box_fn(b):
        x1, y1, x2, y2 = (jnp.asarray(b, jnp.float32)[..., i] for i in range(4))
        if horizontal:
            x1, x2 = width - x2, width - x1
        if vertical:
            y1, y2 = height - y2, height - y1
        return jnp.stack([x1, y1, x2, y2], -1)

    return jnp.flip(image, axis=axes), _apply_to_targets(
        targets, mask_fn=lambda m: jnp.flip(jnp.asarray(m), axis=axes), box_fn=box_fn
    )


def rotate_with_targets(image, targets, angle, **sampling) -> tuple[Array, dict]:
    """:func:`rotate` (radians, counter-clockwise about the centre) for an image and its targets.

    ``sampling``: ``interpolation``, ``fill_mode`` (default ``"constant"``), ``fill_value``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> box = jnp.array([0.0, 0.0, 2.0, 1.0])
      >>> _, t = augment.rotate_with_targets(jnp.zeros((4, 4, 1)), {"box": box}, jnp.pi / 2)
      >>> t["box"].round(4).tolist()  # the top-left corner goes to the bottom-left
      [0.0, 2.0, 1.0, 4.0]
    """
    image = _check_image(image)
    params = _rotation_params(*image.shape[:2], jnp.asarray(angle, jnp.float32))
    return affine_with_targets(image, targets, jnp.stack(jnp.broadcast_arrays(*params)), **sampling)


def translate_with_targets(image, targets, dy, dx, **sampling) -> tuple[Array, dict]:
    """:func:`translate` (``dy`` down, ``dx`` right, pixels) for an image and its targets.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> _, t = augment.translate_with_targets(jnp.zeros((8, 8, 1)),
      ...                                       {"box": jnp.array([4.0, 4, 8, 8])}, 1, 2)
      >>> t["box"].tolist()  # clipped at the right border
      [6.0, 5.0, 8.0, 8.0]
    """
    image = _check_image(image)
    params = (1.0, 0.0, -jnp.asarray(dx, jnp.float32), 0.0, 1.0, -jnp.asarray(dy, jnp.float32))
    return affine_with_targets(image, targets, jnp.stack(jnp.broadcast_arrays(*params)), **sampling)


def zoom_with_targets(
    image, targets, height_zoom, width_zoom=None, **sampling
) -> tuple[Array, dict]:
    """:func:`zoom` (sampling scale ``z > 1`` zooms out) for an image and its targets.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn import augment
      >>> _, t = augment.zoom_with_targets(jnp.zeros((8, 8, 1)), {"box": jnp.array([2.0, 2, 6, 6])}, 2.0)
      >>> t["box"].tolist()  # zoomed out 2x about the centre
      [3.0, 3.0, 5.0, 5.0]
    """
    image = _check_image(image)
    zy = jnp.asarray(height_zoom, jnp.float32)
    zx = zy if width_zoom is None else jnp.asarray(width_zoom, jnp.float32)
    params = _zoom_params(*image.shape[:2], zy, zx)
    return affine_with_targets(image, targets, jnp.stack(jnp.broadcast_arrays(*params)), **sampling)


def random_flip_with_targets(
    key, image, targets, mode: str = "horizontal_and_vertical"
) -> tuple[Array, dict]:
    """:func:`random_flip` (one draw, Keras 3's rule) for an image and its targets.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> img, t = augment.random_flip_with_targets(jax.random.key(0), jnp.ones((4, 4, 3)),
      ...                                           {"box": jnp.array([0.0, 0, 1, 1])})
      >>> img.shape, t["box"].shape
      ((4, 4, 3), (4,))
    """
    flipped = flip_with_targets(image, targets, mode)
    kept = (jnp.asarray(image), {k: jnp.asarray(v) for k, v in _targets(targets).items()})
    do = jax.random.uniform(key, ()) <= 0.5
    return jax.tree.map(lambda a, b: jnp.where(do, a, b), flipped, kept)


def random_rotation_with_targets(key, image, targets, factor, **sampling) -> tuple[Array, dict]:
    """:func:`random_rotation` (a fraction of 2π, Keras' draw) for an image and its targets.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> _, t = augment.random_rotation_with_targets(jax.random.key(0), jnp.ones((8, 8, 1)),
      ...                                             {"mask": jnp.ones((8, 8), bool)}, 0.1)
      >>> t["mask"].shape
      (8, 8)
    """
    lower, upper = _factor_range(factor, "factor", -1.0, 1.0)
    angle = _uniform(key, 2 * math.pi * lower, 2 * math.pi * upper)
    return rotate_with_targets(image, targets, angle, **sampling)


def random_translation_with_targets(
    key, image, targets, height_factor, width_factor, **sampling
) -> tuple[Array, dict]:
    """:func:`random_translation` (fractions of H and W) for an image and its targets.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> _, t = augment.random_translation_with_targets(
      ...     jax.random.key(0), jnp.ones((8, 8, 1)), {"box": jnp.array([0.0, 0, 4, 4])}, 0.1, 0.1)
      >>> t["box"].shape
      (4,)
    """
    h_low, h_high = _factor_range(height_factor, "height_factor", -1.0, 1.0)
    w_low, w_high = _factor_range(width_factor, "width_factor", -1.0, 1.0)
    image = _check_image(image)
    height, width, _ = image.shape
    ky, kx = jax.random.split(key)
    dy = _uniform(ky, h_low, h_high) * height
    dx = _uniform(kx, w_low, w_high) * width
    return translate_with_targets(image, targets, dy, dx, **sampling)


def random_zoom_with_targets(
    key, image, targets, height_factor, width_factor=None, **sampling
) -> tuple[Array, dict]:
    """:func:`random_zoom` (``z = 1 + u``, Keras' draw) for an image and its targets.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn import augment
      >>> _, t = augment.random_zoom_with_targets(jax.random.key(0), jnp.ones((8, 8, 1)),
      ...                                         {"box": jnp.array([0.0, 0, 4, 4])}, 0.2)
      >>> t["box"].shape
      (4,)
    """
    h_low, h_high = _factor_range(height_factor, "height_factor", -1.0, 1.0, open_low=True)
    if width_factor is not None:
        w_low, w_high = _factor_range(width_factor, "width_factor", -1.0, 1.0, open_low=True)
    ky, kx = jax.random.split(key)
    zy = _uniform(ky, 1.0 + h_low, 1.0 + h_high)
    zx = None if width_factor is None else _uniform(kx, 1.0 + w_low, 1.0 + w_high)
    return zoom_with_targets(image, targets, zy, zx, **sampling)
