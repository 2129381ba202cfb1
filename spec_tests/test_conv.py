"""Spec tests for fnn.conv: the convolution with a canonical-form VJP.

Slide: a convolution layer computes ``y[n,i,j,o] = Σ_{u,v,c} x̃[n, s·i + d·u, s·j + d·v, c] W[u,v,c,o]``
(padded input x̃, stride s, kernel dilation d, channels c within o's group).

1. Oracle: a float64 NumPy loop transcription of that formula.
2. Cross-check: values and both gradients against `jax.lax.conv_general_dilated` + `jax.grad`
   over a hypothesis grid of strides, paddings (SAME / VALID / explicit, also negative), kernel
   dilations, groups (incl. depthwise); input dilation against a differentiable direct sum (XLA's
   own VJP of base-dilated convolutions crashes its simplifier on some shapes).
3. Invariants: eager == jit, inside `lax.scan`, no recompilation, second derivatives, the compiled
   loop body contains only canonical convolutions, and `Conv` is a drop-in `flax.nnx.Conv`.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

from fnn import conv as fconv
from fnn import onednn
from fnn.conv import Conv, conv2d, conv_general_dilated

NHWC = ("NHWC", "HWIO", "NHWC")
HIGHEST = lax.Precision.HIGHEST
FEW = max(6, settings.default.max_examples // 3)


def _lax_conv(x, w, *, strides, padding, kernel_dilation=1, feature_group_count=1):
    nd = x.ndim - 2
    s = (strides,) * nd if isinstance(strides, int) else strides
    d = (kernel_dilation,) * nd if isinstance(kernel_dilation, int) else kernel_dilation
    return lax.conv_general_dilated(
        x,
        w,
        s,
        padding,
        rhs_dilation=d,
        dimension_numbers=NHWC,
        feature_group_count=feature_group_count,
        precision=HIGHEST,
    )


def _numpy_oracle(x, w, strides, pads, dilation, groups):
    """float64 loops over the slide's formula, explicit (low, high) pads."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, h, wd, c = x.shape
    kh, kw, cg, o = w.shape
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ekh, ekw = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    mh = (xp.shape[1] - ekh) // strides[0] + 1
    mw = (xp.shape[2] - ekw) // strides[1] + 1
    og = o // groups
    y = np.zeros((n, mh, mw, o))
    for i in range(mh):
        for j in range(mw):
            for oc in range(o):
                g = oc // og
                for u in range(kh):
                    for v in range(kw):
                        pix = xp[
                            :, strides[0] * i + dilation[0] * u, strides[1] * j + dilation[1] * v
                        ]
                        y[:, i, j, oc] += pix[:, g * cg : (g + 1) * cg] @ w[u, v, :, oc]
    return y


# ---------------------------------------------------------------- 1. oracle


@pytest.mark.parametrize(
    "name, shape, kshape, strides, padding, pads, dilation, groups",
    [
        ("3x3 same", (2, 5, 6, 3), (3, 3, 3, 4), (1, 1), "SAME", ((1, 1), (1, 1)), (1, 1), 1),
        # TF-SAME with stride 2 on an even size pads (1, 2) for 5x5 (extra pad at the end).
        (
            "dw 5x5 s2 tf-same",
            (1, 8, 8, 3),
            (5, 5, 1, 3),
            (2, 2),
            "SAME",
            ((1, 2), (1, 2)),
            (1, 1),
            3,
        ),
        ("valid s2 dil2", (1, 9, 7, 2), (2, 3, 2, 2), (2, 1), "VALID", ((0, 0), (0, 0)), (2, 2), 1),
        (
            "groups explicit",
            (2, 6, 6, 4),
            (3, 1, 2, 6),
            (1, 2),
            ((2, 0), (1, 3)),
            ((2, 0), (1, 3)),
            (1, 1),
            2,
        ),
    ],
)
def test_oracle_values(name, shape, kshape, strides, padding, pads, dilation, groups):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=kshape).astype(np.float32)
    expected = _numpy_oracle(x, w, strides, pads, dilation, groups)
    for impl in ("canonical", "auto", "xla", "im2col"):
        got = conv2d(
            x,
            w,
            strides=strides,
            padding=padding,
            kernel_dilation=dilation,
            feature_group_count=groups,
            precision=HIGHEST,
            implementation=impl,
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4, err_msg=f"{name} {impl}")


# ---------------------------------------------------------------- 2. cross-check


@st.composite
def conv_configs(draw, input_dilation=False):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = groups > 1 and draw(st.booleans())
    cin = groups * (1 if depthwise else draw(st.integers(1, 2)))
    cout = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ld = (draw(st.integers(1, 3)), draw(st.integers(1, 2))) if input_dilation else (1, 1)
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if input_dilation:
        padding = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(2))
    else:
        padding = draw(
            st.one_of(
                st.sampled_from(["SAME", "VALID", "SAME_LOWER"]),
                st.tuples(*[st.tuples(st.integers(-1, 3), st.integers(-1, 3))] * 2),
            )
        )
    # Keep only configurations whose output is non-empty.
    eff = [(kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1]
    size = [(h - 1) * ld[0] + 1, (w - 1) * ld[1] + 1]
    pads = lax.padtype_to_pads(size, eff, strides, padding) if isinstance(padding, str) else padding
    for n, k, (lo, hi) in zip(size, eff, pads):
        if n + lo + hi - k < 0:
            padding = "SAME" if not input_dilation else ((k, k), (k, k))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w, cin)).astype(np.float32)
    k = rng.normal(size=(kh, kw, cin // groups, cout)).astype(np.float32)
    kwargs = dict(strides=strides, padding=padding, kernel_dilation=dil, feature_group_count=groups)
    return x, k, ld, kwargs


def _value_and_grads(fn, x, w, ct):
    y, vjp = jax.vjp(fn, x, w)
    return (y, *vjp(ct))


@settings(max_examples=FEW)
@given(conv_configs())
def test_values_and_both_gradients_match_lax(config):
    x, w, _, kwargs = config

    def ours(x, w):
        return conv2d(x, w, precision=HIGHEST, implementation="canonical", **kwargs)

    def ref(x, w):
        return _lax_conv(x, w, **kwargs)

    y_shape = jax.eval_shape(ref, x, w).shape  # the cotangent's shape, without computing y
    ct = np.random.default_rng(1).normal(size=y_shape).astype(np.float32)
    got = jax.jit(_value_and_grads, static_argnums=0)(ours, x, w, ct)
    want = jax.jit(_value_and_grads, static_argnums=0)(ref, x, w, ct)
    for name, g, r in zip(("y", "dx", "dW"), got, want):
        assert g.shape == r.shape, (name, kwargs)
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=f"{name} {kwargs}")


@pytest.mark.parametrize("blocked", [True, False])
@pytest.mark.parametrize("n", [1, 8, 9, 20, 300])
@pytest.mark.parametrize("spatial", [(3,), (2, 3), (2, 1, 2)])
def test_batch_channel_swap_in_blocks_is_a_transpose(n, spatial, blocked, monkeypatch):
    """Whole (small images) or in blocks of images (>= 32x32x32 elements each): a transpose."""
    if blocked:
        monkeypatch.setattr(fconv, "_BLOCKED_TRANSPOSE_MIN_ELEMENTS", 0)
    x = np.arange(n * int(np.prod(spatial)) * 3, dtype=np.float32).reshape(n, *spatial, 3)
    got = fconv._swap_batch_and_channels(x)
    np.testing.assert_array_equal(got, np.moveaxis(x, (0, -1), (-1, 0)))


@pytest.mark.parametrize(
    "n, groups, x_spatial, strides",
    [
        (9, 1, (6, 5), (1, 1)),
        (20, 2, (5, 7), (2, 1)),
        (17, 1, (7,), (2,)),
        (12, 3, (3, 4, 3), (1, 2, 1)),
    ],
)
def test_kernel_gradient_of_batches_larger_than_a_block_matches_lax(n, groups, x_spatial, strides):
    rng = np.random.default_rng(n)
    nd = len(x_spatial)
    x = rng.normal(size=(n, *x_spatial, 2 * groups)).astype(np.float32)
    w = rng.normal(size=(*(3,) * nd, 2, 3 * groups)).astype(np.float32)
    dn = fconv._channels_last_dnums(nd)
    kwargs = dict(
        window_strides=strides,
        padding="SAME",
        dimension_numbers=dn,
        feature_group_count=groups,
        precision=HIGHEST,
    )

    def loss(conv):
        return lambda w: jnp.sum(jnp.sin(conv(x, w, **kwargs)))

    ours = fconv.conv_general_dilated
    got = jax.grad(loss(lambda *a, **k: ours(*a, **k, implementation="canonical")))(w)
    want = jax.grad(loss(lax.conv_general_dilated))(w)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("implementation", ["auto", "canonical"])
@pytest.mark.parametrize(
    "x_shape, strides",
    [
        ((2, 5, 7, 3), (1, 1)),
        ((2, 5, 7, 3), (2, 3)),
        ((3, 8, 6), (2,)),
        ((1, 3, 4, 5, 2), (1, 2, 2)),
        ((2, 1, 1, 4), (3, 3)),
    ],
)
def test_pointwise_kernels_are_matmuls_with_lax_numbers(x_shape, strides, implementation):
    """1×1 kernels (no padding, one group) run as one [pixels, C] @ [C, O] product and its two
    transposes: values and both gradients equal XLA's convolution, and no convolution is left."""
    nd = len(x_shape) - 2
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*(1,) * nd, x_shape[-1], 4)), jnp.float32)
    dnums = fconv._channels_last_dnums(nd)

    def ours(x, w):
        return conv_general_dilated(
            x,
            w,
            strides,
            "VALID",
            dimension_numbers=dnums,
            precision=HIGHEST,
            implementation=implementation,
        )

    def ref(x, w):
        return lax.conv_general_dilated(
            x, w, strides, "VALID", dimension_numbers=dnums, precision=HIGHEST
        )

    y_ref = ref(x, w)
    ct = jnp.asarray(rng.normal(size=y_ref.shape), jnp.float32)
    got = jax.jit(_value_and_grads, static_argnums=0)(ours, x, w, ct)
    want = jax.jit(_value_and_grads, static_argnums=0)(ref, x, w, ct)
    for name, g, r in zip(("y", "dx", "dW"), got, want):
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5, err_msg=name)
    hlo = jax.jit(jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), (0, 1))).lower(x, w).as_text()
    assert "convolution" not in hlo
    # plain autodiff of the product: forward mode works too
    t = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    np.testing.assert_allclose(
        jax.jvp(lambda a: ours(a, w), (x,), (t,))[1],
        jax.jvp(lambda a: ref(a, w), (x,), (t,))[1],
        rtol=1e-5,
        atol=1e-5,
    )
    # a padded or grouped 1×1 convolution stays a convolution (same numbers)
    padded = conv_general_dilated(
        x, w, strides, [(1, 0)] * nd, dimension_numbers=dnums, implementation=implementation
    )
    padded_ref = lax.conv_general_dilated(
        x, w, strides, [(1, 0)] * nd, dimension_numbers=dnums, precision=HIGHEST
    )
    np.testing.assert_allclose(padded, padded_ref, rtol=1e-5, atol=1e-5)


def _direct(x, w, *, strides, padding, kernel_dilation, feature_group_count, input_dilation):
    """The slide's sum written with slices (differentiable without any convolution op)."""
    n, h, wd, c = x.shape
    kh, kw, cg, o = w.shape
    g = feature_group_count
    xd = jnp.zeros((n, (h - 1) * input_dilation[0] + 1, (wd - 1) * input_dilation[1] + 1, c))
    xd = xd.at[:, :: input_dilation[0], :: input_dilation[1]].set(x)
    xd = lax.pad(xd, 0.0, [(0, 0, 0), (*padding[0], 0), (*padding[1], 0), (0, 0, 0)])
    d, s = kernel_dilation, strides
    mh = (xd.shape[1] - (kh - 1) * d[0] - 1) // s[0] + 1
    mw = (xd.shape[2] - (kw - 1) * d[1] - 1) // s[1] + 1
    y = 0.0
    for u in range(kh):
        for v in range(kw):
            patch = xd[
                :,
                u * d[0] : u * d[0] + (mh - 1) * s[0] + 1 : s[0],
                v * d[1] : v * d[1] + (mw - 1) * s[1] + 1 : s[1],
            ].reshape(n, mh, mw, g, cg)
            y = y + jnp.einsum(
                "nhwgc,cgo->nhwgo", patch, w[u, v].reshape(cg, g, o // g), precision=HIGHEST
            ).reshape(n, mh, mw, o)
    return y


@pytest.mark.parametrize("implementation", ["canonical", "auto"])
@pytest.mark.parametrize("kernel", [(2, 4), (4, 2), (1, 5)])
def test_padding_wider_than_the_kernel_gradients(implementation, kernel):
    """Padding > k - 1 makes the input gradient's padding negative (a crop). Found by
    hypothesis: a 1x1 input, 2x4 kernel, stride (1, 3), padding 4 gave a dx off by 1.2."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 1, 1, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*kernel, 2, 3)), jnp.float32)
    cfg = dict(window_strides=(1, 3), padding=((4, 4), (4, 4)), precision=HIGHEST)

    def ref(x, w):
        return lax.conv_general_dilated(x, w, dimension_numbers=("NHWC", "HWIO", "NHWC"), **cfg)

    def ours(x, w):
        return conv2d(
            x, w, strides=(1, 3), padding=((4, 4), (4, 4)), precision=HIGHEST,
            implementation=implementation,
        )  # fmt: skip

    ct = np.random.default_rng(1).normal(size=ref(x, w).shape).astype(np.float32)
    for name, g, r in zip(
        ("y", "dx", "dW"), _value_and_grads(ours, x, w, ct), _value_and_grads(ref, x, w, ct)
    ):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5, err_msg=name)


@settings(max_examples=4)
@given(conv_configs(input_dilation=True))
def test_input_dilation_matches_direct_sum(config):
    x, w, ld, kwargs = config

    def ours(x, w):
        return conv2d(
            x, w, input_dilation=ld, precision=HIGHEST, implementation="canonical", **kwargs
        )

    def ref(x, w):
        return _direct(x, w, input_dilation=ld, **kwargs)

    y_shape = jax.eval_shape(ref, x, w).shape  # the cotangent's shape, without computing y
    ct = np.random.default_rng(2).normal(size=y_shape).astype(np.float32)
    got = jax.jit(_value_and_grads, static_argnums=0)(ours, x, w, ct)
    want = jax.jit(_value_and_grads, static_argnums=0)(ref, x, w, ct)
    for name, g, r in zip(("y", "dx", "dW"), got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=f"{name} {ld} {kwargs}")
    # The "xla" implementation computes the same forward values.
    y_xla = conv2d(x, w, input_dilation=ld, precision=HIGHEST, implementation="xla", **kwargs)
    np.testing.assert_allclose(y_xla, want[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(strides=2, padding="SAME"),
        dict(strides=(1, 2), padding=((-1, 2), (1, 0)), kernel_dilation=(2, 1)),
        dict(strides=1, padding="VALID", feature_group_count=3),  # falls back to canonical
    ],
)
def test_im2col_gradients_match_lax(kwargs):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    w = rng.normal(size=(3, 2, 3 // kwargs.get("feature_group_count", 1), 6)).astype(np.float32)
    norm = {k: v for k, v in kwargs.items()}
    for k in ("strides", "kernel_dilation"):
        if isinstance(norm.get(k), int):
            norm[k] = (norm[k],) * 2

    def ours(x, w):
        return conv2d(x, w, precision=HIGHEST, implementation="im2col", **kwargs)

    def ref(x, w):
        return _lax_conv(x, w, **norm)

    ct = np.random.default_rng(9).normal(size=ref(x, w).shape).astype(np.float32)
    for g, r in zip(_value_and_grads(ours, x, w, ct), _value_and_grads(ref, x, w, ct)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "strides, padding, groups",
    [((2, 2), "SAME", 4), ((1, 1), "VALID", 1), ((2, 1), ((1, 0), (2, 1)), 2)],
)
def test_check_grads_numerically_second_order(strides, padding, groups):
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(1, 5, 6, 4)))
        w = jnp.asarray(rng.normal(size=(3, 3, 4 // groups, 4)))

        def f(x, w):
            return conv2d(
                x,
                w,
                strides=strides,
                padding=padding,
                feature_group_count=groups,
                implementation="canonical",
            )

        check_grads(f, (x, w), order=2, modes=["rev"])


def test_second_derivative_matches_lax():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    v = rng.normal(size=w.shape).astype(np.float32)

    def hvp(conv):
        def loss(w):
            return jnp.sum(jnp.tanh(conv(x, w)) ** 2)

        return jax.grad(lambda w: jnp.vdot(jax.grad(loss)(w), v))(w)

    ours = hvp(lambda x, w: conv2d(x, w, strides=2, precision=HIGHEST, implementation="canonical"))
    ref = hvp(lambda x, w: _lax_conv(x, w, strides=(2, 2), padding="SAME"))
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_forward_mode_is_a_clear_error_and_xla_supports_it():
    x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda w: conv2d(x, w, implementation="canonical"), (w,), (w,))
    y, t = jax.jvp(lambda w: conv2d(x, w, implementation="xla"), (w,), (w,))
    np.testing.assert_allclose(t, y)  # linear in w


# ---------------------------------------------------------------- 3. invariants


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 8, 8, 4)).astype(np.float32)
    w = rng.normal(size=(5, 5, 1, 8)).astype(np.float32) * 0.1  # depthwise, multiplier 2
    return x, w


def _dw_loss(w, x, impl="auto"):
    y = conv2d(x, w, strides=2, feature_group_count=4, precision=HIGHEST, implementation=impl)
    return jnp.mean(y**2)


def test_eager_equals_jit_equals_vmap(small_problem):
    x, w = small_problem
    eager = jax.value_and_grad(_dw_loss)(w, x)
    jitted = jax.jit(jax.value_and_grad(_dw_loss))(w, x)
    for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(e, j, rtol=1e-5, atol=1e-6)
    # vmap over a leading axis of kernels (the custom VJP batches).
    ws = jnp.stack([w, 2 * w])
    batched = jax.vmap(jax.grad(_dw_loss), in_axes=(0, None))(ws, x)
    np.testing.assert_allclose(batched[1], jax.grad(_dw_loss)(2 * w, x), rtol=1e-5, atol=1e-6)


def test_no_recompilation_on_second_call(small_problem):
    x, w = small_problem
    traces = []

    @jax.jit
    def step(w, x):
        traces.append(1)
        return w - 0.1 * jax.grad(_dw_loss)(w, x)

    w1 = step(w, x)
    step(w1, x)
    assert len(traces) == 1


def test_inside_scan_equals_python_loop_and_lax(small_problem):
    x, w = small_problem

    def sgd(impl):
        def body(w, _):
            loss, g = jax.value_and_grad(_dw_loss)(w, x, impl)
            return w - 0.5 * g, loss

        return jax.jit(lambda w: lax.scan(body, w, None, length=3))(w)

    w_ours, losses = sgd("canonical")
    w_ref, losses_ref = sgd("xla")
    np.testing.assert_allclose(w_ours, w_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-5)
    loop = w
    for _ in range(3):
        loop = loop - 0.5 * jax.grad(_dw_loss)(loop, x, "canonical")
    np.testing.assert_allclose(w_ours, loop, rtol=1e-5, atol=1e-6)


def _dim_labels(fn, *args):
    text = jax.jit(fn).lower(*args).compile().as_text()
    return set(re.findall(r"dim_labels=([\w>-]+)", text))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU path is what is checked")
def test_compiled_loop_contains_only_canonical_convolutions():
    """The point of the module: inside a while loop, every convolution is NHWC/HWIO/NHWC."""
    x = jnp.ones((2, 6, 6, 2))
    w = jnp.ones((3, 3, 2, 4))

    def train(impl):
        def body(w, _):
            return w - jax.grad(
                lambda w: jnp.sum(conv2d(x, w, strides=2, implementation=impl) ** 2)
            )(w), None

        return lambda w: lax.scan(body, w, None, length=2)[0]

    assert _dim_labels(train("canonical"), w) == {"b01f_01io->b01f"}
    # With oneDNN (fnn.onednn) all three convolutions are custom calls: no XLA convolution left.
    auto = set() if onednn.available() else {"b01f_01io->b01f"}
    assert _dim_labels(train("auto"), w) == auto
    # XLA's own VJP leaves a non-canonical kernel-gradient convolution in the loop.
    assert _dim_labels(train("xla"), w) != {"b01f_01io->b01f"}


def test_conv_general_dilated_signature_matches_lax():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 7, 3)).astype(np.float32)  # 1-D, NWC
    w = rng.normal(size=(3, 3, 4)).astype(np.float32)
    ours = conv_general_dilated(x, w, (2,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
    ref = lax.conv_general_dilated(x, w, (2,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    # Other layouts pass straight through to lax (NCHW here).
    xc = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    wc = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(
        conv_general_dilated(xc, wc, (1, 1), "VALID"),
        lax.conv_general_dilated(xc, wc, (1, 1), "VALID"),
        rtol=1e-6,
    )


# ---------------------------------------------------------------- Conv is a drop-in nnx.Conv


@nnx.jit
def _output_and_gradient(model, x):
    def loss(model):
        return jnp.sum(jnp.sin(model(x)))

    return model(x), nnx.grad(loss)(model)


@pytest.mark.parametrize(
    "kwargs, in_shape",
    [
        (dict(in_features=3, out_features=8, kernel_size=(3, 3)), (2, 9, 9, 3)),
        (
            dict(
                in_features=6,
                out_features=6,
                kernel_size=(5, 5),
                strides=2,
                feature_group_count=6,
                use_bias=False,
            ),
            (1, 8, 8, 6),
        ),
        (
            dict(
                in_features=2, out_features=4, kernel_size=(3,), padding="VALID", kernel_dilation=2
            ),
            (2, 11, 2),
        ),
        (dict(in_features=4, out_features=4, kernel_size=(3, 3), padding="CIRCULAR"), (1, 5, 5, 4)),
        (
            dict(in_features=2, out_features=3, kernel_size=(2, 2, 2), strides=(1, 2, 1)),
            (1, 4, 4, 4, 2),
        ),
    ],
)
def test_conv_is_a_drop_in_nnx_conv(kwargs, in_shape):
    ours = Conv(**kwargs, rngs=nnx.Rngs(0))
    theirs = nnx.Conv(**kwargs, rngs=nnx.Rngs(0))
    assert isinstance(ours, nnx.Conv)
    s_ours, s_theirs = nnx.state(ours, nnx.Param), nnx.state(theirs, nnx.Param)
    assert jax.tree.structure(s_ours) == jax.tree.structure(s_theirs)
    for a, b in zip(jax.tree.leaves(s_ours), jax.tree.leaves(s_theirs)):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(7).normal(size=in_shape).astype(np.float32)
    y_ours, g_ours = _output_and_gradient(ours, x)  # one compiled program per layer
    y_theirs, g_theirs = _output_and_gradient(theirs, x)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv_weights_load_from_nnx_conv_checkpoint():
    theirs = nnx.Conv(3, 4, (3, 3), strides=2, rngs=nnx.Rngs(1))
    ours = Conv(3, 4, (3, 3), strides=2, rngs=nnx.Rngs(2))
    nnx.update(ours, nnx.state(theirs))
    x = jnp.ones((1, 6, 6, 3))
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


def test_conv_dtype_and_split_merge_in_jit():
    layer = Conv(2, 3, (3, 3), dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)
    y = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, jnp.ones((1, 4, 4, 2)))
    assert y.dtype == jnp.bfloat16
    assert layer.kernel.dtype == jnp.float32


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "x_shape, k_shape, kwargs, error, match",
    [
        ((4, 4, 3), (3, 3, 3, 2), {}, ValueError, r"x must be NHWC.*rank 4.*\(4, 4, 3\)"),
        ((1, 4, 4, 3), (3, 3, 3), {}, ValueError, r"kernel must be.*\(3, 3, 3\)"),
        ((1, 4, 4, 3), (3, 3, 2, 2), {}, ValueError, r"x has 3 channels.*expects 2"),
        (
            (1, 4, 4, 4),
            (3, 3, 2, 3),
            dict(feature_group_count=2),
            ValueError,
            r"out_features 3 must be divisible by feature_group_count=2",
        ),
        (
            (1, 4, 4, 3),
            (3, 3, 3, 2),
            dict(feature_group_count=0),
            ValueError,
            r"feature_group_count must be >= 1, got 0",
        ),
        ((1, 4, 4, 3), (3, 3, 3, 2), dict(strides=0), ValueError, r"strides must be 2 positive.*0"),
        ((1, 4, 4, 3), (3, 3, 3, 2), dict(strides=(1, 2, 3)), ValueError, r"strides.*\(1, 2, 3\)"),
        ((1, 4, 4, 3), (3, 3, 3, 2), dict(kernel_dilation="a"), TypeError, r"kernel_dilation"),
        (
            (1, 4, 4, 3),
            (3, 3, 3, 2),
            dict(padding="same_upper"),
            ValueError,
            r"Unknown padding 'same_upper'.*same",
        ),
        (
            (1, 4, 4, 3),
            (3, 3, 3, 2),
            dict(padding=((1, 1),)),
            ValueError,
            r"padding must have 2 \(low, high\) pairs, got 1",
        ),
        (
            (1, 4, 4, 3),
            (3, 3, 3, 2),
            dict(padding=[1, 2]),
            ValueError,
            r"padding must be 'SAME'.*\[1, 2\]",
        ),
        (
            (1, 4, 4, 3),
            (3, 3, 3, 2),
            dict(input_dilation=2),
            ValueError,
            r"padding='SAME' is ambiguous with input_dilation=\(2, 2\)",
        ),
        (
            (1, 4, 4, 3),
            (3, 3, 3, 2),
            dict(implementation="cudnn"),
            ValueError,
            r"Unknown implementation 'cudnn'.*auto, canonical, im2col, xla",
        ),
    ],
)
def test_bad_input_errors(x_shape, k_shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        conv2d(jnp.ones(x_shape), jnp.ones(k_shape), **kwargs)


def test_conv_rejects_custom_conv_function_and_bad_implementation():
    with pytest.raises(TypeError, match="implementation="):
        Conv(1, 1, (3, 3), conv_general_dilated=lax.conv_general_dilated, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Unknown implementation 'fast'"):
        Conv(1, 1, (3, 3), implementation="fast", rngs=nnx.Rngs(0))


def test_public_names():
    assert set(fconv.__all__) == {
        "Conv",
        "conv2d",
        "conv_general_dilated",
        "make_loop_safe",
        "IMPLEMENTATIONS",
    }
    assert fconv.IMPLEMENTATIONS == ("auto", "canonical", "xla", "im2col")
