"""interleaf.runtime: the embedded engine, the SGLang client, retention, routing, Ray workers, jobs.

Names are resolved lazily so ``import interleaf.runtime`` stays cheap (the engine pulls in torch).
To export a name, add it to ``_EXPORTS`` (name -> module).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # engine
    "EngineConfig": "interleaf.runtime.engine.config",
    "serve_engine": "interleaf.runtime.engine.server",
    "EngineProcess": "interleaf.runtime.engine.process",
    # SGLang client, retention, routing (issue 4)
    "BackendPool": "interleaf.runtime.backends",
    "SGLangBackend": "interleaf.runtime.backends",
    "BackendError": "interleaf.runtime.backends",
    "EpisodeModel": "interleaf.runtime.episode_model",
    "KVBudget": "interleaf.runtime.kv_budget",
    "EpisodeAdmission": "interleaf.runtime.admission",
    "GrowthEstimate": "interleaf.runtime.admission",
    "Router": "interleaf.runtime.router",
    "ToolDurationEstimator": "interleaf.runtime.retention",
    # jobs (issue 6)
    "JobSpec": "interleaf.runtime.jobs",
    "JobRunner": "interleaf.runtime.jobs",
    "JobResult": "interleaf.runtime.jobs",
    "JobSummary": "interleaf.runtime.jobs",
    "run_job": "interleaf.runtime.jobs",
    "summary_rows": "interleaf.runtime.jobs",
    "load_trajectories": "interleaf.runtime.jobs",
    "EpisodeWorker": "interleaf.runtime.workers",
    "JobStore": "interleaf.runtime.store",
    "JobRecord": "interleaf.runtime.store",
    "JobEvent": "interleaf.runtime.store",
    "JobStatus": "interleaf.runtime.store",
    "EmbeddedServices": "interleaf.runtime.embedded",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interleaf.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
