"""A client for a remote ``interleaf serve``: submit jobs, watch them, fetch their results.

What Ray's ``JobSubmissionClient`` and the LangGraph SDK's ``get_client(url).runs`` give their
users, over the routes of ``interleaf.runtime.service.api`` ([jobs-api.md](../docs/jobs-api.md))::

    from interleaf import JobsClient

    client = JobsClient("http://127.0.0.1:8080", token=None)   # token: sent as "Authorization: Bearer"
    job = client.submit(suite="arith", n=8, retention="session")
    for event in client.events(job.id):                         # follows the stream until the job ends
        print(event.type, event.episode, event.data)
    record = client.wait(job.id)
    print(client.summary(job.id).retention_text(), len(client.trajectories(job.id)))

``AsyncJobsClient`` has the same methods as coroutines (``events`` is an async iterator). Every
failure raises :class:`JobsAPIError` naming the method, the URL and the server's message (a 422 names
each bad field and value); an unreachable server says so and asks whether ``interleaf serve`` runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
from pydantic import BaseModel

from interleaf.runtime.jobs.spec import JobSpec
from interleaf.runtime.jobs.store import JobEvent, JobEventType, JobRecord, JobStatus
from interleaf.telemetry.records import Trajectory
from interleaf.telemetry.summary import JobSummary

TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
"""Statuses a job does not leave."""
_LAST_EVENTS = frozenset({JobEventType.JOB_FINISHED, JobEventType.JOB_FAILED})
"""Event kinds after which a job's stream has nothing more to say."""


class JobsAPIError(RuntimeError):
    """A jobs API call failed: the server refused it (``status``) or could not be reached (``status`` None)."""

    def __init__(self, method: str, url: str, message: str, *, status: int | None = None) -> None:
        where = f"{method} {url}"
        super().__init__(f"{where}: {status} {message}" if status is not None else f"{where}: {message}")
        self.method, self.url, self.message, self.status = method, url, message, status


class JobEventEntry(JobEvent):
    """One entry of a job's event stream as the API serves it: the event and its stream position."""

    id: str
    """Redis stream entry id; pass it as ``after`` to resume reading after this event."""


class JobSummaryReply(BaseModel):
    """``GET /v1/jobs/{id}/summary``: the figures and the table ``interleaf run`` prints."""

    summary: JobSummary
    """The job's ``JobSummary`` (figures so far for a running job)."""
    rows: list[tuple[str, str]]
    """``summary.rows()`` as the server rendered them: (label, value)."""


def _spec_body(spec: JobSpec | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of a submission: the fields the caller set. Validated by the server, not here:
    its suites, agents and limits are the ones that count (a 422 names each bad field and value)."""
    given: dict[str, Any] = {}
    if isinstance(spec, JobSpec):
        given = spec.model_dump(mode="json", exclude_unset=True)
    elif spec is not None:
        given = dict(spec)
    given.update(fields)
    return given


def _error_message(response: httpx.Response) -> str:
    """The server's words: ``error`` (422s name each field), ``detail`` (404, 409, 401), else the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    return str(body)[:500]


class _JobsAPI:
    """What the sync and async clients share: the routes, headers and how replies are read."""

    def __init__(self, url: str, token: str | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"JobsClient url={url!r}: give the server's base URL, e.g. http://127.0.0.1:8080")
        self.url = url.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def _check(self, method: str, path: str, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise JobsAPIError(method, self.url + path, _error_message(response), status=response.status_code)
        return response.json()

    def _unreachable(self, method: str, path: str, exc: httpx.HTTPError) -> JobsAPIError:
        return JobsAPIError(
            method,
            self.url + path,
            f"cannot reach the jobs API ({type(exc).__name__}: {exc}); is `interleaf serve` running there?",
        )

    @staticmethod
    def _entries(reply: dict[str, Any]) -> tuple[list[JobEventEntry], str]:
        return [JobEventEntry.model_validate(e) for e in reply["events"]], str(reply["last_id"])


class JobsClient(_JobsAPI):
    """Blocking client of a jobs API (``interleaf serve``). Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, token)
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout_s, transport=transport)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(method, path, exc) from exc
        return self._check(method, path, response)

    def submit(self, spec: JobSpec | Mapping[str, Any] | None = None, **fields: Any) -> JobRecord:
        """Submit a job (a ``JobSpec``, a mapping of its fields, and/or the fields as keywords); the
        stored ``JobRecord`` (status ``queued``)."""
        return JobRecord.model_validate(self._call("POST", "/v1/jobs", json=_spec_body(spec, fields)))

    def get(self, job_id: str) -> JobRecord:
        """The job's record: status, progress (``n_done`` of ``n_total``), error, summary."""
        return JobRecord.model_validate(self._call("GET", f"/v1/jobs/{job_id}"))

    def list(self, limit: int = 50) -> list[JobRecord]:
        """The newest jobs first."""
        return [JobRecord.model_validate(r) for r in self._call("GET", "/v1/jobs", params={"limit": limit})]

    def cancel(self, job_id: str) -> JobRecord:
        """Ask the worker to cancel the job (running episodes stop, finished results are kept)."""
        return JobRecord.model_validate(self._call("POST", f"/v1/jobs/{job_id}/cancel", json={}))

    def wait(self, job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0) -> JobRecord:
        """Poll until the job has ended (succeeded, failed or cancelled); its final record.
        ``timeout_s``: raise ``TimeoutError`` naming the job and its last status after this long."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            record = self.get(job_id)
            if record.status in TERMINAL:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id!r} still {record.status.value} after {timeout_s} s")
            time.sleep(poll_s)

    def read_events(self, job_id: str, *, after: str = "0-0", count: int = 500) -> tuple[list[JobEventEntry], str]:
        """One page of the job's events after stream position ``after``; (events, the last position)."""
        reply = self._call("GET", f"/v1/jobs/{job_id}/events", params={"after": after, "count": count})
        return self._entries(reply)

    def events(
        self, job_id: str, *, after: str = "0-0", follow: bool = True, poll_s: float = 0.5
    ) -> Iterator[JobEventEntry]:
        """The job's events in order from ``after``. ``follow``: keep reading as they arrive until the
        job has ended and its last event was read (else stop at the end of what is stored now)."""
        while True:
            entries, after = self.read_events(job_id, after=after)
            yield from entries
            if any(e.type in _LAST_EVENTS for e in entries):
                return
            if entries:
                continue
            if not follow:
                return
            if self.get(job_id).status in TERMINAL:
                # Events written between the read above and the status check come out in this read.
                entries, after = self.read_events(job_id, after=after)
                yield from entries
                return
            time.sleep(poll_s)

    def trajectories(self, job_id: str) -> list[Trajectory]:
        """The job's stored token-exact trajectories."""
        return [Trajectory.model_validate(t) for t in self._call("GET", f"/v1/jobs/{job_id}/trajectories")]

    def summary(self, job_id: str) -> JobSummary:
        """The job's ``JobSummary`` (figures so far while it runs); ``summary_reply`` adds the rows."""
        return self.summary_reply(job_id).summary

    def summary_reply(self, job_id: str) -> JobSummaryReply:
        """The summary and its table rows, as ``GET /v1/jobs/{id}/summary`` serves them."""
        return JobSummaryReply.model_validate(self._call("GET", f"/v1/jobs/{job_id}/summary"))

    def close(self) -> None:
        """Release the HTTP connections."""
        self._http.close()

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncJobsClient(_JobsAPI):
    """``JobsClient`` for asyncio: the same methods as coroutines; ``events`` is an async iterator."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout_s, transport=transport)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(method, path, exc) from exc
        return self._check(method, path, response)

    async def submit(self, spec: JobSpec | Mapping[str, Any] | None = None, **fields: Any) -> JobRecord:
        """See ``JobsClient.submit``."""
        return JobRecord.model_validate(await self._call("POST", "/v1/jobs", json=_spec_body(spec, fields)))

    async def get(self, job_id: str) -> JobRecord:
        """See ``JobsClient.get``."""
        return JobRecord.model_validate(await self._call("GET", f"/v1/jobs/{job_id}"))

    async def list(self, limit: int = 50) -> list[JobRecord]:
        """See ``JobsClient.list``."""
        return [JobRecord.model_validate(r) for r in await self._call("GET", "/v1/jobs", params={"limit": limit})]

    async def cancel(self, job_id: str) -> JobRecord:
        """See ``JobsClient.cancel``."""
        return JobRecord.model_validate(await self._call("POST", f"/v1/jobs/{job_id}/cancel", json={}))

    async def wait(self, job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0) -> JobRecord:
        """See ``JobsClient.wait``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            record = await self.get(job_id)
            if record.status in TERMINAL:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id!r} still {record.status.value} after {timeout_s} s")
            await asyncio.sleep(poll_s)

    async def read_events(
        self, job_id: str, *, after: str = "0-0", count: int = 500
    ) -> tuple[list[JobEventEntry], str]:
        """See ``JobsClient.read_events``."""
        reply = await self._call("GET", f"/v1/jobs/{job_id}/events", params={"after": after, "count": count})
        return self._entries(reply)

    async def events(
        self, job_id: str, *, after: str = "0-0", follow: bool = True, poll_s: float = 0.5
    ) -> AsyncIterator[JobEventEntry]:
        """See ``JobsClient.events``."""
        while True:
            entries, after = await self.read_events(job_id, after=after)
            for entry in entries:
                yield entry
            if any(e.type in _LAST_EVENTS for e in entries):
                return
            if entries:
                continue
            if not follow:
                return
            if (await self.get(job_id)).status in TERMINAL:
                entries, after = await self.read_events(job_id, after=after)
                for entry in entries:
                    yield entry
                return
            await asyncio.sleep(poll_s)

    async def trajectories(self, job_id: str) -> list[Trajectory]:
        """See ``JobsClient.trajectories``."""
        return [Trajectory.model_validate(t) for t in await self._call("GET", f"/v1/jobs/{job_id}/trajectories")]

    async def summary(self, job_id: str) -> JobSummary:
        """See ``JobsClient.summary``."""
        return (await self.summary_reply(job_id)).summary

    async def summary_reply(self, job_id: str) -> JobSummaryReply:
        """See ``JobsClient.summary_reply``."""
        return JobSummaryReply.model_validate(await self._call("GET", f"/v1/jobs/{job_id}/summary"))

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncJobsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = [
    "TERMINAL",
    "AsyncJobsClient",
    "JobEventEntry",
    "JobSummaryReply",
    "JobsAPIError",
    "JobsClient",
]
