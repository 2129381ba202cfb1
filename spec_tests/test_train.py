"""Slides: "forward, loss, backward, update" — the pure, compiled train and eval steps.

Oracles are float64 NumPy transcriptions of the slide's network (3×3 "same" convolution, BatchNorm,
ReLU, 2×2 max pool, dense) and of the update ``θ ← θ − η ∇L``; cross-checks against `jax.grad`
and `optax.global_norm`; invariants: purity, no recompilation, the step key, BatchNorm/Dropout
behaviour in train and eval.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fnn
from fnn.models import SimpleCNN
from fnn.train import TrainState, make_eval_step, make_train_step

LR = 0.1
KEY = jax.random.key(7)


def _model(*, dropout=0.0, batch_norm=True, seed=0):
    return SimpleCNN(
        10,
        input_shape=(8, 8, 1),
        filters=(4,),
        dense=(),
        batch_norm=batch_norm,
        dropout=dropout,
        output_activation=None,
        rngs=nnx.Rngs(seed),
    )


def _ce_logits(*, y_true, y_pred):
    return fnn.losses.sparse_categorical_crossentropy(
        y_true=y_true, y_pred=y_pred, from_logits=True
    )


def _batch(n=8, seed=0, weights=False):
    rng = np.random.default_rng(seed)
    b = {
        "image": rng.normal(size=(n, 8, 8, 1)).astype(np.float32),
        "label": rng.integers(0, 10, n).astype(np.int32),
    }
    if weights:
        b["sample_weight"] = rng.uniform(0.0, 2.0, n).astype(np.float32)
    return b


def _copy(state):
    return jax.tree.map(jnp.copy, state)


def _pure(tree):
    def f64(a):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(a))
        return np.asarray(a, np.float64)

    return jax.tree.map(f64, nnx.to_pure_dict(tree))


# ---- float64 oracle of the slide's network ------------------------------------------------------


def _np_conv_same(x, w, b):
    """y[n,i,j,o] = b[o] + Σ_{u,v,c} w[u,v,c,o] x[n,i+u-1,j+v-1,c] (zero padding)."""
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    y = np.zeros((n, h, wd, o))
    for u in range(kh):
        for v in range(kw):
            y += np.einsum("nhwc,co->nhwo", xp[:, u : u + h, v : v + wd, :], w[u, v])
    return y + b


def _np_forward(p, s, x, *, train):
    """Returns (logits, batch_mean, batch_var) in float64."""
    x = np.asarray(x, np.float64)
    conv = p["convs"][0]
    z = _np_conv_same(x, conv["kernel"], conv["bias"])
    mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
    norm = p["norms"][0]
    if train:
        zn = (z - mean) / np.sqrt(var + 1e-5)
    else:
        zn = (z - s["norms"][0]["mean"]) / np.sqrt(s["norms"][0]["var"] + 1e-5)
    a = np.maximum(zn * norm["scale"] + norm["bias"], 0.0)
    n, h, w, c = a.shape
    pooled = a.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    dense = p["denses"][0]
    return pooled.reshape(n, -1) @ dense["kernel"] + dense["bias"], mean, var


def _np_ce(logits, labels):
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


# ---- fixtures: compile each step once -----------------------------------------------------------


@pytest.fixture(scope="module")
def steps():
    return {
        "train": make_train_step(_ce_logits, metrics=["accuracy"]),
        "train_weighted": make_train_step(_ce_logits, weighted_metrics=["accuracy"]),
        "frozen_bn": make_train_step(_ce_logits, update_batch_stats=False),
        "eval": make_eval_step(_ce_logits, metrics=["accuracy"]),
    }


@pytest.fixture(scope="module")
def state0():
    return TrainState.create(_model(), optax.sgd(LR))


# ---- purity, compilation, keys ------------------------------------------------------------------


def test_step_is_pure_and_deterministic(steps, state0):
    batch = _batch()
    s1, m1 = steps["train"](_copy(state0), batch, KEY)
    s2, m2 = steps["train"](_copy(state0), batch, KEY)
    for a, b in zip(jax.tree.leaves((s1, m1)), jax.tree.leaves((s2, m2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The input state is untouched in value (we passed copies; the step itself has no side effects).
    assert int(state0.step) == 0 and int(s1.step) == 1


def test_no_recompilation_on_second_step(steps, state0):
    step = make_train_step(_ce_logits)
    state = _copy(state0)
    state, _ = step(state, _batch(seed=1), KEY)
    state, _ = step(state, _batch(seed=2), KEY)
    assert step._cache_size() == 1
    ev = make_eval_step(_ce_logits)
    ev(state, _batch(seed=1), KEY)
    ev(state, _batch(seed=2), KEY)
    assert ev._cache_size() == 1


def test_state_is_donated(steps, state0):
    state = _copy(state0)
    leaf = jax.tree.leaves(state.params)[0]
    steps["train"](state, _batch(), KEY)
    assert leaf.is_deleted()


def test_dropout_key_is_fold_in_of_step():
    step = make_train_step(_ce_logits, jit=False)
    base = TrainState.create(_model(dropout=0.5, batch_norm=False), optax.sgd(LR))
    batch = _batch()

    def loss(state, key):
        return float(step(_copy(state), batch, key)[1]["loss"])

    same = loss(base, KEY), loss(base, KEY)
    assert same[0] == same[1]
    assert loss(base, jax.random.key(8)) != same[0]  # another key: another dropout mask
    assert loss(base.replace(step=jnp.asarray(1, jnp.int32)), KEY) != same[0]  # another step
    # Without Dropout the loss cannot depend on the key or the step.
    plain = TrainState.create(_model(dropout=0.0, batch_norm=False), optax.sgd(LR))
    assert loss(plain, KEY) == loss(
        plain.replace(step=jnp.asarray(5, jnp.int32)), jax.random.key(3)
    )


# ---- the oracle: forward, loss, metrics, update -------------------------------------------------


def test_train_step_matches_float64_oracle(steps, state0):
    batch = _batch(weights=True)
    p, s = _pure(state0.params), _pure(state0.model_state)
    logits, bmean, bvar = _np_forward(p, s, batch["image"], train=True)
    per_ex = _np_ce(logits, batch["label"])
    w = batch["sample_weight"].astype(np.float64)
    want_loss = np.sum(per_ex * w) / len(w)  # Keras' sum_over_batch_size
    want_acc_weighted = np.sum((logits.argmax(-1) == batch["label"]) * w) / w.sum()

    state, m = steps["train_weighted"](_copy(state0), batch, KEY)
    np.testing.assert_allclose(float(m["loss"]), want_loss, rtol=2e-5)
    np.testing.assert_allclose(float(m["accuracy"]), want_acc_weighted, rtol=1e-6)
    # BatchNorm running statistics: m ← 0.99 m + 0.01 μ_B, v ← 0.99 v + 0.01 σ²_B (Flax momentum).
    new_s = _pure(state.model_state)["norms"][0]
    np.testing.assert_allclose(
        new_s["mean"], 0.99 * s["norms"][0]["mean"] + 0.01 * bmean, atol=1e-6
    )
    np.testing.assert_allclose(new_s["var"], 0.99 * s["norms"][0]["var"] + 0.01 * bvar, rtol=1e-5)


def test_update_is_sgd_formula_and_norms_cross_check(steps, state0):
    batch = _batch(seed=3)
    graphdef = state0.spec.graphdef

    def loss_fn(params):  # independent of fnn.train: merge, forward, mean CE
        model = nnx.merge(graphdef, params, state0.model_state, copy=True)
        return jnp.mean(_ce_logits(y_true=batch["label"], y_pred=model(batch["image"])))

    grads = jax.grad(loss_fn)(state0.params)
    state, m = steps["train"](_copy(state0), batch, KEY)
    want = jax.tree.map(
        lambda p, g: np.asarray(p, np.float64) - LR * np.asarray(g, np.float64),
        state0.params,
        grads,
    )
    for got, exp in zip(jax.tree.leaves(state.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(got), exp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(m["grad_norm"]), float(optax.tree.norm(grads)), rtol=1e-5)
    pn = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(state.params)))
    np.testing.assert_allclose(float(m["param_norm"]), pn, rtol=1e-5)
    assert "learning_rate" not in m  # plain optax.sgd exposes no rate


def test_learning_rate_metric_and_scale():
    state = TrainState.create(
        _model(batch_norm=False), fnn.optimizers.get("sgd", learning_rate=0.05)
    )
    step = make_train_step(_ce_logits)
    s1, m = step(_copy(state), _batch(), KEY)
    assert float(m["learning_rate"]) == pytest.approx(0.05)
    half = state.replace(lr_scale=jnp.asarray(0.5, jnp.float32))
    s2, m2 = step(_copy(half), _batch(), KEY)
    assert float(m2["learning_rate"]) == pytest.approx(0.025)
    for p0, a, b in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)
    ):
        np.testing.assert_allclose(
            np.asarray(b) - np.asarray(p0),
            0.5 * (np.asarray(a) - np.asarray(p0)),
            rtol=1e-4,
            atol=1e-7,
        )


# ---- train vs eval behaviour --------------------------------------------------------------------


def test_eval_uses_running_statistics_and_no_dropout(steps):
    # A state whose running statistics are not the initial ones, with Dropout in the model.
    state = TrainState.create(_model(dropout=0.5), optax.sgd(LR))
    state, _ = make_train_step(_ce_logits)(state, _batch(seed=5), KEY)
    batch = _batch(seed=6)
    p, s = _pure(state.params), _pure(state.model_state)
    logits, _, _ = _np_forward(p, s, batch["image"], train=False)
    want = _np_ce(logits, batch["label"]).mean()
    ev = make_eval_step(_ce_logits)
    m1 = ev(state, batch, KEY)
    m2 = ev(state, batch, jax.random.key(99))
    np.testing.assert_allclose(float(m1["loss"]), want, rtol=2e-5)
    assert float(m1["loss"]) == float(m2["loss"])  # no randomness in eval


def test_frozen_batchnorm_keeps_statistics(steps, state0):
    state, _ = steps["frozen_bn"](_copy(state0), _batch(), KEY)
    for a, b in zip(jax.tree.leaves(state0.model_state), jax.tree.leaves(state.model_state)):
        if not jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(state0.params), jax.tree.leaves(state.params))
    ]
    assert all(changed)
    # Inference-mode BatchNorm while training: the loss uses the running statistics.
    batch = _batch()
    logits, _, _ = _np_forward(
        _pure(state0.params), _pure(state0.model_state), batch["image"], train=False
    )
    _, m = steps["frozen_bn"](_copy(state0), batch, KEY)
    np.testing.assert_allclose(float(m["loss"]), _np_ce(logits, batch["label"]).mean(), rtol=2e-5)


def test_masked_optimizer_leaves_frozen_params_bit_identical():
    model = _model()
    _, params, _ = nnx.split(model, nnx.Param, ...)
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if "convs" in jax.tree_util.keystr(path) else "train", params
    )
    tx = optax.multi_transform({"train": optax.adam(1e-2), "frozen": optax.set_to_zero()}, labels)
    state = TrainState.create(model, tx)
    p0 = _pure(state.params)
    step = make_train_step(_ce_logits)
    for i in range(3):
        state, _ = step(state, _batch(seed=i), KEY)
    p3 = _pure(state.params)
    np.testing.assert_array_equal(p3["convs"][0]["kernel"], p0["convs"][0]["kernel"])
    assert not np.array_equal(p3["denses"][0]["kernel"], p0["denses"][0]["kernel"])


@pytest.mark.parametrize(
    "tx",
    [
        optax.adam(1e-3),
        optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9)),
        optax.inject_hyperparams(optax.rmsprop)(learning_rate=0.01),
        fnn.optimizers.get("adam"),
    ],
    ids=["adam", "chain", "inject_hyperparams", "fnn-adam"],
)
def test_trainstate_create_initialises_the_optimizer_as_tx_init_does(tx):
    """One compiled program builds the optimizer state (fast cold starts); it must be the state
    ``tx.init`` builds eagerly: same structure, dtypes and values."""
    model = _model()
    _, params, _ = nnx.split(model, nnx.Param, ...)
    got = TrainState.create(model, tx).opt_state
    want = tx.init(params)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_trainstate_create_keeps_an_optimizer_state_that_is_not_arrays():
    """A hand-written transformation whose state holds a Python object cannot come out of a
    compiled program: it is initialised eagerly, as written."""

    def init(params):
        return {"note": "warm-up", "count": jnp.zeros((), jnp.int32)}

    def update(updates, state, params=None):
        return updates, state

    state = TrainState.create(_model(), optax.GradientTransformation(init, update))
    assert state.opt_state["note"] == "warm-up"


def test_trainstate_create_checks_arguments():
    with pytest.raises(TypeError, match="model must be a flax.nnx.Module, got int"):
        TrainState.create(3, optax.sgd(0.1))
    with pytest.raises(TypeError, match="tx must be an optax.GradientTransformation, got str"):
        TrainState.create(_model(), "adam")
    with pytest.raises(
        ValueError, match="Unknown loss 'sparse_categorical_crossentropi'. Did you mean"
    ):
        make_train_step("sparse_categorical_crossentropi")
    with pytest.raises(ValueError, match="Unknown metric 'acuracy'. Did you mean 'accuracy'"):
        make_train_step(_ce_logits, metrics=["acuracy"])


def test_state_model_roundtrip(state0):
    model = state0.model()
    x = jnp.asarray(_batch()["image"])
    logits, _, _ = _np_forward(_pure(state0.params), _pure(state0.model_state), x, train=False)
    np.testing.assert_allclose(np.asarray(model(x)), logits, rtol=1e-5, atol=1e-5)


# ---- fnn.metrics: per-example values and the mergeable mean -------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fnn import metrics as M  # noqa: E402


def test_metrics_match_numpy_oracles():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(12, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 12)
    onehot = np.eye(5, dtype=np.float32)[labels]
    top = np.argsort(-scores, axis=-1)
    np.testing.assert_array_equal(
        M.sparse_categorical_accuracy(y_true=labels, y_pred=scores), top[:, 0] == labels
    )
    np.testing.assert_array_equal(
        M.categorical_accuracy(y_true=onehot, y_pred=scores), top[:, 0] == labels
    )
    for k in (1, 2, 3):
        want = [labels[i] in top[i, :k] for i in range(12)]
        np.testing.assert_array_equal(
            M.sparse_top_k_categorical_accuracy(y_true=labels, y_pred=scores, k=k), want
        )
        np.testing.assert_array_equal(
            M.top_k_categorical_accuracy(y_true=onehot, y_pred=scores, k=k), want
        )
    probs = rng.uniform(size=(12, 3)).astype(np.float32)
    bits = (rng.uniform(size=(12, 3)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(
        M.binary_accuracy(y_true=bits, y_pred=probs), ((probs > 0.5) == bits).mean(-1), rtol=1e-6
    )
    np.testing.assert_allclose(
        M.mean_squared_error(y_true=bits, y_pred=probs),
        ((probs.astype(np.float64) - bits) ** 2).mean(-1),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        M.mean_absolute_error(y_true=bits, y_pred=probs),
        np.abs(probs.astype(np.float64) - bits).mean(-1),
        rtol=1e-6,
    )


def test_accuracy_name_resolves_like_keras():
    assert M.resolve_accuracy((8,), (8, 10)) is M.sparse_categorical_accuracy
    assert M.resolve_accuracy((8, 1), (8, 10)) is M.sparse_categorical_accuracy
    assert M.resolve_accuracy((8, 10), (8, 10)) is M.categorical_accuracy
    assert M.resolve_accuracy((8, 1), (8, 1)) is M.binary_accuracy
    assert M.resolve_accuracy((8,), (8,)) is M.binary_accuracy
    assert M.get("accuracy") is None and M.get("acc") is None
    with pytest.raises(
        ValueError, match=r"Unknown metric 'binary_acuracy'. Did you mean 'binary_accuracy'"
    ):
        M.get("binary_acuracy")


@given(st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=12), st.integers(0, 12))
def test_mean_merges_exactly_however_the_epoch_is_cut(values, cut):
    v = np.asarray(values, np.float32)
    cut = min(cut, len(v))
    parts = M.Mean.from_values(v[:cut]).merge(M.Mean.from_values(v[cut:]))
    whole = M.Mean.from_values(v)
    np.testing.assert_allclose(
        float(parts.compute()), np.mean(v.astype(np.float64)), rtol=1e-4, atol=1e-3
    )
    assert float(parts.count) == float(whole.count) == len(v)
    assert bool(jnp.isnan(M.Mean.empty().compute()))


# ---- grad_norm / param_norm: one reduction over the concatenated leaves (issue 18) ----

from hypothesis.extra import numpy as hnp  # noqa: E402


@given(
    st.lists(
        hnp.arrays(
            np.float32,
            hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
            elements=st.floats(-1e3, 1e3, width=32),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_global_norm_is_the_float64_norm_of_all_leaves(leaves):
    from fnn.steps import _global_norm

    tree = {f"w{i}": jnp.asarray(x) for i, x in enumerate(leaves)}
    want = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in leaves))
    got = float(jax.jit(_global_norm)(tree))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(got, float(optax.tree.norm(tree)), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_global_norm_is_non_finite_when_any_leaf_is(bad, where):
    # TerminateOnNaN reads grad_norm: a non-finite gradient anywhere must make it non-finite.
    from fnn.steps import _global_norm

    tree = [jnp.ones((3, 2)), jnp.zeros(()), jnp.full((5,), 2.0)]
    tree[where] = tree[where].at[()].set(bad) if where == 1 else tree[where].at[0].set(bad)
    assert not np.isfinite(float(jax.jit(_global_norm)(tree)))
    assert float(_global_norm([])) == 0.0
