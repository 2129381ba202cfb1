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
