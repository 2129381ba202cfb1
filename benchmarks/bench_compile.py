"""Compile time of fnn's train step: EfficientNet-Lite0 fine-tuning and the reference CNN.

Each measurement is a fresh process with the persistent compilation cache off
(``FNN_COMPILATION_CACHE=0``) that builds the model and its `fnn.train.TrainState`, then times
``jax.jit(step).lower(...)`` (tracing) and ``.compile()`` (XLA) separately, as CPU seconds of the
process (user + system, all threads, ``resource.getrusage``) and wall seconds. On a shared,
loaded machine the CPU seconds are the figure to compare; wall time is reported beside them.
The compiled program's fusions are counted in its HLO text.

Variants change one thing at a time:
  norms       how the step computes ``grad_norm`` / ``param_norm``: ``concat`` (as shipped:
              one reduction over the leaves' concatenation), ``tree`` (``optax.tree.norm``, one
              reduction per leaf, shipped before issue 18), ``none`` (constant zeros, a lower
              bound, not a valid step)
  opt         ``adam`` (`fnn.optimizers.adam`), ``sgd``, ``adam-flat`` (``optax.flatten``)
  options     XLA ``compiler_options`` for the step
  flax-batchnorm  the model's batch normalisations traced as `flax.nnx.BatchNorm`'s own update
              (``variable[...] = value``, quadratic tracing) instead of `fnn.layers.BatchNorm`'s
              (``set_value``); same program, so compare the tracing ("lower") columns

``--runtime A B`` times the compiled steps of two variants in one process, alternating
A B B A ... so neither order is favoured, and prints the median step times.

Run:
  python benchmarks/bench_compile.py                          # EfficientNet-Lite0, 112x112, batch 16
  python benchmarks/bench_compile.py --model cnn --repeats 3
  python benchmarks/bench_compile.py --variants base tree-norms sgd --repeats 3
  python benchmarks/bench_compile.py --runtime tree-norms base
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

# name: (norms, optimizer, compiler options)
VARIANTS = {
    "base": ("concat", "adam", None),
    "tree-norms": ("tree", "adam", None),
    "no-norms": ("none", "adam", None),
    "sgd": ("concat", "sgd", None),
    "adam-flat": ("concat", "adam-flat", None),
    "no-expensive": ("concat", "adam", {"xla_llvm_disable_expensive_passes": True}),
    "opt-level-1": ("concat", "adam", {"xla_backend_optimization_level": 1}),
    "opt-level-0": ("concat", "adam", {"xla_backend_optimization_level": 0}),
    "flax-batchnorm": ("concat", "adam", None),  # and Flax's BatchNorm update (`_setup`)
}
MODELS = {"efficientnet": (16, 112), "cnn": (128, 32)}  # batch, image side


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _setup(model_name: str, variant: str):
    """(jitted step, state, batch, key) for one variant; patches fnn.steps for the norms."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import fnn
    from fnn import optimizers, steps

    norms, opt, options = VARIANTS[variant]
    if variant == "flax-batchnorm":  # a worker's own process: the patch stays there
        from flax import nnx

        import fnn.layers

        fnn.layers.BatchNorm.__call__ = nnx.BatchNorm.__call__
    if norms == "none":
        steps._global_norm = lambda tree: jnp.zeros((), jnp.float32)
    elif norms == "tree":
        steps._global_norm = optax.tree.norm
    batch_size, side = MODELS[model_name]
    if model_name == "efficientnet":
        model = fnn.pretrained.load("efficientnet_lite0").model
        model.train()
        classes = 1000
    else:
        from flax import nnx

        from fnn.models import ReferenceCNN

        model = ReferenceCNN(rngs=nnx.Rngs(0))
        classes = 10
    tx = {
        "adam": lambda: optimizers.adam(1e-4),
        "sgd": lambda: optimizers.sgd(1e-2),
        "adam-flat": lambda: optax.flatten(optimizers.adam(1e-4)),
    }[opt]()
    state = steps.TrainState.create(model, tx)
    step = steps.make_train_step("sparse_categorical_crossentropy", jit=False)
    kwargs = {"compiler_options": options} if options else {}
    jitted = jax.jit(step, donate_argnums=0, **kwargs)
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.uniform(-1, 1, (batch_size, side, side, 3)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, classes, batch_size), jnp.int32),
    }
    return jitted, state, batch, jax.random.key(0)


def worker(model_name: str, variant: str) -> dict:
    jitted, state, batch, key = _setup(model_name, variant)
    c0, w0 = _cpu(), time.perf_counter()
    lowered = jitted.lower(state, batch, key)
    c1, w1 = _cpu(), time.perf_counter()
    compiled = lowered.compile()
    c2, w2 = _cpu(), time.perf_counter()
    text = compiled.as_text()
    fusions = len(re.findall(r" fusion\(", text))
    return {
        "lower_cpu": c1 - c0,
        "lower_wall": w1 - w0,
        "compile_cpu": c2 - c1,
        "compile_wall": w2 - w1,
        "fusions": fusions,
    }


def runtime_ab(model_name: str, a: str, b: str, rounds: int) -> dict:
    """Median step times of variants ``a`` and ``b`` in one process, alternating ABBA."""
    import jax

    from fnn import steps

    shipped = steps._global_norm
    runs = {}
    for name in (a, b):
        steps._global_norm = shipped
        jitted, state, batch, key = _setup(model_name, name)
        compiled = jitted.lower(state, batch, key).compile()
        runs[name] = [compiled, state, batch, key]
    times = {a: [], b: []}

    def once(name):
        r = runs[name]
        t0 = time.perf_counter()
        r[1], m = r[0](r[1], r[2], r[3])
        jax.block_until_ready(m)
        times[name].append(time.perf_counter() - t0)

    for name in (a, b, b, a):  # warm-up
        once(name)
    times = {a: [], b: []}
    for i in range(rounds):
        for name in (a, b) if i % 2 == 0 else (b, a):
            once(name)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(MODELS), default="efficientnet")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["base"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtime", nargs=2, choices=tuple(VARIANTS), metavar=("A", "B"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--worker", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ["FNN_COMPILATION_CACHE"] = "0"
    if args.worker:
        print(json.dumps(worker(args.model, args.worker)))
        return
    if args.runtime:
        res = runtime_ab(args.model, *args.runtime, args.rounds)
        a, b = args.runtime
        print(
            f"{args.model} step, median of {args.rounds}: "
            + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in res.items())
            + f"; {b}/{a} time {res[b] / res[a]:.3f}"
        )
        return
    results = {v: [] for v in args.variants}
    env = dict(os.environ, FNN_COMPILATION_CACHE="0")
    for r in range(args.repeats):
        for v in args.variants if r % 2 == 0 else reversed(args.variants):
            cmd = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--worker", v]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode:
                print(f"{v} failed:\n{proc.stderr[-3000:]}")
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[v].append(res)
            print(f"  {v}: " + ", ".join(f"{k} {x:.2f}" for k, x in res.items()), flush=True)
    print(f"\n{args.model}, {args.repeats} fresh processes each (medians; CPU s / wall s)")
    print("| variant | fusions | trace CPU | compile CPU | compile wall | compile CPU, all runs |")
    print("|---|---|---|---|---|---|")
    for v, rs in results.items():
        if not rs:
            continue
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        runs = " / ".join(f"{r['compile_cpu']:.1f}" for r in rs)
        print(
            f"| {v} | {med['fusions']:.0f} | {med['lower_cpu']:.2f} | {med['compile_cpu']:.2f} "
            f"| {med['compile_wall']:.2f} | {runs} |"
        )


if __name__ == "__main__":
    main()
