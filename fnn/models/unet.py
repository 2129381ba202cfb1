"""A small U-Net (Ronneberger et al. 2015) for semantic segmentation, on any multi-scale encoder.

``UNet(x) -> [N, H, W, K]`` per-pixel class logits. The decoder starts at the encoder's deepest
map and, level by level, upsamples ×2 (nearest neighbour), concatenates the encoder map of that
resolution (the skip connection) and applies two 3×3 convolutions (`ConvBlock`); a 1×1
convolution gives the logits, upsampled to the input size when the shallowest map is smaller
(a pretrained encoder's first map usually has reduction 2). Train with pixel-wise sparse softmax
cross-entropy; report the confusion-matrix mean IoU. Keras' "image segmentation with a U-Net-like
architecture" example uses transposed convolutions instead of nearest upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.conv import Conv
from fnn.models.encoder import ConvBlock, ConvEncoder, check_backbone

__all__ = ["UNet", "UNetDecoder", "upsample"]


def upsample(x: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour upsampling ``[N, H, W, C]`` → ``[N, fH, fW, C]`` (Keras'
    ``UpSampling2D(factor)``; a repeat, whose gradient is a cheap sum).

    Examples:
      >>> import jax.numpy as jnp
      >>> upsample(jnp.arange(4.0).reshape(1, 2, 2, 1), 2)[0, :, :, 0].tolist()[0]
      [0.0, 0.0, 1.0, 1.0]
    """
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class UNetDecoder(nnx.Module):
    """The U-Net decoder from the deepest feature map up to reduction ``reductions[stop]``.

    Returns the map at reduction ``reductions[stop]`` with ``widths[stop]`` channels (widths
    default to the encoder's channels). `CenterNet` uses it with ``stop`` at reduction 4.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> dec = nnx.eval_shape(  # shapes only: drop nnx.eval_shape to build the arrays
      ...     lambda: UNetDecoder((4, 8, 16), (1, 2, 4), rngs=nnx.Rngs(0))
      ... )
      >>> maps = [jnp.zeros((1, 8, 8, 4)), jnp.zeros((1, 4, 4, 8)), jnp.zeros((1, 2, 2, 16))]
      >>> nnx.eval_shape(lambda m, x: m(x), dec, maps).shape
      (1, 8, 8, 4)
    """

    def __init__(self, channels, reductions, *, widths=None, stop: int = 0, rngs: nnx.Rngs):
        channels, reductions = tuple(channels), tuple(reductions)
        widths = tuple(channels if widths is None else (int(w) for w in widths))
        if len(widths) != len(channels) or not 0 <= stop < len(channels):
            raise ValueError(
                f"widths must have one entry per feature map ({len(channels)}) and stop must be "
                f"in [0, {len(channels)}); got widths={widths}, stop={stop}"
            )
        self.stop = stop
        blocks = []
        below = channels[-1]
        for level in range(len(channels) - 2, stop - 1, -1):
            blocks.append(ConvBlock(below + channels[level], widths[level], rngs=rngs))
            below = widths[level]
        self.blocks = nnx.List(blocks)
        self.out_channels = below

    def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[self.stop : -1])):
            if skip.shape[1:3] != (2 * x.shape[1], 2 * x.shape[2]):
                raise ValueError(
                    "each encoder map must be twice the size of the next (input H and W "
                    "multiples of the deepest reduction); got maps of shapes "
                    f"{[tuple(f.shape) for f in features]}"
                )
            x = upsample(x, 2)
            x = block(jnp.concatenate([x, skip], axis=-1))
        return x


class UNet(nnx.Module):
    """Encoder (default: scratch `ConvEncoder`) + `UNetDecoder` + 1×1 logits.

    Args:
      num_classes: ``K`` including the background class.
      in_channels: image channels (for the default encoder).
      encoder: a backbone of the `fnn.models.encoder` contract.
      filters: the default encoder's widths (the decoder mirrors them).
      rngs: `flax.nnx.Rngs`.

    Shapes: ``[N, H, W, C]`` → ``[N, H, W, K]`` logits.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: UNet(5, rngs=nnx.Rngs(0)))  # shapes only
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 3))).shape
      (1, 32, 32, 5)
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 3,
        encoder=None,
        filters: Sequence[int] = (16, 32, 64, 128),
        rngs: nnx.Rngs,
    ):
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes must be an int >= 2 (with background), got {num_classes!r}"
            )
        self.encoder = (
            encoder if encoder is not None else ConvEncoder(in_channels, filters=filters, rngs=rngs)
        )
        channels, reductions = check_backbone(self.encoder)
        self.decoder = UNetDecoder(channels, reductions, rngs=rngs)
        self.logits = Conv(self.decoder.out_channels, num_classes, (1, 1), rngs=rngs)
        self.first_reduction = reductions[0]

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.logits(self.decoder(self.encoder(x)))
        return upsample(y, self.first_reduction) if self.first_reduction > 1 else y
