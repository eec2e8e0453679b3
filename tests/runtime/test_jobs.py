"""JobRunner on real local Ray (scripted models stand in for the engine): spreading, storage,
idempotent retries after an actor dies, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path

import pytest
import ray

from interleaf.agents import ScriptedModelFactory, ScriptedTurn
from interleaf.runtime.jobs import JobRunner, JobSpec, JobSummary, load_trajectories
from interleaf.runtime.jobs.store import JobStatus, JobStore
from interleaf.telemetry.records import TerminationReason
from tests.waiting import wait_until_async

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
async def store(redis_url: str):
    s = JobStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    await s.aclose()


def spec(**kw) -> JobSpec:
    return JobSpec(suite="arith", n=8, actors=2, concurrency=4, job_id=f"job-{uuid.uuid4().hex[:8]}", **kw)


class FirstAttemptFails:
    """A model factory whose first attempt at episode 3 raises inside the actor (a crash in the
    episode, not of the actor); every other episode gets the scripted model."""

    def __init__(self) -> None:
        self.scripted = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>")])

    def __call__(self, episode_id: str):
        if episode_id.endswith("-e3-a1"):
            raise OSError(f"disk full while opening {episode_id}")
        return self.scripted(episode_id)


def lines(path: str) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


async def running_in_actors(runner: JobRunner, n: int, actors: int | None = None) -> None:
    """Wait until the first ``actors`` (default all) of the job's actors run ``n`` episodes in all."""
    handles = runner.actors[:actors]

    async def running() -> int:
        return sum([(await a.ping.remote())["running"] for a in handles])

    await wait_until_async(
        running, until=lambda count: count >= n, message=f"{n} episodes running in {len(handles)} actor(s)"
    )


async def test_job_spreads_over_actors_and_stores_once(local_ray, store: JobStore, tmp_path: Path) -> None:
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>", delay_s=0.2)])
    events = []
    runner = JobRunner(spec(), store=store, model_factory=factory, runs_dir=tmp_path, on_event=events.append)
    result = await runner.run()
    assert result.status == JobStatus.SUCCEEDED
    assert [t.episode for t in result.trajectories] == list(range(8))
    assert all(t.termination == TerminationReason.ANSWERED for t in result.trajectories)
    assert {t.metadata["worker"] for t in result.trajectories} == {f"{runner.job_id}-w0", f"{runner.job_id}-w1"}
    # Redis and the JSONL export agree, one record per episode.
    assert await store.count_trajectories(runner.job_id) == 8
    assert sorted(r["episode"] for r in lines(result.output_path)) == list(range(8))
    assert [t.id for t in load_trajectories(result.output_path)] == [t.id for t in result.trajectories]
    record = await store.get_job(runner.job_id)
    assert record is not None and record.status == JobStatus.SUCCEEDED and record.n_done == 8
    assert record.summary is not None and record.summary["episodes"] == 8
    # The one summary, stored in Redis and beside the export, reads back as it was computed.
    assert JobSummary.model_validate(record.summary) == result.summary
    stored = json.loads((Path(result.output_path).parent / "summary.json").read_text())
    assert stored["job_id"] == runner.job_id and JobSummary.model_validate(stored) == result.summary
    stored_events = [e.type for _, e in await store.read_events(runner.job_id)]
    assert stored_events.count("episode_finished") == 8 and stored_events[-1] == "job_finished"
    assert [e.type for e in events] == stored_events
    rows = dict(result.summary.rows())
    assert rows["episodes"] == "8" and "answered 8" in rows["terminations"]


async def test_killed_actor_episodes_retried_exactly_once(local_ray, store: JobStore, tmp_path: Path) -> None:
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>", delay_s=1.0)])
    started = asyncio.Event()

    def on_event(e) -> None:
        if e.type == "episode_started" and e.data.get("worker") == 0:
            started.set()

    runner = JobRunner(spec(), store=store, model_factory=factory, runs_dir=tmp_path, on_event=on_event)
    job = asyncio.create_task(runner.run())
    await started.wait()
    await running_in_actors(runner, 1, actors=1)  # the episode reached the actor
    ray.kill(runner.actors[0], no_restart=True)
    result = await job
    assert result.status == JobStatus.SUCCEEDED and runner.restarts >= 1
    episodes = [t.episode for t in result.trajectories]
    assert episodes == list(range(8))
    assert any(t.attempt > 1 for t in result.trajectories)  # the killed actor's work was redone
    assert all(t.termination == TerminationReason.ANSWERED for t in result.trajectories)
    assert await store.count_trajectories(runner.job_id) == 8
    assert sorted(r["episode"] for r in lines(result.output_path)) == list(range(8))
    events = [e for _, e in await store.read_events(runner.job_id)]
    types = [e.type for e in events]
    assert "worker_restarted" in types and "episode_retried" in types
    # The replacement was prepared before it got episodes: no attempt was lost to "not prepared".
    reasons = [e.data.get("reason", "") for e in events if e.type == "episode_retried"]
    assert not any("not prepared" in r for r in reasons), reasons


async def test_cancel_stops_running_episodes(local_ray, store: JobStore, tmp_path: Path) -> None:
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>", delay_s=120)])
    running = 0
    four = asyncio.Event()

    def on_event(e) -> None:
        nonlocal running
        if e.type == "episode_started":
            running += 1
            if running == 4:
                four.set()

    runner = JobRunner(spec(), store=store, model_factory=factory, runs_dir=tmp_path, on_event=on_event)
    job = asyncio.create_task(runner.run())
    await four.wait()
    await running_in_actors(runner, 4)
    await runner.cancel()
    result = await job
    assert result.status == JobStatus.CANCELLED
    assert running == 4  # nothing new was dispatched after the cancel
    assert len(result.trajectories) == 4
    assert all(t.termination == TerminationReason.CANCELLED for t in result.trajectories)
    record = await store.get_job(runner.job_id)
    assert record is not None and record.status == JobStatus.CANCELLED


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="retention"):
        JobSpec(retention="forever")
    with pytest.raises(ValueError, match="backend_urls"):
        JobRunner(JobSpec())


async def test_queue_worker_runs_submitted_jobs_and_honours_cancel(local_ray, store: JobStore, tmp_path: Path) -> None:
    from interleaf.runtime.jobs import serve_jobs, submit_job

    quick = await submit_job(store, JobSpec(suite="arith", n=3, actors=1, concurrency=3))
    doomed = await submit_job(store, JobSpec(suite="arith", n=3, actors=1, concurrency=3))
    assert await store.request_cancel(doomed.id) and not await store.request_cancel("nope")
    stop = asyncio.Event()
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>", delay_s=0.1)])

    async def statuses() -> list[JobStatus | None]:
        records = [await store.get_job(j) for j in (quick.id, doomed.id)]
        return [r.status if r is not None else None for r in records]

    async def stop_when_done() -> None:
        try:
            await wait_until_async(
                statuses,
                until=lambda found: all(s in (JobStatus.SUCCEEDED, JobStatus.CANCELLED) for s in found),
                message="both submitted jobs to end",
                timeout_s=120,
                interval_s=0.2,
            )
        finally:
            stop.set()  # also when the wait fails, so serve_jobs returns and the failure surfaces

    stopper = asyncio.create_task(stop_when_done())
    ran = await serve_jobs(store, "w1", stop=stop, model_factory=factory, runs_dir=tmp_path)
    await stopper
    assert ran == 2
    first, second = await store.get_job(quick.id), await store.get_job(doomed.id)
    assert first is not None and second is not None
    assert (first.status, first.n_done, first.worker) == (JobStatus.SUCCEEDED, 3, "w1")
    assert second.status == JobStatus.CANCELLED and await store.count_trajectories(doomed.id) == 0
    assert await store.claim("w2", block_ms=50) is None  # both acked
    assert await store.reclaim("w2", min_idle_ms=0) == []


def test_unknown_suite_fails_fast() -> None:
    with pytest.raises(ValueError, match=r"JobSpec\.suite='nope'"):
        JobRunner(JobSpec(suite="nope", backend_urls=["http://127.0.0.1:1"]))


async def test_worker_survives_failing_jobs_and_runs_the_next(local_ray, store: JobStore, tmp_path: Path) -> None:
    """Jobs that fail inside the worker (a spec that no longer validates, a suite file gone since it was
    submitted) end ``failed`` with the reason; the loop goes on and the next valid job succeeds."""
    from interleaf.runtime.jobs import serve_jobs, submit_job
    from interleaf.runtime.jobs.queue import WorkerHealth
    from interleaf.runtime.jobs.store import JobRecord

    # Reached the queue without the API's validation (another version, another process's registry).
    await store.create_job(JobRecord(id="bad-spec", spec={"suite": "no-such-suite", "n": 2}, n_total=2))
    await store.enqueue("bad-spec")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"question": "1+1?", "answer": "2"}\n')
    gone = await submit_job(store, JobSpec(suite=str(tasks), n=1, actors=1, concurrency=1))
    tasks.unlink()
    good = await submit_job(store, JobSpec(suite="arith", n=2, actors=1, concurrency=2))
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>")])
    stop, health = asyncio.Event(), WorkerHealth("w-fail")
    loop = asyncio.create_task(
        serve_jobs(store, "w-fail", stop=stop, health=health, model_factory=factory, runs_dir=tmp_path)
    )
    try:
        records = await wait_until_async(
            lambda: asyncio.gather(*(store.get_job(j) for j in ("bad-spec", gone.id, good.id))),
            until=lambda rs: all(r.status not in (JobStatus.QUEUED, JobStatus.RUNNING) for r in rs),
            message="the three jobs to end",
            timeout_s=120,
            interval_s=0.2,
        )
        assert not loop.done() and health.phase in ("idle", "running")
    finally:
        stop.set()
        await loop
    bad, missing, ok = records
    assert bad.status == JobStatus.FAILED and "no-such-suite" in (bad.error or "")
    assert missing.status == JobStatus.FAILED and str(tasks) in (missing.error or "")
    assert bad.finished_at is not None and missing.finished_at is not None
    assert ok.status == JobStatus.SUCCEEDED and ok.n_done == 2
    failed_events = [e for _, e in await store.read_events("bad-spec")]
    assert [e.type for e in failed_events] == ["job_failed"] and "no-such-suite" in failed_events[0].data["error"]
    assert health.jobs_done == 3 and health.phase == "stopped"
    assert await store.reclaim("w2", min_idle_ms=0) == []  # all acked


async def test_worker_loop_outlives_redis_going_away(redis_url: str) -> None:
    """Redis unreachable: the loop reports it and keeps trying instead of dying."""
    from interleaf.runtime.jobs import serve_jobs
    from interleaf.runtime.jobs.queue import WorkerHealth

    dead = JobStore("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    stop, health = asyncio.Event(), WorkerHealth("w-dead")
    loop = asyncio.create_task(serve_jobs(dead, "w-dead", stop=stop, health=health))
    try:
        await wait_until_async(
            lambda: health.error or "", until=lambda e: "queue unreachable" in e, message="the loop to report Redis"
        )
        await wait_until_async(lambda: health.beat, until=lambda b: health.alive(), message="the loop to keep beating")
        assert not loop.done()
    finally:
        stop.set()
        assert await loop == 0
        await dead.aclose()


async def test_a_started_job_resumes_from_its_stored_episodes(local_ray, store: JobStore, tmp_path: Path) -> None:
    """A job that already has results (its worker died, serve restarted) keeps them and runs the rest."""
    from interleaf.runtime.jobs.store import JobRecord
    from interleaf.telemetry.records import Trajectory

    job = spec()
    await store.create_job(JobRecord(id=job.job_id, spec=job.model_dump(mode="json"), n_total=8, started_at=1.0))
    kept = [
        Trajectory(id=f"earlier-{e}", job_id=job.job_id, episode=e, termination=TerminationReason.ANSWERED)
        for e in (0, 5)
    ]
    for traj in kept:
        await store.put_trajectory(traj)
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>")])
    events = []
    runner = JobRunner(job, store=store, model_factory=factory, runs_dir=tmp_path, on_event=events.append, worker="w9")
    result = await runner.run()
    assert result.status == JobStatus.SUCCEEDED
    assert [t.episode for t in result.trajectories] == list(range(8))
    assert [result.trajectories[e].id for e in (0, 5)] == ["earlier-0", "earlier-5"]  # kept, not rerun
    assert sorted(e.episode for e in events if e.type == "episode_started") == [1, 2, 3, 4, 6, 7]
    resumed = [e for e in events if e.type == "job_resumed"]
    assert len(resumed) == 1 and resumed[0].data == {"n_total": 8, "n_done": 2, "actors": 2, "worker": "w9"}
    assert "job_started" not in [e.type for e in events]
    assert [r["episode"] for r in lines(result.output_path)] == list(range(8))
    record = await store.get_job(job.job_id)
    assert record is not None and record.started_at == 1.0 and record.n_done == 8  # wall time from the first start


async def test_a_stored_episode_this_version_cannot_read_fails_the_job_and_stays_stored(
    local_ray, store: JobStore, tmp_path: Path
) -> None:
    """Resuming over a stored result another version wrote: the job fails naming the episode and why (no
    actor left behind), the worker goes on, and the stored text is not overwritten by a rerun."""
    from interleaf.runtime.jobs import serve_jobs, submit_job
    from interleaf.runtime.jobs.queue import WorkerHealth

    job = await submit_job(store, JobSpec(suite="arith", n=3, actors=1, concurrency=1))
    altered = json.dumps({"job_id": job.id, "episode": 2, "turns": "not a list"})
    await store.redis.hset(store._key("job", job.id, "trajectories"), "2", altered)
    good = await submit_job(store, JobSpec(suite="arith", n=1, actors=1, concurrency=1))
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>")])
    stop, health = asyncio.Event(), WorkerHealth("w-unread")
    loop = asyncio.create_task(
        serve_jobs(store, "w-unread", stop=stop, health=health, model_factory=factory, runs_dir=tmp_path)
    )
    try:
        failed, ok = await wait_until_async(
            lambda: asyncio.gather(store.get_job(job.id), store.get_job(good.id)),
            until=lambda rs: all(r.status not in (JobStatus.QUEUED, JobStatus.RUNNING) for r in rs),
            message="both jobs to end",
            timeout_s=120,
            interval_s=0.2,
        )
    finally:
        stop.set()
        await loop
    assert failed.status == JobStatus.FAILED, failed
    assert f"job {job.id!r} episode 2 cannot be read" in (failed.error or "") and "turns" in (failed.error or "")
    assert ok.status == JobStatus.SUCCEEDED
    assert await store.redis.hget(store._key("job", job.id, "trajectories"), "2") == altered
    assert not [a for a in ray.util.list_named_actors() if a.startswith(job.id)]  # shut down, not leaked


async def test_a_worker_whose_job_was_taken_over_drops_it(local_ray, store: JobStore, tmp_path: Path) -> None:
    """Another worker reclaimed the entry (this one looked dead): this one stops the job, records nothing
    final, does not ack, and goes on serving."""
    from interleaf.runtime.jobs import serve_jobs, submit_job
    from interleaf.runtime.jobs.queue import WorkerHealth

    with pytest.raises(ValueError, match="reclaim_idle_ms=500"):
        await serve_jobs(store, "w-hasty", reclaim_idle_ms=500)
    submitted = await submit_job(store, JobSpec(suite="arith", n=2, actors=1, concurrency=2))
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>", delay_s=120)])
    stop, health = asyncio.Event(), WorkerHealth("w-slow")
    loop = asyncio.create_task(
        serve_jobs(store, "w-slow", stop=stop, health=health, model_factory=factory, runs_dir=tmp_path)
    )
    try:
        await wait_until_async(
            lambda: store.read_events(submitted.id),
            until=lambda evs: sum(e.type == "episode_started" for _, e in evs) == 2,
            message="both episodes to start",
            timeout_s=60,
        )
        assert [w.consumer for w in await store.list_workers()] == ["w-slow"]
        [(entry, job_id)] = await store.reclaim("w-other", min_idle_ms=0)  # as if w-slow had gone silent
        assert job_id == submitted.id
        await wait_until_async(
            lambda: health.error or "", until=lambda e: "taken over" in e, message="the worker to notice"
        )
        await wait_until_async(lambda: health.phase, until=lambda p: p == "idle", message="the worker to go on")
        record = await store.get_job(submitted.id)
        assert record is not None and record.status == JobStatus.RUNNING and record.finished_at is None
        assert await store.pending_own("w-other") == [(entry, submitted.id)]  # still the other worker's
    finally:
        stop.set()
        await loop
    assert await store.list_workers() == []  # a worker that stops leaves the list


async def test_episodes_also_run_as_ray_actor_calls(local_ray, store: JobStore, tmp_path: Path) -> None:
    """``episode_channel=False``: no direct connection to the actors (a cluster whose nodes are
    reachable only on Ray's ports); the same job, results and errors through Ray's actor calls."""
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>", delay_s=0.05)])
    runner = JobRunner(spec(), store=store, model_factory=factory, runs_dir=tmp_path, episode_channel=False)
    result = await runner.run()
    assert result.status == JobStatus.SUCCEEDED and [t.episode for t in result.trajectories] == list(range(8))
    assert all(s.channel is None for s in runner.slots)


@pytest.mark.parametrize("channel", [True, False], ids=["episode-channel", "ray-calls"])
async def test_an_episode_that_raises_is_retried_with_its_error_named(
    local_ray, store: JobStore, tmp_path: Path, channel: bool
) -> None:
    runner = JobRunner(
        spec(), store=store, model_factory=FirstAttemptFails(), runs_dir=tmp_path, episode_channel=channel
    )
    result = await runner.run()
    assert result.status == JobStatus.SUCCEEDED and runner.restarts == 0  # the actor itself was fine
    assert [(t.episode, t.attempt) for t in result.trajectories if t.attempt > 1] == [(3, 2)]
    events = [e for _, e in await store.read_events(runner.job_id)]
    reasons = [e.data["reason"] for e in events if e.type == "episode_retried"]
    assert len(reasons) == 1 and reasons[0].endswith(f"OSError: disk full while opening {runner.job_id}-e3-a1"), reasons


class UnencodableError:
    """A model factory whose every episode raises with a lone surrogate in the message (what a backend URL
    holding ``\\ud800`` produced): text UTF-8 cannot carry."""

    def __call__(self, episode_id: str):
        raise OSError(f"cannot reach http://127.0.0.1:1/\ud800 for {episode_id}")


@pytest.mark.parametrize("channel", [True, False], ids=["episode-channel", "ray-calls"])
async def test_an_episode_error_utf8_cannot_encode_ends_the_episode_not_the_job(
    local_ray, store: JobStore, tmp_path: Path, channel: bool
) -> None:
    """It used to kill the actor's reply: the runner waited forever and the queue stopped behind it."""
    job = JobSpec(suite="arith", n=2, actors=1, concurrency=2, max_attempts=2, job_id=f"job-{uuid.uuid4().hex[:8]}")
    runner = JobRunner(job, store=store, model_factory=UnencodableError(), runs_dir=tmp_path, episode_channel=channel)
    result = await asyncio.wait_for(runner.run(), 120)
    assert result.status == JobStatus.SUCCEEDED
    assert [(t.episode, t.attempt, t.termination) for t in result.trajectories] == [
        (0, 2, TerminationReason.ERROR),
        (1, 2, TerminationReason.ERROR),
    ]
    assert all("http://127.0.0.1:1/\\ud800" in (t.error or "") for t in result.trajectories)
    assert len(await store.get_trajectories(runner.job_id)) == 2
    events = [e for _, e in await store.read_events(runner.job_id)]
    assert events[-1].type == "job_finished"
    assert all("\\ud800" in e.data["reason"] for e in events if e.type == "episode_retried")


async def test_an_actor_that_dies_while_it_is_prepared_is_replaced(local_ray, store: JobStore, tmp_path: Path) -> None:
    """An actor killed (as by the OOM killer) before its ``prepare`` returned used to fail the whole job
    with Ray's multi-line report as its error; it is replaced, as during the run."""
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>")])
    runner = JobRunner(spec(), store=store, model_factory=factory, runs_dir=tmp_path)
    new_actor, killed = runner._new_actor, []

    def first_dies(index: int):
        handle = new_actor(index)
        if index == 0 and not killed:
            killed.append(handle)
            ray.kill(handle, no_restart=True)
        return handle

    runner._new_actor = first_dies  # type: ignore[method-assign]
    result = await asyncio.wait_for(runner.run(), 180)
    assert killed and result.status == JobStatus.SUCCEEDED
    assert [t.episode for t in result.trajectories] == list(range(8)) and runner.restarts == 1
    events = [e for _, e in await store.read_events(runner.job_id)]
    assert [e.type for e in events][:2] == ["job_started", "worker_restarted"]
    restarted = events[1].data
    assert (restarted["worker"], restarted["placements"]) == (0, 2)
    assert "Error" in restarted["reason"] and "\n" not in restarted["reason"]


class SlowToStop:
    """A runner that takes a while to stop after a cancel (its actors closing their sessions): it ends
    when the test releases it."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self) -> None:
        await self.cancelled.wait()
        await self.release.wait()

    async def cancel(self) -> None:
        self.cancelled.set()


async def test_the_worker_keeps_beating_and_holding_its_job_until_a_cancelled_runner_has_stopped(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to stop beating right after asking the runner to cancel: ``/healthz`` said the worker was
    unresponsive, and the job's entry went idle for another worker to take."""
    from interleaf.runtime.jobs import queue, serve_jobs, submit_job
    from interleaf.runtime.jobs.queue import WorkerHealth

    fake = SlowToStop()
    monkeypatch.setattr(queue, "_build_runner", lambda spec, store, kwargs: fake)
    job = await submit_job(store, JobSpec(suite="arith", n=1))
    stop, health = asyncio.Event(), WorkerHealth("w-beat")
    loop = asyncio.create_task(serve_jobs(store, "w-beat", stop=stop, health=health, poll_cancel_s=0.2))
    try:
        await wait_until_async(lambda: health.phase, until=lambda p: p == "running", message="the job to start")
        assert await store.request_cancel(job.id)
        await wait_until_async(fake.cancelled.is_set, message="the runner to be asked to cancel", timeout_s=10)
        asked = time.monotonic()
        await wait_until_async(
            lambda: health.beat,
            until=lambda beat: beat - asked > 2.5,
            message="the worker to go on beating after the cancel",
            timeout_s=10,
        )
        assert health.alive() and health.phase == "running" and not loop.done()
        assert await store.reclaim("w-other", min_idle_ms=2000) == []  # its hold was renewed meanwhile
        fake.release.set()
        await wait_until_async(lambda: health.jobs_done, until=lambda n: n == 1, message="the job to end")
    finally:
        stop.set()
        fake.release.set()
        await loop


async def test_a_job_failure_is_one_line_in_the_record_and_whole_in_its_event(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's report of a dead actor is ~3 KB over many lines; ``interleaf jobs status`` prints the record's
    error, so that is its first line, capped; the event keeps all of it."""
    from interleaf.runtime.jobs import queue, serve_jobs, submit_job
    from interleaf.runtime.jobs.store import REASON_MAX

    report = "The actor died unexpectedly before finishing this task.\n" + "\tclass_name: EpisodeWorker x\n" * 120

    def dies(spec, store, kwargs):
        raise RuntimeError(report)

    monkeypatch.setattr(queue, "_build_runner", dies)
    job = await submit_job(store, JobSpec(suite="arith", n=1))
    stop = asyncio.Event()
    loop = asyncio.create_task(serve_jobs(store, "w-report", stop=stop))
    try:
        record = await wait_until_async(
            lambda: store.get_job(job.id),
            until=lambda r: r is not None and r.status == JobStatus.FAILED,
            message="the job to fail",
        )
    finally:
        stop.set()
        await loop
    assert record.error == "RuntimeError: The actor died unexpectedly before finishing this task. …"
    assert "\n" not in record.error and len(record.error) <= REASON_MAX
    [failed] = [e for _, e in await store.read_events(job.id)]
    assert failed.data["error"] == record.error and failed.data["detail"] == f"RuntimeError: {report.strip()}"


async def test_a_suite_registered_only_in_the_driver_runs_in_its_actors(
    local_ray, store: JobStore, tmp_path: Path
) -> None:
    """docs/jobs.md: ``register_suite`` in the process that builds the spec. The actors' processes never
    ran that registration; the driver sends them the factory (not its tasks)."""
    from interleaf.agents import SUITES, Task, TaskSuite, register_suite

    name = f"driver-only-{uuid.uuid4().hex[:6]}"

    def sums(n: int, seed: int) -> TaskSuite:  # a closure: pickled by value, like a script's own function
        from interleaf.tools import calculator

        tasks = [Task(id=f"{name}-{i}", question=f"What is {i} + {2 - i}?", answer="2", scorer="math",
                      answer_type="number") for i in range(n)]  # fmt: skip
        return TaskSuite(name, tasks, lambda: [calculator])

    register_suite(name, sums)
    try:
        job = JobSpec(suite=name, n=4, actors=2, concurrency=4, job_id=f"job-{uuid.uuid4().hex[:8]}")
        factory = ScriptedModelFactory([ScriptedTurn("<answer>2</answer>")])
        result = await JobRunner(job, store=store, model_factory=factory, runs_dir=tmp_path).run()
    finally:
        SUITES.pop(name)
    assert result.status == JobStatus.SUCCEEDED  # both actors were prepared: each built the suite
    assert [(t.task_id, t.suite, t.correct) for t in result.trajectories] == [
        (f"{name}-{i}", name, True) for i in range(4)
    ]


def test_an_error_raised_in_an_actor_is_told_by_its_cause_not_rays_header(local_ray) -> None:
    """Ray's message starts with a coloured header (task, pid, ip, actor id); the record's one line must name
    the cause, and the event's detail keeps the remote traceback without the colour codes."""
    from interleaf.runtime.jobs.store import error_story, error_text, one_line

    @ray.remote
    class Prepares:
        def prepare(self) -> None:
            raise FileNotFoundError("task file /gone/tasks.jsonl not found")

    actor = Prepares.remote()
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(actor.prepare.remote())
    ray.kill(actor)
    assert one_line(error_text(info.value)) == "RayTaskError(FileNotFoundError): task file /gone/tasks.jsonl not found"
    story = error_story(info.value)
    assert "Prepares.prepare()" in story and "task file /gone/tasks.jsonl not found" in story
    assert "\x1b[" not in story


async def test_the_job_ends_even_when_a_sample_swallows_its_cancellation(
    local_ray, store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py 8.1 can swallow a cancel that lands inside a call; the sampler's Redis write is such a call.
    The job's end must not wait on the sampler taking its cancellation (it sampled for ever, the job stayed
    ``running`` with every episode done)."""
    from interleaf.runtime.jobs.runner import JobRunner

    async def swallowing_sample(self: JobRunner) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # what the Redis client did
            await asyncio.sleep(0.05)

    monkeypatch.setattr(JobRunner, "_sample", swallowing_sample)
    factory = ScriptedModelFactory([ScriptedTurn("<answer>7</answer>")])
    runner = JobRunner(spec(), store=store, model_factory=factory, runs_dir=tmp_path)
    runner.sample_every_s = 0.01  # scripted models turn sampling off (no server to ask); the loop is what is tested
    result = await asyncio.wait_for(runner.run(), 120)
    assert result.status == JobStatus.SUCCEEDED and len(result.trajectories) == 8
