"""Spec tests for fnn.landscape (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets";
Goodfellow et al. 2015's interpolation): filter normalisation against a float64 NumPy oracle, the
curves and grids against the model's own loss computed by hand, their symmetries, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st
from strategies import f32_arrays

from fnn import landscape as ls
from fnn.models import SimpleCNN


def _model(seed=0):
    # BatchNorm and Dropout: the landscape must use the running statistics and no Dropout.
    return SimpleCNN(
        3,
        input_shape=(6, 6, 1),
        filters=(4,),
        dense=(5,),
        batch_norm=True,
        dropout=0.5,
        output_activation=None,
        rngs=nnx.Rngs(seed),
    )


def _perturb_batch_stats(model, seed):
    # Non-trivial running statistics, different per model, so that using (or interpolating)
    # them matters.
    rng = np.random.default_rng(seed)
    for norm in model.norms:
        norm.mean[...] = jnp.asarray(rng.normal(size=norm.mean.shape), jnp.float32)
        norm.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=norm.var.shape), jnp.float32)


def _data(n=11, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(n, 6, 6, 1)).astype(np.float32),
        "label": rng.integers(0, 3, size=n),
    }


def _oracle_loss_and_accuracy(logits, labels):
    # float64 softmax cross-entropy (the slide's -log p_y) and top-1 accuracy.
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    loss = -log_p[np.arange(len(labels)), labels].mean()
    return loss, (np.argmax(z, -1) == labels).mean()


def _eval_logits(graphdef, params, rest, x):
    model = nnx.merge(graphdef, params, rest)
    model.eval()
    return np.asarray(model(jnp.asarray(x)))


def _oracle_filter_normalize(d, w):
    d, w = np.asarray(d, np.float64), np.asarray(w, np.float64)
    if d.ndim < 2:
        return np.zeros_like(d)
    out = np.empty_like(d)
    for j in range(d.shape[-1]):  # one filter = one output unit = one slice of the last axis
        out[..., j] = d[..., j] / (np.linalg.norm(d[..., j]) + 1e-10) * np.linalg.norm(w[..., j])
    return out


# ---------------------------------------------------------------------------------------------
# Directions


def test_filter_normalize_matches_numpy_oracle_on_a_cnn():
    _, params, _ = ls.inference_split(_model())
    noise = jax.tree.map(
        lambda w: jax.random.normal(jax.random.key(w.size), w.shape, w.dtype), params
    )
    got = ls.filter_normalize(noise, params)
    assert jax.tree.structure(got) == jax.tree.structure(params)
    kinds = set()
    for (path, g), d, w in zip(
        jax.tree.leaves_with_path(got), jax.tree.leaves(noise), jax.tree.leaves(params)
    ):
        np.testing.assert_allclose(g, _oracle_filter_normalize(d, w), rtol=2e-6, atol=1e-7)
        if w.ndim >= 2:
            kinds.add("kernel")
            norms = np.linalg.norm(np.asarray(g, np.float64).reshape(-1, w.shape[-1]), axis=0)
            trained = np.linalg.norm(np.asarray(w, np.float64).reshape(-1, w.shape[-1]), axis=0)
            np.testing.assert_allclose(norms, trained, rtol=1e-5)
        else:
            kinds.add(jax.tree_util.keystr(path).split("'")[-2])  # bias / scale
            assert not np.any(np.asarray(g)), jax.tree_util.keystr(path)
    assert kinds == {"kernel", "bias", "scale"}  # conv, dense, BatchNorm scale and offset seen


@pytest.mark.crosscheck
def test_filter_normalize_matches_the_papers_layout_in_pytorch():
    # Li et al.'s code works on PyTorch weights, where a filter is the FIRST axis (OIHW conv
    # weights, [out, in] linear weights). Transcribe that rule in torch on the transposed tensors
    # and compare: the last axis of Flax's HWIO / [in, out] is the same output unit.
    torch = pytest.importorskip("torch")
    _, params, _ = ls.inference_split(_model())
    noise = jax.tree.map(
        lambda w: jax.random.normal(jax.random.key(w.size + 7), w.shape, w.dtype), params
    )
    got = ls.filter_normalize(noise, params)
    to_torch = {4: (3, 2, 0, 1), 2: (1, 0), 1: (0,)}  # HWIO -> OIHW, [in, out] -> [out, in]
    for g, d, w in zip(*(jax.tree.leaves(t) for t in (got, noise, params))):
        axes = to_torch[w.ndim]
        dt = torch.tensor(np.asarray(d, np.float64).transpose(axes))
        wt = torch.tensor(np.asarray(w, np.float64).transpose(axes))
        if dt.dim() <= 1:  # the paper's ignore="biasbn"
            dt.fill_(0)
        else:
            for d_f, w_f in zip(dt, wt):
                d_f.mul_(w_f.norm() / (d_f.norm() + 1e-10))
        np.testing.assert_allclose(np.asarray(g).transpose(axes), dt.numpy(), rtol=2e-6, atol=1e-7)


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
)
def test_filter_normalize_invariants(shape, data):
    d = data.draw(f32_arrays(shape))
    w = data.draw(f32_arrays(shape))
    got = np.asarray(ls.filter_normalize({"p": jnp.asarray(d)}, {"p": jnp.asarray(w)})["p"])
    np.testing.assert_allclose(got, _oracle_filter_normalize(d, w), rtol=1e-4, atol=1e-4)
    # Scaling the direction by c > 0 does not change it; scaling the weights by c scales it.
    again = ls.filter_normalize({"p": jnp.asarray(3.0 * d)}, {"p": jnp.asarray(2.0 * w)})["p"]
    np.testing.assert_allclose(np.asarray(again), 2.0 * got, rtol=1e-4, atol=1e-4)


def test_random_direction_norms_keys_and_zeros():
    _, params, _ = ls.inference_split(_model())
    d1 = ls.random_direction(jax.random.key(1), params)
    d2 = ls.random_direction(jax.random.key(2), params)
    again = ls.random_direction(jax.random.key(1), params)
    for a, b, c, w in zip(*(jax.tree.leaves(t) for t in (d1, d2, again, params))):
        np.testing.assert_array_equal(a, c)  # deterministic given the key
        if w.ndim >= 2:
            assert not np.allclose(a, b)
            np.testing.assert_allclose(
                np.linalg.norm(np.asarray(a).reshape(-1, w.shape[-1]), axis=0),
                np.linalg.norm(np.asarray(w).reshape(-1, w.shape[-1]), axis=0),
                rtol=1e-5,
            )
        else:
            assert not np.any(np.asarray(a))


def test_inference_split_leaves_the_model_alone():
    model = _model()
    graphdef, params, rest = ls.inference_split(model)
    assert not model.norms[0].use_running_average  # the caller's model keeps its mode
    copy = nnx.merge(graphdef, params, rest)
    assert copy.norms[0].use_running_average and copy.dropouts[0].deterministic
    assert {
        type(v) for v in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    } == {nnx.Param}  # noqa: E501
    # Split parts are accepted too and come back in inference mode.
    g2, p2, r2 = ls.inference_split(nnx.split(model, nnx.Param, ...))
    assert nnx.merge(g2, p2, r2).dropouts[0].deterministic


# ---------------------------------------------------------------------------------------------
# Curves and grids against the model's loss


def test_line_at_zero_is_the_models_loss_in_inference_mode():
    model = _model()
    _perturb_batch_stats(model, 0)
    data = _data(n=11)
    graphdef, params, rest = ls.inference_split(model)
    d = ls.random_direction(jax.random.key(0), params)
    # batch_size 4 does not divide 11: the padded examples must not count.
    curve = ls.line(model, data, d, alphas=[-0.5, 0.0, 0.7], batch_size=4)
    want_loss, want_acc = _oracle_loss_and_accuracy(
        _eval_logits(graphdef, params, rest, data["image"]), data["label"]
    )
    np.testing.assert_allclose(curve.loss[1], want_loss, rtol=1e-5)
    np.testing.assert_allclose(curve.accuracy[1], want_acc)
    # Away from zero: the loss of θ + α d, computed by hand.
    moved = jax.tree.map(lambda w, v: w + 0.7 * v, params, d)
    want_loss, want_acc = _oracle_loss_and_accuracy(
        _eval_logits(graphdef, moved, rest, data["image"]), data["label"]
    )
    np.testing.assert_allclose(curve.loss[2], want_loss, rtol=1e-5)
    np.testing.assert_allclose(curve.accuracy[2], want_acc)
    assert curve.loss[0] != curve.loss[1]
    # The batch size does not change the numbers.
    whole = ls.line(model, data, d, alphas=[-0.5, 0.0, 0.7], batch_size=64)
    np.testing.assert_allclose(whole.loss, curve.loss, rtol=1e-5)
    assert not model.dropouts[0].deterministic  # the caller's model is not switched to eval


def test_line_one_hot_labels_named_loss_and_probability_model():
    model = _model()
    data = _data(n=8)
    graphdef, params, rest = ls.inference_split(model)
    d = ls.random_direction(jax.random.key(3), params)
    sparse = ls.line(model, data, d, steps=3)
    one_hot = ls.line(model, (data["image"], np.eye(3)[data["label"]]), d, steps=3)
    np.testing.assert_allclose(one_hot.loss, sparse.loss, rtol=1e-6)
    np.testing.assert_allclose(one_hot.accuracy, sparse.accuracy)
    named = ls.line(
        model,
        data,
        d,
        steps=3,
        loss=lambda *, y_true, y_pred: (
            -jax.nn.log_softmax(y_pred)[jnp.arange(y_true.shape[0]), y_true]
        ),
    )
    np.testing.assert_allclose(named.loss, sparse.loss, rtol=1e-5)


def test_interpolation_endpoints_are_each_solutions_loss():
    model_a, model_b = _model(0), _model(1)
    _perturb_batch_stats(model_a, 0)
    _perturb_batch_stats(model_b, 1)
    data = _data(n=9)
    curve = ls.interpolate(model_a, model_b, data, alphas=[0.0, 0.5, 1.0], batch_size=4)
    for alpha, model in [(0, model_a), (2, model_b)]:
        want_loss, want_acc = _oracle_loss_and_accuracy(
            _eval_logits(*ls.inference_split(model), data["image"]), data["label"]
        )
        np.testing.assert_allclose(curve.loss[alpha], want_loss, rtol=1e-5)
        np.testing.assert_allclose(curve.accuracy[alpha], want_acc)
    # The midpoint: parameters and BatchNorm statistics averaged.
    g, pa, ra = ls.inference_split(model_a)
    _, pb, rb = ls.inference_split(model_b)
    mid = lambda a, b: (a + b) / 2 if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    want_loss, _ = _oracle_loss_and_accuracy(
        _eval_logits(g, jax.tree.map(mid, pa, pb), jax.tree.map(mid, ra, rb), data["image"]),
        data["label"],
    )
    np.testing.assert_allclose(curve.loss[1], want_loss, rtol=1e-5)


def test_surface_shape_axes_and_symmetries():
    model = _model()
    _perturb_batch_stats(model, 2)
    data = _data(n=7)
    _, params, _ = ls.inference_split(model)
    d1 = ls.random_direction(jax.random.key(1), params)
    d2 = ls.random_direction(jax.random.key(2), params)
    xs, ys = np.array([-1.0, 0.0, 0.5, 1.0]), np.array([-0.5, 0.0, 0.5])
    s = ls.surface(model, data, (d1, d2), x=xs, y=ys, batch_size=3)
    assert s.loss.shape == s.accuracy.shape == (3, 4)
    np.testing.assert_array_equal(s.x, xs)
    np.testing.assert_array_equal(s.y, ys)
    # Row y = 0 is the 1-D curve along d1; column x = 0 the curve along d2.
    np.testing.assert_allclose(s.loss[1], ls.line(model, data, d1, alphas=xs).loss, rtol=1e-5)
    np.testing.assert_allclose(s.loss[:, 1], ls.line(model, data, d2, alphas=ys).loss, rtol=1e-5)
    # Swapping the directions and the axes transposes the grid.
    swapped = ls.surface(model, data, (d2, d1), x=ys, y=xs, batch_size=3)
    np.testing.assert_allclose(swapped.loss, s.loss.T, rtol=1e-5)
    # Negating a direction mirrors its axis.
    neg = jax.tree.map(jnp.negative, d1)
    mirrored = ls.surface(model, data, (neg, d2), x=-xs, y=ys, batch_size=3)
    np.testing.assert_allclose(mirrored.loss, s.loss, rtol=1e-5)
    # Default axes: steps points over span, the centre is the trained model.
    default = ls.surface(model, data, [d1, d2], steps=3)
    np.testing.assert_array_equal(default.x, [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(default.loss[1, 1], s.loss[1, 1], rtol=1e-5)


def test_surface_compiles_once_for_all_rows():
    traces = []

    def counting_loss(*, y_true, y_pred):
        traces.append(1)  # runs once per trace, not once per grid point
        return -jax.nn.log_softmax(y_pred)[jnp.arange(y_true.shape[0]), y_true]

    model = _model()
    _, params, _ = ls.inference_split(model)
    ds = [ls.random_direction(jax.random.key(k), params) for k in (1, 2)]
    s = ls.surface(model, _data(n=5), ds, steps=4, loss=counting_loss, batch_size=2)
    assert s.loss.shape == (4, 4) and np.all(np.isfinite(s.loss))
    assert len(traces) == 1
    # A second grid of the same model, shapes and loss reuses the compiled program.
    ls.surface(model, _data(n=5, seed=1), ds[::-1], steps=4, loss=counting_loss, batch_size=2)
    assert len(traces) == 1


_SCALING = {}


@given(
    alphas=st.lists(st.floats(-1.5, 1.5, width=32), min_size=3, max_size=3),
    scale=st.floats(0.25, 4.0),
)
def test_line_depends_only_on_alpha_times_direction(alphas, scale):
    # f(alpha; c d) = f(c alpha; d): the curve is a function of the point theta + alpha d only.
    # One model and data for every example, so the compiled program is reused (no recompile).
    if not _SCALING:
        model = _model()
        _perturb_batch_stats(model, 3)
        params = ls.inference_split(model)[1]
        _SCALING.update(
            model=model, data=_data(n=6), d=ls.random_direction(jax.random.key(4), params)
        )
    model, data, d = _SCALING["model"], _SCALING["data"], _SCALING["d"]
    alphas = np.asarray(alphas, np.float32)
    scaled = jax.tree.map(lambda v: scale * v, d)
    a = ls.line(model, data, scaled, alphas=alphas, batch_size=4)
    b = ls.line(model, data, d, alphas=scale * alphas, batch_size=4)
    np.testing.assert_allclose(a.loss, b.loss, rtol=2e-4, atol=1e-5)


def test_points_per_batch_gives_the_same_grid():
    model = _model()
    _, params, _ = ls.inference_split(model)
    d = ls.random_direction(jax.random.key(1), params)
    one = ls.line(model, _data(n=5), d, steps=5)
    grouped = ls.line(model, _data(n=5), d, steps=5, points_per_batch=2)
    np.testing.assert_allclose(grouped.loss, one.loss, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_bad_inputs_are_clear_errors():
    model = _model()
    _, params, _ = ls.inference_split(model)
    d = ls.random_direction(jax.random.key(0), params)
    data = _data(n=4)
    other = ls.inference_split(
        _model().__class__(3, input_shape=(6, 6, 1), filters=(4,), dense=(6,), rngs=nnx.Rngs(0))
    )[1]
    with pytest.raises(ValueError, match=r"direction must have the same tree structure as params"):
        ls.filter_normalize({"a": jnp.ones((2, 2))}, {"b": jnp.ones((2, 2))})
    with pytest.raises(
        ValueError, match=r"direction leaf \['w'\] has shape \(2, 3\); params has \(3, 2\)"
    ):  # noqa: E501
        ls.filter_normalize({"w": jnp.ones((2, 3))}, {"w": jnp.ones((3, 2))})
    with pytest.raises(ValueError, match=r"direction must have the same tree structure"):
        ls.line(model, data, other)
    with pytest.raises(ValueError, match=r"steps must be a positive int .* got 0"):
        ls.line(model, data, d, steps=0)
    with pytest.raises(ValueError, match=r"steps must be a positive int .* got -3"):
        ls.surface(model, data, (d, d), steps=-3)
    with pytest.raises(ValueError, match=r"span must be \(low, high\) with low <= high"):
        ls.line(model, data, d, span=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        ls.line(model, data, d, batch_size=0)
    with pytest.raises(ValueError, match=r"points_per_batch must be a positive int, got 0"):
        ls.line(model, data, d, points_per_batch=0)
    with pytest.raises(ValueError, match=r"alphas must be a non-empty 1-D array"):
        ls.line(model, data, d, alphas=[])
    with pytest.raises(ValueError, match=r"directions must be a pair"):
        ls.surface(model, data, (d,))
    with pytest.raises(ValueError, match=r"directions\[1\] must have the same tree structure"):
        ls.surface(model, data, (d, other))
    with pytest.raises(ValueError, match=r"as many labels as images.*\(4, 6, 6, 1\).*\(3,\)"):
        ls.line(model, {"image": data["image"], "label": data["label"][:3]}, d)
    with pytest.raises(ValueError, match=r"'image' and 'label'.*\['x', 'y'\]"):
        ls.line(model, {"x": 1, "y": 2}, d)
    wider = SimpleCNN(
        3,
        input_shape=(6, 6, 1),
        filters=(5,),
        dense=(5,),
        batch_norm=True,
        dropout=0.5,
        output_activation=None,
        rngs=nnx.Rngs(0),
    )
    with pytest.raises(ValueError, match=r"model_b's parameters leaf .* has shape"):
        ls.interpolate(model, wider, data)
    with pytest.raises(TypeError, match=r"model must be an nnx.Module or the \(graphdef"):
        ls.inference_split("cnn")
