"""Spec tests for the lecture's loss functions (slides: "Loss functions": multiclass SVM,
cross-entropy, L2/MSE, L1/MAE, and the ``tf.keras.losses`` list; "Last-layer activation & loss").

Each loss is proven three ways: (1) a float64 NumPy oracle transcribed from the slide's / Keras 3's
formula; (2) a cross-check against `optax.losses`, with each known convention difference an
explicit test (``l2_loss``'s ½, ``cosine_similarity``'s sign, Crammer–Singer vs the slide's
Weston–Watkins SVM, ...) and, when Keras is installed, against ``keras.losses`` itself
(``crosscheck`` marker); (3) hypothesis invariants, closed-form gradients, finite gradients at
extreme logits, eager == jit == vmap and no recompilation. Every bad-input error is asserted.
"""

import functools
import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads
from strategies import FLOAT32_MAX, extreme_f32, f32_arrays, moderate_f32, unit_f32

from fnn import activations
from fnn import losses as L

EPS = 1e-7
# Keras clips in float32: the upper bound 1 - 1e-7 rounds to 0.99999988 (1 - 1.19e-7).
HI = float(np.float32(1.0 - EPS))
N, K = 6, 5

# ---------------------------------------------------------------------------------------------
# Float64 oracles, transcribed from the slides and from Keras 3's formulas.


def _mean_last(v):
    return v if v.ndim == 1 else v.mean(-1)


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_binary_crossentropy(y, p, from_logits=False, label_smoothing=0.0):
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        per = -(y * _log_sigmoid(p) + (1 - y) * _log_sigmoid(-p))
    else:
        p = np.clip(p, EPS, HI)
        per = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return _mean_last(per)


def np_categorical_crossentropy(y, p, from_logits=False, label_smoothing=0.0):
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    if from_logits:
        logp = _log_softmax(p)
    else:
        logp = np.log(np.clip(p / p.sum(-1, keepdims=True), EPS, HI))
    return -(y * logp).sum(-1)


def np_sparse_categorical_crossentropy(ids, p, from_logits=False, ignore_class=None):
    out = np.zeros(ids.shape)
    for i, c in enumerate(ids):
        if c == ignore_class:
            continue
        logp = _log_softmax(p[i]) if from_logits else np.log(np.clip(p[i] / p[i].sum(), EPS, HI))
        out[i] = -logp[c]
    return out


def np_poisson(y, p):
    return _mean_last(p - y * np.log(p + EPS))


def np_kl_divergence(y, p):
    y, p = np.clip(y, EPS, 1), np.clip(p, EPS, 1)
    return (y * np.log(y / p)).sum(-1)


def np_mse(y, p):
    return _mean_last((y - p) ** 2)


def np_mae(y, p):
    return _mean_last(np.abs(y - p))


def np_mape(y, p):
    return 100 * _mean_last(np.abs(y - p) / np.maximum(np.abs(y), EPS))


def np_msle(y, p):
    return _mean_last((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(y, EPS) + 1)) ** 2)


def np_cosine_similarity(y, p):
    def unit(v):
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), EPS)

    return -(unit(y) * unit(p)).sum(-1)


def np_huber(y, p, delta=1.0):
    e = np.abs(p - y)
    return _mean_last(np.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2))


def np_log_cosh(y, p):
    return _mean_last(np.log(np.cosh(p - y)))


def _pm1(y):
    return 2 * y - 1 if np.isin(y, [0, 1]).all() else y


def np_hinge(y, p):
    return _mean_last(np.maximum(0, 1 - _pm1(y) * p))


def np_squared_hinge(y, p):
    return _mean_last(np.maximum(0, 1 - _pm1(y) * p) ** 2)


def np_categorical_hinge(y, p):
    pos = (y * p).sum(-1)
    neg = ((1 - y) * p).max(-1)
    return np.maximum(0, neg - pos + 1)


def np_multiclass_svm(ids, f, margin=1.0):
    # The slide: L_i = Σ_{j≠y_i} max(0, f_j - f_{y_i} + Δ).
    out = np.zeros(len(ids))
    for i, yi in enumerate(ids):
        out[i] = sum(max(0.0, f[i, j] - f[i, yi] + margin) for j in range(f.shape[1]) if j != yi)
    return out


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def np_binary_focal(
    y, p, from_logits=False, gamma=2.0, alpha=0.25, apply_class_balancing=False, ls=0.0
):
    # Lin et al.'s focal factor on Keras' clipped BCE (from logits: a sigmoid, then the clip).
    y = y * (1 - ls) + 0.5 * ls
    if from_logits:
        p = _sigmoid(p)
    pc = np.clip(p, EPS, HI)
    bce = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    p_t = y * p + (1 - y) * (1 - p)
    out = (1 - p_t) ** gamma * bce
    if apply_class_balancing:
        out = (y * alpha + (1 - y) * (1 - alpha)) * out
    return _mean_last(out)


def np_categorical_focal(y, p, from_logits=False, alpha=0.25, gamma=2.0, ls=0.0):
    y = y * (1 - ls) + ls / y.shape[-1]
    if from_logits:
        p = np.exp(_log_softmax(p))
    p = np.clip(p / p.sum(-1, keepdims=True), EPS, HI)
    return (np.asarray(alpha) * (1 - p) ** gamma * -y * np.log(p)).sum(-1)


def _non_batch(a):
    return tuple(range(1, a.ndim))


def np_dice(y, p):
    ax = _non_batch(y)
    return 1 - 2 * (y * p).sum(ax) / (y.sum(ax) + p.sum(ax) + EPS)


def np_tversky(y, p, alpha=0.5, beta=0.5):
    # Keras' arithmetic: alpha weighs the missed target Σ y(1 - p), beta the spurious Σ p(1 - y).
    ax = _non_batch(y)
    tp = (y * p).sum(ax)
    return 1 - tp / (tp + alpha * (y * (1 - p)).sum(ax) + beta * (p * (1 - y)).sum(ax) + EPS)


def np_generalized_ce(ids, p, q=0.5):
    p_y = p[np.arange(len(ids)), ids]
    return (1 - p_y**q) / q


def np_multiclass_hinge(ids, f, margin=1.0):
    # Crammer & Singer: only the worst wrong class, max(0, max_{j≠y} f_j - f_y + Δ).
    out = np.zeros(len(ids))
    for i, yi in enumerate(ids):
        worst = max(f[i, j] for j in range(f.shape[1]) if j != yi)
        out[i] = max(0.0, worst - f[i, yi] + margin)
    return out


def np_smooth_l1(y, p, beta=1.0):
    e = np.abs(p - y)
    return _mean_last(np.where(e < beta, 0.5 * e**2 / beta, e - 0.5 * beta))


def np_circle(ids, e, gamma=80.0, margin=0.4, remove_diagonal=True):
    # Sun et al. 2020, in similarities s (Keras clamps s <= 1 through d = max(1 - s, 0)).
    out = np.zeros(len(ids))
    s_all = np.minimum(e @ e.T, 1.0)
    for i in range(len(ids)):
        pos = [j for j in range(len(ids)) if ids[j] == ids[i] and not (remove_diagonal and j == i)]
        neg = [j for j in range(len(ids)) if ids[j] != ids[i]]
        if not pos or not neg:
            continue  # log Σ over nothing = -inf, softplus(-inf) = 0
        s = s_all[i]
        lp = np.logaddexp.reduce(
            [-gamma * max(1 + margin - s[j], 0) * (s[j] - 1 + margin) for j in pos]
        )
        ln = np.logaddexp.reduce([gamma * max(s[j] + margin, 0) * (s[j] - margin) for j in neg])
        out[i] = np.logaddexp(0.0, lp + ln)
    return out


def _collapse(path):
    merged = [c for t, c in enumerate(path) if t == 0 or c != path[t - 1]]
    return [c for c in merged if c != 0]


def np_ctc(labels, logits):
    # Brute force over every path of T frames: -log Σ_{π collapsing to y} Π_t p_t(π_t).
    out = np.zeros(len(labels))
    for b in range(len(labels)):
        target = [int(c) for c in labels[b] if c != 0]
        logp = _log_softmax(logits[b])
        frames, classes = logp.shape
        total = 0.0
        for path in itertools.product(range(classes), repeat=frames):
            if _collapse(list(path)) == target:
                total += np.exp(sum(logp[t, c] for t, c in enumerate(path)))
        out[b] = -np.log(total)
    return out


# ---------------------------------------------------------------------------------------------
# Data makers: (rng) -> (y_true, y_pred) in float32 (int32 for class ids).


def _f32(*a):
    return tuple(np.asarray(v, np.float32) if v.dtype.kind == "f" else v for v in a)


def d_binary(rng, shape=(N, K)):
    return _f32((rng.random(shape) > 0.5).astype(np.float64), rng.uniform(0.02, 0.98, shape))


def d_binary_soft(rng, shape=(N, K)):
    return _f32(rng.random(shape), rng.uniform(0.02, 0.98, shape))


def d_logits_focal(rng, shape=(N, K)):
    return _f32(
        (rng.random(shape) > 0.5).astype(np.float64), np.clip(rng.normal(0, 3, shape), -6, 6)
    )


def d_logits_binary(rng, shape=(N, K)):
    return _f32((rng.random(shape) > 0.5).astype(np.float64), rng.normal(0, 4, shape))


def d_onehot_prob(rng):
    y = np.eye(K)[rng.integers(0, K, N)]
    p = rng.dirichlet(np.ones(K), N) * rng.uniform(0.5, 2.0, (N, 1))  # unnormalised on purpose
    return _f32(y, p)


def d_onehot_logits(rng):
    return _f32(np.eye(K)[rng.integers(0, K, N)], rng.normal(0, 4, (N, K)))


def d_sparse_prob(rng):
    return rng.integers(0, K, N).astype(np.int32), _f32(rng.dirichlet(np.ones(K), N))[0]


def d_sparse_logits(rng):
    return rng.integers(0, K, N).astype(np.int32), _f32(rng.normal(0, 4, (N, K)))[0]


def d_regression(rng, shape=(N, K)):
    return _f32(rng.normal(0, 2, shape), rng.normal(0, 2, shape))


def d_positive(rng, shape=(N, K)):
    return _f32(rng.uniform(0, 5, shape), rng.uniform(0.05, 5, shape))


def d_distribution(rng):
    return _f32(rng.dirichlet(np.ones(K), N), rng.dirichlet(np.ones(K), N))


def d_pm1(rng):
    return _f32(np.sign(rng.normal(size=(N, K))), rng.normal(0, 2, (N, K)))


def d_mask(rng):
    return _f32((rng.random((N, 3, 3, 2)) > 0.5).astype(np.float64), rng.random((N, 3, 3, 2)))


def d_embeddings(rng):
    e = rng.normal(size=(N, 4))
    return rng.integers(0, 3, N).astype(np.int32), _f32(
        e / np.linalg.norm(e, axis=1, keepdims=True)
    )[0]


CTC_FRAMES, CTC_CLASSES, CTC_LABELS = 5, 3, 3


def d_ctc(rng):
    # Right-padded labels of length 0..3 over classes 1..K-1 (0 is the blank), 5 frames: every
    # label fits (the worst, "1 1 1", needs 5 frames: 1 _ 1 _ 1).
    labels = np.zeros((N, CTC_LABELS), np.int32)
    for b in range(N):
        n = rng.integers(0, CTC_LABELS + 1)
        labels[b, :n] = rng.integers(1, CTC_CLASSES, n)
    return labels, _f32(rng.normal(0, 2, (N, CTC_FRAMES, CTC_CLASSES)))[0]


def d_maps_regression(rng):
    return _f32(rng.normal(0, 2, (N, 3, 4, 2)), rng.normal(0, 2, (N, 3, 4, 2)))


def np_cosine_maps(y, p):
    return np_cosine_similarity(y.reshape(len(y), -1), p.reshape(len(p), -1))


# id -> (fnn loss, options, float64 oracle, data maker)
CASES = {
    "bce": (L.binary_crossentropy, {}, np_binary_crossentropy, d_binary),
    "bce_soft": (L.binary_crossentropy, {}, np_binary_crossentropy, d_binary_soft),
    "bce_rank1": (
        L.binary_crossentropy,
        {},
        np_binary_crossentropy,
        functools.partial(d_binary, shape=(N,)),
    ),
    "bce_smooth": (
        L.binary_crossentropy,
        {"label_smoothing": 0.2},
        functools.partial(np_binary_crossentropy, label_smoothing=0.2),
        d_binary,
    ),
    "bce_logits": (
        L.binary_crossentropy,
        {"from_logits": True},
        functools.partial(np_binary_crossentropy, from_logits=True),
        d_logits_binary,
    ),
    "bce_logits_smooth": (
        L.binary_crossentropy,
        {"from_logits": True, "label_smoothing": 0.1},
        functools.partial(np_binary_crossentropy, from_logits=True, label_smoothing=0.1),
        d_logits_binary,
    ),
    "cce": (L.categorical_crossentropy, {}, np_categorical_crossentropy, d_onehot_prob),
    "cce_smooth": (
        L.categorical_crossentropy,
        {"label_smoothing": 0.3},
        functools.partial(np_categorical_crossentropy, label_smoothing=0.3),
        d_onehot_prob,
    ),
    "cce_logits": (
        L.categorical_crossentropy,
        {"from_logits": True},
        functools.partial(np_categorical_crossentropy, from_logits=True),
        d_onehot_logits,
    ),
    "cce_logits_smooth": (
        L.categorical_crossentropy,
        {"from_logits": True, "label_smoothing": 0.1},
        functools.partial(np_categorical_crossentropy, from_logits=True, label_smoothing=0.1),
        d_onehot_logits,
    ),
    "scce": (
        L.sparse_categorical_crossentropy,
        {},
        np_sparse_categorical_crossentropy,
        d_sparse_prob,
    ),
    "scce_logits": (
        L.sparse_categorical_crossentropy,
        {"from_logits": True},
        functools.partial(np_sparse_categorical_crossentropy, from_logits=True),
        d_sparse_logits,
    ),
    "scce_ignore": (
        L.sparse_categorical_crossentropy,
        {"from_logits": True, "ignore_class": 2},
        functools.partial(np_sparse_categorical_crossentropy, from_logits=True, ignore_class=2),
        d_sparse_logits,
    ),
    "poisson": (L.poisson, {}, np_poisson, d_positive),
    "kld": (L.kl_divergence, {}, np_kl_divergence, d_distribution),
    "mse": (L.mean_squared_error, {}, np_mse, d_regression),
    "mse_rank1": (L.mean_squared_error, {}, np_mse, functools.partial(d_regression, shape=(N,))),
    "mae": (L.mean_absolute_error, {}, np_mae, d_regression),
    "mape": (L.mean_absolute_percentage_error, {}, np_mape, d_regression),
    "msle": (L.mean_squared_logarithmic_error, {}, np_msle, d_positive),
    "msle_negative": (L.mean_squared_logarithmic_error, {}, np_msle, d_regression),
    "cosine": (L.cosine_similarity, {}, np_cosine_similarity, d_regression),
    "huber": (L.huber, {}, np_huber, d_regression),
    "huber_delta": (
        L.huber,
        {"delta": 0.5},
        functools.partial(np_huber, delta=0.5),
        d_regression,
    ),
    "log_cosh": (L.log_cosh, {}, np_log_cosh, d_regression),
    "hinge_pm1": (L.hinge, {}, np_hinge, d_pm1),
    "hinge_01": (L.hinge, {}, np_hinge, d_logits_binary),
    "squared_hinge": (L.squared_hinge, {}, np_squared_hinge, d_logits_binary),
    "categorical_hinge": (L.categorical_hinge, {}, np_categorical_hinge, d_onehot_logits),
    "multiclass_svm": (L.multiclass_svm, {}, np_multiclass_svm, d_sparse_logits),
    "multiclass_svm_margin": (
        L.multiclass_svm,
        {"margin": 2.5},
        functools.partial(np_multiclass_svm, margin=2.5),
        d_sparse_logits,
    ),
}

CASES.update(
    {
        "bfce": (L.binary_focal_crossentropy, {}, np_binary_focal, d_binary),
        "bfce_soft_gamma0": (
            L.binary_focal_crossentropy,
            {"gamma": 0.0},
            functools.partial(np_binary_focal, gamma=0.0),
            d_binary_soft,
        ),
        "bfce_logits_balanced": (
            L.binary_focal_crossentropy,
            {"from_logits": True, "apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5},
            functools.partial(
                np_binary_focal, from_logits=True, apply_class_balancing=True, alpha=0.3, gamma=1.5
            ),
            d_logits_focal,
        ),
        "bfce_smooth": (
            L.binary_focal_crossentropy,
            {"label_smoothing": 0.2},
            functools.partial(np_binary_focal, ls=0.2),
            d_binary,
        ),
        "cfce": (L.categorical_focal_crossentropy, {}, np_categorical_focal, d_onehot_prob),
        "cfce_logits_alpha": (
            L.categorical_focal_crossentropy,
            {"from_logits": True, "alpha": [0.1, 0.2, 0.3, 0.4, 0.5], "gamma": 1.0},
            functools.partial(
                np_categorical_focal, from_logits=True, alpha=[0.1, 0.2, 0.3, 0.4, 0.5], gamma=1.0
            ),
            d_onehot_logits,
        ),
        "cfce_smooth": (
            L.categorical_focal_crossentropy,
            {"label_smoothing": 0.1},
            functools.partial(np_categorical_focal, ls=0.1),
            d_onehot_prob,
        ),
        "dice": (L.dice, {"axis": (1, 2, 3)}, np_dice, d_mask),
        "tversky": (
            L.tversky,
            {"alpha": 0.7, "beta": 0.3, "axis": (1, 2, 3)},
            functools.partial(np_tversky, alpha=0.7, beta=0.3),
            d_mask,
        ),
        "circle": (L.circle, {}, np_circle, d_embeddings),
        "circle_options": (
            L.circle,
            {"gamma": 4.0, "margin": 0.25, "remove_diagonal": False},
            functools.partial(np_circle, gamma=4.0, margin=0.25, remove_diagonal=False),
            d_embeddings,
        ),
        "ctc": (L.ctc, {}, np_ctc, d_ctc),
        "gce": (
            L.categorical_generalized_cross_entropy,
            {"q": 0.7},
            functools.partial(np_generalized_ce, q=0.7),
            d_sparse_prob,
        ),
        "multiclass_hinge": (L.multiclass_hinge, {}, np_multiclass_hinge, d_sparse_logits),
        "multiclass_hinge_margin": (
            L.multiclass_hinge,
            {"margin": 2.5},
            functools.partial(np_multiclass_hinge, margin=2.5),
            d_sparse_logits,
        ),
        "smooth_l1": (L.smooth_l1, {}, np_smooth_l1, d_regression),
        "smooth_l1_beta": (
            L.smooth_l1,
            {"beta": 0.3},
            functools.partial(np_smooth_l1, beta=0.3),
            d_regression,
        ),
        "cosine_maps": (
            L.cosine_similarity,
            {"axis": (1, 2, 3)},
            np_cosine_maps,
            d_maps_regression,
        ),
    }
)

# One jitted function per case, reused by every test (compile once).
_JITTED = {c: jax.jit(functools.partial(fn, **kw)) for c, (fn, kw, _, _) in CASES.items()}


def _call(case, y_true, y_pred):
    return _JITTED[case](y_true=y_true, y_pred=y_pred)


# Keras' focal loss from logits takes log(1 - sigmoid(z)) of a float32 sigmoid, whose last-bit
# error is 3e-4 of 1 - p at z ~ 8 (30% at z ~ 15): its cases draw |z| <= 6, with this tolerance.
# The Keras cross-check (the same float32 arithmetic) holds to 1e-6 at any z.
_ORACLE_RTOL = {"bfce_logits_balanced": 5e-5}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64_oracle(case):
    _, _, oracle, make = CASES[case]
    for seed in range(3):
        y_true, y_pred = make(np.random.default_rng(seed))
        got = _call(case, y_true, y_pred)
        want = oracle(
            y_true.astype(np.float64) if y_true.dtype.kind == "f" else y_true,
            y_pred.astype(np.float64),
        )
        assert got.shape == want.shape == (N,)
        np.testing.assert_allclose(got, want, rtol=_ORACLE_RTOL.get(case, 2e-5), atol=2e-6)


@given(seed=st.integers(0, 2**32 - 1))
def test_matches_float64_oracle_on_random_draws(seed):
    for case, (_, _, oracle, make) in CASES.items():
        y_true, y_pred = make(np.random.default_rng(seed))
        want = oracle(
            y_true.astype(np.float64) if y_true.dtype.kind == "f" else y_true,
            y_pred.astype(np.float64),
        )
        np.testing.assert_allclose(
            _call(case, y_true, y_pred),
            want,
            rtol=max(5e-5, _ORACLE_RTOL.get(case, 0)),
            atol=5e-6,
            err_msg=case,
        )


def test_slide_multiclass_svm_example():
    # The CS231n/lecture example: cat, car, frog scores for three images; L = (2.9 + 0 + 12.9)/3.
    scores = jnp.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    per_example = L.multiclass_svm(y_true=jnp.array([0, 1, 2]), y_pred=scores)
    np.testing.assert_allclose(per_example, [2.9, 0.0, 12.9], rtol=1e-6)
    assert float(L.reduce(per_example)) == pytest.approx(5.27, abs=5e-3)


def test_higher_rank_inputs_reduce_only_the_class_axis():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(2, 3, 4, K)).astype(np.float32)
    y = np.eye(K, dtype=np.float32)[rng.integers(0, K, (2, 3, 4))]
    cce = L.categorical_crossentropy(y_true=y, y_pred=z, from_logits=True)
    assert cce.shape == (2, 3, 4)
    np.testing.assert_allclose(
        cce,
        np_categorical_crossentropy(y.reshape(-1, K), z.reshape(-1, K), True).reshape(2, 3, 4),
        rtol=1e-5,
    )
    scce = L.sparse_categorical_crossentropy(y_true=y.argmax(-1), y_pred=z, from_logits=True)
    np.testing.assert_allclose(scce, cce, rtol=1e-6)
    # The class axis can be elsewhere (channels-first), as Keras' `axis`.
    moved = L.categorical_crossentropy(
        y_true=np.moveaxis(y, -1, 1), y_pred=np.moveaxis(z, -1, 1), from_logits=True, axis=1
    )
    np.testing.assert_allclose(moved, cce, rtol=1e-6)
    assert L.mean_squared_error(y_true=y, y_pred=z).shape == (2, 3, 4)
    np.testing.assert_allclose(
        L.mean_squared_error(y_true=y, y_pred=z, axis=1), ((y - z) ** 2).mean(1), rtol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Keras 3 numerics: clipping, renormalisation, label smoothing.


def test_probabilities_are_clipped_to_keras_epsilon():
    one, zero = jnp.ones((1, 1)), jnp.zeros((1, 1))
    worst = float(L.binary_crossentropy(y_true=one, y_pred=zero)[0])
    assert worst == pytest.approx(-math.log(EPS), rel=1e-6)  # 16.118, not inf
    best = float(L.binary_crossentropy(y_true=one, y_pred=one)[0])
    assert best == pytest.approx(-math.log(HI), rel=1e-3)  # 1.19e-7, not 0
    g = jax.grad(lambda p: L.binary_crossentropy(y_true=one, y_pred=p).sum())(zero)
    assert float(g[0, 0]) == 0.0  # beyond the clip the gradient is 0, as in Keras
    cce = L.categorical_crossentropy(y_true=jnp.array([[0.0, 1.0]]), y_pred=jnp.array([[1.0, 0.0]]))
    assert float(cce[0]) == pytest.approx(-math.log(EPS), rel=1e-6)


def test_categorical_crossentropy_renormalises_along_the_class_axis():
    y = jnp.array([[0.0, 1.0, 0.0]])
    p = jnp.array([[0.2, 0.6, 0.2]])
    for scale in (0.1, 1.0, 7.0):
        np.testing.assert_allclose(
            L.categorical_crossentropy(y_true=y, y_pred=p * scale), [-math.log(0.6)], rtol=1e-6
        )
    # Rows whose sum overflows float32 are renormalised exactly (Keras: p/inf = 0, the clip).
    big = np.float32(FLOAT32_MAX)
    for row, want in (
        ([big, big, 0.0], math.log(2)),
        ([big, big / 2, big / 4], math.log(1.75)),
        ([1.5e38, 0.5e38, 0.0], math.log(4 / 3)),  # a finite sum whose reciprocal is subnormal
    ):
        got = L.categorical_crossentropy(y_true=y[:, [1, 0, 2]], y_pred=jnp.array([row]))
        assert float(got[0]) == pytest.approx(want, rel=1e-6), row
    # An all-zero row would be 0/0 = NaN in Keras; here every class sits at the clip.
    zero_row = L.categorical_crossentropy(y_true=y, y_pred=jnp.zeros((1, 3)))
    assert float(zero_row[0]) == pytest.approx(-math.log(EPS), rel=1e-6)


def test_renormalisation_gradient_is_exact_for_tiny_rows():
    # d/dp_j of -log(p_0 / Σp) is -1/p_0 [j = 0] + 1/Σp. Autodiff of p / Σp goes through 1/(Σp)²,
    # which overflows to a NaN gradient for rows summing below ~1e-19 (Keras has that NaN).
    y = jnp.array([[1.0, 0.0, 0.0]])
    for row in ([0.2, 0.5, 0.3], [3e-20, 1e-20, 1e-20], [1e-37, 0.0, 1e-37]):
        p = np.array([row])
        g = jax.grad(lambda q: L.categorical_crossentropy(y_true=y, y_pred=q).sum())(
            jnp.asarray(p, jnp.float32)
        )
        want = -np.eye(3)[0] / p[0, 0] + 1.0 / p.sum()
        np.testing.assert_allclose(g[0], want, rtol=1e-5)


def test_label_smoothing_rules_binary_vs_categorical():
    ls = 0.2
    # Binary: y(1 - ls) + 0.5 ls, i.e. 1 -> 0.9 and 0 -> 0.1.
    p = jnp.array([[0.3]])
    np.testing.assert_allclose(
        L.binary_crossentropy(y_true=jnp.ones((1, 1)), y_pred=p, label_smoothing=ls),
        L.binary_crossentropy(y_true=jnp.full((1, 1), 0.9), y_pred=p),
        rtol=1e-6,
    )
    # Categorical: y(1 - ls) + ls / K, i.e. with K = 4: 1 -> 0.85 and 0 -> 0.05.
    p4 = jnp.array([[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(
        L.categorical_crossentropy(
            y_true=jnp.array([[0.0, 0, 0, 1]]), y_pred=p4, label_smoothing=ls
        ),
        L.categorical_crossentropy(y_true=jnp.array([[0.05, 0.05, 0.05, 0.85]]), y_pred=p4),
        rtol=1e-6,
    )


# ---------------------------------------------------------------------------------------------
# Cross-checks against optax.losses, with the known differences as explicit tests.


def test_crossentropy_from_logits_equals_optax():
    y, z = d_onehot_logits(np.random.default_rng(0))
    np.testing.assert_allclose(
        L.categorical_crossentropy(y_true=y, y_pred=z, from_logits=True),
        optax.losses.softmax_cross_entropy(z, y),
        rtol=1e-6,
    )
    ids = y.argmax(-1)
    np.testing.assert_allclose(
        L.sparse_categorical_crossentropy(y_true=ids, y_pred=z, from_logits=True),
        optax.losses.softmax_cross_entropy_with_integer_labels(z, ids),
        rtol=1e-6,
    )
    yb, zb = d_logits_binary(np.random.default_rng(1))
    np.testing.assert_allclose(
        L.binary_crossentropy(y_true=yb, y_pred=zb, from_logits=True),
        optax.losses.sigmoid_binary_cross_entropy(zb, yb).mean(-1),  # optax: no mean over axis
        rtol=1e-6,
    )


def test_label_smoothing_equals_optax_smooth_labels():
    y, z = d_onehot_logits(np.random.default_rng(2))
    np.testing.assert_allclose(
        L.categorical_crossentropy(y_true=y, y_pred=z, from_logits=True, label_smoothing=0.1),
        optax.losses.softmax_cross_entropy(z, optax.losses.smooth_labels(y, 0.1)),
        rtol=1e-6,
    )
    # Binary smoothing is optax.smooth_labels over the two classes {0, 1}.
    yb, zb = d_logits_binary(np.random.default_rng(3))
    two_class = optax.losses.smooth_labels(jnp.stack([1 - yb, yb], -1), 0.2)[..., 1]
    np.testing.assert_allclose(
        L.binary_crossentropy(y_true=yb, y_pred=zb, from_logits=True, label_smoothing=0.2),
        L.binary_crossentropy(y_true=two_class, y_pred=zb, from_logits=True),
        rtol=1e-6,
    )


def test_mse_is_optax_squared_error_and_twice_optax_l2_loss():
    y, p = d_regression(np.random.default_rng(0))
    mse = L.mean_squared_error(y_true=y, y_pred=p)
    np.testing.assert_allclose(mse, optax.losses.squared_error(p, y).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(mse, 2.0 * optax.losses.l2_loss(p, y).mean(-1), rtol=1e-6)
    assert not np.allclose(mse, optax.losses.l2_loss(p, y).mean(-1))  # l2_loss carries a ½


def test_cosine_similarity_has_the_opposite_sign_of_optax():
    y, p = d_regression(np.random.default_rng(1))
    ours = L.cosine_similarity(y_true=y, y_pred=p)
    np.testing.assert_allclose(ours, -optax.losses.cosine_similarity(p, y), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours, optax.losses.cosine_distance(p, y) - 1.0, rtol=1e-5, atol=1e-6)
    parallel = L.cosine_similarity(y_true=y, y_pred=3.0 * y)
    np.testing.assert_allclose(parallel, -1.0, rtol=1e-6)  # a loss: -1 is the best value


def test_elementwise_losses_equal_optax_after_the_mean():
    y, p = d_regression(np.random.default_rng(2))
    np.testing.assert_allclose(
        L.huber(y_true=y, y_pred=p, delta=0.7),
        optax.losses.huber_loss(p, y, delta=0.7).mean(-1),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        L.log_cosh(y_true=y, y_pred=p), optax.losses.log_cosh(p, y).mean(-1), rtol=1e-5, atol=1e-6
    )


def test_hinge_converts_01_labels_where_optax_does_not():
    y01, s = d_logits_binary(np.random.default_rng(3))
    ypm = 2 * y01 - 1
    np.testing.assert_allclose(
        L.hinge(y_true=ypm, y_pred=s), optax.losses.hinge_loss(s, ypm).mean(-1), rtol=1e-6
    )
    np.testing.assert_allclose(L.hinge(y_true=y01, y_pred=s), L.hinge(y_true=ypm, y_pred=s))
    assert not np.allclose(L.hinge(y_true=y01, y_pred=s), optax.losses.hinge_loss(s, y01).mean(-1))


def test_kl_divergence_equals_optax_on_log_predictions():
    rng = np.random.default_rng(4)
    y = rng.dirichlet(np.ones(K), N).astype(np.float32) * 0.95 + 0.01  # above the clip
    p = rng.dirichlet(np.ones(K), N).astype(np.float32) * 0.95 + 0.01
    np.testing.assert_allclose(
        L.kl_divergence(y_true=y, y_pred=p),
        optax.losses.kl_divergence(jnp.log(p), y),  # optax takes log-predictions
        rtol=1e-5,
        atol=1e-6,
    )


def test_slide_svm_versus_optax_crammer_singer():
    # Two classes: one wrong class, sum == max, the two forms coincide.
    rng = np.random.default_rng(5)
    ids2, s2 = rng.integers(0, 2, N), rng.normal(0, 2, (N, 2)).astype(np.float32)
    np.testing.assert_allclose(
        L.multiclass_svm(y_true=ids2, y_pred=s2),
        optax.losses.multiclass_hinge_loss(s2, ids2),
        rtol=1e-6,
        atol=1e-6,
    )
    # More classes: the slide sums the violations, optax keeps the largest one.
    ids, s = d_sparse_logits(rng)
    ours, cs = L.multiclass_svm(y_true=ids, y_pred=s), optax.losses.multiclass_hinge_loss(s, ids)
    assert np.all(np.asarray(ours) >= np.asarray(cs) - 1e-6)
    two_violations = jnp.array([[0.0, 0.5, 0.5]])
    assert float(L.multiclass_svm(y_true=jnp.array([0]), y_pred=two_violations)[0]) == 3.0
    assert float(optax.losses.multiclass_hinge_loss(two_violations, jnp.array([0]))[0]) == 1.5


def test_categorical_hinge_keeps_keras_quirk_for_negative_scores():
    # neg = max((1 - y) * ŷ) includes the true class as 0: with all wrong scores negative,
    # neg is 0, not the best wrong score (Keras 3 behaviour).
    y = jnp.array([[1.0, 0.0, 0.0]])
    s = jnp.array([[0.5, -2.0, -3.0]])
    assert float(L.categorical_hinge(y_true=y, y_pred=s)[0]) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# Gradients: closed forms and finite differences.


def test_crossentropy_gradient_is_softmax_minus_labels():
    y, z = d_onehot_logits(np.random.default_rng(6))
    g = jax.grad(lambda v: L.categorical_crossentropy(y_true=y, y_pred=v, from_logits=True).sum())(
        z
    )
    np.testing.assert_allclose(g, jax.nn.softmax(z) - y, atol=1e-6)
    g = jax.grad(
        lambda v: L.sparse_categorical_crossentropy(
            y_true=y.argmax(-1), y_pred=v, from_logits=True
        ).sum()
    )(z)
    np.testing.assert_allclose(g, jax.nn.softmax(z) - y, atol=1e-6)
    yb, zb = d_logits_binary(np.random.default_rng(7))
    g = jax.grad(lambda v: L.binary_crossentropy(y_true=yb, y_pred=v, from_logits=True).sum())(zb)
    np.testing.assert_allclose(g, (jax.nn.sigmoid(zb) - yb) / K, atol=1e-6)


def test_regression_gradients_closed_form():
    y, p = d_regression(np.random.default_rng(8))
    g = jax.grad(lambda v: L.mean_squared_error(y_true=y, y_pred=v).sum())(p)
    np.testing.assert_allclose(g, 2 * (p - y) / K, rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda v: L.mean_absolute_error(y_true=y, y_pred=v).sum())(p)
    np.testing.assert_allclose(g, np.sign(p - y) / K, rtol=1e-6)
    g = jax.grad(lambda v: L.huber(y_true=y, y_pred=v, delta=0.5).sum())(p)
    np.testing.assert_allclose(g, np.clip(p - y, -0.5, 0.5) / K, rtol=1e-5, atol=1e-6)


def test_multiclass_svm_gradient():
    # dL/df_j = 1 for each violating wrong class j; dL/df_y = -(number of violations).
    ids, s = np.array([0]), jnp.array([[1.0, 0.5, -3.0, 0.9]])
    g = jax.grad(lambda v: L.multiclass_svm(y_true=ids, y_pred=v).sum())(s)
    np.testing.assert_array_equal(g, [[-2.0, 1.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "case",
    ["poisson", "kld", "msle", "cosine", "log_cosh", "mape", "cce"]
    + ["bfce_logits_balanced", "cfce_logits_alpha", "dice", "tversky", "circle_options", "ctc"]
    + ["gce", "smooth_l1_beta", "cosine_maps"],
)
def test_gradients_match_finite_differences(case):
    fn, kw, _, make = CASES[case]
    y_true, y_pred = make(np.random.default_rng(9))
    y_pred = y_pred.astype(np.float64)  # finite differences need float64 precision

    @jax.jit  # one compiled program instead of op-by-op dispatch for every probe
    def f(p):
        return fn(y_true=y_true, y_pred=p, **kw).sum()

    with jax.enable_x64(True):
        check_grads(
            f,
            (jnp.asarray(y_pred, jnp.float64),),
            order=1,
            modes=["rev"],
            eps=1e-6,
            atol=1e-5,
            rtol=1e-5,
        )


LOGIT_CASES = ["bce_logits", "cce_logits", "scce_logits", "scce_ignore", "bce_logits_smooth"]


@pytest.mark.parametrize("case", LOGIT_CASES)
def test_no_nan_at_logits_of_plus_minus_1e4(case):
    fn, kw, _, make = CASES[case]
    y_true, _ = make(np.random.default_rng(10))
    z = np.where(np.random.default_rng(11).random((N, K)) > 0.5, 1e4, -1e4).astype(np.float32)
    value, grad = jax.value_and_grad(lambda v: fn(y_true=y_true, y_pred=v, **kw).sum())(z)
    assert np.isfinite(float(value))
    assert np.isfinite(np.asarray(grad)).all()


_LOGIT_VG = {
    case: jax.jit(
        jax.value_and_grad(
            lambda z, y, fn=CASES[case][0], kw=CASES[case][1]: fn(y_true=y, y_pred=z, **kw).sum()
        )
    )
    for case in LOGIT_CASES
}
_PROB_VG = {
    case: jax.jit(
        jax.value_and_grad(
            lambda p, y, fn=CASES[case][0], kw=CASES[case][1]: fn(y_true=y, y_pred=p, **kw).sum()
        )
    )
    for case in ["bce", "bce_smooth", "cce", "cce_smooth", "scce", "kld"]
}
wide_logits = hnp.arrays(np.float32, (N, K), elements=st.floats(-1e37, 1e37))
any_probs = hnp.arrays(np.float32, (N, K), elements=st.floats(0, 1, width=32))


@given(wide_logits, any_probs, hnp.arrays(np.int32, (N,), elements=st.integers(0, K - 1)))
def test_finite_value_and_gradient_for_any_logits_and_probabilities(z, p, ids):
    # from_logits: any finite logits whose spread stays inside float32 (here |z| <= 1e37);
    # probabilities: anything in [0, 1], exact 0s and 1s and all-zero rows included.
    targets = {
        "scce_logits": ids,
        "scce_ignore": ids,
        "scce": ids,
        "kld": np.full((N, K), 1.0 / K, np.float32),
    }
    binary = (p > 0.5).astype(np.float32)
    one_hot = np.eye(K, dtype=np.float32)[ids]
    for table, x in ((_LOGIT_VG, z), (_PROB_VG, p)):
        for case, vg in table.items():
            y = targets.get(case, one_hot if case.startswith("cce") else binary)
            value, grad = vg(x, y)
            assert np.isfinite(float(value)), (case, x)
            assert np.isfinite(np.asarray(grad)).all(), (case, x)


def test_extreme_logits_give_exact_values():
    z = jnp.array([[-1e4, 1e4]])
    loss = L.categorical_crossentropy(y_true=jnp.array([[1.0, 0.0]]), y_pred=z, from_logits=True)
    assert float(loss[0]) == 2e4  # -log_softmax = 2e4, not inf
    bce = L.binary_crossentropy(y_true=jnp.array([1.0]), y_pred=jnp.array([-1e4]), from_logits=True)
    assert float(bce[0]) == 1e4


# ---------------------------------------------------------------------------------------------
# Hypothesis invariants.

_cce_logits = jax.jit(functools.partial(L.categorical_crossentropy, from_logits=True))
_cce = jax.jit(L.categorical_crossentropy)
_svm = jax.jit(L.multiclass_svm)
_huber = jax.jit(L.huber)
_bce = jax.jit(L.binary_crossentropy)
_bfce = jax.jit(L.binary_focal_crossentropy)
_dice = jax.jit(L.dice)
_tversky = jax.jit(L.tversky)
_cs = jax.jit(L.multiclass_hinge)
_ctc = jax.jit(L.ctc)
_gce = jax.jit(L.categorical_generalized_cross_entropy, static_argnames="q")
_hinge = jax.jit(L.hinge)
_symmetric = {
    n: jax.jit(f)
    for n, f in [
        ("mse", L.mean_squared_error),
        ("mae", L.mean_absolute_error),
        ("huber", L.huber),
        ("log_cosh", L.log_cosh),
        ("cosine", L.cosine_similarity),
        ("smooth_l1", L.smooth_l1),
    ]
}

logits = hnp.arrays(np.float32, (N, K), elements=moderate_f32)
labels = hnp.arrays(np.int32, (N,), elements=st.integers(0, K - 1))


@given(logits, labels, st.floats(-100, 100, width=32))
def test_crossentropy_nonnegative_and_shift_invariant(z, ids, c):
    y = np.eye(K, dtype=np.float32)[ids]
    loss = np.asarray(_cce_logits(y_true=y, y_pred=z))
    assert np.all(loss >= 0)
    np.testing.assert_allclose(_cce_logits(y_true=y, y_pred=z + c), loss, rtol=1e-4, atol=1e-4)


@given(hnp.arrays(np.float32, (N, K), elements=st.floats(0, 1, width=32)), labels)
def test_crossentropy_is_zero_only_at_a_perfect_one_hot(p, ids):
    y = np.eye(K, dtype=np.float32)[ids]
    perfect = np.asarray(_cce(y_true=y, y_pred=y))
    assert np.all(perfect <= -math.log(HI) * 1.01)  # 1.19e-7: the clip, not exactly 0
    p = p + 1e-3  # strictly positive rows
    q = p / p.sum(-1, keepdims=True)
    loss = np.asarray(_cce(y_true=y, y_pred=p))
    true_prob = q[np.arange(N), ids]
    assert np.all(loss[true_prob < 0.999] > 5e-4)


@given(logits, labels, st.floats(0, 5, width=32))
def test_svm_zero_once_the_margin_holds(f, ids, margin):
    loss = np.asarray(_svm(y_true=ids, y_pred=f, margin=margin))
    wrong = np.where(np.eye(K, dtype=bool)[ids], -np.inf, f)
    gap = f[np.arange(N), ids].astype(np.float64) - wrong.max(-1) - margin  # slack of the margin
    assert np.all(loss >= 0)
    assert np.all(loss[gap >= 1e-4] == 0)  # the margin holds: no loss
    assert np.all(loss[gap <= -1e-4] > 0)  # violated: a loss (float32 rounding aside)


@given(hnp.arrays(np.float32, (N, K), elements=st.sampled_from([-1.0, 1.0])), logits)
def test_hinge_zero_once_the_margin_holds(y, s):
    safe = y * (1.0 + np.abs(s))  # y·ŷ ≥ 1 everywhere
    assert np.all(np.asarray(_hinge(y_true=y, y_pred=safe)) == 0)
    violated = -y * np.abs(s)  # y·ŷ ≤ 0 everywhere
    assert np.all(np.asarray(_hinge(y_true=y, y_pred=violated)) >= 1)


@given(logits, logits, st.floats(0.125, 5, width=32))
def test_huber_between_mae_and_mse_regimes(y, p, delta):
    e = np.abs(p.astype(np.float64) - y)
    h = np.asarray(_huber(y_true=y, y_pred=p, delta=delta), np.float64)
    upper = (0.5 * e**2).mean(-1)  # MSE-like bound, equality when every |e| ≤ δ
    lower = (delta * e - 0.5 * delta**2).mean(-1)  # MAE-like bound, equality when every |e| ≥ δ
    assert np.all(h <= upper * (1 + 1e-5) + 1e-5)
    assert np.all(h >= lower - 1e-4 * (1 + np.abs(lower)))
    small, large = (e <= delta).all(-1), (e >= delta).all(-1)
    np.testing.assert_allclose(h[small], upper[small], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h[large], lower[large], rtol=1e-4, atol=1e-4)


@given(logits, logits)
def test_symmetric_losses(y, p):
    for name, f in _symmetric.items():
        np.testing.assert_allclose(
            # atol: Keras' log-cosh formula e + softplus(-2e) - log 2 cancels to ~1e-7 near e = 0.
            f(y_true=y, y_pred=p),
            f(y_true=p, y_pred=y),
            rtol=1e-6,
            atol=5e-7,
            err_msg=name,
        )
    mse = np.asarray(_symmetric["mse"](y_true=y, y_pred=p))
    mae = np.asarray(_symmetric["mae"](y_true=y, y_pred=p))
    assert np.all(mse >= mae**2 * (1 - 1e-5) - 1e-6)  # Jensen
    cos = np.asarray(_symmetric["cosine"](y_true=y, y_pred=p))
    assert np.all(np.abs(cos) <= 1 + 1e-6)


# ---------------------------------------------------------------------------------------------
# eager == jit == vmap, no recompilation.


@pytest.mark.parametrize("case", list(CASES))
def test_eager_jit_vmap_agree_without_recompiling(case):
    fn, kw, _, make = CASES[case]
    pairs = [make(np.random.default_rng(s)) for s in range(2)]
    y_true = np.stack([a for a, _ in pairs])
    y_pred = np.stack([b for _, b in pairs])
    eager = np.stack([fn(y_true=a, y_pred=b, **kw) for a, b in pairs])
    traces = []  # a Python side effect runs once per trace, i.e. once per compilation

    @jax.jit
    def jitted(a, b):
        traces.append(b.shape)
        return fn(y_true=a, y_pred=b, **kw)

    np.testing.assert_allclose(jitted(y_true[0], y_pred[0]), eager[0], rtol=1e-6, atol=1e-6)
    jitted(y_true[1], y_pred[1])  # new values, same shapes: no recompilation
    assert traces == [y_pred.shape[1:]]
    np.testing.assert_allclose(jax.vmap(jitted)(y_true, y_pred), eager, rtol=1e-6, atol=1e-6)


def test_low_precision_predictions_are_computed_in_float32():
    y, p = d_onehot_prob(np.random.default_rng(0))
    out = L.categorical_crossentropy(y_true=y, y_pred=p.astype(jnp.bfloat16))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(
        out, L.categorical_crossentropy(y_true=y, y_pred=p.astype(jnp.bfloat16).astype(np.float32))
    )


# ---------------------------------------------------------------------------------------------
# reduce: the slide's L = 1/N Σ L_i and Keras 3's reductions.

VALUES = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
WEIGHTS = np.array([1.0, 0.0, 2.0, 0.5], np.float32)


def test_reduce_default_is_the_slide_mean():
    assert float(L.reduce(VALUES)) == pytest.approx(VALUES.mean())
    assert float(L.reduce(VALUES, reduction="mean")) == pytest.approx(VALUES.mean())


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [
        # Keras: divide by the number of elements, not by the sum of the weights.
        ("sum_over_batch_size", (VALUES * WEIGHTS).sum() / 4),
        ("mean", (VALUES * WEIGHTS).sum() / 4),
        ("sum", (VALUES * WEIGHTS).sum()),
        ("mean_with_sample_weight", (VALUES * WEIGHTS).sum() / WEIGHTS.sum()),
        ("weighted_mean", (VALUES * WEIGHTS).sum() / WEIGHTS.sum()),
    ],
)
def test_reduce_with_sample_weight(reduction, expected):
    assert float(L.reduce(VALUES, WEIGHTS, reduction)) == pytest.approx(float(expected), rel=1e-6)


def test_reduce_none_returns_weighted_values():
    np.testing.assert_array_equal(L.reduce(VALUES, WEIGHTS, "none"), VALUES * WEIGHTS)
    np.testing.assert_array_equal(L.reduce(VALUES, None, None), VALUES)


def test_zero_weights_still_count_in_the_batch_size():
    w = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
    assert float(L.reduce(VALUES, w)) == pytest.approx(3.0 / 4)
    assert float(L.reduce(VALUES, w, "mean_with_sample_weight")) == pytest.approx(3.0 / 2)
    assert float(L.reduce(VALUES, np.zeros(4, np.float32), "weighted_mean")) == 0.0  # not NaN


def test_reduce_sample_weight_shapes():
    per_pixel = np.arange(24, dtype=np.float32).reshape(4, 6)
    want = (per_pixel * WEIGHTS[:, None]).sum() / 24
    assert float(L.reduce(per_pixel, WEIGHTS)) == pytest.approx(want, rel=1e-6)
    assert float(L.reduce(VALUES, WEIGHTS[:, None])) == pytest.approx(
        float(L.reduce(VALUES, WEIGHTS)), rel=1e-7
    )
    assert float(L.reduce(VALUES, 2.0)) == pytest.approx(2 * VALUES.mean())
    with pytest.raises(
        ValueError,
        match=r"sample_weight of shape \(3,\) does not fit values of "
        r"shape \(4,\)",
    ):
        L.reduce(VALUES, np.ones(3, np.float32))
    with pytest.raises(
        ValueError,
        match=r"sample_weight of shape \(6,\) does not fit values of "
        r"shape \(4, 6\)",
    ):
        L.reduce(per_pixel, np.ones(6, np.float32))


def test_reduce_mask_divides_by_the_valid_count_like_keras():
    mask = np.array([True, False, True, True])
    assert float(L.reduce(VALUES, mask=mask)) == pytest.approx((1 + 3 + 4) / 3)
    assert float(L.reduce(VALUES, WEIGHTS, mask=mask)) == pytest.approx((1 + 6 + 2) / 3)
    assert float(L.reduce(VALUES, mask=mask, reduction="sum")) == pytest.approx(8.0)
    assert float(L.reduce(VALUES, mask=np.zeros(4, bool))) == 0.0  # nothing valid: 0, not NaN
    # sparse CE's ignore_class plus its mask reproduces Keras' masked mean.
    ids, z = d_sparse_logits(np.random.default_rng(0))
    ids[0] = 2
    per = L.sparse_categorical_crossentropy(y_true=ids, y_pred=z, from_logits=True, ignore_class=2)
    valid = ids != 2
    assert float(L.reduce(per, mask=valid)) == pytest.approx(float(np.asarray(per)[valid].mean()))


def test_reduce_is_jittable_and_bad_input_is_clear():
    assert float(jax.jit(L.reduce)(VALUES, WEIGHTS)) == pytest.approx(
        float(L.reduce(VALUES, WEIGHTS))
    )
    with pytest.raises(
        ValueError, match="Unknown reduction 'sum_over_batch'. Did you mean 'sum_over_batch_size'"
    ):
        L.reduce(VALUES, reduction="sum_over_batch")
    with pytest.raises(TypeError, match="reduce: values must be floating, got dtype int32"):
        L.reduce(np.array([1, 2], np.int32))
    with pytest.raises(TypeError, match="reduction must be a string or None, got 3"):
        L.reduce(VALUES, reduction=3)


# ---------------------------------------------------------------------------------------------
# The slide's last-layer table.


@pytest.mark.parametrize(
    ("task", "activation", "loss", "alternatives"),
    [
        ("binary", "sigmoid", "binary_crossentropy", ()),
        ("multiclass", "softmax", "categorical_crossentropy", ("sparse_categorical_crossentropy",)),
        ("multilabel", "sigmoid", "binary_crossentropy", ()),
        ("regression", None, "mean_squared_error", ()),
        ("regression_0_1", "sigmoid", "mean_squared_error", ("binary_crossentropy",)),
    ],
)
def test_for_task_matches_the_slide_table(task, activation, loss, alternatives):
    row = L.for_task(task)
    assert (row.activation, row.loss, row.task, row.alternatives) == (
        activation,
        loss,
        task,
        alternatives,
    )
    act, loss_name, *_ = row
    assert callable(activations.get(act)) and callable(L.get(loss_name))
    assert L.LAST_LAYER_TABLE[task] is row


def test_for_task_activation_plus_loss_equals_the_from_logits_loss():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (N, K)).astype(np.float32)
    for task, y in [
        ("binary", (rng.random((N, 1)) > 0.5).astype(np.float32)),
        ("multiclass", np.eye(K, dtype=np.float32)[rng.integers(0, K, N)]),
        ("multilabel", (rng.random((N, K)) > 0.5).astype(np.float32)),
    ]:
        act, loss, *_ = L.for_task(task)
        zz = z[:, : y.shape[1]]
        probs = activations.get(act)(zz)
        np.testing.assert_allclose(
            L.get(loss)(y_true=y, y_pred=probs),
            L.get(loss, from_logits=True)(y_true=y, y_pred=zz),
            rtol=1e-4,
            err_msg=task,
        )


def test_for_task_aliases_and_errors():
    assert L.for_task("Multiclass-Single-Label") is L.for_task("multiclass")
    assert L.for_task("multi_label") is L.for_task("multilabel")
    with pytest.raises(ValueError, match="Unknown task 'regresion'. Did you mean 'regression'"):
        L.for_task("regresion")
    with pytest.raises(TypeError, match="task must be a string, got 3"):
        L.for_task(3)


# ---------------------------------------------------------------------------------------------
# get: Keras identifiers.


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sparse_categorical_crossentropy", L.sparse_categorical_crossentropy),
        ("categorical_crossentropy", L.categorical_crossentropy),
        ("binary_crossentropy", L.binary_crossentropy),
        ("bce", L.binary_crossentropy),
        ("mse", L.mean_squared_error),
        ("MSE", L.mean_squared_error),
        ("mae", L.mean_absolute_error),
        ("mape", L.mean_absolute_percentage_error),
        ("msle", L.mean_squared_logarithmic_error),
        ("kld", L.kl_divergence),
        ("KLD", L.kl_divergence),
        ("kl_divergence", L.kl_divergence),
        ("kullback_leibler_divergence", L.kl_divergence),
        ("logcosh", L.log_cosh),
        ("log_cosh", L.log_cosh),
        ("huber", L.huber),
        ("huber_loss", L.huber),
        ("poisson", L.poisson),
        ("cosine_similarity", L.cosine_similarity),
        ("hinge", L.hinge),
        ("squared_hinge", L.squared_hinge),
        ("categorical_hinge", L.categorical_hinge),
        ("multiclass_svm", L.multiclass_svm),
        ("MeanSquaredError", L.mean_squared_error),
        ("SparseCategoricalCrossentropy", L.sparse_categorical_crossentropy),
        ("CategoricalCrossentropy", L.categorical_crossentropy),
        ("BinaryCrossentropy", L.binary_crossentropy),
    ],
)
def test_get_keras_identifiers(name, expected):
    assert L.get(name) is expected


def test_get_callables_options_and_unknown_names():
    def custom(*, y_true, y_pred):
        return jnp.abs(y_true - y_pred).sum(-1)

    assert L.get(custom) is custom
    bound = L.get("categorical_crossentropy", from_logits=True, label_smoothing=0.1)
    y, z = d_onehot_logits(np.random.default_rng(0))
    np.testing.assert_array_equal(
        bound(y_true=y, y_pred=z),
        L.categorical_crossentropy(y_true=y, y_pred=z, from_logits=True, label_smoothing=0.1),
    )
    with pytest.raises(
        ValueError, match="Unknown loss 'mean_squared_eror'. Did you mean 'mean_squared_error'"
    ):
        L.get("mean_squared_eror")
    with pytest.raises(ValueError, match="Did you mean 'sparse_categorical_crossentropy'"):
        L.get("sparse_categorical_crossentropi")
    with pytest.raises(TypeError, match="loss must be a string identifier or a callable, got int"):
        L.get(3)


def test_data_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        L.mean_squared_error(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))


# ---------------------------------------------------------------------------------------------
# Bad input.

DENSE_LOSSES = [
    L.binary_crossentropy,
    L.categorical_crossentropy,
    L.poisson,
    L.kl_divergence,
    L.mean_squared_error,
    L.mean_absolute_error,
    L.mean_absolute_percentage_error,
    L.mean_squared_logarithmic_error,
    L.cosine_similarity,
    L.huber,
    L.log_cosh,
    L.hinge,
    L.squared_hinge,
    L.categorical_hinge,
    L.binary_focal_crossentropy,
    L.categorical_focal_crossentropy,
    L.dice,
    L.tversky,
    L.smooth_l1,
]
SPARSE_LOSSES = [
    L.sparse_categorical_crossentropy,
    L.multiclass_svm,
    L.multiclass_hinge,
    L.categorical_generalized_cross_entropy,
]
ALL_LOSSES = DENSE_LOSSES + SPARSE_LOSSES


@pytest.mark.parametrize("fn", DENSE_LOSSES, ids=lambda f: f.__name__)
def test_n_versus_n1_broadcast_is_an_error_naming_both_shapes(fn):
    a, b = np.ones((4,), np.float32), np.full((4, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\) and y_pred.shape=\(4, 1\)"):
        fn(y_true=a, y_pred=b)
    with pytest.raises(ValueError, match=r"y_true.shape=\(4, 1\) and y_pred.shape=\(4, 3\)"):
        fn(y_true=np.ones((4, 1), np.float32), y_pred=np.full((4, 3), 0.5, np.float32))


def test_align_ranks_is_keras_compile_level_alignment():
    col, flat = np.zeros((4, 1), np.float32), np.zeros(4, np.float32)
    assert [a.shape for a in L.align_ranks(flat, col)] == [(4, 1), (4, 1)]
    assert [a.shape for a in L.align_ranks(col, flat)] == [(4, 1), (4, 1)]
    # Higher ranks squeeze the trailing 1 instead.
    assert [a.shape for a in L.align_ranks(np.zeros((4, 3)), np.zeros((4, 3, 1)))] == [
        (4, 3),
        (4, 3),
    ]
    # Sparse labels and equal ranks are left alone.
    assert [a.shape for a in L.align_ranks(np.zeros(4), np.zeros((4, 5)))] == [(4,), (4, 5)]
    assert [a.shape for a in L.align_ranks(np.zeros((4, 2)), np.zeros((4, 2)))] == [(4, 2), (4, 2)]
    y, p = L.align_ranks(np.array([0.0, 1.0, 1.0]), np.array([[0.2], [0.7], [0.9]], np.float32))
    np.testing.assert_allclose(
        L.binary_crossentropy(y_true=y, y_pred=p),
        np_binary_crossentropy(np.array([[0.0], [1], [1]]), np.array([[0.2], [0.7], [0.9]])),
        rtol=1e-6,
    )


@pytest.mark.parametrize("fn", ALL_LOSSES, ids=lambda f: f.__name__)
def test_integer_predictions_are_a_type_error(fn):
    y = np.zeros((4,), np.int32) if fn in SPARSE_LOSSES else np.zeros((4, 3), np.float32)
    with pytest.raises(
        TypeError,
        match=r"y_pred must be a floating array .* got dtype int32 "
        r"with shape \(4, 3\)",
    ):
        fn(y_true=y, y_pred=np.ones((4, 3), np.int32))


@pytest.mark.parametrize("fn", ALL_LOSSES + [L.ctc, L.circle], ids=lambda f: f.__name__)
def test_scalar_predictions_cannot_be_a_batch(fn):
    with pytest.raises(
        ValueError,
        match=r"y_pred has shape \(\) \(a scalar\), which cannot be a "
        "batch",
    ):
        fn(y_true=np.float32(1.0), y_pred=np.float32(0.5))


@pytest.mark.parametrize(
    "fn",
    [
        L.categorical_crossentropy,
        L.sparse_categorical_crossentropy,
        L.kl_divergence,
        L.cosine_similarity,
        L.categorical_hinge,
        L.multiclass_svm,
        L.multiclass_hinge,
        L.categorical_generalized_cross_entropy,
        L.categorical_focal_crossentropy,
    ],
    ids=lambda f: f.__name__,
)
def test_class_axis_losses_need_a_batch_and_a_class_axis(fn):
    sparse = fn in SPARSE_LOSSES
    with pytest.raises(
        ValueError,
        match=r"y_pred must have a batch axis and a class axis, "
        r"\[batch, ..., classes\], got shape \(3,\)",
    ):
        fn(y_true=np.int32(1) if sparse else np.ones(3, np.float32), y_pred=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"axis=0 is the batch axis of y_pred \(shape \(4, 3\)\)"):
        fn(
            y_true=np.zeros(4, np.int32) if sparse else np.ones((4, 3), np.float32),
            y_pred=np.ones((4, 3), np.float32),
            axis=0,
        )
    with pytest.raises(ValueError, match=r"axis=2 is out of range for y_pred of shape \(4, 3\)"):
        fn(
            y_true=np.zeros(4, np.int32) if sparse else np.ones((4, 3), np.float32),
            y_pred=np.ones((4, 3), np.float32),
            axis=2,
        )


@pytest.mark.parametrize(
    "fn",
    [L.categorical_crossentropy, L.categorical_hinge, L.categorical_focal_crossentropy],
    ids=lambda f: f.__name__,
)
def test_integer_labels_where_one_hot_is_expected(fn):
    p = np.full((4, 3), 1 / 3, np.float32)
    for ids in (np.array([0, 1, 2, 0]), np.array([[0], [1], [2], [0]])):
        with pytest.raises(
            ValueError,
            match=r"looks like class ids, but one-hot labels of y_pred's "
            r"shape \(4, 3\) are expected. Use "
            "sparse_categorical_crossentropy",
        ):
            fn(y_true=ids, y_pred=p)
    # Integer one-hot labels of the right shape are fine (cast, as Keras does).
    fn(y_true=np.eye(3, dtype=np.int32)[[0, 1, 2, 0]], y_pred=p)


@pytest.mark.parametrize("fn", SPARSE_LOSSES, ids=lambda f: f.__name__)
def test_sparse_losses_reject_float_and_one_hot_labels(fn):
    p = np.full((4, 3), 1 / 3, np.float32)
    with pytest.raises(
        TypeError,
        match=r"y_true must be integer class ids of shape \(4,\), got "
        r"dtype float32 with shape \(4, 3\). They have y_pred's "
        "shape, so they look one-hot",
    ):
        fn(y_true=np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], y_pred=p)
    with pytest.raises(TypeError, match=r"got dtype float32 with shape \(4,\). Cast them"):
        fn(y_true=np.array([0.0, 1, 2, 0], np.float32), y_pred=p)
    with pytest.raises(
        ValueError,
        match=r"y_true must be class ids of shape \(4,\) .* got "
        r"y_true.shape=\(5,\)",
    ):
        fn(y_true=np.zeros(5, np.int32), y_pred=p)
    # (N, 1) labels are accepted, as Keras accepts them.
    np.testing.assert_array_equal(
        fn(y_true=np.array([[0], [1], [2], [0]]), y_pred=p),
        fn(y_true=np.array([0, 1, 2, 0]), y_pred=p),
    )


def test_out_of_range_class_ids():
    p = np.full((2, 3), 1 / 3, np.float32)
    with pytest.raises(
        ValueError, match=r"class ids outside \[0, 3\) for y_pred's 3 classes, e.g. 3"
    ):
        L.sparse_categorical_crossentropy(y_true=np.array([0, 3]), y_pred=p)
    with pytest.raises(ValueError, match=r"outside \[0, 3\).*e.g. -1"):
        L.multiclass_svm(y_true=np.array([-1, 0]), y_pred=p)
    # ignore_class may lie outside the range (a "void" label such as 255).
    out = L.sparse_categorical_crossentropy(y_true=np.array([0, 255]), y_pred=p, ignore_class=255)
    np.testing.assert_allclose(out, [math.log(3), 0.0], rtol=1e-6)
    # Under jit the ids cannot be checked; like Keras' JAX backend, one_hot gives a loss of 0.
    jitted = jax.jit(L.sparse_categorical_crossentropy)
    assert float(jitted(y_true=jnp.array([0, 3]), y_pred=p)[1]) == 0.0


def test_option_values_are_checked():
    y, p = d_binary(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        L.binary_crossentropy(y_true=y, y_pred=p, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got -0.1"):
        L.categorical_crossentropy(y_true=y, y_pred=p, label_smoothing=-0.1)
    with pytest.raises(ValueError, match="huber: delta must be > 0, got 0"):
        L.huber(y_true=y, y_pred=p, delta=0)
    with pytest.raises(ValueError, match="multiclass_svm: margin must be >= 0, got -1"):
        L.multiclass_svm(y_true=np.zeros(N, np.int32), y_pred=p, margin=-1)
    with pytest.raises(TypeError, match="axis must be an int, got True"):
        L.categorical_crossentropy(y_true=y, y_pred=p, axis=True)
    with pytest.raises(TypeError, match="y_true must be a real array, got dtype complex64"):
        L.mean_squared_error(y_true=y.astype(np.complex64), y_pred=p)


# ---------------------------------------------------------------------------------------------
# The losses added for segmentation, detection, sequences and metric learning (issues 15, 17).


def test_focal_losses_reduce_to_crossentropy_at_gamma_0():
    y, p = d_binary_soft(np.random.default_rng(0))
    np.testing.assert_allclose(
        L.binary_focal_crossentropy(y_true=y, y_pred=p, gamma=0.0),
        L.binary_crossentropy(y_true=y, y_pred=p),
        rtol=1e-6,
    )
    y, p = d_onehot_prob(np.random.default_rng(1))
    np.testing.assert_allclose(
        L.categorical_focal_crossentropy(y_true=y, y_pred=p, gamma=0.0, alpha=1.0),
        L.categorical_crossentropy(y_true=y, y_pred=p),
        rtol=1e-6,
    )
    # Keras' focal loss from logits goes through sigmoid + the 1e-7 clip: capped at 16.1 where
    # binary_crossentropy's log-sigmoid keeps growing.
    big = L.binary_focal_crossentropy(
        y_true=np.ones((1, 1), np.float32), y_pred=np.full((1, 1), -50.0, np.float32),
        from_logits=True, gamma=0.0,
    )  # fmt: skip
    assert float(big[0]) == pytest.approx(-math.log(EPS), rel=1e-6)


def test_binary_focal_equals_optax_sigmoid_focal_loss_inside_the_clip():
    # Optax: log-sigmoid cross-entropy times (1 - p_t)^γ, alpha_t when alpha is given; the same
    # numbers wherever sigmoid(z) stays inside Keras' [1e-7, 1 - 1e-7] clip (|z| < 15).
    y, z = d_logits_focal(np.random.default_rng(2))
    np.testing.assert_allclose(
        L.binary_focal_crossentropy(y_true=y, y_pred=z, from_logits=True, gamma=2.0),
        optax.losses.sigmoid_focal_loss(z, y, alpha=None, gamma=2.0).mean(-1),
        rtol=5e-5,
    )
    np.testing.assert_allclose(
        L.binary_focal_crossentropy(
            y_true=y, y_pred=z, from_logits=True, apply_class_balancing=True, alpha=0.25
        ),
        optax.losses.sigmoid_focal_loss(z, y, alpha=0.25, gamma=2.0).mean(-1),
        rtol=5e-5,
    )


@given(any_probs, any_probs, st.floats(0, 5, width=32))
def test_focal_factor_only_down_weights(y, p, gamma):
    bce = np.asarray(_bce(y_true=y, y_pred=p))
    focal = np.asarray(_bfce(y_true=y, y_pred=p, gamma=gamma))
    assert np.all(focal >= 0) and np.all(focal <= bce * (1 + 1e-6) + 1e-7)


@given(any_probs, any_probs)
def test_dice_and_tversky_bounds_and_identities(y, p):
    y = (y > 0.5).astype(np.float32)
    d = np.asarray(_dice(y_true=y, y_pred=p))
    assert np.all(d >= -1e-6) and np.all(d <= 1 + 1e-6)
    # Tversky with α = β = ½ is Dice (up to where ε sits: 2ε in Dice's denominator vs ε).
    t = np.asarray(_tversky(y_true=y, y_pred=p, alpha=0.5, beta=0.5))
    np.testing.assert_allclose(t, d, atol=1e-5)
    perfect = np.asarray(_dice(y_true=y, y_pred=y))
    assert np.all(perfect[y.sum(-1) > 0] < 1e-6)  # a mask matches itself
    assert np.all(perfect[y.sum(-1) == 0] == 1.0)  # two empty masks: 1 - 0/ε, as in Keras


def test_tversky_alpha_weighs_missed_target_pixels_as_keras_computes():
    y = np.array([[1.0, 1.0, 0.0, 0.0]], np.float32)
    missed = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)  # one target pixel missed: 1 FN
    spurious = np.array([[1.0, 1.0, 1.0, 0.0]], np.float32)  # one extra pixel: 1 FP
    # 1 - TP / (TP + α FN + β FP): α acts on the missed pixel, β on the spurious one.
    assert float(L.tversky(y_true=y, y_pred=missed, alpha=0.9, beta=0.1)[0]) == pytest.approx(
        1 - 1 / 1.9, rel=1e-6
    )
    assert float(L.tversky(y_true=y, y_pred=spurious, alpha=0.9, beta=0.1)[0]) == pytest.approx(
        1 - 2 / 2.1, abs=1e-6
    )


def test_dice_axis_default_is_per_example_and_tuples_work():
    y, p = d_mask(np.random.default_rng(3))
    np.testing.assert_array_equal(
        L.dice(y_true=y, y_pred=p), L.dice(y_true=y, y_pred=p, axis=(1, 2, 3))
    )
    per_class = L.dice(y_true=y, y_pred=p, axis=(1, 2))
    assert per_class.shape == (N, 2)
    want = np.stack([np_dice(y[..., k].astype(np.float64), p[..., k]) for k in range(2)], -1)
    np.testing.assert_allclose(per_class, want, rtol=1e-5)
    # Keras' axis=None (the whole batch at once) is the default on the [1, -1] reshape.
    whole = L.dice(y_true=y.reshape(1, -1), y_pred=p.reshape(1, -1))
    np.testing.assert_allclose(
        whole, [np_dice(y.reshape(1, -1), p.reshape(1, -1).astype(np.float64))[0]], rtol=1e-5
    )


def test_smooth_l1_is_huber_over_beta():
    y, p = d_regression(np.random.default_rng(4))
    for beta in (0.1, 1.0, 3.0):
        np.testing.assert_allclose(
            L.smooth_l1(y_true=y, y_pred=p, beta=beta),
            optax.losses.huber_loss(p, y, delta=beta).mean(-1) / beta,
            rtol=1e-5,
        )
        np.testing.assert_allclose(
            L.smooth_l1(y_true=y, y_pred=p, beta=beta),
            L.huber(y_true=y, y_pred=p, delta=beta) / beta,
            rtol=1e-5,
        )
    np.testing.assert_allclose(  # beta = 0: plain L1
        L.smooth_l1(y_true=y, y_pred=p, beta=0.0),
        L.mean_absolute_error(y_true=y, y_pred=p),
        rtol=1e-6,
    )
    g = jax.grad(lambda v: L.smooth_l1(y_true=y, y_pred=v, beta=0.5).sum())(p)
    np.testing.assert_allclose(g, np.clip((p - y) / 0.5, -1, 1) / K, rtol=1e-5, atol=1e-6)


def test_multiclass_hinge_equals_optax_and_bounds_the_slide_svm():
    ids, s = d_sparse_logits(np.random.default_rng(5))
    cs = L.multiclass_hinge(y_true=ids, y_pred=s)
    np.testing.assert_allclose(cs, optax.losses.multiclass_hinge_loss(s, ids), rtol=1e-6, atol=1e-6)
    ww = L.multiclass_svm(y_true=ids, y_pred=s)
    assert np.all(np.asarray(cs) <= np.asarray(ww) + 1e-5)
    two_violations = jnp.array([[0.0, 0.5, 0.5]])  # the slide sums 1.5 + 1.5, Crammer-Singer 1.5
    assert float(L.multiclass_hinge(y_true=jnp.array([0]), y_pred=two_violations)[0]) == 1.5
    # Keras' categorical_hinge differs when every wrong score is negative (its max includes 0).
    neg = jnp.array([[0.5, -2.0, -3.0]])
    assert float(L.multiclass_hinge(y_true=jnp.array([0]), y_pred=neg)[0]) == 0.0
    assert float(L.categorical_hinge(y_true=jnp.array([[1.0, 0, 0]]), y_pred=neg)[0]) == 0.5
    g = jax.grad(lambda v: L.multiclass_hinge(y_true=np.array([0]), y_pred=v).sum())(
        jnp.array([[1.0, 0.5, -3.0, 0.9]])
    )
    np.testing.assert_array_equal(g, [[-1.0, 0.0, 0.0, 1.0]])  # only the worst wrong class


@given(logits, labels, st.floats(0, 5, width=32))
def test_multiclass_hinge_zero_exactly_when_the_margin_holds(f, ids, margin):
    loss = np.asarray(_cs(y_true=ids, y_pred=f, margin=margin))
    wrong = np.where(np.eye(K, dtype=bool)[ids], -np.inf, f)
    gap = f[np.arange(N), ids].astype(np.float64) - wrong.max(-1) - margin
    assert np.all(loss >= 0)
    assert np.all(loss[gap >= 1e-4] == 0) and np.all(loss[gap <= -1e-4] > 0)
    np.testing.assert_allclose(loss, np.maximum(-gap, 0), rtol=1e-5, atol=1e-4)


@given(hnp.arrays(np.float32, (N, K), elements=st.floats(2**-10, 1, width=32)), labels)
def test_generalized_ce_is_bounded_by_crossentropy_and_one_over_q(p, ids):
    p = p / p.sum(-1, keepdims=True)
    for q in (0.1, 0.5, 0.9):
        gce = np.asarray(_gce(y_true=ids, y_pred=p, q=q), np.float64)
        ce = -np.log(p[np.arange(N), ids].astype(np.float64))
        assert np.all(gce >= -1e-6) and np.all(gce <= 1 / q + 1e-6)
        assert np.all(gce <= ce * (1 + 1e-5) + 1e-6)  # (1 - p^q)/q <= -log p


def test_generalized_ce_between_crossentropy_and_mae():
    ids, p = d_sparse_prob(np.random.default_rng(6))
    p_y = p[np.arange(N), ids].astype(np.float64)
    np.testing.assert_allclose(  # q -> 0: -log p_y
        L.categorical_generalized_cross_entropy(y_true=ids, y_pred=p, q=1e-4),
        -np.log(p_y),
        rtol=1e-3,
    )
    np.testing.assert_allclose(  # q -> 1: 1 - p_y (MAE on the true class)
        L.categorical_generalized_cross_entropy(y_true=ids, y_pred=p, q=0.9999),
        1 - p_y,
        rtol=1e-3,
        atol=1e-5,
    )
    # p_y = 0: value 1/q, gradient finite (Keras': -inf).
    zero = np.array([[1.0, 0.0]], np.float32)
    v, g = jax.value_and_grad(
        lambda q: L.categorical_generalized_cross_entropy(
            y_true=np.array([1]), y_pred=q, q=0.5
        ).sum()
    )(zero)
    assert float(v) == 2.0 and np.isfinite(np.asarray(g)).all() and float(g[0, 1]) < -1e18


def test_ctc_equals_optax_ctc_loss():
    labels, z = d_ctc(np.random.default_rng(7))
    paddings = (labels == 0).astype(np.float32)  # right-padded: padding exactly where 0
    np.testing.assert_allclose(
        L.ctc(y_true=labels, y_pred=z),
        optax.ctc_loss(z, np.zeros(z.shape[:2], np.float32), labels, paddings),
        rtol=1e-6,
    )


@given(
    hnp.arrays(np.float32, (N, CTC_FRAMES, CTC_CLASSES), elements=moderate_f32),
    hnp.arrays(np.float32, (N, CTC_FRAMES, 1), elements=st.floats(-100, 100, width=32)),
)
def test_ctc_is_shift_invariant_per_frame_and_a_negative_log_probability(z, shift):
    labels, _ = d_ctc(np.random.default_rng(8))
    loss = np.asarray(_ctc(y_true=labels, y_pred=z))
    assert np.all(loss >= -1e-5)  # -log of a probability
    np.testing.assert_allclose(_ctc(y_true=labels, y_pred=z + shift), loss, rtol=1e-4, atol=1e-3)


def test_ctc_of_an_impossible_label_is_large_not_inf():
    # Three labels "1 1 1" need 5 frames; with 2 frames the probability is 0: Optax's log(0)
    # stand-in (-1e5) gives a large finite loss.
    loss = L.ctc(y_true=np.array([[1, 1, 1]]), y_pred=np.zeros((1, 2, 3), np.float32))
    assert 1e4 < float(loss[0]) < 1e6


def test_circle_masks_anchors_without_pairs_and_permutes_with_the_batch():
    ids, e = d_embeddings(np.random.default_rng(9))
    ids[0] = 7  # a class of its own: no positive
    loss = np.asarray(L.circle(y_true=ids, y_pred=e))
    assert loss[0] == 0.0 and np.all(loss[1:][np.bincount(ids)[ids[1:]] > 1] > 0)
    g = jax.grad(lambda v: L.circle(y_true=ids, y_pred=v).sum())(e)
    assert np.isfinite(np.asarray(g)).all()
    perm = np.random.default_rng(10).permutation(N)
    np.testing.assert_allclose(L.circle(y_true=ids[perm], y_pred=e[perm]), loss[perm], rtol=1e-5)
    # Explicit references equal to the batch give the batch's own loss.
    np.testing.assert_allclose(
        L.circle(y_true=ids, y_pred=e, ref_labels=ids, ref_embeddings=e), loss, rtol=1e-6
    )


def test_cosine_over_axis_tuples_is_the_cosine_of_the_flattened_maps():
    y, p = d_maps_regression(np.random.default_rng(11))
    np.testing.assert_allclose(
        L.cosine_similarity(y_true=y, y_pred=p, axis=(1, 2, 3)),
        L.cosine_similarity(y_true=y.reshape(N, -1), y_pred=p.reshape(N, -1)),
        rtol=1e-5,
        atol=1e-6,
    )
    per_row = L.cosine_similarity(y_true=y, y_pred=p, axis=(3, 2))  # order does not matter
    assert per_row.shape == (N, 3)
    np.testing.assert_allclose(
        per_row, np_cosine_similarity(y.reshape(N, 3, -1), p.reshape(N, 3, -1).astype(np.float64)),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Segmentation maps: pixel-wise sparse cross-entropy with ignore_class (Keras' masked mean).

VOID = 255


def _segmentation_batch(rng, from_logits=True):
    labels = rng.integers(0, K, (3, 4, 5)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.3] = VOID
    labels[2] = VOID  # one image entirely void
    z = rng.normal(0, 3, (3, 4, 5, K)).astype(np.float32)
    return labels, (z if from_logits else np.asarray(jax.nn.softmax(z), np.float32))


@pytest.mark.parametrize("from_logits", [True, False])
def test_pixelwise_sparse_crossentropy_on_maps_with_ignore_class(from_logits):
    labels, z = _segmentation_batch(np.random.default_rng(12), from_logits)
    per_pixel = L.sparse_categorical_crossentropy(
        y_true=labels, y_pred=z, from_logits=from_logits, ignore_class=VOID
    )
    assert per_pixel.shape == (3, 4, 5)
    want = np_sparse_categorical_crossentropy(
        labels.reshape(-1), z.reshape(-1, K).astype(np.float64), from_logits, ignore_class=VOID
    ).reshape(3, 4, 5)
    np.testing.assert_allclose(per_pixel, want, rtol=2e-5, atol=2e-6)
    valid = labels != VOID
    # Keras' value: the sum over valid pixels divided by their number over the whole batch.
    keras_mean = want[valid].sum() / valid.sum()
    assert float(L.reduce(per_pixel, mask=valid)) == pytest.approx(keras_mean, rel=1e-5)
    w = np.array([1.0, 2.0, 0.5], np.float32)  # per-image weights broadcast over the pixels
    assert float(L.reduce(per_pixel, w, mask=valid)) == pytest.approx(
        (want * w[:, None, None])[valid].sum() / valid.sum(), rel=1e-5
    )
    g = jax.grad(
        lambda v: L.reduce(
            L.sparse_categorical_crossentropy(
                y_true=labels, y_pred=v, from_logits=from_logits, ignore_class=VOID
            ),
            mask=valid,
        )
    )(z)
    assert np.isfinite(np.asarray(g)).all()
    assert np.all(np.asarray(g)[~valid] == 0)  # void pixels teach nothing
    # [N, H, W, 1] labels (Keras accepts them) give the same maps.
    np.testing.assert_array_equal(
        L.sparse_categorical_crossentropy(
            y_true=labels[..., None], y_pred=z, from_logits=from_logits, ignore_class=VOID
        ),
        per_pixel,
    )


# ---------------------------------------------------------------------------------------------
# Numerics at the edge of float32: every registered loss, value and gradient finite.

_S = (3, 4)
_any = f32_arrays(_S, extreme_f32())
_half = f32_arrays(_S, extreme_f32(FLOAT32_MAX / 2))  # differences of two stay finite
_eighth = f32_arrays(_S, extreme_f32(FLOAT32_MAX / 8))  # soft labels sum to up to 4
_probs = f32_arrays(_S, unit_f32())
_ids = hnp.arrays(np.int32, (3,), elements=st.integers(0, 3))
_binary01 = hnp.arrays(np.float32, _S, elements=st.sampled_from([0.0, 1.0]))
_one_hot = _ids.map(lambda i: np.eye(4, dtype=np.float32)[i])
_nonneg = f32_arrays(_S, extreme_f32(1e30).map(abs))
_CTC_FIXED = np.array([[1, 2, 0], [2, 2, 1], [0, 0, 0]], np.int32)  # all fit in 6 frames


def _valid_boxes(a):
    """Sort each box's x and y coordinates: ``[..., 4]`` → ``x1 <= x2, y1 <= y2``."""
    xs, ys = np.sort(a[..., 0::2], -1), np.sort(a[..., 1::2], -1)
    return np.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], -1).astype(np.float32)


_boxes_extreme = f32_arrays((3, 4), extreme_f32(4e18)).map(_valid_boxes)

# function -> list of (options, strategy of (y_true, y_pred)), inside the domain where the
# mathematical value is a finite float32 (e.g. MSE needs |ŷ - y| < 1.8e19).
FINITE_DOMAINS = {
    L.binary_crossentropy: [
        ({}, st.tuples(_probs, _any)),
        ({"from_logits": True, "label_smoothing": 0.1}, st.tuples(_probs, _any)),
    ],
    L.categorical_crossentropy: [
        ({}, st.tuples(_one_hot, _any)),
        ({"from_logits": True}, st.tuples(_one_hot, _half)),
        ({"from_logits": True, "label_smoothing": 0.2}, st.tuples(_probs, _eighth)),
    ],
    L.sparse_categorical_crossentropy: [
        ({}, st.tuples(_ids, _any)),
        ({"from_logits": True}, st.tuples(_ids, _half)),
        ({"from_logits": True, "ignore_class": 0}, st.tuples(_ids, _half)),
    ],
    L.poisson: [({}, st.tuples(_nonneg, f32_arrays(_S, extreme_f32(FLOAT32_MAX / 2).map(abs))))],
    L.kl_divergence: [({}, st.tuples(_any, _any))],
    L.mean_squared_error: [({}, st.tuples(*[f32_arrays(_S, extreme_f32(9e18))] * 2))],
    L.mean_absolute_error: [({}, st.tuples(_half, _half))],
    L.mean_absolute_percentage_error: [({}, st.tuples(*[f32_arrays(_S, extreme_f32(1e28))] * 2))],
    L.mean_squared_logarithmic_error: [({}, st.tuples(_any, _any))],
    L.cosine_similarity: [({}, st.tuples(_any, _any)), ({"axis": (1,)}, st.tuples(_any, _any))],
    L.huber: [({}, st.tuples(_half, _half)), ({"delta": 1e-30}, st.tuples(_half, _half))],
    L.log_cosh: [({}, st.tuples(_half, _half))],
    L.hinge: [({}, st.tuples(_binary01, _any))],
    L.squared_hinge: [({}, st.tuples(_binary01, f32_arrays(_S, extreme_f32(1e19))))],
    L.categorical_hinge: [({}, st.tuples(_one_hot, _half))],
    L.multiclass_svm: [({}, st.tuples(_ids, _eighth))],
    L.multiclass_hinge: [({}, st.tuples(_ids, _half))],
    L.smooth_l1: [({}, st.tuples(_half, _half)), ({"beta": 1e-30}, st.tuples(_half, _half))],
    L.binary_focal_crossentropy: [
        ({}, st.tuples(_probs, _probs)),
        ({"gamma": 0.0, "apply_class_balancing": True}, st.tuples(_probs, _probs)),
        ({"from_logits": True}, st.tuples(_probs, _any)),
    ],
    L.categorical_focal_crossentropy: [
        ({}, st.tuples(_one_hot, _any)),
        ({"from_logits": True, "gamma": 0.0}, st.tuples(_one_hot, _any)),
    ],
    L.categorical_generalized_cross_entropy: [({"q": 0.3}, st.tuples(_ids, _probs))],
    L.dice: [({}, st.tuples(_probs, _probs))],
    L.tversky: [({"alpha": 0.9, "beta": 0.1}, st.tuples(_probs, _probs))],
    L.circle: [({}, st.tuples(_ids, f32_arrays(_S, extreme_f32(1.0))))],
    L.ctc: [
        ({}, st.tuples(st.just(_CTC_FIXED), f32_arrays((3, 6, 3), extreme_f32()))),
    ],
    # Valid xyxy boxes (x1 <= x2, y1 <= y2) whose areas stay finite: |coordinate| <= 4e18.
    L.get("iou_loss"): [({}, st.tuples(_boxes_extreme, _boxes_extreme))],
    L.get("giou_loss"): [({}, st.tuples(_boxes_extreme, _boxes_extreme))],
}
_DOMAIN_CASES = [
    pytest.param(fn, kw, strategy, id=f"{fn.__name__}-{i}")
    for fn, entries in FINITE_DOMAINS.items()
    for i, (kw, strategy) in enumerate(entries)
]


def test_every_registered_loss_has_a_finite_domain_test():
    registered = {fn for fn in L._LOSSES.values()}
    assert registered == set(FINITE_DOMAINS), registered ^ set(FINITE_DOMAINS)


@functools.cache
def _values_and_grad(fn, frozen_kw):
    """Per-example values (their batch sum may overflow: that is not the loss's doing) and the
    gradient of their sum, in one compiled program."""
    kw = dict(frozen_kw)

    def values_and_grad(p, y):
        values, vjp = jax.vjp(lambda q: fn(y_true=y, y_pred=q, **kw), p)
        return values, vjp(jnp.ones_like(values))[0]

    return jax.jit(values_and_grad)


@pytest.mark.parametrize(("fn", "kw", "strategy"), _DOMAIN_CASES)
@given(data=st.data())
def test_value_and_gradient_finite_for_extreme_float32_inputs(fn, kw, strategy, data):
    y_true, y_pred = data.draw(strategy)
    values, grad = _values_and_grad(fn, tuple(sorted(kw.items())))(y_pred, y_true)
    assert np.isfinite(np.asarray(values)).all(), (fn.__name__, kw, y_true, y_pred, values)
    assert np.isfinite(np.asarray(grad)).all(), (fn.__name__, kw, y_true, y_pred, grad)


M32 = np.float32(FLOAT32_MAX)


def test_crossentropy_from_the_largest_logits_is_exact():
    z = np.array([[M32, -M32, 0.0]], np.float32)
    for label, want in ((0, 0.0), (2, float(M32))):  # -log p = logsumexp(z) - z_y
        y = np.eye(3, dtype=np.float32)[[label]]
        v, g = jax.value_and_grad(
            lambda q, y=y: L.categorical_crossentropy(y_true=y, y_pred=q, from_logits=True).sum()
        )(z)
        assert float(v) == want
        np.testing.assert_allclose(g, np.asarray(jax.nn.softmax(z)) - y, atol=1e-7)
        s = L.sparse_categorical_crossentropy(y_true=np.array([label]), y_pred=z, from_logits=True)
        assert float(s[0]) == want
    # Smoothed labels 0.1/3 on logits 6.8e38 and 3.4e38 below the top: 0.1/3 · 3 · 3.4e38, finite.
    smoothed = L.categorical_crossentropy(
        y_true=np.array([[1.0, 0.0, 0.0]], np.float32),
        y_pred=z,
        from_logits=True,
        label_smoothing=0.1,
    )
    assert float(smoothed[0]) == pytest.approx(0.1 / 3 * 3 * float(M32), rel=1e-5)


def test_gradients_stay_finite_where_only_the_value_overflows():
    # ŷ - y overflows to inf here (the value is not a float32), but these gradients are bounded.
    y, p = np.full((1, 2), -M32), np.full((1, 2), M32)
    for fn, want in (
        (L.huber, 0.5), (L.smooth_l1, 0.5), (L.log_cosh, 0.5), (L.mean_absolute_error, 0.5),
    ):  # fmt: skip
        g = jax.grad(lambda q, fn=fn: fn(y_true=y, y_pred=q).sum())(p)
        np.testing.assert_allclose(g, want, err_msg=fn.__name__)
    g = jax.grad(lambda q: L.multiclass_hinge(y_true=np.array([0]), y_pred=q).sum())(
        np.array([[-M32, M32]])
    )
    np.testing.assert_array_equal(g, [[-1.0, 1.0]])


def test_large_and_tiny_inputs_give_exact_values():
    # log cosh(e) = |e| - log 2 for large |e| (Keras' e + softplus(-2e) overflows for e < 0).
    v = L.log_cosh(y_true=np.zeros((1, 1), np.float32), y_pred=np.full((1, 1), -1e38, np.float32))
    assert float(v[0]) == pytest.approx(1e38, rel=1e-6)
    # The mean of two large values whose sum overflows.
    v = L.mean_absolute_error(
        y_true=np.zeros((1, 2), np.float32), y_pred=np.full((1, 2), 3e38, np.float32)
    )
    assert float(v[0]) == pytest.approx(3e38, rel=1e-6)
    # Cosine of huge vectors (sum of squares overflows) and small ones: the float64 cosine, not 0.
    a = np.array([[3.0, 4.0]])
    for scale in (5e37, 1e20, 1e-5):
        got = L.cosine_similarity(
            y_true=a.astype(np.float32), y_pred=(a[:, ::-1] * scale).astype(np.float32)
        )
        assert float(got[0]) == pytest.approx(-24 / 25, rel=1e-6), scale
    # Below Keras' norm floor ε = 1e-7 the vector is divided by ε: -(0.6, 0.8)·(4, 3)·1e-30/ε.
    for scale in (1e-30, 2e-38):
        got = L.cosine_similarity(
            y_true=a.astype(np.float32), y_pred=(a[:, ::-1] * scale).astype(np.float32)
        )
        assert float(got[0]) == pytest.approx(-4.8 * scale / EPS, rel=1e-5), scale
    g = jax.grad(lambda q: L.cosine_similarity(y_true=a.astype(np.float32), y_pred=q).sum())(
        np.float32(5e37) * np.array([[4.0, 3.0]], np.float32)
    )
    assert np.isfinite(np.asarray(g)).all()
    # Huber's gradient at large errors is δ·sign(e).
    g = jax.grad(lambda q: L.huber(y_true=np.zeros((1, 1), np.float32), y_pred=q, delta=2.0).sum())(
        np.full((1, 1), 3e38, np.float32)
    )
    assert float(g[0, 0]) == 2.0


def test_reduce_of_an_empty_array_is_a_clear_error():
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        with pytest.raises(ValueError, match=r"reduce: values is empty \(shape \(0,\)\)"):
            L.reduce(np.zeros(0, np.float32), reduction=reduction)
    with pytest.raises(ValueError, match=r"values is empty \(shape \(0, 3\)\)"):
        jax.jit(L.reduce)(np.zeros((0, 3), np.float32))
    assert L.reduce(np.zeros(0, np.float32), reduction="none").shape == (0,)


# ---------------------------------------------------------------------------------------------
# Bad input of the new losses.


def test_new_loss_options_are_checked():
    y, p = d_binary(np.random.default_rng(0))
    with pytest.raises(
        ValueError, match=r"binary_focal_crossentropy: alpha must be in \[0, 1\], got 1.5"
    ):
        L.binary_focal_crossentropy(y_true=y, y_pred=p, alpha=1.5)
    with pytest.raises(ValueError, match="binary_focal_crossentropy: gamma must be >= 0, got -1"):
        L.binary_focal_crossentropy(y_true=y, y_pred=p, gamma=-1)
    oh = np.eye(K, dtype=np.float32)[np.zeros(N, int)]
    with pytest.raises(ValueError, match=r"alpha must be a float or 5 floats .* got shape \(3,\)"):
        L.categorical_focal_crossentropy(y_true=oh, y_pred=p, alpha=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"categorical_focal_crossentropy: alpha must be >= 0"):
        L.categorical_focal_crossentropy(y_true=oh, y_pred=p, alpha=-0.5)
    with pytest.raises(ValueError, match="tversky: beta must be >= 0, got -0.1"):
        L.tversky(y_true=y, y_pred=p, beta=-0.1)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\), got 1.0"):
        L.categorical_generalized_cross_entropy(y_true=np.zeros(N, np.int32), y_pred=p, q=1.0)
    with pytest.raises(ValueError, match="smooth_l1: beta must be >= 0, got -1"):
        L.smooth_l1(y_true=y, y_pred=p, beta=-1)
    with pytest.raises(ValueError, match="multiclass_hinge: margin must be >= 0, got -1"):
        L.multiclass_hinge(y_true=np.zeros(N, np.int32), y_pred=p, margin=-1)
    ids, e = d_embeddings(np.random.default_rng(0))
    with pytest.raises(ValueError, match="circle: gamma must be > 0, got 0"):
        L.circle(y_true=ids, y_pred=e, gamma=0)
    with pytest.raises(ValueError, match="circle: margin must be >= 0, got -0.4"):
        L.circle(y_true=ids, y_pred=e, margin=-0.4)


def test_feature_axes_are_checked():
    y, p = d_mask(np.random.default_rng(0))
    with pytest.raises(
        ValueError, match=r"dice: axis=0 is the batch axis of y_pred \(shape \(6, 3, 3, 2\)\)"
    ):
        L.dice(y_true=y, y_pred=p, axis=(0, 1))
    with pytest.raises(ValueError, match=r"tversky: axis=\(1, -3\) names an axis twice"):
        L.tversky(y_true=y, y_pred=p, axis=(1, -3))
    with pytest.raises(
        ValueError, match=r"axis=4 is out of range for y_pred of shape \(6, 3, 3, 2\)"
    ):
        L.cosine_similarity(y_true=y, y_pred=p, axis=(1, 4))
    with pytest.raises(ValueError, match=r"dice: axis must name at least one axis, got \(\)"):
        L.dice(y_true=y, y_pred=p, axis=())
    with pytest.raises(
        TypeError, match="cosine_similarity: axis must be an int or a tuple of ints, got None"
    ):
        L.cosine_similarity(y_true=y, y_pred=p, axis=None)
    with pytest.raises(
        ValueError, match=r"y_true.shape=\(6, 3, 3\) and y_pred.shape=\(6, 3, 3, 2\)"
    ):
        L.dice(y_true=y[..., 0], y_pred=p)


def test_ctc_bad_input():
    labels, z = d_ctc(np.random.default_rng(0))
    with pytest.raises(
        ValueError,
        match=r"ctc: y_pred must be logits of shape \[batch, frames, classes\], got shape \(6, 15\)",
    ):
        L.ctc(y_true=labels, y_pred=z.reshape(N, -1))
    with pytest.raises(
        ValueError,
        match=r"ctc: y_true must be integer labels of shape \[batch, max_label_length\] \(\[6, L\]\).* got shape \(6,\)",
    ):
        L.ctc(y_true=labels[:, 0], y_pred=z)
    with pytest.raises(
        ValueError, match=r"ctc: y_true must have shape \(5, 3\), got y_true.shape=\(6, 3\)"
    ):
        L.ctc(y_true=labels, y_pred=z[:5])
    with pytest.raises(
        TypeError, match=r"ctc: y_true must be integer class ids .* got dtype float32"
    ):
        L.ctc(y_true=labels.astype(np.float32), y_pred=z)
    with pytest.raises(ValueError, match=r"ctc: y_true holds class ids outside \[0, 3\) .* e.g. 3"):
        L.ctc(y_true=np.array([[1, 3, 0]] * N), y_pred=z)
    with pytest.raises(
        ValueError, match=r"ctc: y_true row 1 is \[1, 0, 2\]: 0 is the blank and the padding"
    ):
        L.ctc(y_true=np.array([[1, 2, 0], [1, 0, 2]] + [[1, 0, 0]] * 4), y_pred=z)


def test_circle_bad_input():
    ids, e = d_embeddings(np.random.default_rng(0))
    with pytest.raises(
        ValueError,
        match=r"circle: y_pred must be embeddings of shape \[batch, dim\], got shape \(6, 2, 2\)",
    ):
        L.circle(y_true=ids, y_pred=e.reshape(N, 2, 2))
    with pytest.raises(
        ValueError, match=r"circle: y_true must have shape \(6,\), got y_true.shape=\(5,\)"
    ):
        L.circle(y_true=ids[:5], y_pred=e)
    with pytest.raises(TypeError, match="circle: y_true must be integer class ids"):
        L.circle(y_true=ids.astype(np.float32), y_pred=e)
    with pytest.raises(ValueError, match="give ref_labels and ref_embeddings together"):
        L.circle(y_true=ids, y_pred=e, ref_embeddings=e)
    with pytest.raises(
        ValueError, match=r"ref_embeddings must have shape \[M, 4\] \(y_pred's dim\), got \(6, 3\)"
    ):
        L.circle(y_true=ids, y_pred=e, ref_labels=ids, ref_embeddings=e[:, :3])
    with pytest.raises(
        ValueError, match=r"ref_labels must have shape \(6,\), got ref_labels.shape=\(2,\)"
    ):
        L.circle(y_true=ids, y_pred=e, ref_labels=ids[:2], ref_embeddings=e)
    assert L.circle(y_true=ids[:, None], y_pred=e).shape == (N,)  # [N, 1] labels as Keras


# ---------------------------------------------------------------------------------------------
# Optional: against Keras 3 itself (runs where keras is installed, e.g. /work/venv-peers).

_KERAS_PAIRS = {
    "bce": "binary_crossentropy",
    "bce_soft": "binary_crossentropy",
    "bce_smooth": "binary_crossentropy",
    "bce_logits": "binary_crossentropy",
    "bce_logits_smooth": "binary_crossentropy",
    "cce": "categorical_crossentropy",
    "cce_smooth": "categorical_crossentropy",
    "cce_logits": "categorical_crossentropy",
    "cce_logits_smooth": "categorical_crossentropy",
    "scce": "sparse_categorical_crossentropy",
    "scce_logits": "sparse_categorical_crossentropy",
    "scce_ignore": "sparse_categorical_crossentropy",
    "poisson": "poisson",
    "kld": "kl_divergence",
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "msle_negative": "mean_squared_logarithmic_error",
    "cosine": "cosine_similarity",
    "huber": "huber",
    "huber_delta": "huber",
    "log_cosh": "log_cosh",
    "hinge_pm1": "hinge",
    "hinge_01": "hinge",
    "squared_hinge": "squared_hinge",
    "categorical_hinge": "categorical_hinge",
    "bfce": "binary_focal_crossentropy",
    "bfce_soft_gamma0": "binary_focal_crossentropy",
    "bfce_logits_balanced": "binary_focal_crossentropy",
    "bfce_smooth": "binary_focal_crossentropy",
    "cfce": "categorical_focal_crossentropy",
    "cfce_logits_alpha": "categorical_focal_crossentropy",
    "cfce_smooth": "categorical_focal_crossentropy",
    "dice": "dice",
    "tversky": "tversky",
    "circle": "circle",
    "circle_options": "circle",
    "ctc": "ctc",
    "gce": "categorical_generalized_cross_entropy",
    "cosine_maps": "cosine_similarity",
}


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


@pytest.mark.crosscheck
@pytest.mark.parametrize("case", list(_KERAS_PAIRS))
def test_matches_keras_losses(keras, case):
    fn, kw, _, make = CASES[case]
    keras_fn = getattr(keras.losses, _KERAS_PAIRS[case])
    for seed in range(3):
        y_true, y_pred = make(np.random.default_rng(seed))
        np.testing.assert_allclose(
            fn(y_true=y_true, y_pred=y_pred, **kw),
            np.asarray(keras_fn(y_true, y_pred, **kw)),
            rtol=1e-6,
            atol=1e-7,
        )


@pytest.mark.crosscheck
@pytest.mark.parametrize(
    "reduction", ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"]
)
def test_reduce_matches_keras_loss_objects(keras, reduction):
    y, p = d_regression(np.random.default_rng(0))
    w = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 3.0], np.float32)
    ours = L.reduce(L.mean_squared_error(y_true=y, y_pred=p), w, reduction)
    theirs = keras.losses.MeanSquaredError(reduction=reduction)(y, p, sample_weight=w)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-6)
    ids, z = d_sparse_logits(np.random.default_rng(1))
    ids[:2] = 2
    per = L.sparse_categorical_crossentropy(y_true=ids, y_pred=z, from_logits=True, ignore_class=2)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=2, reduction=reduction
    )
    np.testing.assert_allclose(
        L.reduce(per, w, reduction, mask=ids != 2),
        np.asarray(keras_loss(ids, z, sample_weight=w)),
        rtol=1e-6,
    )


@pytest.mark.crosscheck
def test_align_ranks_matches_keras_loss_objects(keras):
    y = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    p = np.array([[0.2], [0.7], [0.9], [0.4]], np.float32)
    ours = L.binary_crossentropy(**dict(zip(("y_true", "y_pred"), L.align_ranks(y, p))))
    theirs = keras.losses.BinaryCrossentropy(reduction="none")(y, p)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-6)


# Keras 3.15's identifiers (keras.losses.ALL_OBJECTS_DICT without the base classes): README's
# "all Keras 3 losses" is this list.
KERAS_3_IDENTIFIERS = {
    "binary_crossentropy": L.binary_crossentropy, "BinaryCrossentropy": L.binary_crossentropy,
    "bce": L.binary_crossentropy, "BCE": L.binary_crossentropy,
    "binary_focal_crossentropy": L.binary_focal_crossentropy,
    "BinaryFocalCrossentropy": L.binary_focal_crossentropy,
    "categorical_crossentropy": L.categorical_crossentropy,
    "CategoricalCrossentropy": L.categorical_crossentropy,
    "categorical_focal_crossentropy": L.categorical_focal_crossentropy,
    "CategoricalFocalCrossentropy": L.categorical_focal_crossentropy,
    "sparse_categorical_crossentropy": L.sparse_categorical_crossentropy,
    "SparseCategoricalCrossentropy": L.sparse_categorical_crossentropy,
    "kl_divergence": L.kl_divergence, "KLDivergence": L.kl_divergence,
    "kld": L.kl_divergence, "KLD": L.kl_divergence,
    "poisson": L.poisson, "Poisson": L.poisson,
    "mean_squared_error": L.mean_squared_error, "MeanSquaredError": L.mean_squared_error,
    "mse": L.mean_squared_error, "MSE": L.mean_squared_error,
    "mean_absolute_error": L.mean_absolute_error, "MeanAbsoluteError": L.mean_absolute_error,
    "mae": L.mean_absolute_error, "MAE": L.mean_absolute_error,
    "mean_absolute_percentage_error": L.mean_absolute_percentage_error,
    "MeanAbsolutePercentageError": L.mean_absolute_percentage_error,
    "mape": L.mean_absolute_percentage_error, "MAPE": L.mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": L.mean_squared_logarithmic_error,
    "MeanSquaredLogarithmicError": L.mean_squared_logarithmic_error,
    "msle": L.mean_squared_logarithmic_error, "MSLE": L.mean_squared_logarithmic_error,
    "cosine_similarity": L.cosine_similarity, "CosineSimilarity": L.cosine_similarity,
    "log_cosh": L.log_cosh, "LogCosh": L.log_cosh,
    "huber": L.huber, "Huber": L.huber,
    "hinge": L.hinge, "Hinge": L.hinge,
    "squared_hinge": L.squared_hinge, "SquaredHinge": L.squared_hinge,
    "categorical_hinge": L.categorical_hinge, "CategoricalHinge": L.categorical_hinge,
    "dice": L.dice, "Dice": L.dice,
    "tversky": L.tversky, "Tversky": L.tversky,
    "circle": L.circle, "Circle": L.circle,
    "ctc": L.ctc, "CTC": L.ctc,
    # Exported by keras.losses but not in ALL_OBJECTS_DICT (keras.losses.get does not know it):
    "categorical_generalized_cross_entropy": L.categorical_generalized_cross_entropy,
    "CategoricalGeneralizedCrossEntropy": L.categorical_generalized_cross_entropy,
}  # fmt: skip


@pytest.mark.parametrize("name", list(KERAS_3_IDENTIFIERS))
def test_every_keras_3_loss_identifier_resolves(name):
    assert L.get(name) is KERAS_3_IDENTIFIERS[name]


@pytest.mark.crosscheck
def test_keras_identifier_list_is_complete(keras):
    from keras.src.losses import ALL_OBJECTS_DICT

    names = set(ALL_OBJECTS_DICT) - {"Loss", "LossFunctionWrapper"}
    exported = {n for n in dir(keras.losses) if n[0] != "_"} - {
        "Loss", "get", "serialize", "deserialize",
    }  # fmt: skip
    assert names | exported <= set(KERAS_3_IDENTIFIERS), (names | exported) - set(
        KERAS_3_IDENTIFIERS
    )


@pytest.mark.crosscheck
def test_segmentation_maps_match_keras_masked_mean(keras):
    labels, z = _segmentation_batch(np.random.default_rng(13))
    w = np.array([1.0, 2.0, 0.5], np.float32)
    per_pixel = L.sparse_categorical_crossentropy(
        y_true=labels, y_pred=z, from_logits=True, ignore_class=VOID
    )
    for reduction in ("sum_over_batch_size", "sum", "none"):
        keras_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=VOID, reduction=reduction
        )
        np.testing.assert_allclose(
            L.reduce(per_pixel, w, reduction, mask=labels != VOID),
            # Keras needs the per-image weights spelled out per pixel; fnn takes the [N] prefix.
            np.asarray(
                keras_loss(labels, z, sample_weight=np.broadcast_to(w[:, None, None], labels.shape))
            ),
            rtol=2e-6,
            atol=1e-7,
            err_msg=reduction,
        )


@pytest.mark.crosscheck
def test_circle_and_ctc_loss_objects_match_reduce(keras):
    ids, e = d_embeddings(np.random.default_rng(14))
    ids[0] = 9  # no positive: Keras masks its zero out of the mean
    values = L.circle(y_true=ids, y_pred=e)
    np.testing.assert_allclose(
        L.reduce(values, mask=values > 0), np.asarray(keras.losses.Circle()(ids, e)), rtol=1e-6
    )
    labels, z = d_ctc(np.random.default_rng(15))
    np.testing.assert_allclose(
        L.reduce(L.ctc(y_true=labels, y_pred=z)),
        np.asarray(keras.losses.CTC()(labels, z)),
        rtol=1e-6,
    )
    # Keras' Dice/Tversky default (axis=None) is one value for the whole batch: the [1, -1] form.
    y, p = d_mask(np.random.default_rng(16))
    np.testing.assert_allclose(
        L.dice(y_true=y.reshape(1, -1), y_pred=p.reshape(1, -1))[0],
        np.asarray(keras.losses.dice(y, p)),
        rtol=1e-6,
    )


@pytest.mark.crosscheck
def test_extreme_inputs_where_keras_is_not_finite(keras):
    # The float32 edge cases fixed here (issue 16) are NaN or inf in Keras 3 itself.
    z = np.array([[FLOAT32_MAX, -FLOAT32_MAX, 0.0]], np.float32)
    y = np.array([[1.0, 0.0, 0.0]], np.float32)
    assert not np.isfinite(
        np.asarray(keras.losses.categorical_crossentropy(y, z, from_logits=True))
    ).all()
    assert float(L.categorical_crossentropy(y_true=y, y_pred=z, from_logits=True)[0]) == 0.0
    e = np.full((1, 1), -3e38, np.float32)  # Keras' e + softplus(-2e): -2e overflows
    assert not np.isfinite(np.asarray(keras.losses.log_cosh(np.zeros_like(e), e))).all()
    assert np.isfinite(np.asarray(L.log_cosh(y_true=np.zeros_like(e), y_pred=e))).all()


@pytest.mark.heavy
def test_docstring_examples_run():
    """fnn.losses' docstring examples pass. CI runs them already: the nox `tests` session collects
    `--doctest-modules --pyargs fnn`, which includes fnn.losses; opt-in here (--run-heavy)."""
    import doctest

    result = doctest.testmod(L, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------------------------
# Box losses in the registry: IoU and GIoU losses of fnn.boxes (xyxy boxes [N, ..., 4] → [N]).

BOX_LOSS_NAMES = {
    "iou_loss": "iou",
    "IoULoss": "iou",  # keras_cv.losses.IoULoss (mode="linear")
    "giou_loss": "giou",
    "giou": "giou",
    "GIoULoss": "giou",  # keras_cv.losses.GIoULoss
    "generalized_box_iou_loss": "giou",  # torchvision.ops
}


def np_box_losses(t, p):
    """float64 oracle: ``1 - IoU`` and ``1 - GIoU`` (Rezatofighi et al. 2019), eps 1e-7 as
    torchvision, averaged over the middle axes."""
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)

    def area(b):
        return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])

    iw = np.clip(np.minimum(t[..., 2], p[..., 2]) - np.maximum(t[..., 0], p[..., 0]), 0, None)
    ih = np.clip(np.minimum(t[..., 3], p[..., 3]) - np.maximum(t[..., 1], p[..., 1]), 0, None)
    inter = iw * ih
    union = area(t) + area(p) - inter
    cw = np.maximum(t[..., 2], p[..., 2]) - np.minimum(t[..., 0], p[..., 0])
    ch = np.maximum(t[..., 3], p[..., 3]) - np.minimum(t[..., 1], p[..., 1])
    enclosing = cw * ch
    iou = inter / (union + 1e-7)
    giou = iou - (enclosing - union) / (enclosing + 1e-7)
    n = t.shape[0]
    return {"iou": (1 - iou).reshape(n, -1).mean(1), "giou": (1 - giou).reshape(n, -1).mean(1)}


def _random_boxes(rng, shape):
    xy = rng.uniform(0, 50, shape + (2,))
    wh = rng.uniform(0.5, 30, shape + (2,))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


@pytest.mark.parametrize("name", list(BOX_LOSS_NAMES))
def test_box_losses_resolve_by_name_and_match_the_float64_oracle(name):
    from fnn import boxes

    fn = L.get(name)
    assert fn is {"iou": boxes.iou_loss, "giou": boxes.giou_loss}[BOX_LOSS_NAMES[name]]
    rng = np.random.default_rng(40)
    for shape in ((16,), (6, 3)):  # one box per example, or several (averaged)
        t, p = _random_boxes(rng, shape), _random_boxes(rng, shape)
        p[:2] = t[:2]  # identical boxes: loss 0
        got = fn(y_true=t, y_pred=p)
        assert got.shape == (shape[0],)
        np.testing.assert_allclose(got, np_box_losses(t, p)[BOX_LOSS_NAMES[name]], atol=1e-5)


def test_box_losses_hand_computed_and_in_compile():
    # [0,0,2,2] vs [1,0,3,2]: intersection 2, union 6, enclosing 3×2 = 6 → IoU = GIoU = 1/3;
    # [0,0,1,1] vs [2,0,3,1]: disjoint, enclosing 3 → IoU 0, GIoU = 0 - (3 - 2)/3 = -1/3.
    t = np.array([[0.0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    p = np.array([[1.0, 0, 3, 2], [2, 0, 3, 1]], np.float32)
    np.testing.assert_allclose(L.get("iou_loss")(y_true=t, y_pred=p), [2 / 3, 1.0], atol=1e-6)
    np.testing.assert_allclose(L.get("giou")(y_true=t, y_pred=p), [2 / 3, 4 / 3], atol=1e-6)
    # The name works where compile takes a loss, as one output's loss.
    from fnn.objective import Objective

    loss, _ = Objective({"box": "giou_loss"})({"label": {"box": t}}, {"box": jnp.asarray(p)})
    assert float(loss) == pytest.approx((2 / 3 + 4 / 3) / 2, abs=1e-6)


def test_bare_iou_is_not_a_loss_name():
    # "iou" is the segmentation metric (keras.metrics.IoU / fnn.metrics), not a box loss.
    with pytest.raises(ValueError, match="Unknown loss 'iou'"):
        L.get("iou")


@pytest.mark.crosscheck
def test_giou_loss_by_name_matches_torchvision():
    torch = pytest.importorskip("torch")
    import sys
    import types

    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("stub"))
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(41)
    t, p = _random_boxes(rng, (32,)), _random_boxes(rng, (32,))
    want = ops.generalized_box_iou_loss(torch.tensor(p), torch.tensor(t), reduction="none")
    got = L.get("generalized_box_iou_loss")(y_true=t, y_pred=p)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


def _xywh_to_xyxy(a):
    return np.concatenate([a[..., :2], a[..., :2] + a[..., 2:]], -1).astype(np.float32)


# Boxes at least 0.125 wide and high, so the eps 1e-7 and float32 rounding stay below 1e-3.
_box_pair = st.tuples(
    *[
        st.tuples(
            f32_arrays((4, 2), st.floats(-100, 100, width=32)),
            f32_arrays((4, 2), st.floats(0.125, 50, width=32)),
        ).map(lambda a: _xywh_to_xyxy(np.concatenate(a, -1)))
    ]
    * 2
)
_iou_jit, _giou_jit = jax.jit(L.get("iou_loss")), jax.jit(L.get("giou_loss"))


@given(_box_pair, st.floats(-50, 50, width=32), st.floats(0.25, 4.0, width=32))
def test_box_losses_bounds_symmetry_translation_and_scale(pair, shift, scale):
    t, p = pair
    for fn, hi in ((_iou_jit, 1.0), (_giou_jit, 2.0)):
        value = np.asarray(fn(y_true=t, y_pred=p))
        assert np.all(value >= -1e-6) and np.all(value <= hi + 1e-6)
        np.testing.assert_allclose(fn(y_true=p, y_pred=t), value, atol=1e-6)  # symmetric
        moved = fn(y_true=t + np.float32(shift), y_pred=p + np.float32(shift))
        np.testing.assert_allclose(moved, value, atol=1e-3)  # translation invariant
        big = np.asarray(fn(y_true=t * np.float32(scale), y_pred=p * np.float32(scale)))
        np.testing.assert_allclose(big, value, atol=1e-4)  # scale invariant
    # GIoU loss >= IoU loss (the enclosing penalty is >= 0), equal when one box holds the other
    assert np.all(
        np.asarray(_giou_jit(y_true=t, y_pred=p)) >= np.asarray(_iou_jit(y_true=t, y_pred=p)) - 1e-6
    )
