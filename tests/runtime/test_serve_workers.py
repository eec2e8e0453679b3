"""Many service workers: two ``interleaf serve`` processes on one Redis share the job queue (one consumer
group); SIGKILL the one running a job and the other takes the job over (XAUTOCLAIM once the entry has
gone untouched for ``--reclaim-after``), keeps the finished episodes, runs the rest: 0 lost, 0
duplicated. Real processes, a real redis-server, the sim engine, HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest

from interleaf.runtime.child_process import free_port
from interleaf.runtime.jobs.redis_server import RedisServer
from tests.conftest import stop_process
from tests.runtime.serve_plain_agent import descendants, end_all, launch_serve
from tests.waiting import wait_healthy, wait_until

pytestmark = pytest.mark.slow

N = 24


def job(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/v1/jobs/{job_id}").json()


def events(url: str, job_id: str) -> list[dict]:
    return httpx.get(f"{url}/v1/jobs/{job_id}/events", params={"count": 10_000}).json()["events"]


def test_a_killed_serves_job_is_taken_over_by_the_other(sim_engine_no_sessions: str, tmp_path: Path) -> None:
    env = {**os.environ, "INTERLEAF_RUNS_DIR": str(tmp_path)}
    host = socket.gethostname()
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    names = [f"serve@{host}:{p}" for p in ports]
    with RedisServer() as redis:
        common = ("--redis-url", redis.url, "--backend", sim_engine_no_sessions, "--reclaim-after", "3")
        procs = [launch_serve(p, *common, env=env) for p in ports]  # both start at once: Ray takes a while
        started = []
        try:
            for proc, url in zip(procs, urls, strict=True):
                wait_healthy(proc, url)
                started += descendants(proc)
            # Each process sees both workers (their beats in Redis), whichever it asks.
            wait_until(
                lambda: sorted(w["consumer"] for w in httpx.get(f"{urls[1]}/v1/workers").json()),
                until=lambda seen: seen == sorted(names),
                message="both workers listed by /v1/workers",
            )
            assert httpx.get(f"{urls[0]}/healthz").json()["workers"] == 2

            spec = {
                "suite": "arith", "n": N, "concurrency": 2, "actors": 1, "agent": "plain", "max_turns": 2,
                "max_new_tokens": 16, "job_id": "many-workers",
            }  # fmt: skip
            assert httpx.post(f"{urls[0]}/v1/jobs", json=spec).status_code == 201
            running = wait_until(
                lambda: job(urls[0], "many-workers"),
                until=lambda r: r["n_done"] >= 4,
                message="the job to finish 4 episodes",
                timeout_s=120,
                interval_s=0.1,
            )
            assert running["status"] == "running", running  # killed mid-job, not after it
            victim = names.index(running["worker"])
            survivor = 1 - victim
            started += descendants(procs[victim])
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(10)

            # What the killed worker had stored: kept as it is, never run again.
            before = {
                t["episode"]: t["id"] for t in httpx.get(f"{urls[survivor]}/v1/jobs/many-workers/trajectories").json()
            }
            assert len(before) >= 4
            done = wait_until(
                lambda: job(urls[survivor], "many-workers"),
                until=lambda r: r["status"] not in ("queued", "running"),
                message="the job to end on the surviving worker",
                timeout_s=120,
                interval_s=0.3,
            )
            assert done["status"] == "succeeded" and done["worker"] == names[survivor], done
            assert done["n_done"] == N

            trajectories = httpx.get(f"{urls[survivor]}/v1/jobs/many-workers/trajectories").json()
            assert sorted(t["episode"] for t in trajectories) == list(range(N))  # 0 lost, 0 duplicated
            after = {t["episode"]: t["id"] for t in trajectories}
            assert {e: after[e] for e in before} == before  # the finished episodes' records, untouched
            exported = [json.loads(line) for line in Path(done["output_path"]).read_text().splitlines()]
            assert [t["episode"] for t in exported] == list(range(N))

            stream = events(urls[survivor], "many-workers")
            kinds = [e["type"] for e in stream]
            assert kinds.count("job_started") == 1 and kinds.count("job_resumed") == 1, Counter(kinds)
            resumed_at = kinds.index("job_resumed")
            resumed = stream[resumed_at]["data"]
            assert resumed["worker"] == names[survivor] and resumed["n_done"] >= len(before), resumed
            rerun = {e["episode"] for e in stream[resumed_at:] if e["type"] == "episode_started"}
            assert rerun.isdisjoint(before) and rerun, (sorted(rerun), sorted(before))
            finished = Counter(e["episode"] for e in stream if e["type"] == "episode_finished")
            assert max(finished.values()) == 1  # no episode finished twice
            assert kinds[-1] == "job_finished"

            # KV over time: samples from the engine's /metrics (sessions off: nothing held by the job).
            samples = [e["data"]["servers"][sim_engine_no_sessions] for e in stream if e["type"] == "servers_sampled"]
            assert len(samples) >= 2, Counter(kinds)
            assert all(s["kv_used_tokens"] is not None and s["kv_available_tokens"] is not None for s in samples)
            assert any(s["held_tokens"] == 0 and s["max_total_num_tokens"] for s in samples), samples
            # The engine serves no streaming sessions: each runner said so (adaptive retention needs them).
            missing = [e["data"] for e in stream if e["type"] == "capability_missing"]
            assert missing and all("--enable-streaming-session" in m["message"] for m in missing), missing

            # The killed worker's beat expires; the survivor stays listed.
            wait_until(
                lambda: [w["consumer"] for w in httpx.get(f"{urls[survivor]}/v1/workers").json()],
                until=lambda seen: seen == [names[survivor]],
                message="the killed worker to leave /v1/workers",
                timeout_s=30,
            )
        finally:
            for proc in procs:
                if proc.poll() is None:
                    stop_process(proc, 60)
            end_all(started)
