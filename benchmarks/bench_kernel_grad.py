"""Kernel gradients of the reference CNN's convolutions, computed five ways, timed side by side.

Why this exists: on XLA:CPU the kernel gradients (dL/dW) are where fnn's train step loses to
oneDNN (Keras-on-TF, PyTorch); see ``BENCHMARKS.md``, "Issue 7 scorecard". This script measures
how far a different formulation could get. For each 3×3, stride-1, SAME layer of the reference
CNN (batch 128) it times, in alternating rounds in one process:

- ``fnn``: what `fnn.conv` runs, a forward convolution of the batch-transposed input with the
  output gradient as an image-sized kernel, transposes included;
- ``fnn conv only``: the same convolution with its operands already transposed (the floor of the
  current formulation);
- ``matmul only``: the contraction as one ``[9·C, N·H·W] @ [N·H·W, O]`` matrix product with the
  patch matrix already materialised (the floor of any im2col formulation; not a usable gradient
  by itself, because the patches must be built every step);
- ``im2col``: patches built from the input (``[N·H·W, 9·C]``), then ``patchesᵀ @ g``;
- ``im2col, transposed patches``: the patch matrix built as ``[9·C, N·H·W]`` so that the product
  is in its fastest layout (the ``matmul only`` one).

All forms agree with ``fnn`` to float32 rounding (checked before timing). Medians of 7 rounds of
5 calls each; GFLOP/s counts 2·N·H·W·9·C·O.

Run:  python benchmarks/bench_kernel_grad.py           (about 20 s on 2 cores)
      python benchmarks/bench_kernel_grad.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnn import conv

# (batch, height = width, input channels, output channels) of the reference CNN's four layers.
LAYERS = ((128, 32, 3, 32), (128, 32, 32, 32), (128, 16, 32, 64), (128, 16, 64, 64))
_CFG = conv._Config(
    strides=(1, 1),
    padding=((1, 1), (1, 1)),
    lhs_dilation=(1, 1),
    rhs_dilation=(1, 1),
    groups=1,
    precision=None,
)


def _patches_nhwc(x):
    """``[N, H, W, 9·C]``: the nine shifted copies of the padded input, tap-major."""
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate(
        [xp[:, a : a + h, b : b + w] for a in range(3) for b in range(3)], axis=-1
    )


def _patches_transposed(x):
    """``[9·C, N·H·W]``: the same patches laid out for an untransposed matrix product."""
    n, h, w, c = x.shape
    xt = jnp.pad(jnp.transpose(x, (3, 0, 1, 2)), ((0, 0), (0, 0), (1, 1), (1, 1)))
    taps = [xt[:, :, a : a + h, b : b + w] for a in range(3) for b in range(3)]
    return jnp.stack(taps).reshape(9 * c, n * h * w)


def forms(c: int, o: int):
    """name -> (function, which operands it takes: "raw", "conv" or "matmul")."""
    dnums = conv._channels_last_dnums(2)

    def fnn_grad(x, g):
        return conv._kernel_grad(x, g, (3, 3, c, o), _CFG)

    def conv_only(xt, gt):
        out = lax.conv_general_dilated(xt, gt, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dnums)
        return jnp.moveaxis(out, 0, 2)  # [C, 3, 3, O] -> [3, 3, C, O]: 9·C·O numbers, free

    def matmul_only(p, g2):
        return jnp.dot(p, g2)

    def im2col(x, g):
        p = _patches_nhwc(x)
        d = lax.dot_general(p.reshape(-1, 9 * c), g.reshape(-1, o), (((0,), (0,)), ((), ())))
        return d.reshape(3, 3, c, o)

    def im2col_t(x, g):
        return jnp.dot(_patches_transposed(x), g.reshape(-1, o)).reshape(3, 3, c, o)

    return {
        "fnn": (fnn_grad, "raw"),
        "fnn conv only": (conv_only, "conv"),
        "matmul only": (matmul_only, "matmul"),
        "im2col": (im2col, "raw"),
        "im2col, transposed patches": (im2col_t, "raw"),
    }


def run_layer(n: int, hw: int, c: int, o: int, rounds: int, calls: int) -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, hw, hw, c)).astype(np.float32))
    g = jnp.asarray(rng.normal(size=(n, hw, hw, o)).astype(np.float32))
    operands = {
        "raw": (x, g),
        "conv": (jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3))),
        "matmul": (jax.jit(_patches_transposed)(x), g.reshape(-1, o)),
    }
    fns = {name: (jax.jit(f), operands[kind]) for name, (f, kind) in forms(c, o).items()}
    ref = np.asarray(fns["fnn"][0](*fns["fnn"][1]))
    scale = np.abs(ref).max()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, (f, args) in fns.items():
        err = np.abs(np.asarray(f(*args)).reshape(ref.shape) - ref).max() / scale
        if err > 1e-4:
            raise AssertionError(
                f"{name} disagrees with fnn's kernel gradient: rel. error {err:.1e}"
            )
    for _ in range(rounds):
        for name, (f, args) in fns.items():
            t = time.perf_counter()
            for _ in range(calls):
                out = f(*args)
            out.block_until_ready()
            times[name].append((time.perf_counter() - t) / calls * 1e3)
    flop = 2 * n * hw * hw * 9 * c * o
    print(f"\nlayer {c}→{o} at {hw}×{hw}, batch {n}: {flop / 1e9:.2f} GFLOP")
    print("| form | ms (median) | GFLOP/s | vs fnn |")
    print("|---|---|---|---|")
    base = statistics.median(times["fnn"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.2f} | {flop / m / 1e6:.0f} | {base / m:.2f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 calls (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 2, 2
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    for layer in LAYERS:
        run_layer(*layer, rounds=args.rounds, calls=args.calls)


if __name__ == "__main__":
    main()
