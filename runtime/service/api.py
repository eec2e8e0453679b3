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
GET      /v1/workers                      every worker on the queue, in any process (``WorkerBeat``: phase, job, beat)
GET      /healthz                         ``Health``: Redis and the worker; 503 with the reason when either is down
=======  ===============================  ==================================================================

Jobs go on the Redis queue (``submit_job``); a worker loop (``serve_jobs``, started with the app by
``interleaf serve``, or any number of other processes) runs them on Ray. A spec without
``backend_urls`` gets the server's default backends.

What is refused, and how (every code is in the OpenAPI document, ``/openapi.json``): the front door
(``AccessGuard``: Host 400, token 401, media type 415, body size 413); a spec outside ``JobSpec`` or
the server's ``JobLimits`` → 422 naming each field, the value and the rule; an unknown job → 404; a
taken ``job_id`` → 409; Redis unreachable → 503 on every route, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

import redis.exceptions
from fastapi import Body, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from interleaf.runtime.jobs import JobSpec, serve_jobs, submit_job
from interleaf.runtime.jobs.queue import WorkerHealth
from interleaf.runtime.jobs.spec import JOB_ID_PATTERN, JobLimits
from interleaf.runtime.jobs.store import JobRecord, JobStore, WorkerBeat
from interleaf.runtime.service.access import AccessGuard, AccessPolicy
from interleaf.runtime.service.dashboard_api import dashboard_router
from interleaf.runtime.service.errors import document_errors, error_responses
from interleaf.telemetry import summarize_job

_STREAM_ID_PART_MAX = 2**64 - 1  # Redis stream ids are two unsigned 64-bit integers


class Health(BaseModel):
    """``/healthz``: 200 when Redis answers and the worker (if this process runs one) is alive, else 503."""

    ok: bool
    """Both fine."""
    redis: str
    """``ok`` or ``unreachable: <reason>``."""
    worker: str
    """``idle``, ``running <job>``, ``none (API only)``, or why it is down (``stopped: ...``,
    ``unresponsive for N s``); a problem it survived is appended after ``;``."""
    workers: int = 0
    """Workers on the queue that beat lately, in any process sharing the Redis (``/v1/workers`` lists
    them); 0 when Redis is unreachable."""


class CancelRequest(BaseModel):
    """The optional body of a cancel, ``{}``: the route takes JSON only, so a cross-site form cannot cancel."""

    model_config = ConfigDict(extra="forbid")


class EventsPage(BaseModel):
    """A page of a job's event stream."""

    events: list[dict[str, Any]]
    """``{id, type, job_id, ts, episode, data}`` per event, oldest first."""
    last_id: str
    """Pass as ``after`` to get the next page."""


class SummaryAnswer(BaseModel):
    """A job's summary figures."""

    summary: dict[str, Any]
    """``interleaf.telemetry.JobSummary`` as JSON."""
    rows: list[list[Any]]
    """``JobSummary.rows()``: ``[label, value]`` pairs, the table ``interleaf run`` prints."""


def _shown(value: Any) -> Any:
    """``value`` if it is JSON (finite numbers) and short, else its text, shortened: the 422 answer must
    always serialise (NaN, bytes of a non-JSON body)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = None
    if text is not None and len(text) <= 200:
        return value
    shown = repr(value) if text is None else text
    return shown if len(shown) <= 200 else shown[:200] + "…"


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """pydantic errors as ``{field, value, problem}``: the field by its dotted name, the value as sent."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):  # where it was, not part of its name
            loc = loc[1:]
        value, problem = _shown(err.get("input")), err.get("msg", "")
        out.append({"field": ".".join(loc) or "(body)", "value": value, "problem": problem})
    return out


def _invalid(where: str, field: str, value: Any, problem: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (where, field), "msg": problem, "input": value}])


def _check_stream_id(value: str) -> str:
    if not all(int(part) <= _STREAM_ID_PART_MAX for part in value.split("-")):
        raise _invalid("query", "after", value, f"each part of a stream id is at most {_STREAM_ID_PART_MAX}")
    return value


def dashboard_html() -> str:
    """The dashboard page (``runtime/service/dashboard/index.html``): jobs, summaries, per-episode timelines in
    which each turn is queue | prefill | decode | tool pause, with cached / recomputed tokens and the
    retention decision in the tooltip."""
    return (resources.files("interleaf.runtime.service") / "dashboard" / "index.html").read_text(encoding="utf-8")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def create_app(
    store: JobStore,
    *,
    default_backends: Sequence[str] = (),
    worker: dict[str, Any] | None = None,
    limits: JobLimits | None = None,
    access: AccessPolicy | None = None,
) -> FastAPI:
    """The API over ``store`` (the app closes it when it shuts down). ``worker``: run a ``serve_jobs``
    loop with the app, with these keyword arguments (``consumer`` name and ``JobRunner`` options);
    None: submit only (workers run elsewhere). ``limits``: what a submitted job may ask for (default
    ``JobLimits()``); ``access``: Host names, token and body size (default ``AccessPolicy()``: loopback
    names, no token, 1 MiB). The app's state holds ``worker_health`` and ``worker_task`` while it runs."""
    limits = limits or JobLimits()
    access = access or AccessPolicy()
    request_model = limits.request_model()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if worker is not None:
            options = dict(worker)
            consumer = options.pop("consumer", "api-worker")
            app.state.worker_health = health = WorkerHealth(consumer)
            task = asyncio.create_task(serve_jobs(store, consumer, stop=stop, health=health, **options))
            app.state.worker_task = task
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

    app = FastAPI(
        title="interleaf jobs",
        lifespan=lifespan,
        description="Submit, watch and cancel interleaf jobs. Errors: see each route's responses.",
    )
    app.add_middleware(AccessGuard, policy=access)
    app.state.worker_health = None
    app.state.worker_task = None

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        message = "; ".join(f"{e['field']}={e['value']!r}: {e['problem']}" for e in errors)
        return JSONResponse(status_code=422, content={"error": f"invalid request: {message}", "fields": errors})

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def redis_down(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            status_code=503, content={"detail": f"redis unreachable ({_reason(exc)}); try again when it is back"}
        )

    async def _job(job_id: str) -> JobRecord:
        record = await store.get_job(job_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id!r}")
        return record

    JobId = Path(pattern=JOB_ID_PATTERN, description="The job's id.")

    async def submit(spec: JobSpec) -> JobRecord:
        if spec.job_id is not None and await store.get_job(spec.job_id) is not None:
            raise HTTPException(status_code=409, detail=f"job_id={spec.job_id!r} already exists")
        if not spec.backend_urls and default_backends:
            spec = spec.model_copy(update={"backend_urls": list(default_backends)})
        try:
            return await submit_job(store, JobSpec.model_validate(spec.model_dump()))
        except ValueError as exc:  # created by another request since the check above
            raise HTTPException(status_code=409, detail=str(exc)) from None

    # The body's model is this server's JobSpec-with-limits (its maxima show in the OpenAPI schema).
    submit.__annotations__["spec"] = request_model
    app.post("/v1/jobs", status_code=201, responses=error_responses(409), summary="Submit a job")(submit)

    @app.get("/v1/jobs", summary="The newest jobs")
    async def jobs(limit: int = Query(50, ge=1, le=1000)) -> list[JobRecord]:
        return await store.list_jobs(limit=limit)

    @app.get("/v1/jobs/{job_id}", responses=error_responses(404), summary="One job")
    async def job(job_id: str = JobId) -> JobRecord:
        return await _job(job_id)

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202, responses=error_responses(404), summary="Cancel a job")
    async def cancel(job_id: str = JobId, _body: CancelRequest | None = Body(None)) -> JobRecord:
        await _job(job_id)
        await store.request_cancel(job_id)
        return await _job(job_id)

    @app.get("/v1/jobs/{job_id}/events", responses=error_responses(404), summary="A job's events")
    async def events(
        job_id: str = JobId,
        after: str = Query("0-0", pattern=r"^\d{1,20}-\d{1,20}$", description="Entry id to read after."),
        count: int = Query(500, ge=1, le=10_000),
    ) -> EventsPage:
        _check_stream_id(after)
        await _job(job_id)
        entries = await store.read_events(job_id, after=after, count=count)
        return EventsPage(
            events=[{"id": entry_id, **event.model_dump(mode="json")} for entry_id, event in entries],
            last_id=entries[-1][0] if entries else after,
        )

    @app.get("/v1/jobs/{job_id}/trajectories", responses=error_responses(404), summary="A job's trajectories")
    async def trajectories(job_id: str = JobId) -> JSONResponse:
        await _job(job_id)
        trajs = await store.get_trajectories(job_id)
        return JSONResponse([t.model_dump(mode="json") for t in trajs])

    @app.get("/v1/jobs/{job_id}/summary", responses=error_responses(404), summary="A job's summary")
    async def summary(job_id: str = JobId) -> SummaryAnswer:
        record = await _job(job_id)
        trajs = await store.get_trajectories(job_id)
        # Wall time so far for a running job.
        wall = max(0.0, (record.finished_at or time.time()) - record.started_at) if record.started_at else None
        figures = await asyncio.to_thread(summarize_job, trajs, wall_s=wall)
        rows = [[label, _finite(value)] for label, value in figures.rows()]
        return SummaryAnswer(summary=json.loads(figures.model_dump_json()), rows=rows)

    @app.get("/v1/workers", summary="The workers on the queue")
    async def workers() -> list[WorkerBeat]:
        return await store.list_workers()

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Redis or the worker is down (the fields say which)"}},
        summary="Health of Redis and the worker",
    )
    async def healthz() -> JSONResponse:
        n_workers = 0
        try:
            await asyncio.wait_for(store.redis.ping(), 2)
            redis_state = "ok"
            n_workers = len(await asyncio.wait_for(store.list_workers(), 2))
        except Exception as exc:
            redis_state = f"unreachable: {_reason(exc)}"
        worker_ok, worker_state = _worker_state(app.state.worker_task, app.state.worker_health, worker is not None)
        health = Health(ok=redis_state == "ok" and worker_ok, redis=redis_state, worker=worker_state, workers=n_workers)
        return JSONResponse(health.model_dump(), status_code=200 if health.ok else 503)

    app.include_router(dashboard_router(store))  # the dashboard's data routes (dashboard_api.py)

    @app.get("/", response_class=HTMLResponse, summary="The dashboard")
    async def dashboard() -> str:
        return dashboard_html()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = document_errors(doc, open_paths=("/healthz",))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _worker_state(task: asyncio.Task | None, health: WorkerHealth | None, configured: bool) -> tuple[bool, str]:
    """(alive, words) of this process's worker loop."""
    if not configured:
        return True, "none (API only)"
    if task is None or health is None:
        return False, "not started"
    if task.done():
        return False, f"stopped: {health.error or 'loop returned'}"
    if not health.alive():
        return False, f"unresponsive for {time.monotonic() - health.beat:.1f} s ({health.phase})"
    words = f"running {health.job_id}" if health.phase == "running" else health.phase
    return True, f"{words}; {health.error}" if health.error else words


__all__ = ["CancelRequest", "EventsPage", "Health", "SummaryAnswer", "create_app", "dashboard_html"]
