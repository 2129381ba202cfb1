"""Boxes (lecture: applications beyond classification - localization and detection).

fnn.boxes: formats, IoU / GIoU (pairwise and elementwise), the IoU / GIoU losses, fixed-size
NMS and mean average precision at IoU 0.5 (VOC all-point and COCO 101-point). Three tiers:
float64 NumPy oracles written here, cross-checks (torchvision's pure-Python box ops when
installed), hypothesis invariants; plus bad inputs.
"""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnn import boxes

# ------------------------------------------------------------------------------------------------
# Oracles (float64 NumPy transcriptions of the formulas)
# ------------------------------------------------------------------------------------------------


def oracle_iou(a, b):
    """Pairwise IoU: |A ∩ B| / (|A| + |B| - |A ∩ B|)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def oracle_giou(a, b):
    """GIoU = IoU - (|C| - |A ∪ B|) / |C|, C the enclosing box."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            c = (max(p[2], q[2]) - min(p[0], q[0])) * (max(p[3], q[3]) - min(p[1], q[1]))
            out[i, j] = inter / union - (c - union) / c
    return out


def oracle_nms(b, s, thr):
    """Greedy NMS as torchvision documents it: by decreasing score, drop IoU > thr."""
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    keep = []
    for i in order:
        if all(oracle_iou([b[i]], [b[j]])[0, 0] <= thr for j in keep):
            keep.append(i)
    return keep


# Boxes with x1 <= x2, y1 <= y2 and area > 0, small integer-ish pixel coordinates. The number of
# boxes comes from a few fixed counts (the fewest, the most, one between), so the jitted functions
# below compile once per count and serve every drawn example of it.
@st.composite
def box_arrays(draw, min_n=1, max_n=8):
    n = draw(st.sampled_from(sorted({min_n, (min_n + max_n) // 2, max_n})))
    xy = np.array(
        draw(st.lists(st.tuples(*[st.integers(0, 30)] * 2), min_size=n, max_size=n)), np.float32
    )
    wh = np.array(
        draw(st.lists(st.tuples(*[st.integers(1, 20)] * 2), min_size=n, max_size=n)), np.float32
    )
    return np.concatenate([xy, xy + wh], axis=1)


def torchvision_ops():
    pytest.importorskip("torch")
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    return pytest.importorskip("torchvision.ops")


# ------------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------------


def test_convert_hand_computed():
    xyxy = np.array([[1.0, 2.0, 5.0, 8.0]])
    np.testing.assert_allclose(boxes.convert(xyxy, in_fmt="xyxy", out_fmt="xywh"), [[1, 2, 4, 6]])
    np.testing.assert_allclose(boxes.convert(xyxy, in_fmt="xyxy", out_fmt="cxcywh"), [[3, 5, 4, 6]])
    np.testing.assert_allclose(
        boxes.convert([[3.0, 5, 4, 6]], in_fmt="cxcywh", out_fmt="xyxy"), xyxy
    )


@given(box_arrays(), st.sampled_from(boxes.FORMATS), st.sampled_from(boxes.FORMATS))
def test_convert_round_trip(b, a, c):
    there = boxes.convert(boxes.convert(b, in_fmt="xyxy", out_fmt=a), in_fmt=a, out_fmt=c)
    back = boxes.convert(there, in_fmt=c, out_fmt="xyxy")
    np.testing.assert_allclose(back, b, atol=1e-4)


@pytest.mark.crosscheck
def test_convert_matches_torchvision():
    ops = torchvision_ops()
    import torch

    b = np.random.default_rng(0).uniform(0, 10, (6, 4)).astype(np.float32)
    b[:, 2:] += b[:, :2]
    for fmt in ("xywh", "cxcywh"):
        ref = ops.box_convert(torch.tensor(b), "xyxy", fmt).numpy()
        np.testing.assert_allclose(boxes.convert(b, in_fmt="xyxy", out_fmt=fmt), ref, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# IoU and GIoU
# ------------------------------------------------------------------------------------------------


def test_iou_hand_computed():
    # [0,2]x[0,2] and [1,3]x[0,2]: intersection 2, union 6.
    assert float(boxes.iou([0.0, 0, 2, 2], [1.0, 0, 3, 2])) == pytest.approx(1 / 3, abs=1e-6)
    # Disjoint unit squares 1 apart: IoU 0, enclosing box 3, union 2: GIoU = -1/3.
    assert float(boxes.giou([0.0, 0, 1, 1], [2.0, 0, 3, 1])) == pytest.approx(-1 / 3, abs=1e-6)


@jax.jit
def _iou_and_giou_matrices(a, b):
    return boxes.iou_matrix(a, b), boxes.giou_matrix(a, b)


@given(box_arrays(), box_arrays())
def test_iou_and_giou_match_oracle(a, b):
    m, g = _iou_and_giou_matrices(a, b)
    np.testing.assert_allclose(m, oracle_iou(a, b), atol=1e-5)
    np.testing.assert_allclose(g, oracle_giou(a, b), atol=1e-5)


@jax.jit
def _iou_invariant_terms(a, b):
    n = min(len(a), len(b))
    shift = jnp.array([3.0, -2.0, 3.0, -2.0], jnp.float32)
    return (
        boxes.iou_matrix(a, b),
        boxes.giou_matrix(a, b),
        boxes.iou_matrix(b, a),
        boxes.iou_matrix(a, a),
        boxes.iou_matrix(a + shift, b + shift),
        boxes.giou_matrix(2 * a, 2 * b),
        boxes.iou(a[:n], b[:n]),
    )


@given(box_arrays(), box_arrays())
def test_iou_invariants(a, b):
    m, g, m_ba, m_aa, m_shifted, g_scaled, elementwise = map(np.asarray, _iou_invariant_terms(a, b))
    assert np.all((m >= 0) & (m <= 1 + 1e-6))
    assert np.all((g > -1 - 1e-6) & (g <= m + 1e-6))  # GIoU <= IoU, > -1
    np.testing.assert_allclose(m_ba, m.T, atol=1e-6)  # symmetric
    np.testing.assert_allclose(np.diag(m_aa), 1.0, atol=1e-5)
    # Translating both boxes together changes nothing; scaling both scales nothing.
    np.testing.assert_allclose(m_shifted, m, atol=1e-5)
    np.testing.assert_allclose(g_scaled, g, atol=1e-5)
    # Elementwise == diagonal of the pairwise matrix.
    n = min(len(a), len(b))
    np.testing.assert_allclose(elementwise, np.diag(m[:n, :n]), atol=1e-6)


def test_iou_jit_vmap_and_no_recompile():
    a = jnp.array([[0.0, 0, 2, 2], [1, 1, 4, 5]])
    b = jnp.array([[1.0, 0, 3, 2], [0, 0, 1, 1]])
    eager = boxes.iou(a, b)
    jitted = jax.jit(boxes.iou)
    np.testing.assert_allclose(jitted(a, b), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(boxes.iou)(a, b), eager, rtol=1e-6)
    jitted(a + 1, b)
    assert jitted._cache_size() == 1


@pytest.mark.crosscheck
def test_iou_giou_and_loss_match_torchvision():
    ops = torchvision_ops()
    import torch

    rng = np.random.default_rng(1)
    a = rng.uniform(0, 20, (7, 4)).astype(np.float32)
    a[:, 2:] += a[:, :2] + 1
    b = rng.uniform(0, 20, (5, 4)).astype(np.float32)
    b[:, 2:] += b[:, :2] + 1
    ta, tb = torch.tensor(a), torch.tensor(b)
    np.testing.assert_allclose(boxes.iou_matrix(a, b), ops.box_iou(ta, tb).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        boxes.giou_matrix(a, b), ops.generalized_box_iou(ta, tb).numpy(), atol=1e-6
    )
    loss = ops.generalized_box_iou_loss(ta[:5], tb, reduction="none").numpy()
    np.testing.assert_allclose(boxes.giou_loss(y_true=b, y_pred=a[:5]), loss, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Losses and the box-IoU metric: (*, y_true, y_pred) -> [N]
# ------------------------------------------------------------------------------------------------


@jax.jit
def _losses_and_metric(t, p):
    return (
        boxes.iou_loss(y_true=t, y_pred=p),
        boxes.giou_loss(y_true=t, y_pred=p),
        boxes.box_iou(y_true=t, y_pred=p),
    )


@given(box_arrays(min_n=2), st.data())
def test_losses_match_oracle_and_are_per_example(t, data):
    p = data.draw(box_arrays(min_n=len(t), max_n=len(t)))
    ref_iou = np.diag(oracle_iou(t, p))
    ref_giou = np.diag(oracle_giou(t, p))
    il, gl, bi = map(np.asarray, _losses_and_metric(t, p))
    np.testing.assert_allclose(il, 1 - ref_iou, atol=1e-5)
    np.testing.assert_allclose(gl, 1 - ref_giou, atol=1e-5)
    np.testing.assert_allclose(bi, ref_iou, atol=1e-5)
    assert gl.shape == (len(t),) and np.all((gl >= -1e-6) & (gl < 2))


def test_losses_average_middle_axes():
    t = np.array([[[0.0, 0, 2, 2], [0, 0, 1, 1]]])
    p = np.array([[[1.0, 0, 3, 2], [0, 0, 1, 1]]])
    np.testing.assert_allclose(boxes.iou_loss(y_true=t, y_pred=p), [(2 / 3 + 0) / 2], atol=1e-6)


def test_giou_loss_gradient_when_boxes_do_not_overlap():
    t = jnp.array([[0.0, 0, 1, 1]])
    g_iou = jax.grad(lambda p: boxes.iou_loss(y_true=t, y_pred=p).sum())(
        jnp.array([[2.0, 0, 3, 1]])
    )
    g_giou = jax.grad(lambda p: boxes.giou_loss(y_true=t, y_pred=p).sum())(
        jnp.array([[2.0, 0, 3, 1]])
    )
    assert np.all(np.asarray(g_iou) == 0)  # IoU loss is flat without overlap
    assert float(g_giou[0, 0]) > 0  # GIoU pulls x1 towards the target
    assert np.all(np.isfinite(g_giou))


def test_giou_loss_gradient_matches_finite_differences():
    from jax.test_util import check_grads

    t = jnp.array([[0.0, 0, 2, 3], [1, 1, 4, 4]])
    p = jnp.array([[0.5, 0.2, 2.5, 2.0], [1.5, 0.5, 3.0, 5.0]])
    check_grads(
        lambda q: boxes.giou_loss(y_true=t, y_pred=q),
        (p,),
        order=1,
        modes=["rev"],
        atol=1e-2,
        rtol=1e-2,
    )


# ------------------------------------------------------------------------------------------------
# NMS
# ------------------------------------------------------------------------------------------------


def test_nms_hand_computed():
    b = jnp.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]], jnp.float32)
    s = jnp.array([0.9, 0.8, 0.7, 0.95])
    idx, n = boxes.nms(b, s, iou_threshold=0.5, max_output_size=4)
    # 3 (0.95) suppresses 0 (IoU 0.9) and 1 (IoU 0.81/0.9...), then 2 stays.
    assert idx.tolist() == [3, 2, -1, -1] and int(n) == 2
    idx, n = boxes.nms(b, s, iou_threshold=0.95, max_output_size=2)  # nothing suppressed, cut to 2
    assert idx.tolist() == [3, 0] and int(n) == 2


def test_nms_threshold_is_strict_like_torchvision():
    # Two identical boxes have IoU exactly 1: with iou_threshold=1 neither suppresses the other
    # (torchvision drops IoU > threshold, not >=).
    b = jnp.array([[0.0, 0, 2, 2], [0, 0, 2, 2], [1, 0, 3, 2]])
    assert float(boxes.iou(b[0], b[1])) == 1.0
    idx, _ = boxes.nms(b, jnp.array([1.0, 0.5, 0.2]), iou_threshold=1.0)
    assert idx.tolist() == [0, 1, 2]
    idx, _ = boxes.nms(b, jnp.array([1.0, 0.5, 0.2]), iou_threshold=0.3)  # IoU(0, 2) = 1/3
    assert idx.tolist() == [0, -1, -1]


# The threshold is traced: one program per box count serves every threshold.
_nms = jax.jit(lambda b, s, thr: boxes.nms(b, s, iou_threshold=thr))


@given(box_arrays(max_n=12), st.data(), st.sampled_from([0.0, 0.3, 0.5, 0.7]))
def test_nms_matches_greedy_oracle(b, data, thr):
    s = np.array(
        # no subnormal scores: XLA:CPU flushes them to 0, which makes ties the oracle does not see
        data.draw(
            st.lists(
                st.floats(0, 1, width=32, allow_subnormal=False), min_size=len(b), max_size=len(b)
            )
        ),
        np.float32,
    )
    idx, n = _nms(b, s, np.float32(thr))
    ref = oracle_nms(b, s, thr)
    assert idx.tolist()[: int(n)] == ref
    assert all(i == -1 for i in idx.tolist()[int(n) :])
    kept = b[np.array(ref)]
    off = oracle_iou(kept, kept) - np.eye(len(ref))
    assert np.all(off <= thr + 1e-6)  # no two kept boxes overlap beyond the threshold


def test_nms_per_class_score_threshold_jit_vmap():
    b = jnp.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], jnp.float32)
    s = jnp.array([0.9, 0.8, 0.1])
    idx, n = boxes.nms(b, s, classes=jnp.array([0, 1, 0]), score_threshold=0.05)
    assert idx.tolist() == [0, 1, -1] and int(n) == 2
    idx, n = boxes.nms(b, s, score_threshold=0.85)
    assert idx.tolist() == [0, -1, -1] and int(n) == 1
    f = jax.jit(lambda b, s: boxes.nms(b, s, iou_threshold=0.5, max_output_size=2))
    bb = jnp.stack([b, b + jnp.array([0, 0, 0, 1.0]) * jnp.arange(3.0)[:, None] * 20])
    ss = jnp.stack([s, s])
    out_v = jax.vmap(f)(bb, ss)
    for i in range(2):
        one = boxes.nms(bb[i], ss[i], iou_threshold=0.5, max_output_size=2)
        assert out_v[0][i].tolist() == one[0].tolist()
    f(b, s * 0.5)
    assert f._cache_size() == 1


@pytest.mark.crosscheck
def test_nms_matches_torchvision_when_its_ops_load():
    ops = torchvision_ops()
    import torch

    rng = np.random.default_rng(3)
    b = rng.uniform(0, 30, (40, 4)).astype(np.float32)
    b[:, 2:] += b[:, :2] + 5
    s = rng.uniform(0, 1, 40).astype(np.float32)
    try:
        ref = ops.nms(torch.tensor(b), torch.tensor(s), 0.4).numpy().tolist()
    except RuntimeError as e:  # the CPU wheel's C++ ops do not load against every torch build
        pytest.skip(f"torchvision.ops.nms unavailable: {e}")
    idx, n = boxes.nms(b, s, iou_threshold=0.4)
    assert idx.tolist()[: int(n)] == ref


# ------------------------------------------------------------------------------------------------
# Average precision (hand-computed cases)
# ------------------------------------------------------------------------------------------------


def test_average_precision_voc_and_coco_hand_computed():
    # 2 ground truths; detections TP, FP, TP: recall .5 .5 1, precision 1 .5 .667.
    r, p = [0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]
    # VOC all-point: 0.5·1 + 0.5·(2/3) (the envelope lifts 0.5 to 2/3).
    assert boxes.average_precision(r, p, interpolation="voc") == pytest.approx(0.5 + 1 / 3)
    # COCO: thresholds 0..0.5 (51 of them) read 1, 0.51..1 (50) read 2/3.
    assert boxes.average_precision(r, p, interpolation="coco") == pytest.approx(
        (51 * 1 + 50 * 2 / 3) / 101
    )
    # Recall that never reaches 1: COCO counts the unreached thresholds as 0.
    assert boxes.average_precision([0.5], [1.0], interpolation="coco") == pytest.approx(51 / 101)
    assert boxes.average_precision([0.5], [1.0], interpolation="voc") == pytest.approx(0.5)


def test_mean_average_precision_hand_computed():
    gt = [
        np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
        np.array([[0, 0, 5, 5]], np.float32),
    ]
    gl = [np.array([0, 1]), np.array([0])]
    pb = [
        np.array([[0, 0, 10, 10], [0, 0, 10, 10], [21, 21, 30, 30], [50, 50, 60, 60]], np.float32),
        np.array([[0, 0, 5, 5]], np.float32),
    ]
    ps = [np.array([0.9, 0.8, 0.7, 0.95]), np.array([0.6])]
    pl = [np.array([0, 0, 1, 1]), np.array([0])]
    out = boxes.mean_average_precision(
        true_boxes=gt, true_labels=gl, pred_boxes=pb, pred_scores=ps, pred_labels=pl, num_classes=3
    )
    # Class 0 (2 gts): 0.9 TP, 0.8 FP (duplicate), 0.6 TP -> recall .5 .5 1, precision 1 .5 2/3.
    # Class 1 (1 gt): 0.95 FP, 0.7 TP (IoU 0.81) -> recall 0 1, precision 0 .5: AP 0.5.
    # Class 2: no ground truth -> NaN, left out of the mean.
    np.testing.assert_allclose(out["ap"][:2], [0.5 + 1 / 3, 0.5])
    assert np.isnan(out["ap"][2])
    assert out["map"] == pytest.approx((0.5 + 1 / 3 + 0.5) / 2)


def test_mean_average_precision_padded_arrays_and_perfect_predictions():
    tb = np.array([[[0, 0, 4, 4], [0, 0, 0, 0]], [[2, 2, 8, 8], [10, 10, 12, 14]]], np.float32)
    tl = np.array([[1, -1], [0, 1]])
    out = boxes.mean_average_precision(
        true_boxes=tb,
        true_labels=tl,
        pred_boxes=tb,
        pred_scores=np.ones((2, 2)),
        pred_labels=tl,
        num_classes=2,
        interpolation="coco",
    )
    assert out["map"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"boxes\[1\] = .* has x2 < x1"):
        boxes.check_boxes([[0, 0, 1, 1], [5, 0, 4, 4]])
    with pytest.raises(ValueError, match=r"has y2 < y1"):
        boxes.check_boxes([[0, 5, 1, 1]])
    with pytest.raises(ValueError, match=r"outside the image.*\(H, W\) = \(8, 6\)"):
        boxes.check_boxes([[0, 0, 7, 4]], image_size=(8, 6))
    with pytest.raises(ValueError, match=r"last axis of 4"):
        boxes.iou(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"y_true .*\(2, 4\).*y_pred .*\(3, 4\)"):
        boxes.giou_loss(y_true=np.zeros((2, 4)), y_pred=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"Unknown box format 'xyhw'"):
        boxes.convert(np.zeros((1, 4)), in_fmt="xyhw", out_fmt="xyxy")
    with pytest.raises(ValueError, match=r"boxes \[N, 4\] and scores \[N\].*\(3, 4\).*\(2,\)"):
        boxes.nms(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
        boxes.nms(np.zeros((3, 4)), np.zeros(3), iou_threshold=1.5)
    with pytest.raises(ValueError, match=r"true_labels\[0\] has class id 3; expected -1"):
        boxes.mean_average_precision(
            true_boxes=[np.zeros((1, 4))],
            true_labels=[np.array([3])],
            pred_boxes=[np.zeros((0, 4))],
            pred_scores=[np.zeros(0)],
            pred_labels=[np.zeros(0, int)],
            num_classes=3,
        )
    with pytest.raises(ValueError, match=r"pred_boxes\[0\]\[0\] = .* has x2 < x1"):
        boxes.mean_average_precision(
            true_boxes=[np.zeros((1, 4))],
            true_labels=[np.array([0])],
            pred_boxes=[np.array([[3.0, 0, 1, 1]])],
            pred_scores=[np.ones(1)],
            pred_labels=[np.zeros(1, int)],
            num_classes=1,
        )
    with pytest.raises(ValueError, match="Unknown interpolation"):
        boxes.average_precision([1.0], [1.0], interpolation="11point")
