"""Xception in Flax NNX, laid out to load Keras' weights (``keras.applications.Xception``).

Data contract: float NHWC images ``[N, H, W, 3]`` scaled as Keras' ``preprocess_input`` mode
``"tf"`` does, ``p / 127.5 - 1`` in [-1, 1]; returns logits ``[N, num_classes]`` (or what
``include_top``/``pooling``/``features`` ask for). Native size 299x299; H, W >= 71.

Architecture (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR
2017, https://arxiv.org/abs/1610.02357): entry flow of two unpadded 3x3 convolutions (32 s2, 64)
and three blocks (128, 256, 728 channels) of ``[ReLU]-SepConv-BN-ReLU-SepConv-BN-MaxPool3x3s2``
added to a strided 1x1 convolution + BN shortcut; middle flow of eight residual blocks of three
``ReLU-SepConv728-BN``; exit flow block (728, 1024 channels, strided shortcut), then
``SepConv1536-BN-ReLU-SepConv2048-BN-ReLU``, global average pooling and ``Dense(1000)``.
A separable convolution is a depthwise 3x3 followed by a pointwise 1x1, both bias-free.

Layout: Keras' layer names (``block2_sepconv1``, ``block2_sepconv1_bn``); the four shortcut
convolutions and their BatchNorms are unnamed in Keras (``conv2d_<n>``), matched by creation
order. Keras pads "SAME" (the odd pixel after) for the separable convolutions and the pools,
BatchNorm eps 1e-3. timm's ``legacy_xception`` is the same network ported from these weights with
PyTorch padding on stride-1 layers only (identical results), other names (``block1.skip``,
``conv3``) and a ``[-1, 1]`` mean/std of 0.5; torchvision has no Xception.
"""

from __future__ import annotations

import jax
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import (
    BatchNorm,
    Conv,
    ConvBN,
    Head,
    KerasNamer,
    SeparableConv,
    check_images,
    make_convert,
    max_pool,
)

__all__ = ["SPECS", "Xception"]

EPS = 1e-3


class SepBN(nnx.Module):
    """``[ReLU]-SeparableConv-BN`` with Keras' names ``<prefix>`` and ``<prefix>_bn``."""

    def __init__(self, cin, cout, prefix, *, relu_first, namer, rngs):
        self.sep = SeparableConv(cin, cout, 3, ref=namer("separable_conv2d", prefix), rngs=rngs)
        self.bn = BatchNorm(
            cout, eps=EPS, ref=namer("batch_normalization", f"{prefix}_bn"), rngs=rngs
        )
        self.relu_first = relu_first

    def __call__(self, x):
        if self.relu_first:
            x = jax.nn.relu(x)
        return self.bn(self.sep(x))


class DownBlock(nnx.Module):
    """Two `SepBN`, 3x3 s2 max pool, plus the strided 1x1 convolution + BN shortcut."""

    def __init__(self, cin, mid, cout, block, *, relu_first, namer, rngs):
        # Keras' model.layers (and its .weights.h5 ranks) list the main branch first
        self.sep1 = SepBN(
            cin, mid, f"block{block}_sepconv1", relu_first=relu_first, namer=namer, rngs=rngs
        )
        self.sep2 = SepBN(
            mid, cout, f"block{block}_sepconv2", relu_first=True, namer=namer, rngs=rngs
        )
        self.shortcut = Conv(cin, cout, 1, 2, padding="same", ref=namer("conv2d"), rngs=rngs)
        self.shortcut_bn = BatchNorm(cout, eps=EPS, ref=namer("batch_normalization"), rngs=rngs)

    def __call__(self, x):
        y = max_pool(self.sep2(self.sep1(x)), 3, 2, "same")
        return y + self.shortcut_bn(self.shortcut(x))


class MiddleBlock(nnx.Module):
    """Three ``ReLU-SepConv728-BN`` plus the identity."""

    def __init__(self, block, *, namer, rngs):
        self.seps = nnx.List(
            [
                SepBN(728, 728, f"block{block}_sepconv{i}", relu_first=True, namer=namer, rngs=rngs)
                for i in (1, 2, 3)
            ]
        )

    def __call__(self, x):
        y = x
        for sep in self.seps:
            y = sep(y)
        return y + x


class Xception(nnx.Module):
    """Xception (Keras layout), NHWC.

    Args:
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32 (64, 128, 256, 728, 2048 channels:
        after the stem, after blocks 2, 3 and 12, and the final ReLU).
      middle_blocks: number of middle-flow blocks (8; fewer for small test networks).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: Xception(num_classes=3, rngs=nnx.Rngs(0)))
      >>> model.eval()  # shapes only: drop nnx.eval_shape to build the arrays
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 71, 71, 3))).shape
      (1, 3)
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        middle_blocks: int = 8,
        rngs: nnx.Rngs,
    ):
        namer = KerasNamer()
        common = dict(eps=EPS, act="relu", padding="valid", rngs=rngs)
        self.conv1 = ConvBN(
            3,
            32,
            3,
            2,
            conv_ref=namer("conv2d", "block1_conv1"),
            bn_ref=namer("batch_normalization", "block1_conv1_bn"),
            **common,
        )
        self.conv2 = ConvBN(
            32,
            64,
            3,
            conv_ref=namer("conv2d", "block1_conv2"),
            bn_ref=namer("batch_normalization", "block1_conv2_bn"),
            **common,
        )
        self.block2 = DownBlock(64, 128, 128, 2, relu_first=False, namer=namer, rngs=rngs)
        self.block3 = DownBlock(128, 256, 256, 3, relu_first=True, namer=namer, rngs=rngs)
        self.block4 = DownBlock(256, 728, 728, 4, relu_first=True, namer=namer, rngs=rngs)
        self.middle = nnx.List(
            [MiddleBlock(5 + i, namer=namer, rngs=rngs) for i in range(middle_blocks)]
        )
        self.block13 = DownBlock(728, 728, 1024, 13, relu_first=True, namer=namer, rngs=rngs)
        self.sep14_1 = SepBN(
            1024, 1536, "block14_sepconv1", relu_first=False, namer=namer, rngs=rngs
        )
        self.sep14_2 = SepBN(
            1536, 2048, "block14_sepconv2", relu_first=True, namer=namer, rngs=rngs
        )
        self.features_only = features
        self.head = (
            None
            if features
            else Head(
                2048,
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
        check_images(x, name="Xception", min_size=71)
        x = self.conv2(self.conv1(x))
        maps = [x]
        x = self.block2(x)
        maps.append(x)
        x = self.block3(x)
        maps.append(x)
        x = self.block4(x)
        for block in self.middle:
            x = block(x)
        maps.append(x)
        x = self.block13(x)
        x = jax.nn.relu(self.sep14_2(jax.nn.relu(self.sep14_1(x))))
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(x)


SPECS = {
    "xception": zoo_spec.ModelSpec(
        name="xception",
        build=lambda *, rngs, **options: Xception(rngs=rngs, **options),
        input_size=(299, 299),
        layout="keras",
        convert=make_convert("keras", what="xception", tolerate=(r"predictions/.*", r"dense/.*")),
        preprocess=zoo_spec.keras_preprocess("tf", 299),
        published_top1=79.0,  # Keras applications table
        weights_source=None,
        feature_channels=(64, 128, 256, 728, 2048),
        feature_reductions=(2, 4, 8, 16, 32),
        min_input_size=71,
        head=r"head/.*",
        reference="keras.applications.Xception",
    )
}
