"""Callbacks for `fnn.trainer.Trainer.fit`: Keras' hooks, called at logging time only.

Data contract: a callback receives ``logs``, a mapping name → float (``loss``, the compiled
metrics, ``learning_rate``, ``grad_norm``, ``param_norm``, and ``val_``-prefixed validation
values), and ``self.trainer``, the `fnn.trainer.Trainer` (Keras calls it ``self.model``; the alias
exists). ``on_epoch_end`` logs are plain floats. ``on_train_batch_end`` runs after each compiled
execution (``steps_per_execution`` steps) with *lazy* logs: reading them makes the host wait for
the device, so a callback that reads them every batch slows training; Keras reads them every
batch because its logs are already on the host.

Hooks: ``on_train_begin/end``, ``on_epoch_begin/end``, ``on_train_batch_end``,
``on_test_begin/end``, ``on_predict_begin/end``. A callback stops training with
``self.trainer.stop_training = True``.

State: a callback whose decisions depend on past epochs (`EarlyStopping`, `ReduceLROnPlateau`,
`ModelCheckpoint`'s best value, `CSVLogger`'s file position) returns it from ``get_state()``;
`fnn.trainer.Trainer.save` (and so `ModelCheckpoint`) stores it in the checkpoint's JSON metadata
and `fnn.trainer.Trainer.restore` hands it, by class and position, to the callbacks of the next
``fit`` (``set_state``, applied at ``on_train_begin``), so a resumed run repeats an uninterrupted
one bit for bit. Keras keeps no callback state in its checkpoints.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Callable, Sequence

from fnn import checkpoints, metrics

__all__ = [
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "ModelCheckpoint",
    "LearningRateScheduler",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "CSVLogger",
    "ProgressBar",
    "History",
]


class Callback:
    """Base class: override the hooks you need (Keras' ``keras.callbacks.Callback``).

    Examples:
      >>> class PrintLoss(Callback):
      ...     def on_epoch_end(self, epoch, logs=None):
      ...         print(epoch, round(logs["loss"], 3))
    """

    trainer = None

    @property
    def model(self):
        """Keras' name for the object being trained: here the `fnn.trainer.Trainer`."""
        return self.trainer

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def get_state(self) -> dict | None:
        """JSON-serialisable state saved with checkpoints; ``None`` (the default): none."""
        return None

    def get_weights_state(self):
        """Weights ``(params, model_state)`` of this model to save with the state, or ``None``;
        restored into ``set_state``'s dict as ``"weights"``."""
        return None

    def set_state(self, state: dict) -> None:
        """Take a state from `get_state`; applied at the next ``on_train_begin``."""
        self._restored_state = dict(state)

    def _take_restored(self) -> dict | None:
        """The state given to `set_state` since the last ``on_train_begin``, once."""
        state = getattr(self, "_restored_state", None)
        self._restored_state = None
        return state

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch, logs=None): ...

    def on_epoch_end(self, epoch, logs=None): ...

    def on_train_batch_end(self, batch, logs=None): ...

    def on_test_begin(self, logs=None): ...

    def on_test_end(self, logs=None): ...

    def on_predict_begin(self, logs=None): ...

    def on_predict_end(self, logs=None): ...


class History(Callback):
    """Per-epoch logs of ``fit``: ``history.history["loss"][e]`` (Keras' ``History``).

    ``fit`` adds one itself and returns it, as Keras does.

    Attributes:
      history: dict name → list of floats, one per completed epoch (a NumPy array for a metric
        whose value is one, e.g. ``"confusion_matrix"``, as Keras keeps them).
      epoch: list of epoch indices (0-based) that completed.
      params: ``{"epochs", "steps", "verbose"}`` of the ``fit`` call.
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v) if getattr(v, "ndim", 0) == 0 else v)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class TerminateOnNaN(Callback):
    """Stop with an error when the training loss, gradient or parameters become NaN or infinite.

    The compiled loop records the first step whose loss, gradient norm or updated parameters
    (their norm) are not finite, and while this callback is on it leaves the state unchanged
    from that step to the end of the epoch; at the end of the epoch (and whenever a progress
    bar reads the logs) this callback raises a ``FloatingPointError`` naming that step.
    ``trainer.state`` and ``trainer.model`` then hold the state after the last good step, so
    ``evaluate`` and ``predict`` keep working. It runs before every other ``on_epoch_end``, so
    a `ModelCheckpoint` never writes a non-finite state: the last good checkpoint stays intact.
    Keras' ``TerminateOnNaN`` only sets ``stop_training``, after the batch; fnn raises because a
    silent stop is easy to miss. ``fit`` adds it unless ``compile(..., terminate_on_nan=False)``.

    Examples:
      >>> cb = TerminateOnNaN()
    """

    def _check(self, epoch=None):
        step = self.trainer.nonfinite_step
        if step is not None:
            where = f" (epoch {epoch + 1})" if epoch is not None else ""
            raise FloatingPointError(
                f"non-finite loss, gradient or parameters at step {step}{where}: training "
                f"stopped; the trainer and model hold the state before that step and "
                f"checkpoints written before this epoch are intact. Lower the learning rate, "
                f"clip gradients (optax.clip_by_global_norm) or check the inputs"
            )

    def on_train_batch_end(self, batch, logs=None):
        self._check()  # a host attribute, set whenever logs were fetched: no device wait

    def on_epoch_end(self, epoch, logs=None):
        self._check(epoch)


def _monitor_mode(monitor: str, mode: str, *, needed: bool = True) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto" or not needed:
        return mode
    found = metrics.direction(monitor)
    if found is None:  # Keras 3 raises too; Keras 2 silently minimised
        raise ValueError(
            f"mode='auto' cannot tell whether monitor={monitor!r} should be minimised or "
            "maximised; pass mode='min' or mode='max'"
        )
    return found


def _get_monitored(logs, monitor: str, who: str):
    if monitor not in logs:
        raise KeyError(
            f"{who}: monitor={monitor!r} is not in the logs; available: {sorted(logs)} "
            f"(val_ values need validation_data or validation_split)"
        )
    value = logs[monitor]
    if getattr(value, "ndim", 0) != 0:
        raise ValueError(
            f"{who}: monitor={monitor!r} must be a scalar log, got an array of shape "
            f"{tuple(value.shape)} (a per-class metric: monitor a scalar one, e.g. "
            "F1Score(average='macro'), or one of its entries through your own callback)"
        )
    return float(value)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Improvement means ``current < best - min_delta`` (mode ``"min"``) or ``current > best +
    min_delta`` (``"max"``; ``"auto"`` reads the direction from the name,
    `fnn.metrics.direction`: ``max`` for accuracies, AUC, precision, recall, F-scores, IoU, Dice;
    ``min`` for losses and errors; an unknown name is an error asking for ``mode``, as in Keras 3). With
    ``restore_best_weights`` the weights of the best epoch are put back when training stops
    early (Keras' rule) and, unlike Keras, also when it runs to the end, so the trainer always
    ends on the best epoch it saw.

    Args:
      monitor: the log to watch (default ``"val_loss"``).
      min_delta: the smallest change that counts as improvement.
      patience: epochs without improvement before stopping.
      mode: ``"auto"``, ``"min"`` or ``"max"``.
      baseline: stop if the monitored value does not beat this within ``patience`` epochs.
      restore_best_weights: restore the best epoch's params and BatchNorm statistics.
      start_from_epoch: epochs to wait before watching.

    Examples:
      >>> cb = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _monitor_mode(monitor, mode)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.best_epoch = None
        self.stopped_epoch = None

    def _better(self, a, b):
        if b is None:
            return True
        return a < b - self.min_delta if self.mode == "min" else a > b + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = None
        self.stopped_epoch = None
        restored = self._take_restored()
        if restored:
            self.wait, self.best, self.best_epoch = (
                restored["wait"],
                restored["best"],
                restored["best_epoch"],
            )
            self.best_weights = restored.get("weights")  # saved as the checkpoint's arrays

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch}

    def get_weights_state(self):
        """The best epoch's ``(params, model_state)``, saved with checkpoints beside the JSON."""
        return self.best_weights if self.restore_best_weights else None

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = _get_monitored(logs, self.monitor, "EarlyStopping")
        reference = self.best if self.best is not None else self.baseline
        if math.isfinite(current) and self._better(current, reference):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.trainer.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            if self.verbose:
                print(f"EarlyStopping: stopped at epoch {epoch + 1}; best epoch {self.best_epoch}")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the train state with Orbax at the end of epochs: ``directory/<epoch>``.

    Keras' ``filepath`` names one file per save; here ``directory`` is an Orbax checkpoint folder
    with one sub-folder per completed epoch (Orbax writes to a temporary folder and renames it,
    so a crash never leaves a half-written checkpoint). Resume with
    ``trainer.fit(..., initial_epoch=trainer.restore(directory))``. A run that fails its input
    checks or hits a NaN never writes (`TerminateOnNaN` runs first).

    Args:
      directory: the checkpoint folder; it and missing parent folders are created at the first
        save, as Keras creates a checkpoint's folders.
      monitor, mode: with ``save_best_only``, the log that decides "best".
      save_best_only: save only when ``monitor`` improves.
      save_weights_only: keep params and BatchNorm statistics only (no optimizer state).
      save_freq: ``"epoch"`` or an int N to save every N epochs.
      max_to_keep: keep only the newest N checkpoints (default all).
      initial_value_threshold: the value to beat for the first "best" save.
      overwrite: a folder that already holds checkpoints of epochs after ``fit``'s
        ``initial_epoch`` (another run's) is refused unless ``overwrite=True``; then those stale
        checkpoints are deleted after this run's first successful save (never by a run that
        fails before it), so `Trainer.restore` never picks another run's newer epoch.

    Examples:
      >>> cb = ModelCheckpoint("outputs/ckpt", monitor="val_loss", save_best_only=True)
    """

    def __init__(
        self,
        directory,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq="epoch",
        initial_value_threshold: float | None = None,
        max_to_keep: int | None = None,
        overwrite: bool = False,
    ):
        self.overwrite = bool(overwrite)
        self.directory = os.path.abspath(os.fspath(directory))
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        # The direction matters only for "best"; a plain periodic save may monitor anything.
        self.mode = _monitor_mode(monitor, mode, needed=self.save_best_only)
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq >= 1):
            raise ValueError(
                f"save_freq must be 'epoch' or a positive number of epochs, got {save_freq!r} "
                f"(fnn saves at epoch ends only)"
            )
        self.every = 1 if save_freq == "epoch" else int(save_freq)
        self.best = initial_value_threshold
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
        self.max_to_keep = max_to_keep

    def get_state(self) -> dict:
        return {"best": self.best}

    def on_train_begin(self, logs=None):
        restored = self._take_restored()
        if restored:
            self.best = restored["best"]
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise FileExistsError(f"ModelCheckpoint: {self.directory!r} exists and is not a folder")
        self._stale = []
        if os.path.isdir(self.directory):
            first = getattr(self.trainer, "_initial_epoch", 0)
            self._stale = [e for e in checkpoints.epochs(self.directory) if e > first]
            if self._stale and not self.overwrite:
                raise FileExistsError(
                    f"ModelCheckpoint: {self.directory} already holds checkpoints of epochs "
                    f"{self._stale} after initial_epoch={first} (another run's); use a new "
                    f"folder, delete them, or pass overwrite=True"
                )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self.save_best_only:
            current = _get_monitored(logs, self.monitor, "ModelCheckpoint")
            better = self.best is None or (
                current < self.best if self.mode == "min" else current > self.best
            )
            if not (math.isfinite(current) and better):
                return
            self.best = current
        self.trainer.save(self.directory, epoch=epoch + 1, weights_only=self.save_weights_only)
        if self._stale:
            checkpoints.delete_epochs(self.directory, [e for e in self._stale if e != epoch + 1])
            self._stale = []
        if self.verbose:
            print(f"ModelCheckpoint: saved epoch {epoch + 1} to {self.directory}")
        if self.max_to_keep is not None:
            self._prune()

    def _prune(self):
        checkpoints.delete_epochs(
            self.directory, checkpoints.epochs(self.directory)[: -self.max_to_keep]
        )


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``.

    ``epoch`` is 0-based and ``lr`` the current rate (Keras' contract). fnn applies it as a
    scale on the optimizer's updates (exact for SGD, momentum, Adam and the like, whose
    updates are proportional to η), so it needs an optimizer whose rate can be read
    (`fnn.optimizers.get`, or `optax.inject_hyperparams`). Prefer an Optax schedule inside
    the optimizer for per-step schedules.

    Examples:
      >>> cb = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch >= 2 else lr)
    """

    def __init__(self, schedule: Callable, verbose: int = 0):
        if not callable(schedule):
            raise TypeError(
                f"schedule must be callable (epoch, lr) -> lr, got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        self.trainer.learning_rate  # noqa: B018 - raises early when the rate cannot be read

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, self.trainer.learning_rate))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {lr} at epoch {epoch}")
        self.trainer.learning_rate = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr:g}")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    After ``patience`` epochs without an improvement larger than ``min_delta``: ``lr ←
    max(lr · factor, min_lr)``, then wait ``cooldown`` epochs. Keras' arguments and defaults.
    Works with any optimizer (a scale on the updates); ``min_lr > 0`` needs a readable rate.

    Examples:
      >>> cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)

    def get_state(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0
        restored = self._take_restored()
        if restored:
            self.best, self.wait, self.cooldown_counter = (
                restored["best"],
                restored["wait"],
                restored["cooldown_counter"],
            )
        if self.min_lr > 0:
            self.trainer.learning_rate  # noqa: B018 - raises early when the rate cannot be read

    def on_epoch_end(self, epoch, logs=None):
        current = _get_monitored(logs, self.monitor, "ReduceLROnPlateau")
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        better = self.best is None or (
            current < self.best - self.min_delta
            if self.mode == "min"
            else current > self.best + self.min_delta
        )
        if better:
            self.best, self.wait = current, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            factor = self.factor
            if self.min_lr > 0:
                lr = self.trainer.learning_rate
                factor = max(lr * self.factor, self.min_lr) / lr if lr > 0 else 1.0
            if factor < 1.0:
                self.trainer.scale_learning_rate(factor)
                if self.verbose:
                    print(
                        f"Epoch {epoch + 1}: ReduceLROnPlateau scaling the learning rate by {factor:g}"
                    )
            self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` then every log (Keras' ``CSVLogger``).

    Examples:
      >>> cb = CSVLogger("outputs/log.csv")
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._keys = None

    def on_train_begin(self, logs=None):
        folder = os.path.dirname(os.path.abspath(self.filename))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"CSVLogger: folder {folder!r} of filename does not exist")
        restored = self._take_restored()
        self._keys = None
        if restored and restored["keys"] is not None and os.path.exists(self.filename):
            # Resuming: drop the rows written after the checkpoint, continue below the rest.
            with open(self.filename, "r+b") as f:
                f.truncate(min(restored["position"], os.path.getsize(self.filename)))
            self._file = open(self.filename, "a", newline="")  # noqa: SIM115
            self._keys = list(restored["keys"])
            self._writer = csv.writer(self._file, delimiter=self.separator)
            return
        self._has_header = (
            self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        )
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115

    def get_state(self) -> dict | None:
        """The file's length after the last row and the columns (resume continues there)."""
        if getattr(self, "_file", None) is None or self._file.closed:
            return None
        self._file.flush()
        return {"position": self._file.tell(), "keys": self._keys}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if not self._has_header:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(logs.get(k, "NA") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        self._file.close()
        self._file = None


def _fmt(logs) -> str:
    return " - ".join(f"{k}: {_fmt_value(v)}" for k, v in logs.items())


def _fmt_value(v) -> str:
    """4 significant digits; nested brackets for array-valued metrics (a confusion matrix)."""
    if getattr(v, "ndim", 0) == 0:
        return f"{v:.4g}"
    return "[" + ", ".join(_fmt_value(x) for x in v) + "]"


class ProgressBar(Callback):
    """A tqdm bar per epoch (``verbose=1``), with the running logs every ``refresh_s`` seconds.

    The bar shows what was compiled: the loss, the metrics and their ``val_`` values.
    ``grad_norm``, ``param_norm`` and ``learning_rate`` are always in the History; pass
    ``show="all"`` (or a list of names) to see them on the bar too:
    ``fit(..., callbacks=[ProgressBar(show="all")])`` replaces the default bar. Reading the logs
    waits for the device, so it happens at most every ``refresh_s`` seconds (Keras' bar updates
    every batch; its logs are on the host already).

    Examples:
      >>> bar = ProgressBar(show=["loss", "accuracy", "grad_norm"])
    """

    def __init__(self, epochs: int | None = None, steps: int | None = None,
                 refresh_s: float = 1.0, file=None, show=None):  # fmt: skip
        if (
            show is not None
            and show != "all"
            and (isinstance(show, str) or not all(isinstance(n, str) for n in show))
        ):
            raise ValueError(f"show must be None, 'all' or a list of log names, got {show!r}")
        self.epochs, self.steps, self.refresh_s, self.show = epochs, steps, refresh_s, show
        self.file = file if file is not None else sys.stderr

    def _shown(self, logs) -> dict:
        if self.show == "all":
            return dict(logs)
        names = set(self.show) if self.show is not None else set(self.default_names)
        return {k: logs[k] for k in logs if k in names or k.removeprefix("val_") in names}

    default_names: Sequence[str] = ("loss",)  # CallbackList sets the compiled names

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.steps,
            desc=f"Epoch {epoch + 1}/{self.epochs}",
            unit="step",
            file=self.file,
            leave=True,
            dynamic_ncols=True,
        )
        self._last_step, self._last_time = -1, time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(batch - self._last_step)
        self._last_step = batch
        now = time.monotonic()
        if logs is not None and now - self._last_time >= self.refresh_s:
            self._last_time = now
            shown = self._shown(logs)
            shown = {
                k: v if getattr(v, "ndim", 0) == 0 else _fmt_value(v) for k, v in shown.items()
            }
            self.bar.set_postfix(shown, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.set_postfix_str(_fmt(self._shown(logs or {})), refresh=False)
        self.bar.close()


class _EpochLine(ProgressBar):
    """``verbose=2``: one line per epoch, showing what `ProgressBar` shows."""

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        dt = time.monotonic() - self._t0
        shown = _fmt(self._shown(logs or {}))
        print(f"Epoch {epoch + 1}/{self.epochs} - {dt:.1f}s - {shown}", flush=True)


class CallbackList:
    """Runs hooks in order; built by ``fit``/``evaluate``/``predict``.

    `TerminateOnNaN` always runs first, then History, the user's callbacks (every
    `ModelCheckpoint` after the others, so a checkpoint holds the state they set at the epoch's
    end), then the progress display.
    """

    def __init__(
        self,
        callbacks=None,
        *,
        trainer,
        add_history=False,
        terminate_on_nan=False,
        verbose=0,
        epochs=1,
        steps=1,
        shown=("loss",),
    ):
        if callbacks is None:
            callbacks = []
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        if not isinstance(callbacks, Sequence):
            raise TypeError(
                f"callbacks must be a list of fnn.callbacks.Callback, got {type(callbacks).__name__}"
            )
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks: expected fnn.callbacks.Callback instances, got {type(cb).__name__}"
                )
        nan = [cb for cb in callbacks if isinstance(cb, TerminateOnNaN)]
        rest = [cb for cb in callbacks if not isinstance(cb, TerminateOnNaN)]
        if terminate_on_nan and not nan:
            nan = [TerminateOnNaN()]
        history = History() if add_history else None
        if history is not None:
            history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        display = []
        if any(isinstance(cb, ProgressBar) for cb in rest):
            pass  # the user's own bar replaces the default display
        elif verbose == 1:
            display = [ProgressBar(epochs, steps)]
        elif verbose == 2:
            display = [_EpochLine(epochs, steps)]
        for cb in rest + display:
            if isinstance(cb, ProgressBar):
                cb.epochs = epochs if cb.epochs is None else cb.epochs
                cb.steps = steps if cb.steps is None else cb.steps
                cb.default_names = tuple(shown)
        # Checkpoints last: they save the state the other callbacks left at the epoch's end.
        saves = [cb for cb in rest if isinstance(cb, ModelCheckpoint)]
        rest = [cb for cb in rest if not isinstance(cb, ModelCheckpoint)] + saves
        self.callbacks = nan + ([history] if history else []) + rest + display
        self.history = history
        for cb in self.callbacks:
            cb.set_trainer(trainer)

    def states(self) -> tuple[dict, dict]:
        """``{"<class>#<i>": state}`` of the callbacks that have one (`Callback.get_state`), and
        ``{"<class>#<i>": (params, model_state)}`` of those with weights to save."""
        out, weights, seen = {}, {}, {}
        for cb in self.callbacks:
            name = type(cb).__name__
            i = seen[name] = seen.get(name, -1) + 1
            state = cb.get_state()
            if state is not None:
                out[f"{name}#{i}"] = state
            w = cb.get_weights_state()
            if w is not None:
                weights[f"{name}#{i}"] = w
        return out, weights

    def set_states(self, states: dict) -> None:
        """Give each callback the state saved for its class and position (`states`)."""
        seen = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            i = seen[name] = seen.get(name, -1) + 1
            if f"{name}#{i}" in states:
                cb.set_state(states[f"{name}#{i}"])

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call
