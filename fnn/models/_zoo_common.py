"""Pieces the zoo's torchvision-layout families share: input checks, the Keras-style top, names.

The top follows ``keras.applications``: ``include_top=True`` gives global average pooling, dropout
and a dense classifier (``classifier_activation`` None for logits or ``"softmax"``);
``include_top=False`` gives the last feature map, or ``[N, C]`` with ``pooling="avg" | "max"``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "activate",
    "adaptive_avg_pool",
    "bn_names",
    "check_images",
    "check_options",
    "depthwise_conv",
    "pool",
    "torch_conv_init",
    "torch_linear_init",
    "torch_mirror_names",
    "torch_dense_init",
]

# torchvision's initialisers: kaiming_normal_(mode="fan_out", nonlinearity="relu"), BN (1, 0).
torch_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
torch_dense_init = nnx.initializers.normal(0.01)  # torchvision's MobileNet/VGG: N(0, 0.01), bias 0


def check_options(name, *, num_classes, include_top, pooling, classifier_activation, features):
    """Rejects contradictory or unknown top options with a message naming the argument."""
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"{name}: pooling must be None, 'avg' or 'max', got {pooling!r}")
    if classifier_activation not in (None, "linear", "softmax") and not callable(
        classifier_activation
    ):
        raise ValueError(
            f"{name}: classifier_activation must be None, 'softmax' or a callable, got "
            f"{classifier_activation!r}"
        )
    if include_top and not features and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(
            f"{name}: include_top=True needs num_classes >= 1, got {num_classes!r} (use "
            f"include_top=False for a headless base)"
        )


def check_images(x, *, name: str, min_size: int = 32, channels: int = 3) -> None:
    """Raises a clear error for anything but float NHWC images of at least ``min_size`` pixels."""
    if getattr(x, "ndim", None) != 4 or x.shape[-1] != channels:
        raise ValueError(
            f"{name} expects images of shape [N, H, W, {channels}] (NHWC), got {tuple(np.shape(x))}"
        )
    h, w = x.shape[1:3]
    if min(h, w) < min_size:
        raise ValueError(
            f"{name} cannot take {h}x{w} images: it needs H, W >= {min_size} (at least "
            f"{min_size} pixels for its downsampling), got {(h, w)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} expects float images normalised as its preprocessing does, got dtype "
            f"{x.dtype}; use the preprocess that fnn.pretrained.load returns"
        )


def pool(x: jax.Array, pooling: str | None) -> jax.Array:
    """Global ``"avg"`` / ``"max"`` pooling over H, W, or ``x`` unchanged for None."""
    if pooling == "avg":
        return jnp.mean(x, axis=(1, 2))
    if pooling == "max":
        return jnp.max(x, axis=(1, 2))
    return x


def activate(logits: jax.Array, classifier_activation) -> jax.Array:
    """Keras' ``classifier_activation``: None / ``"linear"`` (logits), ``"softmax"``, a callable."""
    if classifier_activation in (None, "linear"):
        return logits
    if classifier_activation == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    return classifier_activation(logits)


def adaptive_avg_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """PyTorch's ``adaptive_avg_pool2d`` on NHWC: cell ``i`` of ``n`` averages rows
    ``floor(i·H/n) .. ceil((i+1)·H/n) − 1`` (cells overlap when ``n`` does not divide ``H``)."""

    def matrix(length, n):
        m = np.zeros((n, length), np.float32)
        for i in range(n):
            lo, hi = (i * length) // n, -((-(i + 1) * length) // n)
            m[i, lo:hi] = 1.0 / (hi - lo)
        return jnp.asarray(m)

    h, w = x.shape[1:3]
    if (h, w) == tuple(size):
        return x
    return jnp.einsum("ih,jw,nhwc->nijc", matrix(h, size[0]), matrix(w, size[1]), x)


def bn_names(path: str, key: str) -> dict[str, tuple[str, str]]:
    """Flax BatchNorm ``path`` <- torch BatchNorm ``key`` (weight, bias, running mean and var)."""
    pairs = (
        ("scale", "weight"),
        ("bias", "bias"),
        ("mean", "running_mean"),
        ("var", "running_var"),
    )
    return {f"{path}/{f}": (f"{key}.{t}", "vector") for f, t in pairs}


def torch_mirror_names(model: nnx.Module) -> dict[str, tuple[str, str]]:
    """Names for a model whose Flax paths mirror torchvision's module names (``layer1/0/conv1``
    <- ``layer1.0.conv1``): ``kernel`` <- ``weight`` (conv if 4-D, dense if 2-D), BatchNorm
    ``scale/bias/mean/var`` <- ``weight/bias/running_mean/running_var``."""
    from fnn.models.zoo_spec import model_arrays

    rename = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    names = {}
    for path, value in model_arrays(model).items():
        *parts, leaf = path.split("/")
        prefix = ".".join(parts)
        if leaf == "kernel":
            kind = "conv" if len(value.shape) == 4 else "dense"
            names[path] = (f"{prefix}.weight", kind)
        else:
            names[path] = (f"{prefix}.{rename[leaf]}", "vector")
    return names


def torch_linear_init(fan_in: int):
    """PyTorch's ``nn.Linear`` default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int, pad) -> jax.Array:
    """Depthwise cross-correlation with zero padding, as a sum of k² shifted products.

    ``y[n, i, j, c] = Σ_{a,b} x_pad[n, s·i + a, s·j + b, c] · kernel[a, b, 0, c]``: what
    ``nnx.Conv(..., feature_group_count=C)`` and PyTorch's ``Conv2d(groups=C)`` compute, but XLA:CPU
    runs grouped convolutions as a slow generic loop (`fnn.models.efficientnet_lite`'s
    ``depthwise_conv2d`` is this function with TensorFlow's SAME padding). ``pad`` is an int
    (symmetric, PyTorch's ``padding=``) or ``((top, bottom), (left, right))``.

    The backward pass is written by hand (``BENCHMARKS.md``): the kernel
    gradient ``dK[a, b, 0, c] = Σ_{n,i,j} dy[n, i, j, c] · x_pad[n, s·i + a, s·j + b, c]`` is one
    variadic reduction over the k² taps (autodiff emits k² reductions, each behind a materialised
    shifted copy of ``x``), and the input gradient is the same shifted sum over ``dy``, dilated by
    the stride, with the kernel flipped. Reverse mode only: ``jax.jvp`` through it raises.

    On CPU only (`jax.lax.platform_dependent`): GPUs and TPUs get XLA's grouped convolution and
    JAX's own VJP (``spec_tests/test_lowering.py``).
    """
    pads = _pairs(pad)
    return jax.lax.platform_dependent(
        x,
        kernel,
        cpu=lambda a, k: _depthwise(a, k.astype(a.dtype), stride, pads),
        default=lambda a, k: jax.lax.conv_general_dilated(
            a,
            k.astype(a.dtype),
            (stride, stride),
            pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=a.shape[-1],
        ),
    )


def _pairs(pad) -> tuple[tuple[int, int], tuple[int, int]]:
    """An int (symmetric) or two ``(low, high)`` pairs -> ``((top, bottom), (left, right))``."""
    if isinstance(pad, int | np.integer):
        return ((int(pad), int(pad)), (int(pad), int(pad)))
    (t, b), (l, r) = pad
    return ((int(t), int(b)), (int(l), int(r)))


def _windows(x, kh: int, kw: int, stride: int, pads):
    """The k² strided views ``x_pad[:, s·i + a, s·j + b]`` (row-major taps) and the output size."""
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    views = [
        xp[:, a : a + (oh - 1) * stride + 1 : stride, b : b + (ow - 1) * stride + 1 : stride]
        for a in range(kh)
        for b in range(kw)
    ]
    return views, (oh, ow)


def _tap_sum(windows, kernel):
    """``Σ_t windows[t] · kernel[t]`` over the k² taps of a ``[k, k, 1, C]`` kernel."""
    taps = kernel.reshape(len(windows), -1)
    out = windows[0] * taps[0]
    for window, tap in zip(windows[1:], taps[1:], strict=True):
        out = out + window * tap
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise(x, kernel, stride: int, pads):
    return _tap_sum(_windows(x, *kernel.shape[:2], stride, pads)[0], kernel)


def _depthwise_fwd(x, kernel, stride, pads):
    return _depthwise(x, kernel, stride, pads), (x, kernel)


def _depthwise_bwd(stride, pads, residuals, dy):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    (top, bottom), (left, right) = pads
    h, w = x.shape[1:3]
    oh, ow = dy.shape[1:3]
    hp, wp = h + top + bottom, w + left + right
    # dx_pad[p] = Σ_a dy_dilated[p - a] · k[a]: the shifted sum over dy (zero-dilated by the
    # stride, padded by k - 1 in front) with the kernel flipped, cropped to x's rows and columns.
    dyp = jax.lax.pad(
        dy,
        jnp.zeros((), dy.dtype),
        (
            (0, 0, 0),
            (kh - 1, hp - (oh - 1) * stride - 1, stride - 1),
            (kw - 1, wp - (ow - 1) * stride - 1, stride - 1),
            (0, 0, 0),
        ),
    )
    windows = [
        dyp[:, top + a : top + a + h, left + b : left + b + w] for a in range(kh) for b in range(kw)
    ]
    dx = _tap_sum(windows, kernel[::-1, ::-1])
    # One pass over dy and x for all taps: a variadic reduction that XLA fuses with the shifted
    # windows, over W only, then the small [k², N, H', C] partial sums over N and H'. Keeping
    # N·H'·C outputs spreads the work over threads and keeps the reads contiguous: 1.1-3.5x
    # faster than reducing (H, W) first (EfficientNet-Lite's former order) on MobileNetV2's maps at
    # batch 2 and 8, most on the large ones (BENCHMARKS.md).
    acc = jnp.promote_types(dy.dtype, jnp.float32)
    dya = dy.astype(acc)
    products = tuple(v.astype(acc) * dya for v in _windows(x, kh, kw, stride, pads)[0])
    sums = jax.lax.reduce(
        products,
        tuple(jnp.zeros((), acc) for _ in products),
        lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)),
        (2,),
    )
    dk = jnp.stack(sums).sum(axis=(1, 2)).reshape(kernel.shape)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)
