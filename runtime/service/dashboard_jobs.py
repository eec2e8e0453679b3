"""The dashboard's job views: one job's head (record, summary, figures from its episode index) and a
comparison of 2–4 jobs side by side."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from interleaf.runtime.jobs.store import JobRecord
from interleaf.runtime.service.dashboard_charts import distribution
from interleaf.runtime.service.dashboard_index import DashboardData, filter_counts
from interleaf.runtime.service.dashboard_models import CompareJob, JobOverview
from interleaf.telemetry import JobSummary, Pattern, summarize_job

LIVE_SUMMARY_MAX_EPISODES = 2000
"""A running job's summary is recomputed from its trajectories up to this many episodes; above it the
dashboard shows the index's figures until the job's stored summary exists."""


def _summary_fields(record: JobRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": record.spec.get("retention")}
    for key in ("retention_requested", "retention_effective"):
        if record.summary and record.summary.get(key) is not None:
            out[key] = record.summary[key]
    return out


async def job_overview(data: DashboardData, job_id: str) -> JobOverview:
    """The job view's head, indexing more of the job's episodes on the way (``DashboardData.advance``)."""
    record = await data.job(job_id)
    index, total = await data.advance(record)
    if record.summary:
        rows = JobSummary.model_validate(record.summary).rows()
    elif total <= LIVE_SUMMARY_MAX_EPISODES and not index.unreadable:
        trajs = await data.store.get_trajectories(job_id)
        wall = max(0.0, (record.finished_at or time.time()) - record.started_at) if record.started_at else None
        rows = (await asyncio.to_thread(summarize_job, trajs, wall_s=wall)).rows()
    else:
        rows = None
    indexed = list(index.rows.values())
    counts = filter_counts(indexed)
    return JobOverview(
        job=record,
        summary_rows=rows,
        retention=_summary_fields(record),
        total=total,
        indexed=len(indexed),
        pte_correct=distribution([r.pte for r in indexed if r.correct is True]),
        pte_incorrect=distribution([r.pte for r in indexed if r.correct is False]),
        patterns={p.value: counts[p.value] for p in Pattern if counts.get(p.value)},
        unreadable=dict(sorted(index.unreadable.items())),
    )


async def compare_jobs(data: DashboardData, job_ids: list[str]) -> list[CompareJob]:
    """One column per job, in the order asked; 404 naming the first unknown job."""
    out = []
    for job_id in job_ids:
        record = await data.job(job_id)
        index, total = await data.advance(record)
        rows = list(index.rows.values())
        scored = [r for r in rows if r.correct is not None]
        ptes = [r.pte for r in rows if r.pte is not None]
        evict = [r.pte_evict_all for r in rows if r.pte_evict_all is not None]
        prompt = sum(r.prompt_tokens for r in rows)
        recomputed = sum(r.recomputed_tokens for r in rows)
        effective = _summary_fields(record).get("retention_effective")
        models = sorted({r.model for r in rows if r.model})
        out.append(
            CompareJob(
                id=job_id,
                status=record.status.value,
                retention=str(record.spec.get("retention")) + (f" (effective {effective})" if effective else ""),
                models=models,
                suite=str(record.spec.get("suite", "")),
                episodes=len(rows),
                total=total,
                accuracy=sum(1 for r in scored if r.correct) / len(scored) if scored else None,
                mean_pte=float(np.mean(ptes)) if ptes else None,
                mean_pte_evict_all=float(np.mean(evict)) if evict else None,
                recomputed_tokens=recomputed,
                mean_recomputed=recomputed / len(rows) if rows else None,
                hit_rate=sum(r.cached_tokens for r in rows) / prompt if prompt else None,
                mean_turns=sum(r.turns for r in rows) / len(rows) if rows else None,
                wall_s=(record.finished_at or time.time()) - record.started_at if record.started_at else None,
                jct=distribution([r.jct_s for r in rows]),
                pte=distribution(ptes),
            )
        )
    return out


__all__ = ["LIVE_SUMMARY_MAX_EPISODES", "compare_jobs", "job_overview"]
