"""The dashboard's data routes: one page of a job's episodes (sorted, filtered), one episode with its
per-turn costs and pattern evidence, the servers' KV over the job's time, and a comparison of jobs.

=======  ================================================  =====================================================
method   path                                              what
=======  ================================================  =====================================================
GET      /v1/dashboard/jobs/{id}                           record, summary rows, PTE of correct vs incorrect
GET      /v1/dashboard/jobs/{id}/episodes                  one page of episode rows (``offset``, ``limit``,
                                                           ``sort``, ``order``, ``filter``, ``pattern``)
GET      /v1/dashboard/jobs/{id}/episodes/{episode}        one episode: turns, tool calls, per-turn cost, findings
GET      /v1/dashboard/jobs/{id}/servers                   per backend: held KV and in-flight KV over time,
                                                           budget, hit rate, admission waits, failovers
GET      /v1/dashboard/compare?jobs=a&jobs=b               2–4 jobs side by side (accuracy, PTE, JCT, recompute)
GET      /dashboard/{file}                                 the vendored charting library (uPlot) and its CSS
=======  ================================================  =====================================================

A job id in a path or in ``jobs`` is checked against ``JOB_ID_PATTERN`` (``params.JobIdPath``, as on
``/v1/jobs/...``): 422 naming it, so ``first-job:events`` never names another Redis key.

Large jobs stay responsive because nothing here sends all trajectories: a page fetches only its
episodes (``HMGET``), and sorting, filtering and the job-level figures read a per-job episode index
kept in this process (``dashboard_index.py``). This module declares the routes (paths, parameters,
status codes); each view is computed in the module named after it: ``dashboard_jobs.py`` (a job's
head, the comparison), ``dashboard_episodes.py`` (the table's page, one episode),
``dashboard_servers.py``; their response models are in ``dashboard_models.py``.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from interleaf.runtime.jobs.spec import JobId
from interleaf.runtime.jobs.store import JobStore
from interleaf.runtime.service.dashboard_episodes import episode_detail, episode_page
from interleaf.runtime.service.dashboard_index import DashboardData
from interleaf.runtime.service.dashboard_jobs import compare_jobs, job_overview
from interleaf.runtime.service.dashboard_models import (
    CompareJob,
    EpisodeDetail,
    EpisodeFilter,
    EpisodePage,
    JobOverview,
    ServersView,
    SortKey,
)
from interleaf.runtime.service.dashboard_servers import servers_view
from interleaf.runtime.service.errors import error_responses
from interleaf.runtime.service.params import JobIdPath
from interleaf.telemetry import Pattern

_STATIC = {"uPlot.iife.min.js": "text/javascript", "uPlot.min.css": "text/css"}


def dashboard_router(store: JobStore) -> APIRouter:
    """The dashboard's data routes over ``store`` (see the module docstring), for ``include_router``."""
    data = DashboardData(store)
    router = APIRouter(tags=["dashboard"])

    @router.get("/v1/dashboard/jobs/{job_id}", responses=error_responses(404))
    async def overview(job_id: JobIdPath) -> JobOverview:
        return await job_overview(data, job_id)

    @router.get("/v1/dashboard/jobs/{job_id}/episodes", responses=error_responses(404))
    async def episodes(
        job_id: JobIdPath,
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=200),
        sort: SortKey = "episode",
        order: Literal["asc", "desc"] = "asc",
        filter: EpisodeFilter = "all",
        pattern: Pattern | None = None,
    ) -> EpisodePage:
        return await episode_page(
            data, job_id, offset=offset, limit=limit, sort=sort, order=order, filt=filter, pattern=pattern
        )

    @router.get("/v1/dashboard/jobs/{job_id}/episodes/{episode}", responses=error_responses(404))
    async def episode(job_id: JobIdPath, episode: int) -> EpisodeDetail:
        return await episode_detail(data, job_id, episode)

    @router.get("/v1/dashboard/jobs/{job_id}/servers", responses=error_responses(404))
    async def servers(job_id: JobIdPath) -> ServersView:
        return await servers_view(data, job_id)

    @router.get("/v1/dashboard/compare", responses=error_responses(404))
    async def compare(jobs: Annotated[list[JobId], Query(min_length=2, max_length=4)]) -> list[CompareJob]:
        return await compare_jobs(data, jobs)

    @router.get("/dashboard/{name}", responses=error_responses(404))
    async def static(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(status_code=404, detail=f"no dashboard file {name!r}; files: {sorted(_STATIC)}")
        body = (resources.files("interleaf.runtime.service") / "dashboard" / name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"cache-control": "max-age=3600"})

    return router


__all__ = ["DashboardData", "dashboard_router"]
