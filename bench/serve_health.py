"""How responsive ``interleaf serve`` stays while its worker takes on a large job, and how fast a job
that cannot run is marked failed.

    python bench/serve_health.py                  # n = 100,000 (the default JobLimits maximum)
    python bench/serve_health.py --n 20000

Starts a private redis-server and ``interleaf serve`` (with its worker; backends point at a closed
port, so episodes fail fast and nothing but preparation is measured), submits one job of ``--n``
arith tasks, and polls ``/healthz`` every 20 ms from the submit until the job has started running
(the worker's first job also starts local Ray), then cancels it. Prints the latency percentiles and
the maximum of those polls beside the same polls with the worker idle (the best this machine
does) and their ratio (busy / idle), and the time from submit to ``failed`` for a job whose suite
file vanished after the submit. Nothing here asserts on time.

Every wait has a deadline (``--timeout``, per wait) and checks that the server is still running: a
server that exits or never answers ends the bench with one line and exit status 1. Progress and an
ETA go to stderr (bench/progress.py).
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
from collections.abc import Callable
from pathlib import Path

import httpx
from options import BenchParser, int_at_least, number_above
from progress import Progress

from interleaf.runtime.child_process import free_port
from interleaf.runtime.jobs.redis_server import RedisServer
from interleaf.runtime.jobs.spec import JobLimits

PHASES = ("serve up", "job started", "job cancelled", "idle baseline", "failing job failed")


class Server:
    """The ``interleaf serve`` process and a client to it: every wait has a deadline and checks the process."""

    def __init__(self, proc: subprocess.Popen, client: httpx.Client, timeout_s: float) -> None:
        self.proc, self.client, self.timeout_s = proc, client, timeout_s

    def alive(self, what: str) -> None:
        if (code := self.proc.poll()) is not None:
            raise SystemExit(f"serve_health: interleaf serve exited with status {code} while {what}")

    def wait(self, what: str, done: Callable[[], bool], every_s: float = 0.2) -> None:
        """Poll ``done()`` until it holds; one line and exit 1 if the server dies or ``--timeout`` passes."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            self.alive(what)
            try:
                if done():
                    return
            except httpx.HTTPError:
                pass  # not listening yet, or busy past the client timeout: the deadline decides
            if time.monotonic() > deadline:
                raise SystemExit(f"serve_health: gave up {what} after {self.timeout_s:g} s (--timeout)")
            time.sleep(every_s)

    def status(self, job_id: str) -> dict:
        return self.client.get(f"/v1/jobs/{job_id}").json()

    def submit(self, spec: dict) -> None:
        r = self.client.post("/v1/jobs", json=spec)
        if r.status_code != 201:
            raise SystemExit(f"serve_health: submitting {spec['job_id']} got {r.status_code}: {r.text[:300]}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    limit = JobLimits.from_env().n  # what the server will accept (INTERLEAF_MAX_N)
    ap = BenchParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int_at_least(1, limit), default=limit, help=f"arith tasks (1 to {limit:,})")
    ap.add_argument("--timeout", type=number_above(0), default=600.0,
                    help="seconds each wait may take (server up, job started, cancelled, failed)")  # fmt: skip
    return ap.parse_args(argv)


def pct(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


def main() -> None:
    args = parse_args()
    port = free_port()
    runs = tempfile.mkdtemp(prefix="interleaf-bench-runs-")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "INTERLEAF_RUNS_DIR": runs, "INTERLEAF_FILE_SUITES": "1"}
    progress = Progress("serve_health", total=len(PHASES), unit="phases")
    with RedisServer() as redis:
        cmd = [shutil.which("interleaf") or "interleaf", "serve", "--port", str(port), "--redis-url", redis.url,
               "--backend", "http://127.0.0.1:9"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                server = Server(proc, client, args.timeout)
                server.wait("waiting for /healthz to answer", lambda: client.get("/healthz").status_code == 200)
                progress.advance(note=PHASES[0])
                spec = {"suite": "arith", "n": args.n, "actors": 1, "concurrency": 1, "job_id": "bench-big"}
                t0 = time.perf_counter()
                server.submit(spec)
                latencies, codes, errors = [], set(), 0

                def started() -> bool:
                    nonlocal errors
                    t = time.perf_counter()
                    try:
                        codes.add(client.get("/healthz").status_code)
                    except httpx.HTTPError:  # no answer within the client's 30 s: a result, not a crash
                        errors += 1
                    latencies.append(time.perf_counter() - t)
                    # "running" is set once every actor has built the job (suite, agent).
                    return server.status("bench-big")["status"] != "queued"

                server.wait("waiting for the job to start", started, every_s=0.02)
                prepared_s = time.perf_counter() - t0
                progress.advance(note=PHASES[1])
                client.post("/v1/jobs/bench-big/cancel", json={})
                server.wait("waiting for the cancelled job to end",
                            lambda: server.status("bench-big")["status"] not in ("queued", "running"))  # fmt: skip
                progress.advance(note=PHASES[2])
                idle = []
                for _ in range(200):  # the same polls with the worker idle: this machine's baseline
                    server.alive("polling /healthz idle")
                    t = time.perf_counter()
                    client.get("/healthz")
                    idle.append((time.perf_counter() - t) * 1000)
                    time.sleep(0.02)
                progress.advance(note=PHASES[3])
                idle.sort()
                ms = sorted(x * 1000 for x in latencies)
                busy_p99, idle_p99 = pct(ms, 0.99), pct(idle, 0.99)
                print(
                    json.dumps(
                        {
                            "n": args.n,
                            "submit_to_started_s": round(prepared_s, 2),
                            "healthz_polls": len(ms),
                            "healthz_codes": sorted(codes),
                            "healthz_errors": errors,
                            "healthz_ms_p50": round(statistics.median(ms), 1),
                            "healthz_ms_p99": round(busy_p99, 1),
                            "healthz_ms_max": round(ms[-1], 1),
                            "idle_healthz_ms_p50": round(statistics.median(idle), 1),
                            "idle_healthz_ms_p99": round(idle_p99, 1),
                            "idle_healthz_ms_max": round(idle[-1], 1),
                            "busy_over_idle_p50": round(statistics.median(ms) / statistics.median(idle), 2),
                            "busy_over_idle_p99": round(busy_p99 / idle_p99, 2),
                            "busy_over_idle_max": round(ms[-1] / idle[-1], 2),
                        }
                    )
                )
                # A job that fails inside the worker: its suite file is gone by the time it runs.
                tasks = Path(runs) / "tasks.jsonl"
                tasks.write_text('{"question": "1+1?", "answer": "2"}\n')
                server.submit({"suite": str(tasks), "n": 1, "actors": 1, "concurrency": 1, "job_id": "bench-gone"})
                t0 = time.perf_counter()
                tasks.unlink()
                record: dict = {}

                def settled() -> bool:
                    nonlocal record
                    record = server.status("bench-gone")
                    return record["status"] not in ("queued", "running")

                server.wait("waiting for the failing job to end", settled, every_s=0.02)
                progress.advance(note=PHASES[4])
                print(json.dumps({"failing_job_status": record["status"], "submit_to_failed_s":
                                  round(time.perf_counter() - t0, 2), "error": record["error"]}))  # fmt: skip
        except httpx.HTTPError as exc:
            server_state = "running" if proc.poll() is None else f"exited with status {proc.returncode}"
            raise SystemExit(f"serve_health: a request to interleaf serve failed ({exc!r}); the server is "
                             f"{server_state}") from None  # fmt: skip
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
