"""The Redis job queue: ``submit_job`` records a job and enqueues it; ``serve_jobs`` is the service
worker loop that takes jobs from the stream's consumer group and runs each with a ``JobRunner``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from interleaf.runtime.jobs.runner import JobRunner, new_job_id
from interleaf.runtime.jobs.spec import JobSpec
from interleaf.runtime.jobs.store import JobRecord, JobStatus, JobStore


async def submit_job(store: JobStore, spec: JobSpec) -> JobRecord:
    """Record a job and put it on the Redis queue; a ``serve_jobs`` worker will run it."""
    job_id = spec.job_id or new_job_id()
    spec = spec.model_copy(update={"job_id": job_id})
    record = await store.create_job(JobRecord(id=job_id, spec=spec.model_dump(mode="json"), n_total=spec.n))
    await store.enqueue(job_id)
    return record


async def serve_jobs(
    store: JobStore,
    consumer: str,
    *,
    stop: asyncio.Event | None = None,
    reclaim_idle_ms: int = 60_000,
    poll_cancel_s: float = 0.5,
    **runner_kwargs: Any,
) -> int:
    """Worker loop: take jobs from the queue (first any a crashed worker left pending for
    ``reclaim_idle_ms``), run each with a ``JobRunner``, ack it. A job whose ``cancel_requested`` flag
    is set (``JobStore.request_cancel``) is cancelled. Runs until ``stop`` is set; returns jobs run.
    ``runner_kwargs`` go to ``JobRunner`` (ray_address, runs_dir, model_factory, agent)."""
    stop = stop or asyncio.Event()
    done = 0
    while not stop.is_set():
        entries = await store.reclaim(consumer, min_idle_ms=reclaim_idle_ms)
        if not entries:
            claimed = await store.claim(consumer, block_ms=500)
            entries = [claimed] if claimed else []
        for entry_id, job_id in entries:
            record = await store.get_job(job_id)
            if record is None or record.status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
                await store.ack(entry_id)  # finished before a crash, or deleted: nothing to do
                continue
            await store.update_job(job_id, worker=consumer)
            spec = JobSpec.model_validate(record.spec | {"job_id": job_id})
            runner = JobRunner(spec, store=store, **runner_kwargs)

            async def watch(r: JobRunner = runner, j: str = job_id) -> None:
                while not await store.cancel_requested(j):
                    await asyncio.sleep(poll_cancel_s)
                await r.cancel()

            watcher = asyncio.create_task(watch())
            try:
                if record.cancel_requested:
                    await store.update_job(job_id, status=JobStatus.CANCELLED, finished_at=time.time())
                else:
                    await runner.run()
            except Exception as exc:
                await store.update_job(job_id, status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            finally:
                watcher.cancel()
            await store.ack(entry_id)
            done += 1
    return done


__all__ = ["serve_jobs", "submit_job"]
