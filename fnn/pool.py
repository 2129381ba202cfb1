"""Pooling whose backward pass is fast on XLA:CPU: non-overlapping windows as reshapes.

Data contract: channels last, as Flax and Keras use it: ``[N, *spatial, C]`` (``[N, H, W, C]``
for images); ``window_shape`` and ``strides`` name the spatial axes only. Same signatures as
`flax.nnx.max_pool` / `flax.nnx.avg_pool`, which these functions replace.

Why this module exists: Flax's pools are `jax.lax.reduce_window`; the VJP of a max
``reduce_window`` is XLA's ``select_and_scatter``, which XLA:CPU runs as a slow generic loop. For
the reference CNN of ``DESIGN.md`` (batch 128) the two 2×2 max pools cost 53 + 23 ms (forward and
backward) against 6 + 2 ms here (measured, ``BENCHMARKS.md``): a fifth of the train step. When
the windows tile the input (``strides == window_shape``, ``"VALID"`` padding: the lecture's and
Keras' ``MaxPooling2D()`` default), the input is reshaped to ``[N, H/kh, kh, W/kw, kw, C]`` and
reduced over the window axes; forward and backward are then plain element-wise loops that XLA
fuses. Other settings (overlapping windows, ``"SAME"`` padding) fall back to Flax's pools. The
reshapes are taken on CPU only (`jax.lax.platform_dependent`): on GPU and TPU the pools are
Flax's, which XLA lowers to its native ``reduce_window`` and ``select_and_scatter``
(``spec_tests/test_lowering.py`` checks the exported programs).
`avg_pool` takes the same path for symmetry; Flax's average pool has no slow backward (measured
on par), so there it changes nothing but the rounding of the mean (≤ 1 ulp).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["max_pool", "avg_pool"]


def _tiled(x, window: tuple[int, ...], strides, padding) -> bool:
    """True when the windows tile the input exactly: the reshape path applies."""
    if strides is None or tuple(strides) != window:
        return False
    if isinstance(padding, str):
        return padding.upper() == "VALID"
    return all(tuple(p) == (0, 0) for p in padding)


def _pool(name: str, inputs, window_shape, strides, padding, tiled, fallback):
    """Check the arguments, then ``tiled(x, window)`` when the windows tile the input, else
    Flax's ``fallback(x, window, strides, padding)``."""
    x = jnp.asarray(inputs)
    window = tuple(int(k) for k in window_shape)
    if any(k < 1 for k in window):
        raise ValueError(f"{name}: window_shape must be positive, got {tuple(window_shape)}")
    if x.ndim != len(window) + 2:
        raise ValueError(
            f"{name}: inputs must be [N, *spatial, C] with {len(window)} spatial axes for "
            f"window_shape={window}, got shape {x.shape}"
        )
    if not _tiled(x, window, strides, padding):
        return fallback(x, window, strides, padding)
    # The reshapes pay on XLA:CPU only; GPUs and TPUs have native pooling (``reduce_window``,
    # ``select_and_scatter``), and a TPU would pad the short window axes of the reshaped array.
    return jax.lax.platform_dependent(
        x,
        cpu=lambda a: tiled(a, window),
        default=lambda a: fallback(a, window, strides, padding),
    )


def _tiles(x, window: tuple[int, ...]):
    """``[N, S1, ..., C]`` → ``[N, S1/k1, k1, S2/k2, k2, ..., C]`` (the "VALID" remainder cut)."""
    keep = tuple(s - s % k for s, k in zip(x.shape[1:-1], window))
    x = x[(slice(None), *(slice(0, s) for s in keep), slice(None))]
    shape = [x.shape[0]]
    for s, k in zip(keep, window):
        shape += [s // k, k]
    return x.reshape(*shape, x.shape[-1])


def _window_axes(nd: int) -> tuple[int, ...]:
    return tuple(2 + 2 * i for i in range(nd))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _tile_max(x, window: tuple[int, ...]):
    return jnp.max(_tiles(x, window), axis=_window_axes(len(window)))


@_tile_max.defjvp
def _tile_max_jvp(window, primals, tangents):
    """The output's tangent is the tangent of the first maximal element of each window.

    Linear in the tangent, so JAX transposes it into the VJP: the output gradient goes to that one
    element (Keras/TensorFlow, PyTorch and ``select_and_scatter`` do the same), not split among
    ties as `jnp.max`'s own rule would.
    """
    (x,), (t,) = primals, tangents
    nd = len(window)
    axes = _window_axes(nd)
    xt = _tiles(x, window)
    y = jnp.max(xt, axis=axes, keepdims=True)
    # Row-major position of every element inside its window: 0 .. prod(window) - 1.
    size = int(np.prod(window))
    shape = [1] * xt.ndim
    for ax, k in zip(axes, window):
        shape[ax] = k
    pos = np.arange(size, dtype=np.int32).reshape(shape)
    first = jnp.min(jnp.where(xt == y, pos, size), axis=axes, keepdims=True)
    picked = jnp.where(pos == first, _tiles(t, window), jnp.zeros((), t.dtype))
    return jnp.squeeze(y, axes), jnp.sum(picked, axis=axes)


def _tile_mean(x, window: tuple[int, ...]):
    return jnp.mean(_tiles(x, window), axis=_window_axes(len(window)))


def max_pool(
    inputs: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    r"""Max pooling, :math:`y_{n,i,j,c} = \max_{a < k_h,\, b < k_w} x_{n,\, i s_h + a,\, j s_w + b,\, c}`.

    The slide's pooling layer keeps the largest activation of each window; with the default 2×2
    window and stride 2 it halves H and W. The gradient flows to the first maximal element of each
    window (row-major order) and is zero elsewhere. Drop-in for `flax.nnx.max_pool` (same
    arguments, same numbers); fast on XLA:CPU when the windows tile the input (module docstring).
    Keras: ``MaxPooling2D(pool_size, strides=pool_size, padding="valid")``: its ``strides``
    default to the pool size, Flax's (and this function's) to 1, so pass ``strides`` explicitly.
    PyTorch: ``nn.MaxPool2d(kernel_size)`` (stride defaults to the kernel size), on NCHW.

    Args:
      inputs: ``[N, *spatial, C]``.
      window_shape: the window size per spatial axis, e.g. ``(2, 2)``.
      strides: the step per spatial axis; ``None`` means 1 (Flax's default).
      padding: ``"VALID"``, ``"SAME"`` or explicit ``[(low, high), ...]`` per spatial axis.

    Returns:
      ``[N, *pooled, C]``; with ``"VALID"`` and ``strides == window_shape``,
      ``pooled = spatial // window_shape``.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
      >>> max_pool(x, (2, 2), strides=(2, 2))[0, :, :, 0]
      Array([[ 5.,  7.],
             [13., 15.]], dtype=float32)
    """
    return _pool("max_pool", inputs, window_shape, strides, padding, _tile_max, nnx.max_pool)


def avg_pool(
    inputs: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    r"""Average pooling, :math:`y_{n,i,j,c} = \frac{1}{k_h k_w} \sum_{a < k_h,\, b < k_w}
    x_{n,\, i s_h + a,\, j s_w + b,\, c}`.

    Drop-in for `flax.nnx.avg_pool` (same arguments and numbers; windows that overhang a
    ``"SAME"`` border are Flax's business: it counts the padding, Keras does not). The gradient
    spreads :math:`1/(k_h k_w)` of the output gradient over each window. Keras:
    ``AveragePooling2D`` (strides default to the pool size); PyTorch: ``nn.AvgPool2d``.

    Args:
      inputs: ``[N, *spatial, C]``.
      window_shape: the window size per spatial axis.
      strides: the step per spatial axis; ``None`` means 1 (Flax's default).
      padding: ``"VALID"``, ``"SAME"`` or explicit ``[(low, high), ...]``.

    Returns:
      ``[N, *pooled, C]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
      >>> avg_pool(x, (2, 2), strides=(2, 2))[0, :, :, 0]
      Array([[ 2.5,  4.5],
             [10.5, 12.5]], dtype=float32)
    """
    return _pool("avg_pool", inputs, window_shape, strides, padding, _tile_mean, nnx.avg_pool)
