"""Spec tests for fnn.pretrained and fnn.models.EfficientNetLite with the real ImageNet weights.

Always on: real photos shipped with scikit-image get sensible ImageNet labels (one compiled forward
at 224, shared), preprocessing against a NumPy oracle, the architecture against the checkpoint's
own shapes, bad input. Optional (`crosscheck`): the PyTorch reference implementation
(``efficientnet-lite-pytorch``) with the same weights gives the same logits to 1e-4.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fnn import pretrained, weights
from fnn.models import EfficientNetLite

skimage_data = pytest.importorskip("skimage.data")

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968


@pytest.fixture(scope="module")
def lite0():
    return pretrained.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos(lite0):
    prep = lite0.preprocess
    return np.concatenate([prep(skimage_data.chelsea()), prep(skimage_data.coffee())])


@pytest.fixture(scope="module")
def forward(lite0):
    """One compiled forward at 224, shared by every test here (and a compile counter)."""
    graphdef, state = nnx.split(lite0.model)
    traces = []

    @jax.jit
    def run(state, x):
        traces.append(x.shape)
        return nnx.merge(graphdef, state)(x)

    run.traces = traces
    return lambda x: run(state, x), traces


@pytest.fixture(scope="module")
def photo_logits(forward, photos):
    return np.asarray(forward[0](photos))


def test_cat_photo_is_a_cat(photo_logits):
    assert int(photo_logits[0].argmax()) in CAT_CLASSES


def test_coffee_photo_is_espresso_or_cup(photo_logits):
    top5 = set(np.argsort(-photo_logits[1])[:5].tolist())
    assert {ESPRESSO, CUP} & top5


def test_top_k_names_and_probabilities(photo_logits, lite0):
    rows = pretrained.top_k(photo_logits, lite0.class_names, k=5)
    assert len(rows) == 2 and all(len(r) == 5 for r in rows)
    probs = [p for _, p in rows[1]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    z = photo_logits[1].astype(np.float64)
    assert probs[0] == pytest.approx(np.exp(z.max() - np.log(np.exp(z).sum())), rel=1e-9)
    assert any(name in ("espresso", "cup") for name, _ in rows[1])


def test_no_recompilation_on_second_call(forward, photos):
    run, traces = forward
    before = len(traces)
    run(photos).block_until_ready()
    run(photos + 0.5).block_until_ready()
    assert len(traces) == before


def test_class_names():
    names = pretrained.class_names()
    assert len(names) == 1000 == len(set(names))
    assert names[0] == "tench, Tinca tinca"
    assert names[281] == "tabby, tabby cat" and names[ESPRESSO] == "espresso"


# ------------------------------------------------------------------------------------------------
# Preprocessing against a NumPy oracle


def test_preprocess_crop_and_normalise_oracle():
    """With the crop already at the output size the resize is the identity: only crop + scale."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(10, 16, 3), dtype=np.uint8)
    got = np.asarray(pretrained.preprocess(image, size=10, crop_fraction=1.0))
    left = (16 - 10 + 1) // 2
    expected = (image[:, left : left + 10].astype(np.float64) - 127.0) / 128.0
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    # 0.875 of the short side, centred (TensorFlow's padded centre crop):
    got = np.asarray(pretrained.preprocess(image[None], size=8, crop_fraction=0.875))
    top, left = (10 - 8 + 1) // 2, (16 - 8 + 1) // 2
    expected = (image[top : top + 8, left : left + 8].astype(np.float64) - 127.0) / 128.0
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


def test_preprocess_value_range_and_gray():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(2, 32, 32, 1), dtype=np.uint8)
    as_uint8 = pretrained.preprocess(image, size=32, crop_fraction=1.0)
    as_float = pretrained.preprocess(image / 255.0, size=32, crop_fraction=1.0, value_range=(0, 1))
    assert as_uint8.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-5)
    np.testing.assert_array_equal(as_uint8[..., 0], as_uint8[..., 2])  # gray repeated to RGB


def test_preprocess_bicubic_matches_jax_image_resize():
    image = np.random.default_rng(2).uniform(0, 255, size=(40, 40, 3))
    got = pretrained.preprocess(image, size=24, crop_fraction=1.0)[0]
    ref = jax.image.resize(jnp.asarray(image, jnp.float32), (24, 24, 3), "bicubic", antialias=False)
    np.testing.assert_allclose(got, (ref - 127) / 128, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=np.zeros((8, 8, 4))), r"images must be \[N, H, W, 3\].*got shape \(8, 8, 4\)"),
        (dict(images=np.zeros((8, 8, 3)), crop_fraction=0.0), r"crop_fraction.*got 0.0"),
    ],
)
def test_preprocess_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pretrained.preprocess(**kwargs)


# ------------------------------------------------------------------------------------------------
# Architecture facts against the checkpoints


@pytest.mark.parametrize(
    "name, blocks, size", [("lite0", 16, 224), ("lite1", 21, 240), ("lite2", 21, 260)]
)
def test_architecture_matches_checkpoint(name, blocks, size):
    """Every parameter of the model has the checkpoint's shape (after the layout change)."""
    sd = weights.load(pretrained.weights_path(f"efficientnet_{name}"))
    model = nnx.eval_shape(lambda: EfficientNetLite(name, rngs=nnx.Rngs(0)))
    assert (
        len(model.blocks) == blocks == 1 + max(int(k.split(".")[1]) for k in sd if "_blocks" in k)
    )
    assert model.input_size == size
    params = nnx.state(model, nnx.Param)
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
    n_file = sum(
        v.size for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "tracked"))
    )
    assert n_params == n_file
    shapes = {
        "/".join(str(getattr(k, "key", k)) for k in p[:-1]): v.shape
        for p, v in jax.tree_util.tree_flatten_with_path(nnx.state(model))[0]
    }
    for path, (key, kind) in model.torch_names().items():
        leaf_shape = shapes["/".join(map(str, path))]
        shape = sd[key].shape
        expected = {
            "conv": (shape[2:] + shape[1:2] + shape[:1]) if len(shape) == 4 else None,
            "dense": shape[::-1],
            "vector": shape,
        }[kind]
        assert tuple(leaf_shape) == tuple(expected), (path, key)


def test_new_head_keeps_base_and_logs_skipped(lite0, caplog):
    with caplog.at_level(logging.INFO, logger="fnn"):
        model = pretrained.load("efficientnet_lite0", num_classes=3).model
    logged = caplog.text
    assert "not loaded: classifier/kernel" in logged and "not loaded: classifier/bias" in logged
    assert "_fc.weight" in logged
    np.testing.assert_array_equal(
        model.blocks[5].depthwise.conv.kernel[...], lite0.model.blocks[5].depthwise.conv.kernel[...]
    )
    np.testing.assert_array_equal(model.head.bn.mean[...], lite0.model.head.bn.mean[...])
    assert model.classifier.kernel.shape == (1280, 3)
    assert float(jnp.abs(model.classifier.bias[...]).max()) == 0.0


def test_features_only_model():
    model = pretrained.load("efficientnet_lite0", num_classes=None).model
    assert model.classifier is None


# ------------------------------------------------------------------------------------------------
# Bad input


def test_checkpoint_of_another_variant_is_rejected():
    other = pretrained.weights_path("efficientnet_lite1")
    with pytest.raises(
        ValueError, match=r"do not match efficientnet_lite0.*unexpected keys \['_blocks\.16"
    ):
        pretrained.load("efficientnet_lite0", weights_file=other)


def test_checkpoint_with_wrong_width_names_path_and_shapes():
    other = pretrained.weights_path("efficientnet_lite2")
    with pytest.raises(
        ValueError, match=r"first mismatch at \S+ \(source key .*shape \(.*\) -> .*expects \("
    ):
        pretrained.load("efficientnet_lite1", weights_file=other)


def test_unknown_name():
    with pytest.raises(
        ValueError, match=r"Unknown pretrained model 'efficientnet_lite9'.*Did you mean"
    ):
        pretrained.load("efficientnet_lite9")
    with pytest.raises(ValueError, match=r"Unknown EfficientNet-Lite variant 'lite7'"):
        EfficientNetLite("lite7", rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "x, error, match",
    [
        (
            np.zeros((1, 224, 224, 1), np.float32),
            ValueError,
            r"x of shape \[N, H, W, 3\].*\(1, 224, 224, 1\)",
        ),
        (np.zeros((224, 224, 3), np.float32), ValueError, r"\[N, H, W, 3\].*got \(224, 224, 3\)"),
        (np.zeros((1, 16, 16, 3), np.float32), ValueError, r"H, W >= 32.*got \(16, 16\)"),
        (np.zeros((1, 224, 224, 3), np.uint8), TypeError, r"float images.*got dtype uint8"),
    ],
)
def test_model_bad_input(lite0, x, error, match):
    with pytest.raises(error, match=match):
        lite0.model(x)


# ------------------------------------------------------------------------------------------------
# Optional: the PyTorch reference implementation


@pytest.mark.crosscheck
@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_crosscheck_logits_match_pytorch_reference(variant):
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    name = f"efficientnet_{variant}"
    model, prep, _, _ = pretrained.load(name)
    x = np.concatenate(
        [prep(skimage_data.chelsea()), prep(skimage_data.coffee()), prep(skimage_data.astronaut())]
    )
    ours = np.asarray(jax.jit(lambda x: model(x))(x))
    ref = reference.EfficientNet.from_name(f"efficientnet-{variant}")
    ref.load_state_dict(torch.load(pretrained.weights_path(name), weights_only=True))
    ref.eval()
    with torch.no_grad():
        theirs = ref(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    delta = float(np.abs(ours - theirs).max())
    print(f"{name}: max |delta logit| = {delta:.2e}")
    assert delta <= 1e-4
    assert (ours.argmax(1) == theirs.argmax(1)).all()
