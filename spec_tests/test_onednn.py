"""oneDNN convolutions on CPU (`fnn.onednn`, issue 18): equal to the pure-JAX path, or a clean
fallback that says why.

With oneDNN available (``pip install "fnn[onednn]"`` and a C++ compiler on x86-64 Linux):
`fnn.conv`'s forward convolution, input gradient and kernel gradient are FFI custom calls (checked
in the lowered program) and equal the pure-JAX path (``implementation="canonical"``) within
float32 tolerance for the reference CNN's layers and a strided, unevenly padded case; cases the
calls do not cover fall back per call; second derivatives, `jax.vmap` and `jax.export` (which
must see portable operations only) work; a two-epoch `fit` of the reference CNN matches
``FNN_ONEDNN=0``. These skip, with `fnn.onednn.status` as the reason, when oneDNN is unavailable.

Always: ``FNN_ONEDNN=0``, a missing extra, a missing compiler, a failing build and another CPU
each give the pure-JAX path, a status that says why, and a warning only when the extra is
installed but unusable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fnn
from fnn import onednn
from fnn.conv import conv2d

needs_onednn = pytest.mark.skipif(not onednn.available(), reason=onednn.status())

# (batch, size, C, O, stride, padding): the reference CNN's four 3×3 SAME layers at a small
# batch, a strided, asymmetrically padded case and TensorFlow-"SAME" at stride 2 on even sizes.
CASES = [
    (4, 32, 3, 32, 1, "SAME"),
    (4, 32, 32, 32, 1, "SAME"),
    (4, 16, 32, 64, 1, "SAME"),
    (4, 16, 64, 64, 1, "SAME"),
    (3, 9, 5, 7, 2, ((0, 1), (1, 0))),
    (2, 10, 4, 6, 2, "SAME"),
]


@pytest.fixture
def restore_decision():
    """Put fnn's decision back as it was after the test."""
    saved = dict(onednn._state)
    yield
    onednn._state.clear()
    onednn._state.update(saved)


@pytest.fixture
def fresh_decision(restore_decision, monkeypatch, tmp_path):
    """Let a test make fnn decide again, in an empty cache folder."""
    onednn._reset()
    monkeypatch.setenv("FNN_ONEDNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FNN_ONEDNN", raising=False)


def _data(n, s, c, o, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, s, s, c), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, c, o), dtype=np.float32) / np.sqrt(9 * c))
    return x, w


def _value_and_grads(implementation, stride, padding, **kw):
    def loss(x, w):
        y = conv2d(x, w, strides=stride, padding=padding, implementation=implementation, **kw)
        return jnp.sum(jnp.sin(y)), y

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def _assert_close(got, expected):
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * scale)


@needs_onednn
@pytest.mark.parametrize("n,s,c,o,stride,padding", CASES)
def test_forward_and_both_gradients_equal_pure_jax(n, s, c, o, stride, padding):
    x, w = _data(n, s, c, o)
    fast = _value_and_grads("auto", stride, padding)
    (_, y), (dx, dw) = fast(x, w)
    (_, y0), (dx0, dw0) = _value_and_grads("canonical", stride, padding)(x, w)
    _assert_close(y, y0)
    _assert_close(dx, dx0)
    _assert_close(dw, dw0)
    text = fast.lower(x, w).as_text()
    assert onednn.TARGETS["bwd_w"] in text, "kernel gradient not through oneDNN"
    assert text.count(onednn.TARGETS["fwd"]) >= (2 if stride == 1 else 1), "forward / dx"


@needs_onednn
@pytest.mark.parametrize(
    "kw",
    [
        {"feature_group_count": 2},
        {"kernel_dilation": 2},
        {"padding": ((3, 0), (0, 3))},  # pads of the kernel size: outside the covered cases
    ],
)
def test_uncovered_cases_fall_back_per_call(kw):
    x, w = _data(2, 12, 4, 6)
    if kw.get("feature_group_count") == 2:
        w = w[:, :, :2]
    padding = kw.pop("padding", "SAME")
    fast = _value_and_grads("auto", 1, padding, **kw)
    assert "fnn_onednn" not in fast.lower(x, w).as_text()
    (_, y), grads = fast(x, w)
    (_, y0), grads0 = _value_and_grads("canonical", 1, padding, **kw)(x, w)
    _assert_close(y, y0)
    for a, b in zip(grads, grads0):
        _assert_close(a, b)


@needs_onednn
def test_second_derivatives_and_vmap_match_pure_jax():
    x, w = _data(2, 8, 3, 4)

    def outer(implementation):
        def inner(w):
            dx = jax.grad(lambda x: jnp.sum(conv2d(x, w, implementation=implementation) ** 2))(x)
            dw = jax.grad(lambda w: jnp.sum(conv2d(x, w, implementation=implementation) ** 2))(w)
            return jnp.sum(dx**2) + jnp.sum(dw * w)

        return jax.jit(jax.grad(inner))(w)

    _assert_close(outer("auto"), outer("canonical"))
    batched = jax.jit(jax.vmap(lambda x: conv2d(x, w)))(x[:, None])
    _assert_close(batched[:, 0], conv2d(x, w, implementation="canonical"))


@needs_onednn
def test_export_sees_portable_convolutions_and_jit_the_custom_calls():
    x, w = _data(2, 8, 3, 4)
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(conv2d(x, w) ** 2), argnums=(0, 1)))
    assert onednn.TARGETS["bwd_w"] in grad.lower(x, w).as_text()
    for platform in ("cpu", "cuda"):
        text = jax.export.export(grad, platforms=(platform,))(x, w).mlir_module()
        assert "fnn_onednn" not in text and "stablehlo.convolution" in text, platform


@needs_onednn
@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs 2 host devices (spec_tests/conftest.py)")
def test_partitioned_programs_use_pure_jax_and_shard_map_the_custom_calls():
    """XLA's partitioner cannot split a custom call (it would gather the batch onto every device):
    a batch-sharded jit gets the pure form; inside shard_map each device runs oneDNN on its part."""
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((2,), ("b",), axis_types=(AxisType.Auto,), devices=jax.devices()[:2])
    x, w = _data(4, 8, 3, 4)
    xs = jax.device_put(x, NamedSharding(mesh, P("b")))
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(conv2d(x, w) ** 2), argnums=(0, 1)))
    assert "fnn_onednn" not in grad.lower(xs, w).compile().as_text()
    per_device = jax.jit(
        jax.shard_map(lambda x: conv2d(x, w), mesh=mesh, in_specs=P("b"), out_specs=P("b"))
    )
    assert onednn.TARGETS["fwd"] in per_device.lower(xs).compile().as_text()
    _assert_close(per_device(xs), conv2d(x, w, implementation="canonical"))


@needs_onednn
def test_library_is_built_into_the_user_cache_not_the_source_tree():
    status = onednn.status()
    assert status.startswith("oneDNN (") and status.endswith(".so)"), status
    library = Path(status[len("oneDNN (") : -1])
    assert library.is_file() and library.parent.parent == onednn._cache_root(), library
    assert onednn.SOURCE.parent.parent not in library.parents, library


def _fit_reference_cnn():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 16, 16, 3)).astype(np.float32)
    y = rng.integers(0, 10, 64).astype(np.int32)
    model = fnn.models.ReferenceCNN(input_shape=(16, 16, 3), rngs=nnx.Rngs(0))
    trainer = fnn.train.compile(
        model,
        optimizer="adam",
        loss=fnn.losses.get("sparse_categorical_crossentropy", from_logits=True),
        devices=1,
    )
    history = trainer.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    probe = trainer.predict(x[:8], verbose=0)
    return np.asarray(history.history["loss"]), np.asarray(probe)


@needs_onednn
def test_fit_of_reference_cnn_matches_pure_jax(restore_decision, monkeypatch):
    assert onednn.available()
    losses, probe = _fit_reference_cnn()
    monkeypatch.setenv("FNN_ONEDNN", "0")
    onednn._reset()
    assert not onednn.available()
    losses0, probe0 = _fit_reference_cnn()
    assert len(losses) == 2
    np.testing.assert_allclose(losses, losses0, rtol=1e-4)
    np.testing.assert_allclose(probe, probe0, rtol=1e-3, atol=1e-5)


# ---- fallback: always run ----------------------------------------------------------------------


def _pure_jax_still_works():
    x, w = _data(2, 8, 3, 4)
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(conv2d(x, w) ** 2), argnums=(0, 1)))
    assert "fnn_onednn" not in grad.lower(x, w).as_text()
    expected = jax.grad(
        lambda x, w: jnp.sum(conv2d(x, w, implementation="xla") ** 2), argnums=(0, 1)
    )(x, w)
    for a, b in zip(grad(x, w), expected):
        _assert_close(a, b)


def test_switch_off_forces_pure_jax(fresh_decision, monkeypatch, recwarn):
    monkeypatch.setenv("FNN_ONEDNN", "0")
    assert not onednn.available()
    assert onednn.status() == "pure JAX: disabled by FNN_ONEDNN=0"
    _pure_jax_still_works()
    assert not [w for w in recwarn if "oneDNN" in str(w.message)]


def test_missing_extra_is_reported_without_warning(fresh_decision, monkeypatch, recwarn):
    monkeypatch.setattr(onednn, "_LIBRARY_DIST", "fnn-no-such-onednn-distribution")
    monkeypatch.setattr(onednn, "_HEADERS_DIST", "fnn-no-such-onednn-distribution")
    monkeypatch.setattr(onednn.platform, "machine", lambda: "x86_64")
    assert not onednn.available()
    assert "not installed" in onednn.status() and "fnn[onednn]" in onednn.status()
    _pure_jax_still_works()
    assert not [w for w in recwarn if "oneDNN" in str(w.message)]


def _pretend_onednn_is_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(onednn.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(onednn, "_find_onednn", lambda: (tmp_path, tmp_path, "0.0"))


def test_missing_compiler_falls_back_and_says_so_once(fresh_decision, monkeypatch, tmp_path):
    _pretend_onednn_is_installed(monkeypatch, tmp_path)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(onednn.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert not onednn.available()
    assert onednn.status() == "pure JAX: no C++ compiler found ($CXX, g++ or c++ on PATH)"
    _pure_jax_still_works()  # no second warning: the decision is made once (pytest.warns above)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to see a build fail")
def test_failed_build_reports_the_compilers_last_lines(fresh_decision, monkeypatch, tmp_path):
    _pretend_onednn_is_installed(monkeypatch, tmp_path)
    broken = tmp_path / "broken.cc"
    broken.write_text("int main( { return 0; }\n")
    monkeypatch.setattr(onednn, "SOURCE", broken)
    with pytest.warns(RuntimeWarning, match="building broken.cc failed"):
        assert not onednn.available()
    assert "error" in onednn.status()
    assert not list((tmp_path / "cache").rglob("*.so*")), "a failed build left a library behind"
    _pure_jax_still_works()


def test_other_cpus_use_pure_jax(fresh_decision, monkeypatch):
    monkeypatch.setattr(onednn.platform, "machine", lambda: "aarch64")
    assert not onednn.available()
    assert "x86-64 Linux only" in onednn.status() and "aarch64" in onednn.status()
    _pure_jax_still_works()
