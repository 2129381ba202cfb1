"""MobileNetV3-Small and -Large in Flax NNX, laid out to load torchvision's weights.

Data contract: float NHWC images ``[N, H, W, 3]`` normalised with ImageNet's mean and std
(torchvision's evaluation transform: short side 256, centre crop 224); returns logits
``[N, num_classes]`` (or what ``include_top``/``pooling``/``features`` ask for). Any H, W >= 32.

Architecture (Howard et al., "Searching for MobileNetV3", ICCV 2019,
https://arxiv.org/abs/1905.02244): a 3x3 stride-2 stem to 16 channels with hard swish; inverted
residual blocks ``(kernel, expanded, out, squeeze-excite, activation, stride)`` from the paper's
tables 1 and 2: 1x1 expansion (skipped when the width does not change), depthwise ``k x k``,
optional squeeze-and-excitation (squeeze to ``expanded / 4`` rounded to a multiple of 8, ReLU,
hard sigmoid gate), 1x1 projection without activation, and the input added when the stride is 1
and the widths agree; then a 1x1 convolution to 6x the last width (960 or 576), hard swish,
global average pooling, ``Linear(-> 1280 | 1024)``, hard swish, dropout 0.2, ``Linear(-> 1000)``.
``hard_swish(x) = x · relu6(x + 3) / 6``, ``hard_sigmoid(x) = relu6(x + 3) / 6``.

Layout and how the implementations differ: torchvision (``mobilenet_v3_large``/``_small``) pads
symmetrically by ``(k - 1) // 2``, uses BatchNorm eps 1e-3 (momentum 0.01), and names the layers
``features.<i>.block.<j>.{0,1}`` (convolution, BN), ``...fc1``/``fc2`` (squeeze-excite) and
``classifier.{0,3}``; these modules carry exactly those names. Keras' ``MobileNetV3Small/Large``
pads like TensorFlow ("SAME", the odd pixel after), normalises inside the model (its
``preprocess_input`` is the identity on 0..255 pixels) and has no hidden ``Linear`` but a 1x1
convolution in its head. timm's ``mobilenetv3_large_100`` has the same structure under other
names (``conv_stem``, ``blocks.<i>.<j>``, ``conv_head``) and a bias in the head convolution.
"""

from __future__ import annotations

import jax
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import ConvBN, Head, SqueezeExcite, check_images, make_convert

__all__ = ["CONFIGS", "MobileNetV3", "SPECS"]

EPS = 1e-3
MOMENTUM = 0.99  # PyTorch's momentum=0.01

# (kernel, expanded, out, squeeze-excite, activation, stride), the paper's tables 1 and 2
CONFIGS = {
    "large": (
        (3, 16, 16, False, "relu", 1),
        (3, 64, 24, False, "relu", 2),
        (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2),
        (5, 120, 40, True, "relu", 1),
        (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hard_swish", 2),
        (3, 200, 80, False, "hard_swish", 1),
        (3, 184, 80, False, "hard_swish", 1),
        (3, 184, 80, False, "hard_swish", 1),
        (3, 480, 112, True, "hard_swish", 1),
        (3, 672, 112, True, "hard_swish", 1),
        (5, 672, 160, True, "hard_swish", 2),
        (5, 960, 160, True, "hard_swish", 1),
        (5, 960, 160, True, "hard_swish", 1),
    ),
    "small": (
        (3, 16, 16, True, "relu", 2),
        (3, 72, 24, False, "relu", 2),
        (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hard_swish", 2),
        (5, 240, 40, True, "hard_swish", 1),
        (5, 240, 40, True, "hard_swish", 1),
        (5, 120, 48, True, "hard_swish", 1),
        (5, 144, 48, True, "hard_swish", 1),
        (5, 288, 96, True, "hard_swish", 2),
        (5, 576, 96, True, "hard_swish", 1),
        (5, 576, 96, True, "hard_swish", 1),
    ),
}
HIDDEN = {"large": 1280, "small": 1024}


def make_divisible(v: float, divisor: int = 8) -> int:
    """``v`` rounded to the nearest multiple of ``divisor``, never more than 10% down."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


class InvertedResidual(nnx.Module):
    """Expand (1x1), depthwise (k x k), squeeze-excite, project (1x1), residual."""

    def __init__(self, cin, kernel, mid, cout, se, act, stride, *, ref, rngs):
        j = 0
        common = dict(eps=EPS, momentum=MOMENTUM, rngs=rngs)
        expand = None
        if mid != cin:
            expand = ConvBN(
                cin, mid, 1, act=act, conv_ref=f"{ref}.0.0", bn_ref=f"{ref}.0.1", **common
            )
            j = 1
        self.expand = expand
        self.depthwise = ConvBN(
            mid,
            mid,
            kernel,
            stride,
            padding=(kernel - 1) // 2,
            groups=mid,
            act=act,
            conv_ref=f"{ref}.{j}.0",
            bn_ref=f"{ref}.{j}.1",
            **common,
        )
        j += 1
        squeeze_excite = None
        if se:
            refs = (f"{ref}.{j}.fc1", f"{ref}.{j}.fc2")
            squeeze = make_divisible(mid // 4)
            squeeze_excite = SqueezeExcite(
                mid, squeeze, act="relu", gate="hard_sigmoid", refs=refs, rngs=rngs
            )
            j += 1
        self.se = squeeze_excite
        self.project = ConvBN(
            mid, cout, 1, act=None, conv_ref=f"{ref}.{j}.0", bn_ref=f"{ref}.{j}.1", **common
        )
        self.residual = stride == 1 and cin == cout
        self.stride = stride

    def __call__(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return y + x if self.residual else y


class MobileNetV3(nnx.Module):
    """MobileNetV3 ``"large"`` or ``"small"`` (torchvision layout), NHWC.

    Args:
      variant: ``"large"`` or ``"small"``.
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32 (timm's ``features_only``: the last
        map at each stride; the stride-32 one is after the final 1x1 convolution, 960 or 576
        channels).
      dropout: before the classifier (0.2).
      blocks: use only the first ``blocks`` inverted residuals (small test networks).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: MobileNetV3("small", num_classes=3, rngs=nnx.Rngs(0)))
      >>> model.eval()  # shapes only: drop nnx.eval_shape to build the arrays
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 3)
    """

    def __init__(
        self,
        variant: str = "large",
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        dropout: float = 0.2,
        blocks: int | None = None,
        rngs: nnx.Rngs,
    ):
        if variant not in CONFIGS:
            raise ValueError(f"variant must be 'large' or 'small', got {variant!r}")
        config = CONFIGS[variant][:blocks]
        self.stem = ConvBN(
            3,
            16,
            3,
            2,
            padding=1,
            act="hard_swish",
            eps=EPS,
            momentum=MOMENTUM,
            conv_ref="features.0.0",
            bn_ref="features.0.1",
            rngs=rngs,
        )
        layers, cin = [], 16
        for i, (k, mid, cout, se, act, stride) in enumerate(config, start=1):
            layers.append(
                InvertedResidual(
                    cin, k, mid, cout, se, act, stride, ref=f"features.{i}.block", rngs=rngs
                )
            )
            cin = cout
        self.blocks = nnx.List(layers)
        last = 6 * cin
        n = len(config) + 1
        self.last = ConvBN(
            cin,
            last,
            1,
            act="hard_swish",
            eps=EPS,
            momentum=MOMENTUM,
            conv_ref=f"features.{n}.0",
            bn_ref=f"features.{n}.1",
            rngs=rngs,
        )
        self.features_only = features
        self.head = (
            None
            if features
            else Head(
                last,
                num_classes=num_classes,
                include_top=include_top,
                pooling=pooling,
                classifier_activation=classifier_activation,
                dropout=dropout,
                ref="classifier.3",
                hidden=HIDDEN[variant],
                hidden_ref="classifier.0",
                rngs=rngs,
            )
        )

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or what ``features``/``include_top`` ask for)."""
        check_images(x, name="MobileNetV3")
        x = self.stem(x)
        maps = []
        for block in self.blocks:
            if block.stride == 2:  # the last map at each stride
                maps.append(x)
            x = block(x)
        x = self.last(x)
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(x)


def _spec(variant: str, top1: float, channels) -> zoo_spec.ModelSpec:
    name = f"mobilenet_v3_{variant}"

    def build(*, rngs, **options):
        return MobileNetV3(variant, rngs=rngs, **options)

    return zoo_spec.ModelSpec(
        name=name,
        build=build,
        input_size=(224, 224),
        layout="torchvision",
        convert=make_convert("torchvision", what=name, tolerate=(r"classifier\..*",)),
        preprocess=zoo_spec.torchvision_preprocess(224),
        published_top1=top1,
        weights_source=None,
        feature_channels=channels,
        feature_reductions=(2, 4, 8, 16, 32),
        head=r"head/.*",
        reference=f"torchvision.models.{name}",
    )


# torchvision's published IMAGENET1K_V1 top-1 accuracies
SPECS = {
    "mobilenet_v3_large": _spec("large", 74.042, (16, 24, 40, 112, 960)),
    "mobilenet_v3_small": _spec("small", 67.668, (16, 16, 24, 48, 576)),
}
