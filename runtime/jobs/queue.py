"""The Redis job queue: ``submit_job`` records a job and enqueues it; ``serve_jobs`` is the service
worker loop that takes jobs from the stream's consumer group and runs each with a ``JobRunner``.

The loop never dies of a job or of Redis:

==============================================  =====================================================
cause                                           behaviour
==============================================  =====================================================
the stored spec does not validate (another       the job ends ``failed`` with the reason, a
version, a suite registered only elsewhere),      ``job_failed`` event; the entry is acked; the loop
its suite cannot be built, ``run()`` raises       takes the next job
Redis unreachable                               ``WorkerHealth.error`` says so; the loop retries
                                                with backoff (≤ 2 s); unacked entries are reclaimed
                                                later (XAUTOCLAIM)
the loop task is cancelled (shutdown)           a running job is cancelled first
==============================================  =====================================================

``WorkerHealth`` is what ``/healthz`` reads: the loop beats it at least every second, while idle and
while a job runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from interleaf.runtime.jobs.spec import JobSpec
from interleaf.runtime.jobs.store import JobEvent, JobEventType, JobRecord, JobStatus, JobStore

if TYPE_CHECKING:
    from interleaf.runtime.jobs.runner import JobRunner

log = logging.getLogger("interleaf.jobs")


async def submit_job(store: JobStore, spec: JobSpec) -> JobRecord:
    """Record a job and put it on the Redis queue; a ``serve_jobs`` worker will run it."""
    from interleaf.runtime.jobs.runner import new_job_id  # the runner imports Ray: not needed to submit

    job_id = spec.job_id or new_job_id()
    spec = spec.model_copy(update={"job_id": job_id})
    record = await store.create_job(JobRecord(id=job_id, spec=spec.model_dump(mode="json"), n_total=spec.n))
    await store.enqueue(job_id)
    return record


@dataclass
class WorkerHealth:
    """What a ``serve_jobs`` loop is doing, updated in place by the loop (``/healthz`` reads it)."""

    consumer: str
    phase: str = "starting"
    """``starting``, ``idle`` (waiting for a job), ``running`` (``job_id``), ``stopped``."""
    job_id: str | None = None
    beat: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` of the loop's last sign of life."""
    error: str | None = None
    """The last failure the loop survived (cleared when Redis answers again), or the one it stopped on."""
    jobs_done: int = 0

    def alive(self, stale_s: float = 3.0) -> bool:
        """The loop has not stopped and beat within ``stale_s``."""
        return self.phase != "stopped" and time.monotonic() - self.beat < stale_s


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):  # one line per problem, without pydantic's URLs
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        return f"invalid job spec: {problems}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _fail_job(store: JobStore, job_id: str, reason: str) -> None:
    await store.update_job(job_id, status=JobStatus.FAILED, error=reason, finished_at=time.time())
    await store.add_event(
        JobEvent(type=JobEventType.JOB_FAILED, job_id=job_id, data={"status": "failed", "error": reason})
    )


async def serve_jobs(
    store: JobStore,
    consumer: str,
    *,
    stop: asyncio.Event | None = None,
    health: WorkerHealth | None = None,
    reclaim_idle_ms: int = 60_000,
    poll_cancel_s: float = 0.5,
    **runner_kwargs: Any,
) -> int:
    """Worker loop: take jobs from the queue (first any a crashed worker left pending for
    ``reclaim_idle_ms``), run each with a ``JobRunner``, ack it. A job whose ``cancel_requested`` flag
    is set (``JobStore.request_cancel``) is cancelled. Runs until ``stop`` is set; returns jobs run.
    ``health`` is kept up to date (pass one to watch the loop). ``runner_kwargs`` go to ``JobRunner``
    (ray_address, runs_dir, model_factory, agent)."""
    stop = stop or asyncio.Event()
    health = health or WorkerHealth(consumer)
    backoff = 0.0
    try:
        while not stop.is_set():
            health.beat, health.phase, health.job_id = time.monotonic(), "idle", None
            try:
                entries = await store.reclaim(consumer, min_idle_ms=reclaim_idle_ms)
                if not entries:
                    claimed = await store.claim(consumer, block_ms=500)
                    entries = [claimed] if claimed else []
            except Exception as exc:  # Redis down or refusing: wait and try again, never die
                health.error = f"queue unreachable: {_reason(exc)}"
                log.warning("worker %s: %s", consumer, health.error)
                backoff = min(2.0, backoff * 2 or 0.1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                continue
            backoff, health.error = 0.0, None
            for entry_id, job_id in entries:
                await _take(store, consumer, entry_id, job_id, health, poll_cancel_s, runner_kwargs)
    except BaseException as exc:
        health.error = f"worker loop ended: {_reason(exc)}"
        raise
    finally:
        health.phase, health.job_id = "stopped", None
    return health.jobs_done


async def _take(
    store: JobStore,
    consumer: str,
    entry_id: str,
    job_id: str,
    health: WorkerHealth,
    poll_cancel_s: float,
    runner_kwargs: dict[str, Any],
) -> None:
    """Run one queue entry to its end; every failure ends the job ``failed`` (never the loop)."""
    health.phase, health.job_id, health.beat = "running", job_id, time.monotonic()
    try:
        record = await store.get_job(job_id)
        if record is None or record.status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.FAILED):
            await store.ack(entry_id)  # finished before a crash, or deleted: nothing to do
            return
        await store.update_job(job_id, worker=consumer)
        if record.cancel_requested:
            await store.update_job(job_id, status=JobStatus.CANCELLED, finished_at=time.time())
        else:
            await _run(store, job_id, record, health, poll_cancel_s, runner_kwargs)
    except asyncio.CancelledError:
        raise  # shutdown: the entry stays pending, another worker reclaims it
    except Exception as exc:
        reason = _reason(exc)
        log.warning("worker %s: job %s failed: %s", consumer, job_id, reason)
        try:
            await _fail_job(store, job_id, reason)
        except Exception as exc2:  # Redis gone too: leave the entry pending, it is reclaimed later
            health.error = f"could not record the failure of job {job_id!r}: {_reason(exc2)}"
            return
    with contextlib.suppress(Exception):  # unacked: reclaimed and skipped (its status is final)
        await store.ack(entry_id)
    health.jobs_done += 1


def _build_runner(spec: JobSpec, store: JobStore, runner_kwargs: dict[str, Any]) -> JobRunner:
    from interleaf.runtime.jobs.runner import JobRunner

    return JobRunner(spec, store=store, **runner_kwargs)


async def _run(
    store: JobStore,
    job_id: str,
    record: JobRecord,
    health: WorkerHealth,
    poll_cancel_s: float,
    runner_kwargs: dict[str, Any],
) -> None:
    spec = JobSpec.model_validate(record.spec | {"job_id": job_id})
    runner: JobRunner | None = None
    cancel_seen = False

    async def watch() -> None:  # beats the health record and polls the cancel flag, also while building
        nonlocal cancel_seen
        while True:
            health.beat = time.monotonic()
            try:
                cancel_seen = cancel_seen or await store.cancel_requested(job_id)
            except Exception as exc:  # a Redis blip must not end the job; the health record says it
                health.error = f"cancel flag unreadable: {_reason(exc)}"
            if cancel_seen and runner is not None:
                await runner.cancel()
                return
            await asyncio.sleep(poll_cancel_s)

    watcher = asyncio.create_task(watch())
    try:
        # Off the loop the API answers on: the first job imports Ray and the agents (~1-2 s), and building
        # a job reads its whole suite (100k tasks: seconds).
        runner = await asyncio.to_thread(_build_runner, spec, store, runner_kwargs)
        await runner.run()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


__all__ = ["WorkerHealth", "serve_jobs", "submit_job"]
