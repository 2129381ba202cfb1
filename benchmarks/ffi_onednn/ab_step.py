"""A/B of the reference CNN's train step with fnn's oneDNN convolutions on and off (issue 18).

Alternating child processes, ``FNN_ONEDNN=1`` then ``0`` (order flipped every round), each one
building the step as the README does (``fnn.models.build``, ``fnn.train.make_train_step``, Adam,
batch 128), running 3 warm-up steps, then timing ``--steps`` steps one by one: wall and process
CPU time (all threads) per step, its median per process; medians over rounds are printed with the
load average. The children report `fnn.onednn.status` and the lowered program is checked to hold
the custom calls exactly when they are on.

Run:  PYTHONPATH=$PWD python benchmarks/ffi_onednn/ab_step.py [--rounds 5] [--steps 10]
(needs ``pip install "fnn[onednn]"`` and g++; the library is built on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def child(steps: int) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import fnn
    from fnn import onednn
    from fnn.models import ReferenceCNN

    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.uniform(0, 1, (4, 128, 32, 32, 3)).astype(np.float32))
    ys = jnp.asarray(rng.integers(0, 10, (4, 128)).astype(np.int32))
    key = jax.random.key(0)
    model = fnn.models.build(lambda: ReferenceCNN(rngs=nnx.Rngs(0)))
    state = fnn.train.TrainState.create(model, fnn.optimizers.get("adam"))
    step = fnn.train.make_train_step(
        fnn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    )
    batch = {"image": xs[0], "label": ys[0]}
    text = step.lower(state, batch, key).as_text()
    assert ("fnn_onednn_conv_bwd_w" in text) == onednn.available(), onednn.status()
    for i in range(3):
        state, m = step(state, {"image": xs[i % 4], "label": ys[i % 4]}, key)
    jax.block_until_ready(m)
    walls, cpus = [], []
    for i in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        state, m = step(state, {"image": xs[i % 4], "label": ys[i % 4]}, key)
        jax.block_until_ready(m)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    print(
        json.dumps(
            {
                "status": onednn.status(),
                "wall_ms": statistics.median(walls) * 1e3,
                "cpu_ms": statistics.median(cpus) * 1e3,
                "loss": float(m["loss"]),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.steps)
        return
    runs: dict[str, list[dict]] = {"1": [], "0": []}
    loads = []
    print(f"start {time.strftime('%H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}")
    for r in range(args.rounds):
        for flag in ("1", "0") if r % 2 == 0 else ("0", "1"):
            loads.append(os.getloadavg()[0])
            env = dict(os.environ, FNN_ONEDNN=flag)
            cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[flag].append(result)
            print(f"round {r} FNN_ONEDNN={flag}: {result}", flush=True)
    med = {
        f: (
            statistics.median(x["wall_ms"] for x in rs),
            statistics.median(x["cpu_ms"] for x in rs),
        )
        for f, rs in runs.items()
    }
    (w1, c1), (w0, c0) = med["1"], med["0"]
    print(
        f"end {time.strftime('%H:%M UTC', time.gmtime())}; load average {min(loads):.1f}–"
        f"{max(loads):.1f}; medians of {args.rounds} processes × {args.steps} steps, batch 128"
    )
    print("| FNN_ONEDNN | ms per step, wall (CPU) | images/s (wall) |")
    print("|---|---|---|")
    for f, (w, c) in (("1", med["1"]), ("0", med["0"])):
        print(f"| {f} | {w:.1f} ({c:.1f}) | {128e3 / w:.0f} |")
    print(f"speed-up: wall {w0 / w1:.3f}×, CPU {c0 / c1:.3f}×")


if __name__ == "__main__":
    main()
