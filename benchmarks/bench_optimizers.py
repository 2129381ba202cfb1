"""Time per optimizer update: every fnn optimizer against its Optax twin, side by side.

Workload: an ~11.04M-parameter float32 pytree of 50 leaves (25 weight/bias pairs), constant
gradients, one ``jax.jit``-compiled step ``(params, state, grads) -> (params, state)`` that calls
``tx.update`` and ``optax.apply_updates``, with params and state donated (updated in place).
fnn and Optax steps are timed in alternating rounds in one process so that load from other jobs
hits both; we report the median time per update and the ratio Optax/fnn (> 1: fnn is faster).

The flat-buffer table keeps the same 11.04M parameters as one flat buffer
(`fnn.optimizers.flatten`), so each Adam update is 3 loops over memory instead of 3 per leaf, and
compares fnn and Optax Adam on it with Optax Adam on the 50-leaf tree. (It replaced the fused
path, `fused_adam` with interleaved moments, removed after it stayed below 1.3x; BENCHMARKS.md.)
The memory-bandwidth ceiling is measured in the same run with a donated in-place
``p ← p + a·g`` over the flat buffer (12 bytes per element), and each row reports the share of
it that the update reaches (bytes moved / time / bandwidth).

Run:  python benchmarks/bench_optimizers.py              (about 2-4 minutes on 2 cores)
      python benchmarks/bench_optimizers.py --quick      (a few seconds per optimizer)
      python benchmarks/bench_optimizers.py --flat-only  (only the flat-buffer table)
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import optimizers as fo

LR = 1e-3


def make_params(n_pairs: int = 25, seed: int = 0) -> dict:
    """50 leaves, ~11.04M float32 parameters: dense-layer-like weight matrices plus biases."""
    rng = np.random.default_rng(seed)
    params = {}
    widths = np.linspace(190, 1190, n_pairs).astype(int)
    for i, w in enumerate(widths):
        fan_in = int(w * 0.78)
        params[f"layer{i:02d}"] = {
            "kernel": jnp.asarray(rng.standard_normal((fan_in, w), dtype=np.float32) * 0.02),
            "bias": jnp.zeros((w,), jnp.float32),
        }
    return params


def n_params(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


# name -> (fnn factory, optax factory or None, bytes moved per parameter per update)
# bytes: params r+w (8) + grads r (4) + each state slot r+w (8).
PAIRS = {
    "sgd": (lambda: fo.sgd(LR), lambda: optax.sgd(LR), 12),
    "momentum": (lambda: fo.momentum(LR, 0.9), lambda: optax.sgd(LR, momentum=0.9), 20),
    "nesterov": (
        lambda: fo.nesterov(LR, 0.9),
        lambda: optax.sgd(LR, momentum=0.9, nesterov=True),
        20,
    ),
    "adagrad": (lambda: fo.adagrad(LR), lambda: optax.adagrad(LR), 20),
    "rmsprop": (lambda: fo.rmsprop(LR), lambda: optax.rmsprop(LR), 20),
    "adam": (lambda: fo.adam(LR), lambda: optax.adam(LR), 28),
    "adam (keras convention)": (
        lambda: fo.adam(LR, eps=1e-7, convention="keras"),
        lambda: optax.adam(LR, eps=1e-7),
        28,
    ),
    "adam_simplified": (
        lambda: fo.adam_simplified(LR),
        lambda: optax.adam(LR, eps=0.0, eps_root=1e-8),
        28,
    ),
    "adamw": (lambda: fo.adamw(LR), lambda: optax.adamw(LR), 28),
    "amsgrad": (lambda: fo.amsgrad(LR), lambda: optax.amsgrad(LR), 36),
    "adamax": (lambda: fo.adamax(LR), lambda: optax.adamax(LR), 28),
    "nadam": (lambda: fo.nadam(LR), lambda: optax.nadam(LR), 28),
    "nadam (keras convention)": (
        lambda: fo.nadam(LR, eps=1e-7, convention="keras"),
        lambda: optax.nadam(LR, eps=1e-7),
        28,
    ),
    "adadelta": (lambda: fo.adadelta(1.0), lambda: optax.adadelta(1.0), 28),
    "ftrl": (lambda: fo.ftrl(0.1), None, 28),
    "lion": (lambda: fo.lion(LR), lambda: optax.lion(LR), 20),
    "lion (keras convention)": (
        lambda: fo.lion(LR, convention="keras", weight_decay=None),
        lambda: optax.lion(LR, weight_decay=0.0),
        20,
    ),
}


def make_step(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


class Runner:
    """A compiled, donated update loop whose state lives across timing rounds."""

    def __init__(self, tx, params, grads):
        self.step = make_step(tx)
        self.params = jax.tree.map(jnp.copy, params)
        self.state = tx.init(self.params)
        self.grads = grads
        for _ in range(3):  # compile + warm up
            self.run(1)

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.params, self.state = self.step(self.params, self.state, self.grads)
            jax.block_until_ready(self.params)
            times.append(time.perf_counter() - t0)
        return times


def time_pair(runners: dict, rounds: int, per_round: int) -> tuple[dict, dict]:
    """Median and minimum seconds per update of each runner, interleaved round by round."""
    times = {k: [] for k in runners}
    for _ in range(rounds):
        for k, r in runners.items():
            times[k] += r.run(per_round)
    return {k: statistics.median(v) for k, v in times.items()}, {
        k: min(v) for k, v in times.items()
    }


class AxpyRunner(Runner):
    """The bandwidth probe: a donated in-place p ← p + a·g (reads p and g, writes p)."""

    def __init__(self, flat):
        self.step = jax.jit(lambda p, s, g: (p + 1e-6 * g, s), donate_argnums=(0,))
        self.params, self.state, self.grads = jnp.copy(flat), (), jnp.ones_like(flat)
        for _ in range(3):
            self.run(1)


def gbps(nbytes_per_param: int, size: int, seconds: float) -> float:
    return nbytes_per_param * size / seconds / 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--only", nargs="*", help="optimizer names to run (default: all)")
    parser.add_argument("--flat-only", action="store_true", help="only the flat-buffer table")
    args = parser.parse_args(argv)
    # Interleave call by call: on a shared machine, load spikes then hit fnn and Optax alike.
    rounds, per_round = (6, 1) if args.quick else (40, 2)

    params = make_params()
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    size = n_params(params)
    flat, _ = fo.flatten(params)
    flat_grads, _ = fo.flatten(grads)
    axpy = AxpyRunner(flat)
    print(
        f"jax {jax.__version__}, optax {optax.__version__}, backend {jax.default_backend()}, "
        f"{jax.devices()[0].device_kind}"
    )
    print(
        f"{size / 1e6:.2f}M float32 parameters in {len(jax.tree.leaves(params))} leaves; "
        f"medians of {rounds}x{per_round} interleaved updates; %bw = bytes moved / time as a share "
        "of an in-place p += a*g over the same buffer, timed in the same rounds"
    )
    print()
    header = (
        f"{'optimizer':26s} {'fnn ms':>8s} {'optax ms':>9s} {'optax/fnn':>10s} {'fnn %bw':>8s}"
        f" {'axpy GB/s':>10s}"
    )
    print(header)
    print("-" * len(header))

    names = [] if args.flat_only else (args.only or list(PAIRS))
    for name in names:
        fnn_tx, optax_tx, nbytes = PAIRS[name]
        runners = {"fnn": Runner(fnn_tx(), params, grads), "axpy": axpy}
        if optax_tx is not None:
            runners["optax"] = Runner(optax_tx(), params, grads)
        med, _ = time_pair(runners, rounds, per_round)
        bw = gbps(12, size, med["axpy"])
        share = gbps(nbytes, size, med["fnn"]) / bw
        if "optax" in med:
            ratio = med["optax"] / med["fnn"]
            print(
                f"{name:26s} {med['fnn'] * 1e3:8.2f} {med['optax'] * 1e3:9.2f} "
                f"{ratio:9.2f}x {share:7.0%} {bw:10.1f}"
            )
        else:
            print(
                f"{name:26s} {med['fnn'] * 1e3:8.2f} {'(none)':>9s} {'':>10s} {share:7.0%} {bw:10.1f}"
            )
        del runners

    print()
    print("Flat buffer: parameters, gradients and state as ONE buffer vs Optax on 50 leaves")
    flat_runs = {
        "axpy": axpy,
        "fnn adam, flat buffer": Runner(fo.adam(LR), flat, flat_grads),
        "fnn adam, 50 leaves": Runner(fo.adam(LR), params, grads),
        "optax adam, 50 leaves": Runner(optax.adam(LR), params, grads),
        "optax adam, flat buffer": Runner(optax.adam(LR), flat, flat_grads),
    }
    med, best = time_pair(flat_runs, rounds * 2, per_round)
    base, base_best = med["optax adam, 50 leaves"], best["optax adam, 50 leaves"]
    bw = gbps(12, size, med.pop("axpy"))
    bw_best = gbps(12, size, best.pop("axpy"))
    print(f"(in-place p += a*g in the same rounds: median {bw:.1f} GB/s, best {bw_best:.1f} GB/s;")
    print(" %bw counts the 28 bytes per parameter a one-pass Adam must move)")
    for k in med:
        print(
            f"{k:28s} best {best[k] * 1e3:7.2f} ms  {base_best / best[k]:5.2f}x   "
            f"{gbps(28, size, best[k]) / bw_best:5.0%} of bw"
        )
    print("medians:")
    for k, t in med.items():
        share = gbps(28, size, t) / bw
        print(f"{k:28s} median {t * 1e3:7.2f} ms  {base / t:5.2f}x   {share:5.0%} of bw")


if __name__ == "__main__":
    main()
