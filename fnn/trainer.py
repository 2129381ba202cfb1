"""Keras' ``compile`` / ``fit`` / ``evaluate`` / ``predict``: the slides' training loop.

    for epoch:                                 Trainer.fit → _run_epochs
        for each batch:                        feeds (fnn.feeding) give K batches at a time
            forward, loss, backward, update    one compiled K-step program (fnn.steps)
        validate                               Trainer._evaluate_feed
        callbacks                              fnn.callbacks (checkpoints, early stopping, ...)

Everything a step does lives in `fnn.steps` (state, pure steps, K-step programs), what it
minimises in `fnn.objective`, how examples reach the device in `fnn.feeding`, and how states are
written in `fnn.checkpoints`; this module only drives them. Differences from Keras, all
deliberate: in-memory data is copied to the device once and every epoch's shuffle is a device
permutation; the host does not touch the loop between steps except at logging time (callbacks'
``on_train_batch_end`` receive lazy logs that synchronise only when read); ``TerminateOnNaN`` is
on by default and raises an error naming the step rather than stopping quietly; arguments that
cannot apply raise errors instead of being ignored.
"""

from __future__ import annotations

import base64
import numbers
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from fnn import callbacks as callbacks_lib
from fnn import checkpoints, conv, feeding, parallel
from fnn import steps as steps_lib
from fnn.callbacks import History
from fnn.objective import Objective
from fnn.steps import TrainState

__all__ = ["compile", "Trainer", "History"]


def _resolve_optimizer(optimizer) -> optax.GradientTransformation:
    if optimizer is None:
        raise ValueError("optimizer is required, e.g. optimizer='adam'")
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if isinstance(optimizer, str | Callable):
        from fnn import optimizers as optimizers_lib

        tx = optimizers_lib.get(optimizer)
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"optimizer {optimizer!r} did not give an optax.GradientTransformation")
        return tx
    raise TypeError(
        f"optimizer must be a name (e.g. 'adam') or an optax.GradientTransformation, "
        f"got {type(optimizer).__name__}"
    )


def seed_key(seed: int) -> jax.Array:
    """``jax.random.key(seed)``, made on the host (JAX compiles a seeding program for it).

    The default threefry key of a 32-bit seed is the pair ``(0, seed mod 2³²)``; other seeds
    and other PRNG implementations go through `jax.random.key`.
    """
    if jax.config.jax_default_prng_impl == "threefry2x32" and -(2**31) <= seed < 2**31:
        return jax.random.wrap_key_data(np.array([0, seed % 2**32], np.uint32))
    return jax.random.key(seed)


def _shuffle_key_of(key: jax.Array) -> jax.Array:
    """The epochs' shuffle key: the first half of ``split(key)`` (traced inside a program)."""
    return jax.random.split(key)[0]


def _step_key_of(key: jax.Array) -> jax.Array:
    """The steps' key (Dropout, augmentation): the second half of ``split(key)``."""
    return jax.random.split(key)[1]


def _with_step_key(run):
    """``run`` taking the trainer's key in place of the step key, derived inside the program."""

    def run_from_key(*args):
        return run(*args[:-1], _step_key_of(args[-1]))

    return run_from_key


class _LazyLogs(Mapping):
    """Logs that fetch device values only when a callback reads them (logging time)."""

    def __init__(self, fetch: Callable[[], dict]):
        self._fetch = fetch
        self._value: dict | None = None

    def _get(self) -> dict:
        if self._value is None:
            self._value = self._fetch()
        return self._value

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())


def _copy(tree):
    """Own device copies of ``tree``'s arrays (the next step donates the state's buffers), made
    by transfers: `jnp.copy` compiles one program per array shape (10 for the reference CNN)."""
    return jax.tree.map(lambda a: jax.device_put(a, a.sharding, may_alias=False), tree)


class Trainer:
    """A compiled model: Keras' ``fit`` / ``evaluate`` / ``predict`` over a `TrainState`.

    Built by `compile`; see it for the arguments. Attributes: ``state`` (the current
    `TrainState`), ``model`` (the user's module; updated in place at the end of ``fit``),
    ``mesh``, ``stop_training`` (callbacks set it), ``history``.

    Examples:
      A binary task: a one-unit sigmoid output and ``(N,)`` labels (aligned as in Keras).

      >>> import numpy as np
      >>> from flax import nnx
      >>> class Logistic(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.dense = nnx.Linear(2, 1, rngs=rngs)
      ...     def __call__(self, x):
      ...         return nnx.sigmoid(self.dense(x))
      >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
      >>> y = (x[:, 0] > 0).astype(np.int32)
      >>> trainer = compile(Logistic(nnx.Rngs(0)), optimizer="adam", loss="binary_crossentropy",
      ...                   metrics=["accuracy"], devices=1)
      >>> history = trainer.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
      >>> sorted(history.history)[:3], len(history.history["val_loss"])
      (['accuracy', 'grad_norm', 'learning_rate'], 2)
      >>> loss, accuracy = trainer.evaluate(x, y, batch_size=16, verbose=0)
      >>> trainer.predict(x[:5], batch_size=5, verbose=0).shape
      (5, 1)
    """

    def __init__(self, model, *, optimizer, loss, metrics=None, loss_weights=None,
                 weighted_metrics=None, run_eagerly: bool = False, steps_per_execution: int = 1,
                 seed: int = 0, devices=None, terminate_on_nan: bool = True,
                 update_batch_stats: bool = True, loss_scale="auto", augment=None):  # fmt: skip
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        self.model = model
        self.tx = _resolve_optimizer(optimizer)
        self.objective = Objective(
            loss, metrics=metrics, weighted_metrics=weighted_metrics, loss_weights=loss_weights
        )
        if not isinstance(run_eagerly, bool):
            raise TypeError(f"run_eagerly must be True or False, got {run_eagerly!r}")
        self.run_eagerly = run_eagerly
        self.steps_per_execution = feeding.positive_int(steps_per_execution, "steps_per_execution")
        if not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = int(seed)
        self.terminate_on_nan = bool(terminate_on_nan)
        self.update_batch_stats = bool(update_batch_stats)
        self.augment = steps_lib.check_augment(augment)
        self.mesh = parallel.make_mesh(devices)
        if self.steps_per_execution > 1:  # flax.nnx.Conv is ~12x slower in lax.scan on CPU
            conv.make_loop_safe(model)
        state = TrainState.create(model, self.tx, loss_scale=loss_scale)
        self.state = parallel.replicate(state, self.mesh)
        self._has_lr = steps_lib.learning_rate(self.state.opt_state) is not None
        # One key from the seed; the shuffle key and the step key are its split, derived inside
        # the programs that use them (no key programs compiled before the first step).
        self._key = seed_key(self.seed)
        self.feeder = feeding.Feeder(
            self.mesh, self._key, derive=_shuffle_key_of, jit=self._jit, call=self._call
        )
        self._runners: dict = {}
        self._runner_keeps: dict = {}  # the keep_last_finite each train runner was built with
        self.stop_training = False
        self.history: History | None = None
        self.nonfinite_step: int | None = None
        self._keep_last_finite = False  # a TerminateOnNaN runs: bad steps leave the state as is
        self._initial_epoch = 0
        self._stream_iterator = None  # the streaming input being read (its position is saved)
        self._iterator_state = None  # a restored stream position, used by the next fit
        self._callbacks = None  # the running fit's CallbackList (their states are saved)
        self._callback_states: dict = {}  # restored callback states, used by the next fit

    # -- learning rate ------------------------------------------------------------------------

    def _base_lr(self) -> float:
        lr = steps_lib.learning_rate(self.state.opt_state)
        if lr is None:
            raise ValueError(
                "the learning rate cannot be read from this optimizer's state; use "
                "fnn.optimizers.get(...) or wrap it with optax.inject_hyperparams(...)"
            )
        return float(lr)

    @property
    def learning_rate(self) -> float:
        """The current learning rate: the optimizer's times the callbacks' scale."""
        return self._base_lr() * float(self.state.lr_scale)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        base = self._base_lr()
        if base == 0:
            raise ValueError("the optimizer's learning rate is 0; it cannot be rescaled")
        self.scale_learning_rate(float(value) / base / float(self.state.lr_scale))

    def scale_learning_rate(self, factor: float) -> None:
        """Multiply every future update by ``factor`` (works with any optimizer)."""
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"factor must be finite and >= 0, got {factor}")
        scale = np.asarray(float(self.state.lr_scale) * factor, np.float32)
        self.state = self.state.replace(
            lr_scale=jax.device_put(scale, parallel.replicated(self.mesh))
        )

    # -- weights and checkpoints --------------------------------------------------------------

    def get_weights(self):
        """A copy of ``(params, model_state)`` (on the device)."""
        return _copy((self.state.params, self.state.model_state))

    def set_weights(self, weights) -> None:
        """Replace ``(params, model_state)`` with a copy of ``weights`` (see `get_weights`)."""
        params, model_state = _copy(weights)
        self.state = self.state.replace(params=params, model_state=model_state)

    @property
    def _step_key(self) -> jax.Array:
        """The key the train steps receive (derived inside their programs; tests read it)."""
        return _step_key_of(self._key)

    def _sync_model(self) -> None:
        nnx.update(self.model, *_copy((self.state.params, self.state.model_state)))

    def save(self, directory, *, epoch: int, weights_only: bool = False) -> None:
        """Write the state to ``directory/<epoch>`` with Orbax (`fnn.checkpoints`).

        The epoch is written (or an error raised) even when the folder holds later epochs, and
        an existing copy of ``epoch`` is replaced atomically. The metadata keeps the streaming
        input's position and the states of the current (or last) ``fit``'s callbacks
        (`fnn.callbacks.Callback.get_state`).
        """
        meta = {"seed": self.seed}
        iterator = self._stream_iterator
        if iterator is not None and hasattr(iterator, "get_state"):
            # The streaming input's position: a resumed fit continues with the next batch.
            meta["iterator_state"] = base64.b64encode(iterator.get_state()).decode("ascii")
        extra = None
        if self._callbacks is not None:  # the running (or last) fit's callbacks' states
            meta["callbacks"], extra = self._callbacks.states()
        checkpoints.save_checkpoint(
            directory, self.state, epoch=epoch, weights_only=weights_only, metadata=meta,
            extra_weights=extra,
        )  # fmt: skip

    def restore(self, directory, *, epoch: int | None = None) -> int:
        """Load a checkpoint (the latest by default); returns the epoch to resume ``fit`` from.

        The next ``fit`` gives the saved callback states to its callbacks of the same class and
        position (`fnn.callbacks.Callback.set_state`), so the resumed run repeats an
        uninterrupted one.

        Examples:
          ``trainer.fit(x, y, epochs=4, initial_epoch=trainer.restore("ckpt"))``
        """
        state, meta = checkpoints.restore_checkpoint(directory, self.state, epoch=epoch)
        self.state = parallel.replicate(state, self.mesh)
        if meta.get("iterator_state"):
            self._iterator_state = base64.b64decode(meta["iterator_state"])
        self._callback_states = meta.get("callbacks") or {}  # for the next fit's callbacks
        for name, weights in (meta.get("extra_weights") or {}).items():
            self._callback_states.setdefault(name, {})["weights"] = parallel.replicate(
                weights, self.mesh
            )
        self._sync_model()
        return int(meta["epoch"])

    # -- compiled programs --------------------------------------------------------------------

    def _jit(self, fn, **kw):
        return fn if self.run_eagerly else jax.jit(fn, **kw)

    def _call(self, fn, *args):
        if self.run_eagerly:
            with jax.disable_jit():
                return fn(*args)
        return fn(*args)

    def _runner(self, kind: str, k: int, batch_size: int):
        """The compiled ``k``-step program of ``kind`` (`fnn.steps.make_runner`), built once."""
        key = (kind, k, batch_size)
        if kind == "train" and self._runner_keeps.get(key, self._keep_last_finite) != (
            self._keep_last_finite
        ):
            del self._runners[key]  # TerminateOnNaN was added or removed: rebuild
        self._runner_keeps[key] = self._keep_last_finite
        if key not in self._runners:
            run = steps_lib.make_runner(
                kind,
                self.objective,
                k=k,
                mesh=self.mesh,
                update_batch_stats=self.update_batch_stats,
                keep_last_finite=self._keep_last_finite,
                augment=self.augment,
            )
            if kind != "predict":
                run = _with_step_key(run)
            donate = {"train": (0, 1), "eval": (1,), "predict": ()}[kind]
            self._runners[key] = self._jit(run, donate_argnums=donate)
        return self._runners[key]

    def _check_targets(self, y, x_shape, batch_size: int, name: str = "y") -> None:
        out = steps_lib.probe_output(self.state, x_shape, batch_size)
        self.objective.check_targets(y, out, name)

    def _logs(self, acc) -> dict[str, float]:
        logs, bad = steps_lib.read_accumulator(acc)
        if bad is not None and self.nonfinite_step is None:
            self.nonfinite_step = bad
        first = [k for k in self.objective.names if k in logs]  # Keras' order: loss, metrics
        return {k: logs[k] for k in first + [k for k in logs if k not in first]}

    # -- the loop -----------------------------------------------------------------------------

    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto",
            callbacks=None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, class_weight: Mapping | None = None, sample_weight=None,
            initial_epoch: int = 0, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, validation_batch_size: int | None = None,
            validation_freq=1, max_queue_size: int = 10, workers: int = 1,
            use_multiprocessing: bool = False) -> History:  # fmt: skip
        """Train for ``epochs`` epochs (Keras' ``Model.fit`` arguments and meaning).

        Every argument is checked before the first step (x/y lengths, NaN/inf, label range, the
        model output against the loss, batch sizes against the data and the devices, ...); an
        argument that cannot apply raises a ``ValueError`` rather than being ignored.

        Args:
          x: inputs ``[N, ...]`` (NumPy or JAX), or a dataset dict ``{"image", "label"}``
            (copied to the device once); or a stream: a data source that ``fit`` streams with
            `fnn.data.loader` (``"tfds:<name>"``, a folder, any random-access source such as
            ``fnn.data.ArraySource``), or a ready ``fnn.data.Loader`` / iterable of batch dicts.
            Streamed batches are fed from the host, ``steps_per_execution`` at a time, and the
            stream's position is saved with `fnn.callbacks.ModelCheckpoint`.
          y: labels ``[N]`` (class ids) or ``[N, K]``; ``None`` for dicts and streams.
          batch_size: examples per step (default 32); a multiple of the device count.
          epochs: train until this epoch index (with ``initial_epoch``, as Keras counts).
          verbose: ``"auto"``/1 a tqdm bar per epoch, 2 one line per epoch, 0 silent.
          callbacks: `fnn.callbacks.Callback` instances. ``TerminateOnNaN`` is added unless
            ``compile(..., terminate_on_nan=False)``.
          validation_split: the fraction in (0, 1) of the data, taken from the end before
            shuffling, held out for validation (Keras' rule). 0 means none.
          validation_data: ``(x_val, y_val)``, ``(x_val, y_val, sample_weight_val)``, a dataset
            dict or a stream; evaluated at the end of each validation epoch (``val_`` logs).
          shuffle: reshuffle the training data each epoch (a device permutation seeded by
            ``compile(seed=)`` and the epoch index).
          class_weight: ``{class: weight}``; multiplies each example's loss weight.
          sample_weight: ``[N]`` per-example loss weights.
          initial_epoch: the epoch to start from (resuming; see `Trainer.restore`).
          steps_per_epoch: steps per epoch, at most ``ceil(N / batch_size)`` (default that).
          validation_steps: validation batches per evaluation (default all).
          validation_batch_size: default ``batch_size``.
          validation_freq: validate every this many epochs, or at the epochs (1-based) listed.
          max_queue_size, workers, use_multiprocessing: Keras' reader settings, passed to the
            Grain loader ``fit`` builds for a data source (worker processes when
            ``use_multiprocessing``, else reader threads; ``max_queue_size`` batches
            prefetched). With in-memory arrays, or a loader built elsewhere, a non-default value
            raises: there is nothing for it to configure.

        Returns:
          `History` whose ``history`` maps ``loss``, each metric, ``learning_rate``,
          ``grad_norm``, ``param_norm``, ``loss_scale`` (float16) and the ``val_`` values to
          per-epoch lists.
        """
        verbose = feeding.verbosity(verbose)
        epochs = feeding.check_epochs(epochs, initial_epoch)
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
        if class_weight is not None:
            feeding.check_class_weight(class_weight)
        reader = dict(max_queue_size=max_queue_size, workers=workers,
                      use_multiprocessing=use_multiprocessing)  # fmt: skip
        val = dict(validation_data=validation_data, validation_steps=validation_steps,
                   validation_batch_size=validation_batch_size)  # fmt: skip
        if feeding.is_streaming_input(x):
            for name, value in (("y", y), ("sample_weight", sample_weight)):
                if value is not None:
                    raise ValueError(
                        f"{name}: a streaming x yields batches that carry their labels (and an "
                        f"optional 'sample_weight'); do not pass {name} as well"
                    )
            if validation_split:
                raise ValueError(
                    "validation_split needs in-memory arrays (as in Keras); with a streaming x "
                    "pass validation_data"
                )
            feed, val_feed, self._stream_iterator = feeding.stream_feeds(
                self.feeder, self._check_targets, x, batch_size, shuffle, class_weight,
                steps_per_epoch, reader, val, seed=self.seed, resume=self._iterator_state,
            )  # fmt: skip
            self._iterator_state = None
        else:
            feeding.check_streaming_args(**reader)
            self._stream_iterator = None
            feed, val_feed = feeding.array_feeds(
                self.feeder, self._check_targets, x, y, sample_weight, class_weight, batch_size,
                shuffle, steps_per_epoch, validation_split, val,
            )  # fmt: skip
        val_freq = feeding.validation_freq(validation_freq)
        cbs = callbacks_lib.CallbackList(
            callbacks, trainer=self, add_history=True, terminate_on_nan=self.terminate_on_nan,
            verbose=verbose, epochs=epochs, steps=feed.steps, shown=self.objective.names,
        )  # fmt: skip
        self.stop_training = False
        self.nonfinite_step = None
        self._initial_epoch = int(initial_epoch)
        self._keep_last_finite = any(
            isinstance(c, callbacks_lib.TerminateOnNaN) for c in cbs.callbacks
        )
        cbs.set_states(self._callback_states)
        self._callback_states = {}
        self._callbacks = cbs
        return self._run_epochs(cbs, feed, val_feed, range(initial_epoch, epochs), val_freq)

    def _run_epochs(self, cbs, feed, val_feed, epoch_range, val_freq) -> History:
        """The slides' loop: train an epoch, validate, let the callbacks look, repeat."""
        try:
            cbs.on_train_begin()
            for epoch in epoch_range:
                cbs.on_epoch_begin(epoch)
                logs = self._logs(self._train_epoch(feed, cbs, epoch))  # the host waits here
                if val_feed is not None and (epoch + 1) in val_freq:
                    logs.update({f"val_{k}": v for k, v in self._evaluate_feed(val_feed).items()})
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            cbs.on_train_end()
        except BaseException:
            # A callback's error (TerminateOnNaN: the state is the last good step's) leaves the
            # model at the state reached, so evaluate and predict keep working.
            try:
                self._sync_model()
            except Exception:  # noqa: BLE001, S110 - the original error matters more
                pass
            raise
        self._sync_model()
        self.history = cbs.history
        return cbs.history

    def _train_epoch(self, feed, cbs, epoch: int):
        """One epoch of compiled K-step executions; returns the on-device accumulator."""
        acc = steps_lib.init_accumulator(
            "train", self.objective, has_lr=self._has_lr, mesh=self.mesh,
            loss_scale=self.state.loss_scale is not None,
        )  # fmt: skip
        done = 0
        for k, batches in feed(epoch, self.steps_per_execution):
            run = self._runner("train", k, feed.batch_size)
            self.state, acc = self._call(run, self.state, acc, batches, self._key)
            if not done and epoch == self._initial_epoch:
                self._check_probabilities(acc, feed.batch_size * k)
            done += k
            cbs.on_train_batch_end(done - 1, _LazyLogs(lambda a=acc: self._logs(a)))
        return acc

    def _check_probabilities(self, acc, rows: int) -> None:
        """After fit's first execution only: a probability loss fed logits is an error."""
        if steps_lib.PROBABILITY_CHECK in acc:
            bad = int(jax.device_get(acc[steps_lib.PROBABILITY_CHECK]))
            if bad:
                raise self.objective.probability_error(bad, rows)

    def _evaluate_feed(self, feed) -> dict[str, float]:
        acc = steps_lib.init_accumulator("eval", self.objective, has_lr=False, mesh=self.mesh)
        for k, batches in feed(0, self.steps_per_execution):
            run = self._runner("eval", k, feed.batch_size)
            acc = self._call(run, self.state, acc, batches, self._key)
        return self._logs(acc)

    # -- evaluate / predict -------------------------------------------------------------------

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto",
                 sample_weight=None, steps: int | None = None, callbacks=None,
                 return_dict: bool = False):  # fmt: skip
        """Loss and metrics over ``(x, y)`` in inference mode (Keras' ``Model.evaluate``).

        Returns:
          the loss (float) when no metrics were compiled, else ``[loss, *metrics]``; with
          ``return_dict`` a dict name → float.

        Examples:
          ``loss, acc = trainer.evaluate(x_test, y_test)``
        """
        feeding.verbosity(verbose)
        if feeding.is_streaming_input(x):
            for arg, value in (("y", y), ("sample_weight", sample_weight)):
                if value is not None:
                    raise ValueError(f"{arg}: a streaming x carries its labels; do not pass {arg}")
            size = getattr(x, "batch_size", None) or batch_size or 32
            size = feeding.positive_int(size, "batch_size")
            parallel.check_batch_size(size, self.mesh)
            n_steps = None if steps is None else feeding.positive_int(steps, "steps")
            loader = self.feeder.stream_loader(x, size, name="x")
            feed = feeding.StreamFeed(self.feeder, loader, size, n_steps,
                                      check=self._check_targets, name="x")  # fmt: skip
        else:
            x, y, w = feeding.prepare_arrays(x, y, sample_weight, None)
            n = len(x)
            size = feeding.positive_int(
                min(32, n) if batch_size is None else batch_size, "batch_size"
            )
            n_steps = feeding.count_batches(n, size, steps, self.mesh, examples="examples")
            self._check_targets(y, x.shape, size)
            feed = feeding.ArrayFeed(feeding.Upload(self.feeder, x, y, w), n, size, n_steps)
        cbs = callbacks_lib.CallbackList(callbacks, trainer=self)
        cbs.on_test_begin()
        logs = self._evaluate_feed(feed)
        cbs.on_test_end(logs)
        if return_dict:
            return logs
        values = [logs[name] for name in self.objective.names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps: int | None = None,
                callbacks=None) -> np.ndarray:  # fmt: skip
        """Model outputs for ``x`` in inference mode: a NumPy array ``[N, ...]`` (a dict or tuple
        of them for a model with several outputs).

        Examples:
          ``probs = trainer.predict(x_test)``
        """
        feeding.verbosity(verbose)
        if isinstance(x, Mapping):
            x = x.get("image")
        if x is None or feeding.is_stream(x):
            raise TypeError("x: expected in-memory inputs [N, ...] or a dict with 'image'")
        x = feeding.as_array(x, "x")
        if len(x) == 0:
            raise ValueError(f"x: no examples (shape {x.shape}); pass at least one")
        feeding.check_finite(x, "x")
        x = x.astype(np.float32)
        n = len(x)
        size = feeding.positive_int(min(32, n) if batch_size is None else batch_size, "batch_size")
        n_steps = feeding.count_batches(n, size, steps, self.mesh, examples="examples")
        steps_lib.probe_output(self.state, x.shape, size)
        cbs = callbacks_lib.CallbackList(callbacks, trainer=self)
        cbs.on_predict_begin()
        outs = []
        feed = feeding.ArrayFeed(feeding.Upload(self.feeder, x), n, size, n_steps)
        for k, batches in feed(0, self.steps_per_execution):
            out = self._call(self._runner("predict", k, size), self.state, batches)
            outs.append(jax.tree.map(lambda o, k=k: o.reshape(k * size, *o.shape[2:]), out))
        rows = min(n, n_steps * size)
        result = jax.tree.map(lambda *o: np.asarray(jnp.concatenate(o))[:rows], *outs)
        cbs.on_predict_end()
        return result


def compile(model: nnx.Module, *, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
            weighted_metrics=None, run_eagerly: bool = False, steps_per_execution: int = 1,
            jit_compile="auto", seed: int = 0, devices=None, terminate_on_nan: bool = True,
            update_batch_stats: bool = True, loss_scale="auto",
            augment=None) -> Trainer:  # fmt: skip
    """Keras' ``model.compile(...)``: bind a model, an optimizer, a loss and metrics for training.

    The slides' ``model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
    metrics=["accuracy"])`` becomes ``trainer = fnn.train.compile(model, optimizer="adam",
    loss="sparse_categorical_crossentropy", metrics=["accuracy"])``; then ``trainer.fit(...)``.

    Args:
      model: a Flax NNX module taking ``[B, ...]`` inputs (trained in place by ``fit``).
      optimizer: a name for `fnn.optimizers.get` (Keras defaults; Keras' default is
        ``"rmsprop"``) or an `optax.GradientTransformation` (e.g. wrapped by
        `fnn.transfer.freeze`); it receives the full parameter tree.
      loss: a Keras loss name for `fnn.losses.get` or a callable ``f(*, y_true, y_pred) -> [B]``.
        As in Keras, labels and outputs are first rank-aligned (`fnn.losses.align_ranks`), so
        ``(N,)`` binary labels fit a one-unit ``(N, 1)`` output; other mismatches raise before
        the first step. A loss bound with ``ignore_class`` (``fnn.losses.get(
        "sparse_categorical_crossentropy", ignore_class=-1)``) averages over valid entries only.
        A loss may return one value per entry (``[N, H, W]`` per pixel); it is averaged over
        them as Keras averages them. Several outputs: a dict ``{output: loss}``; one loss over
        all outputs and labels at once: `fnn.objective.JointLoss`.
      metrics: names (``"accuracy"`` resolves from the shapes as in Keras; ``"precision"``,
        ``"auc"``, ``"f1_score"``, ``"mean_io_u"``, ... are epoch metrics), callables, or
        `fnn.metrics.EpochMetric` objects with options (``fnn.metrics.AUC(curve="PR")``).
      loss_weights: one number λ scaling the loss (fnn models have one output).
      weighted_metrics: metrics averaged with ``sample_weight`` / ``class_weight``.
      run_eagerly: run the steps without `jax.jit` (slow; for debugging with prints/pdb).
      steps_per_execution: K steps per compiled call, as one `jax.lax.scan` (fewer dispatches).
        With K > 1, every plain `flax.nnx.Conv` in the model gets `fnn.conv`'s convolution
        (`fnn.conv.make_loop_safe`: same numbers; XLA:CPU runs autodiff's backward
        convolutions ~12× slower inside loops), as if it had been built with `fnn.conv.Conv`.
      jit_compile: ``"auto"`` or ``True`` (fnn always compiles unless ``run_eagerly``); ``False``
        is rejected, use ``run_eagerly=True``.
      seed: seeds the epoch shuffles and the step keys (Dropout, augmentation).
      devices: ``None`` for all local devices (data parallel over a ``"data"`` mesh axis), an
        int, a list of devices or a `jax.sharding.Mesh`.
      terminate_on_nan: add `fnn.callbacks.TerminateOnNaN` to every ``fit``.
      update_batch_stats: ``False`` keeps every BatchNorm in inference mode while training.
      loss_scale: ``"auto"`` gives a model computing in float16 (``fnn.precision.apply(model,
        "mixed_float16")``) Keras' dynamic loss scaling, kept in ``trainer.state.loss_scale``
        and in checkpoints; ``None`` turns it off; a `fnn.precision.DynamicLossScale` sets it
        (`fnn.precision` says what is guaranteed). Keras wraps the optimizer in a
        ``LossScaleOptimizer`` instead.
      augment: ``None`` or a function ``augment(key, x, y) -> (x, y)`` of a whole training
        batch: ``x`` the inputs ``[B, ...]``, ``y`` the labels (an array, or a dict / tuple of
        them for several outputs, e.g. ``{"class": [B], "box": [B, 4]}``); it must return the
        same structure, shapes and dtypes (checked when the step is first compiled). It runs
        inside the compiled train step, before the forward pass, in training only (never in
        ``evaluate``, ``predict`` or validation), with the key ``fold_in(fold_in(step_key,
        state.step), 2**20)`` (``step_key`` derived from ``seed``): the same seed gives the same
        augmentation, and so do ``steps_per_execution`` and a resumed run (the key depends on
        the step count only); with several devices it runs on the sharded batch. Use it for
        augmentation that must move the targets with the images, e.g. the `fnn.augment`
        ``*_with_targets`` functions vmapped over ``jax.random.split(key, B)`` (flips that move
        boxes and masks). Why not a layer: a layer
        (`fnn.layers.RandomFlip`, Keras' preprocessing layers inside a model) sees only ``x``,
        so it cannot move a box or a mask; Keras moves targets in the input pipeline instead
        (``tf.data``'s ``dataset.map(lambda x, y: ...)``, Keras 3's ``bounding_boxes`` dicts),
        and PyTorch in the ``Dataset``'s transforms (``torchvision.transforms.v2`` with
        ``tv_tensors.BoundingBoxes``), both on the host, per example. Here it is one compiled
        batch function on the device (DESIGN.md: augmentation inside the compiled step).
        Image-only augmentation can stay a layer.

    Returns:
      a `Trainer`.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> from flax import nnx
      >>> def mse(*, y_true, y_pred):
      ...     return jnp.mean((y_pred - y_true) ** 2, axis=-1)
      >>> trainer = compile(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), optimizer=optax.sgd(0.1), loss=mse, devices=1)
      >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
      >>> history = trainer.fit(x, x[:, :1], batch_size=16, epochs=3, verbose=0)
      >>> history.history["loss"][-1] < history.history["loss"][0]
      True
    """
    if jit_compile not in ("auto", True):
        raise ValueError(
            f"jit_compile={jit_compile!r}: fnn always compiles its steps; for un-jitted "
            f"debugging pass run_eagerly=True"
        )
    return Trainer(
        model, optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights,
        weighted_metrics=weighted_metrics, run_eagerly=run_eagerly,
        steps_per_execution=steps_per_execution, seed=seed, devices=devices,
        terminate_on_nan=terminate_on_nan, update_batch_stats=update_batch_stats,
        loss_scale=loss_scale, augment=augment,
    )  # fmt: skip
