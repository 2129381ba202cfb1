"""Reference-CNN training throughput: fnn against its peers, side by side in one run.

Workload (DESIGN.md): 32×32×3 inputs, Conv32-Conv32-Pool-Conv64-Conv64-Pool-Dense256-Dense10,
softmax cross-entropy, Adam 1e-3, batch 128; about 153 MFLOP per image per train step. Synthetic
data (random images, random labels: the speed does not depend on the values).

Each implementation runs in its own subprocess (so JAX, TensorFlow and PyTorch never share a
process and each gets its own peak-memory figure), one after the other; the table gives the median
images/s over several timed epochs, the time of the first step (fresh process, compile included)
and the peak resident memory. Peers run under ``--peer-python`` (default ``$FNN_PEER_PYTHON``, else this Python);
a peer whose framework is missing is skipped with a message.

    python benchmarks/bench_training.py            # everything
    python benchmarks/bench_training.py --quick    # a short run
    python benchmarks/bench_training.py --only fnn-fit,torch --repeats 5
    python benchmarks/bench_training.py --xla-variants   # also fnn with XLA:CPU fusion flags
    python benchmarks/bench_training.py --cold-start     # first step: fit vs make_train_step

Implementations:
  fnn-fit          fnn.train.compile(...).fit(x, y, batch_size=128), one jit per step
  fnn-fit-spe      the same with steps_per_execution=K (K steps in one compiled lax.scan)
  fnn-fit-aug      fnn-fit with RandomFlip + RandomRotation(0.2) inside the model (in the step)
  fnn-step         fnn.train.make_train_step in a Python loop (the step fit uses, no fit overhead)
  flax-nnx         hand-written Flax NNX + Optax loop: nnx.Conv, split once, jit + donate
  keras-jax        Keras 3 fit on the JAX backend
  keras-tf         Keras 3 fit on the TensorFlow backend
  torch            PyTorch eager, channels_last, torch.optim.Adam
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 128
CLASSES = 10
MFLOP_PER_IMAGE = 153.0
DEFAULT_PEERS = os.environ.get("FNN_PEER_PYTHON", sys.executable)
_FIRST_CPU: list[float] = []  # CPU seconds (all threads) of the first step, load-independent
FNN_WORKERS = ("fnn-fit", "fnn-fit-spe", "fnn-fit-aug", "fnn-step", "flax-nnx")
PEER_WORKERS = ("keras-jax", "keras-tf", "torch")
# glibc settings equal to what `import fnn` applies (fnn.runtime), for peers started without fnn:
# one arena, no mmap'd blocks, never trim (SIZE_MAX, as `mallopt(M_TRIM_THRESHOLD, -1)`).
KEEP_HOST_MEMORY = {
    "GLIBC_TUNABLES": "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
    "glibc.malloc.trim_threshold=18446744073709551615"
}
# The XLA flag `import fnn` sets on jaxlib 0.10 (fnn.runtime): convolutions on every core.
THREADED_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"
# Variants for --levers: label -> (worker, extra worker arguments, extra XLA_FLAGS, extra env).
PEER_LEVERS = {
    "fnn-step[glibc default memory]": ("fnn-step", [], None, {"FNN_REUSE_HOST_MEMORY": "0"}),
    "fnn-step[one-core YNNPACK convolutions]": (
        "fnn-step",
        [],
        None,
        {"FNN_THREADED_CONVOLUTIONS": "0"},
    ),
    "fnn-step[flax max_pool]": ("fnn-step", ["--pool", "flax"], None, {}),
    "fnn-step[fnn.models.build]": ("fnn-step", ["--build"], None, {}),
    "flax-nnx[kept host memory]": ("flax-nnx", [], None, KEEP_HOST_MEMORY),
    "flax-nnx[fnn's memory + convolution settings]": (
        "flax-nnx",
        [],
        THREADED_CONVOLUTIONS,
        KEEP_HOST_MEMORY,
    ),
    "keras-jax[kept host memory]": ("keras-jax", [], None, KEEP_HOST_MEMORY),
    "torch[kept host memory]": ("torch", [], None, KEEP_HOST_MEMORY),
    "keras-tf[kept host memory]": ("keras-tf", [], None, KEEP_HOST_MEMORY),
    "keras-jax[fnn's memory + convolution settings]": (
        "keras-jax",
        [],
        THREADED_CONVOLUTIONS,
        KEEP_HOST_MEMORY,
    ),
}
# fnn-step variants for --levers: label -> (extra worker arguments, extra XLA_FLAGS)
LEVERS = {
    "fnn-step[conv=xla]": (["--impl", "xla"], None),
    "fnn-step[conv=im2col first layer]": (["--impl", "im2col-first"], None),
    "fnn-step[bf16 compute]": (["--dtype", "bfloat16"], None),
    "fnn-step[batch 256]": (["--batch", "256"], None),
    "fnn-step[batch 64]": (["--batch", "64"], None),
    "fnn-step[1 intra-op thread]": ([], "--xla_cpu_multi_thread_eigen=false"),
}
XLA_VARIANTS = {
    "ynn-conv": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
    "xnn-conv": "--xla_cpu_experimental_xnn_fusion_type=individual_convolution",
    "onednn-conv": "--xla_cpu_experimental_onednn_fusion_type=individual_convolution",
}


def _data(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(n,)).astype(np.int32)
    return x, y


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed_epochs(run_epoch, n_images: int, repeats: int) -> list[float]:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_epoch()
        rates.append(n_images / (time.perf_counter() - t0))
    return rates


# ------------------------------------------------------------------------------------ fnn / flax


def _fnn_model(augment: bool, seed: int = 0):
    from flax import nnx

    from fnn import augment as aug
    from fnn.models import ReferenceCNN

    rngs = nnx.Rngs(params=seed, augment=seed + 1)
    cnn = ReferenceCNN(rngs=rngs)
    if not augment:
        return cnn
    return nnx.Sequential(
        aug.RandomFlip("horizontal_and_vertical", rngs=rngs),
        aug.RandomRotation(0.2, rngs=rngs),
        cnn,
    )


def worker_fnn_fit(args, *, spe: int = 1, augment: bool = False) -> dict:
    import fnn.losses
    import fnn.train

    x, y = _data(BATCH * args.steps)
    loss = fnn.losses.get("sparse_categorical_crossentropy", from_logits=True)

    def trainer():
        return fnn.train.compile(
            _fnn_model(augment), optimizer="adam", loss=loss, steps_per_execution=spe
        )

    # First step: a fresh trainer fitting one batch (argument checks + compile + one step).
    t0, c0 = time.perf_counter(), time.process_time()
    tr = trainer()
    tr.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    first = time.perf_counter() - t0
    _FIRST_CPU.append(time.process_time() - c0)
    # Warm the epoch-sized runner once, then time whole epochs.
    tr.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    rates = _timed_epochs(
        lambda: tr.fit(x, y, batch_size=BATCH, epochs=1, verbose=0), len(x), args.repeats
    )
    return {"rates": rates, "first_step_s": first}


def _apply_levers(model, args):
    """Conv implementation and compute dtype levers (fnn-step variants)."""
    import functools

    import jax.numpy as jnp
    from flax import nnx

    from fnn import conv

    if getattr(args, "pool", "fnn") == "flax":  # this worker process only: Flax's pools
        import fnn.models.cnn

        fnn.models.cnn.pooling = nnx
    for _, m in nnx.iter_modules(model):
        if isinstance(m, conv.Conv) and args.impl:
            impl = args.impl
            if impl == "im2col-first":
                impl = "im2col" if m.in_features <= 4 else "auto"
            m.conv_general_dilated = functools.partial(
                conv.conv_general_dilated, implementation=impl
            )
        if isinstance(m, nnx.Conv | nnx.Linear) and args.dtype == "bfloat16":
            m.dtype = jnp.bfloat16
    return model


def worker_fnn_step(args, setup_only: bool = False) -> dict:
    import jax

    import fnn.losses
    import fnn.optimizers
    import fnn.train

    batch = args.batch
    x, y = _data(batch * args.steps)
    xs = jax.device_put(x.reshape(args.steps, batch, 32, 32, 3))
    ys = jax.device_put(y.reshape(args.steps, batch))
    key = jax.random.key(0)
    t0, c0 = time.perf_counter(), time.process_time()
    if getattr(args, "build", False):  # the constructor as one quickly compiled program
        import fnn.models

        model = fnn.models.build(lambda: _fnn_model(False))
    else:
        model = _fnn_model(False)
    model = _apply_levers(model, args)
    state = fnn.train.TrainState.create(model, fnn.optimizers.get("adam"))
    step = fnn.train.make_train_step(
        fnn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    )
    state, m = step(state, {"image": xs[0], "label": ys[0]}, key)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    _FIRST_CPU.append(time.process_time() - c0)

    def epoch():
        nonlocal state
        for i in range(args.steps):
            state, m = step(state, {"image": xs[i], "label": ys[i]}, key)
        jax.block_until_ready(m)

    epoch()
    if setup_only:
        return {"epoch": epoch, "n": len(x), "first_step_s": first}
    return {"rates": _timed_epochs(epoch, len(x), args.repeats), "first_step_s": first}


def _count_compilations() -> list[str]:
    """Names of the XLA programs compiled (or read from the disk cache) from now on."""
    import jax.monitoring

    names: list[str] = []

    def on_duration(event, seconds, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    return names


def worker_cold(args, *, through_fit: bool) -> dict:
    """Model construction (`fnn.models.build`) to the first step's result, as a user writes it:
    ``compile(...).fit(x, y, batch_size=128, epochs=1)`` (shuffled) or ``TrainState.create`` +
    ``make_train_step``. Reports wall and CPU seconds (all threads: less load-dependent) and
    the XLA programs compiled on the way (their count does not depend on the load at all)."""
    import jax
    from flax import nnx

    import fnn.losses
    import fnn.models
    import fnn.optimizers
    import fnn.train
    from fnn.models import ReferenceCNN

    x, y = _data(BATCH)
    loss = fnn.losses.get("sparse_categorical_crossentropy", from_logits=True)
    names = _count_compilations()
    t0, c0 = time.perf_counter(), time.process_time()
    model = fnn.models.build(lambda: ReferenceCNN(rngs=nnx.Rngs(0)))
    if through_fit:
        trainer = fnn.train.compile(model, optimizer="adam", loss=loss)
        trainer.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    else:
        state = fnn.train.TrainState.create(model, fnn.optimizers.get("adam"))
        step = fnn.train.make_train_step(loss)
        state, m = step(state, {"image": x, "label": y}, jax.random.key(0))
        jax.block_until_ready(m)
    return {
        "first_step_s": time.perf_counter() - t0,
        "first_cpu_s": time.process_time() - c0,
        "programs": names,
    }


def main_cold_start(args) -> int:
    """Alternate fresh fit / make_train_step processes on empty caches, then once each warm."""
    rows = []
    for i in range(args.pairs):
        for name in ("fnn-fit-cold", "fnn-step-cold"):
            cache = tempfile.mkdtemp(prefix="fnn-bench-cache-")
            env = {"FNN_COMPILATION_CACHE": cache}
            rows.append(
                (
                    f"{name} (empty cache, pair {i + 1})",
                    _launch(name, sys.executable, args, extra_env=env),
                )
            )
            rows.append(
                (
                    f"{name} (warm cache, pair {i + 1})",
                    _launch(name, sys.executable, args, extra_env=env),
                )
            )
            shutil.rmtree(cache, ignore_errors=True)
    print("| run | first step (s) | CPU (s) | XLA programs | programs |")
    print("|---|---|---|---|---|")
    for label, res in rows:
        if "programs" not in res:
            print(f"| {label} | {res} | | | |")
            continue
        names = ", ".join(p.removeprefix("jit(").removesuffix(")") for p in res["programs"])
        print(
            f"| {label} | {res['first_step_s']:.2f} | {res['first_cpu_s']:.2f} | "
            f"{len(res['programs'])} | {names} |"
        )
    return 0


def worker_flax(args, setup_only: bool = False) -> dict:
    import jax
    import optax
    from flax import nnx

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.c1 = nnx.Conv(3, 32, (3, 3), rngs=rngs)
            self.c2 = nnx.Conv(32, 32, (3, 3), rngs=rngs)
            self.c3 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
            self.c4 = nnx.Conv(64, 64, (3, 3), rngs=rngs)
            self.d1 = nnx.Linear(8 * 8 * 64, 256, rngs=rngs)
            self.d2 = nnx.Linear(256, CLASSES, rngs=rngs)

        def __call__(self, x):
            pool = lambda t: nnx.max_pool(t, (2, 2), (2, 2))  # noqa: E731
            x = pool(jax.nn.relu(self.c2(jax.nn.relu(self.c1(x)))))
            x = pool(jax.nn.relu(self.c4(jax.nn.relu(self.c3(x)))))
            x = jax.nn.relu(self.d1(x.reshape(x.shape[0], -1)))
            return self.d2(x)

    x, y = _data(BATCH * args.steps)
    xs = jax.device_put(x.reshape(args.steps, BATCH, 32, 32, 3))
    ys = jax.device_put(y.reshape(args.steps, BATCH))
    t0, c0 = time.perf_counter(), time.process_time()
    graphdef, params = nnx.split(CNN(nnx.Rngs(0)))
    tx = optax.adam(1e-3, eps=1e-7)
    opt_state = tx.init(params)

    def _step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(_step, donate_argnums=(0, 1))
    params, opt_state, loss = step(params, opt_state, xs[0], ys[0])
    jax.block_until_ready(loss)
    first = time.perf_counter() - t0
    _FIRST_CPU.append(time.process_time() - c0)

    def epoch():
        nonlocal params, opt_state
        for i in range(args.steps):
            params, opt_state, loss = step(params, opt_state, xs[i], ys[i])
        jax.block_until_ready(loss)

    epoch()
    if setup_only:
        return {"epoch": epoch, "n": len(x), "first_step_s": first}
    return {"rates": _timed_epochs(epoch, len(x), args.repeats), "first_step_s": first}


# ------------------------------------------------------------------------------------ peers


def worker_keras(args, backend: str) -> dict:
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
    except ImportError as e:
        return {"skipped": f"keras not importable ({e})"}
    if keras.backend.backend() != backend:
        return {"skipped": f"keras backend is {keras.backend.backend()}, wanted {backend}"}
    from keras import layers

    x, y = _data(BATCH * args.steps)

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                layers.Conv2D(32, 3, padding="same", activation="relu"),
                layers.Conv2D(32, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(),
                layers.Conv2D(64, 3, padding="same", activation="relu"),
                layers.Conv2D(64, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(),
                layers.Flatten(),
                layers.Dense(256, activation="relu"),
                layers.Dense(CLASSES),
            ]
        )
        m.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return m

    t0, c0 = time.perf_counter(), time.process_time()
    m = model()
    m.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    first = time.perf_counter() - t0
    _FIRST_CPU.append(time.process_time() - c0)
    m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    rates = _timed_epochs(
        lambda: m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0), len(x), args.repeats
    )
    return {"rates": rates, "first_step_s": first}


def torch_reference_cnn(nn):
    """The reference CNN of DESIGN.md in PyTorch (NCHW modules; callers pick the memory format)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 256),
        nn.ReLU(),
        nn.Linear(256, CLASSES),
    )


def worker_torch(args) -> dict:
    try:
        import torch
        from torch import nn
    except ImportError as e:
        return {"skipped": f"torch not importable ({e})"}
    torch.manual_seed(0)
    x, y = _data(BATCH * args.steps)
    xs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    ys = torch.from_numpy(y).long()
    t0, c0 = time.perf_counter(), time.process_time()
    model = torch_reference_cnn(nn).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()

    def step(i):
        xb = xs[i * BATCH : (i + 1) * BATCH]
        yb = ys[i * BATCH : (i + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    step(0).item()
    first = time.perf_counter() - t0
    _FIRST_CPU.append(time.process_time() - c0)

    def epoch():
        for i in range(args.steps):
            loss = step(i)
        loss.item()

    epoch()
    return {
        "rates": _timed_epochs(epoch, len(x), args.repeats),
        "first_step_s": first,
        "note": f"{torch.get_num_threads()} threads",
    }


# In-process levers, timed round-robin so that the machine's load drifts hit every variant alike.
INTERLEAVED = {
    "fnn-step (conv auto = canonical VJP on CPU)": {},
    "fnn-step[conv=xla]": {"impl": "xla"},
    "fnn-step[conv=im2col first layer]": {"impl": "im2col-first"},
    "fnn-step[bf16 compute]": {"dtype": "bfloat16"},
    "flax-nnx (nnx.Conv)": None,
}


def worker_interleaved(args) -> dict:
    import copy

    runs = {}
    for label, opts in INTERLEAVED.items():
        a = copy.copy(args)
        if opts is None:
            runs[label] = worker_flax(a, setup_only=True)
            continue
        a.impl, a.dtype = opts.get("impl", ""), opts.get("dtype", "float32")
        runs[label] = worker_fnn_step(a, setup_only=True)
    rates = {label: [] for label in runs}
    for _ in range(args.repeats):
        for label, r in runs.items():
            rates[label] += _timed_epochs(r["epoch"], r["n"], 1)
    return {"interleaved": rates}


def run_worker(name: str, args) -> dict:
    if name == "fnn-fit":
        return worker_fnn_fit(args)
    if name == "fnn-fit-spe":
        out = worker_fnn_fit(args, spe=args.spe)
        out["note"] = f"steps_per_execution={args.spe}"
        return out
    if name == "fnn-fit-aug":
        return worker_fnn_fit(args, augment=True)
    if name == "fnn-step":
        return worker_fnn_step(args)
    if name in ("fnn-fit-cold", "fnn-step-cold"):
        return worker_cold(args, through_fit=name == "fnn-fit-cold")
    if name == "interleaved":
        return worker_interleaved(args)
    if name == "flax-nnx":
        return worker_flax(args)
    if name == "keras-jax":
        return worker_keras(args, "jax")
    if name == "keras-tf":
        try:
            import tensorflow  # noqa: F401
        except ImportError as e:
            return {"skipped": f"tensorflow not importable ({e})"}
        return worker_keras(args, "tensorflow")
    if name == "torch":
        return worker_torch(args)
    raise SystemExit(f"unknown worker {name!r}")


# ------------------------------------------------------------------------------------ driver


def _launch(
    name: str, python: str, args, extra_xla: str | None = None, extra_args=(), extra_env=None
) -> dict:
    env = dict(os.environ)
    env.update(extra_env or {})
    if extra_xla:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + extra_xla).strip()
    cmd = [python, str(Path(__file__).resolve()), "--worker", name]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--spe", str(args.spe)]
    cmd += list(extra_args)
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=args.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few steps and repeats")
    p.add_argument("--steps", type=int, default=20, help="train steps per timed epoch")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per implementation")
    p.add_argument("--spe", type=int, default=10, help="K for fnn-fit-spe")
    p.add_argument("--only", default="", help="comma-separated implementations to run")
    p.add_argument("--peer-python", default=DEFAULT_PEERS, help="python with torch/keras/tf")
    p.add_argument("--xla-variants", action="store_true", help="fnn-step with XLA:CPU flags too")
    p.add_argument("--levers", action="store_true", help="fnn-step with the other levers too")
    p.add_argument(
        "--interleave",
        action="store_true",
        help="only the in-process levers, timed round-robin in one process",
    )
    p.add_argument("--impl", default="", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--pool", default="fnn", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    p.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--cold-start",
        action="store_true",
        help="only the first step: fit against make_train_step, compile counts and CPU seconds",
    )
    p.add_argument("--pairs", type=int, default=3, help="--cold-start: fresh process pairs")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per implementation")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.spe = 6, 2, 3
    if args.worker:
        out = run_worker(args.worker, args)
        out["peak_mib"] = _peak_mib()
        if _FIRST_CPU:
            out["first_cpu_s"] = _FIRST_CPU[0]
        print("RESULT " + json.dumps(out), flush=True)
        return 0

    if args.cold_start:
        return main_cold_start(args)
    if args.interleave:
        res = _launch("interleaved", sys.executable, args)
        if "interleaved" not in res:
            print(f"interleaved run failed: {res}")
            return 1
        rates = res["interleaved"]
        base = statistics.median(next(iter(rates.values())))
        print(f"In-process levers, round-robin, {args.repeats} epochs of {args.steps} steps each")
        print("| variant | images/s (median) | vs first row | epochs (images/s) |")
        print("|---|---|---|---|")
        for label, r in rates.items():
            med = statistics.median(r)
            cells = ", ".join(f"{v:.0f}" for v in r)
            print(f"| {label} | {med:.0f} | {med / base:.2f}× | {cells} |")
        return 0

    names = list(FNN_WORKERS) + list(PEER_WORKERS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
    peer_python = args.peer_python if Path(args.peer_python).exists() else None
    runs = []
    caches: dict[str, str] = {}
    for name in names:
        variants = [(name, None, (), None)]
        if args.xla_variants and name == "fnn-step":
            variants += [(f"{name}[{k}]", v, (), None) for k, v in XLA_VARIANTS.items()]
        if args.levers and name == "fnn-step":
            variants += [(k, flags, extra, None) for k, (extra, flags) in LEVERS.items()]
        if args.levers:
            variants += [
                (k, flags, extra, env)
                for k, (worker, extra, flags, env) in PEER_LEVERS.items()
                if worker == name
            ]
        if name == "fnn-step":  # a second process on the first one's compilation cache
            variants.append((f"{name}[second run: warm compilation cache]", None, (), "warm"))
        for label, flags, extra, env in variants:
            python = sys.executable if name in FNN_WORKERS else peer_python
            # fnn keeps compiled programs on disk (fnn.runtime): every run starts on an empty
            # cache, so "first step" is a cold start, except the row that reuses fnn-step's.
            # (Each variant gets its own cache: the warm row must read the plain run's programs.)
            if env == "warm":
                env = {"FNN_COMPILATION_CACHE": caches[name]}
            else:
                caches[label] = tempfile.mkdtemp(prefix="fnn-bench-cache-")
                env = {**(env or {}), "FNN_COMPILATION_CACHE": caches[label]}
            if python is None:
                res = {"skipped": f"no peer python at {args.peer_python}"}
            else:
                res = _launch(name, python, args, flags, extra, env)
            runs.append((label, res))
            _report_line(label, res)

    for d in set(caches.values()):
        shutil.rmtree(d, ignore_errors=True)
    print()
    print(
        f"Reference CNN, batch {BATCH}, {args.steps} steps per epoch, median of "
        f"{args.repeats} epochs, {os.cpu_count()} CPUs"
    )
    ok = {k: v for k, v in runs if "rates" in v}
    best_peer = max(
        (statistics.median(v["rates"]) for k, v in ok.items() if k in ("keras-tf", "torch")),
        default=None,
    )
    kjax = statistics.median(ok["keras-jax"]["rates"]) if "keras-jax" in ok else None
    print(
        "| implementation | images/s (median) | GFLOP/s | vs best of keras-tf/torch | "
        "vs keras-jax | first step (s) | first step CPU (s) | peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, res in runs:
        if "rates" not in res:
            print(f"| {label} | {res.get('skipped') or res.get('error')} | | | | | | |")
            continue
        med = statistics.median(res["rates"])
        r1 = f"{med / best_peer:.2f}×" if best_peer else "—"
        r2 = f"{med / kjax:.2f}×" if kjax else "—"
        note = f" ({res['note']})" if res.get("note") else ""
        print(
            f"| {label}{note} | {med:.0f} | {med * MFLOP_PER_IMAGE / 1e3:.0f} | {r1} | {r2} | "
            f"{res['first_step_s']:.2f} | {res.get('first_cpu_s', float('nan')):.2f} | "
            f"{res['peak_mib']:.0f} |"
        )
    return 0


def _report_line(label: str, res: dict) -> None:
    if "rates" in res:
        rates = ", ".join(f"{r:.0f}" for r in res["rates"])
        print(f"{label}: images/s [{rates}], first step {res['first_step_s']:.2f} s", flush=True)
    else:
        print(f"{label}: {res.get('skipped') and 'skipped: ' + res['skipped'] or res}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
