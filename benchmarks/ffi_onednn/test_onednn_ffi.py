"""oneDNN FFI convolutions equal JAX's within float32 tolerance (skipped unless built).

Run: PYTHONPATH=$PWD python -m pytest benchmarks/ffi_onednn -q -p no:cacheprovider
(after benchmarks/ffi_onednn/build.sh; not collected by CI, whose testpaths are spec_tests/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onednn_ffi  # noqa: E402

needs_library = pytest.mark.skipif(not onednn_ffi.available(), reason=str(onednn_ffi.load()))

DNUMS = ("NHWC", "HWIO", "NHWC")
# (batch, size, C, O, stride, padding): the reference CNN's four layers at a small batch, plus
# a strided, asymmetrically padded case.
CASES = [
    (4, 32, 3, 32, 1, ((1, 1), (1, 1))),
    (4, 32, 32, 32, 1, ((1, 1), (1, 1))),
    (4, 16, 32, 64, 1, ((1, 1), (1, 1))),
    (4, 16, 64, 64, 1, ((1, 1), (1, 1))),
    (3, 9, 5, 7, 2, ((0, 1), (1, 0))),
]


def _data(n, s, c, o, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, s, s, c), dtype=np.float32)
    w = rng.standard_normal((3, 3, c, o), dtype=np.float32) / np.sqrt(9 * c)
    return jnp.asarray(x), jnp.asarray(w)


def _conv(x, w, stride, padding):
    return lax.conv_general_dilated(
        x, w, (stride, stride), padding, dimension_numbers=DNUMS, precision="highest"
    )


@needs_library
@pytest.mark.parametrize("n,s,c,o,stride,padding", CASES)
def test_kernel_grad_equals_vjp(n, s, c, o, stride, padding):
    x, w = _data(n, s, c, o, 0)
    y, vjp = jax.vjp(lambda w: _conv(x, w, stride, padding), w)
    g = jnp.asarray(np.random.default_rng(1).standard_normal(y.shape, dtype=np.float32))
    (expected,) = vjp(g)
    got = jax.jit(lambda x, g: onednn_ffi.kernel_grad(x, g, (3, 3), (stride, stride), padding))(
        x, g
    )
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * scale)


@needs_library
@pytest.mark.parametrize("n,s,c,o,stride,padding", CASES)
def test_forward_equals_lax(n, s, c, o, stride, padding):
    x, w = _data(n, s, c, o, 2)
    expected = _conv(x, w, stride, padding)
    got = jax.jit(lambda x, w: onednn_ffi.conv_forward(x, w, (stride, stride), padding))(x, w)
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * scale)


def test_missing_library_is_reported_not_raised(monkeypatch, tmp_path):
    """Without a built library the module says why (the fallback's message), and calls raise it."""
    monkeypatch.setattr(onednn_ffi, "LIBRARY", tmp_path / "libonednn_conv.so")
    monkeypatch.setattr(onednn_ffi, "_state", {})
    assert not onednn_ffi.available()
    assert "not built" in onednn_ffi.load() and "build.sh" in onednn_ffi.load()
    with pytest.raises(RuntimeError, match="not built"):
        onednn_ffi.kernel_grad(jnp.ones((1, 4, 4, 1)), jnp.ones((1, 4, 4, 1)), (3, 3))
