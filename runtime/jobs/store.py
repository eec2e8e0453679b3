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
``{p}:workers``                zset    worker (consumer) names by their last beat (unix time)
``{p}:worker:{name}``          string  the worker's last ``WorkerBeat`` (JSON), expires unless beaten
=============================  ======  ==========================================================

The queue is at-least-once: a worker reads with XREADGROUP, acks when the job is finished, and
pending entries of a crashed worker are reclaimed with XAUTOCLAIM after ``min_idle_ms``. A worker
holds its entry like a lease: it ``touch``-es it while the job runs (resetting the entry's idle
time), so only an entry whose worker stopped touching it (killed, hung, cut off from Redis) goes
idle long enough to be reclaimed; a worker whose entry was taken over learns it from ``touch``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, Field, ValidationError

from interleaf.telemetry.records import Trajectory

# The serialised trajectory is telemetry's (it owns the record schema); re-exported here for the
# worker, which returns trajectories to the runner in this form.
from interleaf.telemetry.trajectory_file import describe_errors, dump_trajectory, load_trajectory
from interleaf.text import printable

REASON_MAX = 300
"""Longest ``JobRecord.error`` written: one line (``interleaf jobs status`` and ``logs`` print it); the full
text goes to the log and the ``job_failed`` event's ``detail``."""


def error_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` (just the type when the message is empty), as text UTF-8 can hold.
    An error raised inside a Ray task or actor is told by the error it raised there: Ray's own message
    starts with a coloured header (task, pid, ip, actor id) and carries the remote traceback, and its first
    line, all ``one_line`` keeps, would name none of the cause."""
    cause = _ray_task_cause(exc)
    if cause is not None:
        return f"{type(exc).__name__}: {error_text(cause).partition(': ')[2] or type(cause).__name__}"
    text = str(exc).strip()
    return printable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_story(exc: BaseException) -> str:
    """``exc``'s whole text (a Ray error's remote traceback kept, its colour codes dropped), as text UTF-8 can
    hold: what a ``job_failed`` event's ``detail`` keeps beside the record's one-line ``error_text``."""
    text = _ANSI.sub("", str(exc)).strip()
    return printable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _ray_task_cause(exc: BaseException) -> BaseException | None:
    """The exception a Ray task raised, when ``exc`` is Ray's report of it (``RayTaskError(<cause type>)``)."""
    if "ray" not in sys.modules:  # only Ray makes these; this module does not start it
        return None
    from ray.exceptions import RayTaskError

    return exc.cause if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException) else None


def one_line(text: str, limit: int = REASON_MAX) -> str:
    """The first line of ``text``, at most ``limit`` characters; `` …`` marks a cut or more lines."""
    lines = text.strip().splitlines() or [""]
    first = lines[0].strip()
    if len(first) > limit or len(lines) > 1:
        return first[: limit - 2] + " …"
    return first


class JobExists(ValueError):
    """``JobStore.create_job``: a job with this id is stored already (the API answers 409)."""


class JobEnded(ValueError):
    """``JobStore.request_cancel``: the job has ended (succeeded, failed or cancelled); nothing changed."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} has already ended ({status}): there is nothing to cancel")
        self.job_id, self.status = job_id, status


class UnreadableTrajectory(ValueError):
    """A stored trajectory this version cannot read (written by another interleaf version, or altered in
    Redis). Nothing is changed: the stored text stays as it is."""

    def __init__(self, job_id: str, episode: int, reason: str) -> None:
        super().__init__(
            f"the stored trajectory of job {job_id!r} episode {episode} cannot be read ({reason}); read it with the "
            "interleaf version that wrote it, or delete that episode from the Redis hash to run it again"
        )
        self.job_id, self.episode, self.reason = job_id, episode, reason


def read_stored_trajectory(job_id: str, episode: int, raw: str | bytes) -> Trajectory:
    """A stored trajectory (``JobStore.get_trajectories_raw``'s text) as a ``Trajectory``; ``UnreadableTrajectory``
    naming the job, the episode and the first problem when it cannot be read."""
    try:
        return load_trajectory(raw)
    except ValidationError as exc:  # not JSON, or not a Trajectory of this version's schema
        raise UnreadableTrajectory(job_id, episode, one_line(describe_errors(exc), 300)) from None
    except ValueError as exc:
        raise UnreadableTrajectory(job_id, episode, one_line(error_text(exc), 300)) from None


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
    """Why the job failed, when it did: one line of at most ``REASON_MAX`` characters (the ``job_failed``
    event's ``detail`` has the whole text)."""
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
    """A dead actor was replaced: ``worker`` (actor index), ``reason``, ``placements`` (actors started
    until one was prepared: more than 1 when a replacement landed on a node not yet known dead)."""
    JOB_RESUMED = "job_resumed"
    """A worker took over a job that had started before (its worker was killed, or ``interleaf serve``
    restarted) and runs the episodes without a stored result: ``n_total``, ``n_done`` (episodes kept,
    not run again), ``actors``, ``worker`` (consumer name)."""
    CAPABILITY_MISSING = "capability_missing"
    """A server lacks what the job asked for and runs a fallback (``CapabilityGap``): ``message`` (one
    line: server, capability, the flag that enables it, the fallback), ``server``, ``capability``,
    ``server_flag``, ``requested``, ``effective``."""
    SERVERS_SAMPLED = "servers_sampled"
    """KV over time, recorded when the job starts, every ``JobRunner.sample_every_s`` and when it ends:
    ``servers``, backend URL -> ``ServerSample`` (JSON)."""
    JOB_CANCELLED = "job_cancelled"
    """Cancellation began: no new episodes, running ones are being cancelled (no data)."""
    JOB_FINISHED = "job_finished"
    """The job ended, succeeded or cancelled: ``status``."""
    JOB_FAILED = "job_failed"
    """The job could not run to the end: ``status``; ``error`` (one line, as ``JobRecord.error``) when the
    worker or the runner ended it (bad spec, suite not buildable, the runner raised), and ``detail``, the
    whole text, when that is longer (Ray's errors carry the remote traceback)."""


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


class ServerSample(BaseModel):
    """One backend's KV at one moment of a job (``servers_sampled`` events); None where not known."""

    held_tokens: int | None = None
    """Tokens the job's ``BackendPool``s hold on the server across tool pauses (sum over actors)."""
    budget_tokens: int | None = None
    """The job's KV budget on the server (sum over actors' shares)."""
    open_episodes: int | None = None
    """The job's episodes open in the pools (all servers; the same figure on each server's sample)."""
    kv_used_tokens: float | None = None
    """The engine's KV slots in use (``sglang:kv_used_tokens`` from its ``/metrics``)."""
    kv_available_tokens: float | None = None
    """The engine's free KV slots (``sglang:kv_available_tokens``)."""
    session_held_tokens: float | None = None
    """Tokens the engine's streaming sessions pin, all clients (``sglang:streaming_session_held_tokens``)."""
    max_total_num_tokens: int | None = None
    """The engine's KV capacity (from ``/server_info``, as the pool saw it)."""


class WorkerBeat(BaseModel):
    """A ``serve_jobs`` loop's sign of life in Redis: what ``/healthz`` and ``/v1/workers`` show of every
    worker on the queue, in any process."""

    consumer: str
    """The worker's consumer name in the queue's group."""
    pid: int
    """Its process id."""
    host: str
    """Its host name."""
    phase: str
    """``starting``, ``idle``, ``running`` or ``stopped`` (``WorkerHealth.phase``)."""
    job_id: str | None = None
    """The job it runs."""
    beat_at: float = Field(default_factory=time.time)
    """Unix time of this beat."""
    jobs_done: int = 0
    """Jobs it has taken to their end."""
    error: str | None = None
    """The last problem it survived, if any."""


_HASH_JSON_FIELDS = ("spec", "summary")


def _to_hash(record: JobRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in record.model_dump(mode="json").items():
        if value is None:
            continue
        out[key] = json.dumps(value) if key in _HASH_JSON_FIELDS else str(value)
    return out


def _from_hash(key: str, job_id: str, raw: dict[str, str]) -> JobRecord:
    """The stored record, or (when it cannot be read: another version wrote it, or an older one let a lone
    surrogate into its spec, which no JSON answer can carry) a ``failed`` record whose ``error`` says so:
    one bad record must not break every reader of the list."""
    data: dict[str, Any] = dict(raw)
    try:
        for name in _HASH_JSON_FIELDS:
            if name in data:
                text = data[name]
                data[name] = json.loads(text)
                if "\\ud" in text.lower():  # only then can the JSON hold a lone surrogate: check it
                    json.dumps(data[name], ensure_ascii=False).encode("utf-8")
        return JobRecord.model_validate(data)
    except (ValueError, TypeError) as exc:  # JSONDecodeError, ValidationError, UnicodeEncodeError
        problem = one_line(error_text(exc), 200)
        return JobRecord(
            id=job_id,
            spec={},
            status=JobStatus.FAILED,
            created_at=_number(raw.get("created_at")),
            error=f"the stored record of job {job_id!r} cannot be read ({problem}); read it with the interleaf "
            f"version that wrote it, or delete the Redis key {key!r}",
        )


def _number(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


# Create only if absent, record and index together: of concurrent submits of one id exactly one wins.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Set the cancel flag only while the job can still be cancelled, in one step with reading its status
# (a worker finishing the job writes its status with one HSET).
_CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return status end
redis.call('HSET', KEYS[1], 'cancel_requested', 'True')
return ''
"""

# Check-and-renew in one step: XCLAIM alone would also take an entry that another worker reclaimed.
_TOUCH = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""


class JobStore:
    """Async access to interleaf's Redis keys. One per process (or per actor); cheap to create."""

    def __init__(self, redis_url: str, *, prefix: str = "interleaf") -> None:
        self.url = redis_url
        self.prefix = prefix
        # Timeouts so that a Redis that stops answering fails calls (the API answers 503, the worker
        # retries) instead of hanging them; the longest blocking read here is the queue's 1 s.
        # backslashreplace: text that is not UTF-8 (a lone surrogate in a message, bytes another writer
        # left) is stored and read as escapes rather than failing the call that meets it.
        self.redis = aioredis.from_url(
            redis_url, decode_responses=True, encoding_errors="backslashreplace", socket_connect_timeout=2,
            socket_timeout=10,
        )  # fmt: skip
        self.group = f"{prefix}-workers"
        self._touch = self.redis.register_script(_TOUCH)
        self._create = self.redis.register_script(_CREATE)
        self._cancel = self.redis.register_script(_CANCEL)

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
        """Store a new job record; ``JobExists`` if the id is taken (atomic: of concurrent creates of one
        id exactly one succeeds)."""
        fields = [item for pair in _to_hash(record).items() for item in pair]
        keys = [self._key("job", record.id), self._key("jobs")]
        if not await self._create(keys=keys, args=[record.created_at, record.id, *fields]):
            raise JobExists(f"job_id={record.id!r} already exists; pick another id or omit it")
        return record

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job's record; None when there is none. A record that cannot be read comes back ``failed``
        with an ``error`` saying why (``_from_hash``)."""
        key = self._key("job", job_id)
        raw = await self.redis.hgetall(key)
        return _from_hash(key, job_id, raw) if raw else None

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
        """Ask whoever runs the job to cancel it; False when there is no such job, ``JobEnded`` naming
        its status when it has ended (its final record is left as it is)."""
        status = await self._cancel(keys=[self._key("job", job_id)])
        if status is None:
            return False
        if status:
            raise JobEnded(job_id, status)
        return True

    async def cancel_requested(self, job_id: str) -> bool:
        return await self.redis.hget(self._key("job", job_id), "cancel_requested") == "True"

    async def list_jobs(self, limit: int = 100) -> list[JobRecord]:
        """Most recent jobs first."""
        ids = await self.redis.zrevrange(self._key("jobs"), 0, limit - 1)
        records = [await self.get_job(i) for i in ids]
        return [r for r in records if r is not None]

    # -- trajectories ------------------------------------------------------------------------

    async def put_trajectory(self, traj: Trajectory, raw: str | None = None) -> bool:
        """Store ``traj`` as the result of (job, episode); True if it is the first result for that
        episode. A later attempt replaces an earlier one (idempotent per episode). ``raw``: its
        ``dump_trajectory`` JSON when the caller has it already (the runner gets it from the actor)."""
        key = self._key("job", traj.job_id, "trajectories")
        created = await self.redis.hset(key, str(traj.episode), dump_trajectory(traj) if raw is None else raw)
        return bool(created)

    async def get_trajectories(self, job_id: str) -> list[Trajectory]:
        """All stored trajectories of a job, by episode index; ``UnreadableTrajectory`` naming the first
        episode that cannot be read."""
        raw = await self.redis.hgetall(self._key("job", job_id, "trajectories"))
        return [read_stored_trajectory(job_id, int(k), raw[k]) for k in sorted(raw, key=int)]

    async def count_trajectories(self, job_id: str) -> int:
        return int(await self.redis.hlen(self._key("job", job_id, "trajectories")))

    async def episode_ids(self, job_id: str) -> list[int]:
        """The episodes of a job with a stored trajectory, ascending."""
        return sorted(int(k) for k in await self.redis.hkeys(self._key("job", job_id, "trajectories")))

    async def get_trajectories_raw(self, job_id: str, episodes: list[int]) -> list[str | None]:
        """The stored trajectory JSON (``load_trajectory`` reads it) of each of ``episodes``, in that
        order; None for an episode without one. For readers that parse lazily (the dashboard)."""
        if not episodes:
            return []
        return await self.redis.hmget(self._key("job", job_id, "trajectories"), [str(e) for e in episodes])

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

    async def reclaim(self, consumer: str, *, min_idle_ms: int = 15_000) -> list[tuple[str, str]]:
        """Take over queue entries another consumer read but never acked (it crashed)."""
        await self._ensure_group()
        _next, entries, *_ = await self.redis.xautoclaim(
            self._key("queue"), self.group, consumer, min_idle_time=min_idle_ms, start_id="0-0"
        )
        return [(entry_id, fields["job_id"]) for entry_id, fields in entries if fields]

    async def pending_own(self, consumer: str) -> list[tuple[str, str]]:
        """Entries ``consumer`` read and never acked: a worker restarted under the same name takes its
        own jobs back at once, without waiting for them to go idle."""
        await self._ensure_group()
        result = await self.redis.xreadgroup(self.group, consumer, {self._key("queue"): "0"}, count=100)
        return [
            (entry_id, fields["job_id"]) for _stream, entries in result or [] for entry_id, fields in entries if fields
        ]

    async def touch(self, consumer: str, entry_id: str) -> bool:
        """Renew ``consumer``'s hold on a pending entry (its idle time restarts, so ``reclaim`` leaves it);
        False when the entry is no longer ``consumer``'s (another worker reclaimed it, or it was acked)."""
        return bool(await self._touch(keys=[self._key("queue")], args=[self.group, entry_id, consumer]))

    async def ack(self, entry_id: str) -> None:
        """The job of ``entry_id`` is finished (whatever its status)."""
        await self.redis.xack(self._key("queue"), self.group, entry_id)

    # -- workers ------------------------------------------------------------------------------

    async def beat(self, beat: WorkerBeat, *, ttl_s: float) -> None:
        """Record a worker's sign of life; it disappears from ``list_workers`` ``ttl_s`` after the last."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key("worker", beat.consumer), beat.model_dump_json(), px=max(1, int(ttl_s * 1000)))
            pipe.zadd(self._key("workers"), {beat.consumer: beat.beat_at})
            await pipe.execute()

    async def remove_worker(self, consumer: str) -> None:
        """A worker that stops cleanly leaves the list at once."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._key("worker", consumer))
            pipe.zrem(self._key("workers"), consumer)
            await pipe.execute()

    async def list_workers(self) -> list[WorkerBeat]:
        """Workers that beat within their ttl, by name (the list of names forgets the others)."""
        names = await self.redis.zrange(self._key("workers"), 0, -1)
        if not names:
            return []
        raws = await self.redis.mget([self._key("worker", n) for n in names])
        gone = [n for n, raw in zip(names, raws, strict=True) if raw is None]
        if gone:
            await self.redis.zrem(self._key("workers"), *gone)
        return [WorkerBeat.model_validate_json(raw) for raw in raws if raw is not None]


__all__ = [
    "REASON_MAX",
    "JobEnded",
    "JobEvent",
    "JobEventType",
    "JobExists",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "ServerSample",
    "WorkerBeat",
    "dump_trajectory",
    "load_trajectory",
    "one_line",
    "printable",
]
