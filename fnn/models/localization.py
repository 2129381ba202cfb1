"""Classification + localization: one object per image, a class and a box (the lecture's
"localization" application; Keras' two-output functional model).

``Localizer(x) -> {"class": [N, K] logits, "box": [N, 4] xyxy pixels}``. The box head regresses
``sigmoid(t) = (cx / W, cy / H, w / W, h / H)`` and converts it to ``xyxy`` pixels, so every
predicted box lies inside the image and has ``x1 <= x2``. Train ``"class"`` with sparse softmax
cross-entropy (``from_logits=True``) and ``"box"`` with `fnn.boxes.giou_loss` (+ an L1 term on
boxes divided by the image size); report class accuracy and `fnn.boxes.box_iou`.

The encoder is any backbone of the contract in `fnn.models.encoder` (default a scratch
`ConvEncoder`); the head reads only its deepest map, reduced to 32 channels by a 1×1
convolution, flattened (position matters for a box: no global pooling), then a dense layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fnn.conv import Conv
from fnn.models.encoder import ConvEncoder, check_backbone

__all__ = ["Localizer"]


class Localizer(nnx.Module):
    """A class head and a box head on a multi-scale encoder's deepest feature map.

    Args:
      num_classes: ``K``.
      input_shape: ``(H, W, C)`` of one image (sizes the dense layer and scales boxes to pixels).
      encoder: a backbone (`fnn.models.encoder` contract); default ``ConvEncoder(C,
        filters=filters)``.
      filters: the default encoder's stage widths.
      hidden: width of the shared dense layer.
      rngs: `flax.nnx.Rngs`.

    Shapes: ``[N, H, W, C]`` → ``{"class": [N, K], "box": [N, 4]}``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> m = Localizer(4, input_shape=(32, 32, 3), filters=(8, 16), rngs=nnx.Rngs(0))
      >>> out = m(jnp.zeros((2, 32, 32, 3)))
      >>> out["class"].shape, out["box"].shape
      ((2, 4), (2, 4))
    """

    def __init__(
        self,
        num_classes: int,
        *,
        input_shape: Sequence[int],
        encoder=None,
        filters: Sequence[int] = (16, 32, 64, 128),
        hidden: int = 128,
        rngs: nnx.Rngs,
    ):
        if len(tuple(input_shape)) != 3:
            raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        h, w, c = (int(d) for d in input_shape)
        self.encoder = (
            encoder if encoder is not None else ConvEncoder(c, filters=filters, rngs=rngs)
        )
        channels, reductions = check_backbone(self.encoder)
        r = reductions[-1]
        if h % r or w % r:
            raise ValueError(f"input_shape {input_shape} must be divisible by the encoder's {r}")
        self.squeeze = Conv(channels[-1], 32, (1, 1), rngs=rngs)
        self.hidden = nnx.Linear((h // r) * (w // r) * 32, hidden, rngs=rngs)
        self.classes = nnx.Linear(hidden, num_classes, rngs=rngs)
        self.box = nnx.Linear(hidden, 4, rngs=rngs)
        self.image_size = (h, w)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        f = jax.nn.relu(self.squeeze(self.encoder(x)[-1]))
        f = jax.nn.relu(self.hidden(f.reshape(f.shape[0], -1)))
        h, w = self.image_size
        cx, cy, bw, bh = jnp.moveaxis(jax.nn.sigmoid(self.box(f)), -1, 0)
        x1, x2 = jnp.clip(cx - bw / 2, 0, 1) * w, jnp.clip(cx + bw / 2, 0, 1) * w
        y1, y2 = jnp.clip(cy - bh / 2, 0, 1) * h, jnp.clip(cy + bh / 2, 0, 1) * h
        return {"class": self.classes(f), "box": jnp.stack([x1, y1, x2, y2], axis=-1)}
