"""timm's state-dict layout (`fnn.models.timm_layout`) through `fnn.pretrained.load`.

Always on: a random MobileNetV2 written twice with ``safetensors.numpy`` (torchvision's names,
and timm's ``mobilenetv2_100`` names from a transcription of timm's module tree written here)
loads to identical parameters; wrong files and refused timm networks raise clear errors.
Cross-checks (``crosscheck``, need torch, torchvision and timm): timm's own networks with random
weights and BatchNorm statistics, saved with ``safetensors.torch.save_file``, loaded by fnn,
same logits to 1e-4 at the native input size.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zoo_reference as zr

from fnn import pretrained
from fnn.models import timm_layout
from fnn.models.zoo_spec import WeightsMismatchError, model_arrays

safetensors_numpy = pytest.importorskip("safetensors.numpy")

# torchvision's / timm's MobileNetV2: (expansion t, channels c, repeats n) per stage.
MBV2 = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))


def mobilenet_v2_pairs():
    """``[(torchvision key, timm mobilenetv2_100 key, torch shape)]``, every tensor of both."""
    pairs = []

    def conv(tv, tm, shape):
        pairs.append((f"{tv}.weight", f"{tm}.weight", shape))

    def bn(tv, tm, c):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            pairs.append((f"{tv}.{leaf}", f"{tm}.{leaf}", (c,)))
        pairs.append((f"{tv}.num_batches_tracked", f"{tm}.num_batches_tracked", ()))

    conv("features.0.0", "conv_stem", (32, 3, 3, 3))
    bn("features.0.1", "bn1", 32)
    cin, f = 32, 1
    for s, (t, c, n) in enumerate(MBV2):
        for i in range(n):
            tv, tm, hid = f"features.{f}.conv", f"blocks.{s}.{i}", cin * t
            if t == 1:  # timm's DepthwiseSeparableConv: dw, bn1, pw, bn2
                conv(f"{tv}.0.0", f"{tm}.conv_dw", (cin, 1, 3, 3))
                bn(f"{tv}.0.1", f"{tm}.bn1", cin)
                conv(f"{tv}.1", f"{tm}.conv_pw", (c, cin, 1, 1))
                bn(f"{tv}.2", f"{tm}.bn2", c)
            else:  # timm's InvertedResidual: pw, bn1, dw, bn2, pwl, bn3
                conv(f"{tv}.0.0", f"{tm}.conv_pw", (hid, cin, 1, 1))
                bn(f"{tv}.0.1", f"{tm}.bn1", hid)
                conv(f"{tv}.1.0", f"{tm}.conv_dw", (hid, 1, 3, 3))
                bn(f"{tv}.1.1", f"{tm}.bn2", hid)
                conv(f"{tv}.2", f"{tm}.conv_pwl", (c, hid, 1, 1))
                bn(f"{tv}.3", f"{tm}.bn3", c)
            cin, f = c, f + 1
    conv("features.18.0", "conv_head", (1280, 320, 1, 1))
    bn("features.18.1", "bn2", 1280)
    pairs.append(("classifier.1.weight", "classifier.weight", (1000, 1280)))
    pairs.append(("classifier.1.bias", "classifier.bias", (1000,)))
    return pairs


def write_mobilenet_v2(tmp_path, *, seed=0, change=None):
    """The same random tensors as a torchvision-named and a timm-named safetensors file."""
    rng = np.random.default_rng(seed)
    tv, tm = {}, {}
    for tv_key, tm_key, shape in mobilenet_v2_pairs():
        if tm_key.endswith("num_batches_tracked"):
            value = np.array(7, np.int64)
        else:
            value = rng.standard_normal(shape).astype(np.float32)
            if tm_key.endswith("running_var"):
                value = np.abs(value) + 0.5
        tv[tv_key], tm[tm_key] = value, value
    if change:
        change(tm)
    paths = tmp_path / "tv.safetensors", tmp_path / "timm.safetensors"
    safetensors_numpy.save_file(tv, str(paths[0]))
    safetensors_numpy.save_file(tm, str(paths[1]))
    return tuple(map(str, paths))


def test_pairs_cover_the_network():
    """The transcription has 314 tensors, as both frameworks' state dicts (checked by eye in
    timm 1.0 and torchvision 0.28; the cross-check compares them for real)."""
    assert len(mobilenet_v2_pairs()) == 314
    assert len({k for k, _, _ in mobilenet_v2_pairs()}) == 314


def test_timm_file_loads_like_torchvision_file(tmp_path):
    tv_path, timm_path = write_mobilenet_v2(tmp_path)
    native = pretrained.load("mobilenet_v2", weights=tv_path)
    timm = pretrained.load("mobilenet_v2", weights=timm_path)
    a, b = model_arrays(native.model), model_arrays(timm.model)
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_array_equal(np.asarray(a[path]), np.asarray(b[path]), err_msg=path)
    # timm's preprocessing for its weights: bicubic, short side 256 (224 / 0.875)
    spec = timm_layout.timm_preprocess("mobilenet_v2")
    assert (spec.interpolation, spec.resize, spec.size) == ("bicubic", 256, (224, 224))
    x = np.full((1, 300, 400, 3), 128, np.uint8)
    assert timm.preprocess(x).shape == native.preprocess(x).shape == (1, 224, 224, 3)
    # forcing the native layout on a timm file: the family's own mismatch error
    with pytest.raises(WeightsMismatchError, match="missing keys"):
        pretrained.load("mobilenet_v2", weights=timm_path, layout="native")


def test_detect():
    assert timm_layout.detect("efficientnet_b0", ["conv_stem.weight"]) == "timm"
    assert timm_layout.detect("efficientnet_b0", ["features.0.0.weight"]) == "native"
    assert timm_layout.detect("vgg16", ["features.0.weight", "pre_logits.fc1.weight"]) == "timm"
    assert timm_layout.detect("vgg16", ["features.0.weight", "classifier.0.weight"]) == "native"
    keys = ["Conv2d_1a_3x3.conv.weight", "fc.weight"]
    assert timm_layout.detect("inception_v3", keys) == "timm"
    assert timm_layout.detect("inception_v3", [*keys, "AuxLogits.fc.weight"]) == "native"
    assert timm_layout.detect("resnet50", ["conv1.weight"]) == "native"  # the same keys


def test_wrong_shape_names_the_timm_key(tmp_path):
    def widen(tm):
        tm["blocks.1.0.conv_pw.weight"] = np.zeros((96, 16, 3, 3), np.float32)

    _, timm_path = write_mobilenet_v2(tmp_path, change=widen)
    with pytest.raises(WeightsMismatchError) as info:
        pretrained.load("mobilenet_v2", weights=timm_path)
    text = str(info.value)
    assert "first mismatch at" in text and "'blocks.1.0.conv_pw.weight'" in text
    assert "(96, 16, 3, 3)" in text and "(1, 1, 16, 96)" in text and "timm's layout" in text


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    def rename(tm):
        tm["blocks.2.1.conv_pwX.weight"] = tm.pop("blocks.2.1.conv_pwl.weight")

    _, timm_path = write_mobilenet_v2(tmp_path, change=rename)
    with pytest.raises(WeightsMismatchError) as info:
        pretrained.load("mobilenet_v2", weights=timm_path)
    text = str(info.value)
    assert "1 missing keys ['features.5.conv.2.weight']" in text
    assert "1 unexpected keys ['blocks.2.1.conv_pwX.weight']" in text


def test_refused_timm_networks(tmp_path):
    _, timm_path = write_mobilenet_v2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "tf_mobilenetv3_large_100"}))
    with pytest.raises(ValueError, match="tf_mobilenetv3_large_100 pads like TensorFlow"):
        pretrained.load("mobilenet_v2", weights=timm_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "efficientnet_b0"}))
    with pytest.raises(ValueError, match="names timm's 'efficientnet_b0', but mobilenet_v2"):
        pretrained.load("mobilenet_v2", weights=timm_path)
    cfg = {"architecture": "mobilenetv2_100", "pretrained_cfg": {"crop_pct": 0.95}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    prep = pretrained.load("mobilenet_v2", weights=timm_path).preprocess
    assert "resize=235" in prep.__doc__  # floor(224 / 0.95) from the config.json
    # a timm file for a network fnn has no timm mapping for
    with pytest.raises(ValueError, match="no mapping from timm's layout.*legacy_xception"):
        pretrained.load("mobilenet_v3_large", weights=timm_path)


def test_bad_layout_argument(tmp_path):
    _, timm_path = write_mobilenet_v2(tmp_path)
    with pytest.raises(ValueError, match="layout must be None.*got 'keras'"):
        pretrained.load("mobilenet_v2", weights=timm_path, layout="keras")
    with pytest.raises(ValueError, match="needs a weight file"):
        pretrained.load("mobilenet_v2", weights=None, layout="timm")


def test_inception_resnet_v2_names():
    """A transcription of timm's module names for a few of fnn's paths (all: the cross-check)."""
    from flax import nnx

    from fnn.models import registry

    spec = registry.get("inception_resnet_v2")
    model = nnx.eval_shape(
        lambda: spec.build(
            num_classes=1000,
            include_top=True,
            pooling=None,
            classifier_activation=None,
            features=False,
            rngs=nnx.Rngs(0),
        )
    )
    names = timm_layout._irv2_names(model)
    assert names["stem1/0/conv/conv/kernel"] == ("conv2d_1a.conv.weight", "conv")
    assert names["stem2/1/bn/bn/var"] == ("conv2d_4a.bn.running_var", "vector")
    assert names["mixed_5b/b0/0/bn/bn/mean"] == ("mixed_5b.branch0.bn.running_mean", "vector")
    assert names["mixed_5b/b2/2/conv/conv/kernel"][0] == "mixed_5b.branch2.2.conv.weight"
    assert names["mixed_5b/bp/0/conv/conv/kernel"][0] == "mixed_5b.branch3.1.conv.weight"
    assert names["blocks_a/3/branches/0/0/bn/bn/bias"][0] == "repeat.3.branch0.bn.bias"
    assert (
        names["blocks_b/19/branches/1/2/conv/conv/kernel"][0] == "repeat_1.19.branch1.2.conv.weight"
    )
    assert names["blocks_c/8/up/conv/conv/bias"] == ("repeat_2.8.conv2d.bias", "vector")
    assert names["blocks_c/9/up/conv/conv/kernel"] == ("block8.conv2d.weight", "conv")
    assert names["mixed_6a/branches/0/0/conv/conv/kernel"][0] == "mixed_6a.branch0.conv.weight"
    assert names["mixed_7a/branches/0/1/conv/conv/kernel"][0] == "mixed_7a.branch0.1.conv.weight"
    assert names["conv_7b/bn/bn/bias"][0] == "conv2d_7b.bn.bias"
    assert names["head/fc/linear/kernel"] == ("classif.weight", "dense")
    keys = {key for key, _ in names.values()}
    assert len(keys) == len(names) == 898  # one timm key per path (timm: 898 + 244 BN scales)


def test_fold_bn_scale_oracle():
    """BatchNorm with γ after a bias-free 1x1 convolution == without γ after the folded one."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3, 1, 1))
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)  # γ < 0 too
    mean, var, eps = rng.standard_normal(5), 0.5 + rng.random(5), 1e-3
    x = rng.standard_normal((4, 3))
    conv = lambda kernel: x @ kernel[:, :, 0, 0].T  # noqa: E731
    expected = gamma * (conv(w) - mean) / np.sqrt(var + eps) + beta
    stem = {"a.conv.weight": w, "a.bn.weight": gamma, "a.bn.bias": beta}
    stem |= {"a.bn.running_mean": mean, "a.bn.running_var": var, "b.bn.weight": gamma}
    folded = timm_layout._fold_bn_scale(stem)
    assert "a.bn.weight" not in folded and "b.bn.weight" in folded  # b: no conv, kept
    got = (conv(folded["a.conv.weight"]) - folded["a.bn.running_mean"]) / np.sqrt(var + eps)
    np.testing.assert_allclose(got + beta, expected, rtol=1e-12, atol=1e-12)


# fnn name -> timm architecture (same network); the cross-check at the native size
CROSS = [
    ("resnet50", "resnet50"),
    ("mobilenet_v2", "mobilenetv2_100"),
    ("efficientnet_b0", "efficientnet_b0"),
    *((f"efficientnet_b{i}", f"efficientnet_b{i}") for i in (1, 2, 3, 4)),
    ("densenet121", "densenet121"),
    ("inception_v3", "inception_v3"),
    ("vgg16", "vgg16"),
    ("inception_resnet_v2", "inception_resnet_v2"),
]


def _timm():
    zr.torchvision()  # torch, and the torchvision stub timm's import needs
    return pytest.importorskip("timm")


def _torchvision_initialisation(ref, name) -> None:
    """torchvision's random weights in timm's EfficientNet, matched by position in the two state
    dicts (same order, same shapes: checked). timm's own initialisation compounds over B4's 32
    blocks to logits whose float32 rounding alone is ~8e-3 (timm float32 vs float64), which no
    1e-4 comparison survives; torchvision's keeps it near 1e-5 as for B0-B3."""
    import torch

    tv = zr.torchvision()
    source = list(getattr(tv.models, name)().state_dict().values())
    target = ref.state_dict()
    assert len(source) == len(target)
    for (key, value), new in zip(target.items(), source):
        assert value.shape == new.shape, (key, value.shape, new.shape)
    with torch.no_grad():
        ref.load_state_dict(dict(zip(target, source)))


@pytest.mark.crosscheck
@pytest.mark.parametrize("name, architecture", CROSS)
def test_crosscheck_timm(name, architecture, tmp_path):
    timm = _timm()
    import safetensors.torch
    import torch

    assert timm_layout.ACCEPTED[name] == architecture
    torch.manual_seed(0)
    ref = timm.create_model(architecture, pretrained=False).eval()
    if name.startswith("efficientnet"):
        _torchvision_initialisation(ref, name)
    zr.randomize_torch_bn(ref)
    size = timm_layout.timm_preprocess(name).size[0]
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    zr.scale_torch_logits(ref, x)
    expected = zr.torch_logits(ref, x)
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(ref.state_dict(), str(path))
    loaded = pretrained.load(name, weights=str(path), layout="timm")
    got = zr.fnn_logits(loaded.model, x)
    assert np.abs(expected).max() > 1.0
    print(f"{name} <- timm {architecture}: max |dlogit| {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.crosscheck
def test_crosscheck_timm_pth_and_bin(tmp_path):
    """``torch.save`` files (zip ``.pth``, legacy ``.bin``) read as the safetensors one."""
    timm = _timm()
    import torch

    ref = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    zr.randomize_torch_bn(ref)
    torch.save(ref.state_dict(), tmp_path / "a.pth")
    torch.save(ref.state_dict(), tmp_path / "b.bin", _use_new_zipfile_serialization=False)
    a = model_arrays(pretrained.load("mobilenet_v2", weights=str(tmp_path / "a.pth")).model)
    b = model_arrays(pretrained.load("mobilenet_v2", weights=str(tmp_path / "b.bin")).model)
    for path in a:
        np.testing.assert_array_equal(np.asarray(a[path]), np.asarray(b[path]), err_msg=path)
    conv = ref.blocks[1][0].conv_pw.weight.detach().numpy()  # [96, 16, 1, 1] OIHW -> HWIO
    np.testing.assert_array_equal(
        np.asarray(a["blocks/1/expand/conv/kernel"]), conv.transpose(2, 3, 1, 0)
    )
