"""The weight reader under a fuzzer, in a child process with a capped address space.

weights_fuzz_child.py runs a corpus of hostile files (memo-table and decompression bombs, deep
and exponentially shared structures, 13 TB zero-stride tensors, ...) and hypothesis-mutated
legacy, zip and safetensors files (mutated opcodes, offsets, strides, sizes, zip headers,
truncations) through fnn.weights with ``max_bytes`` = 8 MiB. A child process because a failure
here is a segfault, a hang or an exhausted machine, and because RLIMIT_AS must not cap pytest.
The child loads fnn/weights.py by path: the reader must work with NumPy alone (no JAX).
"""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import settings

from fnn import weights

CHILD = os.path.join(os.path.dirname(__file__), "weights_fuzz_child.py")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's"
)


def test_reader_fuzzer_in_a_memory_capped_child():
    profile = settings()
    examples = 25 * profile.max_examples  # dev: 375, ci: 1000 (about 20 s on one core)
    argv = [sys.executable, CHILD, weights.__file__, str(examples), str(int(profile.derandomize))]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing imports fnn
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"child exited with {done.returncode}:\n{tail}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["heavy_modules"] == [], summary  # no JAX, no fnn package, no torch
    # RLIMIT_AS catches any allocation beyond 384 MiB; the peak resident memory is finer: the
    # whole run stays within a few times the 8 MiB cap (measured: under 1 MiB of growth).
    assert summary["peak_rss_growth_mib"] < 64, summary
    outcomes = summary["outcomes"]
    assert sum(outcomes.values()) == examples + 13 and set(outcomes) <= {
        "loaded",
        "CheckpointError",
        "ForbiddenGlobalError",
    }
    # The mutations reach both outcomes: files that still load, and files that are refused.
    assert outcomes.get("loaded", 0) > examples // 20
    assert outcomes.get("CheckpointError", 0) > examples // 4
    assert done.stdout.count("corpus ok:") == 13
