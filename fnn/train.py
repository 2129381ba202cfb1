"""Training, in one import: ``fnn.train.compile(model, ...)`` and the pure steps.

This module gathers the public names of the training loop's modules, each one concern:

* `fnn.steps`: `TrainState`, `make_train_step`, `make_eval_step` (what a hand-written loop
  uses), the K-step programs `fit` runs, `learning_rate`;
* `fnn.objective`: `Objective`, compile's ``loss`` / ``metrics`` / ``loss_weights`` on a batch;
* `fnn.feeding`: input checks and how batches reach the device (arrays, streams, padding);
* `fnn.checkpoints`: `save_checkpoint`, `restore_checkpoint` (Orbax);
* `fnn.trainer`: `compile`, `Trainer` (``fit`` / ``evaluate`` / ``predict``);
* `fnn.callbacks`: `History` and the other callbacks.

Import from here (``fnn.train.compile``) or from the module that owns a name; both keep working.
"""

from fnn.callbacks import History
from fnn.checkpoints import restore_checkpoint, save_checkpoint
from fnn.objective import Objective
from fnn.steps import TrainState, learning_rate, make_eval_step, make_train_step
from fnn.trainer import Trainer, compile

__all__ = [
    "TrainState",
    "make_train_step",
    "make_eval_step",
    "compile",
    "Trainer",
    "History",
    "Objective",
    "learning_rate",
    "save_checkpoint",
    "restore_checkpoint",
]
