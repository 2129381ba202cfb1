"""Bounding boxes: formats, IoU / GIoU, their losses, non-maximum suppression and detection mAP.

Data contract
-------------
* A box is the last axis of length 4 of a float array ``[..., 4]`` in **pixel units**, on
  continuous image coordinates: pixel ``(row i, column j)`` covers ``[j, j+1) × [i, i+1)``, so a
  mask's tight box is ``x1 = min column, x2 = max column + 1`` and a box inside an ``H × W`` image
  has ``0 <= x1 <= x2 <= W`` and ``0 <= y1 <= y2 <= H`` (torchvision's convention; Keras 3's
  ``bounding_boxes`` utilities use the same numbers for ``"xyxy"``).
* Formats (torchvision's ``box_convert`` names):

  ===========  ===================  ==============================================
  format       components           Keras 3 ``bounding_box_format``
  ===========  ===================  ==============================================
  ``xyxy``     x1, y1, x2, y2       ``"xyxy"``
  ``xywh``     x1, y1, w, h         ``"xywh"``
  ``cxcywh``   cx, cy, w, h         ``"center_xywh"``
  ===========  ===================  ==============================================

  Every function below takes ``xyxy`` boxes; :func:`convert` goes between formats.
* Functions on arrays are pure JAX (jit/vmap/grad safe). Value checks (``x2 < x1``, a box
  outside the image) run only on concrete arrays, through :func:`check_boxes`; inside ``jit``
  only shapes are checked. :func:`mean_average_precision` is an epoch-level NumPy metric (it sorts
  all detections of the evaluation set at once).

References: Rezatofighi et al. 2019, "Generalized Intersection over Union" (GIoU);
Everingham et al. 2010, "The PASCAL VOC Challenge" (AP); pycocotools ``COCOeval`` (101-point AP).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fnn._validation import lookup

__all__ = [
    "FORMATS",
    "convert",
    "check_boxes",
    "area",
    "clip",
    "iou_matrix",
    "giou_matrix",
    "iou",
    "giou",
    "iou_loss",
    "giou_loss",
    "box_iou",
    "nms",
    "average_precision",
    "mean_average_precision",
    "from_mask",
]

FORMATS = ("xyxy", "xywh", "cxcywh")
_EPS = 1e-7  # torchvision's eps in generalized_box_iou_loss; keeps 0/0 boxes finite


def _check_last_axis(boxes, name: str) -> jax.Array:
    boxes = jnp.asarray(boxes)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(
            f"{name} must have a last axis of 4 box coordinates, got shape {boxes.shape}"
        )
    if not jnp.issubdtype(boxes.dtype, jnp.floating):
        boxes = boxes.astype(jnp.float32)
    return boxes


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_boxes(boxes, *, name: str = "boxes", image_size=None, fmt: str = "xyxy") -> np.ndarray:
    """Check concrete boxes and return them as a NumPy array; raise a clear error otherwise.

    Checks: the last axis has 4 entries, every value is finite, ``x2 >= x1`` and ``y2 >= y1``
    (``w, h >= 0`` for the other formats), and, when ``image_size=(H, W)`` is given, that each
    ``xyxy`` box lies in ``[0, W] × [0, H]``. Boxes with NaN padding are not accepted: pad with
    zeros and a separate validity mask or label ``-1``.

    Args:
      boxes: ``[..., 4]`` array in format ``fmt``.
      name: the argument's name in error messages.
      image_size: optional ``(H, W)``.
      fmt: one of :data:`FORMATS`.

    Returns:
      ``boxes`` as a NumPy array.

    Raises:
      ValueError: naming ``name``, the offending index and its value.

    Examples:
      >>> check_boxes([[0, 0, 4, 4]], image_size=(8, 8)).tolist()
      [[0.0, 0.0, 4.0, 4.0]]
      >>> check_boxes([[5, 0, 4, 4]])
      Traceback (most recent call last):
      ...
      ValueError: boxes[0] = [5.0, 0.0, 4.0, 4.0] has x2 < x1 (xyxy boxes need x1 <= x2, y1 <= y2)
    """
    _fmt(fmt)
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 4:
        raise ValueError(
            f"{name} must have a last axis of 4 box coordinates, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr).all(-1))[0])
        raise ValueError(f"{name}{list(bad)} = {arr[bad].tolist()} is not finite")
    xyxy = np.asarray(convert(arr, in_fmt=fmt, out_fmt="xyxy")) if fmt != "xyxy" else arr
    for axis, (lo, hi) in (("x", (0, 2)), ("y", (1, 3))):
        wrong = xyxy[..., hi] < xyxy[..., lo]
        if wrong.any():
            bad = tuple(int(i) for i in np.argwhere(wrong)[0])
            raise ValueError(
                f"{name}{list(bad)} = {arr[bad].tolist()} has {axis}2 < {axis}1 "
                f"({fmt} boxes need x1 <= x2, y1 <= y2)"
                if fmt == "xyxy"
                else f"{name}{list(bad)} = {arr[bad].tolist()} has a negative "
                f"{'width' if axis == 'x' else 'height'}"
            )
    if image_size is not None:
        h, w = (int(s) for s in image_size)
        outside = (xyxy[..., 0] < 0) | (xyxy[..., 1] < 0) | (xyxy[..., 2] > w) | (xyxy[..., 3] > h)
        if outside.any():
            bad = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(
                f"{name}{list(bad)} = {arr[bad].tolist()} lies outside the image: expected "
                f"0 <= x1 <= x2 <= {w} and 0 <= y1 <= y2 <= {h} for image_size (H, W) = ({h}, {w})"
            )
    return arr


def _fmt(fmt: str) -> str:
    return lookup("box format", fmt, {f: f for f in FORMATS})


def convert(boxes, *, in_fmt: str, out_fmt: str) -> jax.Array:
    """Convert boxes between ``xyxy``, ``xywh`` and ``cxcywh``.

    ``xywh = (x1, y1, x2 - x1, y2 - y1)``, ``cxcywh = ((x1 + x2)/2, (y1 + y2)/2, x2 - x1,
    y2 - y1)``. Same names as ``torchvision.ops.box_convert(boxes, in_fmt, out_fmt)``; Keras 3's
    ``keras.utils.bounding_boxes.convert_format`` calls ``cxcywh`` ``"center_xywh"``.

    Args:
      boxes: ``[..., 4]``.
      in_fmt, out_fmt: names from :data:`FORMATS`.

    Returns:
      ``[..., 4]`` in ``out_fmt``.

    Examples:
      >>> convert([[1.0, 2.0, 5.0, 8.0]], in_fmt="xyxy", out_fmt="cxcywh").tolist()
      [[3.0, 5.0, 4.0, 6.0]]
    """
    in_fmt, out_fmt = _fmt(in_fmt), _fmt(out_fmt)
    b = _check_last_axis(boxes, "boxes")
    a0, a1, a2, a3 = (b[..., i] for i in range(4))
    if in_fmt == "xywh":
        a0, a1, a2, a3 = a0, a1, a0 + a2, a1 + a3
    elif in_fmt == "cxcywh":
        a0, a1, a2, a3 = a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2
    if out_fmt == "xywh":
        a0, a1, a2, a3 = a0, a1, a2 - a0, a3 - a1
    elif out_fmt == "cxcywh":
        a0, a1, a2, a3 = (a0 + a2) / 2, (a1 + a3) / 2, a2 - a0, a3 - a1
    return jnp.stack([a0, a1, a2, a3], axis=-1)


def area(boxes) -> jax.Array:
    """Area ``(x2 - x1)(y2 - y1)`` of ``xyxy`` boxes ``[..., 4]`` → ``[...]``.

    Examples:
      >>> area([[0.0, 0.0, 2.0, 3.0]]).tolist()
      [6.0]
    """
    b = _check_last_axis(boxes, "boxes")
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def clip(boxes, image_size) -> jax.Array:
    """Clip ``xyxy`` boxes to the image ``[0, W] × [0, H]`` (``image_size = (H, W)``).

    Examples:
      >>> clip([[-2.0, 1.0, 9.0, 5.0]], (4, 8)).tolist()
      [[0.0, 1.0, 8.0, 4.0]]
    """
    b = _check_last_axis(boxes, "boxes")
    h, w = image_size
    hi = jnp.asarray([w, h, w, h], b.dtype)
    return jnp.clip(b, 0, hi)


def _inter_union(a: jax.Array, b: jax.Array):
    lt = jnp.maximum(a[..., :2], b[..., :2])
    rb = jnp.minimum(a[..., 2:], b[..., 2:])
    wh = jnp.clip(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a) + area(b) - inter
    return inter, union


def _enclosing_area(a: jax.Array, b: jax.Array) -> jax.Array:
    lt = jnp.minimum(a[..., :2], b[..., :2])
    rb = jnp.maximum(a[..., 2:], b[..., 2:])
    wh = jnp.clip(rb - lt, 0)
    return wh[..., 0] * wh[..., 1]


def iou(boxes1, boxes2) -> jax.Array:
    """Elementwise intersection over union of two broadcastable ``xyxy`` arrays ``[..., 4]``.

    ``IoU(A, B) = |A ∩ B| / |A ∪ B|``, with ``|A ∪ B| = |A| + |B| - |A ∩ B|``; two empty boxes
    give ``0`` (the union gets ``+1e-7`` as torchvision's ``generalized_box_iou_loss`` does, so
    gradients stay finite). :func:`iou_matrix` is the pairwise ``[N, M]`` version.

    Examples:
      >>> round(float(iou([0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0])), 4)
      0.3333
    """
    a, b = _check_last_axis(boxes1, "boxes1"), _check_last_axis(boxes2, "boxes2")
    inter, union = _inter_union(a, b)
    return inter / (union + _EPS)


def giou(boxes1, boxes2) -> jax.Array:
    """Elementwise generalized IoU (Rezatofighi et al. 2019) of broadcastable ``xyxy`` boxes.

    ``GIoU = IoU - |C \\ (A ∪ B)| / |C|`` with ``C`` the smallest box enclosing ``A`` and ``B``;
    it lies in ``(-1, 1]`` and, unlike IoU, still has a gradient when the boxes do not overlap.
    Matches ``torchvision.ops.generalized_box_iou`` (pairwise there) up to the ``1e-7`` eps.

    Examples:
      >>> round(float(giou([0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0])), 4)
      -0.3333
    """
    a, b = _check_last_axis(boxes1, "boxes1"), _check_last_axis(boxes2, "boxes2")
    inter, union = _inter_union(a, b)
    enclosing = _enclosing_area(a, b)
    return inter / (union + _EPS) - (enclosing - union) / (enclosing + _EPS)


def _pairwise(boxes1, boxes2):
    a, b = _check_last_axis(boxes1, "boxes1"), _check_last_axis(boxes2, "boxes2")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"iou_matrix/giou_matrix take boxes1 [N, 4] and boxes2 [M, 4], got {a.shape} and "
            f"{b.shape}"
        )
    return a[:, None, :], b[None, :, :]


def iou_matrix(boxes1, boxes2) -> jax.Array:
    """Pairwise IoU ``[N, M]`` of ``xyxy`` boxes ``[N, 4]`` and ``[M, 4]``.

    ``torchvision.ops.box_iou`` computes the same matrix (without the ``1e-7`` in the
    denominator, so torchvision returns NaN for two empty boxes where this returns 0).

    Examples:
      >>> iou_matrix([[0.0, 0.0, 2.0, 2.0]], [[0.0, 0.0, 2.0, 2.0], [4.0, 4.0, 5.0, 5.0]]).round(4)
      Array([[1., 0.]], dtype=float32)
    """
    return iou(*_pairwise(boxes1, boxes2))


def giou_matrix(boxes1, boxes2) -> jax.Array:
    """Pairwise GIoU ``[N, M]`` (``torchvision.ops.generalized_box_iou``); see :func:`giou`.

    Examples:
      >>> giou_matrix([[0.0, 0.0, 1.0, 1.0]], [[2.0, 0.0, 3.0, 1.0]]).round(4)
      Array([[-0.3333]], dtype=float32)
    """
    return giou(*_pairwise(boxes1, boxes2))


def _per_example(values: jax.Array) -> jax.Array:
    return values.reshape(values.shape[0], -1).mean(axis=1) if values.ndim > 1 else values


def _loss_boxes(y_true, y_pred):
    t, p = _check_last_axis(y_true, "y_true"), _check_last_axis(y_pred, "y_pred")
    if t.shape != p.shape or t.ndim < 2:
        raise ValueError(
            f"y_true and y_pred must both be xyxy boxes [N, ..., 4] of one shape, got y_true "
            f"{t.shape} and y_pred {p.shape}"
        )
    return t, p


def iou_loss(*, y_true, y_pred) -> jax.Array:
    """IoU loss ``L = 1 - IoU(box_true, box_pred)`` per example: ``[N, ..., 4]`` → ``[N]``.

    Extra axes between the batch and the coordinates (several boxes per example) are averaged.
    ``keras_cv.losses.IoULoss(mode="linear")`` is the same number (its default ``mode="log"`` is
    ``-ln IoU``, and it takes a ``bounding_box_format``; here boxes are ``xyxy``); Keras 3 has no
    box loss, torchvision no plain IoU loss. Its gradient is zero when the boxes do not overlap;
    prefer :func:`giou_loss` then. ``fnn.losses.get("iou_loss")`` (or ``"IoULoss"``) returns it.

    Examples:
      >>> iou_loss(y_true=[[0.0, 0.0, 2.0, 2.0]], y_pred=[[1.0, 0.0, 3.0, 2.0]]).round(4)
      Array([0.6667], dtype=float32)
    """
    t, p = _loss_boxes(y_true, y_pred)
    return _per_example(1.0 - iou(t, p))


def giou_loss(*, y_true, y_pred) -> jax.Array:
    """GIoU loss ``L = 1 - GIoU(box_true, box_pred)`` per example, in ``[0, 2)``: ``[N, ..., 4]``
    → ``[N]``.

    ``GIoU = IoU - |C \\ (A ∪ B)| / |C|``, ``C`` the smallest box enclosing both (:func:`giou`).
    ``torchvision.ops.generalized_box_iou_loss(pred, true, reduction="none")`` is the same
    (eps ``1e-7``; its default ``reduction`` is also ``"none"``, where a Keras loss averages over
    the batch); ``keras_cv.losses.GIoULoss(bounding_box_format="xyxy")`` too, before its batch
    reduction. Extra middle axes are averaged. ``fnn.losses.get("giou_loss")`` (``"giou"``,
    ``"GIoULoss"``, ``"generalized_box_iou_loss"``) returns it.

    Examples:
      >>> giou_loss(y_true=[[0.0, 0.0, 1.0, 1.0]], y_pred=[[2.0, 0.0, 3.0, 1.0]]).round(4)
      Array([1.3333], dtype=float32)
    """
    t, p = _loss_boxes(y_true, y_pred)
    return _per_example(1.0 - giou(t, p))


def box_iou(*, y_true, y_pred) -> jax.Array:
    """The box-IoU metric: per-example ``IoU(box_true, box_pred)`` ``[N, ..., 4]`` → ``[N]``.

    Averaging these per-example values over the epoch (`fnn.metrics.Mean`) gives the mean box
    IoU of the whole set, however it is cut into batches (it is a mean of per-example values,
    not of per-batch ratios).

    Examples:
      >>> box_iou(y_true=[[0.0, 0.0, 2.0, 2.0]], y_pred=[[0.0, 0.0, 2.0, 2.0]]).round(4)
      Array([1.], dtype=float32)
    """
    t, p = _loss_boxes(y_true, y_pred)
    return _per_example(iou(t, p))


def nms(
    boxes,
    scores,
    *,
    iou_threshold: float = 0.5,
    max_output_size: int | None = None,
    score_threshold: float | None = None,
    classes=None,
) -> tuple[jax.Array, jax.Array]:
    """Greedy non-maximum suppression with a fixed-size output (jit- and vmap-safe).

    Visit the boxes by decreasing score; keep a box unless its IoU with an already kept box is
    ``> iou_threshold`` (strictly, as ``torchvision.ops.nms``). With ``classes``, boxes only
    suppress boxes of their own class (``torchvision.ops.batched_nms``). Boxes whose score is
    ``<= score_threshold`` (or NaN) are dropped first, as ``tf.image.non_max_suppression_padded``
    does with ``score_threshold``.

    Differences: torchvision returns a variable-length index tensor; here the output always has
    ``max_output_size`` slots (default ``N``), padded with ``-1``, so shapes are static under
    ``jit`` and batches can be ``vmap``-ed. Equal scores are visited in index order (a stable
    sort); torchvision's order for ties is unspecified. Cost: an ``N × N`` IoU matrix and ``N``
    sequential steps, fine for the hundreds of boxes of a small detector.

    Args:
      boxes: ``[N, 4]`` ``xyxy``.
      scores: ``[N]``.
      iou_threshold: suppress a box whose IoU with a kept box exceeds this.
      max_output_size: number of output slots ``K`` (static).
      score_threshold: drop boxes with ``score <= score_threshold`` (static or traced float).
      classes: optional ``[N]`` integer class ids (per-class NMS).

    Returns:
      ``(indices, count)``: ``int32 [K]`` indices into ``boxes`` of the kept boxes by decreasing
      score, then ``-1``; ``int32 []`` the number of valid entries.

    Examples:
      >>> import jax.numpy as jnp
      >>> b = jnp.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], jnp.float32)
      >>> idx, n = nms(b, jnp.array([0.9, 0.8, 0.7]), iou_threshold=0.5, max_output_size=3)
      >>> idx.tolist(), int(n)
      ([0, 2, -1], 2)
    """
    b = _check_last_axis(boxes, "boxes")
    s = jnp.asarray(scores)
    if b.ndim != 2 or s.shape != b.shape[:1]:
        raise ValueError(
            f"nms takes boxes [N, 4] and scores [N], got boxes {b.shape} and scores {s.shape}"
        )
    n = b.shape[0]
    k = n if max_output_size is None else int(max_output_size)
    if k < 1:
        raise ValueError(f"max_output_size must be a positive int, got {max_output_size}")
    if _is_concrete(iou_threshold) and not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if n == 0:
        return jnp.full((k,), -1, jnp.int32), jnp.zeros((), jnp.int32)
    valid = ~jnp.isnan(s)
    if score_threshold is not None:
        valid &= s > score_threshold
    order = jnp.argsort(jnp.where(valid, -s, jnp.inf), stable=True)
    sb, valid = b[order], valid[order]
    overlap = iou_matrix(sb, sb) > iou_threshold
    if classes is not None:
        c = jnp.asarray(classes)
        if c.shape != (n,):
            raise ValueError(f"classes must be [N] = [{n}] class ids, got shape {c.shape}")
        c = c[order]
        overlap &= c[:, None] == c[None, :]

    def visit(i, keep):
        suppressed = jnp.any(keep & overlap[:, i])
        return keep.at[i].set(valid[i] & ~suppressed)

    keep = jax.lax.fori_loop(0, n, visit, jnp.zeros((n,), bool))
    (slots,) = jnp.nonzero(keep, size=k, fill_value=-1)
    indices = jnp.where(slots >= 0, order[jnp.maximum(slots, 0)], -1).astype(jnp.int32)
    return indices, jnp.minimum(keep.sum(), k).astype(jnp.int32)


def from_mask(mask) -> np.ndarray:
    """The tight ``xyxy`` box of a boolean mask ``[H, W]`` (NumPy; zeros for an empty mask).

    ``x1 = min column``, ``x2 = max column + 1`` (pixels cover unit squares), likewise for y.

    Examples:
      >>> import numpy as np
      >>> m = np.zeros((5, 6), bool); m[1:3, 2:5] = True
      >>> from_mask(m).tolist()
      [2.0, 1.0, 5.0, 3.0]
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        return np.zeros(4, np.float32)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)


# --------------------------------------------------------------------------------------------
# Average precision (host-side NumPy: an epoch metric over all detections of a set).
# --------------------------------------------------------------------------------------------

INTERPOLATIONS = ("voc", "coco")


def average_precision(recall, precision, *, interpolation: str = "voc") -> float:
    """Area under a precision/recall curve, VOC all-point or COCO 101-point interpolated.

    The detections are sorted by decreasing score; ``recall[i]`` and ``precision[i]`` are the
    values after the first ``i + 1``. Both rules first make precision monotone,
    ``p̂(r) = max_{r' >= r} p(r')``, then

    * ``"voc"`` (PASCAL VOC 2010+ devkit, all points): ``AP = Σ_i (r_i - r_{i-1}) p̂(r_i)``;
    * ``"coco"`` (pycocotools ``COCOeval``): ``AP = 1/101 Σ_{t ∈ {0, 0.01, …, 1}} p̂(t)``, with
      ``p̂(t) = 0`` when recall ``t`` is never reached.

    VOC 2007's 11-point rule is not offered.

    Examples:
      >>> average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3])
      0.8333333333333333
    """
    interpolation = lookup("interpolation", interpolation, {i: i for i in INTERPOLATIONS})
    r = np.asarray(recall, np.float64)
    p = np.asarray(precision, np.float64)
    if r.shape != p.shape or r.ndim != 1:
        raise ValueError(
            f"recall and precision must be [D] of one shape, got {r.shape} and {p.shape}"
        )
    if r.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(p[::-1])[::-1]
    if interpolation == "voc":
        steps = np.diff(np.concatenate([[0.0], r]))
        return float(np.sum(steps * envelope))
    thresholds = np.linspace(0.0, 1.0, 101)
    at = np.searchsorted(r, thresholds, side="left")
    values = np.where(at < r.size, envelope[np.minimum(at, r.size - 1)], 0.0)
    return float(values.mean())


def _as_image_list(x, name: str) -> list[np.ndarray]:
    if isinstance(x, (list, tuple)):
        return [np.asarray(v) for v in x]
    arr = np.asarray(x)
    return [arr[i] for i in range(arr.shape[0])]


def mean_average_precision(
    *,
    true_boxes: Sequence,
    true_labels: Sequence,
    pred_boxes: Sequence,
    pred_scores: Sequence,
    pred_labels: Sequence,
    num_classes: int,
    iou_threshold: float = 0.5,
    interpolation: str = "voc",
) -> dict:
    """Mean average precision at one IoU threshold (mAP@0.5 by default) over a set of images.

    For each class: sort all its detections of the set by decreasing score; a detection is a true
    positive when its IoU with a not-yet-matched ground-truth box of the same class and image is
    ``>= iou_threshold`` (the best such box is taken, pycocotools' greedy matching), else a false
    positive; ``recall = TP / #gt``, ``precision = TP / (TP + FP)`` after each detection, and
    :func:`average_precision` integrates the curve. mAP is the mean over classes that have at
    least one ground-truth box (as VOC and COCO do). Differences from the references: the VOC
    devkit matches each detection to its best-IoU box even when that one is taken (a false
    positive then), "difficult"/"crowd" boxes do not exist here, and COCO's cap of 100
    detections per image is not applied.

    Inputs are per image: lists of arrays, or padded arrays ``[B, K, ...]`` where a label ``-1``
    marks padding (its box and score are ignored).

    Args:
      true_boxes: per image ``[G, 4]`` ``xyxy``.
      true_labels: per image ``[G]`` class ids in ``[0, num_classes)`` (``-1`` = padding).
      pred_boxes: per image ``[D, 4]``.
      pred_scores: per image ``[D]``.
      pred_labels: per image ``[D]`` (``-1`` = padding).
      num_classes: number of classes.
      iou_threshold: the matching threshold (0.5 is VOC's and COCO's AP50).
      interpolation: ``"voc"`` (all-point, default) or ``"coco"`` (101-point).

    Returns:
      ``{"map": float, "ap": float64 [num_classes] (NaN for a class without ground truth)}``.

    Examples:
      >>> import numpy as np
      >>> out = mean_average_precision(
      ...     true_boxes=[np.array([[0, 0, 10, 10]])], true_labels=[np.array([0])],
      ...     pred_boxes=[np.array([[0, 0, 10, 9], [20, 20, 30, 30]])],
      ...     pred_scores=[np.array([0.9, 0.8])], pred_labels=[np.array([0, 0])], num_classes=1)
      >>> out["map"]
      1.0
    """
    tb, tl = _as_image_list(true_boxes, "true_boxes"), _as_image_list(true_labels, "true_labels")
    pb, ps = _as_image_list(pred_boxes, "pred_boxes"), _as_image_list(pred_scores, "pred_scores")
    pl = _as_image_list(pred_labels, "pred_labels")
    if not len(tb) == len(tl) == len(pb) == len(ps) == len(pl):
        raise ValueError(
            "true_boxes, true_labels, pred_boxes, pred_scores and pred_labels must have one entry "
            f"per image, got {len(tb)}, {len(tl)}, {len(pb)}, {len(ps)}, {len(pl)}"
        )
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    for i in range(len(tb)):
        for what, labels in (("true_labels", tl[i]), ("pred_labels", pl[i])):
            bad = (labels < -1) | (labels >= num_classes)
            if bad.any():
                raise ValueError(
                    f"{what}[{i}] has class id {int(labels[bad][0])}; expected -1 (padding) or "
                    f"0..{num_classes - 1} for num_classes={num_classes}"
                )
        check_boxes(tb[i][tl[i] >= 0], name=f"true_boxes[{i}]")
        check_boxes(pb[i][pl[i] >= 0], name=f"pred_boxes[{i}]")
        if ps[i].shape != pl[i].shape or pb[i].shape[:-1] != pl[i].shape:
            raise ValueError(
                f"image {i}: pred_boxes {pb[i].shape}, pred_scores {ps[i].shape} and pred_labels "
                f"{pl[i].shape} must agree ([D, 4], [D], [D])"
            )
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        gts = [np.asarray(tb[i][tl[i] == c], np.float64) for i in range(len(tb))]
        n_gt = sum(len(g) for g in gts)
        if n_gt == 0:
            continue
        dets = [
            (float(ps[i][j]), i, np.asarray(pb[i][j], np.float64))
            for i in range(len(pb))
            for j in np.nonzero(pl[i] == c)[0]
        ]
        dets.sort(key=lambda d: -d[0])  # stable: ties keep image order
        taken = [np.zeros(len(g), bool) for g in gts]
        tp = np.zeros(len(dets))
        for d, (_, i, box) in enumerate(dets):
            g = gts[i]
            if len(g) == 0:
                continue
            overlaps = _np_iou(box[None], g)[0]
            overlaps[taken[i]] = -1.0
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou_threshold:
                taken[i][best] = True
                tp[d] = 1.0
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(dets) + 1)
        ap[c] = average_precision(recall, precision, interpolation=interpolation)
    present = ~np.isnan(ap)
    return {"map": float(ap[present].mean()) if present.any() else float("nan"), "ap": ap}


def _np_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
