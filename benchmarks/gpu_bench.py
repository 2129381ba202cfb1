"""fnn against PyTorch on one GPU: the reference workloads, one table, absolute images/s.

Workloads (batch sizes in brackets; every training row: forward, softmax CE, backward, Adam):
  cnn-train          DESIGN.md's reference CNN, Adam 1e-3, 32×32×3 [128]
  cnn-train-bf16     the same in bf16 compute (fnn: bf16 Conv/Linear dtype, f32 params;
                     torch: autocast bf16)
  effnet-infer       EfficientNet-Lite0 inference at 224×224 [64]
  effnet-train       EfficientNet-Lite0 fine-tuning step (all layers) at 224×224, Adam 1e-4 [32]
  resnet50-train     ResNet50 training step at 224×224, Adam 1e-4 [32]         (zoo hook)
  mobilenetv2-train  MobileNetV2 training step at 224×224, Adam 1e-4 [32]      (zoo hook)

The zoo rows use ``fnn.models.ResNet(50)`` and ``fnn.models.MobileNetV2`` (`fnn_model` is the one
place to adjust; an fnn without them says "not in this fnn" in the row). PyTorch's side uses torchvision's ``resnet50`` / ``mobilenet_v2`` and the
``efficientnet_lite_pytorch`` package for EfficientNet-Lite0; missing packages skip the cell.
Weights are random (no download): speed does not depend on them.

fnn runs in this process (plain XLA convolutions on GPU: ``fnn.conv``, ``fnn.pool`` and the
depthwise convolution pick them through `jax.lax.platform_dependent`, which
``spec_tests/test_lowering.py`` checks); PyTorch runs in a subprocess (``--torch-python``, default
this interpreter) so the two never hold the GPU at the same time. Each row: median milliseconds
per step over ``--repeats`` timed blocks of ``--steps`` steps after a warm-up, images/s, and
fnn/PyTorch. The header names the GPU (JAX's ``device_kind`` and PyTorch's device name);
``--json PATH`` also writes everything to a file for BENCHMARKS.md. Without a GPU (JAX's default
backend is not ``gpu``/``cuda``) it prints why and exits 0, unless ``--smoke``: every workload at
batch 2 and 32×32, one step, on the CPU, both frameworks; it checks that the script runs, not
speed (minutes on a busy 2-core machine, mostly EfficientNet's compilation; no GPU needed).

    python benchmarks/gpu_bench.py                  # on a GPU machine (a few minutes)
    python benchmarks/gpu_bench.py --quick --json gpu.json
    python benchmarks/gpu_bench.py --smoke          # anywhere: does it run?
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_training import torch_reference_cnn  # the same PyTorch model as the CPU benchmark

WORKLOADS = {
    # name: (batch, image size, model, kind, learning rate)
    "cnn-train": (128, 32, "reference_cnn", "train", 1e-3),
    "cnn-train-bf16": (128, 32, "reference_cnn", "train-bf16", 1e-3),
    "effnet-infer": (64, 224, "efficientnet_lite0", "infer", 1e-4),
    "effnet-train": (32, 224, "efficientnet_lite0", "train", 1e-4),
    "resnet50-train": (32, 224, "resnet50", "train", 1e-4),
    "mobilenetv2-train": (32, 224, "mobilenet_v2", "train", 1e-4),
}
NUM_CLASSES = 10


def _shape(name: str, smoke: bool) -> tuple[int, int]:
    """(batch, image size): the workload's, or the smoke run's tiny one."""
    batch, size, model = WORKLOADS[name][:3]
    if smoke:
        return 2, 32
    return batch, size


class Unavailable(Exception):
    """A model this fnn or this PyTorch install does not have: the cell says so."""


def _time(run_block, repeats: int, steps: int) -> list[float]:
    run_block()  # warm-up (compile, autotune)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_block()
        out.append((time.perf_counter() - t0) * 1000.0 / steps)
    return out


# ------------------------------------------------------------------------------------ fnn


def fnn_model(model: str):
    """The fnn model for a workload; the zoo's constructors are looked up by name."""
    from flax import nnx

    import fnn.models

    rngs = nnx.Rngs(0)
    if model == "reference_cnn":
        return fnn.models.ReferenceCNN(rngs=rngs)
    if model == "efficientnet_lite0":
        return fnn.models.EfficientNetLite("lite0", num_classes=NUM_CLASSES, rngs=rngs)
    try:  # the zoo's models: ImportError in an fnn without them
        if model == "resnet50":
            from fnn.models import ResNet

            return ResNet(50, num_classes=NUM_CLASSES, rngs=rngs)
        if model == "mobilenet_v2":
            from fnn.models import MobileNetV2

            return MobileNetV2(num_classes=NUM_CLASSES, rngs=rngs)
    except ImportError as e:
        raise Unavailable(f"not in this fnn ({e})") from e
    raise ValueError(f"unknown model {model!r}")


def fnn_workload(name: str, steps: int, repeats: int, smoke: bool = False) -> list[float]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    _, _, model_name, kind, lr = WORKLOADS[name]
    batch, size = _shape(name, smoke)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    y = jax.device_put(rng.integers(0, NUM_CLASSES, size=(batch,)).astype(np.int32))
    model = fnn_model(model_name)
    if kind == "train-bf16":  # compute in bf16, keep float32 parameters
        for _, m in nnx.iter_modules(model):
            if isinstance(m, nnx.Conv | nnx.Linear):
                m.dtype = jnp.bfloat16
    if kind == "infer":
        model.eval()
        graphdef, state = nnx.split(model)

        @jax.jit
        def infer(state, x):
            return nnx.merge(graphdef, state)(x)

        def block():
            for _ in range(steps):
                out = infer(state, x)
            jax.block_until_ready(out)

        return _time(block, repeats, steps)

    import fnn.losses
    import fnn.train

    model.train()
    state = fnn.train.TrainState.create(model, optax.adam(lr, eps=1e-7))
    step = fnn.train.make_train_step(
        fnn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    )
    batch_data = {"image": x, "label": y}
    key = jax.random.key(0)
    carry = [state]

    def block():
        for _ in range(steps):
            carry[0], metrics = step(carry[0], batch_data, key)
        jax.block_until_ready(metrics)

    return _time(block, repeats, steps)


# ------------------------------------------------------------------------------------ torch


def _torchvision():
    """torchvision without its compiled operators (the CPU wheel installed with ``--no-deps``
    may not match torch's; the classification models do not need them)."""
    import types

    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    try:
        import torchvision
    except Exception as e:  # ImportError, or RuntimeError from mismatched operators
        raise Unavailable(f"torchvision not importable ({type(e).__name__}: {e})") from e
    return torchvision


def torch_model(model: str, nn):
    if model == "reference_cnn":
        return torch_reference_cnn(nn)
    if model == "efficientnet_lite0":
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise Unavailable(f"efficientnet_lite_pytorch not importable ({e})") from e
        return EfficientNet.from_name("efficientnet-lite0", num_classes=NUM_CLASSES)
    if model == "resnet50":
        return _torchvision().models.resnet50(num_classes=NUM_CLASSES)
    if model == "mobilenet_v2":
        return _torchvision().models.mobilenet_v2(num_classes=NUM_CLASSES)
    raise ValueError(model)


def torch_workload(name: str, steps: int, repeats: int, smoke: bool = False) -> dict:
    try:
        import torch
        from torch import nn
    except ImportError as e:
        return {"skipped": f"torch not importable ({e})"}
    if smoke:
        dev = torch.device("cpu")
    elif not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA device"}
    else:
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
    _, _, model_name, kind, lr = WORKLOADS[name]
    batch, size = _shape(name, smoke)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=dev)
    try:
        model = torch_model(model_name, nn)
    except Unavailable as e:
        return {"skipped": str(e)}
    model = model.to(dev, memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    device_name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    if kind == "infer":
        model.eval()

        def block():
            with torch.inference_mode():
                for _ in range(steps):
                    model(x)
            sync()

        return {"ms": _time(block, repeats, steps), "device": device_name}
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    bf16 = kind == "train-bf16"

    def block():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(x).float(), y)
            loss.backward()
            opt.step()
        sync()

    return {"ms": _time(block, repeats, steps), "device": device_name}


# ------------------------------------------------------------------------------------ driver


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 steps × 3 repeats")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, 1 step, on CPU: runs?")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default="", help="comma-separated workloads")
    p.add_argument("--json", help="also write the results (and device names) to this file")
    p.add_argument("--torch-python", default=sys.executable)
    p.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 5, 3
    if args.smoke:
        args.steps, args.repeats = 1, 1
    names = [n for n in args.only.split(",") if n] or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")

    if args.torch_worker:
        out = {n: torch_workload(n, args.steps, args.repeats, args.smoke) for n in names}
        print("RESULT " + json.dumps(out), flush=True)
        return 0

    if args.smoke:
        import os

        os.environ["JAX_PLATFORMS"] = "cpu"  # before JAX starts: the smoke run is CPU-only
    import jax

    backend = jax.default_backend()
    if backend not in ("gpu", "cuda", "rocm") and not args.smoke:
        print(f"gpu_bench: skipped, JAX's default backend is {backend!r} (no GPU).")
        return 0
    device = jax.devices()[0].device_kind
    fnn_ms = {}
    for n in names:
        try:
            fnn_ms[n] = fnn_workload(n, args.steps, args.repeats, args.smoke)
        except Unavailable as e:
            fnn_ms[n] = str(e)
        except Exception as e:  # report and go on with the other rows
            fnn_ms[n] = f"error: {type(e).__name__}: {e}"[:200]
        print(f"fnn {n}: {fnn_ms[n]}", flush=True)

    cmd = [args.torch_python, str(Path(__file__).resolve()), "--torch-worker", "1"]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--only", ",".join(names)]
    cmd += ["--smoke"] if args.smoke else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        torch_res = json.loads(lines[-1][len("RESULT ") :])
    else:
        err = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        torch_res = {n: {"skipped": f"torch worker failed: {err[0]}"} for n in names}
    torch_device = next((r["device"] for r in torch_res.values() if "device" in r), "none")

    print()
    what = "SMOKE RUN on CPU, tiny shapes: not a measurement" if args.smoke else "GPU"
    print(f"{what}: JAX {device} (JAX {jax.__version__}), PyTorch {torch_device}; median ms/step")
    print(f"of {args.repeats}×{args.steps} steps after a warm-up")
    print(
        "| workload | batch | fnn ms/step | fnn images/s | torch ms/step | torch images/s | fnn/torch |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = {}
    for n in names:
        batch = _shape(n, args.smoke)[0]
        f = fnn_ms[n]
        t = torch_res.get(n, {})
        f_ms = statistics.median(f) if isinstance(f, list) else None
        t_ms = statistics.median(t["ms"]) if "ms" in t else None
        rows[n] = {
            "batch": batch,
            "image_size": _shape(n, args.smoke)[1],
            "fnn_ms": f_ms,
            "fnn_images_per_s": batch * 1000 / f_ms if f_ms else None,
            "fnn_note": None if f_ms else str(f),
            "torch_ms": t_ms,
            "torch_images_per_s": batch * 1000 / t_ms if t_ms else None,
            "torch_note": None if t_ms else t.get("skipped", "?"),
        }
        cells = [
            f"{f_ms:.2f}" if f_ms else str(f),
            f"{batch * 1000 / f_ms:.0f}" if f_ms else "",
            f"{t_ms:.2f}" if t_ms else t.get("skipped", "?"),
            f"{batch * 1000 / t_ms:.0f}" if t_ms else "",
            f"{t_ms / f_ms:.2f}×" if f_ms and t_ms else "",
        ]
        print(f"| {n} | {batch} | " + " | ".join(cells) + " |")
    if args.json:
        record = {
            "smoke": args.smoke,
            "jax_device": device,
            "jax_version": jax.__version__,
            "torch_device": torch_device,
            "steps": args.steps,
            "repeats": args.repeats,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
