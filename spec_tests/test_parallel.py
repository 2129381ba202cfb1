"""Data parallelism: the same fit over the 8 host CPU devices that conftest.py creates.

The invariant: splitting each batch over D devices (parameters replicated, gradients all-reduced
by XLA) gives the single-device result up to float32 rounding of the summation order.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

import fnn
from fnn import parallel
from fnn.models import SimpleCNN
from fnn.train import TrainState, make_train_step
from fnn.train import compile as fnn_compile

N, BATCH = 64, 16


def _ce_logits(*, y_true, y_pred):
    return fnn.losses.sparse_categorical_crossentropy(
        y_true=y_true, y_pred=y_pred, from_logits=True
    )


def _model():
    return SimpleCNN(
        10,
        input_shape=(8, 8, 1),
        filters=(4,),
        dense=(8,),
        batch_norm=True,
        dropout=0.25,
        output_activation=None,
        rngs=nnx.Rngs(0),
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    return (
        rng.normal(size=(N, 8, 8, 1)).astype(np.float32),
        rng.integers(0, 10, N).astype(np.int32),
    )


def test_eight_host_devices_are_visible():
    assert jax.local_device_count() == 8, "spec_tests/conftest.py sets 8 host devices"


def test_make_mesh():
    assert parallel.make_mesh().devices.size == 8
    mesh = parallel.make_mesh(2)
    assert mesh.axis_names == ("data",) and mesh.devices.size == 2
    assert parallel.make_mesh(mesh) is mesh
    assert parallel.make_mesh(jax.local_devices()[:3]).devices.size == 3
    with pytest.raises(
        ValueError, match="devices must be between 1 and the 8 local devices, got 9"
    ):
        parallel.make_mesh(9)
    with pytest.raises(
        ValueError, match="devices must be between 1 and the 8 local devices, got 0"
    ):
        parallel.make_mesh(0)
    with pytest.raises(ValueError, match=r"a Mesh must have a 'data' axis, got axes \('batch',\)"):
        parallel.make_mesh(Mesh(np.array(jax.local_devices()), ("batch",)))


def test_batch_size_must_split_over_devices():
    mesh = parallel.make_mesh()
    parallel.check_batch_size(16, mesh)
    with pytest.raises(
        ValueError,
        match=r"batch_size=12 cannot be split evenly over the 8 devices"
        r".*multiple of 8 \(e.g. 8 or 16\).*devices=n",
    ):
        parallel.check_batch_size(12, mesh)
    with pytest.raises(ValueError, match=r"multiple of 8 \(e.g. 8\)"):
        parallel.check_batch_size(5, mesh)
    x = parallel.shard_batch(np.zeros((16, 3), np.float32), mesh)
    assert x.sharding.spec == PartitionSpec("data")
    assert len(x.addressable_shards) == 8 and x.addressable_shards[0].data.shape == (2, 3)


@pytest.fixture(scope="module")
def fitted(data):
    """The same run on 1 device and on all 8."""
    x, y = data
    out = {}
    for devices in (1, None):
        # SGD: Adam divides the near-zero gradient of a bias that BatchNorm cancels by its own
        # tiny running RMS, which turns float32 summation-order noise into O(lr) differences.
        t = fnn_compile(
            _model(),
            optimizer=fnn.optimizers.get("sgd", learning_rate=0.05),
            loss=_ce_logits,
            metrics=["accuracy"],
            devices=devices,
            seed=1,
        )
        h = t.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, validation_data=(x[:16], y[:16]))
        out[devices] = (t, h)
    return out


def _leaves(tree):
    return [
        np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
        for a in jax.tree.leaves(tree)
    ]


def test_fit_on_eight_devices_matches_one(fitted):
    (t1, h1), (t8, h8) = fitted[1], fitted[None]
    assert t8.mesh.devices.size == 8 and t1.mesh.devices.size == 1
    for key in h1.history:
        np.testing.assert_allclose(h8.history[key], h1.history[key], rtol=2e-5, atol=1e-6)
    for a, b in zip(_leaves(t1.state.params), _leaves(t8.state.params), strict=True):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)
    for a, b in zip(_leaves(t1.state.model_state), _leaves(t8.state.model_state), strict=True):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)


def test_parameters_stay_replicated(fitted):
    t8 = fitted[None][0]
    for leaf in jax.tree.leaves(t8.state.params):
        assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8


def test_evaluate_and_predict_match_one_device(fitted, data):
    x, y = data
    (t1, _), (t8, _) = fitted[1], fitted[None]
    np.testing.assert_allclose(
        t8.evaluate(x, y, batch_size=16), t1.evaluate(x, y, batch_size=16), rtol=2e-5
    )
    np.testing.assert_allclose(
        t8.predict(x, batch_size=24), t1.predict(x, batch_size=24), rtol=2e-5, atol=2e-6
    )


def test_batch_not_divisible_by_devices_is_refused_before_training(fitted, data):
    x, y = data
    t8 = fitted[None][0]
    step = int(t8.state.step)
    with pytest.raises(
        ValueError, match=r"batch_size=12 cannot be split evenly over the 8 devices"
    ):
        t8.fit(x, y, batch_size=12, verbose=0)
    with pytest.raises(ValueError, match=r"validation_batch_size=12 cannot be split evenly"):
        t8.fit(x, y, batch_size=16, verbose=0, validation_data=(x, y), validation_batch_size=12)
    assert int(t8.state.step) == step


def test_make_train_step_on_a_mesh_matches_one_device(data):
    x, y = data
    batch = {"image": x[:BATCH], "label": y[:BATCH]}
    mesh = parallel.make_mesh()
    tx = fnn.optimizers.get("sgd", learning_rate=0.1)
    single = TrainState.create(_model(), tx)
    replicated = parallel.replicate(TrainState.create(_model(), tx), mesh)
    key = jax.random.key(0)
    s1, m1 = make_train_step(_ce_logits)(single, batch, key)
    s8, m8 = make_train_step(_ce_logits, mesh=mesh)(
        replicated, parallel.shard_batch(batch, mesh), key
    )
    np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-6)
    for a, b in zip(_leaves(s1.params), _leaves(s8.params), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_depthwise_convolution_gradients_with_the_batch_split_over_devices():
    """EfficientNet's depthwise convolution has a hand-written VJP (a variadic reduction over the
    batch for the kernel gradient): split over 8 devices, XLA must all-reduce it like any sum."""
    from jax.sharding import NamedSharding

    from fnn.models.efficientnet_lite import depthwise_conv2d

    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(16, 9, 9, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 1, 4)), jnp.float32)
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(depthwise_conv2d(x, w, 2) ** 2), argnums=(0, 1)))
    one = grad(x, w)
    split = jax.device_put(x, NamedSharding(parallel.make_mesh(), PartitionSpec("data")))
    eight = grad(split, w)
    assert eight[0].sharding.spec[0] == "data"
    for a, b in zip(eight, one, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
