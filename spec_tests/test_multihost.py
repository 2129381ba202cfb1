"""Multi-host data parallelism on JAX's own distributed runtime, tested with 2 local processes.

The same script trains the same model with the same data in two ways and compares the results,
once with `fnn.train`'s Keras-like ``fit`` (given the global mesh through ``devices=``) and once
with a hand-written data-parallel step where each process feeds only its own slice of every batch
(``jax.make_array_from_process_local_data``, the pattern for datasets too big for one host):

* **two processes** (``jax.distributed.initialize`` on ``localhost``, one CPU device each, CPU
  collectives through gloo): a global ``"data"`` mesh over ``jax.devices()`` (both processes'
  devices), each process contributes its half of every batch, XLA inserts the cross-process
  gradient all-reduce;
* **one process** with two local CPU devices and the same mesh shape.

Data-parallel SGD on a mean loss gives the same parameters in both (up to float32 summation
order), so the test compares parameters and the loss history. Each child runs under a timeout and
is killed on failure; the coordinator port is a free one picked by the OS.

Run a worker by hand: ``python spec_tests/test_multihost.py --process-id 0 --num-processes 2
--port 12345 --out /tmp/p0.npz`` (and the same with ``--process-id 1``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
STEPS, BATCH, LR = 4, 16, 0.05


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=(STEPS * BATCH,)).astype(np.int32)
    return x, y


# ------------------------------------------------------------------------------- the worker


def _flat(prefix, tree) -> dict:
    import jax

    return {
        prefix + "/" + "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(tree)
    }


def worker(args) -> None:
    """Train ``STEPS`` data-parallel SGD steps and save the parameters and losses."""
    import jax

    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=60,
        )
    import jax.numpy as jnp
    import optax
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from fnn.conv import Conv

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.conv = Conv(1, 4, (3, 3), strides=2, rngs=rngs)
            self.head = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

        def __call__(self, x):
            h = jax.nn.relu(self.conv(x))
            return self.head(h.reshape(h.shape[0], -1))

    # One global mesh over every process' devices: the batch axis is split across processes.
    mesh = Mesh(np.array(jax.devices()), ("data",))
    assert mesh.devices.size == 2, jax.devices()
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    graphdef, params = nnx.split(Tiny(nnx.Rngs(0)))
    tx = optax.sgd(LR)
    # Same seed everywhere, so every process holds the same initial values; make them global.
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(tx.init(params), replicated)

    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(step, donate_argnums=(0, 1), out_shardings=(replicated, replicated, replicated))
    x, y = _data()
    losses = []
    n_local = BATCH // jax.process_count()
    lo = jax.process_index() * n_local
    for i in range(STEPS):
        xb, yb = x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]
        # Each process hands over only its own slice of the global batch.
        gx = jax.make_array_from_process_local_data(batch_sharding, xb[lo : lo + n_local])
        gy = jax.make_array_from_process_local_data(batch_sharding, yb[lo : lo + n_local])
        params, opt_state, loss = step(params, opt_state, gx, gy)
        losses.append(float(loss))
    result = {"step/losses": np.array(losses), **_flat("step", params)}

    # The same with fnn's fit: every process passes the full arrays (fit puts them on the global
    # mesh) and the batch of each step is split over the mesh's devices, i.e. over the processes.
    import fnn.train

    model = Tiny(nnx.Rngs(0))
    trainer = fnn.train.compile(
        model,
        optimizer=optax.sgd(LR),
        loss=fnn.losses.get("sparse_categorical_crossentropy", from_logits=True),  # Tiny: logits
        devices=mesh,
    )
    history = trainer.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    result["fit/losses"] = np.array(history.history["loss"])
    result.update(_flat("fit", nnx.state(model, nnx.Param)))
    np.savez(args.out, **result)
    del jnp
    if args.num_processes > 1:
        jax.distributed.shutdown()


# ------------------------------------------------------------------------------- the test


def _spawn(args: list[str], devices: int):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen(
        [sys.executable, str(HERE), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(procs, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, f"worker exited with {p.returncode}:\n{out[-3000:]}"
    return outs


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    port = _free_port()
    multi = [
        _spawn(
            [
                "--process-id",
                str(i),
                "--num-processes",
                "2",
                "--port",
                str(port),
                "--out",
                str(tmp_path / f"p{i}.npz"),
            ],
            devices=1,
        )
        for i in range(2)
    ]
    single = _spawn(["--num-processes", "1", "--out", str(tmp_path / "single.npz")], devices=2)
    _wait([*multi, single], timeout=120)
    ref = np.load(tmp_path / "single.npz")
    p0, p1 = np.load(tmp_path / "p0.npz"), np.load(tmp_path / "p1.npz")
    assert sorted(ref.files) == sorted(p0.files) == sorted(p1.files)
    assert len(ref["step/losses"]) == STEPS and len(ref["fit/losses"]) == 2
    assert any(name.startswith("fit/") and "kernel" in name for name in ref.files)
    # Training moved the parameters (so the comparison below can fail).
    assert ref["step/losses"][-1] != ref["step/losses"][0]
    assert ref["fit/losses"][-1] != ref["fit/losses"][0]
    for name in ref.files:
        # Both processes hold the same replicated result ...
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
        # ... which equals the single-process data-parallel result.
        np.testing.assert_allclose(p0[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_free_port_is_bindable():
    port = _free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    worker(parser.parse_args())
