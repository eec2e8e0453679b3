"""interleaf.runtime.jobs: a job's spec, its runner over Ray ``EpisodeWorker`` actors, the Redis store
and queue, and the embedded services (engine + private redis-server) a run starts when none are given.

spec = JobSpec(suite="arith", n=8)
result = await run_job(spec, backend_urls=["http://127.0.0.1:30000"])   # or JobRunner(spec).run()
await submit_job(store, spec)        # the queue: a ``serve_jobs`` worker runs it
"""

from __future__ import annotations

from interleaf.runtime.jobs.embedded import EmbeddedServices
from interleaf.runtime.jobs.queue import serve_jobs, submit_job
from interleaf.runtime.jobs.redis_server import RedisServer, RedisUnavailable
from interleaf.runtime.jobs.runner import (
    JobResult,
    JobRunner,
    JobSummary,
    ensure_ray,
    load_trajectories,
    new_job_id,
    run_job,
    summarize,
    summary_rows,
    trajectories_path,
)
from interleaf.runtime.jobs.spec import JobSpec
from interleaf.runtime.jobs.store import JobEvent, JobRecord, JobStatus, JobStore
from interleaf.runtime.jobs.workers import EpisodeWorker

__all__ = [
    "EmbeddedServices",
    "EpisodeWorker",
    "JobEvent",
    "JobRecord",
    "JobResult",
    "JobRunner",
    "JobSpec",
    "JobStatus",
    "JobStore",
    "JobSummary",
    "RedisServer",
    "RedisUnavailable",
    "ensure_ray",
    "load_trajectories",
    "new_job_id",
    "run_job",
    "serve_jobs",
    "submit_job",
    "summarize",
    "summary_rows",
    "trajectories_path",
]
