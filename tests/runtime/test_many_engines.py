"""A job over three embedded engines behind the router; one engine is killed mid-job.

Real engines (sim executor on a real clock, so episodes stay in flight long enough), real HTTP,
real local Ray and Redis. The episodes that lived on the killed engine fail over to the others:
the turn that moved re-prefills the whole conversation, recorded in the trajectory (a ``release``
retention event naming the failover, ``recomputed_tokens`` > 0); the job still ends with exactly
one trajectory per episode.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray

from interleaf.agents import Agent, Budgets
from interleaf.runtime.client.server_metrics import parse_prometheus
from interleaf.runtime.jobs import JobRunner, JobSpec
from interleaf.runtime.jobs.store import JobStatus, JobStore
from interleaf.telemetry.records import RetentionDecision, TerminationReason
from tests.conftest import start_engine, stop_process
from tests.waiting import wait_until_async

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def engines() -> Iterator[list]:
    """Three sim engines (one after another: engines started side by side can draw the same free port)."""
    started = []
    try:
        for _ in range(3):
            started.append(start_engine("--executor", "sim", "--sim-clock", "real"))
        yield started
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                stop_process(proc)


@pytest.fixture
async def store(redis_url: str):
    s = JobStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    await s.aclose()


async def load_on(url: str) -> tuple[float, float]:
    """(streaming sessions open now, requests finished so far) on ``url``."""
    async with httpx.AsyncClient() as client:
        metrics = parse_prometheus((await client.get(f"{url}/metrics", timeout=5)).text)
    finished = metrics.get("sglang:e2e_request_latency_seconds_count", 0.0)
    return metrics.get("sglang:num_streaming_sessions", 0.0), finished


async def test_killed_engine_fails_over_and_the_job_completes(
    local_ray, engines, store: JobStore, tmp_path: Path
) -> None:
    urls = [url for _, url in engines]
    doomed_proc, doomed = engines[1]
    n = 18
    agent = Agent(
        name="many-engines",
        grammar=None,  # the sim executor has no constrained decoding; the agent nudges it on
        on_no_action="nudge",
        budgets=Budgets(max_turns=5, max_new_tokens=24, max_tokens=8192, wall_time_s=None),
    )
    spec = JobSpec(
        suite="arith", n=n, actors=2, concurrency=9, backend_urls=urls, retention="session",
        job_id=f"job-engines-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    runner = JobRunner(spec, store=store, agent=agent, runs_dir=tmp_path)
    job = asyncio.create_task(runner.run())
    # Kill it while episodes hold sessions there, a few turns in (about 3 episodes start on each engine
    # and run 5 turns: 6 requests finished there means they are mid-way).
    await wait_until_async(
        lambda: load_on(doomed),
        until=lambda load: load[0] >= 2 and load[1] >= 6,
        message=f"episodes living on {doomed}, a few turns in",
        timeout_s=90,
    )
    done_before = (await store.get_job(runner.job_id)).n_done
    doomed_proc.kill()
    doomed_proc.wait(30)
    result = await asyncio.wait_for(job, 180)

    assert done_before < n
    assert result.status == JobStatus.SUCCEEDED
    # Exactly n trajectories: 0 lost, 0 duplicated (in memory, in Redis, in the JSONL export, in events).
    assert [t.episode for t in result.trajectories] == list(range(n))
    assert await store.count_trajectories(runner.job_id) == n
    exported = [json.loads(line) for line in Path(result.output_path).read_text().splitlines() if line.strip()]
    assert sorted(r["episode"] for r in exported) == list(range(n))
    events = [e for _, e in await store.read_events(runner.job_id)]
    finished = Counter(e.episode for e in events if e.type == "episode_finished")
    assert set(finished) == set(range(n)) and max(finished.values()) == 1
    # No episode died with the engine: each ran its full turn budget.
    for t in result.trajectories:
        assert t.termination == TerminationReason.MAX_TURNS, (t.episode, t.termination, t.error)
        assert len(t.turns) == 5
    # The episodes that lived on the killed engine moved: the turn that moved records the failover,
    # and when earlier turns had been computed there, the re-prefill of the whole conversation.
    moved = []
    for t in result.trajectories:
        for turn in t.turns:
            records = [r for r in turn.retention_events if "failover" in r.reason and doomed in r.reason]
            if records:
                assert records[0].decision == RetentionDecision.RELEASE
                assert turn.server in urls and turn.server != doomed
                assert all(later.server == turn.server for later in t.turns[turn.index :]), "it stays on the survivor"
                moved.append((t, turn))
    assert moved, "episodes were living on the killed engine: some must have failed over"
    reprefilled = [turn for t, turn in moved if turn.index > 0]
    assert reprefilled, [(t.episode, turn.index) for t, turn in moved]
    assert all(turn.cache.recomputed_tokens > 0 for turn in reprefilled)  # the re-prefill, counted
    # Episodes that started after the kill never went there.
    assert {turn.server for t in result.trajectories for turn in t.turns} <= set(urls)
