"""Durable jobs: ``interleaf serve``'s private Redis keeps an append-only file in the runs directory, so
after ``kill -9`` and a restart the jobs are listed, the one that was running resumes from its finished
episodes and ends with exactly n trajectories, and a queued one still runs. Real processes, the sim
engine, HTTP on 127.0.0.1. Also: ``interleaf jobs submit --follow`` prints a server's missing
capability as one line on stderr."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from interleaf.runtime.child_process import free_port
from interleaf.runtime.jobs.redis_server import PASSWORD_FILE
from tests.conftest import stop_process
from tests.runtime.serve_plain_agent import REPO, descendants, end_all, launch_serve
from tests.waiting import wait_healthy, wait_until

pytestmark = pytest.mark.slow

N = 24


def record(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/v1/jobs/{job_id}").json()


def ended(url: str, job_id: str) -> dict:
    return wait_until(
        lambda: record(url, job_id),
        until=lambda r: r["status"] not in ("queued", "running"),
        message=f"job {job_id} to end",
        timeout_s=120,
        interval_s=0.3,
    )


def spec(job_id: str, n: int) -> dict:
    return {
        "suite": "arith", "n": n, "concurrency": 2, "actors": 1, "agent": "plain", "max_turns": 2,
        "max_new_tokens": 16, "job_id": job_id,
    }  # fmt: skip


def test_kill_9_and_restart_resumes_the_job_and_runs_the_queued_one(
    sim_engine_no_sessions: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    env = {**os.environ, "INTERLEAF_RUNS_DIR": str(runs)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ("--backend", sim_engine_no_sessions)  # no --redis-url: the private, durable Redis
    serve = launch_serve(port, *args, env=env)
    started = []
    try:
        wait_healthy(serve, url)
        started += descendants(serve)
        redis_dir = runs / ".redis"
        assert stat.S_IMODE((redis_dir / PASSWORD_FILE).stat().st_mode) == 0o600
        assert httpx.post(f"{url}/v1/jobs", json=spec("durable-1", N)).status_code == 201
        assert httpx.post(f"{url}/v1/jobs", json=spec("durable-2", 3)).status_code == 201  # waits its turn
        wait_until(
            lambda: record(url, "durable-1"),
            until=lambda r: r["n_done"] >= 4,
            message="durable-1 to finish 4 episodes",
            timeout_s=120,
            interval_s=0.1,
        )
        before = {t["episode"]: t["id"] for t in httpx.get(f"{url}/v1/jobs/durable-1/trajectories").json()}
        assert 4 <= len(before) < N  # killed mid-job
        started += descendants(serve)
        serve.send_signal(signal.SIGKILL)
        serve.wait(10)

        # At once: the new private Redis waits for the old one to have flushed and exited (its lock).
        serve = launch_serve(port, *args, env=env)
        wait_healthy(serve, url)
        started += descendants(serve)
        listed = {j["id"]: j for j in httpx.get(f"{url}/v1/jobs").json()}
        assert set(listed) == {"durable-1", "durable-2"}, listed

        done = ended(url, "durable-1")
        assert done["status"] == "succeeded" and done["n_done"] == N, done
        trajectories = httpx.get(f"{url}/v1/jobs/durable-1/trajectories").json()
        assert sorted(t["episode"] for t in trajectories) == list(range(N))  # exactly n: 0 lost, 0 duplicated
        after = {t["episode"]: t["id"] for t in trajectories}
        assert {e: after[e] for e in before} == before  # finished before the kill: kept as they were
        exported = [json.loads(line) for line in Path(done["output_path"]).read_text().splitlines()]
        assert [t["episode"] for t in exported] == list(range(N))

        stream = httpx.get(f"{url}/v1/jobs/durable-1/events", params={"count": 10_000}).json()["events"]
        kinds = [e["type"] for e in stream]
        assert kinds.count("job_started") == 1 and kinds.count("job_resumed") == 1, kinds
        resumed_at = kinds.index("job_resumed")
        assert stream[resumed_at]["data"]["n_done"] >= len(before)
        rerun = {e["episode"] for e in stream[resumed_at:] if e["type"] == "episode_started"}
        assert rerun and rerun.isdisjoint(before), (sorted(rerun), sorted(before))

        queued = ended(url, "durable-2")
        assert queued["status"] == "succeeded" and queued["n_done"] == 3, queued

        # A served job surfaces the engine's missing streaming sessions on the submitter's terminal.
        submit = subprocess.run(
            [
                sys.executable, "-m", "tests.runtime.serve_plain_agent", "jobs", "submit", "--server", url,
                "--suite", "arith", "--n", "2", "--agent", "plain", "--max-turns", "1", "--retention", "session",
                "--follow",
            ],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stderr
        warnings = [line for line in submit.stderr.splitlines() if "does not serve streaming sessions" in line]
        assert warnings == [
            f"interleaf jobs submit: warning: {sim_engine_no_sessions} does not serve streaming sessions "
            "(needed by retention "
            "session): start it with --enable-streaming-session; this job runs retention none there"
        ], submit.stderr
    finally:
        if serve.poll() is None:
            stop_process(serve, 60)
        end_all(started)
