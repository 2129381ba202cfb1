"""GPU and TPU paths proven without a GPU: every model's train step, exported for ``cuda`` and
``tpu`` with `jax.export` on this CPU machine, uses XLA's native operations there, and fnn's CPU
formulations only on CPU.

fnn has three hand-written formulations that pay on XLA:CPU only, each chosen by
`jax.lax.platform_dependent`: `fnn.conv`'s canonical VJP (backward convolutions as channels-last
forward convolutions, the input transposed eight images at a time), `fnn.pool`'s reshape pooling
and the depthwise convolution as shifted sums (EfficientNet-Lite's and the zoo's: pads, k²
strided slices, one variadic reduction of k² results in the backward pass). On GPU and TPU the same functions must
lower to ``stablehlo.convolution`` with JAX's own VJP (cuDNN, TPU convolution units; grouped
convolutions, ``feature_group_count = C``, for depthwise), ``reduce_window`` and
``select_and_scatter``. The tests read the exported StableHLO text (no compilation, no device):
each formulation has a structural signature, below, and each check also runs for ``cpu``, where
the opposite must hold, so that a gate that picks the wrong branch fails here.

Adding a model: append one line to `MODELS`, ``(name, factory, input_shape)`` (and its name to
`HEAVY` when its three exports take over a minute), where ``factory(rngs)`` builds the model and
``input_shape`` is a small ``[N, H, W, C]`` batch (the model is only traced, never run; a batch
that equals no layer's channel count, as the kernel-gradient signature below needs). Per-layer
expectations come from the model itself: every convolution kernel larger than 1×1 must have a
native kernel-gradient convolution on GPU/TPU and none on CPU, and every grouped or depthwise
layer a grouped convolution on GPU/TPU and none on CPU. A model built on ``flax.nnx.Conv`` rather
than `fnn.conv.Conv` fails the CPU half: that is the slow path
inside compiled loops that fnn's convolution exists to avoid.
"""

from __future__ import annotations

import functools
import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fnn.models
from fnn.conv import Conv, conv2d
from fnn.models._zoo_common import depthwise_conv as zoo_depthwise
from fnn.models.efficientnet_lite import DepthwiseConv, depthwise_conv2d
from fnn.pool import max_pool
from fnn.steps import ModelSpec, TrainState, make_train_step


def _zoo(module: str, cls: str, *args, **kw):
    """A zoo network with 10 classes (the families not exported by `fnn.models`)."""
    return getattr(importlib.import_module(f"fnn.models.{module}"), cls)(
        *args, num_classes=10, **kw
    )


# (name, factory(rngs) -> model, input shape [N, H, W, C]): one line per model in fnn.
MODELS = [
    ("ReferenceCNN", lambda rngs: fnn.models.ReferenceCNN(rngs=rngs), (16, 32, 32, 3)),
    (
        "SimpleCNN",
        lambda rngs: fnn.models.SimpleCNN(
            10, input_shape=(16, 16, 3), filters=(8, 24), batch_norm=True, rngs=rngs
        ),
        (16, 16, 16, 3),
    ),
    (
        "EfficientNet-Lite0",
        lambda rngs: fnn.models.EfficientNetLite("lite0", num_classes=10, rngs=rngs),
        (2, 32, 32, 3),
    ),
    ("MobileNetV2", lambda rngs: fnn.models.MobileNetV2(num_classes=10, rngs=rngs), (2, 32, 32, 3)),
    ("ResNet50", lambda rngs: fnn.models.ResNet(50, num_classes=10, rngs=rngs), (2, 32, 32, 3)),
    ("VGG16", lambda rngs: fnn.models.VGG(16, num_classes=10, rngs=rngs), (2, 32, 32, 3)),
    ("MobileNet", lambda rngs: _zoo("mobilenet_v1", "MobileNet", rngs=rngs), (2, 32, 32, 3)),
    (
        "MobileNetV3Small",
        lambda rngs: _zoo("mobilenet_v3", "MobileNetV3", "small", rngs=rngs),
        (2, 32, 32, 3),
    ),
    (
        "MobileNetV3Large",
        lambda rngs: _zoo("mobilenet_v3", "MobileNetV3", "large", rngs=rngs),
        (2, 32, 32, 3),
    ),
    (
        "EfficientNetB0",
        lambda rngs: _zoo("efficientnet", "EfficientNet", "b0", rngs=rngs),
        (2, 32, 32, 3),
    ),
    ("ResNet50V2", lambda rngs: _zoo("resnet_v2", "ResNetV2", 50, rngs=rngs), (2, 32, 32, 3)),
    ("DenseNet121", lambda rngs: _zoo("densenet", "DenseNet", 121, rngs=rngs), (2, 32, 32, 3)),
    ("Xception", lambda rngs: _zoo("xception", "Xception", rngs=rngs), (2, 71, 71, 3)),
    ("InceptionV3", lambda rngs: _zoo("inception_v3", "InceptionV3", rngs=rngs), (2, 75, 75, 3)),
    (
        "InceptionResNetV2[repeats=1,1,1]",  # each block type once: the full network is heavy
        lambda rngs: _zoo("inception_resnet_v2", "InceptionResNetV2", repeats=(1, 1, 1), rngs=rngs),
        (2, 75, 75, 3),
    ),
    (
        "InceptionResNetV2",
        lambda rngs: _zoo("inception_resnet_v2", "InceptionResNetV2", rngs=rngs),
        (2, 75, 75, 3),
    ),
    (
        "NASNetMobile[1@96]",  # every cell and layer kind, narrow: the full network is heavy
        lambda rngs: _zoo("nasnet", "NASNet", num_blocks=1, penultimate_filters=96, rngs=rngs),
        (5, 32, 32, 3),  # it has layers of 1, 2, 4 and 8 channels
    ),
    ("NASNetMobile", lambda rngs: _zoo("nasnet", "NASNet", "mobile", rngs=rngs), (2, 32, 32, 3)),
]
# Models whose three exports (cpu, cuda, tpu) take over a minute here: `heavy`, opt-in with
# --run-heavy (measured 2026-12-06, CPU seconds per export: InceptionResNetV2 39, DenseNet121 17,
# InceptionV3 12, EfficientNetB0 and MobileNetV3Large 7, the others under 6; NASNetMobile[1@96]
# ~20 s wall per export on a loaded machine, the full NASNetMobile minutes).
HEAVY = {"InceptionResNetV2", "NASNetMobile"}


def _model_names() -> list:
    return [
        pytest.param(name, marks=pytest.mark.heavy) if name in HEAVY else name
        for name, _, _ in MODELS
    ]


PLATFORMS = ("cpu", "cuda", "tpu")
NATIVE = ("cuda", "tpu")
_FORWARD_DIMS = "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"  # channels-last, as the layers run


# ----------------------------------------------------------------------------------------------
# Reading StableHLO text.


def _dims(t: str) -> tuple[int, ...]:
    """``tensor<16x32x32x3xf32>`` -> ``(16, 32, 32, 3)``; scalars -> ``()``."""
    return tuple(int(d) for d in re.findall(r"(\d+)x", t))


def _convolutions(text: str) -> list[dict]:
    """Every ``stablehlo.convolution``: dimension numbers, group counts, operand/result shapes."""
    out = []
    for line in text.splitlines():
        if "stablehlo.convolution" not in line:
            continue
        types = re.search(r": \((tensor<[^>]*>), (tensor<[^>]*>)\) -> (tensor<[^>]*>)", line)
        out.append(
            {
                "dims": re.search(r"dim_numbers = (\[.*?\]x\[.*?\]->\[.*?\])", line).group(1),
                "batch_groups": int(re.search(r"batch_group_count = (\d+)", line).group(1)),
                "feature_groups": int(re.search(r"feature_group_count = (\d+)", line).group(1)),
                "lhs": _dims(types.group(1)),
                "rhs": _dims(types.group(2)),
                "out": _dims(types.group(3)),
            }
        )
    return out


def _functions(text: str) -> list[str]:
    """The module's functions (SSA names are local to each)."""
    return text.split("func.func ")[1:]


_SLICE = re.compile(r"stablehlo\.slice (%[\w#]+) \[([^\]]*)\] : \((tensor<[^>]*>)\)")


def _slices_by_operand(text: str):
    """``(operand shape, [per-axis (start, stop, step)] per slice)`` for every sliced value."""
    for body in _functions(text):
        groups: dict[tuple, list] = {}
        shapes: dict[tuple, tuple] = {}
        for name, spec, t in _SLICE.findall(body):
            ranges = []
            for part in spec.split(","):
                nums = [int(v) for v in part.strip().split(":")]
                ranges.append((nums[0], nums[1], nums[2] if len(nums) > 2 else 1))
            groups.setdefault((name, t), []).append(ranges)  # names recur in nested regions
            shapes[name, t] = _dims(t)
        for name, slices in groups.items():
            yield shapes[name], slices


def cpu_signatures(text: str, batch: int) -> dict[str, int]:
    """How often each CPU-only formulation of fnn appears in an exported program.

    * ``shifted_windows`` (depthwise forward / input gradient): one padded ``[N, H, W, C]`` value
      cut into ≥ 4 strided views that keep the batch and channels whole and move over H and W.
    * ``tap_reduction`` (depthwise kernel gradient): one ``stablehlo.reduce`` with k² ≥ 4 results.
    * ``batch_blocks`` (`fnn.conv`'s blocked transposes): one value cut along the batch axis into
      ≥ 2 consecutive blocks that keep every other axis whole.
    * ``window_reshapes`` (`fnn.pool`): ``[N, S1, ..., C] -> [N, S1/k1, k1, ..., C]``.
    * ``conv_grad_as_forward`` (`fnn.conv`'s kernel gradient): a convolution in the layers'
      channels-last form whose lhs is the input with batch and channels swapped, ``[C, S..., N]``
      (``N = batch``), so that the images are contracted: every layer's own convolution has the
      batch first instead. (Missed on CPU only if a layer has ``batch`` input channels.)
    """
    counts = dict.fromkeys(
        (
            "shifted_windows",
            "tap_reduction",
            "batch_blocks",
            "window_reshapes",
            "conv_grad_as_forward",
        ),
        0,
    )
    for shape, slices in _slices_by_operand(text):
        if len(shape) < 3:
            continue
        whole = [(0, shape[a], 1) for a in range(len(shape))]
        if len(slices) >= 4 and all(s[0] == whole[0] and s[-1] == whole[-1] for s in slices):
            if len({tuple(s[1:-1]) for s in slices}) >= 4:  # forward and backward: twice
                counts["shifted_windows"] += 1
        if len(slices) >= 2 and all(s[1:] == whole[1:] and s[0][2] == 1 for s in slices):
            starts = sorted(s[0][:2] for s in slices)
            if starts[0][0] == 0 and all(a[1] == b[0] for a, b in zip(starts, starts[1:])):
                counts["batch_blocks"] += 1
    counts["tap_reduction"] = sum(
        int(k) >= 4 for k in re.findall(r"%[\w#]+:(\d+) = stablehlo\.reduce\(", text)
    )
    for a, b in re.findall(
        r"stablehlo\.reshape %[\w#]+ : \((tensor<[^>]*>)\) -> (tensor<[^>]*>)", text
    ):
        src, dst = _dims(a), _dims(b)
        nd = len(src) - 2
        if nd >= 1 and len(dst) == len(src) + nd and dst[0] == src[0] and dst[-1] == src[-1]:
            window = [dst[2 + 2 * i] for i in range(nd)]
            if any(k > 1 for k in window) and all(
                dst[1 + 2 * i] * dst[2 + 2 * i] == src[1 + i] for i in range(nd)
            ):
                counts["window_reshapes"] += 1
    for c in _convolutions(text):
        if c["dims"] == _FORWARD_DIMS and c["lhs"][0] != batch and c["lhs"][-1] == batch:
            counts["conv_grad_as_forward"] += 1
    return counts


def native_signatures(text: str) -> dict[str, int]:
    """XLA's native operations: convolutions (all, grouped, JAX's backward forms), pooling."""
    convs = _convolutions(text)
    return {
        "convolution": len(convs),
        "grouped_convolution": sum(c["feature_groups"] > 1 for c in convs),
        "native_conv_grad": sum(c["dims"] != _FORWARD_DIMS for c in convs),
        "reduce_window": text.count("stablehlo.reduce_window"),
        "select_and_scatter": text.count("stablehlo.select_and_scatter"),
    }


# ----------------------------------------------------------------------------------------------
# Exporting train steps without running anything.


def _abstract_state(factory, tx) -> TrainState:
    """`TrainState.create`'s result as shapes only (`nnx.eval_shape`: no initialiser runs).

    `TrainState.create` itself copies the arrays with compiled programs, which need values;
    `test_abstract_state_matches_train_state_create` keeps the two in step.
    """
    model = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    scalar = jax.ShapeDtypeStruct
    return TrainState(
        step=scalar((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=jax.eval_shape(tx.init, params),
        lr_scale=scalar((), jnp.float32),
        spec=ModelSpec(model, tx),
    )


@functools.cache
def _model(name: str):
    factory, shape = {n: (f, s) for n, f, s in MODELS}[name]
    return factory, shape, _abstract_state(factory, optax.adam(1e-3))


@functools.cache
def _train_step():
    """One jitted train step for every export: `jax.export` reuses its trace (the costly part,
    ~10 s for DenseNet121 against ~1 s per lowering) when the same model is exported for the
    next platform."""
    return make_train_step("sparse_categorical_crossentropy")


@functools.cache
def _exported_step(name: str, platform: str) -> str:
    """The StableHLO text of ``name``'s train step (forward, backward, Adam) for ``platform``."""
    _, shape, state = _model(name)
    batch = {
        "image": jax.ShapeDtypeStruct(shape, jnp.float32),
        "label": jax.ShapeDtypeStruct(shape[:1], jnp.int32),
    }
    step = _train_step()
    exported = jax.export.export(step, platforms=(platform,))(state, batch, jax.random.key(0))
    return exported.mlir_module()


def _layers(name: str) -> list[tuple[tuple[int, ...], int, bool]]:
    """``(kernel shape, groups, fnn's own)`` of every convolution layer larger than 1×1 in the
    model; fnn's own layers (`fnn.conv.Conv`, EfficientNet-Lite's depthwise) have CPU forms."""
    _, _, state = _model(name)
    model = nnx.merge(state.spec.graphdef, state.params, state.model_state)
    layers = []
    for _, module in nnx.iter_graph(model):
        kernel = getattr(module, "kernel", None)
        if not isinstance(module, nnx.Module) or not isinstance(kernel, nnx.Param):
            continue
        shape = tuple(kernel.shape)
        if len(shape) != 4 or shape[:2] == (1, 1):
            continue
        groups = getattr(module, "feature_group_count", 1)
        if isinstance(module, DepthwiseConv):
            groups = shape[-1]
        layers.append((shape, groups, isinstance(module, Conv | DepthwiseConv)))
    return layers


# ----------------------------------------------------------------------------------------------
# The models' train steps.


def test_abstract_state_matches_train_state_create():
    factory = MODELS[1][1]
    tx = optax.adam(1e-3)
    real = TrainState.create(factory(nnx.Rngs(0)), tx)
    abstract = _abstract_state(factory, tx)
    real, abstract = real.replace(spec=None), abstract.replace(spec=None)  # ModelSpec: by identity
    assert jax.tree.structure(real) == jax.tree.structure(abstract)
    shapes = jax.tree.map(lambda a: (a.shape, a.dtype), real)
    assert shapes == jax.tree.map(lambda a: (a.shape, a.dtype), abstract)


@pytest.mark.parametrize("platform", NATIVE)
@pytest.mark.parametrize("name", _model_names())
def test_train_step_lowers_to_native_operations_on_gpu_and_tpu(name, platform):
    text = _exported_step(name, platform)
    batch = _model(name)[1][0]
    cpu_only = cpu_signatures(text, batch)
    assert not any(cpu_only.values()), f"{name} on {platform}: CPU formulations {cpu_only}"
    native = native_signatures(text)
    assert native["convolution"] > 0, native
    convs = _convolutions(text)
    assert _layers(name), f"{name}: no convolution layers found to check"
    for kernel, groups, _ in _layers(name):
        grads = [c for c in convs if c["out"] == kernel and c["dims"] != _FORWARD_DIMS]
        assert any(c["batch_groups"] == groups for c in grads), (
            f"{name} on {platform}: no native kernel-gradient convolution for kernel {kernel} "
            f"(groups {groups})"
        )
        if groups > 1:
            assert any(c["feature_groups"] == groups and c["rhs"] == kernel for c in convs), (
                f"{name} on {platform}: no grouped convolution (feature_group_count={groups}) "
                f"for kernel {kernel}"
            )
    cpu = cpu_signatures(_exported_step(name, "cpu"), batch)
    if cpu["window_reshapes"]:  # the model pools: natively here
        assert native["reduce_window"] and native["select_and_scatter"], native


@pytest.mark.parametrize("name", _model_names())
def test_train_step_uses_fnns_cpu_formulations_on_cpu(name):
    """fnn's own layers take their CPU forms on CPU. (Models built on ``flax.nnx.Conv`` get XLA's
    own forms there, and only their GPU/TPU half is checked; the zoo's families use
    `fnn.conv.Conv`.)"""
    text = _exported_step(name, "cpu")
    ours = [(kernel, groups) for kernel, groups, own in _layers(name) if own]
    if not ours:
        pytest.skip(f"{name} has no layer of fnn's with a CPU form (flax.nnx.Conv)")
    assert any(cpu_signatures(text, _model(name)[1][0]).values())
    convs = _convolutions(text)
    for kernel, groups in ours:
        native_grads = [c for c in convs if c["out"] == kernel and c["dims"] != _FORWARD_DIMS]
        assert not native_grads, f"{name}: XLA's own kernel gradient for {kernel} on CPU"
        grouped = [c for c in convs if c["feature_groups"] > 1 and c["rhs"] == kernel]
        assert not grouped, f"{name}: grouped convolution for {kernel} (groups {groups}) on CPU"


def test_each_model_shows_the_formulations_its_layers_use_on_cpu():
    """The signatures find what the models are made of (so their absence elsewhere means
    something): blocked transposes and reshape pools in the reference CNN (batch 16), shifted
    sums in EfficientNet, kernel gradients as forward convolutions in both."""
    ref = cpu_signatures(_exported_step("ReferenceCNN", "cpu"), 16)
    assert ref["batch_blocks"] >= 1 and ref["window_reshapes"] >= 1, ref
    assert ref["conv_grad_as_forward"] >= 4, ref  # one per 3×3 layer (outlined calls aside)
    assert ref["shifted_windows"] == ref["tap_reduction"] == 0, ref
    eff = cpu_signatures(_exported_step("EfficientNet-Lite0", "cpu"), 2)
    assert eff["shifted_windows"] >= 1 and eff["tap_reduction"] >= 1, eff
    assert eff["conv_grad_as_forward"] >= 1, eff  # the 3×3 stem


# ----------------------------------------------------------------------------------------------
# Each custom-gradient path alone (cheap, and names the culprit when a model test fails).


def _export(fn, platform, *shapes):
    args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    return jax.export.export(jax.jit(fn), platforms=(platform,))(*args).mlir_module()


def _conv_loss(x, w):
    return jnp.sum(conv2d(x, w, strides=1, padding="SAME") ** 2)


def _depthwise_loss(x, w):
    return jnp.sum(depthwise_conv2d(x, w, 2) ** 2)


def _pool_loss(x):
    return jnp.sum(max_pool(x, (2, 2), strides=(2, 2)) ** 2)


def _zoo_depthwise_loss(x, w):  # MobileNetV2's: PyTorch's symmetric padding, stride 2
    return jnp.sum(zoo_depthwise(x, w, 2, 1) ** 2)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_fnn_conv_gradient_by_platform(platform):
    text = _export(jax.grad(_conv_loss, argnums=(0, 1)), platform, (16, 32, 32, 32), (3, 3, 32, 8))
    cpu, native = cpu_signatures(text, 16), native_signatures(text)
    if platform == "cpu":
        assert cpu["batch_blocks"] >= 1 and cpu["conv_grad_as_forward"] == 1, cpu
        assert native["native_conv_grad"] == 0, native
    else:
        assert not any(cpu.values()), cpu
        assert native["native_conv_grad"] == 2, native  # JAX's input and kernel gradients


@pytest.mark.parametrize("platform", PLATFORMS)
def test_depthwise_gradient_by_platform(platform):
    text = _export(jax.grad(_depthwise_loss, argnums=(0, 1)), platform, (2, 9, 9, 6), (3, 3, 1, 6))
    cpu, native = cpu_signatures(text, 2), native_signatures(text)
    if platform == "cpu":
        assert cpu["shifted_windows"] >= 1 and cpu["tap_reduction"] == 1, cpu
        assert native["convolution"] == 0, native
    else:
        assert not any(cpu.values()), cpu
        convs = _convolutions(text)
        assert sum(c["feature_groups"] == 6 for c in convs) == 2, convs  # forward, input grad
        assert sum(c["batch_groups"] == 6 for c in convs) == 1, convs  # kernel gradient


@pytest.mark.parametrize("platform", PLATFORMS)
def test_zoo_depthwise_gradient_by_platform(platform):
    text = _export(
        jax.grad(_zoo_depthwise_loss, argnums=(0, 1)), platform, (2, 9, 9, 6), (3, 3, 1, 6)
    )
    cpu, native = cpu_signatures(text, 2), native_signatures(text)
    if platform == "cpu":
        assert cpu["shifted_windows"] >= 1 and cpu["tap_reduction"] == 1, cpu
        assert native["convolution"] == 0, native
    else:
        assert not any(cpu.values()), cpu
        convs = _convolutions(text)
        assert sum(c["feature_groups"] == 6 for c in convs) == 2, convs  # forward, input grad
        assert sum(c["batch_groups"] == 6 for c in convs) == 1, convs  # kernel gradient


@pytest.mark.parametrize("platform", PLATFORMS)
def test_max_pool_gradient_by_platform(platform):
    text = _export(jax.grad(_pool_loss), platform, (4, 8, 8, 3))
    cpu, native = cpu_signatures(text, 4), native_signatures(text)
    if platform == "cpu":
        assert cpu["window_reshapes"] >= 1, cpu
        assert native["reduce_window"] == native["select_and_scatter"] == 0, native
    else:
        assert cpu["window_reshapes"] == 0, cpu
        assert native["reduce_window"] >= 1 and native["select_and_scatter"] == 1, native


def _grouped(x, w, stride):
    """XLA's grouped convolution with TensorFlow "SAME" padding: what GPUs and TPUs run."""
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )  # fmt: skip


def test_depthwise_gpu_branch_equals_the_cpu_formulation():
    """The grouped convolution that GPUs and TPUs get computes what the shifted sums compute
    (run here on CPU: CI has no GPU), values and both gradients, for odd and even sizes."""
    rng = np.random.default_rng(0)
    for stride, k, size in [(1, 3, 7), (2, 3, 8), (2, 5, 9), (1, 5, 6)]:
        x = jnp.asarray(rng.normal(size=(2, size, size, 4)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(k, k, 1, 4)), jnp.float32)
        np.testing.assert_allclose(
            _grouped(x, w, stride), depthwise_conv2d(x, w, stride), rtol=1e-5, atol=1e-5
        )
        ours = jax.grad(lambda a, b, s=stride: jnp.sum(depthwise_conv2d(a, b, s) ** 2), (0, 1))
        xla = jax.grad(lambda a, b, s=stride: jnp.sum(_grouped(a, b, s) ** 2), (0, 1))
        for got, want in zip(ours(x, w), xla(x, w), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
