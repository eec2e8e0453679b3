"""The jobs HTTP API and the dashboard that reads it (``interleaf serve``).

=======  ===============================  ==================================================================
method   path                             what
=======  ===============================  ==================================================================
POST     /v1/jobs                         submit a ``JobSpec`` (JSON) → 201 ``JobRecord``; bad fields → 422
GET      /v1/jobs                         the newest jobs (``?limit=``)
GET      /v1/jobs/{id}                    one ``JobRecord`` (404 names the id)
POST     /v1/jobs/{id}/cancel             ask the worker to cancel → 202 ``JobRecord``; 409 when it has ended
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
(``AccessGuard``: Host 400, token 401, a method the path does not serve 405 with ``Allow``, media type
415, body size 413); a spec outside ``JobSpec`` or the server's ``JobLimits`` → 422 naming each field,
the value and the rule, and a body that is not JSON (malformed, not UTF-8, nested too deeply) → 422
naming ``body`` with the parser's message and position; an unknown job → 404; a taken ``job_id`` →
409 (atomic in Redis); cancelling a job that has ended → 409; Redis unreachable → 503 on every route,
with the reason. A 422 always serialises: a value UTF-8 cannot encode is shown escaped, a long one cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import re
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

import redis.exceptions
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, compile_path

from interleaf.runtime.jobs import JobSpec, serve_jobs, submit_job
from interleaf.runtime.jobs.queue import WorkerHealth
from interleaf.runtime.jobs.spec import JobLimits
from interleaf.runtime.jobs.store import (
    JobEnded,
    JobExists,
    JobRecord,
    JobStatus,
    JobStore,
    UnreadableTrajectory,
    WorkerBeat,
)
from interleaf.runtime.service.access import AccessGuard, AccessPolicy, Scope
from interleaf.runtime.service.dashboard_api import dashboard_router
from interleaf.runtime.service.errors import UNREADABLE_WHY, document_errors, error_responses
from interleaf.runtime.service.params import JobIdPath, StreamId, check_stream_id
from interleaf.telemetry import summarize_job
from interleaf.text import printable

_SHOWN_MAX = 200
"""Longest value a 422 shows (longer ones are cut, ``…`` marking the cut)."""
_SHOWN_DEPTH = 16
"""Deepest nesting of a value a 422 shows (deeper levels are ``…``)."""


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


def _clean(value: Any, depth: int = 0) -> Any:
    """``value`` with every text (keys too) as UTF-8 can carry it: a lone surrogate, which a JSON body can
    send as an escape, becomes a ``\\udXXX`` escape; nesting past ``_SHOWN_DEPTH`` becomes ``…``."""
    if isinstance(value, str):
        return printable(value)
    if depth >= _SHOWN_DEPTH and isinstance(value, list | tuple | dict):
        return "…"
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {printable(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    return value


def _shown(value: Any) -> Any:
    """``value`` as sent if it is JSON (finite numbers) and short; a long text cut to ``_SHOWN_MAX``
    characters; anything else as its JSON text or repr, cut likewise. The 422 answer must always
    serialise (NaN, the bytes of a non-JSON body, a lone surrogate, deep nesting)."""
    value = _clean(value)
    if isinstance(value, str):
        return value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "…"
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = None
    if text is not None and len(text) <= _SHOWN_MAX:
        return value
    shown = printable(repr(value)) if text is None else text
    return shown if len(shown) <= _SHOWN_MAX else shown[:_SHOWN_MAX] + "…"


def _excerpt(text: str, pos: int) -> str:
    """Up to 30 characters either side of ``pos``: where in the body the parser stopped."""
    return text[max(0, pos - 30) : pos + 30]


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """pydantic errors as ``{field, value, problem}``: the field by its dotted name, the value as sent.
    A body that is not JSON is the field ``body``, with the parser's message and position."""
    out = []
    for err in exc.errors():
        loc = [printable(str(p)) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):  # where it was, not part of its name
            loc = loc[1:]
        value, problem = err.get("input"), printable(str(err.get("msg", "")).removeprefix("Value error, "))
        if err.get("type") == "string_unicode" and isinstance(value, str):  # a key: "\\ud800" as a field name
            problem = "not valid Unicode (a lone surrogate); send UTF-8 text"
        if err.get("type") == "json_invalid":  # FastAPI's loc is ("body", <character offset>)
            doc = exc.body if isinstance(exc.body, str) else ""
            pos = int(err["loc"][-1]) if str(err["loc"][-1]).isdigit() else 0
            line, column = doc.count("\n", 0, pos) + 1, pos - doc.rfind("\n", 0, pos)
            loc, value = [], _excerpt(doc, pos)
            why = err.get("ctx", {}).get("error", "decode error")
            problem = f"not valid JSON: {why}: line {line} column {column} (char {pos})"
        out.append({"field": ".".join(loc) or "body", "value": _shown(value), "problem": problem})
    return out


def _unreadable_body(cause: BaseException) -> dict[str, Any]:
    """The field error of a body the JSON parser could not read at all (FastAPI answers these with a bare
    400 that names nothing)."""
    if isinstance(cause, UnicodeDecodeError):
        raw = cause.object if isinstance(cause.object, bytes) else b""
        shown = raw[max(0, cause.start - 30) : cause.start + 30].decode("utf-8", "backslashreplace")
        byte = f"byte 0x{raw[cause.start]:02x} " if cause.start < len(raw) else ""
        problem = f"not UTF-8 text: {byte}at position {cause.start} ({cause.reason}); send the JSON as UTF-8"
        return {"field": "body", "value": _shown(shown), "problem": problem}
    if isinstance(cause, RecursionError):
        problem = "JSON nested too deeply to read (arrays or objects nested hundreds of levels deep)"
        return {"field": "body", "value": None, "problem": problem}
    return {
        "field": "body",
        "value": None,
        "problem": f"cannot be read: {printable(f'{type(cause).__name__}: {cause}')}",
    }


def _invalid_answer(errors: list[dict[str, Any]]) -> JSONResponse:
    message = "; ".join(f"{e['field']}={e['value']!r}: {e['problem']}" for e in errors)
    return JSONResponse(status_code=422, content={"error": f"invalid request: {message}", "fields": errors})


def _invalid(where: str, field: str, value: Any, problem: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (where, field), "msg": problem, "input": value}])


def route_methods(routes: Sequence[BaseRoute], scope: Scope) -> frozenset[str] | None:
    """The methods ``routes`` serve at the request's path when none serves its method (the ``Allow`` of a
    405); None when a route serves the request, or none has its path (a 404). Included routers count,
    with their prefixes (FastAPI's own walk, as its OpenAPI document is made)."""
    path, method = scope.get("path", ""), scope.get("method", "GET")
    allowed: set[str] = set()
    for context in iter_route_contexts(routes):
        if not _path_regex(context.path_format).match(path):
            continue
        methods = set(context.methods or ())
        if not methods or method in methods:
            return None
        allowed |= methods
    return frozenset(allowed) or None


@functools.lru_cache(maxsize=256)
def _path_regex(path_format: str) -> re.Pattern[str]:
    regex, _format, _convertors = compile_path(path_format)
    return regex


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
                    # Bounded: a cancel landing inside a Redis call can be swallowed there (redis-py 8.1), and the
                    # worker then ends only with its job; the process's own shutdown stops what is left.
                    await asyncio.wait({task}, timeout=30)
            await store.aclose()  # in the loop its connections belong to

    app = FastAPI(
        title="interleaf jobs",
        lifespan=lifespan,
        description="Submit, watch and cancel interleaf jobs. Errors: see each route's responses.",
    )
    app.add_middleware(AccessGuard, policy=access, route_methods=lambda scope: route_methods(app.routes, scope))
    app.state.worker_health = None
    app.state.worker_task = None

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid_answer(_field_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse | Any:
        # FastAPI answers a body its JSON parser cannot read (not UTF-8, nested too deeply) with a bare
        # 400 raised from the parser's error: answer it as the malformed JSON it is, naming the body.
        if exc.status_code == 400 and exc.__cause__ is not None:
            return _invalid_answer([_unreadable_body(exc.__cause__)])
        return await http_exception_handler(request, exc)

    @app.exception_handler(UnreadableTrajectory)
    async def unreadable(_request: Request, exc: UnreadableTrajectory) -> JSONResponse:
        # The request is fine and the data is kept; this version cannot read what another one stored.
        return JSONResponse(status_code=409, content={"detail": str(exc)})

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

    async def submit(spec: JobSpec) -> JobRecord:
        if not spec.backend_urls and default_backends:
            spec = spec.model_copy(update={"backend_urls": list(default_backends)})
        spec = JobSpec.model_validate(spec.model_dump())
        try:
            return await submit_job(store, spec)
        except JobExists as exc:  # atomic in Redis: of concurrent submits of one id, one gets here first
            raise HTTPException(status_code=409, detail=str(exc)) from None

    # The body's model is this server's JobSpec-with-limits (its maxima show in the OpenAPI schema).
    submit.__annotations__["spec"] = request_model
    app.post("/v1/jobs", status_code=201, responses=error_responses(409), summary="Submit a job")(submit)

    @app.get("/v1/jobs", summary="The newest jobs")
    async def jobs(limit: int = Query(50, ge=1, le=1000)) -> list[JobRecord]:
        return await store.list_jobs(limit=limit)

    @app.get("/v1/jobs/{job_id}", responses=error_responses(404), summary="One job")
    async def job(job_id: JobIdPath) -> JobRecord:
        return await _job(job_id)

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        status_code=202,
        responses=error_responses(404, 409, why={409: "the job has already ended (its status is named)"}),
        summary="Cancel a job",
    )
    async def cancel(job_id: JobIdPath, _body: CancelRequest | None = Body(None)) -> JobRecord:
        record = await _job(job_id)
        try:
            if record.status in _ENDED:  # also a record that cannot be read (it reads as failed)
                raise JobEnded(job_id, record.status.value)
            if not await store.request_cancel(job_id):  # checks the status again, atomically with the flag
                raise HTTPException(status_code=404, detail=f"no job with id {job_id!r}")
        except JobEnded as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return await _job(job_id)

    @app.get("/v1/jobs/{job_id}/events", responses=error_responses(404), summary="A job's events")
    async def events(
        job_id: JobIdPath, after: StreamId = "0-0", count: int = Query(500, ge=1, le=10_000)
    ) -> EventsPage:
        problem = check_stream_id(after)
        if problem is not None:
            raise _invalid("query", "after", after, problem)
        await _job(job_id)
        entries = await store.read_events(job_id, after=after, count=count)
        return EventsPage(
            events=[{"id": entry_id, **event.model_dump(mode="json")} for entry_id, event in entries],
            last_id=entries[-1][0] if entries else after,
        )

    @app.get(
        "/v1/jobs/{job_id}/trajectories",
        responses=error_responses(404, 409, why={409: UNREADABLE_WHY}),
        summary="A job's trajectories",
    )
    async def trajectories(job_id: JobIdPath) -> JSONResponse:
        await _job(job_id)
        trajs = await store.get_trajectories(job_id)
        return JSONResponse([t.model_dump(mode="json") for t in trajs])

    @app.get(
        "/v1/jobs/{job_id}/summary",
        responses=error_responses(404, 409, why={409: UNREADABLE_WHY}),
        summary="A job's summary",
    )
    async def summary(job_id: JobIdPath) -> SummaryAnswer:
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


_ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


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


__all__ = ["CancelRequest", "EventsPage", "Health", "SummaryAnswer", "create_app", "dashboard_html", "route_methods"]
