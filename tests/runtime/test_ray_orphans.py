"""After ``kill -9`` of a driver that started a local Ray (as ``interleaf serve`` does), its
``EpisodeWorker`` actors end with it; the raylet's two agents are left without a raylet, and
``orphaned_ray_agents`` finds them (and only them: a live Ray's agents are left alone). Real Ray in
two child processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from interleaf.runtime.jobs.ray_orphans import AGENT_TITLES, orphaned_ray_agents
from tests.runtime.serve_plain_agent import end_all
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DRIVER = """
import json, signal, sys, time
from pathlib import Path
from interleaf.runtime.jobs import ensure_ray
from interleaf.runtime.jobs.workers import worker_actor
import ray

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a clean end: ray.shutdown at exit
ensure_ray(None)
actor = worker_actor(["http://127.0.0.1:9"], name="orphan-check")
Path(sys.argv[1]).write_text(json.dumps({"actor": ray.get(actor.ping.remote())["pid"]}))
time.sleep(600)
"""


def _agents_of(driver: subprocess.Popen) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process(driver.pid).children(recursive=True):
        try:
            if " ".join(proc.cmdline()).strip().startswith(AGENT_TITLES):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_killed_drivers_actors_end_and_its_agents_are_found_orphaned(tmp_path: Path) -> None:
    drivers = {
        name: subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / f"{name}.json")])
        for name in ("killed", "live")
    }
    started: list[psutil.Process] = []
    try:
        info = {
            name: wait_until(
                lambda name=name: (tmp_path / f"{name}.json").exists() and (tmp_path / f"{name}.json").read_text(),
                message=f"the {name} driver's actor to answer",
                timeout_s=180,
                interval_s=0.2,
            )
            for name in drivers
        }
        actor = psutil.Process(json.loads(info["killed"])["actor"])
        agents = wait_until(
            lambda: _agents_of(drivers["killed"]), until=lambda a: len(a) == 2, message="both agents", timeout_s=60
        )
        live_agents = wait_until(
            lambda: _agents_of(drivers["live"]), until=lambda a: len(a) == 2, message="both agents", timeout_s=60
        )
        started = [p for d in drivers.values() for p in psutil.Process(d.pid).children(recursive=True)]

        drivers["killed"].send_signal(signal.SIGKILL)
        drivers["killed"].wait(10)
        wait_until(
            lambda: not actor.is_running() or actor.status() == psutil.STATUS_ZOMBIE,
            message="the killed driver's EpisodeWorker to end with it",
            timeout_s=60,
            interval_s=0.2,
        )
        orphaned = {p.pid for p in orphaned_ray_agents()}
        # Ray keeps the agents ~60 s after their raylet died: while they are there, they are found.
        still_there = {p.pid for p in agents if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}
        assert still_there, "the agents ended at once: see ray_orphans' docstring, Ray may have changed"
        assert still_there <= orphaned
        assert orphaned.isdisjoint(p.pid for p in live_agents)  # a live Ray's agents are not orphans
    finally:
        for driver in drivers.values():
            if driver.poll() is None:
                driver.terminate()
                driver.wait(60)
        end_all(started, timeout_s=10)
