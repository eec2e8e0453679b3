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
the worker is killed, hangs, or is cut off      its job's entry goes idle; after ``reclaim_idle_ms``
from Redis mid-job                              (``RECLAIM_IDLE_MS``, 15 s) another worker reclaims it
                                                and resumes the job: stored episodes are kept, the
                                                others run (``job_resumed`` event)
a worker whose job was reclaimed comes back     it finds its hold gone (``JobStore.touch``) and drops
                                                the job without recording anything final
the same consumer name starts again (a          it takes its own unacked entries back at once
restarted ``interleaf serve``)                  (``JobStore.pending_own``), before new ones
the loop task is cancelled (shutdown)           a running job is cancelled first; its entry stays
                                                pending for this name or another worker
==============================================  =====================================================

``WorkerHealth`` is what this process's ``/healthz`` reads: the loop beats it at least every second,
while idle and while a job runs. The same beat goes to Redis (``WorkerBeat``, expiring after
``WORKER_BEAT_TTL_S``), where any process sees every worker on the queue (``JobStore.list_workers``).
While a job runs, the loop also renews its hold on the job's entry every ``poll_cancel_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from interleaf.runtime.jobs.spec import JobSpec
from interleaf.runtime.jobs.store import (
    JobEvent,
    JobEventType,
    JobRecord,
    JobStatus,
    JobStore,
    WorkerBeat,
    error_story,
    error_text,
    one_line,
    printable,
)

if TYPE_CHECKING:
    from interleaf.runtime.jobs.runner import JobRunner

log = logging.getLogger("interleaf.jobs")

RECLAIM_IDLE_MS = 15_000
"""How long a running job's queue entry may go untouched before another worker takes the job over.
A live worker touches it every ``poll_cancel_s`` (0.5 s), so this only has to outlast a stall of the
worker's event loop (``ray.init`` holds the GIL for over a second) or a Redis blip."""
MIN_RECLAIM_IDLE_MS = 2_000
"""The shortest ``reclaim_idle_ms`` accepted: shorter would take jobs from workers that are merely busy."""
WORKER_BEAT_TTL_S = 5.0
"""A worker's ``WorkerBeat`` in Redis expires this long after its last beat (one per loop turn, ≤ 1 s)."""


class LeaseLost(Exception):
    """Another worker reclaimed the job's queue entry while this one ran it (this one was stalled or
    cut off from Redis for longer than ``reclaim_idle_ms``): this worker drops the job."""


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

    def record(self) -> WorkerBeat:
        """This state as the ``WorkerBeat`` other processes read from Redis."""
        return WorkerBeat(
            consumer=self.consumer, pid=os.getpid(), host=socket.gethostname(), phase=self.phase,
            job_id=self.job_id, jobs_done=self.jobs_done, error=self.error,
        )  # fmt: skip


async def _publish(store: JobStore, health: WorkerHealth) -> None:
    """Beat in Redis; a failure is the queue's to report (the next Redis call fails the same way)."""
    with contextlib.suppress(Exception):
        await store.beat(health.record(), ttl_s=WORKER_BEAT_TTL_S)


def _spec_problems(exc: BaseException) -> str | None:
    """A spec that no longer validates, one problem after another, without pydantic's URLs."""
    if not isinstance(exc, ValidationError):
        return None
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
    return printable(f"invalid job spec: {problems}")


def _detail(exc: BaseException) -> str:
    """The whole story of ``exc`` (Ray's errors carry the remote traceback), as text UTF-8 can hold."""
    return _spec_problems(exc) or error_story(exc)


def _reason(exc: BaseException) -> str:
    """What ``JobRecord.error`` holds: one line, naming the cause (``error_text``)."""
    return one_line(_spec_problems(exc) or error_text(exc))


async def _fail_job(store: JobStore, job_id: str, exc: BaseException) -> None:
    reason, detail = _reason(exc), _detail(exc)
    await store.update_job(job_id, status=JobStatus.FAILED, error=reason, finished_at=time.time())
    data = {"status": "failed", "error": reason, **({"detail": detail} if detail != reason else {})}
    await store.add_event(JobEvent(type=JobEventType.JOB_FAILED, job_id=job_id, data=data))


async def serve_jobs(
    store: JobStore,
    consumer: str,
    *,
    stop: asyncio.Event | None = None,
    health: WorkerHealth | None = None,
    reclaim_idle_ms: int = RECLAIM_IDLE_MS,
    poll_cancel_s: float = 0.5,
    **runner_kwargs: Any,
) -> int:
    """Worker loop: take jobs from the queue (first its own unacked ones, from before a restart under
    the same ``consumer`` name, then any another worker left untouched for ``reclaim_idle_ms``), run
    each with a ``JobRunner``, ack it. A job whose ``cancel_requested`` flag is set
    (``JobStore.request_cancel``) is cancelled. Runs until ``stop`` is set; returns jobs run.
    ``health`` is kept up to date (pass one to watch the loop). ``runner_kwargs`` go to ``JobRunner``
    (ray_address, runs_dir, model_factory, agent)."""
    if reclaim_idle_ms < MIN_RECLAIM_IDLE_MS:
        raise ValueError(
            f"reclaim_idle_ms={reclaim_idle_ms}: must be at least {MIN_RECLAIM_IDLE_MS} (shorter takes jobs from "
            "live workers that are merely busy)"
        )
    stop = stop or asyncio.Event()
    health = health or WorkerHealth(consumer)
    backoff = 0.0
    own_pending_checked = False
    try:
        while not stop.is_set():
            health.beat, health.phase, health.job_id = time.monotonic(), "idle", None
            await _publish(store, health)
            try:
                entries = [] if own_pending_checked else await store.pending_own(consumer)
                own_pending_checked = True
                entries = entries or await store.reclaim(consumer, min_idle_ms=reclaim_idle_ms)
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
        with contextlib.suppress(Exception):  # Redis gone: the beat expires by itself
            await asyncio.wait_for(store.remove_worker(consumer), 2)
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
            await _run(store, consumer, entry_id, record, health, poll_cancel_s, runner_kwargs)
    except asyncio.CancelledError:
        raise  # shutdown: the entry stays pending, another worker reclaims it
    except LeaseLost as exc:
        health.error = str(exc)
        log.warning("worker %s: %s", consumer, exc)
        return  # the job is the other worker's now: nothing to record, nothing to ack
    except Exception as exc:
        log.warning("worker %s: job %s failed: %s", consumer, job_id, _detail(exc))
        try:
            await _fail_job(store, job_id, exc)
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
    consumer: str,
    entry_id: str,
    record: JobRecord,
    health: WorkerHealth,
    poll_cancel_s: float,
    runner_kwargs: dict[str, Any],
) -> None:
    job_id = record.id
    spec = JobSpec.model_validate(record.spec | {"job_id": job_id})
    runner: JobRunner | None = None
    cancel_seen = False
    lost = False

    async def work() -> None:
        nonlocal runner
        # Off the loop the API answers on: the first job imports Ray and the agents (~1-2 s), and building
        # a job reads its whole suite (100k tasks: seconds).
        runner = await asyncio.to_thread(_build_runner, spec, store, runner_kwargs | {"worker": consumer})
        await runner.run()

    job = asyncio.create_task(work())
    ended = asyncio.Event()

    async def watch() -> None:
        # Beats, holds the entry and polls the cancel flag, also while building and until the job has
        # ended: a cancelled runner may take a while to stop, and a worker that stopped beating would look
        # dead (/healthz 503) and lose its entry to another worker. It stops when told (``ended``), not
        # by cancellation alone: a cancel that lands inside a Redis call can be swallowed there (seen with
        # redis-py 8.1: the task stays "cancelling" and loops on), and the job's end would wait forever.
        nonlocal cancel_seen, lost
        cancelling: asyncio.Task[None] | None = None
        while not ended.is_set():
            health.beat = time.monotonic()
            await _publish(store, health)
            try:
                if not await store.touch(consumer, entry_id):
                    lost = True
                    job.cancel()
                    return
                cancel_seen = cancel_seen or await store.cancel_requested(job_id)
            except Exception as exc:  # a Redis blip must not end the job; the health record says it
                health.error = f"job {job_id!r}: Redis unreachable: {_reason(exc)}"
            if cancel_seen and runner is not None and cancelling is None:
                cancelling = asyncio.create_task(runner.cancel())  # held: the loop goes on beating
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), poll_cancel_s)

    watcher = asyncio.create_task(watch())
    try:
        await job
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if lost and task is not None and not task.cancelling():  # cancelled by the watcher, not a shutdown
            raise LeaseLost(f"job {job_id!r} was taken over by another worker; dropped here") from None
        raise
    finally:
        ended.set()
        # A Redis call in flight ends within the store's socket timeout (10 s); past that, cancel it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(watcher), 15)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


__all__ = [
    "MIN_RECLAIM_IDLE_MS",
    "RECLAIM_IDLE_MS",
    "WORKER_BEAT_TTL_S",
    "LeaseLost",
    "WorkerHealth",
    "serve_jobs",
    "submit_job",
]
