"""Metrics accumulated over the epoch (issue 17 "Metrics users expect", issue 15's segmentation
metrics): precision, recall, F-scores, AUC, confusion matrix, IoU, Dice, and the per-example
accuracies' label checks.

Tiers: (1) oracles: float64 NumPy transcriptions written here, and scikit-learn's exact metrics;
(2) cross-checks against Keras 3's ``keras.metrics`` (``crosscheck`` marker, skipped without
Keras); (3) hypothesis invariants: merge is associative and commutative with ``empty()`` neutral,
batching never changes the epoch value, bounds, jit and data-parallel (psum) agree. Bad inputs:
every metric names itself, the expected and the actual shapes when labels are of the wrong kind.
"""

import os

import jax
import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given
from hypothesis import strategies as st

import fnn
from fnn import metrics as M

# ---- helpers -------------------------------------------------------------------------------------


def _binary_data(seed, n=64):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.4).astype(np.int32)
    # Informative but noisy scores in (0, 1), well spread.
    p = np.clip(0.35 * y + rng.uniform(size=n) * 0.65, 0.0, 1.0).astype(np.float32)
    w = rng.integers(0, 4, size=n).astype(np.float32)
    return y, p, w


def _multiclass_data(seed, n=60, k=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return y, p.astype(np.float32), rng.integers(0, 3, size=n).astype(np.float32)


def _maps(seed, n=6, h=5, w=7, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=(n, h, w))
    logits = rng.normal(size=(n, h, w, k)) + 1.2 * np.eye(k)[y]
    return y, logits.astype(np.float32)


def _epoch(metric, y, p, w=None, cuts=()):
    """The metric over batches cut at ``cuts``, merged one after another from ``empty()``."""
    state = metric.empty()
    edges = [0, *cuts, len(y)]
    for a, b in zip(edges[:-1], edges[1:]):
        sw = None if w is None else w[a:b]
        state = state.merge(metric.from_batch(y[a:b], p[a:b], sw))
    return state


# ---- (1) oracles ---------------------------------------------------------------------------------


def _np_counts(y, p, w, thresholds):
    y, p, w = (np.asarray(a, np.float64).reshape(-1) for a in (y, p, w))
    out = []
    for t in thresholds:
        pos = p > t
        out.append(
            (
                np.sum(w * pos * y),
                np.sum(w * pos * (1 - y)),
                np.sum(w * ~pos * (1 - y)),
                np.sum(w * ~pos * y),
            )
        )
    return np.asarray(out).T  # tp, fp, tn, fn: [T] each


@pytest.mark.parametrize("seed", [0, 1])
def test_precision_recall_match_numpy_and_sklearn(seed):
    y, p, w = _binary_data(seed)
    thresholds = [0.2, 0.5, 0.7]
    tp, fp, tn, fn = _np_counts(y, p, w, thresholds)
    prec = M.Precision(thresholds=thresholds).from_batch(y, p, w)
    rec = M.Recall(thresholds=thresholds).from_batch(y, p, w)
    np.testing.assert_allclose(prec.compute(), tp / (tp + fp), rtol=1e-6)
    np.testing.assert_allclose(rec.compute(), tp / (tp + fn), rtol=1e-6)
    for i, name in enumerate(M.TruePositives._arrays):
        np.testing.assert_allclose(getattr(prec, name), [tp, fp, tn, fn][i], rtol=1e-6)
    for t in thresholds:
        hard = (p > t).astype(int)
        np.testing.assert_allclose(
            M.Precision(thresholds=t).from_batch(y, p, w).compute(),
            skm.precision_score(y, hard, sample_weight=w),
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            M.Recall(thresholds=t).from_batch(y, p, w).compute(),
            skm.recall_score(y, hard, sample_weight=w),
            rtol=1e-6,
        )
    counts = [M.TruePositives(), M.FalsePositives(), M.TrueNegatives(), M.FalseNegatives()]
    want = _np_counts(y, p, w, [0.5])[:, 0]
    got = [float(m.from_batch(y, p, w).compute()) for m in counts]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_precision_top_k_and_class_id_follow_keras_rules():
    y, p, _ = _multiclass_data(3, n=30, k=5)
    onehot = np.eye(5)[y]
    # top_k=2 without thresholds: each row's two largest scores are its positive predictions.
    top2 = np.argsort(-p, axis=-1)[:, :2]
    pred = np.zeros_like(onehot)
    np.put_along_axis(pred, top2, 1.0, axis=-1)
    np.testing.assert_allclose(
        M.Precision(top_k=2).from_batch(onehot, p).compute(),
        np.sum(pred * onehot) / np.sum(pred),
        rtol=1e-6,
    )
    # Sparse labels are one-hot encoded first: the same value.
    np.testing.assert_allclose(
        M.Recall(top_k=2).from_batch(y, p).compute(), np.sum(pred * onehot) / len(y), rtol=1e-6
    )
    # class_id=3 scores column 3 alone at threshold 0.5.
    col = p[:, 3] > 0.5
    np.testing.assert_allclose(
        M.Precision(class_id=3).from_batch(onehot, p).compute(),
        skm.precision_score(y == 3, col),
        rtol=1e-6,
    )


def _np_auc(y, p, w, curve, num_thresholds=200, method="interpolation"):
    """Keras' thresholded AUC, transcribed in float64 with explicit comparisons ŷ > t."""
    t = num_thresholds
    thresholds = [-1e-7] + [(i + 1) / (t - 1) for i in range(t - 2)] + [1 + 1e-7]
    tp, fp, tn, fn = _np_counts(y, np.clip(p, 0, 1), w, thresholds)

    def div(a, b):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1, b))

    if curve == "PR" and method == "interpolation":
        dtp = tp[:-1] - tp[1:]
        pp = tp + fp
        slope = div(dtp, np.maximum(pp[:-1] - pp[1:], 0))
        intercept = tp[1:] - slope * pp[1:]
        ratio = np.where((pp[:-1] > 0) & (pp[1:] > 0), div(pp[:-1], np.maximum(pp[1:], 0)), 1.0)
        return np.sum(div(slope * (dtp + intercept * np.log(ratio)), tp[1:] + fn[1:]))
    recall = div(tp, tp + fn)
    x, yy = (div(fp, fp + tn), recall) if curve == "ROC" else (recall, div(tp, tp + fp))
    heights = {
        "interpolation": (yy[:-1] + yy[1:]) / 2,
        "minoring": np.minimum(yy[:-1], yy[1:]),
        "majoring": np.maximum(yy[:-1], yy[1:]),
    }[method]
    return np.sum((x[:-1] - x[1:]) * heights)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("curve", ["ROC", "PR"])
@pytest.mark.parametrize("method", ["interpolation", "minoring", "majoring"])
def test_auc_matches_numpy_transcription_of_keras(seed, curve, method):
    y, p, w = _binary_data(seed, n=200)
    got = M.AUC(curve=curve, summation_method=method).from_batch(y, p, w).compute()
    np.testing.assert_allclose(float(got), _np_auc(y, p, w, curve, method=method), atol=2e-6)


@pytest.mark.parametrize("curve", ["ROC", "PR"])
def test_auc_scores_on_the_threshold_grid_count_as_keras_does(curve):
    # ŷ = t is not above t: scores exactly on the grid (0, 1, saturated sigmoids) are the
    # bucketing's edge cases.
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, size=40)
    p = rng.choice(np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32), size=40)
    w = np.ones(40)
    got = M.AUC(num_thresholds=5, curve=curve).from_batch(y, p).compute()
    np.testing.assert_allclose(float(got), _np_auc(y, p, w, curve, num_thresholds=5), atol=1e-6)


def test_auc_is_close_to_sklearns_exact_auc_for_spread_scores():
    y, p, w = _binary_data(5, n=2000)
    roc = float(M.AUC().from_batch(y, p, w).compute())
    assert abs(roc - skm.roc_auc_score(y, p, sample_weight=w)) < 5e-4
    pr = float(M.AUC(curve="PR").from_batch(y, p, w).compute())
    # Davis & Goadrich interpolation vs sklearn's step-wise average precision: close, not equal.
    assert abs(pr - skm.average_precision_score(y, p, sample_weight=w)) < 1e-3
    # Explicit thresholds give the explicit-threshold curve (plus -ε and 1+ε).
    inner = np.linspace(0.1, 0.9, 9)
    m = M.AUC(thresholds=inner)
    assert m.num_thresholds == 11
    np.testing.assert_allclose(m.all_thresholds()[1:-1], inner, rtol=1e-6)


def test_auc_collapses_scores_between_two_thresholds():
    # All scores inside one bucket: Keras' approximation sees one point, sklearn ranks them.
    y = np.array([0, 1, 0, 1])
    p = np.array([0.5001, 0.5002, 0.5003, 0.5004], np.float32)
    assert skm.roc_auc_score(y, p) == 0.75
    assert float(M.AUC().from_batch(y, p).compute()) == 0.5
    # from_logits applies the sigmoid.
    logits = np.array([-2.0, 1.0, -0.5, 3.0], np.float32)
    np.testing.assert_allclose(
        M.AUC(from_logits=True).from_batch(y, logits).compute(),
        M.AUC().from_batch(y, 1 / (1 + np.exp(-logits))).compute(),
        atol=1e-7,
    )


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
def test_f1_matches_sklearn(average):
    y, p, w = _multiclass_data(1)
    pred = p.argmax(-1)
    want = skm.f1_score(y, pred, average=average, sample_weight=w, labels=range(4))
    got = M.F1Score(average=average).from_batch(np.eye(4)[y], p, w).compute()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Class ids give the same counts as one-hot labels.
    np.testing.assert_allclose(M.F1Score(average=average).from_batch(y, p, w).compute(), got)
    fb = M.FBetaScore(average=average, beta=2.0).from_batch(y, p, w).compute()
    np.testing.assert_allclose(
        fb, skm.fbeta_score(y, pred, beta=2.0, average=average, sample_weight=w), rtol=1e-5
    )


def test_f1_with_threshold_is_binary_f1():
    y, p, _ = _binary_data(4)
    got = M.F1Score(threshold=0.5).from_batch(y[:, None], p[:, None]).compute()
    np.testing.assert_allclose(got, [skm.f1_score(y, p > 0.5)], rtol=1e-5)


def test_confusion_matrix_matches_sklearn():
    y, p, w = _multiclass_data(2)
    cm = M.ConfusionMatrix().from_batch(y, p, w).compute()
    np.testing.assert_allclose(
        cm, skm.confusion_matrix(y, p.argmax(-1), sample_weight=w, labels=range(4))
    )
    # Class ids as predictions need num_classes; out-of-range and ignored ids are dropped.
    ids = np.array([0, 1, 2, 2, 3])
    pred = np.array([0, 2, 2, 5, 1])
    cm = M.ConfusionMatrix(num_classes=3, ignore_class=1).from_batch(ids, pred).compute()
    np.testing.assert_allclose(cm, [[1, 0, 0], [0, 0, 0], [0, 0, 1]])


def test_mean_iou_per_class_iou_and_dice_match_sklearn_on_maps():
    y, logits = _maps(0)
    pred = logits.argmax(-1)
    iou = M.MeanIoU()
    state = iou.from_batch(y, logits)
    flat_y, flat_p = y.reshape(-1), pred.reshape(-1)
    np.testing.assert_allclose(
        state.per_class(), skm.jaccard_score(flat_y, flat_p, average=None), rtol=1e-6
    )
    np.testing.assert_allclose(
        state.compute(), skm.jaccard_score(flat_y, flat_p, average="macro"), rtol=1e-6
    )
    np.testing.assert_allclose(
        M.IoU(target_class_ids=[2]).from_batch(y, logits).compute(),
        skm.jaccard_score(flat_y == 2, flat_p == 2),
        rtol=1e-6,
    )
    dice = M.Dice().from_batch(y, logits)
    np.testing.assert_allclose(
        dice.per_class(), skm.f1_score(flat_y, flat_p, average=None), rtol=1e-6
    )
    np.testing.assert_allclose(
        dice.compute(), skm.f1_score(flat_y, flat_p, average="macro"), rtol=1e-5
    )
    # One-hot labels, and labels with a trailing 1, give the same matrix.
    for labels in (np.eye(3)[y], y[..., None]):
        np.testing.assert_array_equal(
            M.ConfusionMatrix().from_batch(labels, logits).compute(), state.matrix
        )


def test_binary_masks_are_thresholded_and_absent_classes_are_left_out():
    y = np.array([[[1], [0]], [[1], [1]]])  # [N, H, W=1]... as [2, 2, 1] maps with one unit
    prob = np.array([[[0.9], [0.6]], [[0.2], [0.7]]], np.float32)
    cm = M.ConfusionMatrix().from_batch(y, prob).compute()
    np.testing.assert_allclose(cm, [[0, 1], [1, 2]])
    fg = M.Dice(target_class_ids=[1]).from_batch(y, prob).compute()
    np.testing.assert_allclose(fg, 2 * 2 / (2 * 2 + 1 + 1), rtol=1e-6)
    # A class absent from labels and predictions is not averaged in (Keras' rule).
    s = M.MeanIoU(num_classes=3).from_batch(np.array([0, 1]), np.array([0, 1]))
    assert float(s.compute()) == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(np.asarray(s.per_class())[2])


def test_segmentation_pixel_accuracy_is_per_example_mean():
    y, logits = _maps(1)
    per_example = M.sparse_categorical_accuracy(y_true=y, y_pred=logits)
    want = (logits.argmax(-1) == y).reshape(len(y), -1).mean(-1)
    np.testing.assert_allclose(per_example, want, rtol=1e-6)


# ---- epoch semantics: sums divided once ----------------------------------------------------------


def test_epoch_value_is_not_the_mean_of_batch_values():
    # Batch 1: 1 positive prediction, right. Batch 2: 3 positive predictions, 1 right.
    y = np.array([1, 0, 1, 0, 0], np.int32)
    p = np.array([0.9, 0.1, 0.8, 0.7, 0.6], np.float32)
    m = M.Precision()
    b1, b2 = m.from_batch(y[:2], p[:2]), m.from_batch(y[2:], p[2:])
    epoch = float(b1.merge(b2).compute())
    assert epoch == pytest.approx(2 / 4)  # Σ TP / Σ (TP + FP)
    mean_of_ratios = (float(b1.compute()) + float(b2.compute())) / 2
    assert mean_of_ratios == pytest.approx((1 + 1 / 3) / 2)
    assert abs(epoch - mean_of_ratios) > 0.1
    # The same for IoU on maps: a batch where a class is tiny weighs as much as any other.
    y, logits = _maps(2, n=8)
    iou = M.MeanIoU()
    per_batch = [float(iou.from_batch(y[i : i + 1], logits[i : i + 1]).compute()) for i in range(8)]
    whole = float(_epoch(iou, y, logits, cuts=range(1, 8)).compute())
    assert whole == pytest.approx(float(iou.from_batch(y, logits).compute()), abs=1e-6)
    assert abs(whole - np.mean(per_batch)) > 1e-3


_ALL = [
    M.Precision(thresholds=[0.3, 0.6]),
    M.Recall(),
    M.AUC(),
    M.AUC(curve="PR"),
    M.F1Score(average="macro"),
    M.FBetaScore(beta=0.5, average="weighted", num_classes=2),
    M.ConfusionMatrix(num_classes=2),
    M.MeanIoU(num_classes=2),
    M.Dice(num_classes=2),
    M.MeanMetric(M.binary_accuracy),
]


def _two_class(y, p):
    """Labels [N] and a [N, 2] score table, the inputs every metric in _ALL accepts."""
    return y, np.stack([1 - p, p], axis=-1)


@st.composite
def _binary_batches(draw):
    # A few fixed sizes and cut points (one-element batches at either end, halves), so the
    # metrics' programs compile for a handful of batch shapes; labels, scores, weights are free.
    n = draw(st.sampled_from([2, 8, 24]))
    y = np.asarray(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int32)
    p = np.asarray(draw(st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n)), np.float32)
    w = np.asarray(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.float32)
    cuts = sorted(draw(st.lists(st.sampled_from(sorted({1, n // 2, n - 1})), unique=True)))
    return y, p, w, cuts


def _inputs(metric, y, p):
    if isinstance(metric, M.MeanMetric | M._Thresholded | M.AUC):
        return y, p
    return _two_class(y, p)


@given(_binary_batches(), st.integers(0, len(_ALL) - 1))
def test_batching_never_changes_the_epoch_value(data, which):
    y, p, w, cuts = data
    metric = _ALL[which]
    yy, pp = _inputs(metric, y, p)
    whole = metric.from_batch(yy, pp, w)
    split = _epoch(metric, yy, pp, w, cuts)
    # Integer weights: the counts are exact sums, so merging is exact too.
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(whole.compute(), split.compute(), rtol=1e-5, atol=1e-6)


@given(_binary_batches(), st.integers(0, len(_ALL) - 1))
def test_merge_is_associative_commutative_with_empty_neutral(data, which):
    y, p, w, cuts = data
    metric = _ALL[which]
    yy, pp = _inputs(metric, y, p)
    edges = [0, *cuts, len(y)] + [len(y)] * 3
    a, b, c = (metric.from_batch(yy[i:j], pp[i:j], w[i:j]) for i, j in zip(edges, edges[1:4]))
    e = metric.empty()

    def same(u, v):
        assert jax.tree.structure(u) == jax.tree.structure(v)
        for x, z in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_array_equal(x, z)

    same(a.merge(b).merge(c), a.merge(b.merge(c)))
    same(a.merge(b), b.merge(a))
    same(e.merge(a), a)


@given(_binary_batches(), st.integers(0, len(_ALL) - 1))
def test_ratios_are_bounded(data, which):
    y, p, w, _ = data
    metric = _ALL[which]
    if isinstance(metric, M.ConfusionMatrix) and type(metric) is M.ConfusionMatrix:
        value = metric.from_batch(*_inputs(metric, y, p), w).compute()
        np.testing.assert_allclose(np.sum(value), np.sum(w), rtol=1e-6)
        return
    value = np.asarray(metric.from_batch(*_inputs(metric, y, p), w).compute())
    if isinstance(metric, M.MeanMetric) and np.sum(w) == 0:
        assert np.isnan(value)  # 0/0: nothing counted
        return
    assert np.all((value >= 0) & (value <= 1 + 1e-6)), value


def test_jit_scan_and_psum_agree_with_eager():
    y, p, w = _binary_data(7, n=64)
    for metric in _ALL:
        a, b = _inputs(metric, y, p)
        eager = metric.from_batch(a, b, w)

        # A compiled epoch: lax.scan over 8 batches with the state as the carry.
        def epoch(a, b, w, m=metric):
            def body(state, batch):
                return state.merge(m.from_batch(*batch)), None

            split = [x.reshape(8, -1, *x.shape[1:]) for x in (a, b, w)]
            carry = m.empty_for(*(x[0] for x in split))  # fixed shapes, even when inferred
            return jax.lax.scan(body, carry, tuple(split))[0]

        # One compiled program: the whole batch's state, and the scanned epoch.
        jitted, scanned = jax.jit(
            lambda a, b, w, m=metric: (m.from_batch(a, b, w), epoch(a, b, w))
        )(a, b, w)
        for x, z in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
            np.testing.assert_allclose(x, z, rtol=1e-6)
        np.testing.assert_allclose(scanned.compute(), eager.compute(), rtol=1e-5, atol=1e-6)

        # Data parallel: each of 8 devices counts its shard, psum merges the states.
        mesh = jax.make_mesh((8,), ("data",))
        spec = jax.sharding.PartitionSpec("data")
        shard = jax.sharding.NamedSharding(mesh, spec)

        def local(a, b, w, m=metric):
            return jax.tree.map(_psum_over_data, m.from_batch(a, b, w))

        sharded = jax.jit(
            jax.shard_map(
                local,
                mesh=mesh,
                in_specs=(spec, spec, spec),
                out_specs=jax.sharding.PartitionSpec(),
            )
        )(*(jax.device_put(x, shard) for x in (a, b, w)))
        np.testing.assert_allclose(sharded.compute(), eager.compute(), rtol=1e-5, atol=1e-6)


def _psum_over_data(x):
    return jax.lax.psum(x, "data")


def test_empty_for_gives_the_shapes_a_batch_gives():
    # num_classes unknown: empty() is scalar zeros (still neutral for merge); a compiled loop's
    # carry needs the shapes, which empty_for reads from the batch's abstract state.
    y, logits = _maps(3)
    m = M.MeanIoU()
    assert m.empty().matrix.shape == ()
    carry = m.empty_for(y, logits)
    assert carry.matrix.shape == (3, 3) and not np.any(carry.matrix)
    batch = m.from_batch(y, logits)
    np.testing.assert_array_equal(m.empty().merge(batch).matrix, carry.merge(batch).matrix)
    assert M.F1Score(average="micro").empty_for(y, logits).true_positives.shape == ()


# ---- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, cls",
    [
        ("precision", M.Precision),
        ("recall", M.Recall),
        ("auc", M.AUC),
        ("AUC", M.AUC),
        ("f1_score", M.F1Score),
        ("fbeta_score", M.FBetaScore),
        ("mean_io_u", M.MeanIoU),
        ("iou", M.MeanIoU),
        ("io_u", M.IoU),
        ("dice", M.Dice),
        ("confusion_matrix", M.ConfusionMatrix),
        ("true_positives", M.TruePositives),
        ("false_negatives", M.FalseNegatives),
    ],
)
def test_keras_names_give_fresh_default_instances(name, cls):
    m = M.get(name)
    assert type(m) is cls and m is not M.get(name)
    assert M.name_of(m) == m.name
    assert M.resolve(name, (4,), (4, 3)).name == m.name


def test_options_objects_names_and_resolution():
    pr = M.AUC(curve="pr", name="pr_auc")
    assert M.get(pr) is pr and M.name_of(pr) == "pr_auc" and pr.curve == "PR"
    assert M.name_of(M.get("f1_score")) == "f1_score"
    assert M.resolve("accuracy", (8, 1), (8, 1)).fn is M.binary_accuracy
    assert M.resolve("mse", (8,), (8,)).name == "mse"
    with pytest.raises(ValueError, match=r"Unknown metric 'precison'. Did you mean 'precision'"):
        M.get("precison")
    with pytest.raises(TypeError, match=r"auc is an epoch metric .* m\.from_batch"):
        M.AUC()(y_true=np.zeros(2), y_pred=np.zeros(2))
    with pytest.raises(AttributeError, match="immutable"):
        M.AUC().curve = "PR"


# ---- bad inputs ----------------------------------------------------------------------------------


_P3 = np.full((4, 3), 1 / 3, np.float32)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: M.sparse_categorical_accuracy(
                y_true=np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], y_pred=_P3
            ),
            r"sparse_categorical_accuracy: expected integer class ids .* got y_true shape "
            r"\(4, 3\) float32 and y_pred shape \(4, 3\) float32\. One-hot labels\? Use "
            r"'categorical_accuracy'",
        ),
        (
            lambda: M.categorical_accuracy(y_true=np.array([0, 1, 2, 0]), y_pred=_P3),
            r"categorical_accuracy: expected one-hot labels .* got y_true shape \(4,\) int32 .*"
            r"Use 'sparse_categorical_accuracy'",
        ),
        (
            lambda: M.sparse_top_k_categorical_accuracy(y_true=np.eye(3), y_pred=_P3[:3], k=2),
            r"sparse_top_k_categorical_accuracy: .* got y_true shape \(3, 3\).*"
            r"'top_k_categorical_accuracy'",
        ),
        (
            lambda: M.top_k_categorical_accuracy(y_true=np.array([0, 1, 2, 0]), y_pred=_P3),
            r"top_k_categorical_accuracy: expected one-hot .* y_true shape \(4,\)",
        ),
        (
            lambda: M.sparse_top_k_categorical_accuracy(y_true=np.array([0]), y_pred=_P3[:1], k=0),
            r"k must be a positive int, got 0",
        ),
        (
            lambda: M.binary_accuracy(y_true=np.array([0, 1, 2, 0]), y_pred=_P3),
            r"binary_accuracy: expected y_true and y_pred of the same shape .* y_true shape "
            r"\(4,\) int32 and y_pred shape \(4, 3\).*sparse metric",
        ),
        (
            lambda: M.mean_squared_error(y_true=np.zeros(5), y_pred=np.zeros((4, 1))),
            r"mean_squared_error: expected y_true with y_pred's shape .* \(5,\)",
        ),
        (
            lambda: M.Precision().from_batch(np.zeros((4, 2)), _P3),
            r"precision: expected y_true and y_pred of the same shape .* \(4, 2\)",
        ),
        (
            lambda: M.AUC().from_batch(np.zeros(4), np.zeros(4, np.int32)),
            r"auc: expected float scores .* y_pred shape \(4,\) int32",
        ),
        (
            lambda: M.Recall(class_id=5).from_batch(np.array([0, 1, 2, 0]), _P3),
            r"recall: expected scores \(N, K\) with class_id 5 < K",
        ),
        (
            lambda: M.F1Score().from_batch(np.zeros((4, 2)), _P3),
            r"f1_score: expected one-hot labels with y_pred's shape .* \(4, 2\)",
        ),
        (
            lambda: M.F1Score(num_classes=4).from_batch(np.array([0, 1, 2, 0]), _P3),
            r"f1_score: expected y_pred with 4 classes",
        ),
        (
            lambda: M.MeanIoU().from_batch(np.zeros((2, 3)), np.zeros((2, 3), np.int32)),
            r"mean_io_u: expected num_classes=\.\.\. when y_pred holds class ids",
        ),
        (
            lambda: M.MeanIoU(num_classes=4).from_batch(
                np.zeros((2, 5, 5)), np.zeros((2, 5, 5, 3))
            ),
            r"mean_io_u: expected outputs for num_classes=4 classes \(got 3\)",
        ),
        (
            lambda: M.Dice().from_batch(np.zeros((2, 4, 4)), np.zeros((2, 5, 5, 3))),
            r"dice: expected class ids y_true .* got y_true shape \(2, 4, 4\) float32 and y_pred "
            r"shape \(2, 5, 5, 3\) float32",
        ),
        (
            lambda: M.Precision().from_batch(np.zeros(4), np.zeros(4), np.ones(3)),
            r"precision: sample_weight must be \[N\] .* \(4,\), got shape \(3,\)",
        ),
        (
            lambda: M.MeanMetric(M.binary_accuracy).from_batch(
                np.zeros(4), np.zeros(4), np.ones((4, 1))
            ),
            r"binary_accuracy: sample_weight must have shape \(4,\), got \(4, 1\)",
        ),
        (lambda: M.AUC(curve="PRC"), r"auc: curve must be 'ROC' or 'PR', got 'PRC'"),
        (lambda: M.AUC(num_thresholds=1), r"num_thresholds must be > 1, got 1"),
        (lambda: M.Precision(thresholds=[0.5, 1.5]), r"thresholds must lie in \[0, 1\]"),
        (lambda: M.F1Score(average="samples"), r"average must be None, 'micro', 'macro'"),
        (lambda: M.MeanIoU(num_classes=0), r"num_classes must be a positive int, got 0"),
        (
            lambda: M.IoU(num_classes=3, target_class_ids=[3]),
            r"target_class_ids must be class ids in \[0, 3\)",
        ),
        (
            lambda: M.AUC().merge(M.AUC(curve="PR")),
            r"auc: cannot merge AUC\(.*curve='PR'.*\) into AUC\(.*curve='ROC'",
        ),
    ],
)
def test_wrong_labels_and_options_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- (2) Keras cross-checks ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _keras_epoch(km, batches):
    for y, p, w in batches:
        km.update_state(y, p, sample_weight=w)
    return np.asarray(km.result())


def _fnn_epoch(m, batches):
    state = m.empty()
    for y, p, w in batches:
        state = state.merge(m.from_batch(y, p, w))
    return np.asarray(state.compute())


def _batches(y, p, w, cuts=(17, 40)):
    edges = [0, *cuts, len(y)]
    return [(y[a:b], p[a:b], w[a:b]) for a, b in zip(edges[:-1], edges[1:])]


@pytest.mark.crosscheck
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: M.Precision(), lambda k: k.metrics.Precision()),
        (lambda: M.Recall(thresholds=[0.1, 0.5, 0.9]), lambda k: k.metrics.Recall([0.1, 0.5, 0.9])),
        (lambda: M.TrueNegatives(), lambda k: k.metrics.TrueNegatives()),
        (lambda: M.AUC(), lambda k: k.metrics.AUC()),
        (lambda: M.AUC(curve="PR"), lambda k: k.metrics.AUC(curve="PR")),
        (
            lambda: M.AUC(num_thresholds=50, summation_method="minoring"),
            lambda k: k.metrics.AUC(num_thresholds=50, summation_method="minoring"),
        ),
        (
            lambda: M.AUC(curve="PR", summation_method="majoring"),
            lambda k: k.metrics.AUC(curve="PR", summation_method="majoring"),
        ),
        (
            lambda: M.AUC(thresholds=[0.2, 0.4, 0.6]),
            lambda k: k.metrics.AUC(thresholds=[0.2, 0.4, 0.6]),
        ),
    ],
)
def test_binary_metrics_match_keras(keras, ours, theirs):
    y, p, w = _binary_data(11, n=90)
    batches = _batches(y.astype(np.float32), p, w)
    np.testing.assert_allclose(
        _fnn_epoch(ours(), batches), _keras_epoch(theirs(keras), batches), rtol=1e-5, atol=1e-6
    )


@pytest.mark.crosscheck
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: M.Precision(top_k=2), lambda k: k.metrics.Precision(top_k=2)),
        (lambda: M.Recall(class_id=1), lambda k: k.metrics.Recall(class_id=1)),
        (lambda: M.F1Score(), lambda k: k.metrics.F1Score()),
        (lambda: M.F1Score(average="micro"), lambda k: k.metrics.F1Score(average="micro")),
        (lambda: M.F1Score(average="macro"), lambda k: k.metrics.F1Score(average="macro")),
        (
            lambda: M.FBetaScore(average="weighted", beta=2.0, threshold=0.3),
            lambda k: k.metrics.FBetaScore(average="weighted", beta=2.0, threshold=0.3),
        ),
        (lambda: M.AUC(), lambda k: k.metrics.AUC()),
    ],
)
def test_multiclass_metrics_match_keras(keras, ours, theirs):
    y, p, w = _multiclass_data(12, n=90)
    batches = _batches(np.eye(4, dtype=np.float32)[y], p, w)
    np.testing.assert_allclose(
        _fnn_epoch(ours(), batches), _keras_epoch(theirs(keras), batches), rtol=1e-5, atol=1e-6
    )


@pytest.mark.crosscheck
@pytest.mark.filterwarnings("ignore:You are passing weight as `float`:UserWarning")
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64:UserWarning")
def test_iou_metrics_match_keras(keras):
    y, logits = _maps(13, n=9)
    w = np.arange(9, dtype=np.float32) % 3
    pred = logits.argmax(-1)
    cases = [
        (M.MeanIoU(num_classes=3), keras.metrics.MeanIoU(3), (y, pred)),
        (M.MeanIoU(), keras.metrics.MeanIoU(3, sparse_y_pred=False), (y, logits)),
        (
            M.IoU(target_class_ids=[0, 2]),
            keras.metrics.IoU(3, target_class_ids=[0, 2], sparse_y_pred=False),
            (y, logits),
        ),
        (
            M.MeanIoU(ignore_class=1),
            keras.metrics.MeanIoU(3, ignore_class=1, sparse_y_pred=False),
            (y, logits),
        ),
        (M.MeanIoU(), keras.metrics.OneHotMeanIoU(3), (np.eye(3)[y], logits)),
    ]
    for ours, theirs, (labels, outputs) in cases:
        # Keras' IoU takes per-entry weights: broadcast the per-image weight over the pixels.
        wk = np.broadcast_to(w[:, None, None], y.shape)
        ks = [(labels[a:b], outputs[a:b], wk[a:b]) for a, b in ((0, 4), (4, 9))]
        fs = [(labels[a:b], outputs[a:b], w[a:b]) for a, b in ((0, 4), (4, 9))]
        np.testing.assert_allclose(_fnn_epoch(ours, fs), _keras_epoch(theirs, ks), rtol=1e-5)
    prob = 1 / (1 + np.exp(-logits[..., :1]))
    bin_y = (y > 0).astype(np.int32)
    np.testing.assert_allclose(
        _fnn_epoch(M.IoU(target_class_ids=[0, 1], threshold=0.4), [(bin_y, prob, None)]),
        _keras_epoch(
            keras.metrics.BinaryIoU(target_class_ids=[0, 1], threshold=0.4),
            [(bin_y[..., None], prob, None)],
        ),
        rtol=1e-5,
    )


@pytest.mark.crosscheck
def test_accuracies_match_keras_including_maps(keras):
    y, logits = _maps(14)
    for ours, theirs, labels in [
        (M.sparse_categorical_accuracy, keras.metrics.SparseCategoricalAccuracy(), y),
        (M.categorical_accuracy, keras.metrics.CategoricalAccuracy(), np.eye(3)[y]),
    ]:
        theirs.update_state(labels, logits)
        mine = M.MeanMetric(ours).from_batch(labels, logits).compute()
        np.testing.assert_allclose(mine, theirs.result(), rtol=1e-6)
    ids, scores, _ = _multiclass_data(15, n=40, k=6)
    for k in (1, 3, 6):
        theirs = keras.metrics.SparseTopKCategoricalAccuracy(k=k)
        theirs.update_state(ids, scores)
        mine = M.sparse_top_k_categorical_accuracy(y_true=ids, y_pred=scores, k=k)
        np.testing.assert_allclose(np.mean(mine), theirs.result(), rtol=1e-6)


# ---- compile / fit / evaluate --------------------------------------------------------------------


def _tiny_trainer(metrics, devices):
    from flax import nnx

    from fnn.models import SimpleCNN
    from fnn.train import compile as fnn_compile

    model = SimpleCNN(
        3,
        input_shape=(8, 8, 1),
        filters=(4,),
        dense=(8,),
        batch_norm=False,
        dropout=0.0,
        output_activation="softmax",
        rngs=nnx.Rngs(0),
    )
    return fnn_compile(
        model,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=metrics,
        devices=devices,
    )


def test_fit_and_evaluate_accumulate_epoch_metrics_over_padded_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 50).astype(np.int32)
    metrics = [
        "accuracy",
        "precision",
        M.AUC(curve="PR", name="pr_auc"),
        "mean_io_u",
        M.F1Score(average="macro"),
        "confusion_matrix",
    ]
    trainer = _tiny_trainer(metrics, devices=1)
    history = trainer.fit(x, y, batch_size=16, epochs=2, verbose=1)  # the bar prints arrays too
    assert isinstance(history.history["pr_auc"][-1], float)
    assert np.shape(history.history["confusion_matrix"][-1]) == (3, 3)
    # 50 rows in batches of 16: the last batch is padded, the padding has weight 0.
    logs = trainer.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    p = np.asarray(trainer.predict(x, batch_size=16, verbose=0), np.float64)
    pred, onehot = p.argmax(-1), np.eye(3)[y]
    np.testing.assert_allclose(logs["accuracy"], np.mean(pred == y), rtol=1e-6)
    flat_pos = (p > 0.5).reshape(-1)
    np.testing.assert_allclose(
        logs["precision"], skm.precision_score(onehot.reshape(-1), flat_pos), rtol=1e-5
    )
    np.testing.assert_allclose(
        logs["pr_auc"], _np_auc(onehot, p, np.ones_like(p), "PR"), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        logs["mean_io_u"], skm.jaccard_score(y, pred, average="macro"), rtol=1e-5
    )
    np.testing.assert_allclose(
        logs["f1_score"], skm.f1_score(y, pred, average="macro", labels=range(3)), rtol=1e-4
    )
    np.testing.assert_array_equal(
        logs["confusion_matrix"], skm.confusion_matrix(y, pred, labels=range(3))
    )
    # Data parallel over 8 devices (the batch split, the counts summed): the same values.
    parallel = _tiny_trainer(metrics, devices=8)
    parallel.state = jax.device_put(trainer.state, fnn.parallel.replicated(parallel.mesh))
    logs8 = parallel.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    for name, value in logs.items():
        np.testing.assert_allclose(logs8[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_fit_names_the_metric_when_labels_are_the_wrong_kind():
    x = np.zeros((8, 8, 8, 1), np.float32)
    y = np.zeros(8, np.int32)
    trainer = _tiny_trainer(["categorical_accuracy"], devices=1)
    with pytest.raises(
        ValueError,
        match=r"categorical_accuracy: expected one-hot labels .* "
        r"y_true shape \(4,\) int32 and y_pred shape \(4, 3\) float32",
    ):
        trainer.fit(x, y, batch_size=4, epochs=1, verbose=0)
    trainer = _tiny_trainer([M.MeanIoU(num_classes=5)], devices=1)
    with pytest.raises(ValueError, match=r"mean_io_u: expected outputs for num_classes=5"):
        trainer.evaluate(x, y, batch_size=4, verbose=0)
