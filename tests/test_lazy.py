from __future__ import annotations

import pytest

from appkit.errors import AppkitError, MissingDependencyError
from appkit.lazy import require


def test_require_returns_the_module() -> None:
    import json

    assert require("json", extra="core") is json


def test_a_missing_module_names_the_extra_to_install() -> None:
    with pytest.raises(MissingDependencyError) as err:
        require("llama_cpp_not_installed", extra="chat", package="llama-cpp-python")
    assert "pip install 'appkit[chat]'" in str(err.value)
    assert "llama-cpp-python is needed" in str(err.value)
    assert isinstance(err.value, ImportError) and isinstance(err.value, AppkitError)
