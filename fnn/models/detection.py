"""A one-stage grid detector, CenterNet style (Zhou et al. 2019, "Objects as Points"), with NMS.

Each object is the peak of a per-class heat map at its box centre on a grid of stride ``s``
(default 4: a 16×16 grid for 64×64 images); at that cell the network also regresses the box size
and the sub-cell offset of the centre. Outputs (`CenterNet.__call__`):

* ``"heatmap"`` ``[N, H/s, W/s, K]`` logits; ``sigmoid`` is the probability that an object of
  class k is centred in the cell;
* ``"size"`` ``[N, H/s, W/s, 2]``: ``(w / W, h / H)``, the box size as a fraction of the image;
* ``"offset"`` ``[N, H/s, W/s, 2]``: centre ``/ s`` minus the cell's integer coordinates.

Training targets (:func:`centernet_targets`, pure JAX, per image, so augmentation can run before
it inside the train step): a Gaussian ``exp(-d² / 2σ²)`` around each centre cell in its class's
channel (the element-wise max where Gaussians meet), ``σ = (2r + 1) / 6`` with
``r = floor(0.25 √(w h) / s)`` (a simplification of CenterNet's overlap-based radius); size and
offset at the centre cells. Loss (:func:`centernet_loss`): CenterNet's penalty-reduced focal loss
on the heat map (α = 2, β = 4) normalised by the number of objects, plus ``5 · L1`` on size and
``1 · L1`` on offset at the centre cells. Decoding (:func:`decode`): 3×3 max-pool peaks (the
paper's NMS replacement), the top ``max_detections`` scores, then per-class IoU NMS
(`fnn.boxes.nms`) as the issue asks; fixed-size, jit- and vmap-safe outputs.

Compared with YOLO v1 (one box per 7×7 cell, class per cell): CenterNet's class heat maps have no
anchor and no objectness-versus-class split, and the stride-4 grid rarely puts two centres in one
cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fnn import boxes as boxes_lib
from fnn.conv import Conv
from fnn.models.encoder import ConvEncoder, check_backbone
from fnn.models.unet import UNetDecoder

__all__ = ["CenterNet", "centernet_targets", "centernet_loss", "decode"]

_PRIOR = 0.1  # initial heat-map probability (CenterNet's bias init -2.19)


class _Head(nnx.Module):
    def __init__(self, cin: int, width: int, cout: int, *, bias: float = 0.0, rngs: nnx.Rngs):
        self.hidden = Conv(cin, width, (3, 3), padding="SAME", rngs=rngs)
        self.out = Conv(width, cout, (1, 1), rngs=rngs)
        self.out.bias[...] = jnp.full((cout,), bias, jnp.float32)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


class CenterNet(nnx.Module):
    """Encoder + U-Net decoder up to stride ``s`` + heat-map, size and offset heads.

    Args:
      num_classes: ``K``.
      encoder: a backbone of the `fnn.models.encoder` contract (default a scratch
        `ConvEncoder(in_channels, filters=filters)`); it must have a map at reduction ``stride``.
      in_channels: image channels (default encoder).
      filters: the default encoder's widths.
      stride: the output grid's reduction ``s``.
      head_width: channels of each head's hidden 3×3 convolution.
      rngs: `flax.nnx.Rngs`.

    Shapes: ``[N, H, W, C]`` → ``{"heatmap": [N, H/s, W/s, K], "size": [N, H/s, W/s, 2],
    "offset": [N, H/s, W/s, 2]}``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> net = nnx.eval_shape(lambda: CenterNet(4, rngs=nnx.Rngs(0)))  # shapes only
      >>> out = nnx.eval_shape(lambda m, x: m(x), net, jnp.zeros((1, 32, 32, 3)))
      >>> {k: v.shape for k, v in out.items()}
      {'heatmap': (1, 8, 8, 4), 'offset': (1, 8, 8, 2), 'size': (1, 8, 8, 2)}
    """

    def __init__(
        self,
        num_classes: int,
        *,
        encoder=None,
        in_channels: int = 3,
        filters: Sequence[int] = (16, 32, 64, 128),
        stride: int = 4,
        head_width: int = 64,
        rngs: nnx.Rngs,
    ):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.encoder = (
            encoder if encoder is not None else ConvEncoder(in_channels, filters=filters, rngs=rngs)
        )
        channels, reductions = check_backbone(self.encoder)
        if stride not in reductions:
            raise ValueError(
                f"stride must be one of the encoder's reductions {reductions}, got {stride}"
            )
        self.decoder = UNetDecoder(channels, reductions, stop=reductions.index(stride), rngs=rngs)
        cin = self.decoder.out_channels
        self.heatmap = _Head(
            cin, head_width, num_classes, bias=-math.log((1 - _PRIOR) / _PRIOR), rngs=rngs
        )
        self.size = _Head(cin, head_width, 2, rngs=rngs)
        self.offset = _Head(cin, head_width, 2, rngs=rngs)
        self.stride = stride
        self.num_classes = num_classes

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        f = self.decoder(self.encoder(x))
        return {"heatmap": self.heatmap(f), "offset": self.offset(f), "size": self.size(f)}


def centernet_targets(boxes, labels, *, num_classes: int, image_size, stride: int = 4) -> dict:
    """Training targets of ONE image (vmap for a batch); see the module docstring.

    Args:
      boxes: ``[M, 4]`` ``xyxy`` pixels (padding rows are ignored).
      labels: ``[M]`` class ids, ``-1`` for padding.
      num_classes: ``K``.
      image_size: ``(H, W)`` of the image.
      stride: the grid's reduction ``s``.

    Returns:
      ``{"heatmap": [H/s, W/s, K], "size": [H/s, W/s, 2], "offset": [H/s, W/s, 2],
      "positive": [H/s, W/s]}`` float32 (``positive`` is 1 at centre cells).

    Examples:
      >>> import jax.numpy as jnp
      >>> t = centernet_targets(jnp.array([[8.0, 8.0, 24.0, 16.0]]), jnp.array([1]),
      ...                       num_classes=2, image_size=(32, 32))
      >>> float(t["heatmap"][3, 4, 1]), t["size"][3, 4].tolist(), t["offset"][3, 4].tolist()
      (1.0, [0.5, 0.25], [0.0, 0.0])
    """
    b = jnp.asarray(boxes, jnp.float32)
    lab = jnp.asarray(labels)
    h, w = (int(s) // stride for s in image_size)
    valid = lab >= 0
    cx = (b[:, 0] + b[:, 2]) / 2 / stride
    cy = (b[:, 1] + b[:, 3]) / 2 / stride
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    ix = jnp.clip(jnp.floor(cx), 0, w - 1)
    iy = jnp.clip(jnp.floor(cy), 0, h - 1)
    radius = jnp.floor(0.25 * jnp.sqrt(jnp.maximum(bw * bh, 0.0)) / stride)
    sigma = (2 * radius + 1) / 6
    gy, gx = jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32)
    d2 = (gx[None, None, :] - ix[:, None, None]) ** 2 + (gy[None, :, None] - iy[:, None, None]) ** 2
    gauss = jnp.exp(-d2 / (2 * sigma[:, None, None] ** 2)) * valid[:, None, None]  # [M, h, w]
    onehot = jax.nn.one_hot(jnp.where(valid, lab, -1), num_classes)  # [M, K], zeros for -1
    heat = jnp.max(gauss[..., None] * onehot[:, None, None, :], axis=0, initial=0.0)
    at = (
        (gx[None, None, :] == ix[:, None, None]) & (gy[None, :, None] == iy[:, None, None])
    ) & valid[:, None, None]
    at = at.astype(jnp.float32)  # [M, h, w]
    size = jnp.stack([bw / image_size[1], bh / image_size[0]], -1)
    offset = jnp.stack([cx - ix, cy - iy], -1)
    return {
        "heatmap": heat,
        "size": jnp.einsum("mhw,mc->hwc", at, size),
        "offset": jnp.einsum("mhw,mc->hwc", at, offset),
        "positive": jnp.clip(at.sum(0), 0.0, 1.0),
    }


def centernet_loss(
    *, y_true: dict, y_pred: dict, size_weight: float = 5.0, offset_weight: float = 1.0
):
    """Per-example CenterNet loss ``[N]`` (module docstring): focal heat-map loss + L1 terms.

    ``L_heat = -1/P Σ_{cells, k} { (1 - p)^α log p  if y = 1;  (1 - y)^β p^α log(1 - p) else }``
    with ``p = sigmoid(logit)``, ``P`` the number of objects (at least 1), α = 2, β = 4.

    Examples:
      >>> import jax.numpy as jnp
      >>> t = centernet_targets(jnp.array([[8.0, 8.0, 24.0, 16.0]]), jnp.array([1]),
      ...                       num_classes=2, image_size=(32, 32))
      >>> t = {k: v[None] for k, v in t.items()}
      >>> good = {"heatmap": jnp.where(t["heatmap"] == 1, 20.0, -20.0), "size": t["size"],
      ...         "offset": t["offset"]}
      >>> float(centernet_loss(y_true=t, y_pred=good)[0]) < 1e-3
      True
    """
    logits = y_pred["heatmap"]
    y = y_true["heatmap"]
    log_p, log_1mp = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    p = jnp.exp(log_p)
    pos = (y == 1.0).astype(logits.dtype)
    focal = pos * (1 - p) ** 2 * log_p + (1 - pos) * (1 - y) ** 4 * p**2 * log_1mp
    axes = tuple(range(1, logits.ndim))
    positive = y_true["positive"][..., None]
    n_pos = jnp.maximum(jnp.sum(y_true["positive"], axis=axes[:-1]), 1.0)
    heat = -jnp.sum(focal, axis=axes) / n_pos
    size = jnp.sum(jnp.abs(y_pred["size"] - y_true["size"]) * positive, axis=axes) / n_pos
    offset = jnp.sum(jnp.abs(y_pred["offset"] - y_true["offset"]) * positive, axis=axes) / n_pos
    return heat + size_weight * size + offset_weight * offset


def decode(
    outputs: dict,
    *,
    image_size,
    stride: int = 4,
    max_detections: int = 20,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
) -> dict:
    """Boxes, scores and classes of ONE image's outputs (vmap for a batch), fixed size.

    Peaks of ``sigmoid(heatmap)`` (a cell equal to its 3×3 max), the ``max_detections`` best,
    boxes ``centre = (cell + offset) · s``, ``(w, h) = size · (W, H)`` clipped to the image, then
    per-class `fnn.boxes.nms`. Empty slots have label ``-1``, score ``0`` and a zero box.

    Returns:
      ``{"boxes": [D, 4] xyxy pixels, "scores": [D], "labels": [D]}`` by decreasing score.

    Examples:
      >>> import jax.numpy as jnp
      >>> t = centernet_targets(jnp.array([[8.0, 8.0, 24.0, 16.0]]), jnp.array([1]),
      ...                       num_classes=2, image_size=(32, 32))
      >>> out = {"heatmap": jnp.where(t["heatmap"] == 1, 5.0, -5.0), "size": t["size"],
      ...        "offset": t["offset"]}
      >>> d = decode(out, image_size=(32, 32), max_detections=3)
      >>> d["boxes"][0].tolist(), d["labels"].tolist()
      ([8.0, 8.0, 24.0, 16.0], [1, -1, -1])
    """
    logits = outputs["heatmap"]
    h, w, k = logits.shape
    p = jax.nn.sigmoid(logits)
    pooled = jax.lax.reduce_window(p, -jnp.inf, jax.lax.max, (3, 3, 1), (1, 1, 1), "SAME")
    peaks = jnp.where(p == pooled, p, 0.0).reshape(-1)
    scores, idx = jax.lax.top_k(peaks, min(max_detections, peaks.size))
    cls = idx % k
    cell = idx // k
    cy, cx = cell // w, cell % w
    off = outputs["offset"].reshape(-1, 2)[cell]
    size = outputs["size"].reshape(-1, 2)[cell]
    centre_x = (cx + off[:, 0]) * stride
    centre_y = (cy + off[:, 1]) * stride
    size = jnp.maximum(size, 0.0)  # a negative predicted size (early in training) is an empty box
    bw, bh = size[:, 0] * image_size[1], size[:, 1] * image_size[0]
    b = jnp.stack([centre_x - bw / 2, centre_y - bh / 2, centre_x + bw / 2, centre_y + bh / 2], -1)
    b = boxes_lib.clip(b, image_size)
    keep, _ = boxes_lib.nms(
        b,
        scores,
        iou_threshold=iou_threshold,
        max_output_size=scores.shape[0],
        score_threshold=score_threshold,
        classes=cls,
    )
    ok = keep >= 0
    safe = jnp.maximum(keep, 0)
    return {
        "boxes": jnp.where(ok[:, None], b[safe], 0.0),
        "scores": jnp.where(ok, scores[safe], 0.0),
        "labels": jnp.where(ok, cls[safe], -1).astype(jnp.int32),
    }
