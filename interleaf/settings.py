"""Process-wide settings read from the environment (``INTERLEAF_*``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted models and other derived artefacts live (``INTERLEAF_CACHE_DIR``)."""
    root = os.environ.get("INTERLEAF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "interleaf"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Where job outputs (JSONL trajectories, reports) are written (``INTERLEAF_RUNS_DIR``)."""
    path = Path(os.environ.get("INTERLEAF_RUNS_DIR", "runs"))
    path.mkdir(parents=True, exist_ok=True)
    return path
