"""fnn against PyTorch on one GPU: the reference workloads, one table.

Workloads (batch sizes in brackets):
  cnn-train      DESIGN.md's reference CNN, Adam 1e-3, softmax CE, 32×32×3 [128]
  cnn-train-bf16 the same in bf16 compute (fnn: bf16 Conv/Linear dtype, f32 params;
                 torch: autocast bf16)
  effnet-infer   EfficientNet-Lite0 inference at 224×224 [64]
  effnet-train   EfficientNet-Lite0 full fine-tuning step at 224×224, Adam 1e-4 [32]

fnn runs in this process (plain XLA convolutions on GPU: ``fnn.conv`` picks them through
`jax.lax.platform_dependent`); PyTorch runs in a subprocess (``--torch-python``, default this
interpreter) so the two never hold the GPU at the same time. Each row: median milliseconds per
step over ``--repeats`` timed blocks of ``--steps`` steps after a warm-up, images/s, and
fnn/PyTorch. Without a GPU (JAX's default backend is not ``gpu``/``cuda``) it prints why and exits
0; when PyTorch or CUDA for PyTorch is missing, its column says so.

    python benchmarks/gpu_bench.py              # on a GPU machine
    python benchmarks/gpu_bench.py --quick
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
    # name: (batch, image size, kind)
    "cnn-train": (128, 32, "cnn"),
    "cnn-train-bf16": (128, 32, "cnn-bf16"),
    "effnet-infer": (64, 224, "effnet-infer"),
    "effnet-train": (32, 224, "effnet-train"),
}


def _time(run_block, repeats: int, steps: int) -> list[float]:
    run_block()  # warm-up (compile, autotune)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_block()
        out.append((time.perf_counter() - t0) * 1000.0 / steps)
    return out


# ------------------------------------------------------------------------------------ fnn


def fnn_workload(name: str, steps: int, repeats: int) -> list[float]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    batch, size, kind = WORKLOADS[name]
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    y = jax.device_put(rng.integers(0, 10, size=(batch,)).astype(np.int32))

    if kind.startswith("cnn"):
        from fnn.models import ReferenceCNN

        model = ReferenceCNN(rngs=nnx.Rngs(0))
        if kind == "cnn-bf16":  # compute in bf16, keep float32 parameters
            for _, m in nnx.iter_modules(model):
                if isinstance(m, nnx.Conv | nnx.Linear):
                    m.dtype = jnp.bfloat16
        lr = 1e-3
    else:
        from fnn.models import EfficientNetLite

        model = EfficientNetLite("lite0", num_classes=10, rngs=nnx.Rngs(0))
        lr = 1e-4
    if kind == "effnet-infer":
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


def torch_workload(name: str, steps: int, repeats: int) -> dict:
    try:
        import torch
        from torch import nn
    except ImportError as e:
        return {"skipped": f"torch not importable ({e})"}
    if not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA device"}
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    batch, size, kind = WORKLOADS[name]
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)
    if kind.startswith("cnn"):
        model = torch_reference_cnn(nn)
        lr = 1e-3
    else:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            return {"skipped": f"efficientnet_lite_pytorch not importable ({e})"}
        model = EfficientNet.from_name("efficientnet-lite0", num_classes=10)
        lr = 1e-4
    model = model.to(dev, memory_format=torch.channels_last)
    sync = torch.cuda.synchronize
    if kind == "effnet-infer":
        model.eval()

        def block():
            with torch.inference_mode():
                for _ in range(steps):
                    model(x)
            sync()

        return {"ms": _time(block, repeats, steps)}
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    bf16 = kind == "cnn-bf16"

    def block():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(x).float(), y)
            loss.backward()
            opt.step()
        sync()

    return {"ms": _time(block, repeats, steps), "device": torch.cuda.get_device_name()}


# ------------------------------------------------------------------------------------ driver


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default="", help="comma-separated workloads")
    p.add_argument("--torch-python", default=sys.executable)
    p.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 5, 3
    names = [n for n in args.only.split(",") if n] or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")

    if args.torch_worker:
        out = {n: torch_workload(n, args.steps, args.repeats) for n in names}
        print("RESULT " + json.dumps(out), flush=True)
        return 0

    import jax

    backend = jax.default_backend()
    if backend not in ("gpu", "cuda", "rocm"):
        print(f"gpu_bench: skipped, JAX's default backend is {backend!r} (no GPU).")
        return 0
    device = jax.devices()[0].device_kind
    fnn_ms = {}
    for n in names:
        try:
            fnn_ms[n] = fnn_workload(n, args.steps, args.repeats)
        except Exception as e:  # report and go on with the other rows
            fnn_ms[n] = f"error: {type(e).__name__}: {e}"[:200]
        print(f"fnn {n}: {fnn_ms[n]}", flush=True)

    cmd = [args.torch_python, str(Path(__file__).resolve()), "--torch-worker", "1"]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--only", ",".join(names)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        torch_res = json.loads(lines[-1][len("RESULT ") :])
    else:
        err = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        torch_res = {n: {"skipped": f"torch worker failed: {err[0]}"} for n in names}

    print()
    print(f"GPU: {device} (JAX {jax.__version__}); median ms/step of {args.repeats}×{args.steps}")
    print(
        "| workload | batch | fnn ms/step | fnn images/s | torch ms/step | torch images/s | fnn/torch |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in names:
        batch = WORKLOADS[n][0]
        f = fnn_ms[n]
        t = torch_res.get(n, {})
        f_ms = statistics.median(f) if isinstance(f, list) else None
        t_ms = statistics.median(t["ms"]) if "ms" in t else None
        cells = [
            f"{f_ms:.2f}" if f_ms else str(f),
            f"{batch * 1000 / f_ms:.0f}" if f_ms else "",
            f"{t_ms:.2f}" if t_ms else t.get("skipped", "?"),
            f"{batch * 1000 / t_ms:.0f}" if t_ms else "",
            f"{t_ms / f_ms:.2f}×" if f_ms and t_ms else "",
        ]
        print(f"| {n} | {batch} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
