"""Checkpoints: a `fnn.steps.TrainState` to and from an Orbax folder, ``directory/<epoch>``.

`save_checkpoint` and `restore_checkpoint` are what `fnn.trainer.Trainer.save` / ``restore`` and
`fnn.callbacks.ModelCheckpoint` call; `epochs` and `delete_epochs` are the folder operations the
callback needs. Typed PRNG keys are stored as their key data (Orbax stores plain arrays) and
rewrapped on restore. Every save is written to a temporary folder and renamed into place when
complete, and a replaced or deleted epoch is renamed away before it is removed, so a process
killed at any instant never leaves a listed epoch that cannot be restored (`save_checkpoint`).
"""

from __future__ import annotations

import os
import shutil
import uuid

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
        if state.loss_scale is not None:  # float16 training (fnn.precision): S and its counter
            tree["loss_scale"] = {
                "scale": state.loss_scale.loss_scale,
                "counter": state.loss_scale.counter,
            }
    return _to_saveable(tree)


def manager(directory, *, create: bool):
    """An Orbax ``CheckpointManager`` over ``directory`` (synchronous saves; a context manager)."""
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


_TMP = ".fnn-tmp-"  # a save being written: <_TMP><epoch>-<pid>-<random>
_OLD = ".fnn-old-"  # a replaced epoch, kept until its replacement is in place
_DEL = ".fnn-del-"  # an epoch being deleted (renamed first, so it is never listed half-deleted)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's own leftovers come from a save that raised
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _recover(path: str) -> None:
    """Finish or undo what a killed save or delete left in ``path``.

    A ``_TMP`` folder of a dead process is an unfinished save: removed. An ``_OLD`` copy whose
    epoch folder is missing was moved aside by a save killed before its replacement landed: it is
    moved back; otherwise it is removed. A ``_DEL`` folder is removed.
    """
    if not os.path.isdir(path):
        return
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(_TMP):
            parts = name[len(_TMP) :].split("-")
            if len(parts) == 3 and parts[1].isdigit() and _pid_alive(int(parts[1])):
                continue  # another live process is writing it
            shutil.rmtree(full, ignore_errors=True)
        elif name.startswith(_OLD):
            epoch = name[len(_OLD) :].split("-")[0]
            target = os.path.join(path, epoch)
            if epoch.isdigit() and not os.path.exists(target):
                os.rename(full, target)
            else:
                shutil.rmtree(full, ignore_errors=True)
        elif name.startswith(_DEL):
            shutil.rmtree(full, ignore_errors=True)


def _unique(kind: str, epoch: int) -> str:
    return f"{kind}{int(epoch)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def save_checkpoint(
    directory,
    state,
    *,
    epoch: int,
    weights_only: bool = False,
    metadata: dict | None = None,
    extra_weights: dict | None = None,
) -> None:
    """Save ``state`` with Orbax under ``directory/<epoch>``; it is there when this returns.

    Every save is written completely into a temporary folder beside the epochs, then renamed to
    ``<epoch>`` (Orbax's own ``CheckpointManager.save`` silently skips an epoch older than the
    folder's latest; this never does). An existing ``<epoch>`` is first renamed aside and
    deleted only once its replacement is in place, so a process killed at any instant leaves
    the old or the new copy, which the next save, `restore_checkpoint` or `epochs` puts back;
    leftovers of killed saves are removed then too. One process writes a folder at a time.

    Args:
      directory: the checkpoint folder (created if missing).
      state: the `fnn.steps.TrainState`; ``weights_only`` keeps params and model state only (Keras'
        ``save_weights_only``), otherwise step, optimizer state and learning-rate scale too.
      epoch: the number of completed epochs (the Orbax step).
      metadata: JSON-serialisable extras stored next to the arrays.
      extra_weights: ``{name: (params, model_state)}`` more weights of the same model (a
        callback's, e.g. `fnn.callbacks.EarlyStopping`'s best); `restore_checkpoint` returns
        them in ``metadata["extra_weights"]``.

    Raises:
      OSError: the checkpoint could not be written (nothing of the old copy is lost).
    """
    import orbax.checkpoint as ocp

    epoch = int(epoch)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    path = os.path.abspath(os.fspath(directory))
    os.makedirs(path, exist_ok=True)
    _recover(path)
    tree = _checkpoint_tree(state, weights_only)
    meta = {"epoch": epoch, "weights_only": bool(weights_only), **(metadata or {})}
    meta["loss_scale"] = "loss_scale" in tree
    if extra_weights:
        tree["extra_weights"] = _to_saveable(
            {k: {"params": p, "model_state": m} for k, (p, m) in extra_weights.items()}
        )
        meta["extra_weights"] = sorted(extra_weights)
    tmp = os.path.join(path, _unique(_TMP, epoch))
    target = os.path.join(path, str(epoch))
    try:
        with manager(tmp, create=True) as side:
            saved = side.save(
                epoch,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
                ),
            )
        written = os.path.join(tmp, str(epoch))
        if not saved or not os.path.isdir(written):
            raise OSError(f"Orbax did not write epoch {epoch} into {tmp}")
        old = None
        if os.path.exists(target):
            old = os.path.join(path, _unique(_OLD, epoch))
            os.rename(target, old)  # from here until the next rename, _recover puts it back
        os.rename(written, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _recover(path)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def restore_checkpoint(directory, state, *, epoch: int | None = None) -> tuple:
    """Read a checkpoint written by `save_checkpoint` into the structure of ``state``.

    Args:
      directory: the checkpoint folder.
      state: a `fnn.steps.TrainState` of the same model and optimizer (its arrays give shapes, dtypes and
        shardings; its values are replaced).
      epoch: which checkpoint; the latest when ``None``.

    Returns:
      ``(state, metadata)``; ``metadata["epoch"]`` is the number of completed epochs, the
      ``initial_epoch`` to resume `Trainer.fit` from; ``metadata["extra_weights"]`` the saved
      ``{name: (params, model_state)}`` when there are any.

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
    _recover(path)
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
        extra = meta.get("extra_weights") or []
        if extra:
            template["extra_weights"] = {k: template_weights(state) for k in extra}
        if not meta.get("loss_scale"):  # saved without one (float32 training, weights only)
            template.pop("loss_scale", None)
        elif "loss_scale" not in template:  # read it to drop it: this state trains unscaled
            template["loss_scale"] = {"scale": jnp.float32(1), "counter": jnp.int32(0)}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = mngr.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    like = {"params": state.params, "model_state": state.model_state}
    if not meta.get("weights_only", False):
        like.update(step=state.step, opt_state=state.opt_state, lr_scale=state.lr_scale)
    if extra:
        weights = restored.pop("extra_weights")
        meta["extra_weights"] = {
            k: _weights_pair(_from_saveable(weights[k], like_weights(state))) for k in extra
        }
    saved_scale = restored.pop("loss_scale", None)
    restored = _from_saveable(restored, like)
    if saved_scale is not None and state.loss_scale is not None:
        restored["loss_scale"] = state.loss_scale._replace(
            loss_scale=saved_scale["scale"], counter=saved_scale["counter"]
        )
    return state.replace(**restored), meta


def _weights_pair(tree: dict) -> tuple:
    return tree["params"], tree["model_state"]


def like_weights(state) -> dict:
    return {"params": state.params, "model_state": state.model_state}


def template_weights(state) -> dict:
    return _to_saveable(like_weights(state))


def epochs(directory) -> list[int]:
    """The epochs with a checkpoint in ``directory``, ascending (``[]`` if there is no folder)."""
    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        return []
    _recover(path)
    with manager(path, create=False) as mngr:
        return sorted(mngr.all_steps())


def delete_epochs(directory, epochs_to_delete) -> None:
    """Delete the checkpoints of ``epochs_to_delete`` (those that exist) from ``directory``.

    Each epoch folder is renamed away first and then removed, so a kill mid-delete never leaves
    a listed epoch that cannot be restored.
    """
    path = os.path.abspath(os.fspath(directory))
    for epoch in epochs_to_delete:
        target = os.path.join(path, str(int(epoch)))
        if os.path.isdir(target):
            doomed = os.path.join(path, _unique(_DEL, epoch))
            os.rename(target, doomed)
            shutil.rmtree(doomed)
