"""The dashboard's per-job **episode index**: one small row per episode, plus per-server KV intervals
and counters, kept in this process so that sorting, filtering and the job-level figures never send
all trajectories.

The index is built in chunks by the requests that need it, each spending at most ``INDEX_BUDGET_S``
on it, so an answer over a partly indexed job comes quickly and says how far indexing got
(``indexed`` of ``total``); the page polls until it is complete. A running job's index grows by the
episodes stored since; once the job has ended it is rebuilt once (an episode retried after being
indexed replaces its record) and then kept as is.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import httpx
from fastapi import HTTPException

from interleaf.runtime.jobs.store import (
    JobEventType,
    JobRecord,
    JobStatus,
    JobStore,
    UnreadableTrajectory,
    read_stored_trajectory,
)
from interleaf.runtime.service.dashboard_models import EpisodeRow, TurnSegment
from interleaf.telemetry import (
    HARDWARE_PROFILES,
    REFERENCE_HARDWARE,
    PatternFinding,
    PTEVariant,
    TurnArrays,
    detect_patterns,
    find_model_profile,
    trajectory_pte_values,
)
from interleaf.telemetry.records import RetentionDecision, Trajectory

INDEX_BUDGET_S = 0.6
"""Seconds of indexing one request may spend before it answers from the part indexed so far."""
INDEX_CHUNK = 200
"""Episodes fetched and indexed per step (one ``HMGET``, one worker-thread call)."""
INDEX_CACHE_JOBS = 8
"""Jobs whose episode index this process keeps (least recently used are dropped)."""
_FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
HARDWARE = HARDWARE_PROFILES[REFERENCE_HARDWARE]
"""The hardware profile the dashboard prices PTE on."""


@dataclass
class ServerTrace:
    """Per-backend intervals and counters accumulated while indexing (hot state, not persisted)."""

    held: list[tuple[float, float, float]] = field(default_factory=list)
    in_flight: list[tuple[float, float, float]] = field(default_factory=list)
    turns: int = 0
    prompt_reported: int = 0
    cached_reported: int = 0
    recomputed: int = 0
    admission_waits: int = 0
    admission_wait_s: float = 0.0
    denied: int = 0
    suspended: int = 0
    failovers_from: int = 0


@dataclass
class JobIndex:
    """One job's episode rows and server traces, built chunk by chunk."""

    rows: dict[int, EpisodeRow] = field(default_factory=dict)
    servers: dict[str, ServerTrace] = field(default_factory=dict)
    final: bool = False
    """Complete, and built after the job ended (never rebuilt)."""
    while_running: bool = False
    """Some rows were indexed while the job ran (rebuilt once it has ended)."""
    unreadable: dict[int, str] = field(default_factory=dict)
    """Stored episodes this version cannot read, and why (left out of ``rows``)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def recomputed_per_turn(traj: Trajectory, turns: TurnArrays) -> list[int]:
    """Prompt tokens recomputed on each turn of ``traj``."""
    # JobSummary.recomputed_tokens' definition: the client's figure, inferred where a turn carries 0.
    derived = turns.recomputed_tokens()
    return [t.cache.recomputed_tokens or int(derived[i]) for i, t in enumerate(traj.turns)]


def _segments(traj: Trajectory, turns: TurnArrays, recomputed: list[int]) -> list[TurnSegment]:
    out = []
    for i, t in enumerate(traj.turns):
        tm, r = t.timings, t.retention
        cached = int(turns.cached_tokens[i])
        out.append(
            TurnSegment(
                queue_s=tm.queue_s,
                prefill_s=max(0.0, tm.ttft_s - tm.queue_s),
                decode_s=tm.decode_s,
                pause_s=tm.pause_s,
                cached=cached,
                recomputed=recomputed[i],
                new=max(0, int(turns.prompt_tokens[i]) - cached - recomputed[i]),
                completion=int(turns.completion_tokens[i]),
                decision=r.decision.value,
                reason=r.reason,
                before=[
                    f"{e.decision.value}: {e.reason}" if e.reason else e.decision.value for e in t.retention_events
                ],
            )
        )
    return out


def _row(
    traj: Trajectory, turns: TurnArrays, pte: float, pte_evict: float, findings: list[PatternFinding]
) -> EpisodeRow:
    rec = recomputed_per_turn(traj, turns)
    return EpisodeRow(
        episode=traj.episode,
        task_id=traj.task_id,
        model=traj.model,
        termination=traj.termination.value,
        correct=traj.correct,
        score=traj.score,
        turns=len(traj.turns),
        tool_calls=traj.tool_call_count,
        prompt_tokens=int(turns.prompt_tokens.sum()),
        cached_tokens=int(turns.cached_tokens.sum()),
        recomputed_tokens=sum(rec),
        completion_tokens=int(turns.completion_tokens.sum()),
        pte=None if math.isnan(pte) else pte,
        pte_evict_all=None if math.isnan(pte_evict) else pte_evict,
        jct_s=traj.wall_s,
        started_at=traj.started_at,
        patterns=sorted({f.pattern.value for f in findings}),
    )


def _trace(traj: Trajectory, turns: TurnArrays, recomputed: list[int], servers: dict[str, ServerTrace]) -> None:
    """Add the episode's calls and holds to its servers' traces (times rebuilt from the turn timings)."""
    t = traj.started_at
    for i, turn in enumerate(traj.turns):
        url = turn.server or "(unknown server)"
        s = servers.setdefault(url, ServerTrace())
        call = turn.timings.e2e_s or (turn.timings.ttft_s + turn.timings.decode_s)
        context = float(turns.prompt_tokens[i] + turns.completion_tokens[i])
        s.in_flight.append((t, t + call, context))
        s.turns += 1
        if turn.cache.prompt_tokens > 0:
            s.prompt_reported += turn.cache.prompt_tokens
            s.cached_reported += turn.cache.cached_tokens
        s.recomputed += recomputed[i]
        for e in turn.retention_events:
            if e.decision == RetentionDecision.QUEUED:
                s.admission_waits += 1
                s.admission_wait_s += e.wait_s
            elif e.decision == RetentionDecision.DENIED:
                s.denied += 1
            elif e.decision == RetentionDecision.SUSPEND:
                s.suspended += 1
            elif e.reason.startswith("failover: "):
                # "failover: <url> failed (...)": counted against the server that failed.
                failed = e.reason.split()[1]
                servers.setdefault(failed, ServerTrace()).failovers_from += 1
        r = turn.retention
        if r.decision == RetentionDecision.DENIED:
            s.denied += 1
        elif r.decision == RetentionDecision.SUSPEND:
            s.suspended += 1
        pause = turn.timings.pause_s
        if r.decision == RetentionDecision.HOLD and pause > 0 and i + 1 < len(traj.turns):
            # A hold released during the pause (TTL, budget, admission) is recorded on the next turn
            # without a time: a TTL hold ends at its predicted pause, any other at the pause's end.
            released = any(e.decision == RetentionDecision.RELEASE for e in traj.turns[i + 1].retention_events)
            held_for = min(pause, r.predicted_pause_s) if released and r.predicted_pause_s else pause
            s.held.append((t + call, t + call + held_for, float(r.held_tokens or context)))
        t += call + pause


def _readable(job_id: str, stored: list[tuple[int, str]]) -> tuple[list[Trajectory], dict[int, str]]:
    """The trajectories of ``stored`` (episode, text) this version can read, and why each other one cannot."""
    trajs, unreadable = [], {}
    for episode, raw in stored:
        try:
            trajs.append(read_stored_trajectory(job_id, episode, raw))
        except UnreadableTrajectory as exc:
            unreadable[episode] = exc.reason
    return trajs, unreadable


def _index_chunk(trajs: list[Trajectory]) -> tuple[list[EpisodeRow], dict[str, ServerTrace]]:
    """Rows and server traces of a chunk of stored trajectories (runs in a worker thread)."""
    values, gammas, _ = trajectory_pte_values(trajs, HARDWARE)
    rows = []
    servers: dict[str, ServerTrace] = {}
    for k, traj in enumerate(trajs):
        turns = TurnArrays.from_trajectories([traj])
        profile = find_model_profile(traj.model)
        findings = detect_patterns(traj, gamma=gammas.get(profile.name) if profile else None)
        rows.append(
            _row(traj, turns, float(values[PTEVariant.MEASURED][k]), float(values[PTEVariant.EVICT_ALL][k]), findings)
        )
        _trace(traj, turns, recomputed_per_turn(traj, turns), servers)
    return rows, servers


def _merge(into: dict[str, ServerTrace], new: dict[str, ServerTrace]) -> None:
    for url, s in new.items():
        d = into.setdefault(url, ServerTrace())
        d.held += s.held
        d.in_flight += s.in_flight
        for name in ("turns", "prompt_reported", "cached_reported", "recomputed", "admission_waits",
                     "admission_wait_s", "denied", "suspended", "failovers_from"):  # fmt: skip
            setattr(d, name, getattr(d, name) + getattr(s, name))


def filter_counts(rows: list[EpisodeRow]) -> dict[str, int]:
    """Episodes per filter (``correct``, ``incorrect``, ``unscored``, ``pattern``) and per pattern name."""
    counts = {"correct": 0, "incorrect": 0, "unscored": 0, "pattern": 0}
    for r in rows:
        counts["correct" if r.correct else "unscored" if r.correct is None else "incorrect"] += 1
        if r.patterns:
            counts["pattern"] += 1
        for p in r.patterns:
            counts[p] = counts.get(p, 0) + 1
    return counts


class DashboardData:
    """The dashboard's view of one ``JobStore``: episode indexes and server capacities, cached."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.indexes: OrderedDict[str, JobIndex] = OrderedDict()
        self.capacity: dict[str, int | None] = {}

    async def job(self, job_id: str) -> JobRecord:
        record = await self.store.get_job(job_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id!r}")
        return record

    async def episode_ids(self, job_id: str) -> list[int]:
        return await self.store.episode_ids(job_id)

    async def kv_samples(self, job_id: str) -> dict[str, list[tuple[float, float]]]:
        """Per backend, (Unix time, the engine's KV tokens in use) from the job's ``servers_sampled`` events."""
        out: dict[str, list[tuple[float, float]]] = {}
        after = "0-0"
        while True:
            batch = await self.store.read_events(job_id, after=after, count=1000)
            if not batch:
                return out
            after = batch[-1][0]
            for _, event in batch:
                if event.type != JobEventType.SERVERS_SAMPLED:
                    continue
                for url, sample in (event.data.get("servers") or {}).items():
                    used = sample.get("kv_used_tokens") if isinstance(sample, dict) else None
                    if used is not None:
                        out.setdefault(url, []).append((event.ts, float(used)))

    async def raw(self, job_id: str, episodes: list[int]) -> list[str | None]:
        return await self.store.get_trajectories_raw(job_id, episodes)

    def _index(self, job_id: str) -> JobIndex:
        index = self.indexes.get(job_id)
        if index is None:
            index = self.indexes[job_id] = JobIndex()
        self.indexes.move_to_end(job_id)
        while len(self.indexes) > INDEX_CACHE_JOBS:
            self.indexes.popitem(last=False)
        return index

    async def advance(self, record: JobRecord, *, budget_s: float = INDEX_BUDGET_S) -> tuple[JobIndex, int]:
        """Index more of the job's episodes for up to ``budget_s``; returns the index and the episodes
        stored. A request that finds another one indexing answers from the index as it stands."""
        final = record.status in _FINAL
        index = self._index(record.id)
        if final and index.while_running:
            index = self.indexes[record.id] = JobIndex()  # indexed while running: rebuild once
        if index.final:
            return index, len(index.rows)
        ids = await self.episode_ids(record.id)
        if index.lock.locked():
            return index, len(ids)
        async with index.lock:
            missing = [e for e in ids if e not in index.rows and e not in index.unreadable]
            deadline = time.monotonic() + budget_s
            while missing and time.monotonic() < deadline:
                chunk, missing = missing[:INDEX_CHUNK], missing[INDEX_CHUNK:]
                stored = [(e, r) for e, r in zip(chunk, await self.raw(record.id, chunk), strict=True) if r is not None]
                trajs, unreadable = _readable(record.id, stored)
                rows, servers = await asyncio.to_thread(_index_chunk, trajs)
                index.unreadable.update(unreadable)
                for row in rows:
                    index.rows[row.episode] = row
                index.while_running = index.while_running or not final
                _merge(index.servers, servers)
            if final and not missing:
                index.final = True
        return index, len(ids)

    async def page_rows(self, job_id: str, episodes: list[int]) -> list[EpisodeRow]:
        """Rows with timelines, read fresh from the store."""
        stored = [(e, r) for e, r in zip(episodes, await self.raw(job_id, episodes), strict=True) if r is not None]
        trajs, _ = _readable(job_id, stored)

        def build() -> list[EpisodeRow]:
            rows, _ = _index_chunk(trajs)
            for row, traj in zip(rows, trajs, strict=True):
                turns = TurnArrays.from_trajectories([traj])
                row.timeline = _segments(traj, turns, recomputed_per_turn(traj, turns))
            return rows

        return await asyncio.to_thread(build)

    async def server_capacity(self, url: str) -> int | None:
        """``max_total_num_tokens`` from the server's ``/server_info`` (cached; None when it does not answer)."""
        if url not in self.capacity:
            try:
                async with httpx.AsyncClient(timeout=1.0) as client:
                    info = (await client.get(f"{url.rstrip('/')}/server_info")).json()
                value = info.get("max_total_num_tokens")
                self.capacity[url] = int(value) if value else None
            except (httpx.HTTPError, ValueError, AttributeError):
                return None  # not cached: the server may come back
        return self.capacity[url]


__all__ = [
    "HARDWARE",
    "INDEX_BUDGET_S",
    "DashboardData",
    "JobIndex",
    "ServerTrace",
    "filter_counts",
    "recomputed_per_turn",
]
