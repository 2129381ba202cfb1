"""Process settings that make JAX training start and run faster: host memory, CPU convolutions,
compilation cache.

Three settings, all applied by ``import fnn`` (each with an opt-out), all process-wide:

* `reuse_host_memory` (``FNN_REUSE_HOST_MEMORY=0`` opts out): keep freed host memory for reuse.
* `use_threaded_convolutions` (``FNN_THREADED_CONVOLUTIONS=0`` opts out): on the jaxlib versions
  whose XLA:CPU runs convolutions on one core (0.10), run them on XLA's multi-threaded kernels.
* `use_compilation_cache` (``FNN_COMPILATION_CACHE=0`` opts out, or ``=/a/path``): JAX's
  persistent compilation cache, so a second run of the same script skips XLA compilation.

**Host memory.**
Why this module exists: XLA:CPU allocates the large temporary buffers of each compiled call (the
activations and gradients of a train step) with the C library's ``malloc`` and frees them when the
call ends. glibc's ``malloc`` hands blocks that large back to the operating system on ``free``
(``mmap``/``munmap``, or by shrinking per-thread heaps), so the next step gets fresh pages that the
kernel must map and zero one 4 KiB page at a time. For the reference CNN of ``DESIGN.md`` (batch
128) that is about 53,700 page faults, 210 MB, per step with JAX 0.10 (27,000 with JAX 0.12): a
fifth to a quarter of the step time on this project's 2-core machine (measured: 1.26× images/s
with JAX 0.10, 1.12× with JAX 0.12 once the memory is kept; see ``BENCHMARKS.md``). PyTorch and
TensorFlow avoid the cost with caching allocators of their own.

`reuse_host_memory` asks glibc to keep freed memory for reuse instead: one malloc arena
(``M_ARENA_MAX=1``, so XLA's worker threads do not get heaps that are unmapped when empty), no
``mmap`` for large blocks (``M_MMAP_MAX=0``) and no trimming of the heap (``M_TRIM_THRESHOLD=-1``,
which mallopt(3) documents as "never"; a 2 GiB threshold still let a train step that alternates
with a forward pass, EfficientNet-Lite0 at 224×224, fault 1.2–2.0 million pages per 6 steps and
run at 8–9 instead of 13–15 images/s). After the first step every buffer comes from pages that
are already mapped. The price: the process keeps its peak host memory instead of returning it
(as PyTorch's and TensorFlow's allocators do too), and its threads share one arena.

It has to run before JAX starts its CPU backend (the threads XLA creates then pick their arena),
so ``import fnn`` calls it, unless the environment variable ``FNN_REUSE_HOST_MEMORY=0`` is set, or
the backend is already running (then it changes nothing and says so in `HOST_MEMORY`). Outside
Linux with glibc it does nothing. The same effect without fnn: start Python with
``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615``
(the largest ``size_t``, which is what mallopt's ``-1`` becomes: never trim).

**CPU convolutions.** XLA:CPU hands convolutions, matrix products and reductions to YNNPACK
library kernels ("YNN fusions"). In jaxlib 0.10 the convolution kernels run on one core: a 3×3,
32→32 convolution of a 128×32×32 batch keeps one of this project's two cores busy (process CPU
time / wall time 1.00) and takes 30 ms, where XLA's own Eigen convolution keeps both busy and
takes 15 ms; the reference CNN's train step spends ≈ 300 of its ≈ 350 ms in such convolutions.
jaxlib 0.11 and 0.12 run them on every core (measured: 0.11.2, 0.12.0). On jaxlib 0.10
`use_threaded_convolutions` therefore sets
``--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce`` in ``XLA_FLAGS``: YNNPACK keeps
the matrix products and reductions (multi-threaded there, and faster than XLA's own), and the
convolutions go to Eigen. Measured: the reference CNN trains ≈ 1.5× faster (``BENCHMARKS.md``).
Like the host-memory setting it must precede the backend start (XLA reads ``XLA_FLAGS`` once, when
JAX starts its backend). It is left alone when ``XLA_FLAGS`` already names the YNN fusions. The
environment is given back as soon as XLA has read it (at the first computation, before anything is
compiled; ``_restore_xla_flags_once_read`` says how), so child processes started after that do
not inherit fnn's flag; a child started between ``import fnn`` and the first computation does
(JAX and TensorFlow 2.21 know the flag). ``FNN_THREADED_CONVOLUTIONS=0`` leaves ``XLA_FLAGS``
alone; the same speed-up without fnn: start Python with
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce``.

**Compilation cache.** A fresh process spends most of its first training step compiling: for the
reference CNN about 6.5 s for the parameter initialisers (JAX compiles a random-number program per
parameter shape) and 2.5 s for the train step, against 0.3 s of tracing and 0.6 s of running
(measured, ``BENCHMARKS.md``). JAX can keep compiled programs on disk
(``jax_compilation_cache_dir``); it is off by default in JAX. fnn turns it on in
``$XDG_CACHE_HOME/fnn/jax`` (``~/.cache/fnn/jax``) for every compilation, however short, unless
the program already configured a cache directory. The second run of the same script then starts
in ≈ 1.8 s instead of ≈ 10 s. Entries are keyed by the program, the JAX/XLA version, the device
and the compiler flags, so a changed script or setting compiles afresh; a few hundred KiB per model.
For the first run, `fnn.models.build` compiles a model's initialisers as one quick program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = [
    "reuse_host_memory",
    "HOST_MEMORY",
    "use_threaded_convolutions",
    "CPU_CONVOLUTIONS",
    "use_compilation_cache",
]

# mallopt(3) parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# glibc's defaults, restored by reuse_host_memory(False).
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_KEEP_TRIM_THRESHOLD = -1  # mallopt(3): -1 turns trimming off
# The XLA flag that lists the YNNPACK fusions, and its value without the convolutions (jaxlib
# 0.10's default is individual dots, individual convolutions and reductions).
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_WITHOUT_CONVOLUTIONS = "individual_dot,reduce"
# jaxlib (major, minor) versions whose YNNPACK convolutions run on one core (measured on 0.10.2;
# 0.11.2 and 0.12.0 use every core; 0.10.0 and 0.10.1 know the flag too).
_ONE_CORE_YNN_CONVOLUTIONS = ((0, 10),)
# XLA options for programs that run once per model (parameter initialisation, the copies a
# TrainState starts from): no LLVM optimisation, since only their compile time matters.
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# Values of the FNN_* environment variables that switch rather than name a path.
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")

#: What `reuse_host_memory` last did: ``"kept"`` (freed memory is reused), ``"system"`` (glibc's
#: defaults), ``"unsupported"`` (not glibc), ``"too late"`` (the JAX backend was already running),
#: ``"disabled"`` (``FNN_REUSE_HOST_MEMORY=0``) or ``"not set"`` (never called).
HOST_MEMORY = "not set"

#: What `use_threaded_convolutions` last did: ``"threaded"`` (``XLA_FLAGS`` now sends
#: convolutions to XLA's multi-threaded kernels), ``"not needed"`` (this jaxlib's library
#: convolutions use every core already, or a TPU host), ``"your XLA_FLAGS"`` (``XLA_FLAGS`` already chooses the
#: YNN fusions; left as is), ``"too late"`` (the JAX backend was already running),
#: ``"disabled"`` (``FNN_THREADED_CONVOLUTIONS=0``) or ``"not set"`` (never called).
CPU_CONVOLUTIONS = "not set"


def _glibc_mallopt():
    """glibc's ``mallopt`` function, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has mallopt as a stub)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def _jax_backend_running() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
    except ImportError:  # a JAX without this private module: assume the worst
        return True
    return bool(xla_bridge.backends_are_initialized())


def reuse_host_memory(enable: bool = True) -> bool:
    """Make glibc keep freed memory for reuse, so XLA:CPU steps stop page-faulting their buffers.

    There is no formula here: a step's cost is its FLOPs plus, by default, one page fault per
    4 KiB of temporary memory it touches (about 1.5 µs each on this project's virtual machine).
    Keeping the memory turns the second term into zero after the first step. Keras on TensorFlow
    and PyTorch keep host memory with their own allocators; Keras on JAX and hand-written Flax +
    Optax run with glibc's defaults and pay the faults (enable it for them with the
    ``GLIBC_TUNABLES`` line in this module's docstring).

    ``import fnn`` calls this already; call it yourself only to switch back (``enable=False``:
    glibc's defaults for memory freed from now on) or after ``FNN_REUSE_HOST_MEMORY=0``.

    Args:
      enable: True to keep freed memory (one arena, no ``mmap``, no trimming); False for glibc's
        defaults.

    Returns:
      True when the setting took effect, False when it could not (not glibc, or, for
      ``enable=True``, the JAX backend already started its threads). `HOST_MEMORY` says which.

    Examples:
      >>> import fnn.runtime
      >>> fnn.runtime.HOST_MEMORY in ("kept", "system", "unsupported", "too late", "disabled")
      True
    """
    global HOST_MEMORY
    mallopt = _glibc_mallopt()
    if mallopt is None:
        HOST_MEMORY = "unsupported"
        return False
    if not enable:
        mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        HOST_MEMORY = "system"
        return True
    if _jax_backend_running():
        HOST_MEMORY = "too late"
        return False
    ok = (
        mallopt(_M_ARENA_MAX, 1) == 1
        and mallopt(_M_MMAP_MAX, 0) == 1
        and mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM_THRESHOLD) == 1
    )
    HOST_MEMORY = "kept" if ok else "system"
    return ok


def _jaxlib_version() -> tuple[int, int] | None:
    try:
        from jaxlib import version

        major, minor = version.__version__.split(".")[:2]
        return int(major), int(minor)
    except (ImportError, ValueError):
        return None


def _has_libtpu() -> bool:
    """Whether ``libtpu`` is installed (a TPU host).

    libtpu parses ``XLA_FLAGS`` with an XLA of its own, which might not know the CPU flag (an
    unknown flag there is fatal), and CPU convolutions matter little on a TPU host.
    """
    import importlib.util

    return importlib.util.find_spec("libtpu") is not None


def use_threaded_convolutions() -> bool:
    """Run XLA:CPU's convolutions on every core where this jaxlib's library kernels use one.

    No formula changes: the same convolution, computed by XLA's multi-threaded Eigen kernels
    instead of jaxlib 0.10's one-core YNNPACK kernels (the module docstring has the
    measurements). Keras on TensorFlow and PyTorch run convolutions on every core with oneDNN;
    Keras on JAX and hand-written Flax + Optax on jaxlib 0.10 use one, unless started with
    ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce``, which is what this
    sets, until XLA has read it (the first computation; then ``XLA_FLAGS`` is as before, so child
    processes do not inherit it). GPUs do not read the flag; on TPU hosts (``libtpu`` installed)
    it is not set.

    ``import fnn`` calls this already unless ``FNN_THREADED_CONVOLUTIONS=0`` is set.

    Returns:
      True when the flag was set; False otherwise, with the reason in `CPU_CONVOLUTIONS`.

    Examples:
      >>> import fnn.runtime
      >>> fnn.runtime.CPU_CONVOLUTIONS in (
      ...     "threaded", "not needed", "your XLA_FLAGS", "too late", "disabled")
      True
    """
    global CPU_CONVOLUTIONS
    flags = os.environ.get("XLA_FLAGS", "")
    if _YNN_FLAG in flags:
        CPU_CONVOLUTIONS = "your XLA_FLAGS"
        return False
    if _jaxlib_version() not in _ONE_CORE_YNN_CONVOLUTIONS or _has_libtpu():
        CPU_CONVOLUTIONS = "not needed"
        return False
    if _jax_backend_running():
        CPU_CONVOLUTIONS = "too late"
        return False
    original = os.environ.get("XLA_FLAGS")
    ours = f"{flags} {_YNN_FLAG}={_YNN_WITHOUT_CONVOLUTIONS}".strip()
    os.environ["XLA_FLAGS"] = ours
    _restore_xla_flags_once_read(original, ours)
    CPU_CONVOLUTIONS = "threaded"
    return True


def _restore_xla_flags_once_read(original: str | None, ours: str) -> None:
    """Give ``XLA_FLAGS`` back its value once XLA has read it, so child processes don't inherit
    fnn's flag.

    XLA reads ``XLA_FLAGS`` once per process, when JAX starts its backend (verified on jaxlib
    0.10.2: a flag removed from the environment right after ``jax.devices()`` still takes
    effect). JAX announces nothing at that moment, but every compilation records `jax.monitoring`
    events, the first of them (tracing) before the backend starts and the next (lowering) after
    it: the first event that finds the backend running restores the variable, before any program
    is compiled, so the compilation cache's keys never contain the flag's text (they contain
    XLA's parsed options, which do include it: tested). A value the program set in between is
    kept, less fnn's flag.
    """
    import jax.monitoring

    done = False

    def restore(*_args, **_kwargs) -> None:
        nonlocal done
        if done or not _jax_backend_running():
            return
        done = True  # stays registered (unregistering inside a callback skips the next one)
        now = os.environ.get("XLA_FLAGS")
        if now == ours:
            if original is None:
                del os.environ["XLA_FLAGS"]
            else:
                os.environ["XLA_FLAGS"] = original
        elif now is not None:
            flag = ours.split()[-1]
            os.environ["XLA_FLAGS"] = " ".join(f for f in now.split() if f != flag)

    jax.monitoring.register_event_listener(restore)
    jax.monitoring.register_event_duration_secs_listener(restore)


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fnn", "jax")


def use_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache, so later runs skip XLA compilation.

    Sets ``jax_compilation_cache_dir`` and caches every compilation (JAX's defaults skip programs
    that compiled in under 1 s, which is most of a model's initialisers). Keras, Flax and PyTorch
    eager keep no compiled programs between runs; ``torch.compile`` keeps its kernels on disk the
    same way. ``import fnn`` calls this already unless ``FNN_COMPILATION_CACHE=0`` is set or a
    cache directory is already configured.

    Args:
      path: the cache directory; default ``$FNN_COMPILATION_CACHE`` when that is a path, else
        ``$XDG_CACHE_HOME/fnn/jax`` (``~/.cache/fnn/jax``).

    Returns:
      The directory in use, or None when the cache is off (``path`` not creatable).

    Examples:
      >>> import fnn.runtime, jax
      >>> fnn.runtime.use_compilation_cache() == jax.config.jax_compilation_cache_dir
      True
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if path is None:
        env = os.environ.get("FNN_COMPILATION_CACHE", "").strip()
        path = None if env.lower() in ("", *_ON, *_OFF) else env  # a switch, not a path
    path = os.fspath(path) if path is not None else _default_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()  # JAX reads the directory once, at its first compilation
    return path


def _off(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() in _OFF


def _on_import() -> None:
    """``import fnn``'s call: keep host memory, thread convolutions, cache compilations."""
    global HOST_MEMORY, CPU_CONVOLUTIONS
    if _off("FNN_REUSE_HOST_MEMORY"):
        HOST_MEMORY = "disabled"
    else:
        reuse_host_memory(True)
    if _off("FNN_THREADED_CONVOLUTIONS"):
        CPU_CONVOLUTIONS = "disabled"
    else:
        use_threaded_convolutions()
    if not _off("FNN_COMPILATION_CACHE"):
        import jax

        if jax.config.jax_compilation_cache_dir is None:
            use_compilation_cache()
