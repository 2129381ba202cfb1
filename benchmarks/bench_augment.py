"""Augmentation-only throughput: fnn's flip + rotation against Keras 3 on the JAX backend.

Workload (the slide's preprocessing layers): ``RandomFlip("horizontal_and_vertical")`` then
``RandomRotation(0.2)`` (bilinear, reflect fill), a new draw per image, on float32 NHWC batches of
32×32×3 and 224×224×3. Reported: median images/s over several timed repeats, and fnn/Keras ratios.

fnn is timed the way training uses it: the two NNX layers inside one ``jax.jit`` (``nnx.split``
once, ``nnx.merge`` inside, the RNG state threaded through), the augmented batch returned whole.
Reducing the augmented batch inside the same jit (e.g. summing it) lets XLA fuse the reduction with
the gathers into something much slower, so the benchmark does not do that. The functional path
(``apply_batch`` over ``compose(random_flip, random_rotation)``) is timed too.

Keras is timed as a Keras user runs it: the two layers in a ``keras.Sequential`` called with
``training=True`` (``RandomRotation`` declares ``supports_jit=False``, so Keras does not compile it
into the train step either); and, as the strongest Keras baseline, its own transforms jitted by
hand with explicit seeds. Keras is skipped, with a message, when it is not installed.

Run (in a Python with Keras 3 installed, on the JAX backend)::

    KERAS_BACKEND=jax python benchmarks/bench_augment.py
    KERAS_BACKEND=jax python benchmarks/bench_augment.py --quick
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from fnn import augment  # noqa: E402


def throughput(run, images_per_call: int, *, calls: int, repeats: int) -> float:
    """Median images/s over ``repeats`` timings of ``calls`` back-to-back calls (after warm-up)."""
    jax.block_until_ready(run())  # compile / warm up
    jax.block_until_ready(run())
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = run()
        jax.block_until_ready(out)
        rates.append(calls * images_per_call / (time.perf_counter() - start))
    return statistics.median(rates)


def fnn_layers(images, seed=0):
    """The two NNX layers, split once, merged inside one jitted step (what a train step does)."""
    model = nnx.Sequential(
        augment.RandomFlip("horizontal_and_vertical", rngs=nnx.Rngs(seed)),
        augment.RandomRotation(0.2, rngs=nnx.Rngs(seed + 1)),
    )
    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step(state, x):
        model = nnx.merge(graphdef, state)
        y = model(x)
        return nnx.state(model), y

    box = {"state": state}

    def run():
        box["state"], y = step(box["state"], images)
        return y

    return run


def fnn_functional(images, seed=0):
    """``apply_batch`` over ``compose(random_flip, random_rotation)``, key folded with a counter."""
    aug = augment.compose(
        functools.partial(augment.random_flip, mode="horizontal_and_vertical"),
        functools.partial(augment.random_rotation, factor=0.2),
    )
    key = jax.random.key(seed)
    step = jax.jit(lambda k, x: augment.apply_batch(k, x, aug))
    counter = iter(range(1 << 30))

    def run():
        return step(jax.random.fold_in(key, next(counter)), images)

    return run


def keras_layers(images, seed=0):
    import keras

    model = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.2, seed=seed + 1),
        ]
    )

    def run():
        return model(images, training=True)

    return run


def keras_jitted(images, seed=0):
    """Keras' own transforms inside one ``jax.jit``, seeds passed explicitly (not what ``fit`` does,
    since ``RandomRotation`` has ``supports_jit=False``; it shows the gap is not only dispatch)."""
    import keras

    flip = keras.layers.RandomFlip("horizontal_and_vertical")
    rotation = keras.layers.RandomRotation(0.2)

    @jax.jit
    def step(x, seed):
        t = flip.get_random_transformation(x, training=True, seed=seed)
        x = flip.transform_images(x, t)
        t = rotation.get_random_transformation(x, training=True, seed=seed + 1)
        return rotation.transform_images(x, t)

    counter = iter(range(0, 1 << 30, 2))

    def run():
        return step(images, jnp.array([seed, next(counter)], jnp.uint32))

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)

    try:
        import keras

        keras_note = f"keras {keras.__version__} (backend {keras.backend.backend()})"
        if keras.backend.backend() != "jax":
            keras_note += " -- not the JAX backend: set KERAS_BACKEND=jax; skipped"
            keras = None
    except ImportError:
        keras, keras_note = None, "keras not installed: Keras peer skipped"
    print(
        f"jax {jax.__version__}, flax {flax.__version__}, {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; {keras_note}"
    )

    # (height, width, batch, calls per timing)
    configs = [(32, 32, 128, 20 if args.quick else 50), (224, 224, 32, 3 if args.quick else 8)]
    rows = []
    rng = np.random.default_rng(0)
    for height, width, batch, calls in configs:
        images = jnp.asarray(rng.uniform(0, 1, (batch, height, width, 3)).astype(np.float32))
        result = {"size": f"{height}×{width}×3", "batch": batch}
        result["fnn layers (jit)"] = throughput(
            fnn_layers(images), batch, calls=calls, repeats=repeats
        )
        result["fnn functional (jit)"] = throughput(
            fnn_functional(images), batch, calls=calls, repeats=repeats
        )
        if keras is not None:
            keras_calls = max(1, calls // 5)
            result["keras 3 (jax)"] = throughput(
                keras_layers(images), batch, calls=keras_calls, repeats=repeats
            )
            result["keras 3 (jax), jitted"] = throughput(
                keras_jitted(images), batch, calls=keras_calls, repeats=repeats
            )
        rows.append(result)

    print()
    print("| input | batch | fnn layers (jit) | fnn functional (jit) | Keras 3 on JAX "
          "| Keras 3 on JAX, jitted | fnn layers / Keras | fnn layers / Keras jitted |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        k, kj = r.get("keras 3 (jax)"), r.get("keras 3 (jax), jitted")
        fl = r["fnn layers (jit)"]
        print(
            f"| {r['size']} | {r['batch']} | {fl:,.0f} | {r['fnn functional (jit)']:,.0f} "
            f"| {f'{k:,.0f}' if k else 'skipped'} | {f'{kj:,.0f}' if kj else 'skipped'} "
            f"| {f'{fl / k:.1f}×' if k else 'skipped'} | {f'{fl / kj:.1f}×' if kj else 'skipped'} |"
        )
    print("(images/s, medians; ratios within this run)")


if __name__ == "__main__":
    main()
