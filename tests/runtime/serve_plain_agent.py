"""The ``interleaf`` CLI with an unconstrained agent registered as ``plain``, for served jobs on the sim
engine: the sim executor has no constrained decoding, which the default ``tir`` agent needs. Jobs are
validated and their agent resolved in the serving process, so the agent is registered there:

    python -m tests.runtime.serve_plain_agent serve --port 8080 --backend http://127.0.0.1:30000
    python -m tests.runtime.serve_plain_agent jobs submit --agent plain ... --follow
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil

from interleaf.agents import Agent, register_agent
from interleaf.cli import main

REPO = Path(__file__).resolve().parents[2]


def plain_agent() -> Agent:
    """No grammar; a turn without an action is nudged on until the turn budget."""
    return Agent(name="plain", grammar=None, on_no_action="nudge")


register_agent("plain", plain_agent)


def launch_serve(port: int, *args: str, env: Mapping[str, str]) -> subprocess.Popen:
    """Start ``interleaf serve --port port *args`` with the ``plain`` agent (not waiting for it)."""
    command = [sys.executable, "-m", "tests.runtime.serve_plain_agent", "serve", "--port", str(port), *args]
    return subprocess.Popen(command, cwd=REPO, env=dict(env))


def descendants(proc: subprocess.Popen) -> list[psutil.Process]:
    """Every process ``proc`` started (Ray, Redis, the engine), for cleaning up after a SIGKILL."""
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def end_all(procs: list[psutil.Process], timeout_s: float = 5.0) -> None:
    """Wait for ``procs`` to exit; kill what is left: a SIGKILLed serve's Redis, engine, raylet and
    actors die with it, but Ray's dashboard and runtime-env agents linger for minutes."""
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


if __name__ == "__main__":
    main()
