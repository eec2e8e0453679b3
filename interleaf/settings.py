"""Process-wide settings read from the environment (``INTERLEAF_*``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
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


# JobLimits fields and the variables that set them (interleaf.runtime.jobs.spec.JobLimits.from_env).
_JOB_LIMIT_VARS = {
    "n": "INTERLEAF_MAX_N",
    "actors": "INTERLEAF_MAX_ACTORS",
    "concurrency": "INTERLEAF_MAX_CONCURRENCY",
    "max_turns": "INTERLEAF_MAX_TURNS",
    "max_new_tokens": "INTERLEAF_MAX_NEW_TOKENS",
    "allowed_backends": "INTERLEAF_ALLOWED_BACKENDS",
    "file_suites": "INTERLEAF_FILE_SUITES",
}


def job_limit_overrides(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job limits set in the environment, as ``{JobLimits field: raw value}`` (unset ones left out)."""
    env = os.environ if environ is None else environ
    return {field: env[var] for field, var in _JOB_LIMIT_VARS.items() if env.get(var, "").strip()}


def api_allowed_hosts(environ: Mapping[str, str] | None = None) -> list[str]:
    """Extra ``Host`` names ``interleaf serve`` answers (``INTERLEAF_ALLOWED_HOSTS``, comma separated)."""
    env = os.environ if environ is None else environ
    return [h.strip() for h in env.get("INTERLEAF_ALLOWED_HOSTS", "").split(",") if h.strip()]


def api_max_body_bytes(environ: Mapping[str, str] | None = None) -> int | None:
    """The largest request body ``interleaf serve`` reads (``INTERLEAF_MAX_BODY_BYTES``; unset: its default)."""
    env = os.environ if environ is None else environ
    raw = env.get("INTERLEAF_MAX_BODY_BYTES", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"INTERLEAF_MAX_BODY_BYTES={raw!r} is not a whole number of bytes")
    return int(raw)


def episode_channel(environ: Mapping[str, str] | None = None) -> bool:
    """Whether job runners reach their actors over the episode channel (``INTERLEAF_EPISODE_CHANNEL``:
    ``1`` by default; ``0`` sends episodes as Ray actor calls, for clusters whose nodes are reachable
    only on Ray's ports)."""
    env = os.environ if environ is None else environ
    raw = env.get("INTERLEAF_EPISODE_CHANNEL", "").strip().lower()
    if raw in ("", "1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"INTERLEAF_EPISODE_CHANNEL={raw!r}: use 1 (the episode channel) or 0 (Ray actor calls)")
