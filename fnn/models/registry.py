"""The zoo's one registry: every network name -> its `fnn.models.zoo_spec.ModelSpec`.

Each family module (one file per family under ``fnn/models/``) defines ``SPECS``; adding a family
is one line in ``_FAMILIES``. Modules are imported on the first lookup, not at ``import fnn``.
Names are matched ignoring case, ``-`` and ``_`` (``"ResNet50"``, ``"mobilenet-v2"`` and
``"MobileNetV2"`` all resolve), as Keras' class names and torchvision's function names differ.
"""

from __future__ import annotations

import functools
import importlib

from fnn.models.zoo_spec import ModelSpec

__all__ = ["get", "names", "specs"]

_FAMILIES = (
    "fnn.models.efficientnet_lite",
    "fnn.models.mobilenet_v2",
    "fnn.models.resnet",
    "fnn.models.vgg",
    "fnn.models.densenet",
    "fnn.models.mobilenet_v3",
    "fnn.models.inception_v3",
    "fnn.models.xception",
    "fnn.models.resnet_v2",
    "fnn.models.efficientnet",
    "fnn.models.mobilenet_v1",
    "fnn.models.inception_resnet_v2",
    "fnn.models.nasnet",
)


@functools.cache
def specs() -> dict[str, ModelSpec]:
    """``{name: ModelSpec}`` of every family in ``_FAMILIES``, in that order."""
    table: dict[str, ModelSpec] = {}
    for module in _FAMILIES:
        for name, spec in importlib.import_module(module).SPECS.items():
            if name in table:
                raise RuntimeError(f"model name {name!r} is defined twice (second in {module})")
            table[name] = spec
    return table


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def get(name: str) -> ModelSpec:
    """The spec of ``name`` (case, ``-`` and ``_`` ignored); unknown names list the known ones.

    Examples:
      >>> get("MobileNetV2").name
      'mobilenet_v2'
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    table = specs()
    by_key = {_key(n): n for n in table}
    if _key(name) not in by_key:
        from fnn._validation import unknown_name_error

        raise unknown_name_error("pretrained model", name, table)
    return table[by_key[_key(name)]]


def names() -> tuple[str, ...]:
    """Every registered name, family by family."""
    return tuple(specs())
