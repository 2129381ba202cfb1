"""fnn.runtime: ``import fnn`` keeps freed host memory (so XLA:CPU stops re-faulting its buffers),
runs CPU convolutions on every core, and caches compiled programs.

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

# What the setting is for: a CNN train step's activations and gradients, allocated and freed by
# XLA:CPU on every call. The probe is the gradient of a two-convolution network on a 128-image
# batch (16 MiB buffers); it prints the median call's page faults after warm-up. With glibc's
# defaults every call maps its buffers afresh (≈ 21k faults on jaxlib 0.10 and 0.12 alike);
# with the memory kept, none. (A single 64 MiB buffer, this test's earlier probe, stopped
# faulting under jaxlib 0.12's allocator while train steps still did.)
_PROBE = """
import json, resource, sys
{prelude}
import jax, jax.numpy as jnp
dn = ("NHWC", "HWIO", "NHWC")
def loss(params, x):
    k1, k2, w = params
    y = jax.nn.relu(jax.lax.conv_general_dilated(x, k1, (1, 1), "SAME", dimension_numbers=dn))
    y = jax.nn.relu(jax.lax.conv_general_dilated(y, k2, (1, 1), "SAME", dimension_numbers=dn))
    return jnp.mean((y.reshape(x.shape[0], -1) @ w) ** 2)
params = (jnp.full((3, 3, 3, 32), 0.01), jnp.full((3, 3, 32, 32), 0.01),
          jnp.full((32 * 32 * 32, 10), 1e-3))
x = jnp.ones((128, 32, 32, 3))
f = jax.jit(jax.grad(loss))
for _ in range(3):
    jax.block_until_ready(f(params, x))
per_call = []
for _ in range(7):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(f(params, x))
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
    # ≈ 80 MiB freed and re-allocated per call: ≈ 21k fresh 4 KiB pages with glibc's defaults.
    assert system["faults"] > 4000, system
    # Kept: the buffers are not re-faulted. A quiet machine shows ~0; a loaded CI machine once
    # showed 322 (the runtime's own threads and Python allocations): 5% of the defaults' count
    # separates the two states with a wide margin either way.
    assert kept["faults"] < max(100, system["faults"] // 20), (kept, system)


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


# Which ops of a compiled convolution + matrix product XLA:CPU handed to YNNPACK ("YNN fusions"),
# read from the compiled program's text: the fused computations that YNN fusions call.
_CONV_PROBE = """
import json, os, re, subprocess, sys
{prelude}
flags_before = os.environ.get("XLA_FLAGS", "")
import jax, jax.numpy as jnp
import fnn.runtime
def f(x, k, w):
    dn = ("NHWC", "HWIO", "NHWC")
    y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn)
    return y.reshape(16, -1) @ w
args = jnp.ones((16, 32, 32, 32)), jnp.ones((3, 3, 32, 32)), jnp.ones((32768, 64))
hlo = jax.jit(f).lower(*args).compile().as_text()
bodies = dict(re.findall(r"^(?:ENTRY )?%?([\\w.-]+) [^\\n]*\\{{\\n(.*?)^\\}}", hlo, re.M | re.S))
called = re.findall(r"calls=%?([\\w.-]+)[^\\n]*__ynn_fusion", hlo)
in_ynn = [bodies.get(c, "") for c in called]
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('XLA_FLAGS'))"],
                       capture_output=True, text=True, check=True).stdout.strip()
print(json.dumps({{
    "state": fnn.runtime.CPU_CONVOLUTIONS,
    "flags_before": flags_before,
    "flags": os.environ.get("XLA_FLAGS", ""),
    "child_flags": child,
    "ynn_conv": any("convolution(" in b for b in in_ynn),
    "ynn_dot": any(" dot(" in b for b in in_ynn),
    "one_core_jaxlib": fnn.runtime._jaxlib_version() in fnn.runtime._ONE_CORE_YNN_CONVOLUTIONS,
}}))
"""


def _conv_probe(prelude: str, **env) -> dict:
    return _run(_CONV_PROBE.format(prelude=prelude), **env)


def test_import_fnn_moves_convolutions_off_one_core_ynnpack_kernels():
    ours = _conv_probe("import fnn")
    xla_default = _conv_probe("import fnn", FNN_THREADED_CONVOLUTIONS="0")
    assert xla_default["state"] == "disabled" and xla_default["flags"] == ""
    assert xla_default["ynn_conv"] and xla_default["ynn_dot"], xla_default  # XLA's default
    if ours["one_core_jaxlib"]:
        assert ours["state"] == "threaded"
        flag = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"
        assert ours["flags_before"] == flag  # set by import fnn, until XLA has read it
        assert ours["flags"] == "" and ours["child_flags"] == "None", ours  # then given back
        assert not ours["ynn_conv"], ours  # Eigen's multi-threaded convolution instead
        assert ours["ynn_dot"], ours  # matrix products stay with YNNPACK
    else:
        assert ours["state"] == "not needed" and ours["flags"] == ""
        assert ours["ynn_conv"], ours


def test_threaded_convolutions_leave_your_xla_flags_and_need_an_unstarted_backend():
    flag = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
    yours = _conv_probe("import fnn", XLA_FLAGS=f"--xla_cpu_enable_fast_math=false {flag}")
    assert yours["state"] == "your XLA_FLAGS"
    assert yours["flags"] == f"--xla_cpu_enable_fast_math=false {flag}"
    assert yours["child_flags"] == yours["flags"]  # the user's own setting is inherited
    assert yours["ynn_conv"] and not yours["ynn_dot"], yours
    late = _conv_probe("import jax; jax.devices(); import fnn")
    assert late["state"] in ("too late", "not needed") and late["flags"] == ""
    assert late["ynn_conv"], late


def test_xla_flags_changed_after_import_are_kept_less_fnns_flag():
    # The program sets a flag of its own after import fnn, before its first computation.
    res = _conv_probe(
        "import fnn, os\n"
        "mine = os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_enable_fast_math=false'\n"
        "os.environ['XLA_FLAGS'] = mine.strip()"
    )
    assert res["flags"] == "--xla_cpu_enable_fast_math=false", res
    assert res["child_flags"] == res["flags"], res
    assert res["ynn_conv"] is not res["one_core_jaxlib"], res  # fnn's flag took effect all the same


def test_compilation_cache_tells_threaded_from_default_convolutions(tmp_path):
    """The flag leaves the environment before anything compiles, so the cache key must get it
    from XLA's parsed options: a program compiled with Eigen convolutions is not served to a
    process that runs YNNPACK's."""
    probe = _CACHE_PROBE.replace(
        "jnp.tanh(x) @ x.T", "jax.lax.conv(x[None, None], x[None, None], (1, 1), 'SAME')"
    )
    cache = str(tmp_path / "cache")
    ours = _run(probe.format(salt=4.5), FNN_COMPILATION_CACHE=cache)
    again = _run(probe.format(salt=4.5), FNN_COMPILATION_CACHE=cache)
    assert ours["hits"] == 0 and again["hits"] >= 1, (ours, again)
    default = _run(
        probe.format(salt=4.5), FNN_COMPILATION_CACHE=cache, FNN_THREADED_CONVOLUTIONS="0"
    )
    import fnn.runtime

    if fnn.runtime._jaxlib_version() in fnn.runtime._ONE_CORE_YNN_CONVOLUTIONS:
        assert default["hits"] == 0, default
    else:
        assert default["hits"] >= 1, default  # no flag, same programs


@pytest.mark.parametrize(
    "jaxlib, libtpu, running, xla_flags, state",
    [
        ((0, 10), False, False, "", "threaded"),
        ((0, 10), True, False, "", "not needed"),  # TPU host: libtpu has its own XLA
        ((0, 12), False, False, "", "not needed"),
        (None, False, False, "", "not needed"),  # jaxlib version unreadable
        ((0, 10), False, True, "", "too late"),
        ((0, 10), False, False, "--xla_cpu_experimental_ynn_fusion_type=", "your XLA_FLAGS"),
    ],
)
def test_threaded_convolutions_decision(monkeypatch, jaxlib, libtpu, running, xla_flags, state):
    from fnn import runtime

    monkeypatch.setattr(runtime, "CPU_CONVOLUTIONS", "not set")
    monkeypatch.setattr(runtime, "_jaxlib_version", lambda: jaxlib)
    monkeypatch.setattr(runtime, "_has_libtpu", lambda: libtpu)
    monkeypatch.setattr(runtime, "_jax_backend_running", lambda: running)
    monkeypatch.setenv("XLA_FLAGS", xla_flags)
    assert runtime.use_threaded_convolutions() is (state == "threaded")
    assert runtime.CPU_CONVOLUTIONS == state
    expected = (
        "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"
        if state == "threaded"
        else xla_flags
    )
    assert os.environ["XLA_FLAGS"] == expected
