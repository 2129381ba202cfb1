"""Datasets, splits and input pipelines: the first box of the lecture's pipeline.

The slides' pipeline starts with *input data (train / validation / test split)*. This module loads
that data, splits it, checks it and, when it does not fit in memory, streams it.

Data contract
-------------
* An in-memory dataset is a :class:`Dataset`: a ``dict`` of NumPy arrays that share their leading
  axis, ``{"image": float32 [N, H, W, C], "label": int32 [N]}``, with the metadata as attributes
  (``ds.class_names``, ``ds.name``), never as dict items, so ``ds["image"]``, ``ds.items()`` and
  ``jax.tree.map(f, ds)`` only ever see per-example arrays. A ``Dataset`` is a JAX pytree whose
  metadata survives ``jax.tree.map`` and ``jax.device_put``.
* Images are NHWC ``float32`` scaled to ``[0, 1]``: ``uint8`` pixels are divided by 255 and the 8×8
  digits (integers 0..16) by 16. Grayscale images keep one channel (``C = 1``); use
  :func:`to_rgb` (or ``load(..., rgb=True)``) for models that want three, such as EfficientNet.
  Normalisation for a particular network (ImageNet mean/std, [-1, 1], ...) is the model's job.
* Labels are ``int32`` class indices in ``[0, len(class_names))``; ``class_names[k]`` names class
  ``k``.

Sources (:func:`load`)
----------------------
``"digits"``
    scikit-learn's 8×8 handwritten digits (UCI optdigits test set): 1,797 images, 10 classes,
    offline. Shape ``[1797, 8, 8, 1]``.
``"lfw_faces"``
    scikit-image's ``lfw_subset()``: 200 grayscale 25×25 crops from Labeled Faces in the Wild,
    offline. The first 100 are faces (label 1, ``"face"``), the last 100 background patches
    (label 0, ``"non_face"``). Shape ``[200, 25, 25, 1]``.
``"tfds:<name>[:<split>]"``
    any TensorFlow Datasets catalogue entry, read through ``tfds.data_source`` (ArrayRecord files,
    no TensorFlow needed to read). Preparing a dataset that is not prepared yet downloads it and
    needs TensorFlow: ``pip install 'fnn[tensorflow]'``. The split defaults to ``"train"`` and
    accepts TFDS slicing (``"tfds:mnist:test[:10%]"``).
``"shapes"``
    generated offline (`fnn.shapes`): coloured rectangles, circles, triangles and ellipses on
    photo textures, with classes, boxes and masks for ``task="localization" | "detection" |
    "segmentation"``; ``load("shapes", task=..., split="train" | "test", n=..., size=64,
    seed=0)`` (``size`` is the generated size here, not a resize).
a folder path
    one sub-folder per class, images inside (PNG, JPEG, BMP, GIF), as Keras'
    ``image_dataset_from_directory`` expects; class names are the sorted sub-folder names.

Splits
------
:func:`split` makes a seeded, optionally stratified train/validation/test split;
:func:`validation_split` reproduces Keras' ``fit(validation_split=...)`` (the *last* fraction,
taken before any shuffling); :func:`per_class` keeps ``n`` examples of each class;
:func:`check_same_length` and :func:`check_finite` turn the classic bad inputs into clear errors.

Streaming
---------
:func:`loader` builds a Grain ``DataLoader`` over any random-access source (a ``Dataset``, a TFDS
data source, a folder) with shuffling, batching, prefetching and worker processes; its iterator's
position can be saved (``get_state``) and restored (``set_state``) with a checkpoint. The random
access sources are :class:`ArraySource`, :class:`FolderSource` and :func:`tfds_source`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import grain
import jax
import numpy as np

from fnn._validation import unknown_name_error
from fnn.dataset import Dataset, _num_examples, check_finite, check_same_length

__all__ = [
    "Dataset",
    "Splits",
    "load",
    "split",
    "validation_split",
    "per_class",
    "check_finite",
    "check_same_length",
    "to_rgb",
    "resize",
    "loader",
    "Loader",
    "ArraySource",
    "FolderSource",
    "tfds_source",
    "IMAGE_EXTENSIONS",
]


class Splits(NamedTuple):
    """The result of :func:`split`: ``train, validation, test = split(...)``.

    A split that was not asked for (fraction ``0`` or ``None``) is ``None``.
    """

    train: Any
    validation: Any
    test: Any


# --------------------------------------------------------------------------------------------
# Input checks (public so that fit and user code raise the same clear errors).
# --------------------------------------------------------------------------------------------


def _check_fraction(value, name: str, *, allow_count: bool) -> None:
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a fraction in (0, 1), got the bool {value!r}")
    if allow_count and isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"{name} must be a fraction in (0, 1) or a count >= 0, got {value}")
        return
    if not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a float fraction in (0, 1), got {type(value).__name__}")
    if value == 0 and allow_count:
        return
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value}")


def _count(value, n: int) -> int:
    """The number of examples a fraction (or an integer count) of ``n`` stands for."""
    if value is None or value == 0:
        return 0
    if isinstance(value, (int, np.integer)):
        return int(value)
    return int(round(float(value) * n))


# --------------------------------------------------------------------------------------------
# Splits.
# --------------------------------------------------------------------------------------------


def _take(data, indices):
    """Index every array of ``data`` (Dataset, dict, tuple/list or array) by ``indices``."""
    if isinstance(data, Dataset):
        return data.take(indices)
    if isinstance(data, Mapping):
        return type(data)({k: (None if v is None else v[indices]) for k, v in data.items()})
    if isinstance(data, (tuple, list)):
        return type(data)(None if v is None else v[indices] for v in data)
    return data[indices]


def _labels_for(data, stratify) -> np.ndarray:
    if stratify is True:
        if isinstance(data, Mapping):
            if "label" not in data:
                raise ValueError(
                    "stratify=True needs a 'label' entry in data; pass stratify=<labels [N]> "
                    f"instead. data has keys {sorted(data)}"
                )
            return np.asarray(data["label"])
        if isinstance(data, (tuple, list)) and len(data) >= 2:
            return np.asarray(data[1])
        raise ValueError("stratify=True needs labels: pass data=(x, y) or stratify=<labels [N]>")
    return np.asarray(stratify)


def _allocate(counts: np.ndarray, total: int, capacity: np.ndarray) -> np.ndarray:
    """Share ``total`` among classes in proportion to ``counts`` (largest remainder, capped)."""
    quota = counts * (total / counts.sum())
    alloc = np.minimum(np.floor(quota).astype(np.int64), capacity)
    order = np.argsort(-(quota - alloc), kind="stable")
    short = total - int(alloc.sum())
    while short > 0:
        for c in order:
            if short and alloc[c] < capacity[c]:
                alloc[c] += 1
                short -= 1
    return alloc


def split(
    data,
    *,
    validation: float | int | None = None,
    test: float | int | None = None,
    seed: int = 0,
    stratify: bool | Any = False,
    shuffle: bool = True,
) -> Splits:
    """Split a dataset into train / validation / test, deterministically given ``seed``.

    The slides' first box: hold out a test set you never tune on, and a validation set to choose
    hyperparameters and stop training. With ``N`` examples, the test split gets
    ``round(test · N)`` of them, the validation split ``round(validation · N)``, train the rest;
    the three are disjoint and together hold every example once.

    ``stratify`` keeps each class's share the same in every split: class ``c`` with ``n_c``
    examples puts ``≈ n_c · test`` of them in test (largest-remainder rounding, so each class is
    within one example of its exact share and the split sizes equal the unstratified ones).

    Equivalent to scikit-learn's ``train_test_split`` applied twice (same idea, different random
    stream: the indices differ for the same seed). Keras has no three-way split; its
    ``fit(validation_split=...)`` is :func:`validation_split`.

    Args:
      data: a :class:`Dataset` / dict of arrays ``{"image": [N, ...], "label": [N]}``, or a tuple
        ``(x, y, ...)`` of arrays with the same leading length ``N``. ``None`` entries pass through.
      validation: fraction in ``(0, 1)`` (or an integer count) of examples for validation; ``None``
        or ``0`` for no validation split.
      test: the same for the test split.
      seed: seed of the NumPy generator that permutes the examples.
      stratify: ``False``; ``True`` to stratify on ``data["label"]`` (or ``data[1]``); or an
        integer array ``[N]`` of labels to stratify on.
      shuffle: ``False`` keeps the original order and takes contiguous blocks: train first, then
        validation, then test (per class when stratified); ``seed`` is then unused.

    Returns:
      ``Splits(train, validation, test)``, each of the same type as ``data`` (``None`` for a split
      that was not asked for). Within a split the order is random (when ``shuffle``).

    Raises:
      ValueError: a fraction outside ``(0, 1)``, fractions leaving no training example, a split
        that rounds to zero examples, arrays of different lengths, a stratify array of another
        length.

    Examples:
      >>> import fnn
      >>> ds = fnn.data.load("digits")
      >>> train, val, test = fnn.data.split(ds, validation=0.1, test=0.2, seed=0, stratify=True)
      >>> train.num_examples, val.num_examples, test.num_examples
      (1258, 180, 359)
    """
    _check_fraction(validation, "validation", allow_count=True)
    _check_fraction(test, "test", allow_count=True)
    n = _num_examples(data, "data")
    n_test, n_val = _count(test, n), _count(validation, n)
    for name, value, k in (("validation", validation, n_val), ("test", test, n_test)):
        if value not in (None, 0) and k == 0:
            raise ValueError(
                f"{name}={value} of {n} examples rounds to 0 examples; use a larger {name} "
                "fraction or more data"
            )
    if n_test + n_val >= n:
        raise ValueError(
            f"validation={validation} and test={test} take {n_val} + {n_test} of the {n} "
            "examples and leave none for training; their sum must be below 1"
        )
    rng = np.random.default_rng(seed)

    if stratify is False or stratify is None:
        order = rng.permutation(n) if shuffle else np.arange(n)
        n_train = n - n_val - n_test
        parts = [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]
    else:
        labels = _labels_for(data, stratify)
        if labels.shape != (n,):
            hint = " (one-hot labels? pass stratify=labels.argmax(-1))" if labels.ndim == 2 else ""
            raise ValueError(
                f"stratify labels must have shape ({n},) like the data, got {labels.shape}{hint}"
            )
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        test_c = _allocate(counts, n_test, counts)
        val_c = _allocate(counts, n_val, counts - test_c)
        parts = [[], [], []]
        for c in range(len(classes)):
            idx = np.flatnonzero(inverse == c)
            if shuffle:
                idx = rng.permutation(idx)
            n_tr = counts[c] - val_c[c] - test_c[c]
            parts[0].append(idx[:n_tr])
            parts[1].append(idx[n_tr : n_tr + val_c[c]])
            parts[2].append(idx[n_tr + val_c[c] :])
        parts = [np.concatenate(p) for p in parts]
        parts = [rng.permutation(p) if shuffle else np.sort(p) for p in parts]

    train_idx, val_idx, test_idx = parts
    return Splits(
        train=_take(data, train_idx),
        validation=_take(data, val_idx) if n_val else None,
        test=_take(data, test_idx) if n_test else None,
    )


def validation_split(arrays, fraction: float):
    """Keras' ``fit(validation_split=fraction)``: the LAST ``fraction`` of the data, unshuffled.

    Keras takes ``split_at = floor(N · (1 - fraction))``, trains on ``arrays[:split_at]`` and
    validates on ``arrays[split_at:]``, *before* any shuffling, so data sorted by class gives a
    validation set of the last classes only (a classic surprise: shuffle first, or use
    :func:`split`). This function reproduces that formula exactly, float rounding included,
    so ``fnn`` and Keras pick the same examples. PyTorch has no such argument
    (``random_split`` is random).

    Contract for ``fit``: call it on the full ``(x, y, sample_weight)`` tuple before the first
    epoch; the structure is preserved and ``None`` entries stay ``None``.

    Args:
      arrays: an array, a tuple/list ``(x, y, sample_weight)`` or a dict of arrays with the same
        leading length ``N`` (NumPy or JAX; ``None`` allowed).
      fraction: the validation fraction, strictly between 0 and 1.

    Returns:
      ``(train, validation)``: two structures like ``arrays`` holding ``[:split_at]`` and
      ``[split_at:]``.

    Raises:
      ValueError: ``fraction`` outside ``(0, 1)``; arrays of different lengths; a split leaving
        train or validation empty (Keras' "not sufficient to split" error).

    Examples:
      >>> import numpy as np
      >>> (x_tr, y_tr), (x_va, y_va) = validation_split((np.arange(10), np.arange(10)), 0.2)
      >>> x_va.tolist()
      [8, 9]
    """
    _check_fraction(fraction, "validation_split", allow_count=False)
    if fraction is None:
        raise ValueError("validation_split must be a fraction strictly between 0 and 1, got None")
    n = _num_examples(arrays, "arrays")
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"validation_split={fraction} of {n} examples leaves "
            f"{'no training' if split_at == 0 else 'no validation'} example "
            f"(split at index {split_at}); provide more data or another validation_split"
        )
    return _take(arrays, slice(0, split_at)), _take(arrays, slice(split_at, n))


def per_class(data, n: int, *, seed: int = 0, label_key: str = "label"):
    """Keep ``n`` randomly chosen examples of every class (a few-shot training subset).

    Transfer learning's selling point is a good classifier from few labelled images; this gives
    the "n images per class" training sets of that experiment. The chosen examples of a class are
    a prefix of one seeded permutation, so ``per_class(d, 5, seed=s)`` is contained in
    ``per_class(d, 10, seed=s)`` (learning curves compare nested sets).

    Args:
      data: a :class:`Dataset` / dict with ``data[label_key]`` of shape ``[N]``.
      n: examples per class, ``>= 1``; every class needs at least ``n``.
      seed: seed of the NumPy generator.
      label_key: the key of the labels.

    Returns:
      the same type as ``data`` with ``n · num_classes`` examples, in random order.

    Raises:
      ValueError: ``n < 1`` or a class with fewer than ``n`` examples (named with its count).

    Examples:
      >>> import fnn
      >>> few = fnn.data.per_class(fnn.data.load("digits"), 5, seed=0)
      >>> few.num_examples
      50
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (examples per class) must be an integer >= 1, got {n!r}")
    if not isinstance(data, Mapping) or label_key not in data:
        raise ValueError(
            f"per_class needs a dict of arrays with a {label_key!r} entry, got "
            f"{sorted(data) if isinstance(data, Mapping) else type(data).__name__}"
        )
    _num_examples(data, "data")
    labels = np.asarray(data[label_key])
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n:
            raise ValueError(f"class {c} has only {len(idx)} examples, fewer than n={n}")
        chosen.append(rng.permutation(idx)[:n])
    return _take(data, rng.permutation(np.concatenate(chosen)))


# --------------------------------------------------------------------------------------------
# Image helpers.
# --------------------------------------------------------------------------------------------


def to_rgb(images):
    """Repeat a grayscale channel three times: ``[..., H, W, 1] -> [..., H, W, 3]``.

    ImageNet networks (EfficientNet-Lite) expect three channels; the lecture's face and digit
    images have one. ``R = G = B = gray`` is what Keras' ``grayscale_to_rgb`` and PIL's
    ``convert("RGB")`` do. Three-channel input is returned unchanged, four-channel (RGBA) loses
    its alpha channel. Works on NumPy (returns NumPy) and JAX arrays (returns JAX, jit-safe).

    Args:
      images: ``[..., H, W, C]`` with ``C`` in ``{1, 3, 4}``.

    Returns:
      ``[..., H, W, 3]``, same dtype.

    Examples:
      >>> import numpy as np
      >>> to_rgb(np.zeros((2, 8, 8, 1))).shape
      (2, 8, 8, 3)
    """
    shape = np.shape(images)
    if len(shape) < 3 or shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"images must have shape [..., H, W, C] with C in (1, 3, 4), got {tuple(shape)}"
        )
    xp = jax.numpy if isinstance(images, jax.Array) else np
    if shape[-1] == 1:
        return xp.repeat(images, 3, axis=-1)
    if shape[-1] == 3:
        return images
    return images[..., :3]


def resize(images, size, *, method: str = "bilinear", antialias: bool = True):
    """Resize ``[N, H, W, C]`` (or ``[H, W, C]``) images to ``size = (height, width)`` on device.

    A thin wrapper over ``jax.image.resize`` (``method`` is one of its methods: ``"nearest"``,
    ``"bilinear"``, ``"bicubic"``, ``"lanczos3"``, ...). Output pixel ``i`` (per axis, input
    length ``H``, output length ``h``) samples the input at the half-pixel-centre coordinate

        ``s = (i + 1/2) · H / h − 1/2``

    with the triangle (bilinear) kernel ``max(0, 1 − |t|)``, renormalised at the borders, so
    upsampling interpolates the two nearest pixels. With ``antialias=True`` (the default, as in
    ``jax.image.resize`` and ``tf.image.resize``) shrinking widens the kernel by ``H / h``, a
    low-pass filter against aliasing. Keras' ``Resizing`` layer and PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)`` use the same coordinates but default to
    ``antialias=False``: pass ``antialias=False`` to match them when shrinking. Runs wherever the
    array lives (GPU/TPU for a ``jax.Array``); the batch and channel axes are untouched.

    Args:
      images: ``[N, H, W, C]`` or ``[H, W, C]`` float array.
      size: ``(height, width)`` or one int for a square.
      method: the interpolation method.
      antialias: filter when downsampling.

    Returns:
      a ``jax.Array`` of shape ``[N, height, width, C]`` (or ``[height, width, C]``), float.

    Examples:
      >>> import numpy as np
      >>> resize(np.zeros((2, 8, 8, 1), np.float32), (32, 32)).shape
      (2, 32, 32, 1)
    """
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(size)
    if len(size) != 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in size):
        raise ValueError(f"size must be (height, width) of positive ints, got {size}")
    shape = np.shape(images)
    if len(shape) not in (3, 4):
        raise ValueError(f"images must have shape [N, H, W, C] or [H, W, C], got {tuple(shape)}")
    images = jax.numpy.asarray(images)
    if not jax.numpy.issubdtype(images.dtype, jax.numpy.floating):
        images = images.astype(jax.numpy.float32)
    out_shape = (*shape[:-3], *size, shape[-1])
    return jax.image.resize(images, out_shape, method=method, antialias=antialias)


# --------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------


def _load_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - sklearn is in the examples/test extras
        raise ImportError("load('digits') needs scikit-learn: pip install 'fnn[examples]'") from e
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    return Dataset(
        image=images,
        label=bunch.target.astype(np.int32),
        class_names=[str(int(t)) for t in bunch.target_names],
        name="digits",
    )


def _load_lfw_faces() -> Dataset:
    try:
        from skimage.data import lfw_subset
    except ImportError as e:  # pragma: no cover - scikit-image is in the examples/test extras
        raise ImportError(
            "load('lfw_faces') needs scikit-image: pip install 'fnn[examples]'"
        ) from e
    images = np.asarray(lfw_subset(), dtype=np.float64)
    if images.max() > 1.0:  # older scikit-image releases shipped uint8
        images = images / 255.0
    labels = np.concatenate([np.ones(100, np.int32), np.zeros(len(images) - 100, np.int32)])
    return Dataset(
        image=images.astype(np.float32)[..., None],
        label=labels,
        class_names=("non_face", "face"),
        name="lfw_faces",
    )


_BUILTIN = {"digits": _load_digits, "lfw_faces": _load_lfw_faces}


def _finish(ds: Dataset, *, size, rgb: bool) -> Dataset:
    images = ds["image"]
    if rgb:
        images = to_rgb(images)
    if size is not None:
        size = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if tuple(images.shape[1:3]) != size:
            images = np.asarray(resize(images, size))
    return ds.replace({**ds, "image": np.ascontiguousarray(images, dtype=np.float32)})


def load(name: str | os.PathLike, *, size=None, rgb: bool = False, **kwargs) -> Dataset:
    """Load a whole dataset into memory as ``{"image": float32 [N,H,W,C], "label": int32 [N]}``.

    See the module docstring for the sources and the value range (always ``[0, 1]``). The class
    names are ``ds.class_names``; ``x, y = ds["image"], ds["label"]`` feeds ``fit`` directly.

    Args:
      name: ``"digits"``, ``"lfw_faces"``, ``"tfds:<name>[:<split>]"`` or a folder path.
      size: optional ``(height, width)`` to resize every image to, e.g. ``(224, 224)`` for
        EfficientNet-Lite0. Images of one shape are resized together with :func:`resize`
        (``jax.image.resize``, bilinear, antialiased); a folder or TFDS dataset of mixed shapes
        is resized image by image with Pillow's bilinear filter on read.
      rgb: repeat grayscale images to three channels (:func:`to_rgb`).
      **kwargs: source options: ``data_dir``, ``download`` for TFDS; ``color_mode``,
        ``extensions`` for a folder.

    Returns:
      a :class:`Dataset`.

    Raises:
      ValueError: an unknown name (with a "did you mean" hint), an empty folder, an unreadable
        image, a TFDS dataset that is not prepared and ``download=False``.
      ImportError: preparing a TFDS dataset without TensorFlow installed.

    Examples:
      >>> import fnn
      >>> ds = fnn.data.load("digits")
      >>> ds["image"].shape, ds["image"].dtype, ds["label"].dtype, ds.class_names[:3]
      ((1797, 8, 8, 1), dtype('float32'), dtype('int32'), ('0', '1', '2'))
      >>> fnn.data.load("lfw_faces", rgb=True, size=(32, 32))["image"].shape
      (200, 32, 32, 3)
    """
    if isinstance(name, os.PathLike):
        ds = _load_folder(os.fspath(name), size=size, **kwargs)
    elif not isinstance(name, str):
        raise TypeError(f"name must be a dataset name or a folder path, got {type(name).__name__}")
    elif name.startswith("tfds:"):
        ds = _load_tfds(name, size=size, **kwargs)
    elif name.lower() == "shapes":  # generated: `size` is the generation size, not a resize
        from fnn import shapes

        return shapes.generate(**({} if size is None else {"size": size}), **kwargs)
    elif name.lower() in _BUILTIN:  # before folders: a folder "digits/" needs "./digits"
        if kwargs:
            raise TypeError(f"load({name!r}) takes no options {sorted(kwargs)}")
        ds = _BUILTIN[name.lower()]()
    elif os.path.isdir(name):
        ds = _load_folder(name, size=size, **kwargs)
    else:
        if os.sep in name or name.startswith("."):
            raise ValueError(
                f"Folder {name!r} does not exist (load() takes a folder of class "
                "sub-folders, a built-in name or 'tfds:<name>')"
            )
        error = unknown_name_error(
            "dataset", name, [*_BUILTIN, "tfds:<name>[:<split>]", "<folder path>"]
        )
        if "Did you mean" not in str(error) and _is_tfds_name(name):
            error = ValueError(f"Unknown dataset {name!r}. Did you mean 'tfds:{name}'?")
        raise error
    return _finish(ds, size=size, rgb=rgb)


# --------------------------------------------------------------------------------------------
# Random-access sources (shared by `load`, which stacks every record, and `loader`, which streams).
# A source has `__len__` and `__getitem__(i) -> {"image": HWC array, "label": int}`: the
# `grain.sources.RandomAccessDataSource` protocol. Sources must pickle (Grain worker processes).
# --------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


class ArraySource:
    """Random access to an in-memory dataset: record ``i`` is ``{k: v[i] for k, v in data}``.

    Lets :func:`loader` stream (shuffle, batch, prefetch, checkpoint) a ``Dataset`` exactly as it
    streams a TFDS data source.

    Examples:
      >>> import numpy as np
      >>> src = ArraySource({"image": np.zeros((3, 2, 2, 1)), "label": np.arange(3)})
      >>> len(src), int(src[2]["label"])
      (3, 2)
    """

    def __init__(self, data: Mapping[str, Any]):
        self._n = _num_examples(data, "data")
        self._arrays = {k: np.asarray(v) for k, v in data.items() if v is not None}
        self.class_names = getattr(data, "class_names", None)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self._arrays.items()}

    def __repr__(self) -> str:
        return f"ArraySource(num_records={self._n}, keys={sorted(self._arrays)})"


class FolderSource:
    """Random access to a folder of class sub-folders of images (decoded lazily with Pillow).

    Layout (as Keras' ``image_dataset_from_directory``, ``labels="inferred"``)::

        root/
          cat/  0001.png  0002.jpg ...
          dog/  a.png ...

    Class ``k`` is the ``k``-th sub-folder in sorted order; images are found recursively inside
    each class folder and sorted by path; other files and hidden folders are ignored. Record ``i``
    is ``{"image": uint8 [H, W, C], "label": int32}`` with ``C = 3`` (``color_mode="rgb"``, the
    Keras default; grayscale files are converted) or ``C = 1`` (``"grayscale"``).

    Args:
      root: the folder.
      color_mode: ``"rgb"`` or ``"grayscale"``.
      size: optional ``(height, width)``: Pillow bilinear resize (antialiased) on read.
      extensions: file suffixes to read (case-insensitive).

    Raises:
      ValueError: a missing folder, no class sub-folders, a class folder without images, or, on
        read, a file Pillow cannot decode or one larger than ``PIL.Image.MAX_IMAGE_PIXELS`` (a
        decompression bomb; Pillow itself only warns up to twice that), the file named.

    Examples:
      >>> import os, tempfile
      >>> import numpy as np
      >>> from PIL import Image
      >>> root = tempfile.mkdtemp()
      >>> for cls in ("a", "b"):
      ...     os.makedirs(f"{root}/{cls}")
      ...     Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(f"{root}/{cls}/x.png")
      >>> src = FolderSource(root)
      >>> len(src), src.class_names, src[1]["image"].shape, int(src[1]["label"])
      (2, ('a', 'b'), (4, 6, 3), 1)
    """

    def __init__(self, root, *, color_mode: str = "rgb", size=None, extensions=IMAGE_EXTENSIONS):
        root = os.fspath(root)
        if color_mode not in ("rgb", "grayscale"):
            raise ValueError(f"color_mode must be 'rgb' or 'grayscale', got {color_mode!r}")
        if size is not None:
            size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be (height, width) of positive ints, got {size}")
        if not os.path.isdir(root):
            raise ValueError(f"Folder {root!r} does not exist or is not a directory")
        classes = sorted(
            d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(f"{root}/{d}")
        )
        if not classes:
            raise ValueError(
                f"Folder {root!r} has no class sub-folders; expected {root}/<class_name>/<image> "
                f"with images ending in {', '.join(extensions)}"
            )
        extensions = tuple(e.lower() for e in extensions)
        files, labels = [], []
        for label, cls in enumerate(classes):
            found = []
            for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls)):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [
                    os.path.join(dirpath, f)
                    for f in filenames
                    if not f.startswith(".") and f.lower().endswith(extensions)
                ]
            if not found:
                raise ValueError(
                    f"Class folder {os.path.join(root, cls)!r} holds no images (expected files "
                    f"ending in {', '.join(extensions)}); remove it or add images"
                )
            files += sorted(found)
            labels += [label] * len(found)
        self.root, self.files, self.class_names = root, files, tuple(classes)
        self.labels = np.asarray(labels, np.int32)
        self.color_mode, self.size = color_mode, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        path = self.files[index]
        try:
            with Image.open(path) as im:
                _check_not_a_bomb(im)  # before anything is decoded
                im = im.convert("RGB" if self.color_mode == "rgb" else "L")
                if self.size is not None and im.size != (self.size[1], self.size[0]):
                    im = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                image = np.asarray(im, dtype=np.uint8)
        except (
            Image.DecompressionBombError,  # (and the warning, where warnings are errors)
            Image.DecompressionBombWarning,
            OSError,
            UnidentifiedImageError,
            SyntaxError,
            ValueError,
        ) as e:
            raise ValueError(f"Cannot read image file {path!r}: {e}") from e
        if image.ndim == 2:
            image = image[..., None]
        return {"image": image, "label": self.labels[index]}

    def __repr__(self) -> str:
        return (
            f"FolderSource({self.root!r}, num_records={len(self)}, class_names={self.class_names})"
        )


def _check_not_a_bomb(image) -> None:
    """Refuses an image whose declared size exceeds ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow only
    warns up to twice that): a few kilobytes of PNG can declare gigabytes of pixels."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit is not None and width * height > limit:
        raise Image.DecompressionBombError(
            f"it declares {width} x {height} = {width * height} pixels, more than "
            f"PIL.Image.MAX_IMAGE_PIXELS = {limit} (a decompression bomb?); if you trust the "
            "file, raise PIL.Image.MAX_IMAGE_PIXELS"
        )


def _tensorflow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


_NEEDS_TF = (
    "Preparing a TFDS catalogue dataset (download + conversion to ArrayRecord files) needs "
    "TensorFlow, which fnn does not install by default: pip install 'fnn[tensorflow]'. Reading "
    "an already prepared dataset does not need it (prepare once on a machine with TensorFlow and "
    "pass data_dir=...)."
)


def tfds_source(name: str, *, split: str = "train", data_dir=None, download: bool = True):
    """A TFDS random-access data source (``tfds.data_source``) for ``name``, prepared if needed.

    Reading ArrayRecord files needs no TensorFlow; preparing a dataset that is not yet on disk
    downloads it and needs TensorFlow (the ``tensorflow`` extra), which is checked *before*
    anything is downloaded. Under ``tfds.testing.mock_data`` nothing is downloaded or prepared.

    Args:
      name: a TFDS catalogue name, optionally with config/version (``"mnist"``,
        ``"cifar10:3.0.2"`` is written ``"cifar10/3.0.2"`` as in TFDS).
      split: a TFDS split with optional slicing: ``"train"``, ``"test[:10%]"``, ``"train+test"``.
      data_dir: where TFDS keeps datasets (default ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).
      download: ``False`` to fail instead of downloading when the dataset is not prepared.

    Returns:
      ``(source, info)``: the ``tfds.data_source`` result (``len``, ``source[i]`` is a dict of
      NumPy values) and its ``tfds.core.DatasetInfo``.

    Raises:
      ValueError: an unknown dataset (with "did you mean") or split, or a dataset that is not
        prepared and ``download=False``.
      ImportError: the dataset must be prepared and TensorFlow is not installed.

    Examples:
      >>> import tensorflow_datasets as tfds
      >>> with tfds.testing.mock_data(num_examples=4):
      ...     source, info = tfds_source("mnist", split="test")
      ...     len(source), source[0]["image"].shape, info.features["label"].num_classes
      (4, (28, 28, 1), 10)
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise _unknown_tfds_error(name) from None
    if not builder.is_prepared():
        if not download:
            raise ValueError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r} and "
                "download=False; pass download=True (needs network and TensorFlow) or the "
                "data_dir where it was prepared"
            )
        prepare = type(builder).download_and_prepare
        real = getattr(prepare, "__module__", "").startswith("tensorflow_datasets.core")
        if real and not _tensorflow_available():  # fail before a long download, not after
            raise ImportError(f"TFDS dataset {name!r} is not prepared yet. {_NEEDS_TF}")
        try:
            builder.download_and_prepare(file_format="array_record")
        except ModuleNotFoundError as e:
            if "tensorflow" in str(e):
                raise ImportError(f"TFDS dataset {name!r} is not prepared yet. {_NEEDS_TF}") from e
            raise
    splits = dict(builder.info.splits) if builder.info.splits else {}
    if splits:
        import re

        for part in split.split("+"):
            base = re.split(r"[\[(]", part.strip())[0]
            if base not in splits:
                raise unknown_name_error(f"split of TFDS dataset {name!r}", base, splits)
    return builder.as_data_source(split=split), builder.info


def _unknown_tfds_error(name: str) -> ValueError:
    import difflib

    import tensorflow_datasets as tfds

    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(name.split("/")[0].lower(), known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown TFDS dataset {name!r}.{hint} See tfds.list_builders() for the "
        f"{len(known)} catalogue names."
    )


def _parse_tfds_name(name: str) -> tuple[str, str]:
    body = name[len("tfds:") :]
    tfds_name, _, split = body.partition(":")
    if not tfds_name:
        raise ValueError(f"Expected 'tfds:<name>[:<split>]', e.g. 'tfds:mnist:test', got {name!r}")
    return tfds_name, split or "train"


def _records_to_dataset(source, *, name, class_names, image_key, label_key, size) -> Dataset:
    """Read every record of a random-access source into a stacked ``Dataset``."""
    n = len(source)
    if n == 0:
        raise ValueError(f"{name} holds no examples")
    images, labels = [], np.empty(n, np.int32)
    for i in range(n):
        record = source[i]
        if image_key not in record or label_key not in record:
            raise ValueError(
                f"{name} records have keys {sorted(record)}; expected image_key={image_key!r} "
                f"and label_key={label_key!r}"
            )
        images.append(_as_hwc(record[image_key]))
        labels[i] = int(record[label_key])
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        if size is None:
            raise ValueError(
                f"{name} has images of different shapes {sorted(shapes)[:3]}; pass "
                "size=(height, width) to resize them"
            )
        size = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        images = [_as_hwc(im, size) for im in images]
    return Dataset(
        image=_to_unit_float(np.stack(images)), label=labels, class_names=class_names, name=name
    )


def _as_hwc(image, size=None) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"expected an [H, W, C] image, got shape {image.shape}")
    if size is not None and image.shape[:2] != tuple(size):
        from PIL import Image

        if image.dtype != np.uint8:
            raise ValueError(
                f"images of different sizes can only be resized on read when they are uint8, "
                f"got {image.dtype}"
            )
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        pil = pil.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        image = np.asarray(pil).reshape(size[0], size[1], image.shape[-1])
    return image


def _to_unit_float(images) -> np.ndarray:
    """uint8 pixels → float32 in [0, 1]; floats are kept (as float32); bools → {0, 1}."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    if images.dtype == np.uint16:
        return images.astype(np.float32) / np.float32(65535.0)
    return images.astype(np.float32)


def _is_tfds_name(name: str) -> bool:
    try:
        import tensorflow_datasets as tfds
    except ImportError:  # pragma: no cover - tensorflow-datasets is a core dependency
        return False
    return name.split("/")[0].split(":")[0] in tfds.list_builders(with_community_datasets=False)


def _load_tfds(
    name: str,
    *,
    data_dir=None,
    download: bool = True,
    image_key: str = "image",
    label_key: str = "label",
    size=None,
) -> Dataset:
    tfds_name, split = _parse_tfds_name(name)
    source, info = tfds_source(tfds_name, split=split, data_dir=data_dir, download=download)
    label_feature = info.features[label_key] if label_key in info.features else None
    class_names = getattr(label_feature, "names", None)
    return _records_to_dataset(
        source,
        name=f"tfds:{tfds_name}:{split}",
        class_names=class_names,
        image_key=image_key,
        label_key=label_key,
        size=size,
    )


def _load_folder(
    path: str, *, color_mode: str = "rgb", extensions=IMAGE_EXTENSIONS, size=None
) -> Dataset:
    source = FolderSource(path, color_mode=color_mode, extensions=extensions)
    return _records_to_dataset(
        source,
        name=path,
        class_names=source.class_names,
        image_key="image",
        label_key="label",
        size=size,
    )


# --------------------------------------------------------------------------------------------
# Streaming: Grain over any random-access source.
# --------------------------------------------------------------------------------------------


class _ToTrainingRecord(grain.transforms.Map):
    """Grain map: a raw record → ``{"image": float32 [H, W, C] in [0, 1], "label": int32}``.

    A module-level class (not a closure) so that Grain worker processes can unpickle it.
    """

    def __init__(self, image_key: str, label_key: str, size, rgb: bool):
        self.image_key, self.label_key, self.size, self.rgb = image_key, label_key, size, rgb

    def map(self, element):
        try:
            image = element[self.image_key]
            label = element[self.label_key]
        except KeyError:
            raise ValueError(
                f"records have keys {sorted(element)}; expected image_key={self.image_key!r} "
                f"and label_key={self.label_key!r}"
            ) from None
        image = _to_unit_float(_as_hwc(image, self.size))
        if self.rgb:
            image = to_rgb(image)
        return {"image": image, "label": np.int32(label)}


class _CallableMap(grain.transforms.Map):
    """Grain map around a plain callable ``record -> record`` (picklable if the callable is)."""

    def __init__(self, fn):
        self.fn = fn

    def map(self, element):
        return self.fn(element)


class Loader:
    """A streaming input pipeline: a ``grain.DataLoader`` plus its epoch length.

    ``iter(loader)`` returns a ``grain.DataLoaderIterator`` yielding batches
    ``{"image": float32 [B, H, W, C], "label": int32 [B]}`` (NumPy). Its position is
    ``it.get_state()`` (bytes) and ``it.set_state(state)`` moves a fresh iterator there, so a
    checkpoint that stores the state resumes with exactly the batches that would have come next.
    With Orbax, save it through ``grain.checkpoint.CheckpointSave(it)`` /
    ``grain.checkpoint.CheckpointRestore(it)`` in a ``CheckpointManager``'s composite args.

    Attributes:
      data_loader: the underlying ``grain.DataLoader``.
      num_records: examples per epoch (this process's shard).
      batch_size: examples per batch.
      steps_per_epoch: batches per epoch (``len(loader)``): ``ceil(num_records / batch_size)``,
        or the floor with ``drop_remainder=True``.
      class_names: the source's class names, when it has them.
    """

    def __init__(self, data_loader, *, num_records, batch_size, drop_remainder, num_epochs, names):
        self.data_loader = data_loader
        self.num_records = num_records
        self.batch_size = batch_size
        self.num_epochs = num_epochs
        self.class_names = None if names is None else tuple(str(c) for c in names)
        rounding = math.floor if drop_remainder else math.ceil
        self.steps_per_epoch = int(rounding(num_records / batch_size))

    def __iter__(self):
        return iter(self.data_loader)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __repr__(self) -> str:
        return (
            f"Loader(num_records={self.num_records}, batch_size={self.batch_size}, "
            f"steps_per_epoch={self.steps_per_epoch}, num_epochs={self.num_epochs})"
        )


def _source_for(source, *, split, data_dir, color_mode, size):
    """Turn what the user passed to `loader` into a random-access source (+ class names)."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if os.path.isdir(name):
            src = FolderSource(name, color_mode=color_mode, size=size)
            return src, src.class_names
        if name.startswith("tfds:"):
            tfds_name, parsed_split = _parse_tfds_name(name)
            src, info = tfds_source(tfds_name, split=split or parsed_split, data_dir=data_dir)
            label = info.features["label"] if "label" in info.features else None
            return src, getattr(label, "names", None)
        ds = load(name)
        return ArraySource(ds), ds.class_names
    if isinstance(source, Mapping):
        return ArraySource(source), getattr(source, "class_names", None)
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        info = getattr(source, "dataset_info", None)  # a tfds.data_source result
        label = info.features["label"] if info is not None and "label" in info.features else None
        return source, getattr(source, "class_names", getattr(label, "names", None))
    raise TypeError(
        "source must be a Dataset / dict of arrays, a dataset name ('digits', 'tfds:mnist', a "
        "folder) or a random-access source with __len__ and __getitem__, got "
        f"{type(source).__name__}"
    )


# Grain's read-ahead scans its buffer per record (see `loader`): larger buffers cost more than
# they hide. Measured on 2 CPU cores: 128 records ≈ 2,600 images/s, 1,280 records ≈ 340.
_MAX_READ_AHEAD = 128


def _mark_absl_flags_parsed() -> None:
    """Work around google/grain#1355 (fixed upstream by PR #1362, after grain 0.2.18).

    Grain's worker processes read an Abseil flag, which raises ``UnparsedFlagAccessError`` in a
    script that does not run under ``absl.app``; marking the flags parsed makes them take their
    defaults, as the upstream fix does. Programs that parse flags themselves are unaffected.
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def loader(
    source,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_epochs: int | None = 1,
    drop_remainder: bool = False,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
    size=None,
    rgb: bool = False,
    transforms: Sequence[Any] = (),
    image_key: str = "image",
    label_key: str = "label",
    split: str | None = None,
    data_dir=None,
    color_mode: str = "rgb",
    shard_options=None,
) -> Loader:
    """Stream batches from data that need not fit in memory, with a checkpointable position.

    The pipeline is Grain's ``DataLoader``: an ``IndexSampler`` (a seeded global shuffle, a new
    order each epoch), per-record reading and decoding (to ``float32`` in ``[0, 1]``, optional
    resize / RGB, your ``transforms``), ``Batch``, and prefetching in threads or worker processes.
    Only the indices are shuffled, so the source is read lazily: a TFDS ArrayRecord data source
    or a folder of images streams from disk.

    Keras' ``fit(workers=..., use_multiprocessing=..., max_queue_size=...)`` map to Grain as:

    ======================  =====================================================================
    Keras                   Grain
    ======================  =====================================================================
    ``use_multiprocessing``  ``True``: ``worker_count = workers`` processes, each with a
                            ``worker_buffer_size = ceil(max_queue_size / workers)`` batch queue
                            and one reader thread. ``False``: ``worker_count = 0``, reading in
                            the calling process.
    ``workers``             processes (above) or, without multiprocessing, reader threads
                            (``ReadOptions.num_threads``); ``0``: read synchronously in
                            ``next()``, the fastest choice for in-memory arrays.
    ``max_queue_size``      records read ahead by the threads: ``ReadOptions.prefetch_buffer_size
                            = min(max_queue_size · batch_size, 128)``.
    ======================  =====================================================================

    The cap of 128 records is measured, not arbitrary: Grain 0.2's read-ahead scans its whole
    buffer of futures for every record it returns, so a Keras-sized queue of 10 batches of 128
    (1,280 records) ran ≈ 8× slower (≈ 340 vs ≈ 2,600 images/s, 32×32×3 in memory, 2 CPU
    cores) than a buffer of 128. Plain PyTorch ``DataLoader(num_workers, prefetch_factor)`` is
    the same design without a saveable position (torchdata's ``StatefulDataLoader`` adds one).

    Args:
      source: a :class:`Dataset` / dict of arrays (:class:`ArraySource`), a TFDS name
        ``"tfds:<name>[:<split>]"`` (read through ``tfds.data_source``), a folder of class
        sub-folders (:class:`FolderSource`), a built-in name (loaded, then streamed), or any
        random-access source (``len(src)``, ``src[i]`` a dict), e.g. a ``tfds.data_source``.
      batch_size: examples per batch, ``>= 1``.
      shuffle: shuffle the record order (a different permutation each epoch).
      seed: the shuffle seed (Grain's ``IndexSampler(seed=...)``).
      num_epochs: passes over the data before the iterator stops; ``None`` for an endless
        stream.
      drop_remainder: drop the last, smaller batch. Grain batches the whole stream, across
        epoch boundaries, so with ``num_epochs > 1`` a batch can hold the end of one epoch and
        the start of the next, and only the very last batch can be short. For Keras-like
        epochs, use ``num_epochs=None`` and take ``len(loader)`` batches per epoch, or one
        loader per epoch with ``seed=base_seed + epoch``.
      workers: worker processes (``use_multiprocessing=True``) or reader threads.
      use_multiprocessing: read and decode in ``workers`` separate processes (for Python-heavy
        decoding). Grain starts them with ``spawn``: each is a fresh interpreter (seconds of
        start-up) that re-imports your script, so a script needs the
        ``if __name__ == "__main__":`` guard, and ``transforms`` must be picklable
        (module-level functions, not lambdas).
      max_queue_size: batches to prefetch.
      size: ``(height, width)`` to resize each image to on read (Pillow, bilinear).
      rgb: repeat grayscale channels to three.
      transforms: extra per-record callables ``record -> record`` (or Grain transforms), applied
        after decoding and before batching, e.g. host-side augmentation.
      image_key, label_key: the record keys of the image and the label (TFDS: ``"image"``,
        ``"label"``).
      split: the TFDS split when ``source`` is a TFDS name (overrides the name's split).
      data_dir: the TFDS data directory.
      color_mode: for a folder: ``"rgb"`` or ``"grayscale"``.
      shard_options: Grain shard options; default ``grain.sharding.NoSharding()``. Use
        ``grain.sharding.ShardByJaxProcess(drop_remainder=True)`` on several hosts.

    Returns:
      a :class:`Loader`; ``len(loader)`` is the number of batches per epoch.

    Raises:
      ValueError: a ``batch_size`` below 1 or above the number of records with
        ``drop_remainder=True``; ``use_multiprocessing`` with ``workers < 1``; negative
        ``max_queue_size``; an empty source.

    Examples:
      >>> import fnn
      >>> stream = fnn.data.loader(fnn.data.load("digits"), batch_size=256, seed=0)
      >>> it = iter(stream)
      >>> first = next(it)
      >>> first["image"].shape, first["label"].dtype, len(stream)
      ((256, 8, 8, 1), dtype('int32'), 8)
      >>> state = it.get_state()           # save with the model checkpoint
      >>> second = next(it)
      >>> it2 = iter(stream); it2.set_state(state)   # ... and resume after a restart
      >>> bool((next(it2)["label"] == second["label"]).all())
      True
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    if use_multiprocessing and workers < 1:
        raise ValueError(f"use_multiprocessing=True needs workers >= 1, got workers={workers}")
    if not isinstance(max_queue_size, (int, np.integer)) or max_queue_size < 0:
        raise ValueError(f"max_queue_size must be an int >= 0, got {max_queue_size!r}")
    if num_epochs is not None and (not isinstance(num_epochs, (int, np.integer)) or num_epochs < 1):
        raise ValueError(f"num_epochs must be an int >= 1 or None, got {num_epochs!r}")
    if size is not None:
        size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(size)

    src, class_names = _source_for(
        source, split=split, data_dir=data_dir, color_mode=color_mode, size=size
    )
    num_records = len(src)
    if num_records == 0:
        raise ValueError(f"source {src!r} holds no records")
    if drop_remainder and batch_size > num_records:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {num_records} records and "
            "drop_remainder=True would yield no batch"
        )
    shard_options = shard_options or grain.sharding.NoSharding()
    sampler = grain.samplers.IndexSampler(
        num_records=num_records,
        shard_options=shard_options,
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=seed,
    )
    operations = [_ToTrainingRecord(image_key, label_key, size, rgb)]
    for t in transforms:
        is_grain = isinstance(t, (grain.transforms.Map, grain.transforms.RandomMap))
        operations.append(t if is_grain else _CallableMap(t))
    operations.append(grain.transforms.Batch(batch_size=batch_size, drop_remainder=drop_remainder))
    read_ahead = min(max_queue_size * batch_size, _MAX_READ_AHEAD)
    if use_multiprocessing:
        worker_count, worker_buffer = int(workers), max(1, math.ceil(max_queue_size / workers))
        read_options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=read_ahead)
        _mark_absl_flags_parsed()
    else:
        threads = int(workers) if read_ahead else 0
        worker_count, worker_buffer = 0, 1
        read_options = grain.ReadOptions(
            num_threads=threads, prefetch_buffer_size=max(read_ahead, threads) if threads else 0
        )
    data_loader = grain.DataLoader(
        data_source=src,
        sampler=sampler,
        operations=operations,
        worker_count=worker_count,
        worker_buffer_size=worker_buffer,
        shard_options=shard_options,
        read_options=read_options,
    )
    shard_count = getattr(shard_options, "shard_count", 1)
    return Loader(
        data_loader,
        num_records=num_records // shard_count if shard_count > 1 else num_records,
        batch_size=batch_size,
        drop_remainder=drop_remainder,
        num_epochs=num_epochs,
        names=class_names,
    )
