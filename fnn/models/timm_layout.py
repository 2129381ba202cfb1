"""timm's state-dict layout: renames a timm file to the layout an fnn family already reads.

timm (``pytorch-image-models``) re-implements many torchvision networks under its own module
names. Where timm's network is the SAME network as fnn's (same padding, BatchNorm eps, layer
order), a timm file (``model.state_dict()`` saved as safetensors, ``.pth`` or ``.bin``) is renamed
key by key to torchvision's names and then goes through the family's usual ``convert``, so the
usual checks and `fnn.models.zoo_spec.WeightsMismatchError` apply (keys from the file are shown
with their timm names). Which timm architecture goes with which fnn name (`ACCEPTED`):

* ``resnet50/101/152``, ``densenet121/169/201``: timm's keys ARE torchvision's (same network);
  such a file cannot be told apart, so ``layout="timm"`` only switches to timm's preprocessing.
* ``mobilenet_v2`` <- ``mobilenetv2_100``; ``efficientnet_b0..b4`` <- ``efficientnet_b0..b4``
  (timm's ``conv_stem``, ``blocks.<stage>.<i>.conv_pw/conv_dw/se/conv_pwl``, ``conv_head``).
* ``inception_v3`` <- ``inception_v3``: torchvision's names without ``AuxLogits`` and WITHOUT
  torchvision's ``transform_input`` (timm feeds ``(p/255 - 0.5) / 0.5`` directly), so the model is
  built with ``transform_input=False``. A file without ``AuxLogits.*`` keys is read as timm's.
* ``vgg16/19`` <- ``vgg16/19``: timm's head ``pre_logits.fc1`` is a 7x7 convolution and ``fc2`` a
  1x1 convolution, then global average pooling and ``head.fc``. On the 7x7 map of a 224x224 image
  the 7x7 convolution IS torchvision's first dense layer on the flattened (C, H, W) map (the
  kernel is reshaped to ``[4096, 25088]``), so the networks agree at 224x224; on larger images
  timm slides the convolution and averages, fnn (torchvision) pools to 7x7 first.
* ``inception_resnet_v2`` <- ``inception_resnet_v2``: fnn's network is Keras' (read from Keras'
  numbered layer names); timm's is the same network (eps 1e-3, the same valid/same paddings) under
  module names, mapped path by path. Keras' BatchNorm has no scale γ, timm's has: γ is folded into
  the bias-free convolution before it (``γ·(W∗x − μ)/σ + β = ((γW)∗x − γμ)/σ + β``, exact).

Refused, with the reason (`REFUSED`): ``tf_*`` ports (TensorFlow "SAME" padding and BatchNorm eps
1e-3: other outputs from the same weights), ``mobilenetv3_*_100`` (BatchNorm eps 1e-5, torchvision
1e-3), ``efficientnet_b5+`` (torchvision's B5-B7 use eps 1e-3), ``legacy_xception`` (symmetric
max-pool padding and eps 1e-5 where Keras' Xception pads SAME with eps 1e-3). timm's safetensors carry no architecture name, so a ``tf_`` file with
the keys of an accepted one is caught only through a ``config.json`` beside it (what the Hugging
Face hub stores with timm weights), whose ``architecture`` is checked and whose
``pretrained_cfg`` gives the preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Mapping

import numpy as np

from fnn.models.zoo_spec import ModelSpec, Preprocess, WeightsMismatchError

__all__ = ["ACCEPTED", "LAYOUTS", "REFUSED", "adapt", "detect", "timm_preprocess"]

log = logging.getLogger("fnn.models.timm_layout")

LAYOUTS = ("timm", "native")  # ``load(layout=...)``; None detects from the keys

# fnn name -> (timm architecture, family rule, timm's default preprocessing: size, crop, interp,
# mean, std). The preprocessing is timm's ``pretrained_cfg`` of that architecture's default tag.
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclasses.dataclass(frozen=True)
class _Entry:
    architecture: str
    rule: str  # "same" | "efficientnet" | "mobilenet_v2" | "vgg" | "inception_v3"
    size: int
    crop_pct: float
    interpolation: str
    mean_std: tuple = _IMAGENET


_TABLE: dict[str, _Entry] = {
    **{f"resnet{d}": _Entry(f"resnet{d}", "same", 224, 0.95, "bicubic") for d in (50, 101, 152)},
    **{
        f"densenet{d}": _Entry(f"densenet{d}", "same", 224, 0.875, "bicubic")
        for d in (121, 169, 201)
    },
    "mobilenet_v2": _Entry("mobilenetv2_100", "mobilenet_v2", 224, 0.875, "bicubic"),
    "efficientnet_b0": _Entry("efficientnet_b0", "efficientnet", 224, 0.875, "bicubic"),
    "efficientnet_b1": _Entry("efficientnet_b1", "efficientnet", 240, 0.9, "bicubic", _INCEPTION),
    "efficientnet_b2": _Entry("efficientnet_b2", "efficientnet", 256, 0.875, "bicubic"),
    "efficientnet_b3": _Entry("efficientnet_b3", "efficientnet", 288, 0.875, "bicubic"),
    "efficientnet_b4": _Entry("efficientnet_b4", "efficientnet", 320, 0.875, "bicubic"),
    "inception_v3": _Entry("inception_v3", "inception_v3", 299, 0.875, "bicubic", _INCEPTION),
    "vgg16": _Entry("vgg16", "vgg", 224, 0.875, "bilinear"),
    "vgg19": _Entry("vgg19", "vgg", 224, 0.875, "bilinear"),
    "inception_resnet_v2": _Entry(
        "inception_resnet_v2", "inception_resnet_v2", 299, 0.8975, "bicubic", _INCEPTION
    ),
}

ACCEPTED: dict[str, str] = {name: e.architecture for name, e in _TABLE.items()}

REFUSED: dict[str, str] = {
    "tf_efficientnet": "pads like TensorFlow ('SAME', the odd pixel after) with BatchNorm eps "
    "1e-3: the same weights give other outputs in fnn's symmetric-padding efficientnet_b*",
    "tf_mobilenetv3": "pads like TensorFlow ('SAME'); fnn's mobilenet_v3 is torchvision's",
    "mobilenetv3": "uses BatchNorm eps 1e-5 where torchvision's (fnn's) mobilenet_v3 uses 1e-3",
    "efficientnet_b5": "uses BatchNorm eps 1e-5 where torchvision's B5-B7 (fnn's) use 1e-3",
    "efficientnet_b6": "uses BatchNorm eps 1e-5 where torchvision's B5-B7 (fnn's) use 1e-3",
    "efficientnet_b7": "uses BatchNorm eps 1e-5 where torchvision's B5-B7 (fnn's) use 1e-3",
    "legacy_xception": "pads its strided max pools symmetrically and uses BatchNorm eps 1e-5, "
    "where Keras' Xception (fnn's xception) pads 'SAME' with eps 1e-3",
}


def _refusal(architecture: str) -> str | None:
    """The reason fnn refuses timm's ``architecture``, or None."""
    for prefix, reason in REFUSED.items():
        if architecture == prefix or architecture.startswith(prefix + "_"):
            return reason
    if architecture.startswith("tf_"):
        return REFUSED["tf_efficientnet"].replace("efficientnet_b*", "networks")
    return None


def timm_preprocess(name: str) -> Preprocess:
    """timm's default evaluation transform for fnn's ``name``: short side to
    ``floor(size / crop_pct)``, centre ``size`` crop, bicubic (VGG bilinear), mean/std.

    Examples:
      >>> timm_preprocess("inception_v3").resize
      341
    """
    e = _TABLE[name]
    return _preprocess(e.size, e.crop_pct, e.interpolation, *e.mean_std)


def _preprocess(size, crop_pct, interpolation, mean, std) -> Preprocess:
    if interpolation not in ("bilinear", "bicubic"):
        interpolation = "bicubic"
    return Preprocess(
        size=(int(size), int(size)),
        resize=int(math.floor(size / crop_pct)),
        interpolation=interpolation,
        antialias=True,
        mean=tuple(255.0 * m for m in mean),
        std=tuple(255.0 * s for s in std),
        mode="timm",
    )


def _timm_keys(rule: str, keys) -> bool:
    """Whether ``keys`` look like timm's layout for ``rule`` (False where they cannot tell)."""
    keys = list(keys)
    if rule in ("efficientnet", "mobilenet_v2"):
        return "conv_stem.weight" in keys or any(k.startswith("blocks.") for k in keys)
    if rule == "vgg":
        return any(k.startswith(("pre_logits.", "head.fc.")) for k in keys)
    if rule == "inception_v3":
        return "Conv2d_1a_3x3.conv.weight" in keys and not any(
            k.startswith("AuxLogits.") for k in keys
        )
    if rule == "inception_resnet_v2":
        return "conv2d_1a.conv.weight" in keys
    return False  # "same": identical keys


def _looks_timm(keys) -> bool:
    """timm-only names of any family (for a clear refusal where fnn has no mapping)."""
    return any(
        k.startswith(("conv_stem.", "blocks.", "pre_logits.", "head.fc.", "conv_head."))
        for k in keys
    )


def detect(name: str, keys) -> str:
    """``"timm"`` when the keys are timm's layout for fnn's ``name``, else ``"native"``.

    Examples:
      >>> detect("mobilenet_v2", ["conv_stem.weight", "bn1.weight"])
      'timm'
      >>> detect("mobilenet_v2", ["features.0.0.weight"])
      'native'
    """
    e = _TABLE.get(name)
    if e is None:
        return "timm" if _looks_timm(keys) else "native"
    return "timm" if _timm_keys(e.rule, keys) else "native"


def _sidecar(path) -> dict | None:
    """timm's hub ``config.json`` beside the weight file (``architecture``, ``pretrained_cfg``)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    config = os.path.join(os.path.dirname(os.fspath(path)), "config.json")
    if not os.path.isfile(config):
        return None
    try:
        with open(config, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("architecture"), str) else None


# ---- renaming: timm key -> torchvision key (None: leave the key as it is: unexpected) ----

_EFFICIENT_DS = {"conv_dw": "0.0", "bn1": "0.1", "se.conv_reduce": "1.fc1", "se.conv_expand": "1.fc2",
                 "conv_pw": "2.0", "bn2": "2.1"}  # fmt: skip
_EFFICIENT_IR = {"conv_pw": "0.0", "bn1": "0.1", "conv_dw": "1.0", "bn2": "1.1",
                 "se.conv_reduce": "2.fc1", "se.conv_expand": "2.fc2", "conv_pwl": "3.0",
                 "bn3": "3.1"}  # fmt: skip
_MOBILE_DS = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_MOBILE_IR = {"conv_pw": "conv.0.0", "bn1": "conv.0.1", "conv_dw": "conv.1.0", "bn2": "conv.1.1",
              "conv_pwl": "conv.2", "bn3": "conv.3"}  # fmt: skip
_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(.+)\.([^.]+)")


def _efficient_family(keys, rule: str) -> dict[str, str]:
    """``{timm key: torchvision key}`` for timm's EfficientNet class (mobilenetv2, efficientnet)."""
    blocks = {}  # (stage, index) -> inverted residual?
    for k in keys:
        m = _BLOCK.fullmatch(k)
        if m:
            at = (int(m[1]), int(m[2]))
            blocks[at] = blocks.get(at, False) or m[3] in ("conv_pwl", "bn3")  # not separable
    order = sorted(blocks)
    stages = 1 + max((s for s, _ in order), default=-1)
    flat = {at: 1 + i for i, at in enumerate(order)}  # mobilenet_v2: features.<1 + i>
    last = stages + 1 if rule == "efficientnet" else len(order) + 1
    out = {}
    for k in keys:
        top, _, leaf = k.rpartition(".")
        fixed = {
            "conv_stem": "features.0.0",
            "bn1": "features.0.1",
            "conv_head": f"features.{last}.0",
            "bn2": f"features.{last}.1",
            "classifier": "classifier.1",
        }
        if top in fixed:
            out[k] = f"{fixed[top]}.{leaf}"
            continue
        m = _BLOCK.fullmatch(k)
        if not m:
            continue
        s, i, module = int(m[1]), int(m[2]), m[3]
        inverted = blocks[(s, i)]
        if rule == "efficientnet":
            table = _EFFICIENT_IR if inverted else _EFFICIENT_DS
            prefix = f"features.{s + 1}.{i}.block"
        else:
            table = _MOBILE_IR if inverted else _MOBILE_DS
            prefix = f"features.{flat[(s, i)]}"
        if module in table:
            out[k] = f"{prefix}.{table[module]}.{leaf}"
    return out


def _vgg(keys) -> dict[str, str]:
    rename = {"pre_logits.fc1": "classifier.0", "pre_logits.fc2": "classifier.3",
              "head.fc": "classifier.6"}  # fmt: skip
    out = {}
    for k in keys:
        top, _, leaf = k.rpartition(".")
        if top in rename:
            out[k] = f"{rename[top]}.{leaf}"
        elif k.startswith("features."):
            out[k] = k
    return out


def _rename(rule: str, weights: Mapping[str, np.ndarray]):
    """(torchvision-named weights, {torchvision key: timm key}) for ``rule``."""
    keys = list(weights)
    if rule in ("efficientnet", "mobilenet_v2"):
        table = _efficient_family(keys, rule)
    elif rule == "vgg":
        table = _vgg(keys)
    else:  # "same", "inception_v3": timm uses torchvision's names
        table = {k: k for k in keys}
    out = {}
    for k, v in weights.items():
        new = table.get(k, k)
        if rule == "vgg" and new in ("classifier.0.weight", "classifier.3.weight"):
            v = np.asarray(v)
            if v.ndim == 4:  # a convolution over the whole 7x7 map (1x1 for fc2) = a dense layer
                v = v.reshape(v.shape[0], -1)
        if new in out:  # two timm keys onto one name: leave the second as it is (unexpected)
            new = k
        out[new] = v
    back = {new: old for old, new in table.items() if new != old}
    return out, back


# Inception-ResNet-v2: fnn's Flax paths (Keras' network) <- timm's module names.
_IRV2_FIXED = {
    "stem1/0": "conv2d_1a",
    "stem1/1": "conv2d_2a",
    "stem1/2": "conv2d_2b",
    "stem2/0": "conv2d_3b",
    "stem2/1": "conv2d_4a",
    "mixed_5b/bp/0": "mixed_5b.branch3.1",  # branch3.0 is timm's average pool
    "conv_7b": "conv2d_7b",
    "head/fc/linear": "classif",
}
_IRV2_LEAF = {
    "conv/conv/kernel": ("conv.weight", "conv"),
    "bn/bn/bias": ("bn.bias", "vector"),
    "bn/bn/mean": ("bn.running_mean", "vector"),
    "bn/bn/var": ("bn.running_var", "vector"),
    "kernel": ("weight", "dense"),
    "bias": ("bias", "vector"),
}
_IRV2_PATH = re.compile(r"(.+?)/(conv/conv/\w+|bn/bn/\w+|kernel|bias)")


def _irv2_names(model) -> dict[str, tuple[str, str]]:
    """``{Flax path: (timm key, kind)}`` for fnn's `InceptionResNetV2` and timm's module tree
    (``repeat``/``repeat_1``/``repeat_2`` hold blocks A/B/C, ``block8`` the last C block without
    ReLU, ``branch<b>`` a single unit or ``branch<b>.<j>`` a chain, ``conv2d`` the "up" 1x1)."""
    from fnn.models.zoo_spec import model_arrays

    paths = list(model_arrays(model))
    units: dict[str, set[str]] = {}  # Flax branch -> its units
    for path in paths:
        m = re.match(r"(.+/(?:branches/\d+|b\d))/(\d+)/", path)
        if m:
            units.setdefault(m[1], set()).add(m[2])
    last_c = max((int(p.split("/")[1]) for p in paths if p.startswith("blocks_c/")), default=-1)
    block = {"blocks_a": "repeat", "blocks_b": "repeat_1", "blocks_c": "repeat_2"}
    names = {}
    for path in paths:
        prefix, leaf = _IRV2_PATH.fullmatch(path).groups()
        parts = prefix.split("/")
        if prefix in _IRV2_FIXED:
            top = _IRV2_FIXED[prefix]
        elif parts[0] in block:
            i = int(parts[1])
            top = "block8" if parts[0] == "blocks_c" and i == last_c else f"{block[parts[0]]}.{i}"
            if parts[2] == "up":
                names[path] = (f"{top}.conv2d.{'weight' if leaf.endswith('kernel') else 'bias'}",
                               "conv" if leaf.endswith("kernel") else "vector")  # fmt: skip
                continue
            top = f"{top}.branch{parts[3]}"
            top += f".{parts[4]}" if len(units["/".join(parts[:4])]) > 1 else ""
        else:  # mixed_5b/b<k>/<j>, mixed_6a|7a/branches/<b>/<j>
            branch = parts[1][1:] if parts[0] == "mixed_5b" else parts[2]
            top = f"{parts[0]}.branch{branch}"
            top += f".{parts[-1]}" if len(units["/".join(parts[:-1])]) > 1 else ""
        key, kind = _IRV2_LEAF[leaf]
        names[path] = (f"{top}.{key}", kind)
    return names


def _fold_bn_scale(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """timm's BatchNorm has a scale γ, Keras' (fnn's) ``scale=False`` has none: γ goes into the
    bias-free convolution before it, ``γ·(W∗x − μ)/σ + β = ((γW)∗x − γμ)/σ + β`` (exact for any
    γ). A γ without a matching convolution stays (an unexpected key)."""
    out = dict(weights)
    for key in list(out):
        if not key.endswith(".bn.weight"):
            continue
        stem = key[: -len(".bn.weight")]
        conv, mean = f"{stem}.conv.weight", f"{stem}.bn.running_mean"
        gamma = np.asarray(out[key], np.float64)
        if conv in out and mean in out and gamma.ndim == 1:
            w, m = np.asarray(out[conv]), np.asarray(out[mean])
            if w.ndim == 4 and w.shape[0] == gamma.shape[0] == m.shape[0]:
                out[conv] = (w * gamma[:, None, None, None]).astype(w.dtype)
                out[mean] = (m * gamma).astype(m.dtype)
                del out[key]
    return out


def _irv2_convert(model, weights, *, skip=()):
    """timm ``inception_resnet_v2`` state dict -> fnn's Flax paths (BatchNorm γ folded)."""
    from fnn.models.zoo_spec import convert_named

    return convert_named(
        _fold_bn_scale(weights),
        _irv2_names(model),
        model,
        tolerate=[r"classif\..*"],
        skip=skip,
        what="inception_resnet_v2 (timm's layout)",
    )


def _translated(error: WeightsMismatchError, back: Mapping[str, str]) -> WeightsMismatchError:
    """The family's error with the file's keys in timm's names (keys it lacks stay torchvision's)."""
    text = re.sub(r"'([^']+)'", lambda m: repr(back.get(m[1], m[1])), str(error))
    return WeightsMismatchError(
        f"{text} [read as timm's layout: keys of the file in timm's names; the keys it lacks "
        f"are named as torchvision names them]"
    )


def adapt(spec: ModelSpec, weights: Mapping[str, np.ndarray], *, layout=None, path=None):
    """``(spec, weights)`` for a file in timm's layout; the native ones unchanged.

    Args:
      spec: the fnn network's `ModelSpec`.
      weights: the flat ``{key: array}`` read from the file.
      layout: None (detect from the keys), ``"timm"`` or ``"native"`` (the spec's own layout).
      path: the file (a ``config.json`` beside it names timm's architecture and preprocessing).

    Returns:
      the spec to build and convert with (timm: renaming ``convert``, timm's preprocessing, and
      for ``inception_v3`` no ``transform_input``) and the weights.

    Raises:
      ValueError: an unknown ``layout``, or a timm architecture fnn does not import (the reason
        and the accepted names).

    Examples:
      >>> from fnn.models import registry
      >>> s, w = adapt(registry.get("vgg16"), {"pre_logits.fc1.weight": np.zeros((2, 3, 7, 7))})
      >>> s.layout, s.preprocess.mode
      ('timm', 'timm')
    """
    if layout not in (None, *LAYOUTS):
        raise ValueError(f"layout must be None (detect), 'timm' or 'native', got {layout!r}")
    config = _sidecar(path) if layout != "native" else None
    architecture = config["architecture"] if config else None
    if layout is None:
        layout = "timm" if config or detect(spec.name, weights) == "timm" else "native"
    if layout == "native":
        return spec, weights
    supported = ", ".join(f"{n} <- timm {a}" for n, a in ACCEPTED.items())
    reason = _refusal(architecture) if architecture else None
    if reason:
        raise ValueError(
            f"timm's {architecture} {reason}; fnn does not import it as {spec.name}. fnn imports "
            f"timm files for: {supported}"
        )
    entry = _TABLE.get(spec.name)
    if entry is None:
        raise ValueError(
            f"{spec.name}: fnn has no mapping from timm's layout for this network (the file has "
            f"timm's names, e.g. {next(iter(weights), None)!r}); fnn imports timm files for: "
            f"{supported}. Refused timm networks and why: "
            + "; ".join(f"{k}: {v}" for k, v in REFUSED.items())
        )
    if architecture and architecture != entry.architecture:
        raise ValueError(
            f"the config.json beside the file names timm's {architecture!r}, but {spec.name} "
            f"reads timm's {entry.architecture!r}"
        )
    preprocess = timm_preprocess(spec.name)
    pcfg = config.get("pretrained_cfg") if config else None
    if isinstance(pcfg, dict):
        try:
            preprocess = _preprocess(
                pcfg.get("input_size", (3, entry.size))[-1],
                float(pcfg.get("crop_pct", entry.crop_pct)),
                str(pcfg.get("interpolation", entry.interpolation)),
                tuple(pcfg.get("mean", entry.mean_std[0])),
                tuple(pcfg.get("std", entry.mean_std[1])),
            )
        except (TypeError, ValueError, ZeroDivisionError, IndexError) as error:
            raise ValueError(
                f"config.json beside the weights: bad pretrained_cfg: {error}"
            ) from error
    if entry.rule == "inception_resnet_v2":
        renamed, convert = weights, _irv2_convert
    else:
        renamed, back = _rename(entry.rule, weights)
        native = spec.convert

        def convert(model, w, *, skip=()):
            try:
                return native(model, w, skip=skip)
            except WeightsMismatchError as error:
                raise _translated(error, back) from None

    build = spec.build
    if entry.rule == "inception_v3":

        def build(**options):
            return spec.build(transform_input=False, **options)

    log.info("%s: weights read in timm's layout (timm %s)", spec.name, entry.architecture)
    new = dataclasses.replace(
        spec,
        layout="timm",
        convert=convert,
        build=build,
        preprocess=preprocess,
        input_size=preprocess.size,
        reference=f"timm.create_model({entry.architecture!r})",
    )
    return new, renamed
