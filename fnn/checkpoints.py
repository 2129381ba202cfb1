"""Checkpoints: a `fnn.steps.TrainState` to and from an Orbax folder, ``directory/<epoch>``.

`save_checkpoint` and `restore_checkpoint` are what `fnn.trainer.Trainer.save` / ``restore`` and
`fnn.callbacks.ModelCheckpoint` call; `epochs` and `delete_epochs` are the folder operations the
callback needs. Typed PRNG keys are stored as their key data (Orbax stores plain arrays) and
rewrapped on restore. Orbax writes each save to a temporary folder and renames it when
complete, so a crash never leaves a half-written epoch.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

__all__ = ["save_checkpoint", "restore_checkpoint", "epochs", "delete_epochs", "manager"]


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree):
    """Typed PRNG keys become their uint32 key data (Orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_saveable(tree, like):
    return jax.tree.map(
        lambda x, ref: (
            jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x
        ),
        tree,
        like,
    )


def _checkpoint_tree(state, weights_only: bool) -> dict:
    tree = {"params": state.params, "model_state": state.model_state}
    if not weights_only:
        tree.update(step=state.step, opt_state=state.opt_state, lr_scale=state.lr_scale)
    return _to_saveable(tree)


def manager(directory, *, create: bool):
    """An Orbax ``CheckpointManager`` over ``directory`` (synchronous saves; a context manager)."""
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def save_checkpoint(
    directory,
    state,
    *,
    epoch: int,
    weights_only: bool = False,
    metadata: dict | None = None,
) -> None:
    """Save ``state`` with Orbax under ``directory/<epoch>`` (atomic: a temporary folder is renamed).

    An existing checkpoint of the same ``epoch`` is replaced only after the new one is complete.

    Args:
      directory: the checkpoint folder (created if missing).
      state: the `fnn.steps.TrainState`; ``weights_only`` keeps params and model state only (Keras'
        ``save_weights_only``), otherwise step, optimizer state and learning-rate scale too.
      epoch: the number of completed epochs (the Orbax step).
      metadata: JSON-serialisable extras stored next to the arrays.
    """
    import orbax.checkpoint as ocp

    tree = _checkpoint_tree(state, weights_only)
    meta = {"epoch": int(epoch), "weights_only": bool(weights_only), **(metadata or {})}
    with manager(directory, create=True) as mngr:
        if epoch in mngr.all_steps():
            # Write the replacement beside the old one first, so a crash never loses both.
            tmp = os.path.join(os.fspath(directory), f".replacing_{epoch}")
            with manager(tmp, create=True) as side:
                side.save(
                    epoch,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
                    ),
                )
            mngr.delete(epoch)
            os.replace(
                os.path.join(tmp, str(epoch)), os.path.join(os.fspath(directory), str(epoch))
            )
            os.rmdir(tmp) if not os.listdir(tmp) else None
            mngr.reload()
        else:
            mngr.save(
                epoch,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
                ),
            )


def restore_checkpoint(directory, state, *, epoch: int | None = None) -> tuple:
    """Read a checkpoint written by `save_checkpoint` into the structure of ``state``.

    Args:
      directory: the checkpoint folder.
      state: a `fnn.steps.TrainState` of the same model and optimizer (its arrays give shapes, dtypes and
        shardings; its values are replaced).
      epoch: which checkpoint; the latest when ``None``.

    Returns:
      ``(state, metadata)``; ``metadata["epoch"]`` is the number of completed epochs, the
      ``initial_epoch`` to resume `Trainer.fit` from.

    Examples:
      >>> import tempfile, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> from fnn.steps import TrainState
      >>> state = TrainState.create(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> folder = tempfile.mkdtemp()
      >>> save_checkpoint(folder, state, epoch=3)
      >>> blank = TrainState.create(nnx.Linear(2, 1, rngs=nnx.Rngs(1)), optax.sgd(0.1))
      >>> restored, meta = restore_checkpoint(folder, blank)
      >>> meta["epoch"], bool(jnp.all(restored.params["kernel"] == state.params["kernel"]))
      (3, True)
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"directory: no checkpoint folder at {path}")
    with manager(path, create=False) as mngr:
        steps = mngr.all_steps()
        if not steps:
            raise FileNotFoundError(f"directory: no checkpoints in {path}")
        if epoch is None:
            epoch = max(steps)
        if epoch not in steps:
            raise ValueError(
                f"epoch={epoch} has no checkpoint in {path}; available: {sorted(steps)}"
            )
        meta = mngr.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        template = _checkpoint_tree(state, meta.get("weights_only", False))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = mngr.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    like = {"params": state.params, "model_state": state.model_state}
    if not meta.get("weights_only", False):
        like.update(step=state.step, opt_state=state.opt_state, lr_scale=state.lr_scale)
    restored = _from_saveable(restored, like)
    return state.replace(**restored), meta


def epochs(directory) -> list[int]:
    """The epochs with a checkpoint in ``directory``, ascending (``[]`` if there is no folder)."""
    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        return []
    with manager(path, create=False) as mngr:
        return sorted(mngr.all_steps())


def delete_epochs(directory, epochs_to_delete) -> None:
    """Delete the checkpoints of ``epochs_to_delete`` (those that exist) from ``directory``."""
    with manager(directory, create=False) as mngr:
        present = set(mngr.all_steps())
        for epoch in epochs_to_delete:
            if epoch in present:
                mngr.delete(epoch)
