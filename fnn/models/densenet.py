"""DenseNet-121/169/201 in Flax NNX, laid out to load torchvision's weights.

Data contract: float NHWC images ``[N, H, W, 3]`` normalised with ImageNet's mean and std
(torchvision's evaluation transform: short side 256, centre crop 224); returns logits
``[N, num_classes]`` (or what ``include_top``/``pooling``/``features`` ask for, as
`fnn.models.zoo_spec.ModelSpec` describes). Any H, W >= 32 works.

Architecture (Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017, https://arxiv.org/abs/1608.06993): a 7x7 stride-2 convolution to 64
channels, BN, ReLU, 3x3 stride-2 max pooling; four dense blocks of (6, 12, 24, 16) layers for
DenseNet-121, (6, 12, 32, 32) for 169 and (6, 12, 48, 32) for 201. Each layer is the
pre-activation bottleneck ``BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k)`` with growth rate ``k = 32``,
and its ``k`` new maps are concatenated to its input: ``x_l = [x_0, H_1(x_0), ..., H_l(...)]``.
Between blocks a transition ``BN-ReLU-Conv1x1(C/2)-AvgPool2x2`` halves channels and resolution.
After the last block: BN, ReLU, global average pooling, ``Linear(1024 | 1664 | 1920 -> 1000)``.

Layout and how the implementations differ: torchvision (``torchvision.models.densenet121``) uses
symmetric padding (3 for the stem, 1 for the 3x3 convolutions and the max pool), BatchNorm eps
1e-5, and its state-dict keys ``features.denseblock1.denselayer1.norm1.weight`` (these Flax
modules carry exactly those names). Keras' ``DenseNet121`` has the same layers but BN eps 1.001e-5,
zero-padding layers instead of padding arguments, and ``preprocess_input`` mode ``"torch"``
(the same mean/std); its layer names differ (``conv2_block1_1_conv``). timm's ``densenet121``
uses torchvision's names, so its weights load through the torchvision layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import BatchNorm, Conv, Head, check_images, make_convert, max_pool

__all__ = ["CONFIGS", "DenseNet", "SPECS"]

# depth -> layers per dense block (growth rate 32, bottleneck width 4 * 32, 64 stem channels)
CONFIGS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}
GROWTH = 32
BN_SIZE = 4
STEM = 64
EPS = 1e-5


class DenseLayer(nnx.Module):
    """``BN-ReLU-Conv1x1(128)-BN-ReLU-Conv3x3(32)``; returns the 32 new channels."""

    def __init__(self, cin: int, *, ref: str, rngs: nnx.Rngs):
        mid = BN_SIZE * GROWTH
        self.norm1 = BatchNorm(cin, eps=EPS, ref=f"{ref}.norm1", rngs=rngs)
        self.conv1 = Conv(cin, mid, 1, ref=f"{ref}.conv1", rngs=rngs)
        self.norm2 = BatchNorm(mid, eps=EPS, ref=f"{ref}.norm2", rngs=rngs)
        self.conv2 = Conv(mid, GROWTH, 3, padding=1, ref=f"{ref}.conv2", rngs=rngs)

    def __call__(self, x):
        x = self.conv1(jax.nn.relu(self.norm1(x)))
        return self.conv2(jax.nn.relu(self.norm2(x)))


class Transition(nnx.Module):
    """``BN-ReLU-Conv1x1(C/2)-AvgPool2x2``."""

    def __init__(self, cin: int, cout: int, *, ref: str, rngs: nnx.Rngs):
        self.norm = BatchNorm(cin, eps=EPS, ref=f"{ref}.norm", rngs=rngs)
        self.conv = Conv(cin, cout, 1, ref=f"{ref}.conv", rngs=rngs)

    def __call__(self, x):
        x = self.conv(jax.nn.relu(self.norm(x)))
        return nnx.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(nnx.Module):
    """DenseNet-121/169/201 (torchvision layout), NHWC.

    Args:
      depth: 121, 169 or 201.
      num_classes: classifier size (with ``include_top``).
      include_top: keep the classifier; otherwise return the last map, or the pooled one.
      pooling: ``None``, ``"avg"`` or ``"max"`` (without ``include_top``).
      classifier_activation: ``None`` (logits) or ``"softmax"``.
      features: return the five maps at strides 2, 4, 8, 16, 32 instead (timm's
        ``features_only``: after the stem's ReLU, after blocks 1-3, after the final BN-ReLU).
      block_config: layers per dense block, overriding ``depth`` (small test networks).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: DenseNet(121, num_classes=4, rngs=nnx.Rngs(0)))
      >>> model.eval()  # shapes only: drop nnx.eval_shape to build the arrays
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 4)
    """

    def __init__(
        self,
        depth: int = 121,
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        block_config: tuple[int, ...] | None = None,
        rngs: nnx.Rngs,
    ):
        if block_config is None:
            if depth not in CONFIGS:
                raise ValueError(f"depth must be one of {sorted(CONFIGS)}, got {depth!r}")
            block_config = CONFIGS[depth]
        self.conv0 = Conv(3, STEM, 7, 2, padding=3, ref="features.conv0", rngs=rngs)
        self.norm0 = BatchNorm(STEM, eps=EPS, ref="features.norm0", rngs=rngs)
        blocks, transitions = [], []
        channels = STEM
        self.feature_channels = [STEM]
        for i, n in enumerate(block_config, start=1):
            layers = []
            for j in range(1, n + 1):
                ref = f"features.denseblock{i}.denselayer{j}"
                layers.append(DenseLayer(channels, ref=ref, rngs=rngs))
                channels += GROWTH
            blocks.append(nnx.List(layers))
            self.feature_channels.append(channels)
            if i < len(block_config):
                ref = f"features.transition{i}"
                transitions.append(Transition(channels, channels // 2, ref=ref, rngs=rngs))
                channels //= 2
        self.blocks = nnx.List(blocks)
        self.transitions = nnx.List(transitions)
        self.norm5 = BatchNorm(channels, eps=EPS, ref="features.norm5", rngs=rngs)
        self.feature_channels = tuple(self.feature_channels)
        self.feature_reductions = (2, 4, 8, 16, 32)
        self.features_only = features
        self.head = (
            None
            if features
            else Head(
                channels,
                num_classes=num_classes,
                include_top=include_top,
                pooling=pooling,
                classifier_activation=classifier_activation,
                ref="classifier",
                rngs=rngs,
            )
        )

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or the maps ``features``/``include_top`` ask for)."""
        check_images(x, name="DenseNet")
        x = jax.nn.relu(self.norm0(self.conv0(x)))
        maps = [x]
        x = max_pool(x, 3, 2, 1)
        for i, block in enumerate(self.blocks):
            for layer in block:
                x = jnp.concatenate([x, layer(x)], axis=-1)
            if i < len(self.transitions):
                maps.append(x)
                x = self.transitions[i](x)
        x = jax.nn.relu(self.norm5(x))
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(x)


def _spec(depth: int, top1: float) -> zoo_spec.ModelSpec:
    name = f"densenet{depth}"

    def build(*, rngs, **options):
        return DenseNet(depth, rngs=rngs, **options)

    channels = (64, 256, 512, 1024 if depth == 121 else 1280 if depth == 169 else 1792)
    final = {121: 1024, 169: 1664, 201: 1920}[depth]
    return zoo_spec.ModelSpec(
        name=name,
        build=build,
        input_size=(224, 224),
        layout="torchvision",
        convert=make_convert("torchvision", what=name, tolerate=(r"classifier\..*",)),
        preprocess=zoo_spec.torchvision_preprocess(224),
        published_top1=top1,
        weights_source=None,
        feature_channels=(*channels, final),
        feature_reductions=(2, 4, 8, 16, 32),
        head=r"head/.*",
        reference=f"torchvision.models.{name}",
    )


# torchvision's published IMAGENET1K_V1 top-1 accuracies
SPECS = {spec.name: spec for spec in (_spec(121, 74.434), _spec(169, 75.600), _spec(201, 76.896))}
