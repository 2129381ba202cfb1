"""Writers of PyTorch (legacy, zip) and safetensors files, byte by byte, independent of fnn.

Shared by test_weights.py and the reader fuzzer's child process (weights_fuzz_child.py), which
must not import fnn (that would import JAX): so NumPy, ml_dtypes and the standard library only.
The pickles are the opcodes PyTorch emits for a state dict (protocol 2), spelled out here so that
a test can change any one of them.
"""

import io
import json
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py

STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
}

SAFETENSORS_NAMES = {
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
    np.dtype(ml_dtypes.bfloat16): "BF16",
}


def op_global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def op_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def op_int(i):
    """BININT for a 32-bit int, LONG1 for anything else (negative and huge values included)."""
    if -(2**31) <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    n = (i.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + i.to_bytes(n, "little", signed=True)


def op_tuple(items):
    return b"(" + b"".join(items) + b"t"


def op_ordered_dict():
    return op_global("collections", "OrderedDict") + b")R"


def op_ordered_dict_items(pairs):
    """``OrderedDict()`` then SETITEMS of the (key ops, value ops) pairs, then STOP."""
    return (
        op_global("collections", "OrderedDict") + b")R(" + b"".join(k + v for k, v in pairs) + b"u."
    )


def storage_pid(key, dtype, numel):
    """The persistent id of a storage, BINPERSID included."""
    items = [op_str("storage"), op_global("torch", STORAGE_NAMES[np.dtype(dtype)])]
    return op_tuple(items + [op_str(key), op_str("cpu"), op_int(numel), b"N"]) + b"Q"


def tensor_op(key, flat, offset, size, stride, numel=None):
    """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    numel = flat.size if numel is None else numel
    args = op_tuple(
        [
            storage_pid(key, flat.dtype, numel),
            op_int(offset),
            op_tuple([op_int(s) for s in size]),
            op_tuple([op_int(s) for s in stride]),
            b"\x89",
            op_ordered_dict(),
        ]
    )
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict_pickle(tensors, storages, build=b""):
    """tensors: {name: (storage_key, offset, size, stride)}; storages: {key: flat array}.

    ``build``: opcodes pushing a state, then ``b"b"`` (BUILD) is applied to the OrderedDict, as
    ``state_dict()``'s ``_metadata`` is.
    """
    out = b"\x80\x02" + op_ordered_dict() + b"("
    for name, (key, offset, size, stride) in tensors.items():
        out += op_str(name) + tensor_op(key, storages[key], offset, size, stride)
    return out + b"u" + (build + b"b" if build else b"") + b"."


def legacy_bytes(tensors, storages, main_pickle=None):
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    out = pickle.dumps(LEGACY_MAGIC_NUMBER, 2) + pickle.dumps(1001, 2)
    out += pickle.dumps(sys_info, 2)
    out += main_pickle if main_pickle is not None else state_dict_pickle(tensors, storages)
    keys = sorted(storages)
    out += pickle.dumps(keys, 2)
    for key in keys:
        out += struct.pack("<q", storages[key].size) + storages[key].tobytes()
    return out


def zip_bytes(tensors, storages, main_pickle=None, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        z.writestr("archive/data.pkl", main_pickle or state_dict_pickle(tensors, storages))
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for key, flat in storages.items():
            z.writestr(f"archive/data/{key}", flat.tobytes())
    return buf.getvalue()


WRITERS = {"legacy": legacy_bytes, "zip": zip_bytes}


def safetensors_bytes(arrays=None, header=None, data=None):
    """A safetensors file from ``{name: array}`` (the spec's layout, written here), or from an
    explicit ``header`` dict and ``data`` bytes (to write broken ones)."""
    if header is None:
        header, data, position = {}, b"", 0
        for name, array in arrays.items():
            raw = np.ascontiguousarray(array).tobytes()
            header[name] = {
                "dtype": SAFETENSORS_NAMES[array.dtype],
                "shape": list(array.shape),
                "data_offsets": [position, position + len(raw)],
            }
            data += raw
            position += len(raw)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def zip_set_entry_field(blob, entry, field, value):
    """Rewrites one field of ``entry``'s local and central headers (``"flag_bits"``,
    ``"compress_type"``, ``"file_size"``), as a hand-edited archive would have it."""
    blob = bytearray(blob)
    local = {"flag_bits": (6, "<H"), "compress_type": (8, "<H"), "file_size": (22, "<I")}
    central = {"flag_bits": (8, "<H"), "compress_type": (10, "<H"), "file_size": (24, "<I")}
    name = entry.encode()
    for signature, fields, name_at in ((b"PK\x03\x04", local, 30), (b"PK\x01\x02", central, 46)):
        at = blob.find(signature)
        while at >= 0:
            (name_len,) = struct.unpack_from(
                "<H", blob, at + name_at - (4 if name_at == 30 else 18)
            )
            if bytes(blob[at + name_at : at + name_at + name_len]) == name:
                offset, fmt = fields[field]
                struct.pack_into(fmt, blob, at + offset, value)
            at = blob.find(signature, at + 4)
    return bytes(blob)
