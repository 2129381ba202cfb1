"""Time a Li et al. 2-D loss landscape of the reference CNN with fnn.landscape.

The workload of issue 17: a 21 x 21 grid over two filter-normalised directions for
``fnn.models.ReferenceCNN`` (32x32x3 inputs) on a few thousand images, on the CPU. The cost does
not depend on the weights or the pixel values, so an untrained model and uniform noise images are
used (offline, no download). Reports the compile time, the seconds per grid row and per grid point,
the forward-pass throughput and the whole grid's wall time, plus two alternatives measured on a
few rows of the same grid:

* ``--points-per-batch K``: K grid points evaluated together under ``vmap`` (a grouped
  convolution per layer) instead of one after another;
* ``--peer``: the loop a user writes by hand: one jitted forward pass per data batch, the sums on
  the host, a Python loop over the grid points.

Run: ``PYTHONPATH=. python benchmarks/bench_landscape.py`` (full grid, several minutes on 2
cores), ``--rows 3`` for a quick estimate (the whole grid is extrapolated from the rows).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from fnn import landscape as ls
from fnn.models import ReferenceCNN


def _timed_surface(model, data, ds, xs, ys, **kwargs):
    # The first row includes the compilation; later rows reuse the program.
    start = time.perf_counter()
    first = ls.surface(model, data, ds, x=xs, y=ys[:1], **kwargs)
    compile_and_row = time.perf_counter() - start
    rows = []
    for y in ys[1:]:
        start = time.perf_counter()
        ls.surface(model, data, ds, x=xs, y=[y], **kwargs)
        rows.append(time.perf_counter() - start)
    return first, compile_and_row, rows


def _peer_row(model, data, ds, xs, y, batch_size):
    # A hand-written landscape: one jitted forward per data batch, a Python loop over points.
    graphdef, params, rest = ls.inference_split(model)

    @jax.jit
    def batch_loss(p, x, labels):
        logits = nnx.merge(graphdef, p, rest)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    total = []
    for x in xs:
        p = jax.tree.map(lambda w, a, b, x=x: w + x * a + y * b, params, *ds)
        s = 0.0
        for i in range(0, len(data["label"]), batch_size):
            s += float(
                batch_loss(p, data["image"][i : i + batch_size], data["label"][i : i + batch_size])
            )
        total.append(s / len(data["label"]))
    return np.asarray(total)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=21, help="grid points per axis")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rows", type=int, default=None, help="time only this many rows")
    parser.add_argument("--points-per-batch", type=int, default=None, help="also time K > 1")
    parser.add_argument("--peer", action="store_true", help="also time a hand-written loop")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data = {
        "image": rng.uniform(size=(args.images, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=args.images),
    }
    model = ReferenceCNN(rngs=nnx.Rngs(0))
    params = ls.inference_split(model)[1]
    ds = [ls.random_direction(jax.random.key(k), params) for k in (1, 2)]
    xs = np.linspace(-1, 1, args.steps)
    ys = np.linspace(-1, 1, args.steps)[: args.rows or args.steps]
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform}, {args.images} images, "
        f"{args.steps}x{args.steps} grid, batch {args.batch_size}"
    )

    first, compile_and_row, rows = _timed_surface(
        model, data, ds, xs, ys, batch_size=args.batch_size
    )
    row = float(np.median(rows)) if rows else compile_and_row
    grid = compile_and_row + row * (args.steps - 1)
    images_per_s = args.steps * args.images / row
    measured = "measured" if args.rows in (None, args.steps) else "extrapolated"
    print(f"fnn.landscape.surface: first row (compile + run) {compile_and_row:.1f} s")
    print(
        f"  per row {row:.2f} s (median of {len(rows)}), per point {row / args.steps:.3f} s, "
        f"{images_per_s:.0f} images/s forward"
    )
    print(f"  whole {args.steps}x{args.steps} grid: {grid:.0f} s ({grid / 60:.1f} min, {measured})")

    if args.points_per_batch:
        _, c, r = _timed_surface(
            model,
            data,
            ds,
            xs,
            ys[:3],
            batch_size=args.batch_size,
            points_per_batch=args.points_per_batch,
        )
        print(
            f"points_per_batch={args.points_per_batch}: first row {c:.1f} s, per row "
            f"{np.median(r):.2f} s ({row / np.median(r):.2f}x of one point at a time)"
        )
    if args.peer:
        start = time.perf_counter()
        peer = _peer_row(model, data, ds, xs, ys[0], args.batch_size)
        peer_first = time.perf_counter() - start
        start = time.perf_counter()
        _peer_row(model, data, ds, xs, ys[1 % len(ys)], args.batch_size)
        peer_row = time.perf_counter() - start
        np.testing.assert_allclose(peer, first.loss[0], rtol=1e-4)
        print(
            f"hand-written loop: first row {peer_first:.1f} s, per row {peer_row:.2f} s "
            f"(fnn {peer_row / row:.2f}x faster per row); same losses"
        )


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before timing
    main()
