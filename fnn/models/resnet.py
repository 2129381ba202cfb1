"""ResNet50/101/152 in Flax NNX, laid out to load torchvision's weights (``resnet50`` ...).

Data contract: float NHWC images ``[N, H, W, 3]`` (H, W >= 32) normalised with ImageNet's mean
and std (torchvision's evaluation transform, `fnn.preprocessing`); logits ``[N, num_classes]``.

Architecture (He et al., "Deep Residual Learning for Image Recognition", 2015, as torchvision's
"ResNet v1.5"): a 7x7 stride-2 conv to 64 channels (padding 3), BN, ReLU, 3x3 stride-2 max pool
(padding 1); four stages of bottleneck blocks (1x1 reduce -> BN -> ReLU -> 3x3 (the stage's
stride here, v1.5; the original paper and Keras' ``ResNet50`` put it on the first 1x1) -> BN ->
ReLU -> 1x1 expand x4 -> BN, plus the shortcut (a strided 1x1 conv + BN on a stage's first block),
then ReLU) with 64, 128, 256, 512 channels (x4 out) and 3-4-6-3 (50), 3-4-23-3 (101), 3-8-36-3
(152) blocks; global average pooling and a dense layer. BatchNorm ``eps = 1e-5``; convolutions are
bias-free. Flax paths mirror torchvision's names (``layer1/0/conv1/kernel`` <-
``layer1.0.conv1.weight``). Keras' ``ResNet50`` differs (stride on the 1x1, conv biases, eps
1.001e-5, caffe preprocessing), so Keras weights do not fit this layout.
"""

from __future__ import annotations

import jax
from flax import nnx

from fnn import pool as pooling
from fnn.conv import Conv  # nnx.Conv's parameters; 1x1 as matrix products, CPU kernel gradient
from fnn.layers import BatchNorm  # nnx.BatchNorm's numbers, traced in linear time
from fnn.models import _zoo_common as common
from fnn.models.zoo_spec import ModelSpec, convert_named, torchvision_preprocess

__all__ = ["SPECS", "ResNet"]

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
FEATURE_CHANNELS = (64, 256, 512, 1024, 2048)
FEATURE_REDUCTIONS = (2, 4, 8, 16, 32)


def _conv(cin, cout, k, stride, rngs):
    p = k // 2
    return Conv(
        cin,
        cout,
        (k, k),
        strides=stride,
        padding=((p, p), (p, p)),
        use_bias=False,
        kernel_init=common.torch_conv_init,
        rngs=rngs,
    )


def _bn(c, rngs):
    return BatchNorm(c, epsilon=1e-5, momentum=0.9, rngs=rngs)


class Downsample(nnx.Module):
    """The projection shortcut: strided 1x1 conv + BN (torchvision's ``downsample.0`` / ``.1``)."""

    def __init__(self, cin, cout, stride, rngs):
        self.layers = nnx.List([_conv(cin, cout, 1, stride, rngs), _bn(cout, rngs)])

    def __call__(self, x, ura=None):
        return self.layers[1](self.layers[0](x), use_running_average=ura)


class Bottleneck(nnx.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4) with BN and ReLU, plus the shortcut, then ReLU."""

    def __init__(self, cin, width, stride, *, rngs):
        cout = width * EXPANSION
        self.conv1, self.bn1 = _conv(cin, width, 1, 1, rngs), _bn(width, rngs)
        self.conv2, self.bn2 = _conv(width, width, 3, stride, rngs), _bn(width, rngs)
        self.conv3, self.bn3 = _conv(width, cout, 1, 1, rngs), _bn(cout, rngs)
        self.downsample = (
            Downsample(cin, cout, stride, rngs) if stride != 1 or cin != cout else None
        )

    def __call__(self, x, ura=None):
        h = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        h = jax.nn.relu(self.bn2(self.conv2(h), use_running_average=ura))
        h = self.bn3(self.conv3(h), use_running_average=ura)
        shortcut = self.downsample(x, ura) if self.downsample is not None else x
        return jax.nn.relu(h + shortcut)


class ResNet(nnx.Module):
    """ResNet-50/101/152 v1.5 (torchvision layout), NHWC; the top as ``keras.applications``.

    ``y = softmax?(W · GAP(layer4(layer3(layer2(layer1(maxpool(ReLU(BN(conv7x7(x))))))))) + b)``.

    Args:
      depth: 50, 101 or 152.
      num_classes: classifier outputs, used with ``include_top``.
      include_top: the pooling + dense classifier (``fc``); False returns the last
        ``[N, h, w, 2048]`` map, or ``[N, 2048]`` with ``pooling``.
      pooling: None, ``"avg"`` or ``"max"`` for ``include_top=False``.
      classifier_activation: None (logits) or ``"softmax"``.
      features: return the five maps at strides 2, 4, 8, 16, 32 (channels 64, 256, 512, 1024,
        2048: the stem's ReLU and each stage; timm's ``features_only``); no classifier.
      freeze_batchnorm: keep BatchNorm in inference mode even after ``train()``.
      rngs: `flax.nnx.Rngs` (torchvision's initialisers).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: ResNet(50, num_classes=4, rngs=nnx.Rngs(0)))  # shapes only
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 64, 64, 3))).shape
      (1, 4)
      >>> encoder = nnx.eval_shape(lambda: ResNet(50, features=True, rngs=nnx.Rngs(0)))
      >>> maps = nnx.eval_shape(lambda m, x: m(x), encoder, jnp.zeros((1, 64, 64, 3)))
      >>> [m.shape[1:] for m in maps]
      [(32, 32, 64), (16, 16, 256), (8, 8, 512), (4, 4, 1024), (2, 2, 2048)]
    """

    feature_channels = FEATURE_CHANNELS
    feature_reductions = FEATURE_REDUCTIONS
    min_input_size = 32

    def __init__(
        self,
        depth: int = 50,
        *,
        num_classes: int | None = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        freeze_batchnorm: bool = False,
        rngs: nnx.Rngs,
    ):
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        common.check_options(
            f"ResNet{depth}",
            num_classes=num_classes,
            include_top=include_top,
            pooling=pooling,
            classifier_activation=classifier_activation,
            features=features,
        )
        self.depth = depth
        self.include_top = include_top and not features
        self.pooling, self.classifier_activation = pooling, classifier_activation
        self.features_only, self.freeze_batchnorm = features, freeze_batchnorm
        self.conv1, self.bn1 = _conv(3, 64, 7, 2, rngs), _bn(64, rngs)
        cin = 64
        for stage, (width, repeats) in enumerate(zip(WIDTHS, DEPTHS[depth])):
            blocks = []
            for i in range(repeats):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Bottleneck(cin, width, stride, rngs=rngs))
                cin = width * EXPANSION
            setattr(self, f"layer{stage + 1}", nnx.List(blocks))
        self.fc = (
            nnx.Linear(
                cin,
                num_classes,
                kernel_init=common.torch_linear_init(cin),
                bias_init=common.torch_linear_init(cin),
                rngs=rngs,
            )
            if self.include_top
            else None
        )

    def _stages(self):
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def feature_maps(self, x: jax.Array) -> list[jax.Array]:
        """The stem's ReLU output (stride 2) and the four stages' outputs (strides 4 .. 32)."""
        name = f"ResNet{self.depth}"
        common.check_images(x, name=name, min_size=self.min_input_size)
        ura = True if self.freeze_batchnorm else None
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        maps = [x]
        x = pooling.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in self._stages():
            for block in stage:
                x = block(x, ura)
            maps.append(x)
        return maps

    def __call__(self, x: jax.Array):
        """Logits (or probabilities, the pooled or last map, or the feature list) for ``x``."""
        maps = self.feature_maps(x)
        if self.features_only:
            return maps
        if not self.include_top:
            return common.pool(maps[-1], self.pooling)
        logits = self.fc(common.pool(maps[-1], "avg"))
        return common.activate(logits, self.classifier_activation)

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled base features ``[N, 2048]``."""
        return common.pool(self.feature_maps(x)[-1], "avg")


def convert(model: ResNet, weights, *, skip=()):
    """torchvision ``resnet{50,101,152}`` state dict -> ``{Flax path: array}`` (`ModelSpec`)."""
    names = common.torch_mirror_names(model)
    names = {
        p: (k.replace("downsample.layers.", "downsample."), kind) for p, (k, kind) in names.items()
    }
    return convert_named(
        weights, names, model, tolerate=[r"fc\..*"], skip=skip, what=f"resnet{model.depth}"
    )


def _spec(depth: int, top1: float) -> ModelSpec:
    return ModelSpec(
        name=f"resnet{depth}",
        build=lambda **options: ResNet(depth, **options),
        input_size=(224, 224),
        layout="torchvision",
        convert=convert,
        preprocess=torchvision_preprocess(224, 256),
        published_top1=top1,  # torchvision ResNet*_Weights.IMAGENET1K_V1
        weights_source=None,
        feature_channels=FEATURE_CHANNELS,
        feature_reductions=FEATURE_REDUCTIONS,
        head=r"fc/.*",
        reference=f"torchvision.models.resnet{depth}",
    )


SPECS = {f"resnet{d}": _spec(d, t) for d, t in ((50, 76.130), (101, 77.374), (152, 78.312))}
