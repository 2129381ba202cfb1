"""oneDNN convolutions for XLA:CPU: optional, built once at first use, with a pure-JAX fallback.

On x86-64 Linux, `fnn.conv`'s CPU branch can run its forward, input-gradient and kernel-gradient
convolutions with oneDNN (Intel's deep-learning kernels, what TensorFlow uses on CPU) as XLA FFI
custom calls (`jax.ffi`): the reference CNN's train step measured 1.4–1.5× faster
(``BENCHMARKS.md``, "oneDNN FFI experiment"). This module finds oneDNN, compiles
``fnn/_onednn/onednn_conv.cc`` once into a per-user cache, loads it and registers its handlers.

What it needs: ``pip install "fnn[onednn]"`` (oneDNN 3.2's library and headers from PyPI, the GNU
OpenMP build) and a C++17 compiler (``$CXX``, else ``g++`` or ``c++`` on ``PATH``). Without them,
or on another CPU or operating system, fnn runs its pure-JAX convolutions, and `status` says why
(a warning is issued once when the extra is installed but the build or load fails).

The library is built at the first convolution traced for a CPU backend (about 20 s, once per
user, source and version): into ``$FNN_ONEDNN_CACHE`` or ``~/.cache/fnn/onednn/<hash>/``, keyed
by a hash of the source, the jaxlib and oneDNN versions and the compiler; written to a temporary
file and renamed into place, under a file lock, never into the source tree.

``FNN_ONEDNN=0`` in the environment forces the pure-JAX path (read at first use). `jax.export`
never sees the custom calls: an exported program lowers to the portable pure-JAX convolutions.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import jax

__all__ = ["available", "status", "SOURCE", "TARGETS"]

#: The C++ source of the FFI handlers (package data).
SOURCE = Path(__file__).resolve().parent / "_onednn" / "onednn_conv.cc"
#: FFI target name per operation: the forward convolution and the kernel gradient.
TARGETS = {"fwd": "fnn_onednn_conv_fwd", "bwd_w": "fnn_onednn_conv_bwd_w"}
_SYMBOLS = {"fwd": "FnnOnednnConvForward", "bwd_w": "FnnOnednnConvBwdWeights"}
_LIBRARY_DIST, _HEADERS_DIST = "onednn-cpu-gomp", "onednn-devel-cpu-gomp"
_INSTALL_HINT = 'pip install "fnn[onednn]"'

_state: dict[str, object] = {}  # "ok": bool, "status": str; filled once by `_load`
_registered: set[str] = set()  # FFI targets registered in this process (never twice)


class _Unavailable(Exception):
    """Why oneDNN cannot be used here (the message becomes `status`)."""


def _check_platform() -> None:
    if os.environ.get("FNN_ONEDNN", "1").strip().lower() in ("0", "false", "no", "off"):
        raise _Unavailable("disabled by FNN_ONEDNN=0")
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64") or not sys.platform.startswith("linux"):
        raise _Unavailable(f"oneDNN path is for x86-64 Linux only ({sys.platform}, {machine})")
    if jax.default_backend() != "cpu":
        raise _Unavailable(f"default backend is {jax.default_backend()}, not cpu")


def _dist_file(dist_name: str, suffix: str) -> tuple[Path, str]:
    """The installed file of ``dist_name`` whose path ends with ``suffix``, and the version."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as e:
        raise _Unavailable(f"oneDNN is not installed ({_INSTALL_HINT})") from e
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(dist.locate_file(f)).resolve()
            if path.exists():
                return path, dist.version
    raise _Unavailable(f"{dist_name} {dist.version} has no {suffix} ({_INSTALL_HINT})")


def _find_onednn() -> tuple[Path, Path, str]:
    """(include dir, library dir, version) of the oneDNN wheels."""
    header, _ = _dist_file(_HEADERS_DIST, "include/oneapi/dnnl/dnnl.hpp")
    library, version = _dist_file(_LIBRARY_DIST, "/libdnnl.so")
    return header.parents[2], library.parent, version


def _compiler() -> str:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and (path := shutil.which(name)):
            return path
    raise _Unavailable("no C++ compiler found ($CXX, g++ or c++ on PATH)")


def _cache_root() -> Path:
    if root := os.environ.get("FNN_ONEDNN_CACHE"):
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fnn" / "onednn"


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock (one builder at a time; the rename keeps others safe anyway)."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build() -> Path:
    """The shared library for this source, jaxlib, oneDNN and compiler: cached or built now."""
    include, libdir, version = _find_onednn()
    cxx = _compiler()
    import jaxlib

    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join([source, *(s.encode() for s in (jaxlib.__version__, version, cxx, str(libdir)))])
    ).hexdigest()[:16]
    folder = _cache_root() / key
    library = folder / "libfnn_onednn_conv.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder / ".lock"):
        if library.exists():  # another process built it while this one waited
            return library
        fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=folder)
        os.close(fd)
        cmd = [
            cxx,
            "-std=c++17",
            "-O2",
            "-fPIC",
            "-shared",
            f"-I{jax.ffi.include_dir()}",
            f"-I{include}",
            str(SOURCE),
            "-o",
            tmp,
            f"-L{libdir}",
            "-ldnnl",
            f"-Wl,-rpath,{libdir}",
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
                raise _Unavailable(f"building {SOURCE.name} failed ({cxx}):\n{tail}")
            os.replace(tmp, library)  # atomic: readers see no file or a whole one
        except (OSError, subprocess.SubprocessError) as e:
            raise _Unavailable(f"building {SOURCE.name} failed ({cxx}): {e}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return library


def _register(library: Path) -> None:
    try:
        lib = ctypes.CDLL(os.fspath(library))
        for kind, target in TARGETS.items():
            if target not in _registered:
                handler = jax.ffi.pycapsule(getattr(lib, _SYMBOLS[kind]))
                jax.ffi.register_ffi_target(target, handler, platform="cpu")
                _registered.add(target)
    except (OSError, AttributeError) as e:
        raise _Unavailable(f"cannot load {library}: {e}") from e
    _state["lib"] = lib


def _load() -> bool:
    """Decide once per process (see the module docstring); warn once if the extra is broken."""
    if "ok" in _state:
        return bool(_state["ok"])
    try:
        _check_platform()
        _find_onednn()  # "not installed" before "no compiler"
        library = _build()
        _register(library)
    except _Unavailable as e:
        _state.update(ok=False, status=f"pure JAX: {e}")
        installed = "not installed" not in str(e) and "FNN_ONEDNN" not in str(e)
        if installed and "x86-64" not in str(e) and "default backend" not in str(e):
            warnings.warn(
                f"fnn: oneDNN convolutions unavailable, using pure-JAX ones: {e}",
                RuntimeWarning,
                stacklevel=3,
            )
        return False
    _state.update(ok=True, status=f"oneDNN ({library})")
    return True


def available() -> bool:
    """Whether `fnn.conv` runs its CPU convolutions with oneDNN (builds the library at first call).

    Examples:
      >>> from fnn import onednn
      >>> isinstance(onednn.available(), bool)
      True
    """
    return _load()


def status() -> str:
    """What `fnn.conv` uses on CPU and why: ``"oneDNN (<library>)"`` or ``"pure JAX: <reason>"``.

    Reasons: ``disabled by FNN_ONEDNN=0``, oneDNN not installed, no C++ compiler, the compiler's
    last lines of a failed build, a library that would not load, not an x86-64 Linux machine.

    Examples:
      >>> from fnn import onednn
      >>> onednn.status().startswith(("oneDNN (", "pure JAX: "))
      True
    """
    _load()
    return str(_state["status"])


def _reset() -> None:
    """Forget the decision (tests): the next use decides again. Registered targets stay."""
    _state.clear()
