"""The jobs HTTP API and the dashboard that reads it (``interleaf serve``).

=======  ===============================  ==================================================================
method   path                             what
=======  ===============================  ==================================================================
POST     /v1/jobs                         submit a ``JobSpec`` (JSON) → 201 ``JobRecord``; bad fields → 422
GET      /v1/jobs                         the newest jobs (``?limit=``)
GET      /v1/jobs/{id}                    one ``JobRecord`` (404 names the id)
POST     /v1/jobs/{id}/cancel             ask the worker to cancel → 202 ``JobRecord``
GET      /v1/jobs/{id}/events             the job's event stream after ``?after=<entry id>`` (``count``)
GET      /v1/jobs/{id}/trajectories       the stored trajectories (token-exact, per turn timings and cache)
GET      /v1/jobs/{id}/summary            summary figures and rows (PTE, patterns, hit rate, ...)
GET      /                                the dashboard (one HTML page over the routes above)
GET      /healthz                         ``{"ok": true}`` when Redis answers
=======  ===============================  ==================================================================

Jobs go on the Redis queue (``submit_job``); a worker loop (``serve_jobs``, started with the app by
``interleaf serve``, or any number of other processes) runs them on Ray. A spec without
``backend_urls`` gets the server's default backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from interleaf.runtime.jobs import JobSpec, serve_jobs, submit_job
from interleaf.runtime.jobs.store import JobRecord, JobStore
from interleaf.runtime.service.dashboard_api import dashboard_router
from interleaf.telemetry import summarize_job


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """pydantic errors as ``{field, value, problem}``: the field by its dotted name, the value as sent."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or "(body)", "value": err.get("input"), "problem": err.get("msg", "")})
    return out


def dashboard_html() -> str:
    """The dashboard page (``runtime/service/dashboard/index.html``): jobs, summaries, per-episode timelines in
    which each turn is queue | prefill | decode | tool pause, with cached / recomputed tokens and the
    retention decision in the tooltip."""
    return (resources.files("interleaf.runtime.service") / "dashboard" / "index.html").read_text(encoding="utf-8")


def create_app(
    store: JobStore,
    *,
    default_backends: Sequence[str] = (),
    worker: dict[str, Any] | None = None,
) -> FastAPI:
    """The API over ``store`` (the app closes it when it shuts down). ``worker``: run a ``serve_jobs``
    loop with the app, with these keyword arguments (``consumer`` name and ``JobRunner`` options);
    None: submit only (workers run elsewhere)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if worker is not None:
            options = dict(worker)
            consumer = options.pop("consumer", "api-worker")
            task = asyncio.create_task(serve_jobs(store, consumer, stop=stop, **options))
        try:
            yield
        finally:
            stop.set()  # the worker stops between jobs; a job still running after 5 s is cancelled
            if task is not None:
                _, running = await asyncio.wait({task}, timeout=5)
                if running:
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await store.aclose()  # in the loop its connections belong to

    app = FastAPI(title="interleaf jobs", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        message = "; ".join(f"{e['field']}={e['value']!r}: {e['problem']}" for e in errors)
        return JSONResponse(status_code=422, content={"error": f"invalid request: {message}", "fields": errors})

    async def _job(job_id: str) -> JobRecord:
        record = await store.get_job(job_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id!r}")
        return record

    @app.post("/v1/jobs", status_code=201)
    async def submit(spec: JobSpec) -> JobRecord:
        if spec.job_id is not None and await store.get_job(spec.job_id) is not None:
            raise HTTPException(status_code=409, detail=f"job_id={spec.job_id!r} already exists")
        if not spec.backend_urls and default_backends:
            spec = spec.model_copy(update={"backend_urls": list(default_backends)})
        return await submit_job(store, spec)

    @app.get("/v1/jobs")
    async def jobs(limit: int = Query(50, ge=1, le=1000)) -> list[JobRecord]:
        return await store.list_jobs(limit=limit)

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str) -> JobRecord:
        return await _job(job_id)

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202)
    async def cancel(job_id: str) -> JobRecord:
        await _job(job_id)
        await store.request_cancel(job_id)
        return await _job(job_id)

    @app.get("/v1/jobs/{job_id}/events")
    async def events(
        job_id: str, after: str = Query("0-0", pattern=r"^\d+-\d+$"), count: int = Query(500, ge=1, le=10_000)
    ) -> dict[str, Any]:
        await _job(job_id)
        entries = await store.read_events(job_id, after=after, count=count)
        return {
            "events": [{"id": entry_id, **event.model_dump(mode="json")} for entry_id, event in entries],
            "last_id": entries[-1][0] if entries else after,
        }

    @app.get("/v1/jobs/{job_id}/trajectories")
    async def trajectories(job_id: str) -> JSONResponse:
        await _job(job_id)
        trajs = await store.get_trajectories(job_id)
        return JSONResponse([t.model_dump(mode="json") for t in trajs])

    @app.get("/v1/jobs/{job_id}/summary")
    async def summary(job_id: str) -> dict[str, Any]:
        record = await _job(job_id)
        trajs = await store.get_trajectories(job_id)
        # Wall time so far for a running job.
        wall = max(0.0, (record.finished_at or time.time()) - record.started_at) if record.started_at else None
        figures = summarize_job(trajs, wall_s=wall)
        return {"summary": figures.model_dump(mode="json"), "rows": [list(r) for r in figures.rows()]}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        try:
            await store.redis.ping()
        except Exception as exc:
            raise HTTPException(status_code=503, detail=f"redis unreachable: {exc}") from exc
        return {"ok": True}

    app.include_router(dashboard_router(store))  # the dashboard's data routes (dashboard_api.py)

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> str:
        return dashboard_html()

    return app


__all__ = ["create_app", "dashboard_html"]
