"""Spec tests for fnn.transfer (slides: feature extraction, fine-tuning) and the EfficientNet parts
it relies on: layout changes against float64 NumPy convolutions, freezing as an optimizer mask
(frozen leaves bit-identical after N steps, with any optimizer), merging with logged skips,
BatchNorm kept in inference mode, the cached-feature fast path.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from fnn import pretrained, transfer
from fnn.models import EfficientNetLite
from fnn.models.efficientnet_lite import depthwise_conv2d

DN = ("NHWC", "HWIO", "NHWC")


# ------------------------------------------------------------------------------------------------
# Layouts: PyTorch semantics written out in float64 NumPy


def torch_conv2d_oracle(x_nchw, w_oihw, groups=1):
    """PyTorch's Conv2d (cross-correlation, no padding, stride 1), float64 loops."""
    n, c, h, w = x_nchw.shape
    o, cg, kh, kw = w_oihw.shape
    out = np.zeros((n, o, h - kh + 1, w - kw + 1))
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                patch = x_nchw[:, g * cg : (g + 1) * cg, i : i + kh, j : j + kw]
                out[:, oc, i, j] = (patch * w_oihw[oc]).sum(axis=(1, 2, 3))
    return out


def test_torch_conv_kernel_matches_pytorch_convolution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 7))
    w = rng.normal(size=(4, 3, 3, 2))
    expected = torch_conv2d_oracle(x, w)
    got = jax.lax.conv_general_dilated(
        jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32),
        jnp.asarray(transfer.torch_conv_kernel(w), jnp.float32),
        (1, 1),
        "VALID",
        dimension_numbers=DN,
    )
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), expected, atol=1e-5)


def test_torch_depthwise_kernel_matches_pytorch_groups():
    rng = np.random.default_rng(1)
    c = 5
    x = rng.normal(size=(2, c, 7, 7))
    w = rng.normal(size=(c, 1, 3, 3))  # PyTorch Conv2d(c, c, 3, groups=c).weight
    expected = torch_conv2d_oracle(x, w, groups=c)
    kernel = transfer.torch_conv_kernel(w)
    assert kernel.shape == (3, 3, 1, c)
    xs = jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32)
    grouped = jax.lax.conv_general_dilated(
        xs, jnp.asarray(kernel, jnp.float32), (1, 1), "VALID", dimension_numbers=DN,
        feature_group_count=c,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(grouped).transpose(0, 3, 1, 2), expected, atol=1e-5)


def test_torch_dense_kernel():
    rng = np.random.default_rng(2)
    w, b, x = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=(4, 5))
    np.testing.assert_allclose(x @ transfer.torch_dense_kernel(w) + b, x @ w.T + b, atol=1e-12)


@pytest.mark.parametrize(
    "fn, shape", [(transfer.torch_conv_kernel, (3, 3, 3)), (transfer.torch_dense_kernel, (3,))]
)
def test_layout_bad_rank(fn, shape):
    with pytest.raises(ValueError, match=rf"got shape \({shape[0]},"):
        fn(np.zeros(shape))


@pytest.fixture(scope="module")
def depthwise_pair():
    grouped = jax.jit(
        lambda x, w, s: jax.lax.conv_general_dilated(
            x, w, (s, s), "SAME", dimension_numbers=DN, feature_group_count=x.shape[-1]
        ),
        static_argnums=2,
    )
    ours = jax.jit(depthwise_conv2d, static_argnums=2)
    return grouped, ours


@given(
    size=st.sampled_from([5, 8, 11]),  # a few fixed sizes (odd and even): few programs to compile
    k=st.sampled_from([3, 5]),
    stride=st.sampled_from([1, 2]),
    seed=st.integers(0, 100),
)
def test_depthwise_conv2d_equals_grouped_same_convolution(depthwise_pair, size, k, stride, seed):
    """The shift-and-add depthwise convolution is XLA's grouped conv with TF "SAME" padding."""
    grouped, ours = depthwise_pair
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 1, 3)), jnp.float32)
    np.testing.assert_allclose(ours(x, w, stride), grouped(x, w, stride), atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 9, 8, 4), (1, 6, 7, 3), (1, 2, 3, 2)])
@pytest.mark.parametrize(
    "k, stride", [(5, 2), (3, 2), (3, 1), (5, 1), (2, 1), (2, 2), (3, 3), (1, 2)]
)
def test_depthwise_conv2d_gradients_match(shape, k, stride):
    """Both gradients (fnn's custom VJP: a dilated, flipped shifted sum for dx and one variadic
    reduction for dK) equal autodiff of XLA's grouped convolution: strided or not, even kernels,
    inputs smaller than the kernel."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 1, shape[-1])), jnp.float32)

    def loss(fn):
        return jax.jit(jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), argnums=(0, 1)))

    ref = loss(
        lambda x, w: jax.lax.conv_general_dilated(
            x, w, (stride, stride), "SAME", dimension_numbers=DN, feature_group_count=shape[-1]
        )
    )(x, w)
    got = loss(lambda x, w: depthwise_conv2d(x, w, stride))(x, w)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_depthwise_conv2d_bfloat16_kernel_gradient_accumulates_in_float32():
    """bf16 compute (fnn.precision): the kernel gradient sums ~10^4 products per tap; it is
    accumulated in float32 and returned in the kernel's dtype, close to the float32 gradient."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(4, 32, 32, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 1, 3)), jnp.float32)
    dy = jnp.asarray(rng.normal(size=(4, 32, 32, 3)), jnp.float32)

    def kernel_grad(dtype):
        _, vjp = jax.vjp(lambda w: depthwise_conv2d(x.astype(dtype), w, 1), w.astype(dtype))
        return vjp(dy.astype(dtype))[0]

    got, ref = kernel_grad(jnp.bfloat16), kernel_grad(jnp.float32)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), ref, rtol=2e-2, atol=0.5)


@pytest.mark.parametrize(
    "x_shape, k_shape, match",
    [
        ((2, 8, 8), (3, 3, 1, 8), r"x \[N, H, W, C\].*got x \(2, 8, 8\)"),
        ((2, 8, 8, 4), (3, 3, 4, 4), r"kernel \[k, k, 1, C\].*kernel \(3, 3, 4, 4\)"),
        ((2, 8, 8, 4), (3, 3, 1, 5), r"kernel \(3, 3, 1, 5\)"),
    ],
)
def test_depthwise_conv2d_bad_shapes(x_shape, k_shape, match):
    with pytest.raises(ValueError, match=match):
        depthwise_conv2d(jnp.zeros(x_shape), jnp.zeros(k_shape))


# ------------------------------------------------------------------------------------------------
# Freezing


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "base": {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.ones(4)},
        "head": {"w": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32), "b": jnp.zeros(2)},
    }


OPTIMIZERS = {
    "sgd": optax.sgd(0.1),
    "momentum": optax.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": optax.adam(1e-2),
    "adamw": optax.adamw(1e-2, weight_decay=0.5),  # decay would move frozen weights if applied
    "rmsprop+clip": optax.chain(optax.clip_by_global_norm(0.5), optax.rmsprop(1e-2)),
    "schedule": optax.adam(optax.cosine_decay_schedule(1e-2, 10)),
    "lamb": optax.lamb(1e-2),
}


def _run(tx, params, steps=6, seed=0):
    state = tx.init(params)
    update = jax.jit(tx.update)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def _bits(a):
    return np.asarray(a).view(np.uint32)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_frozen_leaves_bit_identical_and_others_as_unfrozen(name):
    tx = OPTIMIZERS[name]
    params = _params()
    frozen = _run(transfer.freeze(tx, frozen="base/.*"), params)
    for key in ("w", "b"):
        np.testing.assert_array_equal(_bits(frozen["base"][key]), _bits(params["base"][key]))
    assert not np.array_equal(frozen["head"]["w"], params["head"]["w"])
    # Trainable leaves follow the plain optimizer applied to them alone, with the same gradients
    # (drawn for every leaf in the same order as in _run, the head's passed on).
    rng = np.random.default_rng(0)
    p = {"head": params["head"]}
    state = tx.init(p)
    for _ in range(6):
        grads = jax.tree.map(lambda q: jnp.asarray(rng.normal(size=q.shape), q.dtype), params)
        updates, state = tx.update({"head": grads["head"]}, state, p)
        p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(frozen["head"]["w"], p["head"]["w"], rtol=1e-6, atol=1e-7)


def test_clip_by_global_norm_sees_only_trainable_leaves():
    """Inside the mask the global norm is over the trainable leaves (as if the rest were absent)."""
    params = _params()
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 3.0), params)
    tx = transfer.freeze(optax.clip_by_global_norm(1.0), frozen="base/.*")
    updates, _ = tx.update(grads, tx.init(params), params)
    head_norm = optax.tree.norm(updates["head"])
    assert float(head_norm) == pytest.approx(1.0, rel=1e-6)
    assert float(optax.tree.norm(updates["base"])) == 0.0


@pytest.mark.parametrize(
    "frozen",
    [
        ["base/w", "base/b"],
        {"base": {"w": True, "b": True}, "head": {"w": False, "b": False}},
        lambda params: {"base": {"w": True, "b": True}, "head": {"w": False, "b": False}},
    ],
    ids=["regex-list", "mask-tree", "callable"],
)
def test_mask_forms_agree(frozen):
    params = _params()
    a = _run(transfer.freeze(optax.adam(1e-2), frozen=frozen), params)
    b = _run(transfer.freeze(optax.adam(1e-2), frozen="base/.*"), params)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(_bits(x), _bits(y)), a, b)


def test_freeze_everything_and_nothing():
    params = _params()
    all_frozen = _run(transfer.freeze(optax.adam(1e-2), frozen=True), params)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(_bits(x), _bits(y)), all_frozen, params)
    none = _run(transfer.freeze(optax.adam(1e-2), frozen=False), params)
    plain = _run(optax.adam(1e-2), params)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(_bits(x), _bits(y)), none, plain)


def test_frozen_leaves_have_no_optimizer_moments():
    params = _params()
    state = transfer.freeze(optax.adam(1e-2), frozen="base/.*").init(params)
    sizes = sum(np.size(x) for x in jax.tree.leaves(state))
    head = sum(np.size(x) for x in jax.tree.leaves(params["head"]))
    assert sizes <= 2 * head + 2  # mu and nu for the head, a step count: nothing for the base


def test_freeze_with_fnn_train_step_on_nnx_model():
    """Integration: fnn.train's compiled step with a frozen NNX sub-module, 5 steps."""
    fnn_train = pytest.importorskip("fnn.train")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.base = nnx.Linear(4, 8, rngs=rngs)
            self.head = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.head(jax.nn.relu(self.base(x)))

    def mse(*, y_true, y_pred):
        return jnp.mean((y_pred - y_true) ** 2, axis=-1)

    model = Net(nnx.Rngs(0))
    before = jax.tree.map(np.array, nnx.state(model, nnx.Param))
    tx = transfer.freeze(optax.adamw(1e-2, weight_decay=0.1), frozen="base/.*")
    state = fnn_train.TrainState.create(model, tx)
    step = fnn_train.make_train_step(mse)
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = {
            "image": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
            "label": jnp.asarray(rng.normal(size=(8, 1)), jnp.float32),
        }
        state, _ = step(state, batch, jax.random.key(0))
    after = nnx.to_pure_dict(state.params)
    for key in ("kernel", "bias"):
        np.testing.assert_array_equal(_bits(after["base"][key]), _bits(before["base"][key][...]))
    assert not np.array_equal(after["head"]["kernel"], before["head"]["kernel"][...])


def test_freeze_bad_input():
    with pytest.raises(TypeError, match="tx must be an optax.GradientTransformation, got str"):
        transfer.freeze("adam", frozen="base/.*")


def test_base_frozen_regex_selects_the_right_paths():
    model = nnx.eval_shape(lambda: EfficientNetLite("lite0", num_classes=2, rngs=nnx.Rngs(0)))
    paths = list(transfer._flatten(nnx.state(model, nnx.Param)))
    pattern = transfer.base_frozen_regex(model, trainable_blocks=2)
    import re

    frozen = {p for p in paths if re.fullmatch(pattern, p)}
    for p in paths:
        top = p.startswith(("blocks/14/", "blocks/15/", "head/", "classifier/"))
        assert (p in frozen) != top, p
    all_base = transfer.base_frozen_regex(model)
    assert {p for p in paths if not re.fullmatch(all_base, p)} == {
        "classifier/kernel",
        "classifier/bias",
    }
    with pytest.raises(ValueError, match=r"trainable_blocks must be in \[0, 16\], got 17"):
        transfer.base_frozen_regex(model, trainable_blocks=17)


# ------------------------------------------------------------------------------------------------
# Merging and conversion


def test_merge_params_oracle_and_log(caplog):
    fresh = {
        "base": {"w": np.zeros((2, 2), np.float32)},
        "head": {"w": np.full(3, 7.0, np.float32)},
    }
    # An old head of another size, and a checkpoint entry the model does not have:
    loaded = {"base/w": np.ones((2, 2)), "head/w": np.ones(5), "old_head/w": np.ones(9)}
    with caplog.at_level(logging.INFO, logger="fnn.transfer"):
        merged = transfer.merge_params(loaded, fresh, dont_load=["head/.*", "old_head/.*"])
    np.testing.assert_array_equal(merged["base"]["w"], np.ones((2, 2)))
    assert merged["base"]["w"].dtype == np.float32  # cast to the fresh dtype
    np.testing.assert_array_equal(merged["head"]["w"], np.full(3, 7.0))
    lines = [r.getMessage() for r in caplog.records]
    assert sum("not loaded: head/w" in line for line in lines) == 1
    assert sum("not loaded: old_head/w" in line for line in lines) == 1


def test_merge_params_accepts_nested_and_nnx_state():
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    loaded = {"kernel": np.ones((2, 3)), "bias": np.arange(3.0)}
    merged = transfer.merge_params(loaded, nnx.state(model, nnx.Param))
    np.testing.assert_array_equal(merged["bias"], np.arange(3.0))


@pytest.mark.parametrize(
    "loaded, match",
    [
        ({"a/w": np.ones((2, 3))}, r"shape mismatch for a/w: the model expects \(3, 2\), the loaded weights have \(2, 3\)"),
        ({}, r"1 parameters missing from them \['a/w'\]"),
        ({"a/w": np.ones((3, 2)), "b/w": np.ones(1)}, r"1 not in the model \['b/w'\].*dont_load="),
    ],
)  # fmt: skip
def test_merge_params_errors(loaded, match):
    with pytest.raises(ValueError, match=match):
        transfer.merge_params(loaded, {"a": {"w": np.zeros((3, 2))}})


def test_load_torch_state_dict_errors():
    inited = {"dense": {"kernel": np.zeros((4, 3)), "bias": np.zeros(3)}}
    names = {("dense", "kernel"): ("fc.weight", "dense"), ("dense", "bias"): ("fc.bias", "vector")}
    good = {"fc.weight": np.ones((3, 4)), "fc.bias": np.ones(3), "bn.num_batches_tracked": 1}
    out = transfer.load_torch_state_dict(good, names, inited)
    assert out["dense/kernel"].shape == (4, 3)
    with pytest.raises(
        ValueError, match=r"1 missing keys \['fc.bias'\], 1 unexpected keys \['x'\]"
    ):
        transfer.load_torch_state_dict({"fc.weight": np.ones((3, 4)), "x": 0}, names, inited)
    with pytest.raises(
        ValueError,
        match=r"shape mismatch for dense/kernel \(torch 'fc.weight' \(3, 5\)\): expected \(4, 3\), got \(5, 3\)",
    ):
        transfer.load_torch_state_dict({**good, "fc.weight": np.ones((3, 5))}, names, inited)


def test_parameter_overview_counts():
    tree = {"a": {"kernel": np.ones((2, 3))}, "b": np.arange(4.0)}
    text = transfer.parameter_overview(tree)
    assert "total: 10 parameters in 2 arrays" in text
    assert "| a/kernel | (2, 3) | 6    | 1" in text
    model = nnx.eval_shape(lambda: EfficientNetLite("lite0", rngs=nnx.Rngs(0)))
    short = transfer.parameter_overview(nnx.state(model, nnx.Param), max_rows=3)
    # stem 3 + block 0 (no expansion) 6 + 15 blocks x 9 + head 3 + classifier 2 = 149 arrays
    assert short.splitlines()[-1] == "total: 4,652,008 parameters in 149 arrays"


# ------------------------------------------------------------------------------------------------
# BatchNorm in inference mode, intermediate features, the cached fast path


@pytest.fixture(scope="module")
def lite0_parts():
    """One jitted program: eval / train-mode outputs with frozen and live BatchNorm, 32x32."""
    model = pretrained.load(
        "efficientnet_lite0", num_classes=2, dropout_rate=0.0, drop_connect_rate=0.0
    ).model
    graphdef, state = nnx.split(model)
    x = pretrained.preprocess(
        np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)), size=32, crop_fraction=1.0
    )

    @jax.jit
    def run(state, x):
        m = nnx.merge(graphdef, state)
        m.eval()
        out = {"eval": m(x), "eval_features": m.features(x)}
        out["split"] = m.features_from(m.intermediate(x, 9), 9)
        m.train()
        m.freeze_batchnorm = True
        out["train_frozen"] = m(x)
        out["state_frozen"] = nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))  # values now
        m.freeze_batchnorm = False
        out["train_live"] = m(x)
        out["state_live"] = nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))
        return out

    return run(state, x), nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def test_frozen_batchnorm_stays_in_inference_mode_after_train(lite0_parts):
    out, stats = lite0_parts
    np.testing.assert_array_equal(out["train_frozen"], out["eval"])
    jax.tree.map(np.testing.assert_array_equal, out["state_frozen"], stats)
    # Without the flag, train() uses batch statistics and updates the running averages.
    assert float(jnp.abs(out["train_live"] - out["eval"]).max()) > 1e-3
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), out["state_live"], stats)
    assert all(jax.tree.leaves(changed))


def test_intermediate_then_features_from_equals_features(lite0_parts):
    out, _ = lite0_parts
    np.testing.assert_allclose(out["split"], out["eval_features"], rtol=1e-5, atol=1e-5)


class _Tiny(nnx.Module):
    def __init__(self):
        self.bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))

    def features(self, x):
        return jnp.mean(self.bn(x), axis=(1, 2))


def test_extract_features_oracle_padding_and_eval_mode():
    images = np.random.default_rng(0).normal(size=(5, 3, 3, 2)).astype(np.float32)
    model = _Tiny()
    model.train()  # extract_features must still use the running statistics (mean 0, var 1)
    got = transfer.extract_features(model, images, batch_size=4)
    expected = images.astype(np.float64).mean(axis=(1, 2)) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got.shape == (5, 2)


def test_extract_features_augmented_copies_are_copy_major():
    images = np.zeros((3, 2, 2, 2), np.float32)

    def shift(key, x):  # the same random offset for a whole batch: visible per copy
        return x + jax.random.uniform(key)

    got = transfer.extract_features(_Tiny(), images, augment=shift, copies=2, batch_size=8)
    assert got.shape == (6, 2)
    first, second = got[:3], got[3:]
    assert np.ptp(first) < 1e-6 and np.ptp(second) < 1e-6 and abs(first[0, 0] - second[0, 0]) > 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=np.zeros((3, 2, 2))), r"images must be \[N, H, W, C\], got shape \(3, 2, 2\)"),
        (dict(images=np.zeros((3, 2, 2, 2)), copies=2), r"copies must be 1 without augment.*got 2"),
    ],
)
def test_extract_features_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        transfer.extract_features(_Tiny(), **kwargs)


def test_top_of_base_bad_start():
    model = nnx.eval_shape(lambda: EfficientNetLite("lite0", rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"start must be in \[0, 16\], got 20"):
        transfer.TopOfBase(model, nnx.Linear(1280, 1, rngs=nnx.Rngs(0)), start=20)
