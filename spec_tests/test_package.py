"""The package imports lazily and names its submodules."""

import subprocess
import sys

import pytest

import fnn


def test_lazy_import_does_not_pull_heavy_dependencies():
    code = "import sys, fnn; print('tensorflow_datasets' in sys.modules, 'orbax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fnn.nope  # noqa: B018


def test_did_you_mean():
    from fnn._validation import lookup

    with pytest.raises(ValueError, match="Did you mean 'adam'"):
        lookup("optimizer", "adma", {"adam": 1, "sgd": 2})
    with pytest.raises(TypeError, match="optimizer must be a string"):
        lookup("optimizer", 3, {"adam": 1})
    assert lookup("optimizer", "ADAM", {"adam": 1}) == 1
