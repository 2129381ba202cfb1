"""The zoo's families beyond ResNet/VGG/MobileNetV2 (issue 14): DenseNet, MobileNetV3,
Inception v3, Xception, ResNet v2, EfficientNet-B, MobileNet v1, Inception-ResNet-v2, NASNet
(whose own checks are in test_zoo_nasnet.py).

Tiers: (1) file round trips: tiny random weights written in each source layout with NumPy /
h5py / safetensors (never by the code under test), read back and checked value by value against
the layout change written here (OIHW -> HWIO, [out, in] -> [in, out], Keras' [k, k, C, 1]
depthwise -> [k, k, 1, C]); (2) cross-checks (``crosscheck``, optional): the full network against
torchvision or Keras 3 with the same random weights (random BatchNorm statistics too), max
|Δlogit| <= 1e-4 at the native input size, and the same parameter count; (3) invariants: output
and feature shapes (``jax.eval_shape`` for the full networks, cheap), the features' channels
and strides as each `ModelSpec` declares them, and clear errors for bad inputs and bad files.
"""

from __future__ import annotations

import importlib
import zlib

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import zoo_reference as zr
from flax import nnx

from fnn.models._zoo_layers import KerasGraph, assign, read_keras_h5, weight_names
from fnn.models.zoo_spec import WeightsMismatchError

FAMILIES = {
    "densenet": ("densenet121", "densenet169", "densenet201"),
    "mobilenet_v3": ("mobilenet_v3_large", "mobilenet_v3_small"),
    "inception_v3": ("inception_v3",),
    "xception": ("xception",),
    "resnet_v2": ("resnet50_v2", "resnet101_v2", "resnet152_v2"),
    "efficientnet": tuple(f"efficientnet_b{i}" for i in range(8)),
    "mobilenet_v1": ("mobilenet",),
    "inception_resnet_v2": ("inception_resnet_v2",),
    "nasnet": ("nasnet_mobile", "nasnet_large"),
}
ALL = [(family, name) for family, names in FAMILIES.items() for name in names]


def spec_of(name):
    for family, names in FAMILIES.items():
        if name in names:
            return importlib.import_module(f"fnn.models.{family}").SPECS[name]
    raise KeyError(name)


def _build(family, **options):
    """A small network of each family (a few blocks)."""
    from fnn.models import (
        densenet,
        efficientnet,
        inception_resnet_v2,
        mobilenet_v1,
        mobilenet_v3,
        nasnet,
        resnet_v2,
        xception,
    )

    rngs = nnx.Rngs(0)
    builders = {
        "densenet": lambda: densenet.DenseNet(block_config=(1, 2, 1, 1), rngs=rngs, **options),
        "mobilenet_v3": lambda: mobilenet_v3.MobileNetV3("small", blocks=4, rngs=rngs, **options),
        "xception": lambda: xception.Xception(middle_blocks=1, rngs=rngs, **options),
        "resnet_v2": lambda: resnet_v2.ResNetV2(blocks=(2, 2, 2, 2), rngs=rngs, **options),
        "efficientnet": lambda: efficientnet.EfficientNet("b0", stages=3, rngs=rngs, **options),
        "mobilenet_v1": lambda: mobilenet_v1.MobileNet(alpha=0.25, blocks=5, rngs=rngs, **options),
        "inception_resnet_v2": lambda: inception_resnet_v2.InceptionResNetV2(
            repeats=(1, 1, 1), rngs=rngs, **options
        ),
        "nasnet": lambda: nasnet.NASNet(
            "mobile", num_blocks=2, penultimate_filters=96, rngs=rngs, **options
        ),
    }
    return builders[family]()


def tiny(family, **options):
    """The small network as shapes only (`nnx.eval_shape`: initialising it eagerly compiles
    hundreds of small XLA programs), eval mode. Its weights are whatever a test writes into it
    (a file's), or `filled` values inside one compiled forward (`forward`)."""
    model = nnx.eval_shape(lambda: _build(family, **options))
    model.eval()
    return model


def filled(key, leaf):
    """A value for one abstract state leaf, seeded by its path (``key``): every network built
    with other options gets the same value at the same path (the same weights, as one seed
    gives). Kernels ~ N(0, 1 / fan_in), BatchNorm scales near 1 and variances in [0.5, 1.5)."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key(0)
    if np.issubdtype(leaf.dtype, np.integer):
        return np.zeros(leaf.shape, leaf.dtype)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    name = key.rsplit("['", 1)[-1].split("']")[0]
    if name == "var":
        value = 0.5 + rng.random(leaf.shape)
    elif name == "scale":
        value = 1.0 + 0.1 * rng.standard_normal(leaf.shape)
    elif len(leaf.shape) >= 2:
        value = rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    else:
        value = 0.1 * rng.standard_normal(leaf.shape)
    return np.asarray(value, leaf.dtype)


def forward(models, x):
    """``[model(x) for model in models]`` in ONE compiled program, the weights `filled` by path
    and passed once: the networks' shared layers read the same inputs, so XLA's common
    subexpression elimination compiles a backbone the variants share once."""
    shared, parts = {}, []
    for model in models:
        graphdef, state = nnx.split(model)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
        keys = [jax.tree_util.keystr(path) for path, _ in leaves]
        for key, (_, leaf) in zip(keys, leaves, strict=True):
            if key not in shared:
                shared[key] = filled(key, leaf)
            assert shared[key].shape == leaf.shape, key  # one path, one shape in every variant
        parts.append((graphdef, treedef, keys))

    @jax.jit
    def run(shared, x):
        return [
            nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, [shared[k] for k in keys]))(x)
            for graphdef, treedef, keys in parts
        ]

    return run(shared, x)


LAYOUT = {
    "densenet": "torchvision",
    "mobilenet_v3": "torchvision",
    "inception_v3": "torchvision",
    "efficientnet": "torchvision",
    "xception": "keras",
    "resnet_v2": "keras",
    "mobilenet_v1": "keras",
    "inception_resnet_v2": "keras",
    "nasnet": "keras",
}
TINY = [f for f in FAMILIES if f != "inception_v3"]  # Inception v3 has no small configuration
# NASNet: test_zoo_nasnet.py checks its options (one network, jitted)
EAGER = [f for f in TINY if f != "nasnet"]


def flat_params(model):
    """``{path: array}`` of the parameters and BatchNorm statistics (leaves nothing wrote into
    an abstract model stay `jax.ShapeDtypeStruct`)."""
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    return {
        "/".join(map(str, p)): v.get_value()
        if isinstance(v.get_value(), jax.ShapeDtypeStruct)
        else np.asarray(v.get_value())
        for p, v in nnx.to_flat_state(state)
    }


def source_shape(shape, kind):
    """The shape a tensor has in its source file, written from each layout's documentation."""
    if kind == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "dense":
        return shape[::-1]
    if kind == "keras_depthwise":
        return (shape[0], shape[1], shape[3], shape[2])
    return shape


def to_flax(value, kind):
    if kind == "conv":
        return value.transpose(2, 3, 1, 0)
    if kind == "dense":
        return value.T
    if kind == "keras_depthwise":
        return value.reshape(value.shape[0], value.shape[1], 1, -1)
    return value


def random_source(model, layout, seed=0):
    """``{source key: array}`` with random values for every name of ``model``, and the names."""
    names = weight_names(model, layout)
    shapes = {k: v.shape for k, v in flat_params(model).items()}
    rng = np.random.default_rng(seed)
    flat = {}
    for path, (key, kind) in names.items():
        flat[key] = rng.standard_normal(source_shape(shapes[path], kind)).astype(np.float32)
    return flat, names


def write_keras3(path, flat):
    """A Keras 3 ``.weights.h5``: ``layers/<name>/vars/<i>``."""
    with h5py.File(path, "w") as f:
        layers = f.create_group("layers")
        f.create_group("vars")
        for key, value in flat.items():
            layer, i = key.split("/")
            group = layers.require_group(layer).require_group("vars")
            group.create_dataset(i, data=value)


def write_legacy(path, flat, rename=None):
    """A Keras 2 ``.h5`` (``save_weights``): ``layer_names`` and per-layer ``weight_names``."""
    rename = rename or {}
    layers: dict[str, list] = {}
    for key, value in flat.items():
        layer, i = key.split("/")
        layers.setdefault(rename.get(layer, layer), []).append((int(i), value))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for layer, values in layers.items():
            group = f.create_group(layer)
            wnames = [f"{layer}/w{i}:0".encode() for i, _ in sorted(values, key=lambda t: t[0])]
            group.attrs["weight_names"] = wnames
            for (_, value), wname in zip(sorted(values, key=lambda t: t[0]), wnames, strict=True):
                group.create_dataset(wname.decode(), data=value)


def check_loaded(model, flat, names):
    params = flat_params(model)
    for path, (key, kind) in names.items():
        assert not isinstance(params[path], jax.ShapeDtypeStruct), f"{path} was not written"
        np.testing.assert_array_equal(params[path], to_flax(flat[key], kind), err_msg=path)


# ---------------------------------------------------------------------------------------------
# (1) file round trips


@pytest.mark.parametrize("family", TINY)
def test_file_roundtrip(family, tmp_path):
    """Random weights saved in the family's layout (safetensors with torchvision's keys, or Keras'
    two .h5 formats) load onto the model, every value where the layout says."""
    model = tiny(family)
    layout = LAYOUT[family]
    spec = next(iter(importlib.import_module(f"fnn.models.{family}").SPECS.values()))
    if layout == "torchvision":
        from safetensors.numpy import save_file

        from fnn import weights

        flat, names = random_source(model, "torchvision")
        flat["features.0.1.num_batches_tracked"] = np.zeros((), np.int64)
        save_file(flat, str(tmp_path / "w.safetensors"))
        loaded = weights.load(tmp_path / "w.safetensors")
        assign(model, spec.convert(model, loaded))
        del flat["features.0.1.num_batches_tracked"]
        check_loaded(model, flat, names)
    else:
        flat, names = random_source(model, "keras3")
        write_keras3(tmp_path / "w.weights.h5", flat)
        assign(model, spec.convert(model, read_keras_h5(tmp_path / "w.weights.h5")))
        check_loaded(model, flat, names)
        legacy, lnames = random_source(model, "keras", seed=1)
        # automatic names carry a session-dependent counter: conv2d#0 -> conv2d_7, ...
        rename = {}
        for key in legacy:
            layer = key.split("/")[0]
            if "#" in layer:
                cls, rank = layer.split("#")
                rename[layer] = f"{cls}_{int(rank) + 7}"
        write_legacy(tmp_path / "legacy.h5", legacy, rename)
        assign(model, spec.convert(model, read_keras_h5(tmp_path / "legacy.h5")))
        check_loaded(model, legacy, lnames)


def test_known_source_names():
    """The names follow the references' (spot checks written from torchvision / Keras)."""
    from fnn.models import densenet, mobilenet_v1, xception

    def abstract(build, **kw):  # shapes only: the names need no weights
        return nnx.eval_shape(lambda: build(rngs=nnx.Rngs(0), **kw))

    dn = weight_names(abstract(densenet.DenseNet, block_config=(1, 1, 1, 1)), "torchvision")
    keys = {k for k, _ in dn.values()}
    assert {
        "features.conv0.weight",
        "features.denseblock1.denselayer1.conv2.weight",
        "features.transition3.norm.running_var",
        "classifier.weight",
    } <= keys
    xc = weight_names(abstract(xception.Xception, middle_blocks=1), "keras")
    assert xc["conv1/conv/conv/kernel"] == ("block1_conv1/0", "keras_conv")
    assert xc["block2/sep1/sep/depthwise/conv/kernel"] == ("block2_sepconv1/0", "keras_depthwise")
    assert xc["block2/shortcut/conv/kernel"] == ("conv2d#0/0", "keras_conv")
    mn = weight_names(abstract(mobilenet_v1.MobileNet, blocks=2), "keras3")
    assert mn["blocks/1/dw/conv/conv/kernel"] == ("depthwise_conv2d_1/0", "keras_depthwise")
    assert mn["preds/conv/kernel"] == ("conv2d_3/0", "keras_conv")


def test_keras_graph_order():
    """Keras orders a functional model's layers by depth (longest path to the output, deepest
    first), ties by the first visit of a depth-first search from the output that takes each
    layer's inputs in order; creation order only fixes the legacy automatic names.

    Graph (creation order c, b1, b2, p1, p2): ``a -> c`` and ``a -> b1 -> b2``, ``d = add(b2,
    c)``, then ``p1, p2`` both on ``d`` and ``out = concat(p2, p1)``.
    """
    g = KerasGraph()
    a = g.add("input_layer", "in")
    c = g.add("conv2d", None, (a,))  # a shortcut, created first (as in Xception)
    b1 = g.add("conv2d", "b1", (a,))
    b2 = g.add("conv2d", None, (b1,))
    d = g.add("add", "d", (b2, c))
    p1 = g.add("conv2d", "p1", (d,))
    p2 = g.add("conv2d", "p2", (d,))
    out = g.add("concatenate", "out", (p2, p1))
    names = g.names(out)
    # b1 is the deepest; b2 and c tie, b2 is met first (d's first input); p2 before p1
    assert [names[n][1] for n in (b1, b2, c, p2, p1)] == [
        "conv2d",
        "conv2d_1",
        "conv2d_2",
        "conv2d_3",
        "conv2d_4",
    ]
    assert (names[c][0], names[b2][0], names[p1][0]) == ("conv2d#0", "conv2d#1", "p1")


# ---------------------------------------------------------------------------------------------
# (3) shapes, features, bad inputs


@pytest.mark.parametrize("family", EAGER)
def test_tiny_outputs(family):
    """Every option of a small network (the same weights in each, one compiled program)."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 75, 75, 3)), jnp.float32)
    options = [
        dict(num_classes=7),
        dict(num_classes=7, classifier_activation="softmax"),
        dict(include_top=False),
        dict(include_top=False, pooling="avg"),
        dict(include_top=False, pooling="max"),
        dict(features=True),
    ]
    logits, probs, fmap, avg, mx, maps = forward([tiny(family, **o) for o in options], x)
    assert logits.shape == (2, 7) and bool(jnp.all(jnp.isfinite(logits)))
    assert float(jnp.std(logits)) > 1e-3  # not a constant: the weights reached the logits
    np.testing.assert_allclose(np.asarray(probs), np.asarray(jax.nn.softmax(logits)), atol=1e-6)
    assert fmap.ndim == 4 and fmap.shape[0] == 2
    scale = float(np.abs(np.asarray(fmap)).max())
    np.testing.assert_allclose(
        np.asarray(avg), np.asarray(fmap).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6 * scale
    )
    np.testing.assert_allclose(np.asarray(mx), np.asarray(fmap).max(axis=(1, 2)), rtol=1e-6)
    assert [m.shape[0] for m in maps] == [2] * len(maps)
    sizes = [m.shape[1] for m in maps]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


# one network per family (and B3, whose width 1.2 rounds channels) always; the deeper variants
# of the same code only in slow runs (tracing them takes minutes on a shared CPU)
QUICK = {"densenet121", "mobilenet_v3_small", "mobilenet_v3_large", "inception_v3", "xception"}
QUICK |= {"resnet50_v2", "efficientnet_b0", "efficientnet_b3", "mobilenet"}
# (NASNet: test_zoo_nasnet.py checks a narrow network's features; the full one traces in minutes)
# Inception-ResNet-v2's 40 residual blocks keep their channels and grid: the quick test traces it
# with one block of each kind (`test_shallow_features_match_spec`); the full depth's names are
# test_timm_layout.py's `test_inception_resnet_v2_names` (898 keys)
SHALLOW = ["inception_resnet_v2"]  # `_build`: repeats=(1, 1, 1)


def _check_features(spec, build, label):
    """Logits shape, and each feature map's channels and stride as ``spec`` declares them (the
    stride checked as ceil(input / reduction), within the valid convolutions' lost pixels for
    the Inception family), traced abstractly at the spec's input size."""
    size = spec.input_size[0]
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    options = dict(include_top=True, pooling=None, classifier_activation=None)
    model = nnx.eval_shape(
        lambda: build(num_classes=10, features=False, rngs=nnx.Rngs(0), **options)
    )
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (1, 10)
    fmodel = nnx.eval_shape(
        lambda: build(num_classes=10, features=True, rngs=nnx.Rngs(0), **options)
    )
    maps = nnx.eval_shape(lambda m, x: m(x), fmodel, x)
    assert tuple(m.shape[-1] for m in maps) == spec.feature_channels
    for m, r in zip(maps, spec.feature_reductions, strict=True):
        # "same" padding gives ceil(size / r); Inception's valid convolutions lose a few pixels
        assert (size - 40) // r <= m.shape[1] <= -(-size // r), (label, m.shape, r)


@pytest.mark.parametrize(
    ("family", "name"),
    [(f, n) if n in QUICK else pytest.param(f, n, marks=pytest.mark.heavy) for f, n in ALL],
)
def test_full_features_match_spec(family, name):
    """Full networks, traced abstractly (see `_check_features`)."""
    spec = spec_of(name)
    _check_features(spec, spec.build, name)


@pytest.mark.parametrize("family", SHALLOW)
def test_shallow_features_match_spec(family):
    """The family's network with fewer repeated blocks (which keep channels and grid) against
    the full network's spec; the full depth is ``heavy`` in `test_full_features_match_spec`."""
    module = importlib.import_module(f"fnn.models.{family}")
    spec = next(iter(module.SPECS.values()))

    def build(rngs, **options):  # `_build` seeds its own nnx.Rngs(0)
        return _build(family, **options)

    _check_features(spec, build, family)


@pytest.mark.parametrize("family", TINY)
def test_bad_inputs(family):
    model = tiny(family)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\].*\(75, 75, 3\)"):
        model(jnp.zeros((75, 75, 3)))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\].*\(1, 75, 75, 1\)"):
        model(jnp.zeros((1, 75, 75, 1)))
    with pytest.raises(ValueError, match=r"H, W >= \d+.*\(16, 16\)"):
        model(jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(TypeError, match="float"):
        model(jnp.zeros((1, 75, 75, 3), jnp.uint8))


def test_bad_options():
    from fnn.models import densenet, efficientnet, mobilenet_v3, resnet_v2

    with pytest.raises(ValueError, match="pooling must be None, 'avg' or 'max', got 'mean'"):
        densenet.DenseNet(
            block_config=(1, 1, 1, 1), include_top=False, pooling="mean", rngs=nnx.Rngs(0)
        )
    with pytest.raises(ValueError, match=r"depth must be one of \[121, 169, 201\], got 100"):
        densenet.DenseNet(100, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="variant must be one of"):
        efficientnet.EfficientNet("b8", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="variant must be 'large' or 'small'"):
        mobilenet_v3.MobileNetV3("medium", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="depth must be one of"):
        resnet_v2.ResNetV2(34, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        densenet.DenseNet(block_config=(1, 1, 1, 1), num_classes=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown activation 'softplus'"):
        densenet.DenseNet(
            block_config=(1, 1, 1, 1), classifier_activation="softplus", rngs=nnx.Rngs(0)
        )


def test_mismatched_files_name_the_parameter():
    from fnn.models import densenet, xception

    model = nnx.eval_shape(lambda: densenet.DenseNet(block_config=(1, 1, 1, 1), rngs=nnx.Rngs(0)))
    spec = densenet.SPECS["densenet121"]
    flat, _ = random_source(model, "torchvision")
    bad = dict(flat)
    bad["features.conv0.weight"] = np.zeros((32, 3, 7, 7), np.float32)
    with pytest.raises(
        WeightsMismatchError,
        match=r"conv0/conv/kernel.*features.conv0.weight.*\(32, 3, 7, 7\).*\(7, 7, 3, 64\)",
    ):
        spec.convert(model, bad)
    missing = {k: v for k, v in flat.items() if k != "features.norm5.running_mean"}
    missing["features.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(
        WeightsMismatchError,
        match=r"1 missing keys \['features.norm5.running_mean'\].*1 unexpected keys \['features.extra.weight'\]",
    ):
        spec.convert(model, missing)
    # a headless model tolerates the file's classifier; the head can be skipped
    headless = nnx.eval_shape(
        lambda: densenet.DenseNet(block_config=(1, 1, 1, 1), include_top=False, rngs=nnx.Rngs(0))
    )
    assert "classifier.weight" in flat and spec.convert(headless, flat)
    skipped = spec.convert(model, flat, skip=(r"head/.*",))
    assert not any(k.startswith("head/") for k in skipped)
    xm = nnx.eval_shape(lambda: xception.Xception(middle_blocks=1, rngs=nnx.Rngs(0)))
    with pytest.raises(WeightsMismatchError, match="missing keys"):
        xception.SPECS["xception"].convert(xm, {"block1_conv1/0": np.zeros((3, 3, 3, 32))})


def test_read_keras_h5_errors(tmp_path):
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.attrs["layer_names"] = []
    with pytest.raises(ValueError, match="no Keras layer weights"):
        read_keras_h5(tmp_path / "empty.h5")


# ---------------------------------------------------------------------------------------------
# (2) cross-checks against the references


TORCHVISION = [n for f, n in ALL if LAYOUT[f] == "torchvision"]
KERAS = {
    "xception": "Xception",
    "resnet50_v2": "ResNet50V2",
    "resnet101_v2": "ResNet101V2",
    "resnet152_v2": "ResNet152V2",
    "mobilenet": "MobileNet",
    "inception_resnet_v2": "InceptionResNetV2",
    "nasnet_mobile": "NASNetMobile",
    "nasnet_large": "NASNetLarge",
}


def _params(model, *collections):
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, *collections)))


@pytest.mark.crosscheck
@pytest.mark.parametrize("name", TORCHVISION)
def test_crosscheck_torchvision(name, tmp_path):
    tv = zr.torchvision()
    import torch

    spec = spec_of(name)
    size = spec.input_size[0]
    torch.manual_seed(0)
    kwargs = (
        {"aux_logits": True, "init_weights": True, "transform_input": True}
        if name == "inception_v3"
        else {}
    )
    ref = getattr(tv.models, name)(**kwargs)
    zr.randomize_torch_bn(ref)
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    zr.scale_torch_logits(ref, x)
    expected = zr.torch_logits(ref, x)
    flat = zr.torch_state_file(ref, tmp_path / "w.pth")
    model = spec.build(
        num_classes=1000,
        include_top=True,
        pooling=None,
        classifier_activation=None,
        features=False,
        rngs=nnx.Rngs(1),
    )
    zr.load_converted(spec, model, flat)
    got = zr.fnn_logits(model, x)
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    aux = sum(p.numel() for n, p in ref.named_parameters() if n.startswith("AuxLogits"))
    assert _params(model, nnx.Param) == sum(p.numel() for p in ref.parameters()) - aux


@pytest.mark.crosscheck
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.heavy) if n == "nasnet_large" else n for n in KERAS],
)
def test_crosscheck_keras(name, tmp_path):
    keras = zr.keras()
    spec = spec_of(name)
    size = spec.input_size[0]
    keras.utils.set_random_seed(0)
    ref = getattr(keras.applications, KERAS[name])(
        weights=None, classifier_activation=None, input_shape=(size, size, 3)
    )
    zr.randomize_keras_bn(ref)
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    if name != "mobilenet":  # its classifier is a 1x1 convolution, logits ~1 as they are
        zr.scale_keras_logits(ref, x)
    expected = np.asarray(ref(x, training=False))
    flat = zr.keras_weights_file(ref, tmp_path / "w.weights.h5")
    model = spec.build(
        num_classes=1000,
        include_top=True,
        pooling=None,
        classifier_activation=None,
        features=False,
        rngs=nnx.Rngs(1),
    )
    zr.load_converted(spec, model, flat)
    got = zr.fnn_logits(model, x)
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert _params(model, nnx.Any(nnx.Param, nnx.BatchStat)) == ref.count_params()
