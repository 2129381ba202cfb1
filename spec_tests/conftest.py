"""Shared test configuration: hypothesis profiles and float64 for the oracles.

Profiles: `dev` (default, quick), `ci` (more examples, still within CI's budget). jit compilation
breaks hypothesis deadlines, so both use `deadline=None`.
"""

import os

# Several tests need 8 host devices (data parallelism); set before JAX initialises its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# No persistent compilation cache in the tests (the tests of the cache itself start their own
# processes): they neither read programs other runs compiled into ~/.cache/fnn/jax (on a
# long-used machine tens of thousands of entries; jitted functions then once showed empty
# dispatch caches, `_cache_size() == 0`, in full runs only) nor spend time writing every program.
os.environ.setdefault("FNN_COMPILATION_CACHE", "0")

from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("dev", max_examples=15, **_common)
settings.register_profile("ci", max_examples=40, print_blob=True, derandomize=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# A script the weights fuzzer runs in a child process (it reads sys.argv): not a test module, and
# not one for --doctest-modules either.
collect_ignore = ["weights_fuzz_child.py"]


def pytest_addoption(parser):
    parser.addoption(
        "--run-heavy",
        action="store_true",
        help="also run the `heavy` tests (abstract traces of the deepest zoo networks: minutes)",
    )


def pytest_collection_modifyitems(config, items):
    """`heavy` tests are opt-in (``pytest --run-heavy``, ``nox -s tests -- -n 2 --run-heavy``):
    they re-check code the quick variants already cover, on the deepest networks, and would
    take CI past its time budget; they are reported as skipped with this reason."""
    if config.getoption("--run-heavy"):
        return
    import pytest

    skip = pytest.mark.skip(reason="heavy: run with --run-heavy")
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)
