"""interleaf.runtime: one subpackage per subsystem — ``engine`` (the embedded SGLang-compatible server),
``client`` (SGLang client, retention, KV budget, admission, router), ``jobs`` (spec, runner, Ray
workers, Redis store and queue), ``service`` (jobs HTTP API and dashboard).

Names are resolved lazily so ``import interleaf.runtime`` stays cheap (the engine pulls in torch).
To export a name, add it to ``_EXPORTS`` (name -> module).
"""

from __future__ import annotations

from interleaf.lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {
    # engine/: the embedded SGLang-compatible server
    "EngineConfig": "interleaf.runtime.engine.config",
    "EngineProcess": "interleaf.runtime.engine.process",
    "serve_engine": "interleaf.runtime.engine.server",
    # client/: SGLang client, retention, KV budget, admission, routing
    "BackendError": "interleaf.runtime.client",
    "BackendPool": "interleaf.runtime.client",
    "EpisodeAdmission": "interleaf.runtime.client",
    "EpisodeModel": "interleaf.runtime.client",
    "GrowthEstimate": "interleaf.runtime.client",
    "KVBudget": "interleaf.runtime.client",
    "Router": "interleaf.runtime.client",
    "SGLangBackend": "interleaf.runtime.client",
    "ToolDurationEstimator": "interleaf.runtime.client",
    # jobs/: spec, runner, Ray workers, Redis store and queue, embedded services
    "EmbeddedServices": "interleaf.runtime.jobs",
    "EpisodeWorker": "interleaf.runtime.jobs",
    "JobEvent": "interleaf.runtime.jobs",
    "JobEventType": "interleaf.runtime.jobs",
    "JobRecord": "interleaf.runtime.jobs",
    "JobResult": "interleaf.runtime.jobs",
    "JobRunner": "interleaf.runtime.jobs",
    "JobSpec": "interleaf.runtime.jobs",
    "JobStatus": "interleaf.runtime.jobs",
    "JobStore": "interleaf.runtime.jobs",
    "JobSummary": "interleaf.runtime.jobs",
    "load_trajectories": "interleaf.runtime.jobs",
    "run_job": "interleaf.runtime.jobs",
    # service/: the jobs HTTP API and dashboard
    "create_app": "interleaf.runtime.service",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
