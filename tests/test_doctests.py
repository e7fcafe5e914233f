"""The examples in the package's docstrings run."""

import doctest
import importlib

import pytest

pytest.importorskip("lxdex._core")


@pytest.mark.parametrize("module", ["lxdex.book", "lxdex.exchange", "lxdex.accounts"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0
