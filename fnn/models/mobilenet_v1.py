"""MobileNet (v1) in Flax NNX, laid out to load Keras' weights (``keras.applications.MobileNet``).

Data contract: float NHWC images ``[N, H, W, 3]`` scaled as Keras' ``preprocess_input`` mode
``"tf"`` does, ``p / 127.5 - 1``; returns logits ``[N, num_classes]`` (or what
``include_top``/``pooling``/``features`` ask for). Native size 224x224; H, W >= 32.

Architecture (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", 2017, https://arxiv.org/abs/1704.04861): a 3x3 stride-2 convolution to
32 channels, then 13 depthwise-separable blocks ``DW3x3-BN-ReLU6-Conv1x1-BN-ReLU6`` with
pointwise widths 64, 128 (s2), 128, 256 (s2), 256, 512 (s2), 5x 512, 1024 (s2), 1024, all
multiplied by ``alpha``; global average pooling, dropout 1e-3 and a 1x1 convolution with bias as
the classifier. Bias-free convolutions, BatchNorm eps 1e-3.

Layout: Keras' layer names (``conv1``, ``conv_dw_1``, ``conv_pw_1_bn``, ``conv_preds``). Keras
pads the stride-1 depthwise convolutions "SAME" and the strided ones with one zero row and column
after (``ZeroPadding2D(((0, 1), (0, 1)))``, TensorFlow's "SAME" for even sizes); the classifier
is a ``Conv2D(1x1)`` on the pooled ``[N, 1, 1, C]`` map (its kernel ``[1, 1, C, classes]``).
torchvision has no MobileNet v1; timm's ``mobilenetv1_100`` is a new training with PyTorch
padding and other names.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import (
    Conv,
    ConvBN,
    Head,
    KerasNamer,
    activation,
    check_images,
    make_convert,
)

__all__ = ["BLOCKS", "MobileNet", "SPECS"]

EPS = 1e-3
# (pointwise filters, stride) of the 13 depthwise-separable blocks
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class DepthwiseSeparable(nnx.Module):
    """``DW3x3-BN-ReLU6-Conv1x1-BN-ReLU6`` (Keras' ``_depthwise_conv_block``)."""

    def __init__(self, cin, cout, stride, block_id, *, namer, rngs):
        padding = "same" if stride == 1 else ((0, 1), (0, 1))
        self.dw = ConvBN(
            cin,
            cin,
            3,
            stride,
            padding=padding,
            groups=cin,
            depthwise=True,
            eps=EPS,
            act="relu6",
            conv_ref=namer("depthwise_conv2d", f"conv_dw_{block_id}"),
            bn_ref=namer("batch_normalization", f"conv_dw_{block_id}_bn"),
            rngs=rngs,
        )
        self.pw = ConvBN(
            cin,
            cout,
            1,
            eps=EPS,
            act="relu6",
            conv_ref=namer("conv2d", f"conv_pw_{block_id}"),
            bn_ref=namer("batch_normalization", f"conv_pw_{block_id}_bn"),
            rngs=rngs,
        )
        self.stride = stride

    def __call__(self, x):
        return self.pw(self.dw(x))


class MobileNet(nnx.Module):
    """MobileNet v1 (Keras layout), NHWC.

    Args:
      alpha: width multiplier (1.0 for the table's network; Keras ships 0.25, 0.5, 0.75, 1.0).
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32 (the outputs of blocks 1, 3, 5, 11
        and 13: 64, 128, 256, 512, 1024 channels times ``alpha``).
      dropout: before the classifier (Keras: 1e-3).
      blocks: use only the first ``blocks`` separable blocks (small test networks).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: MobileNet(num_classes=3, rngs=nnx.Rngs(0)))
      >>> model.eval()  # shapes only: drop nnx.eval_shape to build the arrays
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 3)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        dropout: float = 1e-3,
        blocks: int | None = None,
        rngs: nnx.Rngs,
    ):
        namer = KerasNamer()
        stem = int(32 * alpha)
        self.conv1 = ConvBN(
            3,
            stem,
            3,
            2,
            padding="same",
            eps=EPS,
            act="relu6",
            conv_ref=namer("conv2d", "conv1"),
            bn_ref=namer("batch_normalization", "conv1_bn"),
            rngs=rngs,
        )
        layers, cin = [], stem
        for i, (filters, stride) in enumerate(BLOCKS[:blocks], start=1):
            cout = int(filters * alpha)
            layers.append(DepthwiseSeparable(cin, cout, stride, i, namer=namer, rngs=rngs))
            cin = cout
        self.blocks = nnx.List(layers)
        self.features_only = features
        top = include_top and not features
        if top and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if top else None
        self.preds = (
            Conv(cin, num_classes, 1, bias=True, ref=namer("conv2d", "conv_preds"), rngs=rngs)
            if top
            else None
        )
        self.act = activation(classifier_activation) if top else None
        self.head = (
            None
            if features or include_top
            else Head(
                cin,
                num_classes=num_classes,
                include_top=False,
                pooling=pooling,
                classifier_activation=None,
                ref="",
                rngs=rngs,
            )
        )

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or what ``features``/``include_top`` ask for)."""
        check_images(x, name="MobileNet")
        x = self.conv1(x)
        maps = []
        for block in self.blocks:
            if block.stride == 2:
                maps.append(x)
            x = block(x)
        maps.append(x)
        if self.features_only:
            return maps
        if self.head is not None:
            return self.head(x)
        x = self.dropout(jnp.mean(x, axis=(1, 2), keepdims=True))
        x = self.preds(x)[:, 0, 0, :]
        return self.act(x) if self.act is not None else x


SPECS = {
    "mobilenet": zoo_spec.ModelSpec(
        name="mobilenet",
        build=lambda *, rngs, **options: MobileNet(rngs=rngs, **options),
        input_size=(224, 224),
        layout="keras",
        convert=make_convert(
            "keras", what="mobilenet", tolerate=(r"conv_preds/.*", r"conv2d_14/.*")
        ),
        preprocess=zoo_spec.keras_preprocess("tf", 224),
        published_top1=70.4,  # Keras applications table
        weights_source=None,
        feature_channels=(64, 128, 256, 512, 1024),
        feature_reductions=(2, 4, 8, 16, 32),
        head=r"preds/.*",
        reference="keras.applications.MobileNet",
    )
}
