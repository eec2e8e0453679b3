"""Jobs in Redis: job records, the job queue (a Stream with a consumer group), per-job event streams,
trajectories and summaries (DESIGN §8).

Keys (``prefix`` defaults to ``interleaf``):

=============================  ======  ==========================================================
key                            type    holds
=============================  ======  ==========================================================
``{p}:jobs``                   zset    job ids by creation time
``{p}:job:{id}``               hash    the ``JobRecord`` fields (``spec`` and ``summary`` as JSON)
``{p}:job:{id}:trajectories``  hash    episode index -> compact trajectory JSON (one per episode:
                                       a retried episode overwrites, never duplicates)
``{p}:job:{id}:events``        stream  ``JobEvent`` entries (SSE, dashboard, progress)
``{p}:queue``                  stream  submitted job ids; consumer group ``{p}-workers``
=============================  ======  ==========================================================

The queue is at-least-once: a worker reads with XREADGROUP, acks when the job is finished, and
pending entries of a crashed worker are reclaimed with XAUTOCLAIM after ``min_idle_ms``.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from interleaf.telemetry.records import Trajectory

# The serialised trajectory is telemetry's (it owns the record schema); re-exported here for the
# worker, which returns trajectories to the runner in this form.
from interleaf.telemetry.trajectory_file import dump_trajectory, load_trajectory


class JobStatus(StrEnum):
    """Lifecycle of a job."""

    QUEUED = "queued"
    """Submitted, waiting for a worker."""
    RUNNING = "running"
    """A runner is executing its episodes."""
    SUCCEEDED = "succeeded"
    """Every episode has a result (whatever the scores)."""
    FAILED = "failed"
    """The job could not run to the end (``JobRecord.error`` says why)."""
    CANCELLED = "cancelled"
    """Cancelled by a user; finished episodes keep their results."""


class JobRecord(BaseModel):
    """A job as stored in Redis."""

    id: str
    """Job id."""
    spec: dict[str, Any]
    """The ``JobSpec`` as submitted (JSON object)."""
    status: JobStatus = JobStatus.QUEUED
    """Where the job is in its lifecycle."""
    created_at: float = Field(default_factory=time.time)
    """Unix time of submission."""
    started_at: float | None = None
    """Unix time the runner started."""
    finished_at: float | None = None
    """Unix time the job ended (any final status)."""
    n_total: int = 0
    """Episodes in the job."""
    n_done: int = 0
    """Episodes with a stored result."""
    n_correct: int = 0
    """Episodes judged correct."""
    error: str | None = None
    """Why the job failed, when it did."""
    output_path: str | None = None
    """The JSONL export of the trajectories."""
    summary: dict[str, Any] | None = None
    """The job summary (``interleaf.telemetry.JobSummary`` as JSON) once finished."""
    cancel_requested: bool = False
    """Set by ``JobStore.request_cancel``; the worker running the job cancels it."""
    worker: str | None = None
    """Consumer name of the worker that took the job from the queue."""


class JobEventType(StrEnum):
    """The kinds of entry in a job's event stream; ``JobEvent.data`` holds the keys named here."""

    JOB_STARTED = "job_started"
    """The actors are up and the episodes queued: ``n_total``, ``actors``."""
    EPISODE_STARTED = "episode_started"
    """An episode was sent to an actor: ``attempt``, ``worker`` (actor index)."""
    EPISODE_FINISHED = "episode_finished"
    """An episode's result was stored: ``attempt``, ``termination``, ``score``, ``turns``."""
    EPISODE_RETRIED = "episode_retried"
    """An attempt failed and the episode runs again: ``attempt`` (the failed one), ``reason``."""
    WORKER_RESTARTED = "worker_restarted"
    """A dead actor was replaced: ``worker`` (actor index), ``reason``."""
    JOB_CANCELLED = "job_cancelled"
    """Cancellation began: no new episodes, running ones are being cancelled (no data)."""
    JOB_FINISHED = "job_finished"
    """The job ended, succeeded or cancelled: ``status``."""
    JOB_FAILED = "job_failed"
    """The job could not run to the end: ``status``; ``error`` when the worker ended it (bad spec, suite
    not buildable, the runner raised)."""


class JobEvent(BaseModel):
    """One entry of a job's event stream (stored as JSON; ``type`` is the kind's string)."""

    type: JobEventType
    """What happened; the kind also says which keys ``data`` holds."""
    job_id: str
    """The job."""
    ts: float = Field(default_factory=time.time)
    """Unix time of the event."""
    episode: int | None = None
    """Episode index, for episode events."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Event details, by kind (see ``JobEventType``)."""


_HASH_JSON_FIELDS = ("spec", "summary")


def _to_hash(record: JobRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in record.model_dump(mode="json").items():
        if value is None:
            continue
        out[key] = json.dumps(value) if key in _HASH_JSON_FIELDS else str(value)
    return out


def _from_hash(raw: dict[str, str]) -> JobRecord:
    data: dict[str, Any] = dict(raw)
    for key in _HASH_JSON_FIELDS:
        if key in data:
            data[key] = json.loads(data[key])
    return JobRecord.model_validate(data)


class JobStore:
    """Async access to interleaf's Redis keys. One per process (or per actor); cheap to create."""

    def __init__(self, redis_url: str, *, prefix: str = "interleaf") -> None:
        self.url = redis_url
        self.prefix = prefix
        # Timeouts so that a Redis that stops answering fails calls (the API answers 503, the worker
        # retries) instead of hanging them; the longest blocking read here is the queue's 1 s.
        self.redis = aioredis.from_url(redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10)
        self.group = f"{prefix}-workers"

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> JobStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- job records -------------------------------------------------------------------------

    async def create_job(self, record: JobRecord) -> JobRecord:
        """Store a new job record (fails if the id exists)."""
        key = self._key("job", record.id)
        if await self.redis.exists(key):
            raise ValueError(f"job id {record.id!r} already exists; pick another id or omit it")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=_to_hash(record))
            pipe.zadd(self._key("jobs"), {record.id: record.created_at})
            await pipe.execute()
        return record

    async def get_job(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.hgetall(self._key("job", job_id))
        return _from_hash(raw) if raw else None

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Set fields of a job record (values as ``JobRecord`` would hold them)."""
        mapping = {}
        for key, value in fields.items():
            if key not in JobRecord.model_fields:
                raise ValueError(f"JobRecord has no field {key!r}; fields: {sorted(JobRecord.model_fields)}")
            if value is None:
                await self.redis.hdel(self._key("job", job_id), key)
                continue
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            mapping[key] = json.dumps(value) if key in _HASH_JSON_FIELDS else str(value)
        if mapping:
            await self.redis.hset(self._key("job", job_id), mapping=mapping)

    async def request_cancel(self, job_id: str) -> bool:
        """Ask whoever runs the job to cancel it; False when there is no such job."""
        key = self._key("job", job_id)
        if not await self.redis.exists(key):
            return False
        await self.redis.hset(key, "cancel_requested", "True")
        return True

    async def cancel_requested(self, job_id: str) -> bool:
        return await self.redis.hget(self._key("job", job_id), "cancel_requested") == "True"

    async def list_jobs(self, limit: int = 100) -> list[JobRecord]:
        """Most recent jobs first."""
        ids = await self.redis.zrevrange(self._key("jobs"), 0, limit - 1)
        records = [await self.get_job(i) for i in ids]
        return [r for r in records if r is not None]

    # -- trajectories ------------------------------------------------------------------------

    async def put_trajectory(self, traj: Trajectory) -> bool:
        """Store ``traj`` as the result of (job, episode); True if it is the first result for that
        episode. A later attempt replaces an earlier one (idempotent per episode)."""
        key = self._key("job", traj.job_id, "trajectories")
        created = await self.redis.hset(key, str(traj.episode), dump_trajectory(traj))
        return bool(created)

    async def get_trajectories(self, job_id: str) -> list[Trajectory]:
        """All stored trajectories of a job, by episode index."""
        raw = await self.redis.hgetall(self._key("job", job_id, "trajectories"))
        return [load_trajectory(raw[k]) for k in sorted(raw, key=int)]

    async def count_trajectories(self, job_id: str) -> int:
        return int(await self.redis.hlen(self._key("job", job_id, "trajectories")))

    # -- events ------------------------------------------------------------------------------

    async def add_event(self, event: JobEvent, *, maxlen: int = 100_000) -> str:
        """Append to the job's event stream; returns the entry id."""
        return await self.redis.xadd(
            self._key("job", event.job_id, "events"),
            {"event": event.model_dump_json()},
            maxlen=maxlen,
            approximate=True,
        )

    async def read_events(
        self, job_id: str, *, after: str = "0-0", block_ms: int | None = None, count: int = 1000
    ) -> list[tuple[str, JobEvent]]:
        """Events after entry id ``after`` (``"$"`` for only new ones when blocking)."""
        key = self._key("job", job_id, "events")
        result = await self.redis.xread({key: after}, block=block_ms, count=count)
        out = []
        for _stream, entries in result or []:
            for entry_id, fields in entries:
                out.append((entry_id, JobEvent.model_validate_json(fields["event"])))
        return out

    # -- queue -------------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self._key("queue"), self.group, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, job_id: str) -> str:
        """Put a job on the queue; returns the stream entry id."""
        await self._ensure_group()
        return await self.redis.xadd(self._key("queue"), {"job_id": job_id})

    async def claim(self, consumer: str, *, block_ms: int = 1000) -> tuple[str, str] | None:
        """Take the next queued job for ``consumer``: ``(entry_id, job_id)``, or None after ``block_ms``."""
        await self._ensure_group()
        result = await self.redis.xreadgroup(self.group, consumer, {self._key("queue"): ">"}, count=1, block=block_ms)
        for _stream, entries in result or []:
            for entry_id, fields in entries:
                return entry_id, fields["job_id"]
        return None

    async def reclaim(self, consumer: str, *, min_idle_ms: int = 60_000) -> list[tuple[str, str]]:
        """Take over queue entries another consumer read but never acked (it crashed)."""
        await self._ensure_group()
        _next, entries, *_ = await self.redis.xautoclaim(
            self._key("queue"), self.group, consumer, min_idle_time=min_idle_ms, start_id="0-0"
        )
        return [(entry_id, fields["job_id"]) for entry_id, fields in entries if fields]

    async def ack(self, entry_id: str) -> None:
        """The job of ``entry_id`` is finished (whatever its status)."""
        await self.redis.xack(self._key("queue"), self.group, entry_id)


__all__ = ["JobEvent", "JobEventType", "JobRecord", "JobStatus", "JobStore", "dump_trajectory", "load_trajectory"]
