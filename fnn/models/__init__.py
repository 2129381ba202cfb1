"""Model zoo: the slides' CNN, the reference benchmark CNN, EfficientNet-Lite, MobileNetV2, ResNet,
VGG and the other families of the lecture's table (one family per file; `fnn.models.registry`
maps names to them, `fnn.pretrained.load` builds them); `build` makes any NNX model's cold start
faster. Beyond classification: `Localizer` (class + box), `UNet` (segmentation) and `CenterNet`
(detection), on a multi-scale encoder (`ConvEncoder`).

Each model module is imported on first use.
"""

import importlib

_EXPORTS = {
    "SimpleCNN": "fnn.models.cnn",
    "ReferenceCNN": "fnn.models.cnn",
    "EfficientNetLite": "fnn.models.efficientnet_lite",
    "MobileNetV2": "fnn.models.mobilenet_v2",
    "ResNet": "fnn.models.resnet",
    "VGG": "fnn.models.vgg",
    "build": "fnn.models._build",
    "ConvEncoder": "fnn.models.encoder",
    "Localizer": "fnn.models.localization",
    "UNet": "fnn.models.unet",
    "CenterNet": "fnn.models.detection",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fnn.models' has no attribute {name!r}")
