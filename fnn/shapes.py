"""The offline "shapes" dataset: coloured shapes on photo textures, with classes, boxes and masks.

``fnn.data.load("shapes", task=..., split=..., n=..., size=64, seed=0)`` returns this dataset;
:func:`generate` is the same thing called directly.

How an image is made
--------------------
1. A background: a ``size × size`` crop of one of scikit-image's grayscale photo textures
   (:data:`TEXTURES`), tinted with a random colour and scaled into ``[0.15, 0.65]``.
2. Objects: each object's outline comes from ``skimage.draw.random_shapes`` (one shape of the
   drawn class on an empty canvas, so its exact pixel mask is known); an object is rejected and
   drawn again when it would touch an earlier one (a 2-pixel gap is kept), is smaller than
   ``min_area`` pixels, or, for an ellipse, is nearly round (axis ratio below 1.6, so circles and
   ellipses stay distinguishable).
3. Each object gets a flat random colour that differs from the background under it by at least
   0.35 in some channel, plus a little pixel noise.

Held-out split
--------------
``split="train"`` crops backgrounds from the top 320 rows of each texture and draws from the
random stream ``[seed, 0]``; ``split="test"`` crops from the bottom 192 rows and draws from
``[seed, 1]``. Test images therefore never share background pixels or random draws with
training images, for every ``n``. Everything is NumPy's PCG64 generator and scikit-image's
shipped texture files, so the same arguments give the same arrays on every machine.

Dict layout (``N`` images, ``K = max_objects`` slots, ``size = S``)
------------------------------------------------------------------
=================  ===================  =====================================================
task               key                  value
=================  ===================  =====================================================
all                ``image``            float32 ``[N, S, S, 3]`` in ``[0, 1]``
``localization``   ``label``            int32 ``[N]`` class id (0..3, :data:`CLASS_NAMES`)
                   ``box``              float32 ``[N, 4]`` ``xyxy`` in pixels (`fnn.boxes`)
                   ``object_mask``      bool ``[N, S, S]`` the object's pixels
``detection``      ``label``            int32 ``[N, K]`` class ids, ``-1`` for empty slots
                   ``box``              float32 ``[N, K, 4]`` ``xyxy`` pixels, zeros when empty
                   ``num_objects``      int32 ``[N]`` (1..K)
                   ``object_mask``      bool ``[N, K, S, S]`` per-object pixels
``segmentation``   ``mask``             int32 ``[N, S, S]``: 0 background, ``k + 1`` class k
                   ``label``, ``box``,  as for ``detection``
                   ``num_objects``
=================  ===================  =====================================================

Detection and segmentation draw the same images for the same ``seed``, ``split`` and ``size``
(only the dict differs), and the first ``n`` images never depend on ``n``.
(The segmentation map is called ``mask`` as Keras' segmentation examples call it; the per-object
masks are ``object_mask``.) ``ds.class_names`` names the label ids; for segmentation it starts
with ``"background"`` so that ``class_names[mask value]`` is the pixel's class.
"""

from __future__ import annotations

import functools

import numpy as np

from fnn.boxes import from_mask

__all__ = ["CLASS_NAMES", "TEXTURES", "TASKS", "generate"]

CLASS_NAMES = ("rectangle", "circle", "triangle", "ellipse")
TEXTURES = ("brick", "grass", "gravel", "moon")
TASKS = ("localization", "detection", "segmentation")
_SPLITS = {"train": (0, 0, 320), "test": (1, 320, 512)}  # stream, first row, end row
_DEFAULT_N = {"train": 2000, "test": 500}


@functools.cache
def _texture(name: str) -> np.ndarray:
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)(), np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    img = (img - img.min()) / max(img.max() - img.min(), 1e-9)
    return img


def _outline(rng: np.random.Generator, cls: int, size: int, min_size: int, max_size: int):
    from skimage.draw import random_shapes

    canvas, _ = random_shapes(
        (size, size),
        max_shapes=1,
        min_shapes=1,
        shape=CLASS_NAMES[cls],
        min_size=min_size,
        max_size=max_size,
        num_channels=1,
        intensity_range=(0, 0),
        rng=int(rng.integers(2**31)),
    )
    return canvas[..., 0] < 255


def _axis_ratio(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    lo, hi = np.linalg.eigvalsh(cov)
    return float(np.sqrt(hi / max(lo, 1e-9)))


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def _image(rng, *, size, n_objects, rows, min_size, max_size, min_area):
    tex = _texture(TEXTURES[rng.integers(len(TEXTURES))])
    top = rng.integers(rows[0], rows[1] - size + 1)
    left = rng.integers(0, tex.shape[1] - size + 1)
    crop = tex[top : top + size, left : left + size]
    tint = rng.uniform(0.6, 1.0, size=3)
    image = 0.15 + 0.5 * crop[..., None] * tint
    occupied = np.zeros((size, size), bool)
    labels, masks = [], []
    for _ in range(n_objects):
        for _attempt in range(200):
            cls = int(rng.integers(len(CLASS_NAMES)))
            mask = _outline(rng, cls, size, min_size, max_size)
            if mask.sum() < min_area or (mask & occupied).any():
                continue
            if CLASS_NAMES[cls] == "ellipse" and _axis_ratio(mask) < 1.6:
                continue
            break
        else:  # pragma: no cover - only with absurd size arguments
            raise RuntimeError(f"could not place {n_objects} objects in a {size}x{size} image")
        under = image[mask].mean(0)
        while True:
            colour = rng.uniform(0.0, 1.0, size=3)
            if np.abs(colour - under).max() >= 0.35:
                break
        noise = rng.normal(0.0, 0.03, size=(int(mask.sum()), 3))
        image[mask] = colour + noise
        occupied |= _dilate(mask, 2)
        labels.append(cls)
        masks.append(mask)
    return np.clip(image, 0.0, 1.0).astype(np.float32), labels, masks


def generate(
    task: str = "localization",
    *,
    split: str = "train",
    n: int | None = None,
    size: int = 64,
    seed: int = 0,
    max_objects: int = 4,
):
    """Generate the shapes dataset (see the module docstring for the layout and the split).

    Args:
      task: ``"localization"`` (one object per image), ``"detection"`` or ``"segmentation"``
        (1 to ``max_objects`` objects, the number drawn uniformly).
      split: ``"train"`` or ``"test"`` (the fixed held-out split).
      n: number of images (default 2000 for train, 500 for test).
      size: image height and width in pixels (>= 32).
      seed: the dataset's seed; same arguments → same arrays on every machine.
      max_objects: ``K``, the most objects per detection/segmentation image (1..6).

    Returns:
      an `fnn.data.Dataset` (`fnn.dataset.Dataset`) named ``"shapes:<task>:<split>"``.

    Examples:
      >>> ds = generate("detection", n=2, size=48)
      >>> ds["image"].shape, ds["box"].shape, ds["label"].shape
      ((2, 48, 48, 3), (2, 4, 4), (2, 4))
    """
    from fnn._validation import lookup
    from fnn.dataset import Dataset

    task = lookup("task", task, {t: t for t in TASKS})
    stream, *rows = lookup("split", split, _SPLITS)
    n = _DEFAULT_N[split.lower()] if n is None else n
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, (int, np.integer)) or not 32 <= size <= 192:
        raise ValueError(f"size must be an int in [32, 192], got {size!r}")
    if not isinstance(max_objects, (int, np.integer)) or not 1 <= max_objects <= 6:
        raise ValueError(f"max_objects must be an int in [1, 6], got {max_objects!r}")
    rng = np.random.default_rng([int(seed), stream])
    single = task == "localization"
    if single:
        min_size, max_size, min_area = size // 4, int(size * 0.7), size * size // 40
    else:
        min_size, max_size, min_area = size // 6, int(size * 0.45), size * size // 80
    k = 1 if single else max_objects
    images = np.zeros((n, size, size, 3), np.float32)
    labels = np.full((n, k), -1, np.int32)
    boxes = np.zeros((n, k, 4), np.float32)
    masks = np.zeros((n, k, size, size), bool)
    counts = np.zeros(n, np.int32)
    for i in range(n):
        count = 1 if single else int(rng.integers(1, max_objects + 1))
        images[i], cls, obj = _image(
            rng,
            size=size,
            n_objects=count,
            rows=rows,
            min_size=min_size,
            max_size=max_size,
            min_area=min_area,
        )
        for j, (c, m) in enumerate(zip(cls, obj)):
            labels[i, j], masks[i, j], boxes[i, j] = c, m, from_mask(m)
        counts[i] = count
    name = f"shapes:{task}:{split.lower()}"
    if single:
        return Dataset(
            image=images,
            label=labels[:, 0],
            box=boxes[:, 0],
            object_mask=masks[:, 0],
            class_names=CLASS_NAMES,
            name=name,
        )
    if task == "detection":
        return Dataset(
            image=images,
            label=labels,
            box=boxes,
            num_objects=counts,
            object_mask=masks,
            class_names=CLASS_NAMES,
            name=name,
        )
    seg = np.zeros((n, size, size), np.int32)
    for j in range(k):
        seg = np.where(masks[:, j], labels[:, j, None, None] + 1, seg)
    return Dataset(
        image=images,
        mask=seg,
        label=labels,
        box=boxes,
        num_objects=counts,
        class_names=("background", *CLASS_NAMES),
        name=name,
    )
