"""The reader fuzzer's child process (run by test_weights_fuzz.py; pytest does not collect it).

    python weights_fuzz_child.py <path of fnn/weights.py> <examples> <derandomize 0|1>

Loads fnn/weights.py by path (``import fnn`` would import JAX; the reader must need only NumPy),
caps the address space with RLIMIT_AS, then feeds the reader a corpus of hostile files that
crash, hang or exhaust memory in a naive reader, and hypothesis-mutated legacy, zip and
safetensors files. Asserts, for every file: only fnn's own exceptions (with no MemoryError
behind them), results within ``max_bytes``, and an unaffected benign load right after. Prints a
JSON summary on its last line.
"""

import collections
import importlib.util
import inspect
import json
import os
import pickletools
import resource
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch_files as tf  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

CAP = 8 * 2**20  # max_bytes for every fuzzed load
HEADROOM = 384 * 2**20  # address space allowed above the start: far below any bomb's size


def _load_module(path):
    spec = importlib.util.spec_from_file_location("fnn_weights_under_fuzz", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


weights = _load_module(sys.argv[1])
EXAMPLES, DERANDOMIZE = int(sys.argv[2]), sys.argv[3] == "1"
stats = collections.Counter()

# ------------------------------------------------------------------------------------------------
# The benign files, loaded after every hostile one.

BENIGN_STORAGES = {"0": np.arange(6, dtype=np.float32), "1": np.array([3], np.int64)}
BENIGN_TENSORS = {"w": ("0", 1, (2, 2), (1, 2)), "n": ("1", 0, (), ())}
BENIGN_EXPECTED = {"w": np.array([[1.0, 3.0], [2.0, 4.0]], np.float32), "n": np.array(3)}
BENIGN = [
    tf.legacy_bytes(BENIGN_TENSORS, BENIGN_STORAGES),
    tf.zip_bytes(BENIGN_TENSORS, BENIGN_STORAGES),
    tf.safetensors_bytes(BENIGN_EXPECTED),
]


def check_benign():
    for blob in BENIGN:
        got = weights.load(blob)
        assert sorted(got) == ["n", "w"], got
        for key, want in BENIGN_EXPECTED.items():
            assert got[key].dtype == want.dtype and np.array_equal(got[key], want), (key, got)


def _arrays(obj, depth=0):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict | list | tuple) and depth < 200:
        for value in obj.values() if isinstance(obj, dict) else obj:
            yield from _arrays(value, depth + 1)


def check(blob, reader="load"):
    """One hostile load: fnn's exceptions only, nothing beyond the cap, no lasting effect."""
    try:
        read = getattr(weights, reader)
        # (without max_bytes only to sabotage-check the fuzzer against a reader that lacks it)
        capped = "max_bytes" in inspect.signature(read).parameters
        result = read(blob, max_bytes=CAP) if capped else read(blob)
    except weights.CheckpointError as error:
        cause, seen = error, 0
        while cause is not None and seen < 50:
            assert not isinstance(cause, MemoryError), f"allocation beyond the cap: {error}"
            cause, seen = cause.__cause__ or cause.__context__, seen + 1
        stats[type(error).__name__] += 1
    else:
        total = sum(a.nbytes for a in _arrays(result))
        assert total <= CAP, f"{total} bytes returned, cap {CAP}"
        stats["loaded"] += 1
    check_benign()


# ------------------------------------------------------------------------------------------------
# Hostile corpus: each of these crashes, hangs or takes gigabytes in a reader without the checks.


def _main(body):
    return tf.legacy_bytes(None, {}, main_pickle=b"\x80\x02" + body)


def _shared_tree(levels):
    """L0 = [], L(k+1) = [Lk, Lk]: 2**levels leaves from 4 bytes per level."""
    out = b"]q\x00"
    for k in range(levels):
        out += b"(h" + bytes([k]) + b"h" + bytes([k]) + b"lq" + bytes([k + 1])
    return out + b"."


zeros = np.zeros(2**22, np.float32)  # 16 MiB, 16 KiB deflated
bomb = tf.zip_bytes({"w": ("0", 0, (2**22,), (1,))}, {"0": zeros}, compression=8)
CORPUS = {
    "memo index 2**27 (2 GB memo table in the C unpickler)": _main(b"K\x01r\xff\xff\xff\x07."),
    "dict keyed by a 10**6-deep tuple (C stack overflow)": _main(
        b")" + b"\x85" * 10**6 + b"}" + b")" + b"\x85" * 10**6 + b"N" + b"s."
    ),
    "frozenset of a 10**6-deep tuple": b"\x80\x04" + b"(" + b")" + b"\x85" * 10**6 + b"\x91.",
    "shared list tree with 2**60 leaves": _main(_shared_tree(60)[:-1] + b"."),
    "zero-stride tensor of 13 TB": tf.zip_bytes(
        {"e": ("0", 0, (2**40, 3), (0, 1))}, {"0": np.ones(3, np.float32)}
    ),
    "deflate bomb (16 MiB from 16 KiB)": bomb,
    "zip entry declaring 4 GB": tf.zip_set_entry_field(
        tf.zip_bytes(BENIGN_TENSORS, BENIGN_STORAGES), "archive/data.pkl", "file_size", 2**32 - 1
    ),
    "legacy storage of 2**61 elements": tf.legacy_bytes(
        None,
        {},
        main_pickle=b"\x80\x02"
        + tf.op_ordered_dict_items(
            [(tf.op_str("w"), tf.tensor_op("0", zeros[:1], 0, (1,), (1,), numel=2**61))]
        ),
    ),
    "safetensors shape of 2**80 elements": tf.safetensors_bytes(
        header={"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}},
        data=bytes(4),
    ),
    "LONG4 of 2**31 - 1 bytes": _main(b"\x8b\xff\xff\xff\x7f."),
    "BINUNICODE8 of 2**63 bytes": b"\x80\x04\x8d" + struct.pack("<Q", 2**63) + b".",
    "FRAME of 2**62 bytes": b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b".",
    "BYTEARRAY8 of 2**31 bytes": b"\x80\x05\x96" + struct.pack("<Q", 2**31) + b".",
}

# ------------------------------------------------------------------------------------------------
# Mutated files

INTERESTING = [0, 1, 2, -1, -2, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, -(2**31)]
INTERESTING += [2**32 - 1, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, -(2**63), 2**64, 2**100]
ints = st.one_of(st.integers(-8, 64), st.sampled_from(INTERESTING))
DTYPES = [np.float32, np.float16, np.int64, np.uint8, np.bool_]
OPCODES = [op.code.encode("latin-1") for op in pickletools.opcodes]


@st.composite
def state_dicts(draw):
    """A valid state dict: {name: (key, offset, size, stride)} and {key: flat storage}."""
    tensors, storages = {}, {}
    for i in range(draw(st.integers(1, 3))):
        size = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        order = draw(st.permutations(range(len(size))))
        stride, step = [0] * len(size), 1
        for axis in reversed(order):
            stride[axis], step = step, step * max(size[axis], 1)
        offset = draw(st.integers(0, 3))
        dtype = draw(st.sampled_from(DTYPES))
        flat = (np.arange(offset + step) % 7).astype(dtype)
        tensors[f"t{i}"], storages[str(i)] = (str(i), offset, size, tuple(stride)), flat
    return tensors, storages


@st.composite
def hostile_geometry(draw):
    """A state dict pickle whose offsets, sizes, strides and storage sizes are drawn freely."""
    pairs, storages = [], {}
    small = st.one_of(st.integers(0, 6), st.sampled_from(INTERESTING))
    for i in range(draw(st.integers(1, 2))):
        flat = np.arange(draw(st.integers(0, 8)), dtype=np.float32)
        rank = draw(st.integers(0, 3))
        size = draw(st.lists(small, min_size=rank, max_size=rank))
        stride_rank = draw(st.sampled_from([rank, rank, rank, rank + 1]))
        stride = draw(st.lists(small, min_size=stride_rank, max_size=stride_rank))
        numel = draw(st.one_of(st.just(flat.size), ints))
        op = tf.tensor_op(str(i), flat, draw(small), size, stride, numel=numel)
        pairs.append((tf.op_str(f"t{i}"), op))
        storages[str(i)] = flat
    return b"\x80\x02" + tf.op_ordered_dict_items(pairs), storages


def mutate_bytes(draw, blob, start=0):
    blob = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "splice", "int"]))
        if not blob:
            break
        at = draw(st.integers(min(start, len(blob) - 1), len(blob) - 1))
        if kind == "set":
            blob[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            blob[at:at] = draw(st.sampled_from(OPCODES)) + draw(st.binary(max_size=9))
        elif kind == "delete":
            del blob[at : at + draw(st.integers(1, 8))]
        elif kind == "splice":
            src = draw(st.integers(0, len(blob) - 1))
            blob[at:at] = blob[src : src + draw(st.integers(1, 32))]
        else:  # an interesting little-endian int over whatever was there
            value = draw(st.sampled_from(INTERESTING)) % 2**64
            width = draw(st.sampled_from([2, 4, 8]))
            blob[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
    return bytes(blob)


@st.composite
def fuzzed_files(draw):
    fmt = draw(st.sampled_from(["legacy", "zip", "deflate", "safetensors"]))
    kinds = ["pickle", "geometry", "geometry", "bytes", "truncate", "zip field", "header"]
    how = draw(st.sampled_from(kinds))
    stats[f"{fmt}/{how}"] += 1
    if fmt == "safetensors":
        tensors, storages = draw(state_dicts())
        arrays = {k: storages[k][: max(1, storages[k].size)] for k in storages}
        blob = tf.safetensors_bytes(arrays)
        if how == "header":
            header = json.loads(blob[8 : 8 + struct.unpack("<Q", blob[:8])[0]])
            name = draw(st.sampled_from(sorted(header)))
            field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "length"]))
            if field == "dtype":
                header[name]["dtype"] = draw(st.sampled_from(["F32", "BF16", "Q7", "", "F8_E4M3"]))
            elif field == "length":
                text = json.dumps(header).encode()
                return struct.pack("<Q", draw(ints) % 2**64) + text + blob[8 + len(text) :], "load"
            else:
                header[name][field] = [draw(ints) for _ in range(draw(st.integers(0, 3)))]
            data = blob[8 + struct.unpack("<Q", blob[:8])[0] :]
            return tf.safetensors_bytes(header=header, data=data), "load_safetensors"
        if how == "truncate":
            return blob[: draw(st.integers(0, len(blob)))], "load"
        return mutate_bytes(draw, blob), draw(st.sampled_from(["load", "load_safetensors"]))
    tensors, storages = draw(state_dicts())
    main = tf.state_dict_pickle(tensors, storages)
    if how == "geometry":
        main, storages = draw(hostile_geometry())
    elif how == "pickle":
        main = mutate_bytes(draw, main, start=2)
    if fmt == "legacy":
        blob = tf.legacy_bytes(None, storages, main_pickle=main)
    else:
        compression = zipfile.ZIP_DEFLATED if fmt == "deflate" else zipfile.ZIP_STORED
        blob = tf.zip_bytes(None, storages, main_pickle=main, compression=compression)
        if how == "zip field":
            entries = ["archive/data.pkl", "archive/byteorder"] + [
                f"archive/data/{k}" for k in storages
            ]
            field = draw(st.sampled_from(["flag_bits", "compress_type", "file_size"]))
            value = draw(ints) % 2 ** (32 if field == "file_size" else 16)
            blob = tf.zip_set_entry_field(blob, draw(st.sampled_from(entries)), field, value)
    if how == "bytes":
        blob = mutate_bytes(draw, blob)
    elif how == "truncate":
        blob = blob[: draw(st.integers(0, len(blob)))]
    return blob, draw(st.sampled_from(["load", "load_torch"]))


@settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(fuzzed_files())
def fuzz(case):
    blob, reader = case
    check(blob, reader)


def _vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


if __name__ == "__main__":
    check_benign()
    limit = _vm_bytes() + HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, blob in CORPUS.items():
        try:
            check(blob)
        except AssertionError as failure:
            raise AssertionError(f"corpus case {name!r}: {failure}") from failure
        print("corpus ok:", name, flush=True)
    fuzz()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "fnn", "torch"))
    summary = {
        "examples": EXAMPLES,
        "outcomes": {k: v for k, v in stats.items() if "/" not in k},
        "kinds": {k: v for k, v in stats.items() if "/" in k},
        "heavy_modules": heavy,
        "rlimit_as_mib": limit // 2**20,
        "peak_rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
    }
    print(json.dumps(summary), flush=True)
