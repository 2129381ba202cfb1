"""The zoo's torchvision-layout networks on CPU: fnn (Flax NNX + XLA) against PyTorch eager.

Workloads, MobileNetV2 and ResNet50 at 224x224, float32, the same random weights in both
(torchvision's initialisers, saved by PyTorch and imported by fnn) and the same random batch:
  inference   eval mode, logits for a batch
  fine-tune   one training step of the whole network: training-mode forward (BatchNorm batch
              statistics, dropout), softmax cross-entropy, backward, Adam update

fnn: ``model(x)`` inside one ``jax.jit`` / `fnn.train.make_train_step` (state donated).
PyTorch: ``torchvision.models.<name>``, eager, NCHW and ``channels_last``, ``torch.optim.Adam``,
each layout in its own process without fnn imported (``import fnn`` changes the process's
allocator settings, which PyTorch would otherwise inherit; see bench_efficientnet.py).
Reported: median images/s over ``--repeats`` timings after two warm-up calls, and fnn / the
faster PyTorch layout (the goal in issue 14 is >= 1.0x). PyTorch and torchvision are optional
(``pip install torch==2.13.0`` and ``pip install --no-deps torchvision==0.28.0``); without them
only fnn is timed. Timings on a shared machine are noisy: compare ratios from one run.

Run::

    python benchmarks/bench_zoo.py            # batch 8 inference, batch 8 fine-tune, both nets
    python benchmarks/bench_zoo.py --quick    # batch 2, fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types

import numpy as np


def median_rate(run, images: int, *, repeats: int) -> float:
    """Median images/s over ``repeats`` timed calls, after two warm-up calls."""
    run()
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return images / statistics.median(times)


def batch_of(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 224, 224, 3)).astype(np.float32)
    return x, rng.integers(0, 1000, size=batch).astype(np.int32)


def import_torchvision():
    """(torch, torchvision), or (None, None) when either is missing."""
    try:
        import torch

        sys.modules.setdefault(
            "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
        )
        import torchvision
    except ImportError:
        return None, None
    return torch, torchvision


def bench_fnn(name: str, weights: str | None, batch: int, repeats: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import optax

    from fnn import pretrained
    from fnn import train as fnn_train

    x, labels = batch_of(batch)
    model = pretrained.load(name, weights=weights).model
    forward = jax.jit(lambda x: model(x))
    xj = jnp.asarray(x)
    row = {
        "inference": median_rate(lambda: forward(xj).block_until_ready(), batch, repeats=repeats)
    }

    def ce(*, y_true, y_pred):
        return optax.softmax_cross_entropy_with_integer_labels(y_pred, y_true)

    holder = {"state": fnn_train.TrainState.create(model, optax.adam(1e-4))}
    step = fnn_train.make_train_step(ce)
    data, key = {"image": xj, "label": jnp.asarray(labels)}, jax.random.key(0)

    def one_step():
        holder["state"], metrics = step(holder["state"], data, key)
        jax.block_until_ready(metrics["loss"])

    row["fine-tune"] = median_rate(one_step, batch, repeats=repeats)
    return row


def bench_torch(name: str, weights: str, batch: int, repeats: int, channels_last: bool):
    torch, torchvision = import_torchvision()
    x, labels = batch_of(batch)
    model = getattr(torchvision.models, name)(weights=None)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(labels.astype(np.int64))
    model.eval()

    def infer():
        with torch.inference_mode():
            model(xt)

    row = {"inference": median_rate(infer, batch, repeats=repeats)}
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xt), yt).backward()
        opt.step()

    row["fine-tune"] = median_rate(step, batch, repeats=repeats)
    return row


def run_torch(name: str, layout: str, weights: str, batch: int, repeats: int):
    """One PyTorch layout in a fresh process without fnn; None (and a message) if it failed."""
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", layout, "--models", name]
    cmd += ["--batch", str(batch), "--repeats", str(repeats), "--weights", weights]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"PyTorch {name} {layout} failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--torch-worker", choices=("nchw", "channels_last"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch, repeats = (2, 2) if args.quick else (args.batch, args.repeats)
    if args.torch_worker:  # a subprocess of the run below: PyTorch only, fnn never imported
        row = bench_torch(args.models[0], args.weights, batch, repeats, args.torch_worker != "nchw")
        print(json.dumps(row))
        return

    import jax

    torch, torchvision = import_torchvision()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; batch {batch}, 224x224, float32")
    if torch is None:
        print("PyTorch reference skipped: pip install torch==2.13.0; --no-deps torchvision==0.28.0")
    print("| network | implementation | inference images/s | fine-tune step images/s |")
    print("|---|---|---|---|")
    for name in args.models:
        with tempfile.TemporaryDirectory() as folder:
            weights, rows = None, {}
            if torch is not None:
                weights = f"{folder}/{name}.pth"
                torch.save(getattr(torchvision.models, name)(weights=None).state_dict(), weights)
            rows["fnn (jit)"] = bench_fnn(name, weights, batch, repeats)
            if torch is not None:
                for layout in ("nchw", "channels_last"):
                    row = run_torch(name, layout, weights, batch, repeats)
                    if row is not None:
                        rows[f"PyTorch eager, {layout}"] = row
        for label, row in rows.items():
            print(f"| {name} | {label} | {row['inference']:.1f} | {row['fine-tune']:.1f} |")
        peers = [r for k, r in rows.items() if k.startswith("PyTorch")]
        if peers:
            ours = rows["fnn (jit)"]
            ratios = {w: ours[w] / max(r[w] for r in peers) for w in ("inference", "fine-tune")}
            print(
                f"{name}: fnn / faster PyTorch layout: inference {ratios['inference']:.2f}x, "
                f"fine-tune {ratios['fine-tune']:.2f}x"
            )


if __name__ == "__main__":
    main()
