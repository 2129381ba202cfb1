"""Spec tests for fnn.data: the slides' first pipeline box, "input data (train/validation/test split)".

Real data (scikit-learn digits, scikit-image LFW subset) is checked against the source libraries
directly; splits are checked for determinism, disjointness, completeness and class proportions
against counts computed here in NumPy; Keras' validation_split against its formula written out
in the test (and against Keras itself when it is installed).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnn
from fnn import data as D


@pytest.fixture(scope="module")
def digits():
    return D.load("digits")


@pytest.fixture(scope="module")
def lfw():
    return D.load("lfw_faces")


def _toy(n=50, num_classes=3):
    """A dataset whose image i holds the value i, so every example can be identified."""
    image = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 2, 2, 1))
    label = (np.arange(n) % num_classes).astype(np.int32)
    return D.Dataset(image=image.copy(), label=label, class_names=[f"c{k}" for k in range(3)])


def _ids(ds):
    return ds["image"][:, 0, 0, 0].astype(int)


# --------------------------------------------------------------------------------------------
# Built-in datasets: real data, checked against the libraries that ship it.
# --------------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_counts_and_range(digits):
    from sklearn.datasets import load_digits

    ref = load_digits()
    assert digits["image"].shape == (1797, 8, 8, 1)
    assert digits["image"].dtype == np.float32 and digits["label"].dtype == np.int32
    assert digits.class_names == tuple(str(k) for k in range(10))
    # real class counts, from scikit-learn itself
    np.testing.assert_array_equal(np.bincount(digits["label"]), np.bincount(ref.target))
    assert np.bincount(digits["label"]).tolist() == [
        178,
        182,
        177,
        183,
        181,
        182,
        181,
        179,
        174,
        180,
    ]
    # documented value range: the 0..16 pixel counts scaled by 1/16 to [0, 1]
    np.testing.assert_array_equal(digits["image"][..., 0] * 16.0, ref.images.astype(np.float32))
    assert digits["image"].min() == 0.0 and digits["image"].max() == 1.0
    np.testing.assert_array_equal(digits["label"], ref.target)


def test_lfw_faces_first_100_are_faces(lfw):
    from skimage.data import lfw_subset

    assert lfw["image"].shape == (200, 25, 25, 1) and lfw["image"].dtype == np.float32
    assert lfw["label"].dtype == np.int32
    assert np.bincount(lfw["label"]).tolist() == [100, 100]
    assert lfw["label"][:100].tolist() == [1] * 100 and lfw["label"][100:].tolist() == [0] * 100
    assert lfw.class_names == ("non_face", "face")
    np.testing.assert_allclose(lfw["image"][..., 0], lfw_subset(), rtol=1e-6)
    assert 0.0 <= lfw["image"].min() and lfw["image"].max() <= 1.0
    # LFW crops are centred faces: a bright face between darker background at the left and right
    # edges. The background patches have no such frame. This fails if the halves are swapped.
    x = lfw["image"][..., 0].astype(np.float64)
    centre = x[:, 4:21, 5:20].mean((1, 2))
    edges = np.concatenate([x[:, :, :3], x[:, :, 22:]], axis=2).mean((1, 2))
    framed = centre - edges
    assert framed[lfw["label"] == 1].mean() > framed[lfw["label"] == 0].mean() + 0.1


def test_load_rgb_and_resize_for_transfer_learning(lfw):
    ds = D.load("lfw_faces", rgb=True, size=(32, 40))
    assert ds["image"].shape == (200, 32, 40, 3) and ds["image"].dtype == np.float32
    np.testing.assert_array_equal(ds["image"][..., 0], ds["image"][..., 2])
    # constant images stay constant under bilinear resizing; range preserved
    assert ds["image"].min() >= -1e-6 and ds["image"].max() <= 1 + 1e-6
    assert ds.class_names == lfw.class_names and ds["label"].tolist() == lfw["label"].tolist()


def test_dataset_is_a_dict_and_a_pytree(digits):
    x, y = digits["image"], digits["label"]
    assert isinstance(digits, dict) and sorted(digits) == ["image", "label"]
    assert digits.num_examples == len(x) == len(y)
    on_device = jax.device_put(digits)
    assert isinstance(on_device, D.Dataset) and on_device.class_names == digits.class_names
    assert isinstance(on_device["image"], jax.Array)
    halves = jax.tree.map(lambda a: a[:10], digits)
    assert isinstance(halves, D.Dataset) and halves.num_examples == 10


# --------------------------------------------------------------------------------------------
# split: deterministic, disjoint, complete, stratified.
# --------------------------------------------------------------------------------------------


def test_split_sizes_disjoint_complete():
    ds = _toy(50)
    train, val, test = D.split(ds, validation=0.2, test=0.1, seed=3)
    assert (train.num_examples, val.num_examples, test.num_examples) == (35, 10, 5)
    ids = np.concatenate([_ids(train), _ids(val), _ids(test)])
    assert sorted(ids.tolist()) == list(range(50))  # every example exactly once
    for part in (train, val, test):  # images and labels stay paired
        np.testing.assert_array_equal(part["label"], _ids(part) % 3)
        assert part.class_names == ds.class_names


def test_split_deterministic_given_seed():
    ds = _toy(50)
    a = D.split(ds, validation=0.2, test=0.2, seed=7)
    b = D.split(ds, validation=0.2, test=0.2, seed=7)
    c = D.split(ds, validation=0.2, test=0.2, seed=8)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(_ids(pa), _ids(pb))
    assert not np.array_equal(_ids(a.test), _ids(c.test))


def test_split_without_shuffle_takes_contiguous_blocks():
    train, val, test = D.split(_toy(10), validation=0.2, test=0.3, shuffle=False)
    assert _ids(train).tolist() == [0, 1, 2, 3, 4]
    assert _ids(val).tolist() == [5, 6] and _ids(test).tolist() == [7, 8, 9]


def test_split_absent_parts_are_none_and_tuples_work():
    x, y = np.arange(20.0), np.arange(20) % 2
    train, val, test = D.split((x, y), test=0.25, seed=0)
    assert val is None and isinstance(test, tuple) and len(test[0]) == 5
    np.testing.assert_array_equal(train[1], train[0].astype(int) % 2)
    train, val, test = D.split({"x": x, "y": y}, validation=4)  # integer count
    assert len(val["x"]) == 4 and test is None and len(train["x"]) == 16


def test_split_stratified_proportions(digits):
    train, val, test = D.split(digits, validation=0.1, test=0.2, seed=0, stratify=True)
    counts = np.bincount(digits["label"])
    n = len(digits["label"])
    assert (val.num_examples, test.num_examples) == (round(0.1 * n), round(0.2 * n))
    for part, frac in ((val, 0.1), (test, 0.2), (train, 0.7)):
        got = np.bincount(part["label"], minlength=10)
        # every class within one example of its exact share
        assert np.all(np.abs(got - counts * frac) <= 1.0 + 1e-9), (got, counts * frac)
    # the unstratified split of a class-sorted dataset is visibly not stratified
    sorted_ds = digits.take(np.argsort(digits["label"], kind="stable"))
    _, _, plain = D.split(sorted_ds, test=0.2, shuffle=False)
    assert set(plain["label"].tolist()) <= {7, 8, 9}
    _, _, strat = D.split(sorted_ds, test=0.2, shuffle=False, stratify=True)
    assert np.all(np.abs(np.bincount(strat["label"]) - counts * 0.2) <= 1.0)


def test_split_stratify_with_label_array():
    x = np.arange(30.0)
    groups = np.repeat([0, 1, 2], 10)
    train, _, test = D.split(x, test=0.3, stratify=groups, seed=1)
    assert np.bincount(groups[test.astype(int)]).tolist() == [3, 3, 3]


@given(
    n=st.integers(10, 60),
    validation=st.floats(0.05, 0.45),
    test=st.floats(0.05, 0.45),
    seed=st.integers(0, 2**31),
    stratify=st.booleans(),
)
def test_split_invariants(n, validation, test, seed, stratify):
    ds = _toy(n)
    n_val, n_test = round(validation * n), round(test * n)
    if n_val == 0 or n_test == 0 or n_val + n_test >= n:
        with pytest.raises(ValueError):
            D.split(ds, validation=validation, test=test, seed=seed, stratify=stratify)
        return
    parts = D.split(ds, validation=validation, test=test, seed=seed, stratify=stratify)
    assert [p.num_examples for p in parts] == [n - n_val - n_test, n_val, n_test]
    assert sorted(np.concatenate([_ids(p) for p in parts]).tolist()) == list(range(n))
    if stratify:
        counts = np.bincount(ds["label"])
        for p, k in zip(parts[1:], (n_val, n_test)):
            got = np.bincount(p["label"], minlength=3)
            assert np.all(np.abs(got - counts * k / n) < 1.0 + 1e-9)


# --------------------------------------------------------------------------------------------
# Keras' validation_split: the last fraction, before shuffling.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, fraction", [(10, 0.2), (10, 0.3), (100, 0.7), (7, 0.5), (1797, 0.1)])
def test_validation_split_takes_the_last_fraction(n, fraction):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    (x_tr, y_tr, w_tr), (x_va, y_va, w_va) = D.validation_split((x, y, None), fraction)
    split_at = int(math.floor(n * (1.0 - fraction)))  # keras/src/trainers/data_adapters
    np.testing.assert_array_equal(y_tr, np.arange(split_at))
    np.testing.assert_array_equal(y_va, np.arange(split_at, n))
    np.testing.assert_array_equal(x_va, x[split_at:])
    assert w_tr is None and w_va is None


@given(n=st.integers(1, 300), fraction=st.floats(0.001, 0.999))
def test_validation_split_property(n, fraction):
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at in (0, n):
        with pytest.raises(ValueError, match=r"leaves no"):
            D.validation_split(np.arange(n), fraction)
        return
    train, val = D.validation_split(np.arange(n), fraction)
    assert train.tolist() == list(range(split_at)) and val.tolist() == list(range(split_at, n))


def test_validation_split_jax_arrays_and_dicts():
    x = jnp.arange(10.0)
    train, val = D.validation_split({"image": x, "label": jnp.arange(10)}, 0.2)
    assert isinstance(val["image"], jax.Array) and val["label"].tolist() == [8, 9]
    train, val = D.validation_split(x, 0.5)
    assert train.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.crosscheck
@pytest.mark.parametrize("n, fraction", [(10, 0.3), (100, 0.7), (33, 0.15)])
def test_validation_split_matches_keras(n, fraction):
    pytest.importorskip("keras")
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    x, y = np.arange(n, dtype=np.float32), np.arange(n)
    (k_x, k_y), (kv_x, kv_y) = train_validation_split((x, y), validation_split=fraction)
    (f_x, f_y), (fv_x, fv_y) = D.validation_split((x, y), fraction)
    np.testing.assert_array_equal(np.asarray(k_y), f_y)
    np.testing.assert_array_equal(np.asarray(kv_y), fv_y)


# --------------------------------------------------------------------------------------------
# per_class (few-shot subsets for transfer learning).
# --------------------------------------------------------------------------------------------


def test_per_class_counts_nested_and_deterministic(digits):
    five = D.per_class(digits, 5, seed=0)
    ten = D.per_class(digits, 10, seed=0)
    assert np.bincount(five["label"]).tolist() == [5] * 10 and five.num_examples == 50
    assert np.bincount(ten["label"]).tolist() == [10] * 10

    def keys(ds):  # identify examples by their pixels
        return {ds["image"][i].tobytes() for i in range(ds.num_examples)}

    assert keys(five) <= keys(ten)
    assert keys(five) == keys(D.per_class(digits, 5, seed=0))
    assert keys(five) != keys(D.per_class(digits, 5, seed=1))


# --------------------------------------------------------------------------------------------
# Image helpers: to_rgb and resize (oracles in float64 NumPy).
# --------------------------------------------------------------------------------------------


def _bilinear_1d_matrix(n_in, n_out):
    """Half-pixel-centre linear interpolation (upsampling): src = (i + 0.5) n_in / n_out - 0.5,
    clamped to the edge pixels, as tf.image.resize and PyTorch's align_corners=False."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = np.clip((i + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = int(np.floor(src))
        i1 = min(i0 + 1, n_in - 1)
        m[i, i0] += 1 - (src - i0)
        m[i, i1] += src - i0
    return m


def test_resize_upsampling_matches_bilinear_oracle():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 4, 2))
    got = np.asarray(D.resize(x.astype(np.float32), (7, 9)))
    rows, cols = _bilinear_1d_matrix(3, 7), _bilinear_1d_matrix(4, 9)
    want = np.einsum("ih,jw,nhwc->nijc", rows, cols, x)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_resize_antialiased_downsampling_oracle():
    # Shrinking by 2 with antialiasing widens the triangle kernel to 4 taps: (1, 3, 3, 1) / 8.
    x = np.random.default_rng(1).random((1, 1, 16, 1))
    got = np.asarray(D.resize(x.astype(np.float32), (1, 8)))[0, 0, :, 0]
    v = x[0, 0, :, 0]
    interior = [
        (v[2 * i - 1] + 3 * v[2 * i] + 3 * v[2 * i + 1] + v[2 * i + 2]) / 8 for i in range(1, 7)
    ]
    np.testing.assert_allclose(got[1:7], interior, atol=1e-6)
    no_aa = np.asarray(D.resize(x.astype(np.float32), (1, 8), antialias=False))[0, 0, :, 0]
    np.testing.assert_allclose(no_aa, (v[0::2] + v[1::2]) / 2, atol=1e-6)  # 2 taps only


def test_to_rgb_and_resize_jit_and_numpy_agree():
    x = np.random.default_rng(2).random((3, 5, 5, 1)).astype(np.float32)
    rgb = D.to_rgb(x)
    assert isinstance(rgb, np.ndarray) and rgb.shape == (3, 5, 5, 3)
    np.testing.assert_array_equal(rgb, np.concatenate([x, x, x], axis=-1))
    np.testing.assert_array_equal(np.asarray(jax.jit(D.to_rgb)(jnp.asarray(x))), rgb)
    assert D.to_rgb(rgb) is rgb
    assert D.to_rgb(np.zeros((2, 2, 4))).shape == (2, 2, 3)  # RGBA drops alpha
    f = jax.jit(lambda a: D.resize(a, (10, 10)))
    np.testing.assert_allclose(np.asarray(f(x)), np.asarray(D.resize(x, 10)), atol=1e-6)
    assert D.resize(x[0], (2, 3)).shape == (2, 3, 1)  # single image


# --------------------------------------------------------------------------------------------
# Bad inputs: clear errors naming the argument, the expected and the actual value.
# --------------------------------------------------------------------------------------------


def test_unknown_dataset_name_did_you_mean():
    with pytest.raises(ValueError, match=r"Unknown dataset 'digit'.*Did you mean 'digits'"):
        D.load("digit")
    with pytest.raises(ValueError, match=r"lfw_faces"):
        D.load("lfw_face")
    with pytest.raises(ValueError, match=r"does not exist"):
        D.load("./no/such/folder")
    with pytest.raises(TypeError, match=r"name must be"):
        D.load(3)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_validation_split_fraction_outside_0_1(bad):
    with pytest.raises(ValueError, match=rf"validation_split.*between 0 and 1, got {bad}"):
        D.validation_split((np.zeros(10), np.zeros(10)), bad)


@pytest.mark.parametrize("kw", [{"validation": 1.5}, {"test": -0.2}, {"validation": 1.0}])
def test_split_fraction_outside_0_1(kw):
    ((arg, value),) = kw.items()
    with pytest.raises(ValueError, match=rf"{arg} must be a fraction.*got {value}"):
        D.split(_toy(), **kw)


def test_split_bad_combinations():
    with pytest.raises(ValueError, match=r"leave none for training"):
        D.split(_toy(10), validation=0.5, test=0.5)
    with pytest.raises(ValueError, match=r"validation=0.01 of 10 examples rounds to 0"):
        D.split(_toy(10), validation=0.01)
    with pytest.raises(ValueError, match=r"stratify labels must have shape \(10,\).*\(9,\)"):
        D.split(_toy(10), test=0.2, stratify=np.zeros(9))
    with pytest.raises(ValueError, match=r"one-hot labels\? pass stratify=labels.argmax"):
        D.split(_toy(10), test=0.2, stratify=np.eye(2)[np.arange(10) % 2])
    with pytest.raises(TypeError, match=r"validation must be a fraction.*bool"):
        D.split(_toy(10), validation=True)
    with pytest.raises(ValueError, match=r"validation_split=0.5 of 1 examples leaves no training"):
        D.validation_split(np.zeros(1), 0.5)
    with pytest.raises(ValueError, match=r"validation_split=1e-17 of 3 examples leaves no valid"):
        D.validation_split(np.zeros(3), 1e-17)


def test_length_mismatch():
    with pytest.raises(ValueError, match=r"x has 10, y has 9"):
        D.check_same_length(x=np.zeros((10, 2)), y=np.zeros(9))
    with pytest.raises(ValueError, match=r"image has 10, label has 9"):
        D.split({"image": np.zeros((10, 2)), "label": np.zeros(9)}, test=0.2)
    with pytest.raises(ValueError, match=r"arrays\[0\] has 10, arrays\[1\] has 8"):
        D.validation_split((np.zeros(10), np.zeros(8)), 0.2)
    with pytest.raises(ValueError, match=r"scalar"):
        D.check_same_length(x=np.float32(1.0))
    assert D.check_same_length(x=np.zeros((4, 3)), y=np.zeros(4), sample_weight=None) == 4


def test_check_finite_names_argument_count_and_index():
    x = np.zeros((2, 3, 3, 1), np.float32)
    D.check_finite(x, "x")
    D.check_finite(np.arange(3), "y")  # integers are always finite
    x[1, 2, 0, 0] = np.nan
    x[1, 2, 1, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"x contains 2 non-finite values.*nan at index \(1, 2, 0, 0\)"
    ):
        D.check_finite(x, "x")
    with pytest.raises(ValueError, match=r"validation_data\[0\] contains 1 non-finite value.*inf"):
        D.check_finite(jnp.array([0.0, -jnp.inf]), "validation_data[0]")


def test_per_class_errors(digits):
    with pytest.raises(ValueError, match=r"class 8 has only 174 examples, fewer than n=175"):
        D.per_class(digits, 175)
    with pytest.raises(
        ValueError, match=r"n \(examples per class\) must be an integer >= 1, got 0"
    ):
        D.per_class(digits, 0)


def test_image_helper_errors():
    with pytest.raises(ValueError, match=r"C in \(1, 3, 4\), got \(2, 8, 8, 2\)"):
        D.to_rgb(np.zeros((2, 8, 8, 2)))
    with pytest.raises(ValueError, match=r"size must be \(height, width\).*\(0, 3\)"):
        D.resize(np.zeros((2, 8, 8, 1)), (0, 3))
    with pytest.raises(ValueError, match=r"\[N, H, W, C\] or \[H, W, C\], got \(8, 8\)"):
        D.resize(np.zeros((8, 8)), (4, 4))


def test_lazy_namespace():
    assert fnn.data is D


# --------------------------------------------------------------------------------------------
# TFDS through tfds.testing.mock_data (never the network).
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def test_tfds_mnist_with_mock_data(tfds):
    with tfds.testing.mock_data(num_examples=12):
        ds = D.load("tfds:mnist:test")
        source = tfds.data_source("mnist", split="test")
        raw = [source[i] for i in range(12)]
    assert ds["image"].shape == (12, 28, 28, 1) and ds["image"].dtype == np.float32
    assert ds["label"].dtype == np.int32 and ds.name == "tfds:mnist:test"
    assert ds.class_names == tuple(str(k) for k in range(10))
    # uint8 pixels scaled by 1/255, labels unchanged, order kept
    np.testing.assert_array_equal(ds["image"] * 255.0, np.stack([r["image"] for r in raw]))
    np.testing.assert_array_equal(ds["label"], [int(r["label"]) for r in raw])


def test_tfds_default_split_rgb_and_resize(tfds):
    with tfds.testing.mock_data(num_examples=5):
        ds = D.load("tfds:mnist", rgb=True, size=(16, 16))
    assert ds.name == "tfds:mnist:train" and ds["image"].shape == (5, 16, 16, 3)


def test_tfds_errors(tfds, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown TFDS dataset 'mnistt'.*Did you mean 'mnist'"):
        D.load("tfds:mnistt")
    with pytest.raises(ValueError, match=r"Unknown dataset 'mnist'. Did you mean 'tfds:mnist'"):
        D.load("mnist")
    with pytest.raises(ValueError, match=r"not prepared in .*download=False"):
        D.load("tfds:mnist", data_dir=str(tmp_path), download=False)
    # Preparing needs TensorFlow: the error says so before any download starts.
    monkeypatch.setattr(D, "_tensorflow_available", lambda: False)
    with pytest.raises(ImportError, match=r"needs TensorFlow.*pip install 'fnn\[tensorflow\]'"):
        D.load("tfds:mnist", data_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing was downloaded


# --------------------------------------------------------------------------------------------
# A folder of class sub-folders of images.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """cats/ (3 RGB PNGs), dogs/ (2 grayscale PNGs, one in a nested folder), plus noise files."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    pixels = {}
    (root / "cats").mkdir()
    (root / "dogs" / "nested").mkdir(parents=True)
    for i in range(3):
        arr = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / "cats" / f"c{i}.png")
        pixels[f"cats/c{i}.png"] = arr
    for where in ["dogs/d0.png", "dogs/nested/d1.png"]:
        arr = rng.integers(0, 256, (6, 5), dtype=np.uint8)
        Image.fromarray(arr).save(root / where)
        pixels[where] = arr
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("files at the top level are ignored")
    return root, pixels


def test_folder_loader(image_folder):
    root, pixels = image_folder
    ds = D.load(root)
    assert ds.class_names == ("cats", "dogs")
    assert ds["image"].shape == (5, 6, 5, 3) and ds["label"].tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_allclose(ds["image"][0] * 255.0, pixels["cats/c0.png"], atol=1e-4)
    # grayscale files are converted to RGB (R = G = B), Keras' color_mode="rgb" default
    np.testing.assert_allclose(
        ds["image"][3] * 255.0, pixels["dogs/d0.png"][..., None].repeat(3, -1), atol=1e-4
    )
    gray = D.load(str(root), color_mode="grayscale", size=(12, 10))
    assert gray["image"].shape == (5, 12, 10, 1)


def test_folder_errors(tmp_path, image_folder):
    from PIL import Image

    with pytest.raises(ValueError, match=r"has no class sub-folders"):
        D.load(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"empty_class' holds no images"):
        D.load(tmp_path)
    (tmp_path / "empty_class" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"Cannot read image file .*broken.png"):
        D.load(tmp_path)
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(mixed / "a" / "small.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "a" / "large.png")
    with pytest.raises(ValueError, match=r"images of different shapes .*pass size="):
        D.load(mixed)
    assert D.load(mixed, size=(5, 5))["image"].shape == (2, 5, 5, 3)
    with pytest.raises(ValueError, match=r"color_mode must be 'rgb' or 'grayscale', got 'cmyk'"):
        D.load(image_folder[0], color_mode="cmyk")


# --------------------------------------------------------------------------------------------
# Streaming with Grain: shuffling, batching, a position that can be saved and restored.
# --------------------------------------------------------------------------------------------


def test_loader_epoch_covers_every_example_once():
    ds = _toy(50)
    stream = D.loader(ds, batch_size=8, seed=0)
    batches = list(stream)
    assert len(stream) == len(batches) == 7
    assert [len(b["label"]) for b in batches] == [8] * 6 + [2]
    ids = np.concatenate([b["image"][:, 0, 0, 0] for b in batches]).astype(int)
    assert sorted(ids.tolist()) == list(range(50)) and ids.tolist() != list(range(50))
    for b in batches:  # pairs intact, dtypes per the contract
        assert b["image"].dtype == np.float32 and b["label"].dtype == np.int32
        np.testing.assert_array_equal(b["label"], b["image"][:, 0, 0, 0].astype(int) % 3)
    plain = list(D.loader(ds, batch_size=8, shuffle=False, drop_remainder=True))
    assert len(plain) == 6
    assert np.concatenate([b["label"] for b in plain]).tolist() == (np.arange(48) % 3).tolist()


def test_loader_deterministic_and_reshuffles_each_epoch():
    ds = _toy(20)

    def order(seed):
        stream = D.loader(ds, batch_size=5, seed=seed, num_epochs=2)
        return np.concatenate([b["image"][:, 0, 0, 0] for b in stream]).astype(int)

    a, b = order(1), order(1)
    np.testing.assert_array_equal(a, b)
    assert sorted(a[:20]) == sorted(a[20:]) == list(range(20))
    assert a[:20].tolist() != a[20:].tolist()  # a new permutation in epoch 2
    assert order(2).tolist() != a.tolist()


def test_loader_restore_gives_the_same_next_batches():
    stream = D.loader(_toy(40), batch_size=6, seed=3, num_epochs=2)
    it = iter(stream)
    for _ in range(4):
        next(it)
    state = it.get_state()
    expected = [b["image"] for b in it]
    resumed = iter(D.loader(_toy(40), batch_size=6, seed=3, num_epochs=2))  # a "new process"
    resumed.set_state(state)
    got = [b["image"] for b in resumed]
    assert len(got) == len(expected) == 14 - 4
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_loader_over_tfds_data_source_restores(tfds):
    with tfds.testing.mock_data(num_examples=30):
        stream = D.loader("tfds:mnist:train", batch_size=4, seed=0, rgb=True)
        assert stream.class_names == tuple(str(k) for k in range(10))
        it = iter(stream)
        first = [next(it) for _ in range(3)]
        state = it.get_state()
        rest = [b["label"] for b in it]
        again = iter(
            D.loader(tfds.data_source("mnist", split="train"), batch_size=4, seed=0, rgb=True)
        )
        again.set_state(state)
        assert [b["label"].tolist() for b in again] == [r.tolist() for r in rest]
        source = tfds.data_source("mnist", split="train")
        all_labels = sorted(int(source[i]["label"]) for i in range(30))
    assert first[0]["image"].shape == (4, 28, 28, 3) and first[0]["image"].max() <= 1.0
    seen = np.concatenate([b["label"] for b in first] + rest)
    assert sorted(seen.tolist()) == all_labels


def test_loader_over_folder_with_resize(image_folder):
    stream = D.loader(
        image_folder[0], batch_size=2, shuffle=False, size=(4, 4), color_mode="grayscale"
    )
    batches = list(stream)
    assert [b["image"].shape for b in batches] == [(2, 4, 4, 1), (2, 4, 4, 1), (1, 4, 4, 1)]
    assert stream.class_names == ("cats", "dogs")


def test_loader_transforms_run_per_record():
    def negate(record):
        return {**record, "image": -record["image"]}

    batch = next(iter(D.loader(_toy(10), batch_size=10, shuffle=False, transforms=[negate])))
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], -np.arange(10.0))


@pytest.mark.slow
def test_loader_worker_processes_match_in_process_order():
    """One worker process (seconds to start): same batches as reading in-process."""
    ds = _toy(24)
    kw = dict(batch_size=8, seed=5)
    expected = [b["label"].tolist() for b in D.loader(ds, **kw)]
    stream = D.loader(ds, workers=1, use_multiprocessing=True, max_queue_size=2, **kw)
    assert [b["label"].tolist() for b in stream] == expected


def test_loader_bad_arguments():
    ds = _toy(10)
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        D.loader(ds, batch_size=0)
    with pytest.raises(TypeError, match=r"batch_size must be an int >= 1, got 2.5"):
        D.loader(ds, batch_size=2.5)
    with pytest.raises(ValueError, match=r"batch_size=11 is larger than the 10 records"):
        D.loader(ds, batch_size=11, drop_remainder=True)
    with pytest.raises(
        ValueError, match=r"use_multiprocessing=True needs workers >= 1, got workers=0"
    ):
        D.loader(ds, batch_size=2, workers=0, use_multiprocessing=True)
    with pytest.raises(ValueError, match=r"max_queue_size must be an int >= 0, got -1"):
        D.loader(ds, batch_size=2, max_queue_size=-1)
    with pytest.raises(ValueError, match=r"num_epochs must be an int >= 1 or None, got 0"):
        D.loader(ds, batch_size=2, num_epochs=0)
    with pytest.raises(TypeError, match=r"source must be"):
        D.loader(42, batch_size=2)
    with pytest.raises(ValueError, match=r"image has 10, label has 9"):
        D.loader({"image": np.zeros((10, 2, 2, 1)), "label": np.zeros(9)}, batch_size=2)


def test_loader_position_saved_in_an_orbax_checkpoint(tmp_path):
    grain = pytest.importorskip("grain")
    ocp = pytest.importorskip("orbax.checkpoint")
    stream = D.loader(_toy(30), batch_size=4, seed=0, num_epochs=None)
    it = iter(stream)
    for _ in range(9):  # crosses the epoch boundary (8 batches per epoch)
        next(it)
    params = {"w": jnp.arange(3.0)}
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(
            9,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), data=grain.checkpoint.CheckpointSave(it)
            ),
        )
        manager.wait_until_finished()
    expected = [next(it)["image"] for _ in range(3)]
    fresh = iter(D.loader(_toy(30), batch_size=4, seed=0, num_epochs=None))
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        restored = manager.restore(
            9,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(params),
                data=grain.checkpoint.CheckpointRestore(fresh),
            ),
        )
    np.testing.assert_array_equal(restored["params"]["w"], params["w"])
    for e in expected:
        np.testing.assert_array_equal(next(fresh)["image"], e)
