"""Inference throughput of the zoo's torchvision-layout networks: fnn (JAX) against PyTorch eager.

Workload: MobileNetV2 and ResNet50 in evaluation mode, float32, batches of 224x224x3 images, the
same random weights in both (torchvision's initialisers, saved by PyTorch and imported by fnn).
fnn runs ``model(x)`` inside one ``jax.jit``; PyTorch runs ``model(x)`` under
``torch.inference_mode()`` in NCHW and in ``channels_last``. Reported: median images/s over
several timed repeats and the fnn / PyTorch ratio (the goal is >= 1.0x the faster PyTorch layout).
PyTorch and torchvision are optional (``pip install torch==2.13.0`` and ``pip install --no-deps
torchvision==0.28.0``); without them only fnn is timed. Timings on a shared machine are noisy.

Run::

    python benchmarks/bench_zoo.py            # batch 8, both networks
    python benchmarks/bench_zoo.py --quick    # batch 2, fewer repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types

import jax
import numpy as np

from fnn import pretrained


def median_rate(run, images: int, *, calls: int, repeats: int) -> float:
    """Median images/s over ``repeats`` timings of ``calls`` calls, after two warm-up calls."""
    run()
    run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        rates.append(calls * images / (time.perf_counter() - start))
    return statistics.median(rates)


def torchvision_models():
    try:
        import torch

        sys.modules.setdefault(
            "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
        )
        import torchvision
    except ImportError:
        return None, None
    return torch, torchvision


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    batch, repeats, calls = args.batch, args.repeats, 3
    if args.quick:
        batch, repeats, calls = 2, 2, 1
    torch, torchvision = torchvision_models()
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; batch {batch}, 224x224, float32")
    for name in args.models:
        row = bench_one(name, x, torch, torchvision, calls=calls, repeats=repeats)
        best = max((v for k, v in row.items() if k != "fnn"), default=None)
        cells = ", ".join(f"{k} {v:.1f} img/s" for k, v in row.items())
        ratio = f"; fnn / best PyTorch = {row['fnn'] / best:.2f}x" if best else ""
        print(f"{name}: {cells}{ratio}")


def bench_one(name, x, torch, torchvision, *, calls, repeats) -> dict[str, float]:
    """``{"fnn": img/s, "torch NCHW": ..., "torch channels_last": ...}`` for one network."""
    batch, row = len(x), {}
    with tempfile.TemporaryDirectory() as folder:
        weights = None
        if torch is not None:
            ref = getattr(torchvision.models, name)(weights=None).eval()
            weights = f"{folder}/{name}.pth"
            torch.save(ref.state_dict(), weights)
        model = pretrained.load(name, weights=weights).model
    forward = jax.jit(lambda x: model(x))
    xj = jax.device_put(x)
    row["fnn"] = median_rate(
        lambda: forward(xj).block_until_ready(), batch, calls=calls, repeats=repeats
    )
    if torch is not None:
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        with torch.inference_mode():
            row["torch NCHW"] = median_rate(lambda: ref(xt), batch, calls=calls, repeats=repeats)
            ref_cl = ref.to(memory_format=torch.channels_last)
            xcl = xt.to(memory_format=torch.channels_last)
            row["torch channels_last"] = median_rate(
                lambda: ref_cl(xcl), batch, calls=calls, repeats=repeats
            )
    return row


if __name__ == "__main__":
    main()
