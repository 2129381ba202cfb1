"""Getting examples to the device: input checks, epoch orders, padding, batches, streams.

Two kinds of input reach a compiled step:

* **In-memory arrays** (NumPy/JAX, or an `fnn.data` dict) are checked on the host (lengths,
  NaN/inf, weights), copied to the device once (`Feeder.upload`), and each execution's ``k``
  batches are gathered there by a small program of its own (`gather_steps`) from a device
  permutation of the rows (`Feeder.perm`). The train, eval and predict programs therefore take
  batches, never the whole dataset: another dataset size compiles only the gather.
* **Streams** (a data source that `fnn.data.loader` reads with Grain, a ready loader, any
  iterable of batch dicts) are read on the host ``k`` batches at a time, padded and stacked
  (`Feeder.host_batches`).

Either way a feed yields ``(k, batches)`` with batches stacked ``[k, B, ...]`` and split over
the mesh's ``"data"`` axis. The last, partial batch of an epoch is padded to the full batch size
with examples that carry zero weight (``mask`` 0), so every step has one shape (one
compilation) and the loss is exactly Keras' mean over the real examples (padded examples do
enter BatchNorm's batch statistics).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fnn import dataset, parallel, runtime  # not fnn.data: it imports Grain (0.7 s)

__all__ = ["Feeder", "Upload", "ArrayFeed", "StreamFeed", "prepare_arrays", "is_streaming_input"]


# --------------------------------------------------------------------------------------------
# Host-side checks of fit / evaluate / predict arguments
# --------------------------------------------------------------------------------------------


def as_array(value, name: str) -> np.ndarray:
    if isinstance(value, jax.Array):
        value = np.asarray(jax.device_get(value))
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from e
    if arr.dtype == object:
        raise TypeError(f"{name}: expected a numeric array, got dtype object")
    if arr.dtype.kind == "c":
        raise TypeError(
            f"{name}: complex values (dtype {arr.dtype}) are not supported; pass real numbers "
            f"(e.g. np.abs({name}) or {name}.real)"
        )
    if arr.dtype.kind in "USa":
        raise TypeError(
            f"{name}: expected numbers, got strings (dtype {arr.dtype}); map string labels to "
            f"class ids first, e.g. classes, ids = np.unique(y, return_inverse=True)"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array with a leading batch axis, got a scalar")
    return arr


def check_finite(arr, name: str) -> None:
    """`fnn.data.check_finite`, and for wider floats (float64) a check that the values fit
    float32, the dtype they are trained in."""
    dataset.check_finite(arr, name)
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and arr.size:
        biggest = float(np.max(np.abs(arr)))
        limit = float(np.finfo(np.float32).max)
        if biggest > limit:
            raise ValueError(
                f"{name}: values overflow float32 (the largest magnitude is {biggest:g} > "
                f"{limit:g}) and would train as inf; rescale them"
            )


def unpack_xy(x, y, name: str = "x"):
    """Accept ``(x, y)`` or a dataset dict ``{"image": ..., "label": ...}`` (the fnn.data layout)."""
    if isinstance(x, Mapping):
        if y is not None:
            raise ValueError(f"{name} is a dict with 'image' and 'label'; do not pass y as well")
        missing = {"image", "label"} - set(x)
        if missing:
            raise ValueError(
                f"{name}: a dataset dict needs keys 'image' and 'label'; missing {sorted(missing)}"
            )
        return x["image"], x["label"], x.get("sample_weight")
    return x, y, None


def is_stream(x) -> bool:
    return not isinstance(x, np.ndarray | jax.Array | Mapping | list | tuple) and (
        hasattr(x, "__iter__") or hasattr(x, "__next__")
    )


def prepare_arrays(x, y, sample_weight, class_weight, *, name="x"):
    """Host-side checks; returns float32 x, y, float32 weights [N]."""
    x, y, sw_in_dict = unpack_xy(x, y, name)
    if sample_weight is None:
        sample_weight = sw_in_dict
    if x is None:
        raise ValueError(f"{name} is required")
    if is_stream(x):
        raise TypeError(
            f"{name}: expected in-memory arrays (NumPy/JAX) or a dict {{'image', 'label'}}, got "
            f"{type(x).__name__}; iterate a streaming pipeline yourself with make_train_step"
        )
    x = as_array(x, name)
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise TypeError(f"{name}: expected numbers, got dtype {x.dtype}")
    if y is None:
        raise ValueError(f"y is required with {name} (labels [N] or [N, K])")
    y = labels_array(y, "y")
    named = {f"y[{k!r}]": v for k, v in _label_items(y)} if is_structured(y) else {"y": y}
    dataset.check_same_length(**{name: x}, **named)
    if len(x) == 0:
        raise ValueError(f"{name}: no examples (shape {x.shape}); pass at least one")
    check_finite(x, name)
    for label_name, v in named.items():
        check_finite(v, label_name)
    n = len(x)
    weights = np.ones((n,), np.float32)
    if sample_weight is not None:
        sw = as_array(sample_weight, "sample_weight")
        if sw.shape != (n,):
            raise ValueError(
                f"sample_weight must have shape ({n},) like x's batch axis, got {sw.shape}"
            )
        check_finite(sw, "sample_weight")
        sw = sw.astype(np.float32)
        if (sw < 0).any():
            raise ValueError(f"sample_weight must be non-negative; got a minimum of {sw.min()}")
        weights = weights * sw
    if class_weight is not None:
        if is_structured(y):
            raise ValueError(
                "class_weight applies to one output's class ids; with several outputs pass "
                "sample_weight (one weight per example) instead"
            )
        weights = weights * class_weights(class_weight, y)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    elif x.dtype != np.float32:
        x = x.astype(np.float32)
    return x, y, weights


def is_structured(y) -> bool:
    """Labels of a model with several outputs: a dict (or tuple) of arrays."""
    return isinstance(y, Mapping) or (
        isinstance(y, tuple) and len(y) > 0 and all(hasattr(v, "shape") for v in y)
    )


def _label_items(y):
    return y.items() if isinstance(y, Mapping) else enumerate(y)


def labels_array(y, name: str):
    """Labels as NumPy: one array, or a dict (tuple) of arrays for several outputs."""
    if isinstance(y, Mapping):
        if not y:
            raise ValueError(f"{name}: an empty dict of labels")
        return {k: as_array(v, f"{name}[{k!r}]") for k, v in y.items()}
    if is_structured(y):
        return tuple(as_array(v, f"{name}[{i}]") for i, v in enumerate(y))
    return as_array(y, name)


def class_ids(y: np.ndarray) -> np.ndarray:
    if y.ndim >= 2 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1).reshape(len(y))
    return y.reshape(len(y)).astype(np.int64)


def check_class_weight(class_weight) -> None:
    """``{class index >= 0: finite weight >= 0}``, checked before anything is trained."""
    if not isinstance(class_weight, Mapping):
        raise TypeError(
            f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}"
        )
    if not class_weight:
        raise ValueError("class_weight is an empty dict; pass {class index: weight} or None")
    for c, w in class_weight.items():
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
            raise ValueError(
                f"class_weight keys must be class indices (ints >= 0), got {c!r} "
                f"({type(c).__name__})"
            )
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"class_weight[{c}] must be a number, got {w!r} ({type(w).__name__})")
        if not math.isfinite(float(w)) or float(w) < 0:
            raise ValueError(f"class_weight[{c}] must be finite and >= 0, got {w!r}")


def class_weights(class_weight, y: np.ndarray) -> np.ndarray:
    check_class_weight(class_weight)
    ids = class_ids(y)
    present = np.unique(ids)
    missing = sorted(int(c) for c in present if int(c) not in class_weight)
    if missing:
        raise ValueError(
            f"class_weight has no weight for classes {missing} present in y; it covers "
            f"{sorted(class_weight)}"
        )
    table = np.zeros(int(max(max(class_weight), present.max())) + 1, np.float32)
    for c, w in class_weight.items():
        if not isinstance(c, numbers.Integral) or c < 0:
            raise ValueError(f"class_weight keys must be class indices >= 0, got {c!r}")
        table[int(c)] = float(w)
    return table[ids]


def check_streaming_args(max_queue_size, workers, use_multiprocessing):
    given = {
        k: v
        for k, v, default in (
            ("max_queue_size", max_queue_size, 10),
            ("workers", workers, 1),
            ("use_multiprocessing", use_multiprocessing, False),
        )
        if v != default
    }
    if given:
        raise ValueError(
            f"{', '.join(f'{k}={v!r}' for k, v in given.items())}: these configure worker "
            f"processes that read a streaming dataset; in-memory arrays are already on the "
            f"device and need none (leave them at their defaults, or use fnn.data's streaming "
            f"loader)"
        )


def positive_int(value, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_epochs(epochs, initial_epoch) -> int:
    epochs = positive_int(epochs, "epochs")
    if not isinstance(initial_epoch, numbers.Integral) or not 0 <= initial_epoch <= epochs:
        raise ValueError(
            f"initial_epoch must be an int in [0, epochs={epochs}], got {initial_epoch!r}"
        )
    return epochs


def verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def is_streaming_input(x) -> bool:
    """A name/path to stream, a random-access source, an fnn.data.Loader or any batch iterable."""
    if isinstance(x, str | os.PathLike):
        return True
    if isinstance(x, np.ndarray | jax.Array | Mapping | list | tuple) or x is None:
        return False
    return (
        hasattr(x, "__iter__")
        or hasattr(x, "__next__")
        or (hasattr(x, "__len__") and hasattr(x, "__getitem__"))
    )


# --------------------------------------------------------------------------------------------
# Device-side batches
# --------------------------------------------------------------------------------------------


def perm_length(data, steps: int, batch_size: int) -> int:
    """Length of an epoch's row order: whole batches covering every uploaded row (at least
    ``steps`` batches), so ``steps_per_epoch`` or a ``validation_split`` (fewer real rows of
    the same upload) reuse the compiled runner instead of changing its input shape."""
    rows = len(jax.tree.leaves(data)[0])
    return max(steps, -(-rows // batch_size)) * batch_size


def gather_steps(data, perm, start, n, *, k: int, batch_size: int, mesh):
    """The uploaded rows of steps ``start .. start + k - 1``, stacked ``[k, B, ...]``.

    Step ``j`` takes rows ``perm[j·B : (j+1)·B]``; ``mask`` is 0 past the epoch's ``n`` real
    rows. This is a program of its own, so that the train, eval and predict programs take
    batches and never the whole dataset: a new dataset size (another subset, another split,
    another fold) compiles only this gather, not the model again. Fine-tuning EfficientNet
    on four subset sizes compiled its train step four times, 5.6-7.2 s each, before.
    """
    offset = start * batch_size
    idx = jax.lax.dynamic_slice_in_dim(perm, offset, k * batch_size)
    batches = jax.tree.map(
        lambda v: jnp.take(v, idx, axis=0).reshape(k, batch_size, *v.shape[1:]), data
    )
    real = offset + jnp.arange(k * batch_size) < n
    batches["mask"] = real.astype(jnp.float32).reshape(k, batch_size)
    return parallel.constrain_batch(batches, mesh, stacked=True)


def validation_freq(value):
    """Keras' ``validation_freq``: every N epochs, or the (1-based) epochs listed; supports
    ``epoch in result``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"validation_freq must be >= 1, got {value}")
        f = int(value)

        class _Every:
            def __contains__(self, epoch):
                return epoch % f == 0

        return _Every()
    if isinstance(value, Sequence | set | frozenset) and all(
        isinstance(e, numbers.Integral) and e >= 1 for e in value
    ):
        return set(int(e) for e in value)
    raise ValueError(
        f"validation_freq must be a positive int or a collection of epochs (1-based), got {value!r}"
    )


def validation_tuple(validation_data):
    """``validation_data`` as checked arrays ``(x, y, w)``."""
    if isinstance(validation_data, Mapping):
        return prepare_arrays(validation_data, None, None, None, name="validation_data")
    if isinstance(validation_data, tuple | list) and len(validation_data) in (2, 3):
        vx, vy, *rest = validation_data
        return prepare_arrays(vx, vy, rest[0] if rest else None, None, name="validation_data x")
    length = (
        f" of length {len(validation_data)}" if isinstance(validation_data, tuple | list) else ""
    )
    raise ValueError(
        "validation_data must be (x_val, y_val), (x_val, y_val, sample_weight_val) or a "
        f"dict with 'image' and 'label', got {type(validation_data).__name__}{length}"
    )


def count_batches(
    n, batch_size, steps, mesh, *, examples, batch_name="batch_size", steps_name="steps", label=""
) -> int:
    """Check ``batch_size`` (and the mesh) against ``n`` examples; return the batch count."""
    if batch_size > n:
        raise ValueError(
            f"{batch_name}={batch_size} is larger than the {n} {examples}; use at most {n}"
        )
    parallel.check_batch_size(batch_size, mesh, name=batch_name)
    full = -(-n // batch_size)
    steps = full if steps is None else positive_int(steps, steps_name)
    if steps > full:
        raise ValueError(
            f"{steps_name}={steps} exceeds the {full} {label}batches of {batch_size} in the "
            f"{n} {examples}"
        )
    return steps


def is_ready_loader(x) -> bool:
    """An iterable of batches (a loader built elsewhere), not a random-access data source."""
    return hasattr(x, "__iter__") and not (hasattr(x, "__getitem__") and hasattr(x, "__len__"))


def next_batch(iterator):
    try:
        return next(iterator)
    except StopIteration:
        raise ValueError(
            "x ran out of batches before steps_per_epoch × epochs steps; build it with "
            "num_epochs=None (fnn.data.loader) or lower steps_per_epoch"
        ) from None


def host_batch(raw, batch_size, *, name):
    """A streamed batch's ``(images, labels)`` as checked NumPy arrays."""
    if isinstance(raw, Mapping):
        images, labels = raw.get("image"), raw.get("label")
    elif isinstance(raw, tuple | list) and len(raw) >= 2:
        images, labels = raw[0], raw[1]
    else:
        raise TypeError(
            f"{name}: a stream must yield dicts {{'image', 'label'}} or (x, y) tuples, got "
            f"{type(raw).__name__}"
        )
    images = as_array(images, f"{name} 'image'").astype(np.float32)
    labels = labels_array(labels, f"{name} 'label'")
    n_labels = {len(v) for v in jax.tree.leaves(labels)}
    if n_labels != {len(images)} or len(images) > batch_size:
        raise ValueError(
            f"{name}: {len(images)} images and {sorted(n_labels)} labels; expected equal "
            f"numbers, at most batch_size={batch_size}"
        )
    check_finite(images, f"{name} 'image'")
    return images, labels


def _host_padded(raw, batch_size, class_weight):
    images, labels = host_batch(raw, batch_size, name="a streamed batch")
    n = len(images)
    weights = np.ones((n,), np.float32)
    if isinstance(raw, Mapping) and raw.get("sample_weight") is not None:
        weights = weights * np.asarray(raw["sample_weight"], np.float32)
    if class_weight is not None:
        if is_structured(labels):
            raise ValueError("class_weight applies to one output's class ids; pass sample_weight")
        weights = weights * class_weights(class_weight, labels)
    mask = np.zeros((batch_size,), np.float32)
    mask[:n] = 1.0
    if n < batch_size:  # pad with repeats that carry zero weight: one shape, one compile
        pad = lambda a: np.resize(a, (batch_size, *a.shape[1:]))  # noqa: E731
        images, labels, weights = pad(images), jax.tree.map(pad, labels), pad(weights)
    return {"image": images, "label": labels, "sample_weight": weights, "mask": mask}


# --------------------------------------------------------------------------------------------
# The feeder (one per Trainer: its mesh, shuffle key and compiled gather programs) and feeds
# --------------------------------------------------------------------------------------------


class Feeder:
    """Moves a trainer's inputs to the device; keeps the small programs that do it.

    Args:
      mesh: the trainer's mesh (batches are split over its ``"data"`` axis).
      key: seeds every epoch's permutation (``fold_in(derive(key), epoch)``).
      derive: the shuffle key from ``key``, traced inside the permutation program (default the
        key itself), so that deriving it compiles no program of its own.
      jit: how to compile (``jax.jit``, or the identity under ``run_eagerly``).
      call: how to call a compiled program (under ``run_eagerly``: with `jax.disable_jit`).
    """

    def __init__(self, mesh, key, *, derive: Callable = lambda key: key,
                 jit: Callable = jax.jit, call: Callable | None = None):  # fmt: skip
        self.mesh = mesh
        self.key = key
        self._derive = derive
        self._jit = jit
        self._call = call or (lambda fn, *args: fn(*args))
        self._programs: dict = {}

    def upload(self, x, y=None, w=None):
        """Copy checked host arrays to the device once, replicated over the mesh."""
        data = {"image": x}
        if y is not None:
            data["label"] = y
            data["sample_weight"] = w
        return parallel.replicate(data, self.mesh)

    def perm(self, n: int, total: int, epoch: int, shuffle: bool, start: int = 0):
        """Row indices of one epoch, ``total`` long: rows ``start .. start+n-1``, permuted on the
        device when ``shuffle`` (key ``fold_in(derive(key), epoch)``), then repeated from the
        beginning to fill the last batch (those repeats get zero weight).

        The permutation is a small program compiled without LLVM optimisation
        (`fnn.runtime.QUICK_COMPILE`: it runs once per epoch, and its integers are the same).
        """
        if not shuffle:
            order = np.resize(np.arange(start, start + n, dtype=np.int32), total)
            return jax.device_put(order, parallel.replicated(self.mesh))
        key = ("perm", n, total)
        if key not in self._programs:

            def perm_fn(key, epoch, start):
                p = jax.random.permutation(jax.random.fold_in(self._derive(key), epoch), n)
                reps = -(-total // n)
                return jnp.tile(p, reps)[:total].astype(jnp.int32) + start

            self._programs[key] = jax.jit(
                perm_fn,
                out_shardings=parallel.replicated(self.mesh),
                compiler_options=runtime.QUICK_COMPILE,
            )
        return self._programs[key](self.key, np.int32(epoch), np.int32(start))

    def gather(self, data, perm, done: int, n, k: int, batch_size: int):
        """Steps ``done .. done + k - 1`` of an epoch, stacked ``[k, B, ...]`` (`gather_steps`)."""
        key = ("gather", k, batch_size)
        if key not in self._programs:
            fn = functools.partial(gather_steps, k=k, batch_size=batch_size, mesh=self.mesh)
            self._programs[key] = self._jit(fn)
        return self._call(self._programs[key], data, perm, done, n)

    def host_batches(self, raws, batch_size, class_weight):
        """Host batches → one ``[k, B, ...]`` device array per key, split over ``"data"``."""
        host = [_host_padded(raw, batch_size, class_weight) for raw in raws]
        stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *host)
        return jax.device_put(stacked, parallel.stacked_batch_sharding(self.mesh))

    def stream_loader(self, x, batch_size: int, *, name: str):
        """A one-pass, unshuffled loader over a data source (or ``x`` itself if ready-made)."""
        from fnn import data as data_lib

        if is_ready_loader(x):
            own = getattr(x, "batch_size", None)
            if own is not None and own != batch_size:
                raise ValueError(
                    f"{name}: its batch size {own} differs from batch_size={batch_size}"
                )
            return x
        return data_lib.loader(x, batch_size=batch_size, shuffle=False, num_epochs=1)


class Upload:
    """Checked host arrays and their one device copy, made on first use (after every check)."""

    def __init__(self, feeder, x, y=None, w=None):
        self.feeder, self.host, self._data = feeder, (x, y, w), None

    @property
    def data(self):
        if self._data is None:
            self._data = self.feeder.upload(*self.host)
            self.host = None  # the device copy is the one kept
        return self._data


class ArrayFeed:
    """An epoch of uploaded rows: ``feed(epoch, k)`` yields ``(kk, [kk, B, ...] batches)``.

    Rows ``start .. start + n - 1`` of the `Upload` (a validation split shares the training
    upload), ``steps`` batches of ``batch_size``, shuffled per epoch when ``shuffle``.
    """

    def __init__(self, upload: Upload, n, batch_size, steps, *, shuffle=False, start=0):
        self.upload, self.n = upload, n
        self.batch_size, self.steps, self.shuffle, self.start = batch_size, steps, shuffle, start

    def __call__(self, epoch: int, k: int) -> Iterator[tuple[int, dict]]:
        feeder, data = self.upload.feeder, self.upload.data
        total = perm_length(data, self.steps, self.batch_size)
        perm = feeder.perm(self.n, total, epoch, self.shuffle, start=self.start)
        done = 0
        while done < self.steps:
            kk = min(k, self.steps - done)
            yield kk, feeder.gather(data, perm, done, self.n, kk, self.batch_size)
            done += kk


class StreamFeed:
    """Batches read from the host, ``k`` at a time: ``feed(epoch, k)`` yields ``(kk, batches)``.

    Training (``iterator`` given): ``steps`` batches per epoch from one long-lived iterator
    (its position is what a checkpoint saves), starting with an already-read ``first`` batch.
    Evaluation (``iterator=None``): a new pass over ``loader`` each call, ``steps`` batches or
    until it ends; ``check(images, labels)`` sees its first batch.
    """

    def __init__(self, feeder, loader, batch_size, steps, *, iterator=None, first=None,
                 class_weight=None, check=None, name="x"):  # fmt: skip
        self.feeder, self.loader, self.batch_size, self.steps = feeder, loader, batch_size, steps
        self.iterator, self.pending, self.class_weight = iterator, first, class_weight
        self.check, self.name = check, name

    def __call__(self, epoch: int, k: int) -> Iterator[tuple[int, dict]]:
        if self.iterator is not None:
            yield from self._train(k)
        else:
            yield from self._one_pass(k)

    def _train(self, k):
        done = 0
        while done < self.steps:
            kk = min(k, self.steps - done)
            raws = []
            for _ in range(kk):
                raws.append(self.pending if self.pending is not None else next_batch(self.iterator))
                self.pending = None
            yield kk, self.feeder.host_batches(raws, self.batch_size, self.class_weight)
            done += kk

    def _one_pass(self, k):
        iterator = iter(self.loader)
        done, checked, steps = 0, False, self.steps
        while steps is None or done < steps:
            want = k if steps is None else min(k, steps - done)
            raws = []
            for _ in range(want):
                try:
                    raws.append(next(iterator))
                except StopIteration:
                    break
            if not raws:
                break
            if not checked and self.check is not None:
                name = f"{self.name}'s first batch"
                images, labels = host_batch(raws[0], self.batch_size, name=name)
                self.check(labels, images.shape, self.batch_size, f"{self.name}'s labels")
            checked = True
            yield len(raws), self.feeder.host_batches(raws, self.batch_size, None)
            done += len(raws)
        if done == 0:
            raise ValueError(f"{self.name} yielded no batches")
        if steps is not None and done < steps:
            raise ValueError(
                f"{self.name} ran out after {done} batches; steps={steps} were asked for"
            )


# --------------------------------------------------------------------------------------------
# The feeds of one fit / evaluate call, from its arguments (all checks before any upload)
# --------------------------------------------------------------------------------------------


def array_feeds(feeder, check, x, y, sample_weight, class_weight, batch_size, shuffle,
                steps_per_epoch, validation_split, val):  # fmt: skip
    """Check in-memory training (and validation) arrays; their feeds (uploaded lazily).

    ``check(y, x_shape, batch_size, name)`` checks labels against the model's output; ``val``
    holds ``validation_data``, ``validation_steps`` and ``validation_batch_size``.
    """
    x, y, w = prepare_arrays(x, y, sample_weight, class_weight)
    if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
        raise ValueError(
            f"validation_split must be a fraction in (0, 1) (or 0 for none), got "
            f"{validation_split!r}"
        )
    batch_size = positive_int(32 if batch_size is None else batch_size, "batch_size")
    split = None
    if validation_split > 0:
        if val["validation_data"] is not None:
            raise ValueError("pass validation_split or validation_data, not both")
        from fnn import data as data_lib

        # Keras' rule, split_at = floor(N (1 - f)). Both parts stay in one device copy:
        # training reads rows [0, split_at), validation rows [split_at, N).
        upload = Upload(feeder, x, y, w)
        (x, rows, w), (vx, vrows, vw) = data_lib.validation_split(
            (x, np.arange(len(x)), w), validation_split
        )
        y, vy = (jax.tree.map(lambda v, r=r: v[r], y) for r in (rows, vrows))
        split = (vx, vy, vw)
    else:
        check_validation_args(val, needs="validation_data or validation_split")
    n = len(x)
    n_steps = count_batches(
        n, batch_size, steps_per_epoch, feeder.mesh, examples="training examples",
        steps_name="steps_per_epoch",
    )  # fmt: skip
    check(y, x.shape, batch_size)
    if split is not None:
        val_feed = validation_array_feed(
            feeder, check, split, val, batch_size, upload=upload, start=n
        )
    else:
        upload = Upload(feeder, x, y, w)
        val_feed = validation_feed(feeder, check, val, batch_size)
    feed = ArrayFeed(upload, n, batch_size, n_steps, shuffle=shuffle)
    return feed, val_feed


def stream_feeds(feeder, check, x, batch_size, shuffle, class_weight, steps_per_epoch, reader,
                 val, *, seed: int, resume=None):  # fmt: skip
    """Build (or take) the training stream, read its first batch, check it; the feeds.

    ``resume`` is a saved stream position (`fnn.checkpoints`), applied when the iterator can.
    Returns ``(feed, val_feed, iterator)``; the iterator's position is what checkpoints save.
    """
    from fnn import data as data_lib

    if is_ready_loader(x):  # an fnn.data.Loader or any iterable: already configured
        try:
            check_streaming_args(**reader)
        except ValueError as e:
            raise ValueError(
                "max_queue_size, workers and use_multiprocessing configure the loader fit "
                "builds from a data source; x is already an iterable of batches, so set them "
                "where it was built (fnn.data.loader(..., workers=...))"
            ) from e
        own = getattr(x, "batch_size", None)
        if batch_size is not None and own is not None and batch_size != own:
            raise ValueError(f"batch_size={batch_size} differs from x's batch size {own}")
        batch_size = positive_int(own or batch_size or 32, "batch_size")
        loader = x
    else:  # a data source (name, folder, random-access source): stream it with Grain
        batch_size = positive_int(32 if batch_size is None else batch_size, "batch_size")
        loader = data_lib.loader(x, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 num_epochs=None, **reader)  # fmt: skip
    parallel.check_batch_size(batch_size, feeder.mesh)
    if steps_per_epoch is None:
        try:
            n_steps = len(loader)
        except TypeError:
            raise ValueError(
                "steps_per_epoch is required when x is an iterable without a length"
            ) from None
    else:
        n_steps = positive_int(steps_per_epoch, "steps_per_epoch")
    iterator = iter(loader)
    if resume is not None and hasattr(iterator, "set_state"):
        iterator.set_state(resume)  # continue where the checkpoint left off
    first = next_batch(iterator)
    images, labels = host_batch(first, batch_size, name="the first batch")
    check(labels, images.shape, batch_size, name="the stream's labels")
    check_validation_args(val, needs="validation_data")
    val_feed = validation_feed(feeder, check, val, batch_size)
    feed = StreamFeed(feeder, loader, batch_size, n_steps, iterator=iterator,
                              first=first, class_weight=class_weight)  # fmt: skip
    return feed, val_feed, iterator


def check_validation_args(val, *, needs: str) -> None:
    if val["validation_data"] is None:
        for arg in ("validation_steps", "validation_batch_size"):
            if val[arg] is not None:
                raise ValueError(f"{arg}={val[arg]!r} needs {needs}")


def validation_feed(feeder, check, val, batch_size):
    """The feed for ``validation_data`` (arrays or a stream), or ``None``."""
    data, vbs = val["validation_data"], val["validation_batch_size"]
    if data is None:
        return None
    if is_streaming_input(data):
        vbs = positive_int(vbs or batch_size, "validation_batch_size")
        parallel.check_batch_size(vbs, feeder.mesh, name="validation_batch_size")
        loader = feeder.stream_loader(data, vbs, name="validation_data")
        n_steps = positive_int(val["validation_steps"], "validation_steps", allow_none=True)
        return StreamFeed(feeder, loader, vbs, n_steps,
                                  check=check, name="validation_data")  # fmt: skip
    return validation_array_feed(feeder, check, validation_tuple(data), val, batch_size)


def validation_array_feed(feeder, check, arrays, val, batch_size, *, upload=None, start=0):
    """Validation arrays ``(x, y, w)``: check batch size, steps and labels; their feed."""
    vx, vy, vw = arrays
    vbs = val["validation_batch_size"]
    size = positive_int(batch_size if vbs is None else vbs, "validation_batch_size")
    size = min(size, len(vx)) if vbs is None else size
    n_steps = count_batches(
        len(vx), size, val["validation_steps"], feeder.mesh, examples="validation examples",
        batch_name="validation_batch_size", steps_name="validation_steps",
        label="validation ",
    )  # fmt: skip
    check(vy, vx.shape, size, name="validation y")
    upload = upload or Upload(feeder, vx, vy, vw)
    return ArrayFeed(upload, len(vx), size, n_steps, start=start)
