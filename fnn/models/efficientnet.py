"""EfficientNet-B0 to B7 in Flax NNX, laid out to load torchvision's weights.

Data contract: float NHWC images ``[N, H, W, 3]`` normalised with ImageNet's mean and std
(torchvision's evaluation transform for the variant: bicubic resize of the short side, centre
crop to the variant's size, 224 for B0 up to 600 for B7); returns logits ``[N, num_classes]``
(or what ``include_top``/``pooling``/``features`` ask for). Any H, W >= 32.

Architecture (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, https://arxiv.org/abs/1905.11946): a 3x3 stride-2 stem to 32 channels,
seven stages of MBConv blocks ``(expand, kernel, stride, in, out, repeats)`` = (1,3,1,32,16,1),
(6,3,2,16,24,2), (6,5,2,24,40,2), (6,3,2,40,80,3), (6,5,1,80,112,3), (6,5,2,112,192,4),
(6,3,1,192,320,1), a 1x1 convolution to 4x the last width (1280 for B0), global average pooling,
dropout and ``Linear(-> 1000)``. An MBConv block is 1x1 expansion (skipped for expand 1) -> BN ->
SiLU -> depthwise k x k -> BN -> SiLU -> squeeze-and-excitation (squeeze to ``in / 4``, SiLU,
sigmoid gate) -> 1x1 projection -> BN, plus the input when the stride is 1 and widths agree
(stochastic depth in training, the identity in evaluation). Bk scales widths by ``w`` (rounded to
multiples of 8, never 10% down) and repeats by ``d`` (``ceil``): (w, d) = (1.0, 1.0), (1.0, 1.1),
(1.1, 1.2), (1.2, 1.4), (1.4, 1.8), (1.6, 2.2), (1.8, 2.6), (2.0, 3.1).

Layout and how the implementations differ: torchvision (``efficientnet_b0`` ...) pads
symmetrically by ``(k - 1) // 2``, BatchNorm eps 1e-5 for B0-B4 and 1e-3 for B5-B7 (whose
weights were ported from TensorFlow), keys ``features.<stage>.<block>.block.<j>.{0,1}``, the
squeeze-excite's ``fc1``/``fc2`` and ``classifier.1``: these modules carry those names. Keras'
``EfficientNetB0`` pads "SAME" (the odd pixel after: the same weights give other outputs),
BatchNorm eps 1e-3, and normalises inside the model (``Rescaling`` and a ``Normalization`` layer
with stored ImageNet mean/variance: its ``preprocess_input`` is the identity on 0..255 pixels).
timm's ``efficientnet_b0`` is this network under other names (``conv_stem``, ``blocks.<i>.<j>``,
``conv_dw``, ``se.conv_reduce``); its ``tf_efficientnet_b0`` variants pad like TensorFlow.
EfficientNet-Lite (no squeeze-excite, ReLU6) is `fnn.models.EfficientNetLite`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import ConvBN, Head, SqueezeExcite, check_images, make_convert
from fnn.models.mobilenet_v3 import make_divisible

__all__ = ["VARIANTS", "EfficientNet", "SPECS", "Variant"]

# (expand, kernel, stride, in, out, repeats) of B0
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """Scaling and evaluation geometry of one EfficientNet-B variant (torchvision's)."""

    width: float
    depth: float
    dropout: float
    eps: float
    size: int  # centre crop
    resize: int  # short side before the crop
    top1: float  # torchvision's published IMAGENET1K_V1 accuracy


VARIANTS = {
    "b0": Variant(1.0, 1.0, 0.2, 1e-5, 224, 256, 77.692),
    "b1": Variant(1.0, 1.1, 0.2, 1e-5, 240, 256, 78.642),
    "b2": Variant(1.1, 1.2, 0.3, 1e-5, 288, 288, 80.608),
    "b3": Variant(1.2, 1.4, 0.3, 1e-5, 300, 320, 82.008),
    "b4": Variant(1.4, 1.8, 0.4, 1e-5, 380, 384, 83.384),
    "b5": Variant(1.6, 2.2, 0.4, 1e-3, 456, 456, 83.444),
    "b6": Variant(1.8, 2.6, 0.5, 1e-3, 528, 528, 84.008),
    "b7": Variant(2.0, 3.1, 0.5, 1e-3, 600, 600, 84.122),
}


class MBConv(nnx.Module):
    """Expand, depthwise, squeeze-excite, project, residual (torchvision's ``MBConv``)."""

    def __init__(self, cin, cout, expand, kernel, stride, *, eps, ref, rngs):
        mid = make_divisible(cin * expand)
        common = dict(eps=eps, act="silu", rngs=rngs)
        j = 0
        expand_layer = None
        if mid != cin:
            expand_layer = ConvBN(cin, mid, 1, conv_ref=f"{ref}.0.0", bn_ref=f"{ref}.0.1", **common)
            j = 1
        self.expand = expand_layer
        self.depthwise = ConvBN(
            mid,
            mid,
            kernel,
            stride,
            padding=(kernel - 1) // 2,
            groups=mid,
            conv_ref=f"{ref}.{j}.0",
            bn_ref=f"{ref}.{j}.1",
            **common,
        )
        self.se = SqueezeExcite(
            mid,
            max(1, cin // 4),
            act="silu",
            gate="sigmoid",
            refs=(f"{ref}.{j + 1}.fc1", f"{ref}.{j + 1}.fc2"),
            rngs=rngs,
        )
        self.project = ConvBN(
            mid,
            cout,
            1,
            eps=eps,
            act=None,
            conv_ref=f"{ref}.{j + 2}.0",
            bn_ref=f"{ref}.{j + 2}.1",
            rngs=rngs,
        )
        self.residual = stride == 1 and cin == cout
        self.stride = stride

    def __call__(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.se(self.depthwise(y)))
        return y + x if self.residual else y


class EfficientNet(nnx.Module):
    """EfficientNet-B0 ... B7 (torchvision layout), NHWC.

    Args:
      variant: ``"b0"`` ... ``"b7"``.
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32 (timm's ``features_only``: the
        outputs of stages 1, 2, 3, 5 and 7, before the head convolution; B0: 16, 24, 40, 112,
        320 channels).
      stages: use only the first ``stages`` stages (small test networks).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: EfficientNet("b0", num_classes=3, rngs=nnx.Rngs(0)))
      >>> model.eval()  # shapes only: drop nnx.eval_shape to build the arrays
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 3)
    """

    def __init__(
        self,
        variant: str = "b0",
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        stages: int | None = None,
        rngs: nnx.Rngs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        v = VARIANTS[variant]
        stem = make_divisible(32 * v.width)
        self.stem = ConvBN(
            3,
            stem,
            3,
            2,
            padding=1,
            eps=v.eps,
            act="silu",
            conv_ref="features.0.0",
            bn_ref="features.0.1",
            rngs=rngs,
        )
        blocks, cin = [], stem
        config = STAGES[:stages]
        for s, (expand, kernel, stride, _, out, repeats) in enumerate(config, start=1):
            out = make_divisible(out * v.width)
            for b in range(int(math.ceil(repeats * v.depth))):
                blocks.append(
                    MBConv(
                        cin,
                        out,
                        expand,
                        kernel,
                        stride if b == 0 else 1,
                        eps=v.eps,
                        ref=f"features.{s}.{b}.block",
                        rngs=rngs,
                    )
                )
                cin = out
        self.blocks = nnx.List(blocks)
        last = 4 * cin
        n = len(config) + 1
        self.last = ConvBN(
            cin,
            last,
            1,
            eps=v.eps,
            act="silu",
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
                dropout=v.dropout,
                ref="classifier.1",
                rngs=rngs,
            )
        )

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or what ``features``/``include_top`` ask for)."""
        check_images(x, name="EfficientNet")
        x = self.stem(x)
        maps = []
        for i, block in enumerate(self.blocks):
            if block.stride == 2 and i > 0:  # the last map at each stride
                maps.append(x)
            x = block(x)
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(self.last(x))


def _spec(variant: str) -> zoo_spec.ModelSpec:
    v = VARIANTS[variant]
    name = f"efficientnet_{variant}"
    channels = tuple(make_divisible(c * v.width) for c in (16, 24, 40, 112, 320))
    return zoo_spec.ModelSpec(
        name=name,
        build=lambda *, rngs, **options: EfficientNet(variant, rngs=rngs, **options),
        input_size=(v.size, v.size),
        layout="torchvision",
        convert=make_convert("torchvision", what=name, tolerate=(r"classifier\..*",)),
        preprocess=zoo_spec.torchvision_preprocess(v.size, v.resize, "bicubic"),
        published_top1=v.top1,
        weights_source=None,
        feature_channels=channels,
        feature_reductions=(2, 4, 8, 16, 32),
        head=r"head/.*",
        reference=f"torchvision.models.{name}",
    )


SPECS = {f"efficientnet_{v}": _spec(v) for v in VARIANTS}
