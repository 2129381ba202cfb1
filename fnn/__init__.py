"""fnn: the lecture on training CNNs as a JAX library.

Submodules are imported on first use (``fnn.losses``, ``fnn.optimizers``, ...), so
``import fnn`` stays fast and does not pull TensorFlow Datasets or Orbax until needed.
"""

import importlib

from fnn import runtime as _runtime

__version__ = "0.1.0"

# Before JAX starts its CPU backend: keep freed host memory so that XLA:CPU's per-step buffers
# are not page-faulted again on every step, run CPU convolutions on every core (jaxlib 0.10), and
# keep compiled programs on disk for the next run (fnn.runtime says why; FNN_REUSE_HOST_MEMORY=0,
# FNN_THREADED_CONVOLUTIONS=0 and FNN_COMPILATION_CACHE=0 opt out).
_runtime._on_import()

_SUBMODULES = (
    "activations",
    "augment",
    "boxes",
    "callbacks",
    "checkpoints",
    "conv",
    "data",
    "dataset",
    "feeding",
    "landscape",
    "layers",
    "losses",
    "metrics",
    "models",
    "objective",
    "onednn",
    "optimizers",
    "parallel",
    "plot",
    "pool",
    "precision",
    "pretrained",
    "retrieval",
    "runtime",
    "shapes",
    "steps",
    "train",
    "trainer",
    "transfer",
    "weights",
)

__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"fnn.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'fnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
