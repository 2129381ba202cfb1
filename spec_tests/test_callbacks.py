"""Slides: "validate" — Keras callbacks on fnn's fit: EarlyStopping, ModelCheckpoint (Orbax),
LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN, CSVLogger, the tqdm progress bar.

Each callback's rule is checked against numbers computed here from the History (the oracle), not
against values the callback reports about itself.
"""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fnn
from fnn import callbacks as cb
from fnn.models import SimpleCNN
from fnn.train import compile as fnn_compile

N, BATCH = 64, 16


def _ce_logits(*, y_true, y_pred):
    return fnn.losses.sparse_categorical_crossentropy(
        y_true=y_true, y_pred=y_pred, from_logits=True
    )


def _model():
    return SimpleCNN(
        10,
        input_shape=(8, 8, 1),
        filters=(4,),
        dense=(),
        batch_norm=True,
        dropout=0.2,
        output_activation=None,
        rngs=nnx.Rngs(0),
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, N).astype(np.int32)
    return x, y


@pytest.fixture(scope="module")
def trainer():
    t = fnn_compile(_model(), optimizer="adam", loss=_ce_logits, metrics=["accuracy"], devices=1)
    t._initial = jax.tree.map(jnp.copy, t.state)
    return t


def fresh(t):
    t.state = jax.tree.map(jnp.copy, t._initial)
    return t


def _fit(t, data, **kw):
    x, y = data
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("verbose", 0)
    kw.setdefault("validation_data", (x[:BATCH], y[:BATCH]))
    return fresh(t).fit(x, y, **kw)


class Recorder(cb.Callback):
    """Keeps a host copy of the params at each epoch end, and counts batch hooks."""

    def __init__(self):
        self.params, self.batches, self.lazy_loss = [], 0, None

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        self.lazy_loss = logs["loss"]  # reading the lazy logs fetches them

    def on_epoch_end(self, epoch, logs=None):
        self.params.append(jax.device_get(nnx.to_pure_dict(self.trainer.state.params)))


class Inject(cb.Callback):
    """Puts a known value into the epoch logs, so the monitored sequence is fixed by the test."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]


def _assert_equal_trees(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


# ---- EarlyStopping ------------------------------------------------------------------------------


def test_early_stopping_stops_after_patience_and_restores_best(trainer, data):
    rec = Recorder()
    # score 3, 1, 2, 2, ...: the best is epoch 1; two epochs without improvement stop at epoch 3.
    es = cb.EarlyStopping(monitor="score", mode="min", patience=2, restore_best_weights=True)
    h = _fit(trainer, data, epochs=10, callbacks=[Inject([3, 1, 2, 2, 2, 2]), es, rec])
    assert h.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3 and es.best_epoch == 1
    assert es.best == 1
    _assert_equal_trees(nnx.to_pure_dict(trainer.state.params), rec.params[1])
    # The user's model was updated to the restored (best) weights too.
    _, params, _ = nnx.split(trainer.model, nnx.Param, ...)
    _assert_equal_trees(nnx.to_pure_dict(params), rec.params[1])


def test_early_stopping_min_delta_baseline_and_monitor_errors(trainer, data):
    es = cb.EarlyStopping(monitor="val_accuracy", baseline=1.01, patience=2)
    h = _fit(trainer, data, epochs=10, steps_per_epoch=1, callbacks=[es])
    assert len(h.epoch) == 2  # the baseline (above 100 %) is never beaten
    es = cb.EarlyStopping(monitor="loss", min_delta=1e9, patience=1)
    assert len(_fit(trainer, data, epochs=10, steps_per_epoch=1, callbacks=[es]).epoch) == 2
    with pytest.raises(
        KeyError, match=r"monitor='val_acc' is not in the logs; available: \['accuracy'"
    ):
        _fit(trainer, data, epochs=1, steps_per_epoch=1, callbacks=[cb.EarlyStopping("val_acc")])
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'up'"):
        cb.EarlyStopping(mode="up")


@pytest.mark.parametrize(
    "monitor, mode",
    [
        ("val_loss", "min"),
        ("class_loss", "min"),
        ("val_mean_squared_error", "min"),
        ("false_negatives", "min"),
        ("val_accuracy", "max"),
        ("box_iou", "max"),
        ("mean_io_u", "max"),
        ("f1_score", "max"),
        ("val_dice", "max"),
        ("precision_at_recall", "max"),
        ("true_positives", "max"),
        ("auc", "max"),
    ],
)
def test_auto_mode_follows_the_metric_direction(monitor, mode):
    # Keras 2's name rule ("acc" -> max, else min) minimised F1, IoU and Dice.
    for callback in (cb.EarlyStopping, cb.ReduceLROnPlateau):
        assert callback(monitor=monitor).mode == mode
    assert cb.ModelCheckpoint("unused", monitor=monitor, save_best_only=True).mode == mode


def test_auto_mode_refuses_a_name_it_cannot_read_and_array_logs(trainer, data):
    with pytest.raises(ValueError, match=r"monitor='score' should be minimised or maximised"):
        cb.EarlyStopping(monitor="score")
    assert cb.ModelCheckpoint("unused", monitor="score").mode == "auto"  # not "best": unused
    per_class = Inject([np.array([0.5, 0.7])] * 3)
    es = cb.EarlyStopping(monitor="score", mode="max")
    with pytest.raises(ValueError, match=r"monitor='score' must be a scalar log, got an array"):
        _fit(trainer, data, epochs=2, steps_per_epoch=1, callbacks=[per_class, es])


# ---- ModelCheckpoint ----------------------------------------------------------------------------


def test_model_checkpoint_best_only_keep_and_weights_only(trainer, data, tmp_path):
    rec = Recorder()
    best = cb.ModelCheckpoint(tmp_path / "best", monitor="score", mode="min", save_best_only=True)
    last2 = cb.ModelCheckpoint(tmp_path / "last2", max_to_keep=2)
    weights = cb.ModelCheckpoint(tmp_path / "w", save_weights_only=True, save_freq=2)
    scores = Inject([2.0, 3.0, 1.0, 1.5])  # improvements (mode "min") at epochs 1 and 3
    _fit(trainer, data, epochs=4, steps_per_epoch=2, callbacks=[scores, best, last2, weights, rec])
    assert sorted(os.listdir(tmp_path / "best")) == ["1", "3"]
    assert sorted(os.listdir(tmp_path / "last2")) == ["3", "4"]
    assert sorted(os.listdir(tmp_path / "w")) == ["2", "4"]
    step_before = int(trainer.state.step)
    assert trainer.restore(tmp_path / "w", epoch=2) == 2
    _assert_equal_trees(nnx.to_pure_dict(trainer.state.params), rec.params[1])
    assert int(trainer.state.step) == step_before  # weights only: step and optimizer untouched
    with pytest.raises(ValueError, match=r"epoch=3 has no checkpoint in .*available: \[2, 4\]"):
        trainer.restore(tmp_path / "w", epoch=3)
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        trainer.restore(tmp_path / "missing")
    with pytest.raises(ValueError, match="save_freq must be 'epoch' or a positive number"):
        cb.ModelCheckpoint(tmp_path / "x", save_freq="batch")


def test_model_checkpoint_creates_missing_parent_folders(trainer, data, tmp_path):
    """As Keras' ModelCheckpoint: a path whose parents do not exist yet is created at save."""
    folder = tmp_path / "no" / "such" / "dir"
    _fit(fresh(trainer), data, epochs=1, callbacks=[cb.ModelCheckpoint(folder)])
    assert fnn.checkpoints.epochs(folder) == [1]


def test_model_checkpoint_refuses_a_file_in_the_way_before_training(trainer, data, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(FileExistsError, match="is not a folder"):
        _fit(fresh(trainer), data, epochs=1, callbacks=[cb.ModelCheckpoint(tmp_path / "taken")])
    assert int(trainer.state.step) == 0


# ---- learning-rate callbacks --------------------------------------------------------------------


def test_learning_rate_scheduler_sets_each_epoch(trainer, data):
    sched = cb.LearningRateScheduler(lambda epoch, lr: 1e-3 * 0.5**epoch)
    h = _fit(trainer, data, epochs=3, steps_per_epoch=1, callbacks=[sched])
    np.testing.assert_allclose(h.history["learning_rate"], [1e-3, 5e-4, 2.5e-4], rtol=1e-6)
    assert trainer.learning_rate == pytest.approx(2.5e-4)


def test_learning_rate_scheduler_scales_the_update_exactly(data):
    """SGD: θ₁ − θ₀ = −η g, so halving η through the callback halves the step."""
    x, y = data
    t = fnn_compile(
        _model(), optimizer=fnn.optimizers.get("sgd", learning_rate=0.1), loss=_ce_logits, devices=1
    )
    p0 = jax.device_get(nnx.to_pure_dict(t.state.params))
    init = jax.tree.map(jnp.copy, t.state)
    kw = dict(batch_size=BATCH, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    t.fit(x, y, **kw)
    full = jax.device_get(nnx.to_pure_dict(t.state.params))
    t.state = init
    t.fit(x, y, callbacks=[cb.LearningRateScheduler(lambda e, lr: 0.05)], **kw)
    half = jax.device_get(nnx.to_pure_dict(t.state.params))
    for a, b, c in zip(jax.tree.leaves(p0), jax.tree.leaves(full), jax.tree.leaves(half)):
        np.testing.assert_allclose(c - a, 0.5 * (b - a), rtol=1e-4, atol=1e-8)


def test_learning_rate_callbacks_need_a_readable_rate(data):
    t = fnn_compile(_model(), optimizer=optax.adam(1e-3), loss=_ce_logits, devices=1)
    with pytest.raises(
        ValueError, match=r"learning rate cannot be read .*optax.inject_hyperparams"
    ):
        t.fit(
            *data,
            batch_size=BATCH,
            verbose=0,
            callbacks=[cb.LearningRateScheduler(lambda e, lr: lr)],
        )
    assert int(t.state.step) == 0


def test_reduce_lr_on_plateau(trainer, data):
    flat = Inject([1.0] * 5)  # a plateau from the first epoch on (Keras counts cooldown as below)
    rl = cb.ReduceLROnPlateau(monitor="score", mode="min", factor=0.5, patience=1)
    h = _fit(trainer, data, epochs=4, steps_per_epoch=1, callbacks=[flat, rl])
    np.testing.assert_allclose(h.history["learning_rate"], [1e-3, 1e-3, 5e-4, 2.5e-4], rtol=1e-6)
    floor = cb.ReduceLROnPlateau(monitor="score", mode="min", factor=0.5, patience=1, min_lr=4e-4)
    h = _fit(trainer, data, epochs=4, steps_per_epoch=1, callbacks=[flat, floor])
    np.testing.assert_allclose(h.history["learning_rate"], [1e-3, 1e-3, 5e-4, 4e-4], rtol=1e-6)
    cool = cb.ReduceLROnPlateau(monitor="score", mode="min", factor=0.5, patience=1, cooldown=2)
    h = _fit(trainer, data, epochs=5, steps_per_epoch=1, callbacks=[flat, cool])
    np.testing.assert_allclose(
        h.history["learning_rate"], [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4], rtol=1e-6
    )
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\), got 1.5"):
        cb.ReduceLROnPlateau(factor=1.5)


# ---- logging ------------------------------------------------------------------------------------


def test_csv_logger_writes_the_history(trainer, data, tmp_path):
    path = tmp_path / "log.csv"
    h = _fit(trainer, data, epochs=2, steps_per_epoch=1, callbacks=[cb.CSVLogger(path)])
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", *sorted(h.history)]
    assert [int(r[0]) for r in rows[1:]] == [0, 1]
    for r in rows[1:]:
        for key, value in zip(rows[0][1:], r[1:]):
            assert float(value) == pytest.approx(h.history[key][int(r[0])], rel=1e-6)
    _fit(trainer, data, epochs=1, steps_per_epoch=1, callbacks=[cb.CSVLogger(path, append=True)])
    with open(path) as f:
        assert len(list(csv.reader(f))) == 4  # header once, three epochs


def test_progress_bar_and_epoch_lines(trainer, data, capsys):
    _fit(trainer, data, epochs=2, steps_per_epoch=2, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "loss" in err
    _fit(trainer, data, epochs=2, steps_per_epoch=2, verbose=2)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and "val_loss" in out


def test_batch_hooks_run_per_execution_with_lazy_logs(trainer, data):
    rec = Recorder()
    _fit(trainer, data, epochs=2, callbacks=[rec])
    assert rec.batches == 2 * N // BATCH
    assert np.isfinite(rec.lazy_loss)


def test_stop_training_from_a_callback(trainer, data):
    class StopNow(cb.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.trainer.stop_training = True

    assert _fit(trainer, data, epochs=5, steps_per_epoch=1, callbacks=[StopNow()]).epoch == [0]


def test_terminate_on_nan_can_be_turned_off(data):
    """Keras' default: without TerminateOnNaN a NaN run goes on (fnn turns it on by default)."""
    poisoned = optax.sgd(lambda count: jnp.where(count >= 1, jnp.nan, 0.01))
    t = fnn_compile(
        _model(), optimizer=poisoned, loss=_ce_logits, devices=1, terminate_on_nan=False
    )
    h = t.fit(*data, batch_size=BATCH, epochs=2, verbose=0)
    assert np.isnan(h.history["loss"][-1])
    t.terminate_on_nan = True
    with pytest.raises(FloatingPointError, match=r"at step 8 \(epoch 1\)"):
        t.fit(*data, batch_size=BATCH, epochs=1, verbose=0)


def test_model_checkpoint_refuses_another_runs_later_epochs(trainer, data, tmp_path):
    folder = tmp_path / "ckpt"
    _fit(trainer, data, epochs=3, steps_per_epoch=1, callbacks=[cb.ModelCheckpoint(folder)])
    with pytest.raises(
        FileExistsError,
        match=r"already holds checkpoints of epochs \[1, 2, 3\] "
        r"after initial_epoch=0 .*overwrite=True",
    ):
        _fit(trainer, data, epochs=1, steps_per_epoch=1, callbacks=[cb.ModelCheckpoint(folder)])
    assert sorted(os.listdir(folder)) == ["1", "2", "3"]
    # Resuming after epoch 3 is not another run's data: allowed.
    trainer.restore(folder)
    trainer.fit(
        *data,
        batch_size=BATCH,
        epochs=4,
        initial_epoch=3,
        steps_per_epoch=1,
        verbose=0,
        callbacks=[cb.ModelCheckpoint(folder)],
    )
    assert sorted(os.listdir(folder)) == ["1", "2", "3", "4"]
    _fit(
        trainer,
        data,
        epochs=1,
        steps_per_epoch=1,
        callbacks=[cb.ModelCheckpoint(folder, overwrite=True)],
    )
    assert os.listdir(folder) == ["1"]
