"""Issue 16, "Checkpoints and the training loop": no save is skipped, no epoch is lost.

The faulty cases are made here: another run's later epochs in the folder, a save of an epoch
older than the latest, and a process killed at every file operation of a re-save (simulated by
making the n-th rename or tree removal raise, the tree removal after deleting part of the tree,
and every later one fail too, as in a dead process).
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fnn import callbacks as cb
from fnn import checkpoints
from fnn.steps import TrainState
from fnn.train import compile as fnn_compile


def _mse(*, y_true, y_pred):
    return jnp.mean((y_pred - y_true) ** 2, axis=-1)


@pytest.fixture
def data():
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    return x, x[:, :1] * 2.0


def _trainer(seed=0):
    return fnn_compile(
        nnx.Linear(3, 1, rngs=nnx.Rngs(seed)), optimizer=optax.sgd(0.1), loss=_mse, devices=1
    )


def _kernel(state):
    return np.asarray(state.params["kernel"].get_value())


def _restored_kernel(folder, epoch=None):
    blank = TrainState.create(nnx.Linear(3, 1, rngs=nnx.Rngs(99)), optax.sgd(0.1))
    state, meta = checkpoints.restore_checkpoint(folder, blank, epoch=epoch)
    return _kernel(state), meta


def test_saving_an_epoch_older_than_the_latest_writes_it(tmp_path):
    """Orbax's CheckpointManager.save returns False (writes nothing) for a step older than its
    latest; Trainer.save must write it (or raise), never return having written nothing."""
    other, mine = _trainer(1), _trainer(2)
    other.save(tmp_path, epoch=3)
    mine.save(tmp_path, epoch=1)
    assert checkpoints.epochs(tmp_path) == [1, 3]
    np.testing.assert_array_equal(_restored_kernel(tmp_path, 1)[0], _kernel(mine.state))
    np.testing.assert_array_equal(_restored_kernel(tmp_path, 3)[0], _kernel(other.state))


def test_overwrite_never_deletes_before_the_new_epoch_is_written(tmp_path, data):
    """Another run's epochs 2 and 3 (its epoch 1 pruned by max_to_keep); a new run with
    overwrite=True must end with its own epoch 1, not an empty folder."""
    other = _trainer(1)
    other.save(tmp_path, epoch=2)
    other.save(tmp_path, epoch=3)
    mine = _trainer(2)
    mine.fit(*data, batch_size=8, epochs=1, verbose=0,
             callbacks=[cb.ModelCheckpoint(tmp_path, overwrite=True)])  # fmt: skip
    assert checkpoints.epochs(tmp_path) == [1]
    np.testing.assert_array_equal(_restored_kernel(tmp_path)[0], _kernel(mine.state))


class _Killed(BaseException):
    """The simulated SIGKILL: not an Exception, so no handler of the code under test catches it."""


def _arm(monkeypatch, kill_at):
    """Make the ``kill_at``-th rename / file or tree removal (anywhere: fnn, Orbax, shutil) the
    last file operation of the process."""
    real = {"rename": os.rename, "replace": os.replace, "rmtree": shutil.rmtree,
            "unlink": os.unlink, "remove": os.remove}  # fmt: skip
    calls = {"n": 0, "dead": False}

    def tick():
        if calls["dead"]:
            raise _Killed
        calls["n"] += 1
        if calls["n"] == kill_at:
            calls["dead"] = True
            return True
        return False

    def rename(*a, **k):
        if tick():
            raise _Killed
        return real["rename"](*a, **k)

    def replace(*a, **k):
        if tick():
            raise _Killed
        return real["replace"](*a, **k)

    def unlink(*a, **k):
        if tick():
            raise _Killed
        return real["unlink"](*a, **k)

    def remove(*a, **k):
        if tick():
            raise _Killed
        return real["remove"](*a, **k)

    def rmtree(path, *a, **k):
        if tick():  # killed half-way through: part of the array data is gone
            for root, _, files in os.walk(path, topdown=False):
                if files:
                    real["remove"](os.path.join(root, files[0]))
                    break
            raise _Killed
        return real["rmtree"](path, *a, **k)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "remove", remove)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    return calls


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # kills in __del__
def test_resaving_an_epoch_survives_a_kill_at_every_file_operation(tmp_path, monkeypatch):
    old, new = _trainer(1), _trainer(2)
    old_k, new_k = _kernel(old.state), _kernel(new.state)
    kill_at, outcomes = 1, set()
    while True:
        folder = tmp_path / f"run{kill_at}"
        old.save(folder, epoch=1)
        old.save(folder, epoch=2)
        with monkeypatch.context() as patch:
            calls = _arm(patch, kill_at)
            try:
                new.save(folder, epoch=2)
                finished = True
            except _Killed:
                finished = False
            ran = calls["n"]
        # After the kill: epoch 2 is listed and restorable, as the old or the new copy.
        assert checkpoints.epochs(folder) == [1, 2], (kill_at, os.listdir(folder))
        kernel, meta = _restored_kernel(folder)
        assert meta["epoch"] == 2
        same_old, same_new = np.array_equal(kernel, old_k), np.array_equal(kernel, new_k)
        assert same_old or same_new, kill_at
        outcomes.add("new" if same_new else "old")
        np.testing.assert_array_equal(_restored_kernel(folder, 1)[0], old_k)
        # Leftovers of the killed save are gone after the next save: only epoch folders remain.
        new.save(folder, epoch=3)
        assert sorted(os.listdir(folder)) == ["1", "2", "3"], (kill_at, os.listdir(folder))
        if finished and ran < kill_at:
            break
        kill_at += 1
    assert outcomes == {"old", "new"}  # kills landed both before and after the switch
    assert kill_at > 3


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # kills in __del__
def test_a_kill_while_deleting_an_epoch_never_leaves_it_listed(tmp_path, monkeypatch):
    """max_to_keep and overwrite delete epochs: a kill at any point of a delete must not leave a
    listed epoch that cannot be restored."""
    t = _trainer(1)
    kill_at = 1
    while True:
        folder = tmp_path / f"run{kill_at}"
        for epoch in (1, 2):
            t.save(folder, epoch=epoch)
        with monkeypatch.context() as patch:
            calls = _arm(patch, kill_at)
            try:
                checkpoints.delete_epochs(folder, [1])
                finished = True
            except _Killed:
                finished = False
            ran = calls["n"]
        listed = checkpoints.epochs(folder)
        for epoch in listed:
            np.testing.assert_array_equal(_restored_kernel(folder, epoch)[0], _kernel(t.state))
        assert 2 in listed
        assert sorted(os.listdir(folder)) == [str(e) for e in listed], os.listdir(folder)
        if finished and ran < kill_at:
            break
        kill_at += 1
    assert kill_at > 3


def test_stale_temporary_folders_are_ignored_and_cleaned(tmp_path):
    t = _trainer(1)
    t.save(tmp_path, epoch=1)
    junk = [".fnn-tmp-5-999999999-deadbeef", ".fnn-del-1-999999999-deadbeef"]
    for name in junk:
        os.makedirs(tmp_path / name / "state")
    assert checkpoints.epochs(tmp_path) == [1]
    assert sorted(os.listdir(tmp_path)) == ["1"]
    jax.block_until_ready(_restored_kernel(tmp_path)[0])


# ---- TerminateOnNaN leaves the last good step ------------------------------------------------


@pytest.mark.parametrize("k", [1, 2])
def test_terminate_on_nan_keeps_the_last_good_step(data, tmp_path, k):
    """The learning rate turns infinite at optimizer count 3: loss and gradient of step 3 are
    finite, only the parameters after its update are not. Training stops naming step 3, the
    trainer and its model hold the state after steps 0-2 exactly, evaluate and predict work, and
    no checkpoint is written."""
    poisoned = optax.sgd(lambda count: jnp.where(count >= 3, jnp.inf, 0.01))
    t = fnn_compile(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), optimizer=poisoned, loss=_mse,
                    devices=1, steps_per_execution=k)  # fmt: skip
    ref = fnn_compile(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), optimizer=poisoned, loss=_mse,
                      devices=1)  # fmt: skip
    ref.fit(*data, batch_size=8, epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)  # 0-2
    with pytest.raises(FloatingPointError, match=r"parameters at step 3 \(epoch 1\)"):
        t.fit(*data, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[cb.ModelCheckpoint(tmp_path / "ckpt")])  # fmt: skip
    assert int(t.state.step) == 3
    np.testing.assert_array_equal(_kernel(t.state), _kernel(ref.state))
    np.testing.assert_array_equal(np.asarray(t.model.kernel.get_value()), _kernel(ref.state))
    assert checkpoints.epochs(tmp_path / "ckpt") == []
    assert np.isfinite(t.evaluate(*data, batch_size=8, verbose=0))
    assert np.isfinite(t.predict(data[0], batch_size=8, verbose=0)).all()


# ---- Resume with stateful callbacks is bit-identical ----------------------------------------


def _resume_callbacks(folder, log):
    never_better = 1e9  # min_delta: no epoch counts as an improvement after the first
    return [
        cb.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=never_better),
        cb.EarlyStopping(
            monitor="loss", patience=3, min_delta=never_better, restore_best_weights=True
        ),  # fmt: skip
        cb.LearningRateScheduler(lambda epoch, lr: lr * 0.9),
        cb.CSVLogger(log, append=True),
        cb.ModelCheckpoint(folder),
    ]


def _lr_trainer():
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05)
    return fnn_compile(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), optimizer=tx, loss=_mse, devices=1)


def test_resume_with_every_stateful_callback_is_bit_identical(data, tmp_path):
    """Uninterrupted: ReduceLROnPlateau halves the rate after epoch 3 (0-based 2), EarlyStopping
    stops after epoch 4 (0-based 3). Interrupted after 2 epochs and resumed from the checkpoint
    with fresh callback objects, the run must repeat it: without the callbacks' saved state the
    plateau counter restarts (no halving) and training runs a fifth epoch."""
    whole = _lr_trainer()
    h = whole.fit(*data, batch_size=8, epochs=6, shuffle=False, verbose=0,
                  callbacks=_resume_callbacks(tmp_path / "a", tmp_path / "a.csv"))  # fmt: skip
    assert h.epoch == [0, 1, 2, 3]  # the scenario: EarlyStopping stopped it
    halved = h.history["learning_rate"]
    assert halved[3] == pytest.approx(halved[2] * 0.9 * 0.5)

    first = _lr_trainer()
    first.fit(*data, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=_resume_callbacks(tmp_path / "b", tmp_path / "b.csv"))  # fmt: skip
    with open(tmp_path / "b.csv", "a") as f:
        f.write("2,a row of an epoch the crash lost\n")  # written after the last checkpoint
    resumed = _lr_trainer()
    start = resumed.restore(tmp_path / "b")
    h2 = resumed.fit(*data, batch_size=8, epochs=6, initial_epoch=start, shuffle=False,
                     verbose=0, callbacks=_resume_callbacks(tmp_path / "b", tmp_path / "b.csv"))  # fmt: skip
    assert h2.epoch == [2, 3]
    for name in ("loss", "learning_rate"):
        assert h2.history[name] == h.history[name][2:], name
    np.testing.assert_array_equal(_kernel(resumed.state), _kernel(whole.state))
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()


_CHILD = """
import sys, optax
from flax import nnx
from fnn.steps import TrainState
from fnn import checkpoints
folder = sys.argv[1]
states = [TrainState.create(nnx.Linear(3, 1, rngs=nnx.Rngs(s)), optax.sgd(0.1)) for s in (1, 2)]
checkpoints.save_checkpoint(folder, states[0], epoch=1)
checkpoints.save_checkpoint(folder, states[0], epoch=2)
print("ready", flush=True)
i = 0
while True:  # re-save epoch 2, alternating the two states, until killed
    i += 1
    checkpoints.save_checkpoint(folder, states[i % 2], epoch=2)
"""


def test_sigkill_during_resaves_leaves_a_restorable_epoch(tmp_path):
    """A real kill: a child process re-saves epoch 2 in a loop and is SIGKILLed at random
    instants; every time, epochs 1 and 2 restore (epoch 2 as one of the two states)."""
    import signal
    import subprocess
    import sys
    import time

    kernels = [_kernel(TrainState.create(nnx.Linear(3, 1, rngs=nnx.Rngs(s)), optax.sgd(0.1)))
               for s in (1, 2)]  # fmt: skip
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "JAX_PLATFORMS": "cpu"}
    for round_ in range(3):
        folder = tmp_path / f"run{round_}"
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder)],
                                 stdout=subprocess.PIPE, env=env)  # fmt: skip
        try:
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.05, 1.0))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert checkpoints.epochs(folder) == [1, 2], os.listdir(folder)
        kernel, _ = _restored_kernel(folder)
        assert any(np.array_equal(kernel, k) for k in kernels)
        np.testing.assert_array_equal(_restored_kernel(folder, 1)[0], kernels[0])
        assert sorted(os.listdir(folder)) == ["1", "2"], os.listdir(folder)
