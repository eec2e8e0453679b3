"""Ray's per-node agents that a killed driver leaves behind, and reaping them.

A local Ray (``ensure_ray`` without an address) is the driver's: after ``kill -9`` of ``interleaf
serve`` (or ``interleaf run``) its GCS, raylet and ``EpisodeWorker`` actors end with it, but the
raylet's two agents, ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent``, live on for about a minute:
they notice the raylet's death at once, then try to report it to the GCS, which is gone too, and Ray
waits 60 s for that call (``publish_error_to_driver``'s fixed timeout, Ray 2.60). Each holds ~100 MB,
so a serve restarted several times a minute accumulated them. An agent whose raylet is gone has
nothing left to serve; ``ensure_ray`` reaps such agents before it starts a local Ray.
"""

from __future__ import annotations

import contextlib
import os

import psutil

AGENT_TITLES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
"""Process titles of the raylet's agents (Ray sets them with ``setproctitle``)."""


def _title(proc: psutil.Process) -> str:
    cmdline = proc.cmdline()
    return " ".join(cmdline).strip() if cmdline else ""


def orphaned_ray_agents() -> list[psutil.Process]:
    """This user's Ray agents whose parent is no raylet (their raylet died and they were re-parented)."""
    uid = os.getuid()
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):  # gone meanwhile, or not ours to read
            if proc.uids().real != uid or not _title(proc).startswith(AGENT_TITLES):
                continue
            parent = proc.parent()
            if parent is None or parent.name() != "raylet":
                found.append(proc)
    return found


def reap_orphaned_ray_agents(timeout_s: float = 5.0) -> list[int]:
    """SIGKILL the orphaned agents (SIGTERM would wait on the same dead GCS) and wait for them; returns
    their pids."""
    agents = orphaned_ray_agents()
    for proc in agents:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(agents, timeout=timeout_s)
    return [p.pid for p in agents]


__all__ = ["AGENT_TITLES", "orphaned_ray_agents", "reap_orphaned_ray_agents"]
