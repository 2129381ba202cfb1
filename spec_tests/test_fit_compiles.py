"""Cold start: the XLA programs `fit` compiles before and during its first epoch (issue 18).

A fresh process's first step is mostly compilation, and every small program costs a compile (and,
on a warm compilation cache, a lookup). These tests count compilations, not seconds, with
`jax.monitoring`'s ``backend_compile_duration`` events in a child process (the parent has compiled
many programs already, and JAX keeps them for the process), so a change that adds a program to
`fit`'s path fails here whatever the machine's load. The programs counted, for a model built
beforehand: the state's copies, the optimizer's init, the epoch's permutation, the batch gather
and the train step, nothing else (before issue 18: 22 for the reference CNN, among them a key
split, jnp.zeros/asarray transfers and one copy program per parameter shape).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent(
    """
    import json, sys
    import jax, jax.monitoring, numpy as np
    from flax import nnx
    import fnn
    from fnn.models import SimpleCNN

    names, counting = [], [False]

    def on_duration(event, seconds, **kwargs):
        if counting[0] and event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    model = SimpleCNN(10, input_shape=(8, 8, 1), filters=(4,), dense=(8,), batch_norm=True,
                      dropout=0.25, output_activation=None, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 48).astype(np.int32)
    loss = fnn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    counting[0] = True
    mode = sys.argv[1]
    if mode == "step":
        state = fnn.train.TrainState.create(model, fnn.optimizers.get("adam"))
        step = fnn.train.make_train_step(loss)
        state, m = step(state, {"image": x[:16], "label": y[:16]}, jax.random.key(0))
        jax.block_until_ready(m)
    else:
        trainer = fnn.train.compile(model, optimizer="adam", loss=loss, metrics=["accuracy"],
                                    devices=1)
        trainer.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=(mode == "fit"))
    print("RESULT " + json.dumps(names))
    """
)


def _compiled(mode: str) -> list:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one host device
    env["FNN_COMPILATION_CACHE"] = "0"  # every program compiles (no disk cache to hit)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def step_programs():
    return _compiled("step")


@pytest.mark.parametrize("mode, extra", [("fit", 2), ("fit-no-shuffle", 1)])
def test_fit_first_epoch_compiles_few_programs(mode, extra, step_programs):
    """fit = the hand-written step's programs (state copies, optimizer init, the step) + the
    batch gather (+ the epoch's permutation when shuffling). Input checks, keys, accumulators,
    the probability check and the model's final copy compile nothing."""
    programs = _compiled(mode)
    assert len(step_programs) <= 3, step_programs
    assert len(programs) <= len(step_programs) + extra, (programs, step_programs)


@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**31 - 1, -1, -(2**31)])
def test_host_made_key_is_jax_random_key(seed):
    """The trainer's key, made on the host without a seeding program, is `jax.random.key`."""
    import jax
    import numpy as np

    from fnn.trainer import seed_key

    ours, jax_key = seed_key(seed), jax.random.key(seed)
    assert ours.dtype == jax_key.dtype
    np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(jax_key))
