"""Every module imports on its own, first, in a fresh interpreter — so an import cycle cannot hide behind
the order in which other code happens to import things — and every name in every package's ``__all__``
resolves (the lazy ``__getattr__`` faces included)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _packages() -> list[str]:
    """The top-level folders mapped into ``interleaf.*`` (pyproject's package-dir)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return sorted(mapping)


def test_pyproject_lists_every_package() -> None:
    """A non-editable install (wheel, container image) ships only the packages pyproject lists."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *relative.parts]))
    assert on_disk - set(setuptools["packages"]) == set(), "add these to [tool.setuptools] packages"


def _all_modules() -> list[str]:
    """Every module and package of the distribution, found on disk through each mapped folder."""
    names: set[str] = set()
    for package in _packages():
        names.add(package)
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, prefix=f"{package}."):
            names.add(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


def _import_alone(code: str) -> tuple[str, int, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    return code, proc.returncode, proc.stderr[-2000:]


def _run_all(snippets: list[str]) -> list[tuple[str, int, str]]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return [r for r in pool.map(_import_alone, snippets) if r[1] != 0]


def test_module_list_covers_the_subsystems() -> None:
    modules = _all_modules()
    for expected in (
        "interleaf.cli",
        "interleaf.runtime.engine.scheduler",
        "interleaf.runtime.client.episode_model",
        "interleaf.runtime.jobs.runner",
        "interleaf.runtime.service.api",
        "interleaf.agents.graph",
        "interleaf.tools.sandbox",
        "interleaf.telemetry.pte",
        "interleaf.probes.gridworld",
    ):
        assert expected in modules


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    failures = _run_all([f"import {name}" for name in _all_modules()])
    assert not failures, "\n\n".join(f"{code}\n{err}" for code, _, err in failures)


@pytest.mark.slow
def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    snippets = []
    for package in [p for p in _all_modules() if _is_package(p)]:
        snippets.append(
            f"import importlib; m = importlib.import_module({package!r}); "
            "[getattr(m, n) for n in getattr(m, '__all__', [])]"
        )
    snippets.append("from interleaf.runtime import EpisodeModel, Router")
    failures = _run_all(snippets)
    assert not failures, "\n\n".join(f"{code}\n{err}" for code, _, err in failures)


def _is_package(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.submodule_search_locations is not None


@pytest.mark.skipif(not shutil.which("lint-imports"), reason="import-linter is a dev extra: pip install -e '.[dev]'")
def test_architecture_contracts_hold() -> None:
    """The contracts in .importlinter (docs/architecture.md, "Dependency rules") are kept."""
    proc = subprocess.run([str(ROOT / "scripts" / "lint-imports.sh")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout
