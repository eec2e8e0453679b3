"""Lazy package faces: a package's public names live in its submodules and are imported on first use, so
``import interleaf.runtime`` (or ``interleaf.agents``, ``interleaf.telemetry`` …) stays cheap — no torch,
Ray or LangGraph until a name that needs them is touched.

    _EXPORTS = {"JobSpec": "interleaf.runtime.jobs.spec", ...}
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

It imports nothing of interleaf, so every package may use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: ``exports`` maps each public name to the module
    that defines it; a resolved name is cached in the package so the lookup happens once."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, sorted(exports)


__all__ = ["lazy_exports"]
