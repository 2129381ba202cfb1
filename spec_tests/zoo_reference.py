"""Helpers for the zoo families' tests: reference peers (torchvision, Keras 3) and tiny files.

The cross-checks give the reference and fnn the SAME random weights: the reference model is
built with random parameters and random BatchNorm statistics (so a mix-up of mean and variance,
or a wrong epsilon, shows), its weights are saved the way its users save them (a torchvision
state dict; Keras ``save_weights`` to ``.weights.h5``), fnn reads the saved file, and the logits
of the same images are compared.
"""

from __future__ import annotations

import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fnn.models._zoo_layers import assign, read_keras_h5


def torchvision():
    """Imports torchvision beside the CPU torch (its compiled ops are not needed), or skips."""
    pytest.importorskip("torch")
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    return pytest.importorskip("torchvision")


def keras():
    """Keras 3 on the JAX backend, or skips."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    k = pytest.importorskip("keras")
    if k.backend.backend() != "jax":
        pytest.skip("the Keras cross-checks run on Keras' JAX backend")
    return k


def randomize_torch_bn(model, seed: int = 0) -> None:
    """Random BatchNorm scale, shift and running statistics (defaults would hide mix-ups)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def torch_state_file(model, path) -> dict[str, np.ndarray]:
    """Saves ``model.state_dict()`` with ``torch.save`` and reads it back with fnn's reader."""
    import torch

    from fnn import weights

    torch.save(model.state_dict(), path)
    return weights.load(path)


def torch_logits(model, x_nhwc: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
    return np.asarray(out.numpy())


def randomize_keras_bn(model, seed: int = 0) -> None:
    """Random gamma/beta/moving statistics for every Keras BatchNormalization layer."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        new = []
        for w in layer.weights:
            name = w.path.split("/")[-1]
            shape = tuple(w.shape)
            if name == "gamma":
                new.append(0.5 + rng.random(shape))
            elif name == "moving_variance":
                new.append(0.5 + rng.random(shape))
            else:
                new.append(0.2 * rng.standard_normal(shape))
        layer.set_weights([v.astype("float32") for v in new])


def keras_weights_file(model, path) -> dict[str, np.ndarray]:
    """``model.save_weights(path)`` (``.weights.h5``), read back by fnn's `read_keras_h5`."""
    model.save_weights(str(path))
    return read_keras_h5(path)


def load_converted(spec, model, flat) -> nnx.Module:
    """``spec.convert`` then write the arrays into ``model``; returns it in eval mode."""
    assign(model, spec.convert(model, flat))
    model.eval()
    return model


def fnn_logits(model, x: np.ndarray) -> np.ndarray:
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x):
        return nnx.merge(graphdef, state)(x)

    return np.asarray(run(state, jnp.asarray(x)))


def random_file_roundtrip(model, names, *, seed: int = 0) -> dict[str, np.ndarray]:
    """A flat weight dict in the source layout holding random values for every name of
    ``names`` (``{flax path: (key, kind)}``), with the source layout's shapes (the inverse of
    each kind's layout change, written here independently of the code under test)."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    shapes = {"/".join(map(str, p)): tuple(v.shape) for p, v in nnx.to_flat_state(state)}
    flat = {}
    for path, (key, kind) in names.items():
        shape = shapes[path]
        if kind == "conv":  # Flax HWIO -> torch OIHW
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif kind == "dense":
            shape = shape[::-1]
        elif kind == "keras_depthwise":  # Flax [k, k, 1, C] -> Keras [k, k, C, 1]
            shape = (shape[0], shape[1], shape[3], shape[2])
        value = rng.standard_normal(shape).astype(np.float32)
        if path.endswith("var"):
            value = np.abs(value) + 0.5
        flat[key] = value
    return flat


def scale_torch_logits(model, x_nhwc: np.ndarray, target: float = 10.0) -> None:
    """Rescales the last ``Linear`` so the logits of ``x`` reach about ``target`` in magnitude.

    torchvision initialises classifiers with tiny weights (logits ~0.05 for random images), which
    would make an absolute 1e-4 tolerance meaningless; at ~10 it is a relative 1e-5."""
    import torch

    last = [
        m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "Aux" not in n
    ]
    peak = float(np.abs(torch_logits(model, x_nhwc)).max())
    with torch.no_grad():
        last[-1].weight.mul_(target / peak)
        last[-1].bias.normal_(0.0, 1.0)


def scale_keras_logits(model, x_nhwc: np.ndarray, target: float = 10.0) -> None:
    """`scale_torch_logits` for Keras: rescales the last ``Dense`` (Keras' ``predictions``)."""
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"][-1]
    peak = float(np.abs(np.asarray(model(x_nhwc, training=False))).max())
    kernel, bias = dense.get_weights()
    rng = np.random.default_rng(1)
    dense.set_weights([kernel * (target / peak), rng.standard_normal(bias.shape).astype("float32")])
