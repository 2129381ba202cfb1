"""Data parallelism through `jax.sharding`: a 1-D ``data`` mesh, batch split, parameters replicated.

Data contract: a batch is a pytree whose leaves have the batch as their leading axis ``[B, ...]``;
on a mesh of ``D`` devices the batch is split into ``D`` equal shards of ``B / D`` examples along
the ``"data"`` mesh axis, and every parameter, optimizer and BatchNorm array is replicated. The
compiled train step is the single-device step: XLA's SPMD partitioner inserts the gradient
all-reduce (``g = 1/D Σ_d g_d`` for a mean loss), so the result equals one device's up to the
float32 rounding of the summation order.

``B`` must be a multiple of ``D`` (`check_batch_size` says so, with the remedy: choose a multiple,
or pass ``devices=`` to `fnn.train.compile`). Keras' ``DataParallel`` distribution and PyTorch's
DDP split the same way; DDP averages gradients explicitly with ``all_reduce`` where JAX derives it
from the sharding annotations.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "make_mesh",
    "replicated",
    "batch_sharding",
    "replicate",
    "shard_batch",
    "check_batch_size",
]

#: The mesh axis name that batches are split over.
DATA_AXIS = "data"


def make_mesh(devices: int | Sequence[jax.Device] | Mesh | None = None) -> Mesh:
    """A 1-D `jax.sharding.Mesh` with the axis ``"data"``.

    Args:
      devices: ``None`` for every local device (``jax.local_devices()``), an int ``n`` for the
        first ``n`` local devices, a sequence of devices, or a ready `Mesh` (returned as is; it
        must have a ``"data"`` axis).

    Returns:
      ``Mesh`` of shape ``{"data": D}``.

    Examples:
      >>> mesh = make_mesh(1)
      >>> mesh.axis_names
      ('data',)
    """
    if isinstance(devices, Mesh):
        if DATA_AXIS not in devices.axis_names:
            raise ValueError(
                f"devices: a Mesh must have a {DATA_AXIS!r} axis, got axes {devices.axis_names}"
            )
        return devices
    local = jax.local_devices()
    if devices is None:
        chosen = local
    elif isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(
                f"devices must be between 1 and the {len(local)} local devices, got {devices}"
            )
        chosen = local[: int(devices)]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices: expected at least one device, got an empty sequence")
    return Mesh(np.array(chosen), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device (``PartitionSpec()``)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding that splits the leading (batch) axis over ``"data"``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    """`jax.device_put` every leaf of ``tree`` replicated over ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh, *, name: str = "batch_size") -> None:
    """Raise a ``ValueError`` with the remedy when ``batch_size`` does not split evenly.

    Examples:
      >>> check_batch_size(32, make_mesh(1))
    """
    d = mesh.devices.size
    if batch_size % d:
        lower, upper = (batch_size // d) * d, (batch_size // d + 1) * d
        options = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"{name}={batch_size} cannot be split evenly over the {d} devices of the "
            f"{DATA_AXIS!r} mesh axis; use a multiple of {d} (e.g. {options}), or train on fewer "
            f"devices with fnn.train.compile(..., devices=n)"
        )


def shard_batch(batch, mesh: Mesh):
    """Put a host batch on the mesh, split along its leading axis (checks divisibility).

    Examples:
      >>> import numpy as np
      >>> x = shard_batch(np.zeros((4, 3), np.float32), make_mesh(1))
      >>> x.shape
      (4, 3)
    """
    for leaf in jax.tree.leaves(batch):
        check_batch_size(int(np.shape(leaf)[0]), mesh, name="batch size")
    return jax.device_put(batch, batch_sharding(mesh))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """``[k, B, ...]`` stacks of ``k`` batches: the batch axis (1) split over ``"data"``."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def constrain_batch(batch, mesh: Mesh | None, *, stacked: bool = False):
    """Inside a compiled step: split ``batch`` over the mesh's ``"data"`` axis (axis 0, or
    axis 1 of a ``[k, B, ...]`` stack); a no-op without a mesh or on one device."""
    if mesh is None or mesh.devices.size == 1:
        return batch
    sharding = stacked_batch_sharding(mesh) if stacked else batch_sharding(mesh)
    return jax.lax.with_sharding_constraint(batch, sharding)
