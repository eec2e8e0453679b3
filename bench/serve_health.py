"""How responsive ``interleaf serve`` stays while its worker takes on a large job, and how fast a job
that cannot run is marked failed.

    python bench/serve_health.py                  # n = 100,000 (the default JobLimits maximum)
    python bench/serve_health.py --n 20000

Starts a private redis-server and ``interleaf serve`` (with its worker; backends point at a closed
port, so episodes fail fast and nothing but preparation is measured), submits one job of ``--n``
arith tasks, and polls ``/healthz`` every 20 ms from the submit until the job has started running
(the worker's first job also starts local Ray), then cancels it. Prints the latency percentiles and
the maximum of those polls, and the time from submit to ``failed`` for a job whose suite file
vanished after the submit. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from interleaf.runtime.child_process import free_port
from interleaf.runtime.jobs.redis_server import RedisServer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    port = free_port()
    runs = tempfile.mkdtemp(prefix="interleaf-bench-runs-")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "INTERLEAF_RUNS_DIR": runs, "INTERLEAF_FILE_SUITES": "1"}
    with RedisServer() as redis:
        cmd = [shutil.which("interleaf") or "interleaf", "serve", "--port", str(port), "--redis-url", redis.url,
               "--backend", "http://127.0.0.1:9"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.2)
                spec = {"suite": "arith", "n": args.n, "actors": 1, "concurrency": 1, "job_id": "bench-big"}
                t0 = time.perf_counter()
                assert client.post("/v1/jobs", json=spec).status_code == 201
                latencies, codes = [], set()
                while True:
                    t = time.perf_counter()
                    r = client.get("/healthz")
                    latencies.append(time.perf_counter() - t)
                    codes.add(r.status_code)
                    # "running" is set once every actor has built the job (suite, agent).
                    if client.get("/v1/jobs/bench-big").json()["status"] != "queued":
                        break
                    time.sleep(0.02)
                prepared_s = time.perf_counter() - t0
                client.post("/v1/jobs/bench-big/cancel", json={})
                while client.get("/v1/jobs/bench-big").json()["status"] in ("queued", "running"):
                    time.sleep(0.2)
                idle = []
                for _ in range(200):  # the same polls with the worker idle: this machine's baseline
                    t = time.perf_counter()
                    client.get("/healthz")
                    idle.append((time.perf_counter() - t) * 1000)
                    time.sleep(0.02)
                idle.sort()
                ms = sorted(x * 1000 for x in latencies)
                print(
                    json.dumps(
                        {
                            "n": args.n,
                            "submit_to_started_s": round(prepared_s, 2),
                            "healthz_polls": len(ms),
                            "healthz_codes": sorted(codes),
                            "healthz_ms_p50": round(statistics.median(ms), 1),
                            "healthz_ms_p99": round(ms[int(0.99 * (len(ms) - 1))], 1),
                            "healthz_ms_max": round(ms[-1], 1),
                            "idle_healthz_ms_p99": round(idle[int(0.99 * (len(idle) - 1))], 1),
                            "idle_healthz_ms_max": round(idle[-1], 1),
                        }
                    )
                )
                # A job that fails inside the worker: its suite file is gone by the time it runs.
                tasks = Path(runs) / "tasks.jsonl"
                tasks.write_text('{"question": "1+1?", "answer": "2"}\n')
                spec = {"suite": str(tasks), "n": 1, "actors": 1, "concurrency": 1, "job_id": "bench-gone"}
                assert client.post("/v1/jobs", json=spec).status_code == 201
                t0 = time.perf_counter()
                tasks.unlink()
                while (record := client.get("/v1/jobs/bench-gone").json())["status"] in ("queued", "running"):
                    time.sleep(0.02)
                print(json.dumps({"failing_job_status": record["status"], "submit_to_failed_s":
                                  round(time.perf_counter() - t0, 2), "error": record["error"]}))  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(60)
            shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
