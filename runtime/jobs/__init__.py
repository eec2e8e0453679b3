"""interleaf.runtime.jobs: a job's spec, its runner over Ray ``EpisodeWorker`` actors, the Redis store
and queue, and the embedded services (engine + private redis-server) a run starts when none are given.

spec = JobSpec(suite="arith", n=8)
result = await run_job(spec, backend_urls=["http://127.0.0.1:30000"])   # or JobRunner(spec).run()
await submit_job(store, spec)        # the queue: a ``serve_jobs`` worker runs it
"""

from __future__ import annotations

from interleaf.lazy_exports import lazy_exports

# Resolved lazily so that reading a ``JobSpec`` (the CLI's options, the API's validation) does not start
# up Ray: the runner and the workers import it.
_EXPORTS: dict[str, str] = {
    "EmbeddedServices": "interleaf.runtime.jobs.embedded",
    "EpisodeWorker": "interleaf.runtime.jobs.workers",
    "JobEnded": "interleaf.runtime.jobs.store",
    "JobEvent": "interleaf.runtime.jobs.store",
    "JobEventType": "interleaf.runtime.jobs.store",
    "JobExists": "interleaf.runtime.jobs.store",
    "JobLimits": "interleaf.runtime.jobs.spec",
    "JobRecord": "interleaf.runtime.jobs.store",
    "JobResult": "interleaf.runtime.jobs.runner",
    "JobRunner": "interleaf.runtime.jobs.runner",
    "JobSpec": "interleaf.runtime.jobs.spec",
    "JobStatus": "interleaf.runtime.jobs.store",
    "JobStore": "interleaf.runtime.jobs.store",
    "LeaseLost": "interleaf.runtime.jobs.queue",
    "RedisServer": "interleaf.runtime.jobs.redis_server",
    "RedisUnavailable": "interleaf.runtime.jobs.redis_server",
    "ServerSample": "interleaf.runtime.jobs.store",
    "UnreadableTrajectory": "interleaf.runtime.jobs.store",
    "WorkerBeat": "interleaf.runtime.jobs.store",
    "WorkerHealth": "interleaf.runtime.jobs.queue",
    "ensure_ray": "interleaf.runtime.jobs.runner",
    "ensure_ray_async": "interleaf.runtime.jobs.runner",
    "new_job_id": "interleaf.runtime.jobs.runner",
    "run_job": "interleaf.runtime.jobs.runner",
    "serve_jobs": "interleaf.runtime.jobs.queue",
    "submit_job": "interleaf.runtime.jobs.queue",
    "trajectories_path": "interleaf.runtime.jobs.runner",
    # Telemetry owns both (DESIGN §2); re-exported because a ``JobResult`` carries the summary and its
    # ``output_path`` is a trajectory file.
    "JobSummary": "interleaf.telemetry.summary",
    "load_trajectories": "interleaf.telemetry.trajectory_file",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
