"""Sliding window = convolution: a face / non-face CNN run over a whole photo in one pass.

The slides' claim: a CNN classifier whose dense layers are convolutions can be applied to a larger
image at once, and its output map holds the classifier's answer for every window, as if the
window slid over the image (Sermanet et al. 2014, OverFeat). Here:

  1. train a tiny classifier on 22×22 gray windows (`FaceNet`: conv → pool → conv → pool → a
     4×4 "dense" convolution → 1×1 convolution → sigmoid): faces are scikit-image's LFW crops
     (``fnn.data.load("lfw_faces")``, 100 faces, resized 25 → 22), non-faces its 100 background
     patches plus random crops of scikit-image photos that show no human face (brick, coffee,
     coins, rocket, ...);
  2. run the same network on scikit-image's ``astronaut()`` photo, rescaled to a few sizes (the
     image pyramid): each output cell ``(i, j)`` is the face probability of the 22×22 window at
     ``(4i, 4j)`` (stride 4 = the two 2×2 poolings), with no Python loop over windows;
  3. turn every cell above a threshold into a box in the photo's pixels, keep the best boxes with
     non-maximum suppression (`fnn.boxes.nms`), and compare with the astronaut's face, measured
     once with scikit-image's LBP face cascade: ``xyxy = (175, 70, 268, 163)``.

Run:
  python examples/face_detection.py           # default: ≈ 30 CPU seconds
  python examples/face_detection.py --quick   # smoke run for `nox -s examples` (≈ 9 CPU s)

Prints the validation accuracy of the window classifier, the number of boxes after NMS and the
IoU of the best box with the astronaut's face (found when ≥ 0.5); saves
``outputs/face_detection/face_detection.png`` (photo + boxes, heat map).

Measured (default run, seed 0, a 2-core machine shared with other jobs: 29 CPU seconds, 110 s
wall): window accuracy 0.997 on 340 held-out windows; 3 boxes after NMS, the best-scoring one on
the face (IoU 0.60), two false positives on the flag and the suit's collar. Without the hard
negative round (``--hard-negatives 0``): 11 boxes, the face found (IoU 0.60) but not first. The
``--quick`` run is a smoke test: too short to find the face.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import fnn
from fnn import augment
from fnn import pool as pooling
from fnn.conv import Conv

WINDOW = 22  # the classifier's input side = the receptive field of one output cell
STRIDE = 4  # two 2×2 max-poolings: neighbouring output cells are 4 pixels apart
FACE_BOX = (175.0, 70.0, 268.0, 163.0)  # astronaut(): skimage.feature.Cascade (LBP), measured once
NEGATIVE_PHOTOS = (
    "brick",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "text",
)  # scikit-image photos shipped in the wheel, none showing a human face


class FaceNet(nnx.Module):
    """A fully convolutional face classifier: ``[N, H, W, 1]`` → ``[N, h, w, 1]`` probabilities.

    On a 22×22 window the output is ``[N, 1, 1, 1]``: the classifier. On a larger image, cell
    ``(i, j)`` is the classifier applied to the window at rows ``4i..4i+21``, columns
    ``4j..4j+21`` (``h = (H − 22) // 4 + 1``): 22 = 2 + 2·(2 + 2·4), each valid 3×3 convolution
    trims 2 pixels, each pooling halves, and the dense layer is a 4×4 convolution.
    """

    def __init__(self, *, width: int = 16, rngs: nnx.Rngs):
        self.conv1 = Conv(1, width, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = Conv(width, 2 * width, (3, 3), padding="VALID", rngs=rngs)
        self.dense = Conv(2 * width, 4 * width, (4, 4), padding="VALID", rngs=rngs)
        self.out = Conv(4 * width, 1, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = pooling.max_pool(jax.nn.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = pooling.max_pool(jax.nn.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        return jax.nn.sigmoid(self.out(jax.nn.relu(self.dense(x))))


class WindowClassifier(nnx.Module):
    """Training view of `FaceNet`: augmentation (training only), then ``[N, 22, 22, 1]`` → ``[N, 1]``."""

    def __init__(self, net: FaceNet, *, rngs: nnx.Rngs):
        self.flip = augment.RandomFlip("horizontal", rngs=rngs)
        self.shift = augment.RandomTranslation(0.05, 0.05, fill_mode="nearest", rngs=rngs)
        self.contrast = augment.RandomContrast((0.3, 0.3), value_range=(0, 1), rngs=rngs)
        self.brightness = augment.RandomBrightness(0.15, value_range=(0, 1), rngs=rngs)
        self.net = net

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.brightness(self.contrast(self.shift(self.flip(x))))
        return self.net(x)[:, 0, 0, :]


def get_config(argv=None) -> argparse.Namespace:
    """The run's settings; ``--quick`` shrinks the data and the epochs for a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--negatives", type=int, default=1500, help="random crops of non-face photos")
    p.add_argument("--scales", type=float, nargs="+", default=[0.18, 0.21, 0.25, 0.3])
    p.add_argument("--threshold", type=float, default=0.9, help="face probability for a box")
    p.add_argument("--iou-threshold", type=float, default=0.3, help="NMS overlap")
    p.add_argument("--hard-negatives", type=int, default=400, help="0: one training round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/face_detection")
    p.add_argument("--quick", action="store_true")
    cfg = p.parse_args(argv)
    if cfg.quick:
        cfg.epochs, cfg.negatives, cfg.hard_negatives = 4, 300, 100
    return cfg


def _gray(image) -> np.ndarray:
    from skimage import color, util

    image = util.img_as_float32(image)
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    return image.astype(np.float32)


def negative_crops(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 22, 22, 1]`` random windows from the face-free photos, at random scales (pyramid)."""
    from skimage import data, transform

    rng = np.random.default_rng(seed)
    photos = [_gray(getattr(data, name)()) for name in NEGATIVE_PHOTOS]
    crops = []
    for k in range(n):
        photo = photos[k % len(photos)]
        scale = rng.uniform(WINDOW / min(photo.shape) * 1.5, 0.5)
        small = transform.rescale(photo, scale, anti_aliasing=True)
        y = rng.integers(0, small.shape[0] - WINDOW + 1)
        x = rng.integers(0, small.shape[1] - WINDOW + 1)
        crops.append(small[y : y + WINDOW, x : x + WINDOW])
    return np.stack(crops).astype(np.float32)[..., None]


def hard_negatives(net: FaceNet, n: int, *, side: int = 96, seed: int = 0) -> np.ndarray:
    """The ``n`` windows of the face-free photos that ``net`` finds most face-like (hard negative
    mining, as Viola–Jones and Dalal–Triggs do), found convolutionally: random ``side × side``
    crops of the rescaled photos go through the network as one batch."""
    from skimage import data, transform

    rng = np.random.default_rng(seed + 1)
    crops = []
    for name in NEGATIVE_PHOTOS:
        photo = _gray(getattr(data, name)())
        for scale in (0.2, 0.35, 0.6):
            small = transform.rescale(photo, scale, anti_aliasing=True)
            if min(small.shape) < side:
                continue
            for _ in range(2):
                y = rng.integers(0, small.shape[0] - side + 1)
                x = rng.integers(0, small.shape[1] - side + 1)
                crops.append(small[y : y + side, x : x + side])
    crops = np.stack(crops).astype(np.float32)[..., None]
    probs = np.asarray(_forward(net, jnp.asarray(crops)))[..., 0]  # [M, h, w]
    top = np.argsort(-probs.reshape(-1))[:n]
    m, i, j = np.unravel_index(top, probs.shape)
    rows = STRIDE * i[:, None] + np.arange(WINDOW)[None, :]
    cols = STRIDE * j[:, None] + np.arange(WINDOW)[None, :]
    return crops[m[:, None, None], rows[:, :, None], cols[:, None, :]]


def training_data(cfg) -> dict:
    """Faces (label 1) and non-faces (0), 22×22 gray in [0, 1], shuffled."""
    lfw = fnn.data.load("lfw_faces", size=(WINDOW, WINDOW))
    images = np.concatenate([lfw["image"], negative_crops(cfg.negatives, cfg.seed)])
    labels = np.concatenate([lfw["label"], np.zeros(cfg.negatives, np.int32)])
    order = np.random.default_rng(cfg.seed).permutation(len(labels))
    return {"image": images[order], "label": labels[order].astype(np.float32)}


def heat_map(net: FaceNet, gray: np.ndarray, scale: float) -> np.ndarray:
    """Face probabilities ``[h, w]`` of every window of the photo rescaled by ``scale``: one
    forward pass of the whole (rescaled) photo, no loop over windows."""
    from skimage import transform

    small = transform.rescale(gray, scale, anti_aliasing=True).astype(np.float32)
    return np.asarray(_forward(net, jnp.asarray(small)[None, :, :, None]))[0, :, :, 0]


@nnx.jit
def _forward(net, x):
    return net(x)


def cell_boxes(shape, scale: float) -> np.ndarray:
    """``[h, w, 4]`` xyxy boxes, in the original photo's pixels, of the windows of a heat map."""
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    x1, y1 = STRIDE * j / scale, STRIDE * i / scale
    side = WINDOW / scale
    return np.stack([x1, y1, x1 + side, y1 + side], axis=-1).astype(np.float32)


def detect(net: FaceNet, gray: np.ndarray, scales, *, threshold: float, iou_threshold: float):
    """Heat maps at every scale → candidate boxes → NMS. Returns (boxes, scores, maps)."""
    maps = {s: heat_map(net, gray, s) for s in scales}
    boxes = np.concatenate([cell_boxes(m.shape, s).reshape(-1, 4) for s, m in maps.items()])
    scores = np.concatenate([m.reshape(-1) for m in maps.values()])
    keep, count = fnn.boxes.nms(
        jnp.asarray(boxes),
        jnp.asarray(scores),
        iou_threshold=iou_threshold,
        score_threshold=threshold,
        max_output_size=50,
    )
    keep = np.asarray(keep)[: int(count)]
    return boxes[keep], scores[keep], maps


def save_picture(path, photo, boxes, scores, maps, face_box) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5.5))
    a.imshow(photo)
    x1, y1, x2, y2 = face_box
    a.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ls="--", color="white"))
    for (x1, y1, x2, y2), s in zip(boxes, scores):
        a.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow"))
        a.text(x1, y1 - 3, f"{s:.2f}", color="yellow", fontsize=8)
    a.set_title(f"{len(boxes)} boxes after NMS (dashed: the face)", fontsize=10)
    scale = min(maps, key=lambda s: abs(WINDOW / s - (face_box[2] - face_box[0])))
    m = maps[scale]
    # Each cell's probability painted at its window's centre, over the photo.
    off = WINDOW / 2 / scale
    extent = (off - STRIDE / 2 / scale, off + (m.shape[1] - 0.5) * STRIDE / scale)
    extent_y = (off + (m.shape[0] - 0.5) * STRIDE / scale, off - STRIDE / 2 / scale)
    b.imshow(photo)
    im = b.imshow(m, extent=(*extent, *extent_y), cmap="magma", alpha=0.7, vmin=0, vmax=1)
    b.set_xlim(0, photo.shape[1])
    b.set_ylim(photo.shape[0], 0)
    b.set_title(f"P(face) per window, scale {scale} ({WINDOW / scale:.0f} px)", fontsize=10)
    fig.colorbar(im, ax=b, fraction=0.046)
    for ax in (a, b):
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    """Train, detect, print and save; returns the measured numbers."""
    from skimage import data

    cfg = get_config(argv)
    os.makedirs(cfg.out, exist_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    ds = training_data(cfg)
    n_val = len(ds["label"]) // 5
    train = {k: v[:-n_val] for k, v in ds.items()}
    val = {k: v[-n_val:] for k, v in ds.items()}
    net = FaceNet(rngs=nnx.Rngs(cfg.seed))
    classifier = WindowClassifier(net, rngs=nnx.Rngs(cfg.seed + 1))
    trainer = fnn.train.compile(
        classifier, optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"]
    )
    trainer.fit(train, batch_size=64, epochs=cfg.epochs, verbose=0, validation_data=val)
    if cfg.hard_negatives:  # a second round with the windows the first one got wrong
        hard = hard_negatives(net, cfg.hard_negatives, seed=cfg.seed)
        train = {
            "image": np.concatenate([train["image"], hard]),
            "label": np.concatenate([train["label"], np.zeros(len(hard), np.float32)]),
        }
        trainer.fit(train, batch_size=64, epochs=cfg.epochs // 2, verbose=0)
    classifier.eval()
    val_metrics = trainer.evaluate(val, verbose=0, return_dict=True)
    photo = data.astronaut()
    boxes, scores, maps = detect(
        net, _gray(photo), cfg.scales, threshold=cfg.threshold, iou_threshold=cfg.iou_threshold
    )
    ious = np.asarray(fnn.boxes.iou_matrix(jnp.asarray(FACE_BOX)[None], boxes))[0]
    best = float(ious.max()) if len(boxes) else 0.0
    picture = os.path.join(cfg.out, "face_detection.png")
    save_picture(picture, photo, boxes, scores, maps, FACE_BOX)
    result = {
        "val_accuracy": round(float(val_metrics["accuracy"]), 4),
        "boxes": int(len(boxes)),
        "best_iou_with_face": round(best, 3),
        "face_found": bool(best >= 0.5),
        "top_box_iou": round(float(ious[0]), 3) if len(boxes) else 0.0,
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "picture": picture,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
