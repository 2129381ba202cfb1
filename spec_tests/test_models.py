"""Slides: the CNN — convolution, pooling, dense layers, the last-layer activation table.

Oracle: a float64 NumPy transcription of ``y[i,j,o] = b[o] + Σ W[u,v,c,o] x[i+u, j+v, c]``, 2×2
max pooling and dense layers. Invariants: eager == jit == vmap, BatchNorm/Dropout in train vs
eval mode, parameter counts from the layer formulas (Keras' ``model.summary()`` numbers).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fnn.models as fnn_models
from fnn.models import ReferenceCNN, SimpleCNN


def _np_conv_same(x, w, b):
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    y = np.zeros((n, h, wd, o))
    for u in range(kh):
        for v in range(kw):
            y += np.einsum("nhwc,co->nhwo", xp[:, u : u + h, v : v + wd, :], w[u, v])
    return y + b


def _np_pool(a):
    n, h, w, c = a.shape
    return a.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _f64(v):
    return np.asarray(v[...], np.float64)


def _jit_call(model, x):
    """model(x) through one jax.jit (one compilation instead of one per eager op)."""
    graphdef, state = nnx.split(model)
    return np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, jnp.asarray(x)))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype(np.float32)


def test_simple_cnn_matches_float64_oracle(images):
    model = SimpleCNN(5, input_shape=(8, 8, 2), filters=(3, 4), dense=(6,), rngs=nnx.Rngs(1))
    a = images.astype(np.float64)
    for conv in model.convs:
        a = _np_pool(np.maximum(_np_conv_same(a, _f64(conv.kernel), _f64(conv.bias)), 0.0))
    a = a.reshape(len(a), -1)
    d0, d1 = model.denses
    a = np.maximum(a @ _f64(d0.kernel) + _f64(d0.bias), 0.0)
    logits = a @ _f64(d1.kernel) + _f64(d1.bias)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(_jit_call(model, images), probs, rtol=1e-5, atol=1e-6)


def test_eager_jit_vmap_agree(images):
    model = SimpleCNN(5, input_shape=(8, 8, 2), filters=(3,), dense=(), rngs=nnx.Rngs(2))
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    eager = np.asarray(forward(state, images))
    jitted = jax.jit(forward)
    np.testing.assert_allclose(np.asarray(jitted(state, images)), eager, rtol=1e-6, atol=1e-7)
    one = jax.vmap(lambda img: forward(state, img[None])[0])(jnp.asarray(images))
    np.testing.assert_allclose(np.asarray(one), eager, rtol=1e-6, atol=1e-7)
    jitted(state, images + 1.0)
    assert jitted._cache_size() == 1  # no recompilation on the second call


@pytest.mark.parametrize(
    "task, units, check",
    [
        ("multiclass", 4, lambda y: np.allclose(y.sum(-1), 1.0, atol=1e-6) and (y > 0).all()),
        ("multilabel", 4, lambda y: ((y > 0) & (y < 1)).all() and not np.allclose(y.sum(-1), 1)),
        ("binary", 1, lambda y: ((y > 0) & (y < 1)).all()),
        ("regression", 4, lambda y: (y < 0).any()),
    ],
)
def test_last_layer_activation_follows_the_task_table(images, task, units, check):
    model = SimpleCNN(
        4 if task != "binary" else 2,
        input_shape=(8, 8, 2),
        filters=(3,),
        dense=(),
        task=task,
        rngs=nnx.Rngs(3),
    )
    y = np.asarray(model(jnp.asarray(images) * 5))
    assert y.shape == (3, units) and check(y)
    logits = SimpleCNN(
        4, input_shape=(8, 8, 2), filters=(3,), dense=(), output_activation=None, rngs=nnx.Rngs(3)
    )
    np.testing.assert_allclose(
        np.asarray(jax.nn.softmax(logits(jnp.asarray(images)))),
        np.asarray(
            SimpleCNN(4, input_shape=(8, 8, 2), filters=(3,), dense=(), rngs=nnx.Rngs(3))(
                jnp.asarray(images)
            )
        ),
        rtol=1e-6,
    )


def test_batchnorm_and_dropout_train_vs_eval(images):
    model = SimpleCNN(
        4,
        input_shape=(8, 8, 2),
        filters=(3,),
        dense=(8,),
        batch_norm=True,
        dropout=0.5,
        rngs=nnx.Rngs(4),
    )
    x = jnp.asarray(images)
    model.eval()
    e1, e2 = np.asarray(model(x)), np.asarray(model(x))
    np.testing.assert_array_equal(e1, e2)  # eval: deterministic
    mean0 = np.asarray(model.norms[0].mean[...])
    model.train()
    t1, t2 = np.asarray(model(x)), np.asarray(model(x))
    assert not np.array_equal(t1, t2)  # train: a new dropout mask per call
    mean1 = np.asarray(model.norms[0].mean[...])
    assert not np.array_equal(mean0, mean1)  # train: running statistics move
    # Flax's momentum 0.99: after two calls on the same batch m = 0.01·μ·(1 + 0.99).
    conv = model.convs[0]
    mu = _np_conv_same(images.astype(np.float64), _f64(conv.kernel), _f64(conv.bias)).mean(
        (0, 1, 2)
    )
    np.testing.assert_allclose(mean1, 0.01 * mu * (1 + 0.99), rtol=1e-4, atol=1e-7)


def test_uses_the_fast_convolution():
    from fnn.conv import Conv

    model = nnx.eval_shape(
        lambda: SimpleCNN(4, input_shape=(8, 8, 1), filters=(3,), dense=(), rngs=nnx.Rngs(0))
    )
    assert all(isinstance(c, Conv) for c in model.convs)
    assert isinstance(nnx.eval_shape(lambda: ReferenceCNN(rngs=nnx.Rngs(0))).conv1, Conv)


def test_reference_cnn_shape_and_parameter_count():
    model = nnx.eval_shape(lambda: ReferenceCNN(rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    out = jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s)(x),
        state,
        jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32),
    )
    assert out.shape == (2, 10)
    # (kh·kw·C_in + 1)·C_out per convolution, (in + 1)·out per dense layer.
    want = (
        (9 * 3 + 1) * 32
        + (9 * 32 + 1) * 32
        + (9 * 32 + 1) * 64
        + (9 * 64 + 1) * 64
        + (8 * 8 * 64 + 1) * 256
        + (256 + 1) * 10
    )
    got = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert got == want == 1_116_970


def test_simple_cnn_parameter_count():
    model = nnx.eval_shape(
        lambda: SimpleCNN(
            10,
            input_shape=(8, 8, 1),
            filters=(32, 64),
            dense=(128,),
            batch_norm=True,
            rngs=nnx.Rngs(0),
        )
    )
    want = (
        (9 * 1 + 1) * 32
        + 2 * 32
        + (9 * 32 + 1) * 64
        + 2 * 64
        + (2 * 2 * 64 + 1) * 128
        + (128 + 1) * 10
    )
    assert sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == want


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(input_shape=(8, 8)),
            ValueError,
            r"input_shape must be \(height, width, channels\), got \(8, 8\)",
        ),
        (dict(pool="median"), ValueError, r"pool must be 'max' or 'avg', got 'median'"),
        (dict(dropout=1.0), ValueError, r"dropout must be a rate in \[0, 1\), got 1.0"),
        (dict(filters=(4, 4, 4, 4)), ValueError, r"too small for 4 2x2 pools"),
        (
            dict(task="binary"),
            ValueError,
            r"task='binary' has one sigmoid output unit; num_classes must be 1 or 2, got 10",
        ),
        (dict(task="multi"), ValueError, r"Unknown task 'multi'"),
        (dict(activation="rleu"), ValueError, r"Unknown activation 'rleu'. Did you mean 'relu'"),
        (dict(convs_per_block=0), ValueError, r"convs_per_block must be >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    kwargs = {"input_shape": (8, 8, 1), **kwargs}
    with pytest.raises(error, match=message):
        SimpleCNN(10, rngs=nnx.Rngs(0), **kwargs)


def test_reference_cnn_bad_shape():
    with pytest.raises(ValueError, match=r"multiples of 4, got \(30, 30, 3\)"):
        ReferenceCNN(input_shape=(30, 30, 3), rngs=nnx.Rngs(0))


# ---------------------------------------------------------------- fnn.models.build


def _flat(model):
    """Every state array of ``model`` by path; typed PRNG keys as their integer data."""

    def as_numpy(v):
        a = v[...]
        return np.asarray(
            jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a
        )

    return {p: as_numpy(v) for p, v in nnx.to_flat_state(nnx.state(model))}


def _small_cnn():
    return SimpleCNN(
        4,
        input_shape=(8, 8, 2),
        filters=(3,),
        dense=(8,),
        batch_norm=True,
        dropout=0.5,
        rngs=nnx.Rngs(params=3, dropout=5),
    )


@pytest.mark.parametrize(
    "factory", [lambda: ReferenceCNN(rngs=nnx.Rngs(0)), _small_cnn], ids=["reference", "simple"]
)
def test_build_gives_the_eager_model_to_float32_rounding(factory):
    built, eager = fnn_models.build(factory), factory()
    assert type(built) is type(eager)
    got, want = _flat(built), _flat(eager)
    assert list(got) == list(want)  # same structure: parameters, batch statistics, RNG state
    for path in want:
        assert got[path].shape == want[path].shape and got[path].dtype == want[path].dtype
        if want[path].dtype.kind == "f":
            # The initialisers' arithmetic is compiled without optimisation: <= 1 ulp apart.
            np.testing.assert_allclose(got[path], want[path], rtol=2e-7, atol=6e-8, err_msg=path)
        else:  # integer RNG counters, typed keys compared through their data
            np.testing.assert_array_equal(got[path], want[path], err_msg=str(path))


def test_build_is_deterministic_and_the_model_runs(images):
    a, b = fnn_models.build(_small_cnn), fnn_models.build(_small_cnn)
    flat_b = _flat(b)
    for path, v in _flat(a).items():
        np.testing.assert_array_equal(v, flat_b[path], err_msg=str(path))
    x = jnp.asarray(images)
    a.train()
    assert not np.array_equal(np.asarray(a(x)), np.asarray(a(x)))  # dropout's RNG advances
    eager = _small_cnn()
    b.eval()
    eager.eval()
    np.testing.assert_allclose(b(x), eager(x), rtol=1e-5, atol=1e-6)  # computes as the eager one


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda: ReferenceCNN(rngs=nnx.Rngs(0)), "factory must be a function that constructs"),
        (lambda: "ReferenceCNN", "factory must be a function that constructs"),
        (lambda: lambda: jnp.ones(3), "factory must return a flax.nnx.Module, it returned"),
    ],
    ids=["a model, not a factory", "a string", "returns an array"],
)
def test_build_bad_factory(make_bad, message):
    with pytest.raises(TypeError, match=message):
        fnn_models.build(make_bad())
