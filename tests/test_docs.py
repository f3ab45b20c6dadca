"""The Examples in the core's docstrings run as written (the numbers they show are what the code gives)."""

import doctest
import importlib
import pkgutil

import pytest

from napari_dip_l0 import core

MODULES = sorted(m.name for m in pkgutil.iter_modules(core.__path__, core.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see the output)"
