"""The README's Python blocks run as written: each pasted into a fresh, empty folder.

A new user copies a block into a file and runs it; so does this test, one block per child
process (a clean interpreter, the working directory a new temporary folder, JAX on one CPU
device as a user's machine has it). A block that cannot run offline is preceded by the marker

    <!-- readme-test: skip (the reason) -->

and the reason must be given; the test checks that no block is skipped without one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(
    r"(?P<marker><!-- readme-test: skip \((?P<why>[^)]*)\) -->\s*\n)?```python\n(?P<code>.*?)```",
    re.S,
)


def _blocks():
    text = README.read_text(encoding="utf-8")
    out = []
    for i, m in enumerate(_FENCE.finditer(text)):
        line = text[: m.start("code")].count("\n") + 1
        out.append(pytest.param(m.group("code"), m.group("why"), id=f"block{i}-line{line}"))
    return out


BLOCKS = _blocks()


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


def test_every_skip_marker_gives_a_reason():
    for p in BLOCKS:
        code, why = p.values
        assert why is None or why.strip(), f"{p.id}: a skip marker needs a reason"


@pytest.mark.slow
@pytest.mark.parametrize("code, why", BLOCKS)
def test_readme_block_runs_as_pasted(code, why, tmp_path):
    if why is not None:
        pytest.skip(f"marked in the README: {why}")
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as a user
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"the block failed as pasted:\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
