"""ResNet50V2, ResNet101V2 and ResNet152V2 in Flax NNX, laid out to load Keras' weights.

Data contract: float NHWC images ``[N, H, W, 3]`` scaled as Keras' ``preprocess_input`` mode
``"tf"`` does, ``p / 127.5 - 1``; returns logits ``[N, num_classes]`` (or what
``include_top``/``pooling``/``features`` ask for). Native size 224x224; H, W >= 32.

Architecture (He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016,
https://arxiv.org/abs/1603.05027): a 7x7 stride-2 convolution to 64 channels (with bias, no BN),
3x3 stride-2 max pooling over zero padding; four stages of (3, 4, 6, 3), (3, 4, 23, 3) or
(3, 8, 36, 3) pre-activation bottlenecks with 64, 128, 256, 512 filters:
``y = shortcut + Conv1x1(4f)(ReLU(BN(Conv3x3(f)(ReLU(BN(Conv1x1(f)(ReLU(BN(x))))))))``;
the first block of a stage has a 1x1 convolution shortcut on the pre-activation, the others the
identity (or a 1x1 stride-s max pool). Keras downsamples in the LAST block of stages 2-4 (its
3x3 convolution has stride 2), unlike the paper's first block. After the last stage: BN, ReLU,
global average pooling, ``Dense(1000)``.

Layout: Keras' layer names (``conv2_block1_preact_bn``, ``conv2_block1_0_conv`` ...). Keras
pads with ``ZeroPadding2D`` (symmetric, zeros also before the max pool), BatchNorm eps 1.001e-5,
and the 1x1 convolutions other than the first of a bottleneck have a bias. timm's
``resnetv2_50`` is a different network (downsampling in the first block, no stem bias);
torchvision has no ResNet v2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import (
    BatchNorm,
    Conv,
    Head,
    KerasNamer,
    check_images,
    make_convert,
    max_pool,
)

__all__ = ["DEPTHS", "ResNetV2", "SPECS"]

EPS = 1.001e-5
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck(nnx.Module):
    """One ``residual_block_v2`` of Keras (pre-activation bottleneck)."""

    def __init__(self, cin, filters, stride, conv_shortcut, *, name, namer, rngs):
        bn = dict(eps=EPS, rngs=rngs)
        self.preact = BatchNorm(cin, ref=namer("batch_normalization", f"{name}_preact_bn"), **bn)
        self.conv1 = Conv(cin, filters, 1, ref=namer("conv2d", f"{name}_1_conv"), rngs=rngs)
        self.bn1 = BatchNorm(filters, ref=namer("batch_normalization", f"{name}_1_bn"), **bn)
        self.conv2 = Conv(
            filters, filters, 3, stride, padding=1, ref=namer("conv2d", f"{name}_2_conv"), rngs=rngs
        )
        self.bn2 = BatchNorm(filters, ref=namer("batch_normalization", f"{name}_2_bn"), **bn)
        # Keras' model.layers lists the shortcut convolution after the second BN
        self.shortcut = (
            Conv(
                cin,
                4 * filters,
                1,
                stride,
                bias=True,
                ref=namer("conv2d", f"{name}_0_conv"),
                rngs=rngs,
            )
            if conv_shortcut
            else None
        )
        self.conv3 = Conv(
            filters, 4 * filters, 1, bias=True, ref=namer("conv2d", f"{name}_3_conv"), rngs=rngs
        )
        self.stride = stride

    def __call__(self, x):
        pre = jax.nn.relu(self.preact(x))
        if self.shortcut is not None:
            shortcut = self.shortcut(pre)
        else:
            shortcut = x[:, :: self.stride, :: self.stride] if self.stride > 1 else x
        y = jax.nn.relu(self.bn1(self.conv1(pre)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        return shortcut + self.conv3(y)


class ResNetV2(nnx.Module):
    """ResNet50V2 / 101V2 / 152V2 (Keras layout), NHWC.

    Args:
      depth: 50, 101 or 152.
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32 (64, 256, 512, 1024, 2048 channels:
        the stem convolution, the input of each stage's strided last block, and the final ReLU).
      blocks: blocks per stage, overriding ``depth`` (small test networks; at least 2 each).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: ResNetV2(50, num_classes=3, rngs=nnx.Rngs(0)))
      >>> model.eval()  # shapes only: drop nnx.eval_shape to build the arrays
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 3)
    """

    def __init__(
        self,
        depth: int = 50,
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        blocks: tuple[int, ...] | None = None,
        rngs: nnx.Rngs,
    ):
        if blocks is None:
            if depth not in DEPTHS:
                raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
            blocks = DEPTHS[depth]
        if len(blocks) != 4 or min(blocks) < 2:
            raise ValueError(f"blocks must be 4 stage depths >= 2, got {blocks!r}")
        namer = KerasNamer()
        self.conv1 = Conv(
            3, 64, 7, 2, padding=3, bias=True, ref=namer("conv2d", "conv1_conv"), rngs=rngs
        )
        layers, cin = [], 64
        for s, (filters, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            for b in range(1, n + 1):
                stride = 2 if (b == n and s < 3) else 1
                layers.append(
                    Bottleneck(
                        cin,
                        filters,
                        stride,
                        b == 1,
                        name=f"conv{s + 2}_block{b}",
                        namer=namer,
                        rngs=rngs,
                    )
                )
                cin = 4 * filters
        self.blocks = nnx.List(layers)
        self.post_bn = BatchNorm(
            cin, eps=EPS, ref=namer("batch_normalization", "post_bn"), rngs=rngs
        )
        self.features_only = features
        self.head = (
            None
            if features
            else Head(
                cin,
                num_classes=num_classes,
                include_top=include_top,
                pooling=pooling,
                classifier_activation=classifier_activation,
                ref=namer("dense", "predictions"),
                rngs=rngs,
            )
        )

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or what ``features``/``include_top`` ask for)."""
        check_images(x, name="ResNetV2")
        x = self.conv1(x)
        maps = [x]
        x = max_pool(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), 3, 2)  # zeros, as Keras
        for block in self.blocks:
            if block.stride == 2:
                maps.append(x)
            x = block(x)
        x = jax.nn.relu(self.post_bn(x))
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(x)


def _spec(depth: int, top1: float) -> zoo_spec.ModelSpec:
    name = f"resnet{depth}_v2"
    return zoo_spec.ModelSpec(
        name=name,
        build=lambda *, rngs, **options: ResNetV2(depth, rngs=rngs, **options),
        input_size=(224, 224),
        layout="keras",
        convert=make_convert("keras", what=name, tolerate=(r"predictions/.*", r"dense/.*")),
        preprocess=zoo_spec.keras_preprocess("tf", 224),
        published_top1=top1,
        weights_source=None,
        feature_channels=(64, 256, 512, 1024, 2048),
        feature_reductions=(2, 4, 8, 16, 32),
        head=r"head/.*",
        reference=f"keras.applications.ResNet{depth}V2",
    )


# Keras applications table (top-1 %)
SPECS = {s.name: s for s in (_spec(50, 76.0), _spec(101, 77.2), _spec(152, 78.0))}
