"""`build`: construct a Flax NNX model as one quickly compiled program, for a fast cold start."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
from flax import nnx

from fnn.runtime import QUICK_COMPILE

__all__ = ["build"]

M = TypeVar("M", bound=nnx.Module)


def build(factory: Callable[[], M]) -> M:
    """Run ``factory()`` (a model constructor) as one jit-compiled program; return the model.

    No formula: the parameters are those of calling ``factory()`` directly, from the same random
    numbers (integer state bit for bit, floats to float32 rounding: the initialisers' arithmetic
    is compiled without optimisation, which moves some values by 1 ulp; tested). What changes is
    the cold start. Called eagerly, every initialiser (``lecun_normal``, ``glorot_uniform``, ...)
    is a separate XLA program, compiled once per parameter shape: 3.2–3.7 s for the reference CNN
    on this project's 2-core machine, of a fresh process's 8.4 s first training step. Here the
    whole constructor is traced (by `flax.nnx.eval_shape` for the structure and by `jax.jit` for
    the values) and compiled without LLVM optimisation, since it runs once: 0.9–1.2 s, and the first
    step 4.7 s (3.0–3.5 s since the train step's program got smaller; ``BENCHMARKS.md``). With
    ``import fnn``'s compilation cache warm both ways take ≈ 0.3 s. Each call compiles its own program (eager initialisers are reused within a process
    instead), so it pays off for the first model of a process, not for many small ones.

    Keras builds weights lazily, on the first call, with eagerly run TensorFlow/JAX initialisers;
    Flax's docs build sharded models the same way under `flax.nnx.jit`; PyTorch initialises
    eagerly with no compilation. Equivalent by hand:
    ``nnx.merge(nnx.split(nnx.eval_shape(f))[0], jax.jit(lambda: nnx.state(f()))())``.

    Args:
      factory: a function of no arguments that constructs and returns an `flax.nnx.Module`.
        Create the `flax.nnx.Rngs` inside it: an ``Rngs`` made outside would be used under
        `jax.jit` and leak tracers.

    Returns:
      The module, its parameters and other state as concrete arrays.

    Raises:
      TypeError: ``factory`` is a model rather than a function, is not callable, or does not
        return an `flax.nnx.Module`.

    Examples:
      >>> from flax import nnx
      >>> import fnn.models
      >>> model = fnn.models.build(lambda: fnn.models.ReferenceCNN(rngs=nnx.Rngs(0)))
      >>> model.conv1.kernel.shape
      (3, 3, 3, 32)
    """
    if isinstance(factory, nnx.Module) or not callable(factory):
        raise TypeError(
            "build: factory must be a function that constructs the model (e.g. "
            f"lambda: ReferenceCNN(rngs=nnx.Rngs(0))), got {type(factory).__name__}"
        )
    abstract = nnx.eval_shape(factory)
    if not isinstance(abstract, nnx.Module):
        raise TypeError(
            f"build: factory must return a flax.nnx.Module, it returned {type(abstract).__name__}"
        )
    graphdef, _ = nnx.split(abstract)
    state = jax.jit(lambda: nnx.state(factory()), compiler_options=QUICK_COMPILE)()
    return nnx.merge(graphdef, state)
