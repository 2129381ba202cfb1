"""fnn.runtime: ``import fnn`` keeps freed host memory, so XLA:CPU stops re-faulting its buffers.

Each case runs in a fresh Python process (the setting must precede JAX's backend start, and the
test session's own process has long started it).
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="mallopt tuning is for Linux/glibc"
)

# A jitted call whose 64 MiB intermediate (the first dot's result, which the second dot reads, so
# no fusion removes it) is freed at the end of every call; prints the median call's page faults
# after warm-up (JAX 0.12 on Python 3.12 still faults on some calls, see fnn.runtime).
_PROBE = """
import json, resource, sys
{prelude}
import jax, jax.numpy as jnp
x = jnp.ones((16384, 64)); w = jnp.ones((64, 1024)) / 64; w2 = jnp.ones((1024, 8))
f = jax.jit(lambda x, w: jnp.sum(jnp.dot(jnp.tanh(jnp.dot(x, w)), w2), axis=0))
for _ in range(3):
    f(x, w).block_until_ready()
per_call = []
for _ in range(7):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x, w).block_until_ready()
    per_call.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
faults = sorted(per_call)[3]  # the median call
import fnn.runtime
print(json.dumps({{"faults": faults, "state": fnn.runtime.HOST_MEMORY}}))
"""


def _run(script: str, **env) -> dict:
    """Run ``script`` in a fresh Python without the caller's fnn/JAX settings; its last line."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("FNN_", "JAX_COMP", "XLA_FLAGS"))
    }
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _probe(prelude: str, **env) -> dict:
    return _run(_PROBE.format(prelude=prelude), **env)


def test_import_fnn_keeps_host_memory_and_stops_the_faults():
    kept = _probe("import fnn")
    system = _probe("import fnn", FNN_REUSE_HOST_MEMORY="0")
    assert kept["state"] == "kept"
    assert system["state"] == "disabled"
    # 64 MiB freed and re-allocated per call: ~16k fresh 4 KiB pages with glibc's defaults.
    assert system["faults"] > 4000, system
    assert kept["faults"] < 100, kept


def test_too_late_once_the_backend_runs():
    late = _probe("import jax; jax.devices(); import fnn")
    assert late["state"] == "too late"


def test_switching_back_to_glibc_defaults():
    res = _probe("import fnn, fnn.runtime; assert fnn.runtime.reuse_host_memory(False)")
    assert res["state"] == "system"
    assert res["faults"] > 4000, res


_CACHE_PROBE = """
import json, fnn, jax, jax.numpy as jnp
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None
)
f = jax.jit(lambda x: jnp.tanh(x) @ x.T + {salt})
f(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({{"dir": jax.config.jax_compilation_cache_dir, "hits": len(hits)}}))
"""


def _cache_probe(salt: float, **env) -> dict:
    return _run(_CACHE_PROBE.format(salt=salt), **env)


def test_second_run_reads_compiled_programs_from_the_cache(tmp_path):
    cache = str(tmp_path / "cache")
    first = _cache_probe(1.5, FNN_COMPILATION_CACHE=cache)
    second = _cache_probe(1.5, FNN_COMPILATION_CACHE=cache)
    other = _cache_probe(2.5, FNN_COMPILATION_CACHE=cache)  # a different program: compiled anew
    assert first["dir"] == second["dir"] == cache
    assert first["hits"] == 0 and second["hits"] >= 1, (first, second)
    assert other["hits"] < second["hits"]
    assert any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_cache_opt_out_and_user_setting_win(tmp_path):
    assert _cache_probe(3.5, FNN_COMPILATION_CACHE="0")["dir"] is None
    mine = str(tmp_path / "mine")
    res = _cache_probe(3.5, JAX_COMPILATION_CACHE_DIR=mine)
    assert res["dir"] == mine
