"""oneDNN FFI convolutions against fnn's CPU convolutions, alternated in one process (issue 18).

Two measurements, both A/B in alternating rounds, medians, wall and process CPU time (all threads):

- ``layers``: the reference CNN's four 3×3 stride-1 SAME convolutions at batch 128. Kernel
  gradient: ``fnn`` (``fnn.conv._kernel_grad``: the batch-transposed input convolved with the
  output gradient, transposes included) against ``onednn`` (`onednn_ffi.kernel_grad`), each
  layer its own jitted program, and all four in one program. Forward: XLA's convolution (what
  fnn runs) against `onednn_ffi.conv_forward`. Results are checked equal first.
- ``step``: the whole reference-CNN train step (``fnn.train.make_train_step``, Adam, batch 128),
  as shipped against the same step with ``fnn.conv._kernel_grad`` replaced by the oneDNN call
  (monkeypatched while the second program is traced; the lowered program is checked to contain
  the custom call). This is the decisive figure: it includes whatever the custom call costs the
  surrounding program (lost fusion, threads).

Run (after build.sh):  PYTHONPATH=$PWD python benchmarks/ffi_onednn/bench.py [layers] [step]
Environment: FNN_ONEDNN_HWIO_WEIGHTS=1 makes oneDNN take HWIO weights in place (its im2col + GEMM
kernel) instead of its own blocked layout (its direct JIT kernel, then a reorder);
OMP_WAIT_POLICY=passive stops oneDNN's OpenMP threads spinning after each call.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# The baseline is fnn's pure-JAX path: fnn's own oneDNN integration (fnn.onednn) stays off here.
os.environ["FNN_ONEDNN"] = "0"

import fnn  # noqa: E402, F401  (fnn's process settings, as in training)
from fnn import conv  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onednn_ffi  # noqa: E402

LAYERS = ((128, 32, 3, 32), (128, 32, 32, 32), (128, 16, 32, 64), (128, 16, 64, 64))
PADS = ((1, 1), (1, 1))
CFG = conv._Config((1, 1), PADS, (1, 1), (1, 1), 1, None)
DNUMS = ("NHWC", "HWIO", "NHWC")


def _time(fn, args, calls):
    """(wall ms, CPU ms) per call over ``calls`` calls."""
    jax.block_until_ready(fn(*args))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) * 1e3 / calls, (time.process_time() - c0) * 1e3 / calls


def _ab(variants, rounds, calls):
    """name -> (median wall ms, median CPU ms); variants alternate, order flipped every round."""
    names = list(variants)
    walls = {k: [] for k in names}
    cpus = {k: [] for k in names}
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            fn, args = variants[k]
            w, c = _time(fn, args, calls)
            walls[k].append(w)
            cpus[k].append(c)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k])) for k in names}


def _layer_data(n, s, c, o, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, s, s, c), dtype=np.float32))
    g = jnp.asarray(rng.standard_normal((n, s, s, o), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, c, o), dtype=np.float32) / np.sqrt(9 * c))
    return x, g, w


def bench_layers(rounds=15, calls=5):
    rows = []
    data = [_layer_data(*layer) for layer in LAYERS]
    for (n, s, c, o), (x, g, w) in zip(LAYERS, data):
        fnn_kg = jax.jit(lambda x, g, c=c, o=o: conv._kernel_grad(x, g, (3, 3, c, o), CFG))
        dnn_kg = jax.jit(lambda x, g: onednn_ffi.kernel_grad(x, g, (3, 3), (1, 1), PADS))
        a, b = fnn_kg(x, g), dnn_kg(x, g)
        err = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
        assert err < 2e-5, f"kernel gradient differs: {err}"
        xla_fwd = jax.jit(
            lambda x, w: lax.conv_general_dilated(x, w, (1, 1), PADS, None, None, DNUMS)
        )
        dnn_fwd = jax.jit(lambda x, w: onednn_ffi.conv_forward(x, w, (1, 1), PADS))
        fa, fb = xla_fwd(x, w), dnn_fwd(x, w)
        ferr = float(jnp.max(jnp.abs(fa - fb)) / jnp.max(jnp.abs(fa)))
        assert ferr < 2e-5, f"forward differs: {ferr}"
        kg = _ab({"fnn": (fnn_kg, (x, g)), "onednn": (dnn_kg, (x, g))}, rounds, calls)
        fw = _ab({"xla": (xla_fwd, (x, w)), "onednn": (dnn_fwd, (x, w))}, rounds, calls)
        gflop = 2 * n * s * s * 9 * c * o / 1e9
        rows.append((f"{c}→{o}, {s}×{s}", gflop, kg, fw))

    def all_kg(use_dnn):
        def f(*xs_gs):
            outs = []
            for (_, _, c, o), x, g in zip(LAYERS, xs_gs[0::2], xs_gs[1::2]):
                if use_dnn:
                    outs.append(onednn_ffi.kernel_grad(x, g, (3, 3), (1, 1), PADS))
                else:
                    outs.append(conv._kernel_grad(x, g, (3, 3, c, o), CFG))
            return outs

        return jax.jit(f)

    flat = [t for x, g, _ in data for t in (x, g)]
    total = _ab({"fnn": (all_kg(False), flat), "onednn": (all_kg(True), flat)}, rounds, calls)

    print(f"\nkernel gradient (dL/dW) and forward, batch 128, medians of {rounds} rounds × {calls}")
    print(
        "| layer | GFLOP | dW fnn ms (CPU) | dW oneDNN ms (CPU) | dW speed-up | fwd XLA ms | "
        "fwd oneDNN ms | fwd speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sums = np.zeros(4)
    for name, gflop, kg, fw in rows:
        sums += [kg["fnn"][0], kg["onednn"][0], fw["xla"][0], fw["onednn"][0]]
        print(
            f"| {name} | {gflop:.2f} | {kg['fnn'][0]:.2f} ({kg['fnn'][1]:.2f}) | "
            f"{kg['onednn'][0]:.2f} ({kg['onednn'][1]:.2f}) | {kg['fnn'][0] / kg['onednn'][0]:.2f}× | "
            f"{fw['xla'][0]:.2f} | {fw['onednn'][0]:.2f} | {fw['xla'][0] / fw['onednn'][0]:.2f}× |"
        )
    print(
        f"| sum of layers | | {sums[0]:.2f} | {sums[1]:.2f} | {sums[0] / sums[1]:.2f}× | "
        f"{sums[2]:.2f} | {sums[3]:.2f} | {sums[2] / sums[3]:.2f}× |"
    )
    print(
        f"| four dW in one program | | {total['fnn'][0]:.2f} ({total['fnn'][1]:.2f}) | "
        f"{total['onednn'][0]:.2f} ({total['onednn'][1]:.2f}) | "
        f"{total['fnn'][0] / total['onednn'][0]:.2f}× | | | |"
    )


def _onednn_kernel_grad(x, g, k_shape, cfg):
    """Drop-in for ``fnn.conv._kernel_grad`` where the FFI covers the case, else fnn's."""
    simple = (
        x.ndim == 4
        and x.dtype == jnp.float32
        and cfg.groups == 1
        and all(d == 1 for d in (*cfg.lhs_dilation, *cfg.rhs_dilation))
    )
    if not simple:
        return _FNN_KERNEL_GRAD(x, g, k_shape, cfg)
    return onednn_ffi.kernel_grad(x, g, k_shape[:2], cfg.strides, cfg.padding)


def _onednn_plain(x, w, cfg):
    """Drop-in for ``fnn.conv._plain`` (forward, and the input gradient's convolution)."""
    simple = (
        x.ndim == 4
        and x.dtype == jnp.float32
        and cfg.groups == 1
        and all(d == 1 for d in (*cfg.lhs_dilation, *cfg.rhs_dilation))
        and all(p >= 0 for pair in cfg.padding for p in pair)
    )
    if not simple:
        return _FNN_PLAIN(x, w, cfg)
    return onednn_ffi.conv_forward(x, w, cfg.strides, cfg.padding)


def _auto_with_plain_default(x, w, cfg):
    """``fnn.conv._auto`` whose non-CPU branch keeps XLA's differentiable convolution."""
    return lax.platform_dependent(
        x,
        w,
        cpu=lambda a, b: conv._canonical(a, b, cfg),
        default=lambda a, b: _FNN_PLAIN(a, b, cfg),
    )


_FNN_KERNEL_GRAD = conv._kernel_grad
_FNN_PLAIN = conv._plain
_FNN_AUTO = conv._IMPL["auto"]


def bench_step(rounds=10, steps=5):
    from flax import nnx

    import fnn.losses
    import fnn.models
    import fnn.optimizers
    import fnn.train
    from fnn.models import ReferenceCNN

    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.uniform(0, 1, (steps, 128, 32, 32, 3)).astype(np.float32))
    ys = jnp.asarray(rng.integers(0, 10, (steps, 128)).astype(np.int32))
    key = jax.random.key(0)
    loss = fnn.losses.get("sparse_categorical_crossentropy", from_logits=True)

    def make(kernel_grad, plain):
        model = fnn.models.build(lambda: ReferenceCNN(rngs=nnx.Rngs(0)))
        state = fnn.train.TrainState.create(model, fnn.optimizers.get("adam"))
        step = fnn.train.make_train_step(loss)
        conv._kernel_grad, conv._plain = kernel_grad, plain
        if plain is not _FNN_PLAIN:
            conv._IMPL["auto"] = _auto_with_plain_default
        try:
            state, m = step(state, {"image": xs[0], "label": ys[0]}, key)
            jax.block_until_ready(m)
            text = step.lower(state, {"image": xs[0], "label": ys[0]}, key).as_text()
        finally:
            conv._kernel_grad, conv._plain = _FNN_KERNEL_GRAD, _FNN_PLAIN
            conv._IMPL["auto"] = _FNN_AUTO
        # The patched programs hold the custom calls, the shipped one does not.
        assert ("fnn_onednn_conv_bwd_w" in text) == (kernel_grad is not _FNN_KERNEL_GRAD)
        assert ("fnn_onednn_conv_fwd" in text) == (plain is not _FNN_PLAIN)
        return {"step": step, "state": state, "loss": float(m["loss"])}

    runs = {
        "fnn": make(_FNN_KERNEL_GRAD, _FNN_PLAIN),
        "onednn dW": make(_onednn_kernel_grad, _FNN_PLAIN),
        "onednn dW + fwd + dx": make(_onednn_kernel_grad, _onednn_plain),
    }
    losses = [r["loss"] for r in runs.values()]
    assert max(losses) - min(losses) < 1e-4, losses

    def epoch(r):
        def run():
            for i in range(steps):
                r["state"], m = r["step"](r["state"], {"image": xs[i], "label": ys[i]}, key)
            return m

        return run

    times = _ab({k: (epoch(r), ()) for k, r in runs.items()}, rounds, 1)
    print(
        f"\nwhole train step (reference CNN, batch 128, Adam), medians of {rounds} rounds × "
        f"{steps} steps"
    )
    print("| variant | ms per step (CPU ms) | images/s | speed-up, wall (CPU) |")
    print("|---|---|---|---|")
    for k, (w, c) in times.items():
        print(
            f"| {k} | {w / steps:.1f} ({c / steps:.1f}) | {128 * steps / w * 1e3:.0f} | "
            f"{times['fnn'][0] / w:.3f}× ({times['fnn'][1] / c:.3f}×) |"
        )


if __name__ == "__main__":
    err = onednn_ffi.load()
    if err:
        sys.exit(err)
    what = sys.argv[1:] or ["layers", "step"]
    print(
        f"jax {jax.__version__}, FNN_ONEDNN_HWIO_WEIGHTS={os.environ.get('FNN_ONEDNN_HWIO_WEIGHTS')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load {os.getloadavg()[0]:.1f}, "
        f"{time.strftime('%H:%M UTC', time.gmtime())}"
    )
    if "layers" in what:
        bench_layers()
    if "step" in what:
        bench_step()
