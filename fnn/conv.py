"""Convolutions whose backward pass stays fast inside compiled loops on XLA:CPU.

Data contract: channels-last layouts, as Flax and Keras use them. Images are ``[N, H, W, C]``
(``NHWC``), kernels are ``[KH, KW, C / groups, O]`` (``HWIO``); 1-D and 3-D work the same way
(``[N, L, C]`` / ``[L, C/groups, O]`` and ``[N, D, H, W, C]`` / ``[KD, KH, KW, C/groups, O]``).

Why this module exists: inside a ``while`` loop (``lax.scan``, ``fori_loop``, so inside
``steps_per_execution`` and whole-epoch training) XLA:CPU does not put the two backward
convolutions that JAX's autodiff emits into its canonical (fast, Eigen/oneDNN) form, and runs them
as naive loop nests: about 16x slower for the input gradient and 250x slower for the kernel
gradient (see ``PERF_NOTES.md``). Here the convolution is a `jax.custom_vjp` whose backward pass is
written as two ordinary channels-last *forward* convolutions:

* input gradient: ``dx = conv(dilate(g, s), flip(W)ᵀ)``, the output gradient convolved with the
  spatially flipped kernel whose input/output channel axes are swapped (per group), with the
  forward strides ``s`` turned into input dilation and the padding chosen so that ``dx`` has the
  shape of ``x``;
* kernel gradient: ``dW = conv(xᵀ, gᵀ)``, the input with its batch and channel axes swapped
  convolved with the output gradient (batch and channel axes swapped too) used as the kernel, with
  the forward strides turned into kernel dilation.

Outside loops it is as fast as XLA's own VJP. A 1×1 kernel without padding (EfficientNet's
expand/project convolutions, ResNet's shortcuts) is a matrix product per pixel, and is computed as
one (``y = x W`` on 2-D views, strides as subsampling; autodiff then gives ``dx = g Wᵀ`` and
``dW = xᵀ g``): XLA:CPU runs the kernel gradient of such a convolution as a convolution with an
image-sized kernel, up to 6× slower than the product (measured, ``BENCHMARKS.md``). On GPU and
TPU the plain XLA convolution (cuDNN, TPU convolution units) is better, so by default
`jax.lax.platform_dependent` picks the canonical form on CPU only (``implementation="auto"``).

With the optional oneDNN extra on x86-64 Linux (`fnn.onednn`: ``pip install "fnn[onednn]"`` and
a C++ compiler), that CPU branch runs the forward, input-gradient and kernel-gradient
convolutions as oneDNN custom calls instead (the reference CNN's step ≈ 1.45× faster), for every
2-D float32 layer of one group without dilation; other layers, ``FNN_ONEDNN=0``, `jax.export` and
batch-sharded programs keep the pure-JAX form, which gives the same results up to float32 rounding.

`Conv` is a drop-in replacement for `flax.nnx.Conv` (it is a subclass: same constructor, same
``kernel``/``bias`` parameters and shapes, so checkpoints and weight mappings are shared); `conv2d`
is the functional form; `conv_general_dilated` has `jax.lax.conv_general_dilated`'s signature.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jax.interpreters import batching, mlir

from fnn import onednn
from fnn._validation import lookup

__all__ = ["Conv", "conv2d", "conv_general_dilated", "make_loop_safe", "IMPLEMENTATIONS"]

#: Names accepted by ``implementation=``: ``"auto"`` (canonical VJP on CPU, with oneDNN where
#: `fnn.onednn` is available; XLA's own elsewhere),
#: ``"canonical"`` (always the canonical custom VJP), ``"xla"`` (plain `lax.conv_general_dilated`),
#: ``"im2col"`` (shifted views concatenated along channels and one matmul; groups of 1 only,
#: others fall back to ``"canonical"``).
IMPLEMENTATIONS = ("auto", "canonical", "xla", "im2col")


class _Config(NamedTuple):
    """Static convolution settings (hashable, passed as a non-differentiable argument)."""

    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    groups: int
    precision: object


def _channels_last_dnums(nd: int) -> lax.ConvDimensionNumbers:
    """ConvDimensionNumbers of N...C / ...IO / N...C for ``nd`` spatial dimensions."""
    spatial = tuple(range(1, nd + 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, nd + 1, *spatial),
        rhs_spec=(nd + 1, nd, *range(nd)),
        out_spec=(0, nd + 1, *spatial),
    )


def _plain(x, w, cfg: _Config):
    """The forward convolution, channels last, exactly as `lax.conv_general_dilated` does it."""
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=cfg.strides,
        padding=cfg.padding,
        lhs_dilation=cfg.lhs_dilation,
        rhs_dilation=cfg.rhs_dilation,
        dimension_numbers=_channels_last_dnums(x.ndim - 2),
        feature_group_count=cfg.groups,
        precision=cfg.precision,
    )


def _dilate(n: int, d: int) -> int:
    return 0 if n == 0 else (n - 1) * d + 1


def _dilate_spatial(x, dilation: tuple[int, ...]):
    """Insert ``d - 1`` zeros between neighbouring pixels (interior padding), channels last.

    XLA:CPU runs convolutions with input ("base") dilation outside its fast path (and its
    simplifier has crashed on base plus window dilation), so dilation is made explicit instead.
    """
    if all(d == 1 for d in dilation):
        return x
    config = [(0, 0, 0), *((0, 0, d - 1) for d in dilation), (0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), config)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _canonical(x, w, cfg: _Config):
    return _plain(x, w, cfg)


def _canonical_fwd(x, w, cfg: _Config):
    return _plain(x, w, cfg), (x, w)


def _input_grad(g, w, x_shape, cfg: _Config, conv=None):
    """dL/dx as one forward convolution of ``g`` with the flipped, channel-swapped kernel
    (``conv(lhs, rhs, cfg)``, `_canonical` unless given)."""
    nd = g.ndim - 2
    groups = cfg.groups
    *ksize, cin_g, cout = w.shape
    # [K..., I/G, O] -> [K..., O/G, I]: swap the channel axes within each group.
    wt = w.reshape(*ksize, cin_g, groups, cout // groups)
    wt = jnp.moveaxis(wt, (nd, nd + 1, nd + 2), (nd + 2, nd + 1, nd))
    wt = wt.reshape(*ksize, cout // groups, groups * cin_g)
    wt = lax.rev(wt, tuple(range(nd)))
    pads = []
    for i in range(nd):
        n_in = _dilate(x_shape[1 + i], cfg.lhs_dilation[i])
        k_eff = _dilate(ksize[i], cfg.rhs_dilation[i])
        n_out = _dilate(g.shape[1 + i], cfg.strides[i])
        lo = k_eff - cfg.padding[i][0] - 1
        hi = n_in + k_eff - 1 - n_out - lo
        pads.append((lo, hi))
    # Padding beyond k - 1 in the forward pass makes lo / hi negative: crop ``g`` explicitly
    # rather than hand a convolution negative padding (XLA:CPU's convolution got it wrong: a
    # 2x4 kernel, stride (1, 3), padding 4 gave a wrong dx, spec_tests/test_conv.py).
    gd = _dilate_spatial(g, cfg.strides)
    crop = tuple(
        slice(max(-lo, 0), gd.shape[1 + i] - max(-hi, 0)) for i, (lo, hi) in enumerate(pads)
    )
    gd = gd[(slice(None), *crop, slice(None))]
    t_cfg = _Config(
        strides=cfg.lhs_dilation,
        padding=tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads),
        lhs_dilation=(1,) * nd,
        rhs_dilation=cfg.rhs_dilation,
        groups=groups,
        precision=cfg.precision,
    )
    return (conv or _canonical)(gd, wt, t_cfg)


# Images per block in `_swap_batch_and_channels`, the most blocks it makes, and the fewest
# elements per image (32x32x32) for which it transposes in blocks at all.
_TRANSPOSE_BLOCK = 8
_MAX_TRANSPOSE_BLOCKS = 32
_BLOCKED_TRANSPOSE_MIN_ELEMENTS = 32 * 32 * 32


def _swap_batch_and_channels(x):
    """``[N, S..., C] -> [C, S..., N]``, the same array as ``jnp.moveaxis(x, (0, -1), (-1, 0))``.

    Transposed a block of 8 images at a time, the blocks concatenated along the new last axis:
    XLA:CPU moves a whole batch axis to the minor position with strided reads over the entire
    array, and in blocks it runs 3-5× faster (128×32×32×32, the reference CNN's second layer:
    21.6 → 4.3 ms), which made that network's train step 1.13-1.17× faster (``BENCHMARKS.md``).
    Large batches get bigger blocks (at most 32 of them) to keep the program small. Images of
    fewer than 32×32×32 elements are transposed whole: in the reference CNN only the 32×32×32
    layer gained from blocks; in the other three they added a second to the step's compile
    time at the same speed (``BENCHMARKS.md``).
    """
    nd = x.ndim - 2
    n = x.shape[0]
    block = max(_TRANSPOSE_BLOCK, -(-n // _MAX_TRANSPOSE_BLOCKS))
    if n <= block or np.prod(x.shape[1:]) < _BLOCKED_TRANSPOSE_MIN_ELEMENTS:
        return jnp.moveaxis(x, (0, nd + 1), (nd + 1, 0))
    parts = [jnp.moveaxis(x[i : i + block], (0, nd + 1), (nd + 1, 0)) for i in range(0, n, block)]
    return jnp.concatenate(parts, axis=nd + 1)


def _kernel_grad(x, g, k_shape, cfg: _Config):
    """dL/dW as one forward convolution of ``x`` (batch <-> channels) with ``g`` as the kernel."""
    nd = x.ndim - 2
    # x: [N, S..., C] -> [C, S..., N]: channels become the batch, the batch is contracted.
    xt = _swap_batch_and_channels(x)
    # g: [N, M..., O] -> [M..., N, O]: a kernel with N "input channels".
    gt = jnp.moveaxis(g, 0, nd)
    pads = []
    for i in range(nd):
        n_in = _dilate(x.shape[1 + i], cfg.lhs_dilation[i])
        k_eff = _dilate(k_shape[i], cfg.rhs_dilation[i])
        n_out = _dilate(g.shape[1 + i], cfg.strides[i])
        lo = cfg.padding[i][0]
        hi = n_out - n_in + k_eff - lo - 1
        pads.append((lo, hi))
    dnums = _channels_last_dnums(nd)
    out = lax.conv_general_dilated(
        xt,
        gt,
        window_strides=cfg.rhs_dilation,
        padding=tuple(pads),
        lhs_dilation=cfg.lhs_dilation,
        rhs_dilation=cfg.strides,
        dimension_numbers=dnums,
        batch_group_count=cfg.groups,
        precision=cfg.precision,
    )
    # out: [C/G, K..., O] -> [K..., C/G, O]
    return jnp.moveaxis(out, 0, nd)


def _canonical_bwd(cfg: _Config, res, g):
    x, w = res
    dx = _input_grad(g, w, x.shape, cfg).astype(x.dtype)
    dw = _kernel_grad(x, g, w.shape, cfg).astype(w.dtype)
    return dx, dw


_canonical.defvjp(_canonical_fwd, _canonical_bwd)


def _im2col(x, w, cfg: _Config):
    """im2col: ``y = [x̃ shifted by every kernel offset, concatenated] @ W.reshape(K·C, O)``.

    Differentiated by plain autodiff (pads, strided slices, one dot): no convolution at all.
    """
    nd = x.ndim - 2
    if cfg.groups != 1 or any(d != 1 for d in cfg.lhs_dilation):
        return _canonical(x, w, cfg)
    ksize = w.shape[:nd]
    xp = lax.pad(
        x, jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in cfg.padding), (0, 0, 0)]
    )
    out = [
        (xp.shape[1 + i] - _dilate(ksize[i], cfg.rhs_dilation[i])) // cfg.strides[i] + 1
        for i in range(nd)
    ]
    cols = []
    for offsets in itertools.product(*(range(k) for k in ksize)):
        start = [0, *(o * d for o, d in zip(offsets, cfg.rhs_dilation)), 0]
        limit = [
            xp.shape[0],
            *(b + (m - 1) * s + 1 for b, m, s in zip(start[1:-1], out, cfg.strides)),
            xp.shape[-1],
        ]
        cols.append(lax.slice(xp, start, limit, (1, *cfg.strides, 1)))
    patches = jnp.concatenate(cols, axis=-1)
    return jnp.dot(patches, w.reshape(-1, w.shape[-1]), precision=cfg.precision)


def _is_pointwise(w, cfg: _Config) -> bool:
    """A 1×1 (×1) kernel, no padding, no input dilation, one group: a matrix product per pixel."""
    nd = w.ndim - 2
    return (
        all(k == 1 for k in w.shape[:nd])
        and all(p == (0, 0) for p in cfg.padding)
        and all(d == 1 for d in cfg.lhs_dilation)
        and cfg.groups == 1
    )


def _subsample(x, strides: tuple[int, ...]):
    """Every ``s``-th pixel along each spatial axis (a 1×1 kernel with stride ``s``)."""
    if all(s == 1 for s in strides):
        return x
    return x[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]


def _pointwise(x, w, cfg: _Config):
    """A 1×1 convolution as one ``[pixels, C] @ [C, O]`` matrix product.

    Written on 2-D views so that autodiff's two products are 2-D as well (``dx = g Wᵀ``,
    ``dW = x̃ᵀ g``) and XLA:CPU runs them as plain matrix products; the transpose of the strided
    subsampling puts zeros between the pixels. Differentiating a 4-D ``jnp.dot`` instead
    contracts three leading axes at once, which measured 10× slower for ``dW``.
    """
    xs = _subsample(x, cfg.strides)
    y = jnp.dot(xs.reshape(-1, xs.shape[-1]), w.reshape(w.shape[-2:]), precision=cfg.precision)
    return y.reshape(*xs.shape[:-1], w.shape[-1])


# ----------------------------------------------------------------------------------------------
# oneDNN on CPU (`fnn.onednn`): the forward convolution and the kernel gradient as FFI custom calls.
#
# One primitive, ``kind="fwd"`` (``y = conv(x, w)``) or ``"bwd_w"`` (``dW`` from ``x`` and ``g``),
# chosen when the program is lowered: for CPU it becomes the custom call, unless the program is
# being exported (`jax.export` needs portable operations), split over several devices by XLA's
# partitioner, or oneDNN did not load; then, and on every other platform, it lowers to the
# pure-JAX computation (`_plain`, `_kernel_grad`), as do `jax.vmap` of it and eager evaluation.
# Custom calls have no derivative, so the primitive is used only inside the custom VJPs below,
# whose backward passes use differentiable functions again.

_onednn_p = jax.extend.core.Primitive("fnn_onednn_conv")


def _onednn_pure(a, b, *, kind, cfg, k_shape):
    return _plain(a, b, cfg) if kind == "fwd" else _kernel_grad(a, b, k_shape, cfg)


def _onednn_abstract(a, b, *, kind, cfg, k_shape):
    if kind == "bwd_w":
        return a.update(shape=tuple(k_shape), weak_type=False)  # keeps shard_map's axis types
    spatial = [
        (n + lo + hi - k) // s + 1
        for n, (lo, hi), k, s in zip(a.shape[1:3], cfg.padding, b.shape[:2], cfg.strides)
    ]
    return a.update(shape=(a.shape[0], *spatial, b.shape[-1]), weak_type=False)


def _partitioned(axis_context) -> bool:
    """Whether XLA's SPMD partitioner splits this program over several devices: it cannot split
    a custom call (it would gather the whole batch onto every device), the pure form it can."""
    if hasattr(axis_context, "num_devices"):  # jit with shardings
        return axis_context.num_devices > 1
    mesh = getattr(axis_context, "mesh", None)  # shard_map: fine where every axis is manual
    return (
        mesh is not None and mesh.size > 1 and set(axis_context.manual_axes) != set(mesh.axis_names)
    )


def _onednn_cpu_lowering(ctx, a, b, *, kind, cfg, k_shape):
    module = ctx.module_context
    if (
        module.lowering_parameters.for_export
        or _partitioned(module.axis_context)
        or not onednn.available()
    ):
        pure = functools.partial(_onednn_pure, kind=kind, cfg=cfg, k_shape=k_shape)
        return mlir.lower_fun(pure, multiple_results=False)(ctx, a, b)
    (pt, pb), (pl, pr) = cfg.padding
    attrs = dict(stride_h=cfg.strides[0], stride_w=cfg.strides[1], pad_top=pt, pad_left=pl)
    attrs.update(pad_bottom=pb, pad_right=pr)
    if kind == "bwd_w":
        attrs.update(kh=k_shape[0], kw=k_shape[1])
    attrs = {k: np.int64(v) for k, v in attrs.items()}
    return jax.ffi.ffi_lowering(onednn.TARGETS[kind])(ctx, a, b, **attrs)


def _onednn_batched(args, dims, **params):
    return jax.vmap(functools.partial(_onednn_pure, **params), in_axes=dims)(*args), 0


_onednn_p.def_impl(_onednn_pure)  # evaluated eagerly (jax.disable_jit): the pure-JAX form
_onednn_p.def_abstract_eval(_onednn_abstract)
mlir.register_lowering(_onednn_p, mlir.lower_fun(_onednn_pure, multiple_results=False))
mlir.register_lowering(_onednn_p, _onednn_cpu_lowering, platform="cpu")
batching.primitive_batchers[_onednn_p] = _onednn_batched


def _onednn_supports(x, w, cfg: _Config) -> bool:
    """Whether the custom calls cover this convolution (and oneDNN loaded): 2-D, float32, one
    group, no dilation, pads between 0 and the kernel size minus one, no empty axis."""
    return (
        x.ndim == 4
        and x.dtype == w.dtype == jnp.float32
        and cfg.groups == 1
        and all(d == 1 for d in (*cfg.lhs_dilation, *cfg.rhs_dilation))
        and all(0 <= p < k for (lo, hi), k in zip(cfg.padding, w.shape[:2]) for p in (lo, hi))
        and all(n > 0 for n in (*x.shape, *w.shape))
        and all(n + lo + hi >= k for n, (lo, hi), k in zip(x.shape[1:3], cfg.padding, w.shape))
        and onednn.available()
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _onednn_conv(x, w, cfg: _Config):
    return _onednn_p.bind(x, w, kind="fwd", cfg=cfg, k_shape=None)


def _onednn_conv_fwd(x, w, cfg: _Config):
    return _onednn_conv(x, w, cfg), (x, w)


def _onednn_or_canonical(x, w, cfg: _Config):
    return (_onednn_conv if _onednn_supports(x, w, cfg) else _canonical)(x, w, cfg)


def _onednn_conv_bwd(cfg: _Config, res, g):
    x, w = res
    dx = _input_grad(g, w, x.shape, cfg, conv=_onednn_or_canonical)
    return dx, _onednn_kernel_grad(x, g, w.shape, cfg)


_onednn_conv.defvjp(_onednn_conv_fwd, _onednn_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _onednn_kernel_grad(x, g, k_shape, cfg: _Config):
    return _onednn_p.bind(x, g, kind="bwd_w", cfg=cfg, k_shape=tuple(k_shape))


def _onednn_kernel_grad_fwd(x, g, k_shape, cfg: _Config):
    return _onednn_kernel_grad(x, g, k_shape, cfg), (x, g)


def _onednn_kernel_grad_bwd(k_shape, cfg: _Config, res, ct):
    # dW is bilinear in (x, g): <ct, dW(x, g)> = <g, conv(x, ct)>, so its cotangents are the
    # input gradient of conv(x, ct) given g, and conv(x, ct) itself.
    x, g = res
    return _input_grad(g, ct, x.shape, cfg), _canonical(x, ct, cfg)


_onednn_kernel_grad.defvjp(_onednn_kernel_grad_fwd, _onednn_kernel_grad_bwd)


def _auto(x, w, cfg: _Config):
    cpu = _onednn_conv if _onednn_supports(x, w, cfg) else _canonical
    return lax.platform_dependent(
        x,
        w,
        cpu=lambda a, b: cpu(a, b, cfg),
        default=lambda a, b: _plain(a, b, cfg),
    )


_IMPL = {"auto": _auto, "canonical": _canonical, "xla": _plain, "im2col": _im2col}


def _tuple(value, nd: int, name: str) -> tuple[int, ...]:
    """An int or a sequence of ``nd`` positive ints, as a tuple (None means 1, as in Flax)."""
    if value is None:
        value = 1
    if isinstance(value, int | np.integer):
        value = (int(value),) * nd
    try:
        value = tuple(operator.index(v) for v in value)
    except TypeError as e:
        raise TypeError(f"{name} must be an int or a sequence of {nd} ints, got {value!r}") from e
    if len(value) != nd or any(v < 1 for v in value):
        raise ValueError(f"{name} must be {nd} positive ints, got {value!r}")
    return value


def _pads(padding, in_shape, k_eff, strides, nd: int) -> tuple[tuple[int, int], ...]:
    """Explicit (low, high) pads from a padding string, an int, or ``nd`` pairs."""
    if isinstance(padding, str):
        name = padding.upper()
        if name not in ("SAME", "VALID", "SAME_LOWER"):
            lookup("padding", padding, {"same": 0, "valid": 0, "same_lower": 0})
        return tuple(tuple(p) for p in lax.padtype_to_pads(in_shape, k_eff, strides, name))
    if isinstance(padding, int | np.integer):
        return ((int(padding), int(padding)),) * nd
    try:
        pads = tuple((operator.index(lo), operator.index(hi)) for lo, hi in padding)
    except (TypeError, ValueError) as e:
        raise ValueError(
            "padding must be 'SAME', 'VALID', 'SAME_LOWER', an int or a sequence of "
            f"{nd} (low, high) pairs, got {padding!r}"
        ) from e
    if len(pads) != nd:
        raise ValueError(f"padding must have {nd} (low, high) pairs, got {len(pads)}: {padding!r}")
    return pads


def _convolve(
    x,
    kernel,
    *,
    strides,
    padding,
    input_dilation,
    kernel_dilation,
    feature_group_count,
    precision,
    implementation,
):
    """Validate arguments, normalise them to a `_Config` and run the chosen implementation."""
    impl = lookup("implementation", implementation, {k: v for k, v in _IMPL.items()})
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    nd = kernel.ndim - 2
    if nd < 1:
        raise ValueError(
            f"kernel must be [*kernel_size, in_features/groups, out_features], got shape "
            f"{kernel.shape}"
        )
    if x.ndim != nd + 2:
        raise ValueError(
            f"x must have rank {nd + 2} ([batch, *spatial, channels]) for a kernel of shape "
            f"{kernel.shape}, got shape {x.shape}"
        )
    groups = operator.index(feature_group_count)
    if groups < 1:
        raise ValueError(f"feature_group_count must be >= 1, got {groups}")
    if x.shape[-1] != kernel.shape[-2] * groups:
        raise ValueError(
            f"x has {x.shape[-1]} channels (shape {x.shape}) but kernel {kernel.shape} with "
            f"feature_group_count={groups} expects {kernel.shape[-2] * groups}"
        )
    if kernel.shape[-1] % groups:
        raise ValueError(
            f"kernel's out_features {kernel.shape[-1]} must be divisible by "
            f"feature_group_count={groups}"
        )
    strides = _tuple(strides, nd, "strides")
    lhs_dilation = _tuple(input_dilation, nd, "input_dilation")
    rhs_dilation = _tuple(kernel_dilation, nd, "kernel_dilation")
    if isinstance(padding, str) and any(d != 1 for d in lhs_dilation):
        raise ValueError(
            f"padding={padding!r} is ambiguous with input_dilation={lhs_dilation}; "
            "give explicit (low, high) pairs"
        )
    k_eff = [_dilate(k, d) for k, d in zip(kernel.shape[:nd], rhs_dilation)]
    pads = _pads(padding, x.shape[1:-1], k_eff, strides, nd)
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if impl is not _plain:
        x = _dilate_spatial(x, lhs_dilation)
        lhs_dilation = (1,) * nd
    cfg = _Config(strides, pads, lhs_dilation, rhs_dilation, groups, precision)
    if impl in (_auto, _canonical) and _is_pointwise(kernel, cfg):
        return _pointwise(x, kernel, cfg)  # on every platform: a 1×1 convolution is a matmul
    return impl(x, kernel, cfg)


def conv2d(
    x,
    kernel,
    *,
    strides: int | Sequence[int] = 1,
    padding: str | int | Sequence[tuple[int, int]] = "SAME",
    input_dilation: int | Sequence[int] = 1,
    kernel_dilation: int | Sequence[int] = 1,
    feature_group_count: int = 1,
    precision=None,
    implementation: str = "auto",
):
    r"""2-D convolution (cross-correlation) of NHWC images with an HWIO kernel.

    The slide's formula, for stride ``s``, kernel dilation ``d`` and padded input ``x̃``:

    .. math::

        y_{n,i,j,o} = \sum_{u,v} \sum_{c \in \mathrm{group}(o)}
            \tilde x_{n,\, s_h i + d_h u,\, s_w j + d_w v,\, c}\; W_{u,v,c,o}

    where ``x`` is ``x`` ``[N, H, W, C]``, ``W`` is ``kernel`` ``[KH, KW, C/G, O]``, ``G`` is
    ``feature_group_count`` (``G = C`` with ``O = C·m`` is a depthwise convolution with depth
    multiplier ``m``). There is no bias: add it yourself, or use `Conv`.

    Like every deep-learning "convolution" it does not flip the kernel. PyTorch's ``F.conv2d`` is
    NCHW with an ``[O, C/G, KH, KW]`` kernel (``kernel.transpose(2, 3, 1, 0)`` maps it here) and its
    ``padding="same"`` pads the extra row at the *end*, as ``"SAME"`` does here and in TensorFlow /
    Keras; with stride 2 on even sizes TF-"SAME" pads ``(0, 1)``, PyTorch needs explicit pads.

    The backward pass is two canonical forward convolutions (module docstring), so the function
    stays fast inside `jax.lax.scan` on CPU. Reverse-over-reverse (``jax.grad(jax.grad(...))``,
    Hessian-vector products via ``vjp`` of ``grad``) works; forward-mode autodiff (``jax.jvp``,
    ``jax.jacfwd``) of the canonical path raises JAX's custom-VJP error: use
    ``implementation="xla"`` for it.

    Args:
      x: images ``[N, H, W, C]``.
      kernel: ``[KH, KW, C / feature_group_count, O]``.
      strides: an int or ``(sh, sw)``.
      padding: ``"SAME"`` (TensorFlow's: output ``ceil(H / s)``, extra pad at the end),
        ``"VALID"``, ``"SAME_LOWER"``, an int, or ``((top, bottom), (left, right))``.
      input_dilation: an int or pair; dilating the input gives a transposed convolution.
      kernel_dilation: an int or pair (atrous convolution).
      feature_group_count: number of channel groups ``G``.
      precision: passed to `jax.lax.conv_general_dilated`.
      implementation: ``"auto"`` (canonical VJP on CPU, XLA's convolution on GPU/TPU, chosen with
        `jax.lax.platform_dependent`), ``"canonical"`` or ``"xla"``.

    Returns:
      ``[N, H', W', O]`` with ``H' = ceil(H / sh)`` for ``"SAME"`` and
      ``floor((H + lo + hi - (KH - 1)·dh - 1) / sh) + 1`` in general.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from fnn.conv import conv2d
      >>> x = jnp.ones((2, 8, 8, 3))
      >>> w = jnp.ones((3, 3, 3, 4))
      >>> conv2d(x, w, strides=2).shape
      (2, 4, 4, 4)
      >>> float(conv2d(x, w, padding="VALID")[0, 0, 0, 0])
      27.0
      >>> jax.grad(lambda w: conv2d(x, w).sum())(w).shape
      (3, 3, 3, 4)
    """
    x_ndim = jnp.ndim(x)
    k_ndim = jnp.ndim(kernel)
    if x_ndim != 4:
        raise ValueError(f"x must be NHWC images of rank 4, got shape {jnp.shape(x)}")
    if k_ndim != 4:
        raise ValueError(
            f"kernel must be [KH, KW, C/groups, O] of rank 4, got shape {jnp.shape(kernel)}"
        )
    return _convolve(
        x,
        kernel,
        strides=strides,
        padding=padding,
        input_dilation=input_dilation,
        kernel_dilation=kernel_dilation,
        feature_group_count=feature_group_count,
        precision=precision,
        implementation=implementation,
    )


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
    *,
    implementation: str = "auto",
):
    """`jax.lax.conv_general_dilated` with the canonical-form VJP for channels-last layouts.

    Same signature and result as the `jax.lax` function (so it can be passed to
    ``flax.nnx.Conv(conv_general_dilated=...)``). Channels-last dimension numbers
    (``("NHWC", "HWIO", "NHWC")`` and their 1-D/3-D analogues) with ``batch_group_count=1`` and no
    ``preferred_element_type``/``out_sharding`` take the fast path described in the module
    docstring; anything else is passed through to `jax.lax.conv_general_dilated` unchanged.

    Examples:
      >>> import jax.numpy as jnp
      >>> from fnn.conv import conv_general_dilated
      >>> conv_general_dilated(
      ...     jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 1)), (1, 1), "VALID",
      ...     dimension_numbers=("NHWC", "HWIO", "NHWC")).shape
      (1, 3, 3, 1)
    """
    lhs = jnp.asarray(lhs)
    rhs = jnp.asarray(rhs)
    nd = rhs.ndim - 2
    fast = (
        nd >= 1
        and lhs.ndim == nd + 2
        and batch_group_count == 1
        and preferred_element_type is None
        and out_sharding is None
        and dimension_numbers is not None
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == _channels_last_dnums(nd)
    )
    if not fast:
        kwargs = {}
        if preferred_element_type is not None:
            kwargs["preferred_element_type"] = preferred_element_type
        if out_sharding is not None:
            kwargs["out_sharding"] = out_sharding
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            **kwargs,
        )
    return _convolve(
        lhs,
        rhs,
        strides=window_strides,
        padding=padding,
        input_dilation=lhs_dilation,
        kernel_dilation=rhs_dilation,
        feature_group_count=feature_group_count,
        precision=precision,
        implementation=implementation,
    )


class Conv(nnx.Conv):
    """`flax.nnx.Conv` whose convolution has the canonical-form VJP (fast in `lax.scan` on CPU).

    A subclass of `flax.nnx.Conv` with the same constructor: ``in_features, out_features,
    kernel_size, strides, padding, input_dilation, kernel_dilation, feature_group_count, use_bias,
    mask, dtype, param_dtype, precision, kernel_init, bias_init, rngs, ...``, the same parameters
    ``kernel`` ``[*kernel_size, in_features / feature_group_count, out_features]`` and ``bias``
    ``[out_features]``, and the same call ``y = conv(x, W) + b`` on channels-last input
    ``[*batch, *spatial, in_features]``. Only the ``conv_general_dilated`` used inside changes
    (`fnn.conv.conv_general_dilated`); ``implementation=`` chooses it (``"auto"`` by default).

    Keras' ``Conv2D(filters, kernel_size, strides, padding="valid")`` defaults to ``"VALID"``;
    Flax and this class default to ``"SAME"``. PyTorch's ``nn.Conv2d`` weight ``[O, I/G, KH, KW]``
    maps to ``kernel`` with ``weight.transpose(2, 3, 1, 0)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from fnn.conv import Conv
      >>> layer = Conv(3, 8, kernel_size=(3, 3), strides=2, rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer.bias.shape
      ((3, 3, 3, 8), (8,))
      >>> layer(jnp.ones((2, 32, 32, 3))).shape
      (2, 16, 16, 8)
      >>> isinstance(layer, nnx.Conv)
      True
    """

    def __init__(self, *args, implementation: str = "auto", **kwargs):
        lookup("implementation", implementation, {k: k for k in IMPLEMENTATIONS})
        if "conv_general_dilated" in kwargs:
            raise TypeError(
                "fnn.conv.Conv chooses conv_general_dilated itself; pass implementation= "
                f"({', '.join(IMPLEMENTATIONS)}) or use flax.nnx.Conv for a custom one"
            )
        super().__init__(
            *args,
            conv_general_dilated=functools.partial(
                conv_general_dilated, implementation=implementation
            ),
            **kwargs,
        )
        self.implementation = implementation


def make_loop_safe(model: nnx.Module) -> int:
    """Give every plain `flax.nnx.Conv` in ``model`` this module's convolution, in place.

    A model built on `flax.nnx.Conv` trains about 12× slower on CPU inside ``lax.scan``
    (``steps_per_execution > 1``) than one step per call, because of the loop pathology the
    module docstring describes. This swaps each such layer's ``conv_general_dilated`` (a static
    attribute) for `conv_general_dilated`: the same forward result and gradients, XLA's own
    convolution on GPU and TPU, the canonical backward pass on CPU. Parameters, their names and
    shapes do not change; layers given a custom ``conv_general_dilated`` are left alone.
    `fnn.train.compile` calls it when ``steps_per_execution > 1``.

    Returns:
      the number of layers changed.

    Examples:
      >>> from flax import nnx
      >>> model = nnx.Sequential(nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0)), nnx.relu)
      >>> make_loop_safe(model), make_loop_safe(model)
      (1, 0)
    """
    changed = 0
    for _, module in nnx.iter_graph(model):
        if (
            isinstance(module, nnx.Conv)
            and getattr(module, "conv_general_dilated", None) is lax.conv_general_dilated
        ):
            module.conv_general_dilated = conv_general_dilated
            changed += 1
    return changed
