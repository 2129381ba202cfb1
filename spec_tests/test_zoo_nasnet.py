"""NASNet-A Mobile and Large (issue 14): the family's own checks.

test_zoo_families.py runs the checks every family shares on NASNet too: Keras 3 ``.weights.h5``
and legacy ``.h5`` round trips of a tiny network written with h5py, bad inputs, the full
networks' feature channels and strides, and the full cross-check against
``keras.applications.NASNetMobile`` / ``NASNetLarge`` (the Large one ``heavy``). Here:
(1) oracles: Keras' ``correct_pad`` zero padding, the "adjust" block's two-path factorised
reduction and the padding-excluding average pool, transcribed in float64 NumPy; (2) parameter
counts against the Keras applications table, Keras 3 key spot checks, and (``crosscheck``) tiny
networks of both variants against Keras' own ``NASNet`` builder at an odd, non-square size;
(3) shapes of the tiny network (jitted: its eager first call compiles ~1,500 small programs),
the input size rule, options, the registry and the preprocessing.
"""

from __future__ import annotations

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import zoo_reference as zr
from flax import nnx
from test_zoo_families import check_loaded, forward, random_source, write_keras3

from fnn import preprocessing, pretrained
from fnn.models import nasnet, registry
from fnn.models._zoo_layers import KerasGraph, read_keras_h5, weight_names
from fnn.models.zoo_spec import WeightsMismatchError

TINY = dict(num_blocks=1, penultimate_filters=96)  # F = 4: stem cells of 1 and 2 filters
TWO = dict(num_blocks=2, penultimate_filters=96)  # every adjust mode (projections too)


@functools.cache
def tiny(variant="mobile", **options):
    """The tiny network as shapes only (`nnx.eval_shape`; cached: tracing it is not free), eval
    mode: `forward` fills its weights inside one compiled program (initialising it eagerly
    compiles ~1,500 small programs)."""
    model = nnx.eval_shape(lambda: nasnet.NASNet(variant, rngs=nnx.Rngs(0), **TINY, **options))
    model.eval()
    return model


@functools.cache
def abstract(variant="mobile", **config):
    return nnx.eval_shape(lambda: nasnet.NASNet(variant, rngs=nnx.Rngs(0), **config))


def run(model, x):
    """The model's forward pass, compiled once (eagerly every op compiles on its own)."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, jnp.asarray(x))


def count(model, *collections):
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, *collections)))


# ---------------------------------------------------------------------------------------------
# (1) oracles


@pytest.mark.parametrize("size", [6, 7])
@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_correct_pad_is_keras_rule(size, kernel):
    """Keras' ``correct_pad``: ``k//2`` zeros after, ``k//2`` before on an odd side and one less on
    an even side; an unpadded stride-2 window then gives ceil(size / 2) outputs."""
    x = np.arange(1.0, 1.0 + size * (size + 1)).reshape(1, size, size + 1, 1)
    got = np.asarray(nasnet.correct_pad(jnp.asarray(x, jnp.float32), kernel))
    pads = [(kernel // 2 - (n % 2 == 0), kernel // 2) for n in (size, size + 1)]
    want = np.pad(x, ((0, 0), *pads, (0, 0)))
    np.testing.assert_array_equal(got, want)
    for n, (before, after) in zip((size, size + 1), pads, strict=True):
        assert (n + before + after - kernel) // 2 + 1 == -(-n // 2)


def _bn64(x, bn):
    v = {k: np.asarray(getattr(bn.bn, k).get_value(), np.float64) for k in ("scale", "bias")}
    v |= {k: np.asarray(getattr(bn.bn, k).get_value(), np.float64) for k in ("mean", "var")}
    return (x - v["mean"]) / np.sqrt(v["var"] + 1e-3) * v["scale"] + v["bias"]


def _randomize(module, seed=0):
    rng = np.random.default_rng(seed)
    state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
    for path, var in nnx.to_flat_state(state):
        shape = var.get_value().shape
        value = rng.standard_normal(shape)
        if path[-1] == "var":
            value = 0.5 + np.abs(value)
        var.set_value(jnp.asarray(value, jnp.float32))


@pytest.mark.parametrize("size", [7, 8])
def test_adjust_factorized_reduction_oracle(size):
    """The adjust block on a grid twice as fine, as Keras writes it: ReLU; path 1 = 1x1 average
    pool stride 2 (every other pixel) then a 1x1 convolution; path 2 = zero-pad one row and column
    after, crop one before (a one-pixel shift), the same pool and another 1x1 convolution;
    concatenate, BatchNorm (eps 1e-3)."""
    g = KerasGraph()
    p, ip = g.add("input_layer"), g.add("input_layer")
    half = -(-size // 2)
    adjust = nasnet.Adjust(
        g, nasnet._Tensor(p, 5, 1), nasnet._Tensor(ip, 8, 2), 8, "t", rngs=nnx.Rngs(0)
    )
    assert adjust.mode == "reduce"
    _randomize(adjust)
    adjust.eval()  # BatchNorm with its moving statistics
    x = np.random.default_rng(1).standard_normal((2, size, size, 5))
    got = np.asarray(adjust(jnp.asarray(x, jnp.float32), jnp.zeros((2, half, half, 8))))
    r = np.maximum(x, 0.0)
    path1 = r[:, ::2, ::2]
    path2 = np.pad(r, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:][:, ::2, ::2]
    w1 = np.asarray(adjust.conv1.conv.kernel.get_value(), np.float64)[0, 0]
    w2 = np.asarray(adjust.conv2.conv.kernel.get_value(), np.float64)[0, 0]
    want = _bn64(np.concatenate([path1 @ w1, path2 @ w2], axis=-1), adjust.bn)
    assert got.shape == (2, half, half, 8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_stride1_average_pool_excludes_padding():
    """Keras' (TensorFlow's) "SAME" average pool divides by the pixels inside the image: a corner
    averages 4 pixels, an edge 6, the inside 9."""
    x = np.random.default_rng(0).standard_normal((1, 5, 6, 2))
    got = np.asarray(nasnet._avg3(jnp.asarray(x, jnp.float32)))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ones = np.pad(np.ones_like(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    sums = sum(padded[:, a : a + 5, b : b + 6] for a in range(3) for b in range(3))
    counts = sum(ones[:, a : a + 5, b : b + 6] for a in range(3) for b in range(3))
    np.testing.assert_allclose(got, sums / counts, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# (2) parameters and names


@functools.cache
def _abstract(name):
    spec = registry.get(name)
    options = dict(num_classes=1000, include_top=True, pooling=None, classifier_activation=None)
    return nnx.eval_shape(lambda: spec.build(features=False, rngs=nnx.Rngs(0), **options))


# Keras' count_params() of keras.applications.NASNetMobile / NASNetLarge (weights=None), as in
# the applications table (BatchNorm moving statistics included), and its trainable part
PARAMS = {"nasnet_mobile": (5_326_716, 5_289_978), "nasnet_large": (88_949_818, 88_753_150)}


@pytest.mark.parametrize(
    "name", ["nasnet_mobile", pytest.param("nasnet_large", marks=pytest.mark.heavy)]
)
def test_parameter_counts_match_keras(name):
    model = _abstract(name)
    total, trainable = PARAMS[name]
    assert count(model, nnx.Any(nnx.Param, nnx.BatchStat)) == total
    assert count(model, nnx.Param) == trainable


# Keras 3 keys of a few layers of the tiny network, read from Keras' model.layers
KERAS3 = {
    "stem_conv1": "conv2d",
    "stem_bn1": "batch_normalization",
    "adjust_conv_1_0": "conv2d_5",
    "adjust_conv_2_0": "conv2d_6",
    "adjust_bn_0": "batch_normalization_24",
    "separable_conv_2_normal_left5_0": "separable_conv2d_29",
    "reduction_conv_1_reduce_1": "conv2d_8",
}


def test_keras_names():
    """Legacy .h5 names are Keras' layer names; Keras 3 keys the class rank in Keras' layer order
    (ranks read from ``keras.applications.nasnet.NASNet(penultimate_filters=96, num_blocks=1)``'s
    ``model.layers``)."""
    model = abstract(**TINY)
    legacy = weight_names(model, "keras")
    assert legacy["stem_conv/conv/kernel"] == ("stem_conv1/0", "keras_conv")
    assert legacy["stem_bn/bn/var"] == ("stem_bn1/3", "vector")
    assert legacy["cells/0/left1/sep1/depthwise/conv/kernel"] == (
        "separable_conv_1_reduction_left1_stem_1/0",
        "keras_depthwise",
    )
    assert legacy["cells/0/left1/sep1/pointwise/conv/kernel"] == (
        "separable_conv_1_reduction_left1_stem_1/1",
        "keras_conv",
    )
    assert legacy["cells/2/adjust/conv2/conv/kernel"] == ("adjust_conv_2_0/0", "keras_conv")
    assert legacy["head/fc/linear/kernel"] == ("predictions/0", "keras_dense")
    # two normal cells per stage: the second one projects p (the cell input before) to its width
    two = abstract(**TWO)
    assert two.cells[3].adjust.mode == "project"
    assert weight_names(two, "keras")["cells/3/adjust/conv1/conv/kernel"] == (
        "adjust_conv_projection_1/0",
        "keras_conv",
    )
    k3 = {path: key.split("/")[0] for path, (key, _) in weight_names(model, "keras3").items()}
    assert k3["stem_conv/conv/kernel"] == KERAS3["stem_conv1"]
    assert k3["stem_bn/bn/scale"] == KERAS3["stem_bn1"]
    assert k3["cells/2/adjust/conv1/conv/kernel"] == KERAS3["adjust_conv_1_0"]
    assert k3["cells/2/adjust/conv2/conv/kernel"] == KERAS3["adjust_conv_2_0"]
    assert k3["cells/2/adjust/bn/bn/scale"] == KERAS3["adjust_bn_0"]
    assert (
        k3["cells/2/left5/sep2/pointwise/conv/kernel"] == KERAS3["separable_conv_2_normal_left5_0"]
    )
    assert k3["cells/3/conv/conv/kernel"] == KERAS3["reduction_conv_1_reduce_1"]
    assert k3["head/fc/linear/kernel"] == "dense"


# sha256 of Keras' "<layer name>=<Keras 3 key>" lines, sorted, for the 245 weighted layers of
# keras.src.applications.nasnet.NASNet(penultimate_filters=96, num_blocks=2, ...) (the same for
# skip_reduction True and False)
KERAS3_TABLE = "6c6362cb20cd8a8b9961ea9ef7c1b36188df69403f25fbe902a05ecb15a1ec92"


def test_keras3_key_table_matches_keras():
    """Every weighted layer's Keras 3 key (its class rank in Keras' layer order, which the
    graph's depths and branch order decide) against the table Keras gives for the same network
    (stored as a hash; the ``crosscheck`` tests show the difference with Keras installed)."""
    model = abstract(**TWO)
    legacy, k3 = weight_names(model, "keras"), weight_names(model, "keras3")
    lines = {f"{legacy[p][0].split('/')[0]}={k3[p][0].split('/')[0]}" for p in legacy}
    assert len(lines) == 245
    assert hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest() == KERAS3_TABLE


# ---------------------------------------------------------------------------------------------
# (3) shapes, sizes, options, files


def test_tiny_outputs_and_features():
    x = np.random.default_rng(0).standard_normal((2, 75, 64, 3)).astype(np.float32)
    options = [dict(num_classes=7), dict(features=True), dict(include_top=False, pooling="avg")]
    logits, maps, avg = forward([tiny(**o) for o in options], x)
    assert logits.shape == (2, 7) and bool(jnp.all(jnp.isfinite(logits)))
    assert float(jnp.std(logits)) > 1e-3  # not a constant: the weights reached the logits
    # stem (75-3)//2+1 = 37, (64-3)//2+1 = 31, then each reduction cell ceil(n / 2)
    assert [m.shape for m in maps] == [
        (2, 37, 31, 32),
        (2, 19, 16, 4),
        (2, 10, 8, 24),
        (2, 5, 4, 48),
        (2, 3, 2, 96),
    ]
    assert all(float(m.min()) >= 0.0 for m in maps)  # each after the ReLU its consumers apply
    # the same weights (`forward` fills each path alike) give the same backbone: the headless,
    # average-pooled output
    fmap = np.asarray(maps[-1])
    np.testing.assert_allclose(np.asarray(avg), fmap.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_input_size_rule():
    """Keras needs 224 / 331 with the top and >= 32 without; fnn takes any H, W >= 32 either way
    (global average pooling before the classifier), non-square too."""
    model = tiny(num_classes=7)
    x = jax.ShapeDtypeStruct((1, 32, 45, 3), jnp.float32)
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (1, 7)
    with pytest.raises(ValueError, match=r"NASNetMobile cannot take 31x40.*H, W >= 32.*\(31, 40\)"):
        model(jnp.zeros((1, 31, 40, 3)))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\].*\(1, 3, 64, 64\)"):
        model(jnp.zeros((1, 3, 64, 64)))
    assert registry.get("nasnet_mobile").min_input_size == 32


def test_bad_options():
    with pytest.raises(ValueError, match=r"variant must be one of \['large', 'mobile'\], got 'x'"):
        nasnet.NASNet("x", rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match="multiple of 24 \\* filter_multiplier\\*\\*2 = 96, got 100"
    ):
        nasnet.NASNet(penultimate_filters=100, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_blocks must be an int >= 1, got 0"):
        nasnet.NASNet(num_blocks=0, penultimate_filters=96, rngs=nnx.Rngs(0))


def test_mismatched_file_names_path_and_shapes(tmp_path):
    model = nnx.eval_shape(lambda: nasnet.NASNet(rngs=nnx.Rngs(0), **TINY))  # written into
    spec = nasnet.SPECS["nasnet_mobile"]
    flat, names = random_source(model, "keras3")
    stem_key = names["stem_conv/conv/kernel"][0]
    bad = dict(flat)
    bad[stem_key] = np.zeros((3, 3, 3, 96), np.float32)  # a NASNetLarge stem
    write_keras3(tmp_path / "bad.weights.h5", bad)
    with pytest.raises(
        WeightsMismatchError,
        match=rf"first mismatch at stem_conv/conv/kernel \(source key '{stem_key}', shape "
        r"\(3, 3, 3, 96\).*expects \(3, 3, 3, 32\)",
    ):
        spec.convert(model, read_keras_h5(tmp_path / "bad.weights.h5"))
    missing = {k: v for k, v in flat.items() if k != stem_key}
    missing["conv2d_999/0"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(WeightsMismatchError, match=r"missing keys.*unexpected keys.*conv2d_999/0"):
        spec.convert(model, missing)
    # a headless model tolerates the file's classifier and loads the rest
    headless = nnx.eval_shape(lambda: nasnet.NASNet(include_top=False, rngs=nnx.Rngs(0), **TINY))
    zr.load_converted(spec, headless, flat)
    check_loaded(headless, flat, weight_names(headless, "keras3"))


def test_load_reads_keras_files_by_layer(tmp_path):
    """`pretrained.load(name, weights=path)` reads a Keras-layout family's HDF5 file as
    ``"<layer>/<index>"`` keys (what the converters map), not as raw HDF5 dataset paths."""
    flat = {"stem_conv1/0": np.ones((3, 3, 3, 32), np.float32), "stem_bn1/0": np.ones(32)}
    write_keras3(tmp_path / "w.weights.h5", flat)
    got = pretrained._read(tmp_path / "w.weights.h5", "keras")
    assert sorted(got) == sorted(flat)
    np.testing.assert_array_equal(got["stem_conv1/0"], flat["stem_conv1/0"])


def test_registry_and_preprocess():
    assert {"nasnet_mobile", "nasnet_large"} <= set(pretrained.NAMES)
    mobile, large = registry.get("NASNetMobile"), registry.get("nasnet-large")
    assert (mobile.name, large.name) == ("nasnet_mobile", "nasnet_large")
    assert (mobile.input_size, large.input_size) == ((224, 224), (331, 331))
    assert (mobile.published_top1, large.published_top1) == (74.4, 82.5)  # Keras' table
    assert mobile.layout == large.layout == "keras" and mobile.weights_source is None
    assert mobile.reference == "keras.applications.NASNetMobile"
    assert mobile.feature_channels == (32, 44, 264, 528, 1056)
    assert large.feature_channels == (96, 168, 1008, 2016, 4032)
    # nasnet.preprocess_input is mode "tf": p / 127.5 - 1 (a constant image stays constant)
    for spec in (mobile, large):
        image = np.zeros((300, 400, 3), np.uint8)
        image[..., 0], image[..., 1], image[..., 2] = 0, 51, 255
        out = np.asarray(preprocessing.apply(image, spec.preprocess))
        assert out.shape == (1, *spec.input_size, 3)
        np.testing.assert_allclose(out[0, 10, 10], [-1.0, 51 / 127.5 - 1, 1.0], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# (2) cross-checks: tiny networks against Keras' own builder


@pytest.mark.crosscheck
@pytest.mark.parametrize("variant", ["mobile", "large"])
def test_crosscheck_tiny_keras(variant, tmp_path):
    """Both variants' cell wiring (Large keeps the old ``p`` after its reductions; two normal
    cells per stage, so every kind of adjust block) at an odd, non-square size (75 x 64: odd and
    even sides through the reductions), through a Keras 3 file."""
    keras = zr.keras()
    from keras.src.applications.nasnet import NASNet as KerasNASNet

    config = nasnet.VARIANTS[variant]
    keras.utils.set_random_seed(0)
    ref = KerasNASNet(
        input_shape=(75, 64, 3),
        penultimate_filters=96,
        num_blocks=2,
        stem_block_filters=config["stem_filters"],
        skip_reduction=config["skip_reduction"],
        weights=None,
        classes=7,
        classifier_activation=None,
        default_size=config["size"],
    )
    zr.randomize_keras_bn(ref)
    x = np.random.default_rng(0).standard_normal((2, 75, 64, 3)).astype(np.float32)
    zr.scale_keras_logits(ref, x)
    expected = np.asarray(ref(x, training=False))
    flat = zr.keras_weights_file(ref, tmp_path / "w.weights.h5")
    model = nasnet.NASNet(variant, num_classes=7, rngs=nnx.Rngs(1), **TWO)
    zr.load_converted(nasnet.SPECS[f"nasnet_{variant}"], model, flat)
    got = np.asarray(run(model, x))
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert count(model, nnx.Any(nnx.Param, nnx.BatchStat)) == ref.count_params()
