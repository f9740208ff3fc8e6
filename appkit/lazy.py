"""Lazy imports of optional heavy dependencies, with a message that says what to install.

``import appkit`` must stay light (no torch, llama_cpp, chromadb or streamlit), so every heavy module
is imported through :func:`require` inside the function that needs it.

Example:
    >>> from appkit.lazy import require
    >>> json = require("json", extra="core")
    >>> json.dumps([1])
    '[1]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from appkit.errors import MissingDependencyError


def require(module: str, *, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise an error naming the pip extra that provides it.

    Args:
        module: dotted module name, e.g. ``"llama_cpp"``.
        extra: the appkit extra that installs it, e.g. ``"chat"``.
        package: the PyPI name when it differs from the module name.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: when the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".")[0].replace("_", "-")
        raise MissingDependencyError(
            f"{name} is needed for this and is not installed ({exc}). "
            f"Install it with: pip install 'appkit[{extra}]'"
        ) from exc
