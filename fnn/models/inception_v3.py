"""Inception v3 in Flax NNX, laid out to load torchvision's weights.

Data contract: float NHWC images ``[N, H, W, 3]`` normalised with ImageNet's mean and std
(torchvision's evaluation transform for these weights: short side 342, centre crop 299,
bilinear); returns logits ``[N, num_classes]`` (or what ``include_top``/``pooling``/``features``
ask for). H, W >= 75 (the valid convolutions and pools of the stem need it).

Architecture (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR
2016, https://arxiv.org/abs/1512.00567): a stem of unpadded 3x3 convolutions (32 s2, 32, 64
padded), 3x3 s2 max pool, 1x1 to 80, 3x3 to 192, 3x3 s2 max pool; three Inception-A blocks
(1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1) to 256, 288, 288 channels; the grid reduction B to
768; four Inception-C blocks whose 7x7 convolutions are factorised into 1x7 and 7x1; the grid
reduction D to 1280; two Inception-E blocks with expanded 1x3 / 3x1 branches to 2048; global
average pooling, dropout 0.5, ``Linear(2048 -> 1000)``. Every convolution is bias-free and
followed by BatchNorm (eps 1e-3) and ReLU. The auxiliary classifier only helps training and is
not built here (its keys, ``AuxLogits.*``, are ignored on import).

Layout and how the implementations differ: torchvision (``torchvision.models.inception_v3``)
pads symmetrically, its branch average pools count the padded zeros (``count_include_pad``), and
its ImageNet weights come with ``transform_input=True``, which maps ImageNet-normalised input
back to ``(pixel / 255 - 0.5) / 0.5`` inside the model (the weights were ported from TensorFlow,
trained on [-1, 1] input); the modules here carry its state-dict names
(``Mixed_5b.branch5x5_1.conv.weight``). Keras' ``InceptionV3`` uses "SAME"/"VALID" padding
explicitly, BatchNorm without scale (``scale=False``, eps 1e-3), average pools that exclude the
padding, ``preprocess_input`` mode ``"tf"``, and layer names ``conv2d_N``/``batch_normalization_N``
by creation order. timm's ``inception_v3.tv_in1k`` is torchvision's file under the same names.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.models import zoo_spec
from fnn.models._zoo_layers import ConvBN, Head, avg_pool, check_images, make_convert, max_pool

__all__ = ["InceptionV3", "SPECS"]

EPS = 1e-3


def _pad(kernel):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return ((kh - 1) // 2, (kw - 1) // 2)


class Basic(ConvBN):
    """torchvision's ``BasicConv2d``: bias-free convolution, BatchNorm (eps 1e-3), ReLU."""

    def __init__(self, cin, cout, kernel, stride=1, *, padding=0, ref, rngs):
        super().__init__(
            cin,
            cout,
            kernel,
            stride,
            padding=padding,
            eps=EPS,
            act="relu",
            conv_ref=f"{ref}.conv",
            bn_ref=f"{ref}.bn",
            rngs=rngs,
        )


def _same(cin, cout, kernel, ref, rngs):
    """A stride-1 `Basic` padded to keep the size (``(k - 1) / 2`` per side)."""
    return Basic(cin, cout, kernel, padding=_pad(kernel), ref=ref, rngs=rngs)


class InceptionA(nnx.Module):
    def __init__(self, cin, pool_features, *, ref, rngs):
        self.branch1x1 = Basic(cin, 64, 1, ref=f"{ref}.branch1x1", rngs=rngs)
        self.branch5x5_1 = Basic(cin, 48, 1, ref=f"{ref}.branch5x5_1", rngs=rngs)
        self.branch5x5_2 = _same(48, 64, 5, f"{ref}.branch5x5_2", rngs)
        self.branch3x3dbl_1 = Basic(cin, 64, 1, ref=f"{ref}.branch3x3dbl_1", rngs=rngs)
        self.branch3x3dbl_2 = _same(64, 96, 3, f"{ref}.branch3x3dbl_2", rngs)
        self.branch3x3dbl_3 = _same(96, 96, 3, f"{ref}.branch3x3dbl_3", rngs)
        self.branch_pool = Basic(cin, pool_features, 1, ref=f"{ref}.branch_pool", rngs=rngs)

    def __call__(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(avg_pool(x, 3, 1, 1))
        return jnp.concatenate([self.branch1x1(x), b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, cin, *, ref, rngs):
        self.branch3x3 = Basic(cin, 384, 3, 2, ref=f"{ref}.branch3x3", rngs=rngs)
        self.branch3x3dbl_1 = Basic(cin, 64, 1, ref=f"{ref}.branch3x3dbl_1", rngs=rngs)
        self.branch3x3dbl_2 = _same(64, 96, 3, f"{ref}.branch3x3dbl_2", rngs)
        self.branch3x3dbl_3 = Basic(96, 96, 3, 2, ref=f"{ref}.branch3x3dbl_3", rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([self.branch3x3(x), b3, max_pool(x, 3, 2)], axis=-1)


class InceptionC(nnx.Module):
    def __init__(self, cin, c7, *, ref, rngs):
        self.branch1x1 = Basic(cin, 192, 1, ref=f"{ref}.branch1x1", rngs=rngs)
        self.branch7x7_1 = Basic(cin, c7, 1, ref=f"{ref}.branch7x7_1", rngs=rngs)
        self.branch7x7_2 = _same(c7, c7, (1, 7), f"{ref}.branch7x7_2", rngs)
        self.branch7x7_3 = _same(c7, 192, (7, 1), f"{ref}.branch7x7_3", rngs)
        self.branch7x7dbl_1 = Basic(cin, c7, 1, ref=f"{ref}.branch7x7dbl_1", rngs=rngs)
        self.branch7x7dbl_2 = _same(c7, c7, (7, 1), f"{ref}.branch7x7dbl_2", rngs)
        self.branch7x7dbl_3 = _same(c7, c7, (1, 7), f"{ref}.branch7x7dbl_3", rngs)
        self.branch7x7dbl_4 = _same(c7, c7, (7, 1), f"{ref}.branch7x7dbl_4", rngs)
        self.branch7x7dbl_5 = _same(c7, 192, (1, 7), f"{ref}.branch7x7dbl_5", rngs)
        self.branch_pool = Basic(cin, 192, 1, ref=f"{ref}.branch_pool", rngs=rngs)

    def __call__(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d = layer(d)
        d = self.branch7x7dbl_5(d)
        bp = self.branch_pool(avg_pool(x, 3, 1, 1))
        return jnp.concatenate([self.branch1x1(x), b7, d, bp], axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, cin, *, ref, rngs):
        self.branch3x3_1 = Basic(cin, 192, 1, ref=f"{ref}.branch3x3_1", rngs=rngs)
        self.branch3x3_2 = Basic(192, 320, 3, 2, ref=f"{ref}.branch3x3_2", rngs=rngs)
        self.branch7x7x3_1 = Basic(cin, 192, 1, ref=f"{ref}.branch7x7x3_1", rngs=rngs)
        self.branch7x7x3_2 = _same(192, 192, (1, 7), f"{ref}.branch7x7x3_2", rngs)
        self.branch7x7x3_3 = _same(192, 192, (7, 1), f"{ref}.branch7x7x3_3", rngs)
        self.branch7x7x3_4 = Basic(192, 192, 3, 2, ref=f"{ref}.branch7x7x3_4", rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
    def __init__(self, cin, *, ref, rngs):
        self.branch1x1 = Basic(cin, 320, 1, ref=f"{ref}.branch1x1", rngs=rngs)
        self.branch3x3_1 = Basic(cin, 384, 1, ref=f"{ref}.branch3x3_1", rngs=rngs)
        self.branch3x3_2a = _same(384, 384, (1, 3), f"{ref}.branch3x3_2a", rngs)
        self.branch3x3_2b = _same(384, 384, (3, 1), f"{ref}.branch3x3_2b", rngs)
        self.branch3x3dbl_1 = Basic(cin, 448, 1, ref=f"{ref}.branch3x3dbl_1", rngs=rngs)
        self.branch3x3dbl_2 = _same(448, 384, 3, f"{ref}.branch3x3dbl_2", rngs)
        self.branch3x3dbl_3a = _same(384, 384, (1, 3), f"{ref}.branch3x3dbl_3a", rngs)
        self.branch3x3dbl_3b = _same(384, 384, (3, 1), f"{ref}.branch3x3dbl_3b", rngs)
        self.branch_pool = Basic(cin, 192, 1, ref=f"{ref}.branch_pool", rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = jnp.concatenate([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], axis=-1)
        bp = self.branch_pool(avg_pool(x, 3, 1, 1))
        return jnp.concatenate([self.branch1x1(x), b3, d, bp], axis=-1)


class InceptionV3(nnx.Module):
    """Inception v3 (torchvision layout, no auxiliary classifier), NHWC.

    Args:
      num_classes, include_top, pooling, classifier_activation: as Keras applications.
      features: return the maps at strides 2, 4, 8, 16, 32 (timm's ``features_only``:
        ``Conv2d_2b_3x3`` 64, ``Conv2d_4a_3x3`` 192, ``Mixed_5d`` 288, ``Mixed_6e`` 768,
        ``Mixed_7c`` 2048 channels).
      transform_input: map ImageNet-normalised input to ``(p / 255 - 0.5) / 0.5`` first
        (torchvision's option; ``True`` for its ImageNet weights).
      dropout: before the classifier (0.5).
      rngs: `flax.nnx.Rngs`.

    Examples:
      >>> import jax
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: InceptionV3(num_classes=10, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((1, 299, 299, 3), "float32")
      >>> nnx.eval_shape(lambda m, x: m(x), model, x).shape
      (1, 10)
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        include_top: bool = True,
        pooling: str | None = None,
        classifier_activation=None,
        features: bool = False,
        transform_input: bool = False,
        dropout: float = 0.5,
        rngs: nnx.Rngs,
    ):
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = Basic(3, 32, 3, 2, ref="Conv2d_1a_3x3", rngs=rngs)
        self.Conv2d_2a_3x3 = Basic(32, 32, 3, ref="Conv2d_2a_3x3", rngs=rngs)
        self.Conv2d_2b_3x3 = Basic(32, 64, 3, padding=1, ref="Conv2d_2b_3x3", rngs=rngs)
        self.Conv2d_3b_1x1 = Basic(64, 80, 1, ref="Conv2d_3b_1x1", rngs=rngs)
        self.Conv2d_4a_3x3 = Basic(80, 192, 3, ref="Conv2d_4a_3x3", rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, ref="Mixed_5b", rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, ref="Mixed_5c", rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, ref="Mixed_5d", rngs=rngs)
        self.Mixed_6a = InceptionB(288, ref="Mixed_6a", rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, ref="Mixed_6b", rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, ref="Mixed_6c", rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, ref="Mixed_6d", rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, ref="Mixed_6e", rngs=rngs)
        self.Mixed_7a = InceptionD(768, ref="Mixed_7a", rngs=rngs)
        self.Mixed_7b = InceptionE(1280, ref="Mixed_7b", rngs=rngs)
        self.Mixed_7c = InceptionE(2048, ref="Mixed_7c", rngs=rngs)
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
                dropout=dropout,
                ref="fc",
                rngs=rngs,
            )
        )

    def __call__(self, x: jax.Array):
        """Logits ``[N, num_classes]`` (or what ``features``/``include_top`` ask for)."""
        check_images(x, name="InceptionV3", min_size=75)
        if self.transform_input:
            mean = jnp.asarray(zoo_spec.IMAGENET_MEAN, x.dtype)
            std = jnp.asarray(zoo_spec.IMAGENET_STD, x.dtype)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        maps = [x]
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(max_pool(x, 3, 2)))
        maps.append(x)
        x = max_pool(x, 3, 2)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        maps.append(x)
        x = self.Mixed_6a(x)
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        maps.append(x)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        maps.append(x)
        if self.features_only:
            return maps
        return self.head(x)


def _build(*, rngs, **options):
    options.setdefault("transform_input", True)
    return InceptionV3(rngs=rngs, **options)


SPECS = {
    "inception_v3": zoo_spec.ModelSpec(
        name="inception_v3",
        build=_build,
        input_size=(299, 299),
        layout="torchvision",
        convert=make_convert("torchvision", what="inception_v3", tolerate=(r"fc\..*",)),
        preprocess=zoo_spec.torchvision_preprocess(299, resize=342),
        published_top1=77.294,  # torchvision's IMAGENET1K_V1
        weights_source=None,
        feature_channels=(64, 192, 288, 768, 2048),
        feature_reductions=(2, 4, 8, 16, 32),
        min_input_size=75,
        head=r"head/.*",
        reference="torchvision.models.inception_v3",
    )
}
