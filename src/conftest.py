"""pytest settings for the docstrings' Examples, which run as doctests (``--doctest-modules``).

This folder holds only the package, so everything collected here is a doctest.
Not part of the package.
"""

import pytest


@pytest.fixture(autouse=True)
def _example_in_a_fresh_folder(tmp_path, monkeypatch):
    # Examples that write files (a JPEG to deblock) write them into a temporary folder.
    monkeypatch.chdir(tmp_path)
    # The suite runs on 2 cores; more torch threads than cores only adds contention.
    import torch

    torch.set_num_threads(2)
