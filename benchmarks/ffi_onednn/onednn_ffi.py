"""oneDNN convolutions as XLA FFI custom calls (`jax.ffi`): the issue-18 prototype.

Loads ``build/libonednn_conv.so`` (made by ``build.sh``), registers its two handlers for the CPU
platform and wraps them:

- `kernel_grad` ``(x [N,H,W,C], g [N,OH,OW,O]) -> dW [KH,KW,C,O]``: oneDNN's
  backward-by-weights convolution, the operation fnn's ``fnn.conv._kernel_grad`` computes as a
  forward convolution of the batch-transposed input with an image-sized "kernel";
- `conv_forward` ``(x, w [KH,KW,C,O]) -> y``: oneDNN's forward convolution.

Both: float32, channels last, groups of 1, no dilation. `available()` says whether the library
loaded; nothing here runs unless the caller asks (not part of fnn, not run by CI).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

LIBRARY = Path(__file__).resolve().parent / "build" / "libonednn_conv.so"
_state: dict[str, object] = {}


def load() -> str | None:
    """Register the handlers once; returns None on success, or why the library is unusable."""
    if "error" in _state:
        return _state["error"]  # type: ignore[return-value]
    error = None
    if not LIBRARY.exists():
        error = f"{LIBRARY} not built (run benchmarks/ffi_onednn/build.sh)"
    else:
        try:
            lib = ctypes.cdll.LoadLibrary(os.fspath(LIBRARY))
            jax.ffi.register_ffi_target(
                "fnn_onednn_conv_bwd_w",
                jax.ffi.pycapsule(lib.FnnOnednnConvBwdWeights),
                platform="cpu",
            )
            jax.ffi.register_ffi_target(
                "fnn_onednn_conv_fwd", jax.ffi.pycapsule(lib.FnnOnednnConvForward), platform="cpu"
            )
            _state["lib"] = lib
        except (OSError, AttributeError) as e:
            error = f"cannot load {LIBRARY}: {e}"
    _state["error"] = error
    return error


def available() -> bool:
    return load() is None


def _pad_attrs(padding) -> dict[str, np.int64]:
    (pt, pb), (pl, pr) = padding
    return {
        "pad_top": np.int64(pt),
        "pad_left": np.int64(pl),
        "pad_bottom": np.int64(pb),
        "pad_right": np.int64(pr),
    }


def kernel_grad(x, g, kernel_size, strides=(1, 1), padding=((1, 1), (1, 1))):
    """dL/dW ``[KH, KW, C, O]`` of ``y = conv(x, W)`` given ``g = dL/dy`` (oneDNN, CPU only)."""
    if load() is not None:
        raise RuntimeError(load())
    kh, kw = kernel_size
    out = jax.ShapeDtypeStruct((kh, kw, x.shape[-1], g.shape[-1]), jnp.float32)
    return jax.ffi.ffi_call("fnn_onednn_conv_bwd_w", out)(
        x,
        g,
        kh=np.int64(kh),
        kw=np.int64(kw),
        stride_h=np.int64(strides[0]),
        stride_w=np.int64(strides[1]),
        **_pad_attrs(padding),
    )


def conv_forward(x, w, strides=(1, 1), padding=((1, 1), (1, 1))):
    """``y = conv(x, w)``, NHWC / HWIO, explicit pads (oneDNN, CPU only)."""
    if load() is not None:
        raise RuntimeError(load())
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    (pt, pb), (pl, pr) = padding
    oh = (h + pt + pb - kh) // strides[0] + 1
    ow = (wd + pl + pr - kw) // strides[1] + 1
    out = jax.ShapeDtypeStruct((n, oh, ow, o), jnp.float32)
    return jax.ffi.ffi_call("fnn_onednn_conv_fwd", out)(
        x,
        w,
        stride_h=np.int64(strides[0]),
        stride_w=np.int64(strides[1]),
        **_pad_attrs(padding),
    )
