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

Large jobs stay responsive because nothing here sends all trajectories: a page fetches only its
episodes (``HMGET``), and sorting, filtering and the job-level figures read a per-job **episode
index** (one small row per episode, plus per-server KV intervals) kept in this process. The index is
built in chunks by the requests that need it, each spending at most ``INDEX_BUDGET_S`` on it, so an
answer over a partly indexed job comes quickly and says how far indexing got (``indexed`` of
``total``); the page polls until it is complete. A running job's index grows by the episodes stored
since; once the job has ended it is rebuilt once (an episode retried after being indexed replaces
its record) and then kept as is.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import httpx
import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from interleaf.runtime.jobs.store import JobEventType, JobRecord, JobStatus, JobStore
from interleaf.runtime.service.errors import error_responses
from interleaf.telemetry import (
    HARDWARE_PROFILES,
    REFERENCE_HARDWARE,
    JobSummary,
    Pattern,
    PatternFinding,
    PTEVariant,
    TurnArrays,
    detect_patterns,
    find_model_profile,
    gamma,
    load_trajectory,
    summarize_job,
    trajectory_pte_values,
    turn_pte,
)
from interleaf.telemetry.records import RetentionDecision, Trajectory

INDEX_BUDGET_S = 0.6
"""Seconds of indexing one request may spend before it answers from the part indexed so far."""
INDEX_CHUNK = 200
"""Episodes fetched and indexed per step (one ``HMGET``, one worker-thread call)."""
INDEX_CACHE_JOBS = 8
"""Jobs whose episode index this process keeps (least recently used are dropped)."""
LIVE_SUMMARY_MAX_EPISODES = 2000
"""A running job's summary is recomputed from its trajectories up to this many episodes; above it the
dashboard shows the index's figures until the job's stored summary exists."""
SERIES_POINTS = 400
"""Points per server series (each the peak within its time bin, so short peaks stay visible)."""
_FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
_STATIC = {"uPlot.iife.min.js": "text/javascript", "uPlot.min.css": "text/css"}
_HW = HARDWARE_PROFILES[REFERENCE_HARDWARE]

SortKey = Literal[
    "episode", "score", "turns", "tool_calls", "pte", "pte_evict_all", "recomputed", "prompt", "jct", "termination"
]
EpisodeFilter = Literal["all", "correct", "incorrect", "unscored", "pattern"]


# -- response models ---------------------------------------------------------------------------------


class TurnSegment(BaseModel):
    """One turn in an episode row's timeline: where its time went and how its prompt was served."""

    queue_s: float
    """Waited in the engine's queue."""
    prefill_s: float
    """Time to first token after the queue (``ttft - queue``)."""
    decode_s: float
    """First to last token."""
    pause_s: float
    """Tool pause after the turn."""
    cached: int
    """Prompt tokens served from the KV cache."""
    recomputed: int
    """Prompt tokens prefilled again (computed by an earlier call, lost since)."""
    new: int
    """Prompt tokens prefilled for the first time."""
    completion: int
    """Tokens generated."""
    decision: str
    """Retention decision at the pause after the turn."""
    reason: str
    """Why, in the policy's words."""
    before: list[str]
    """Retention events before the call (``decision: reason``), e.g. a wait for admission."""


class EpisodeRow(BaseModel):
    """One episode in the job's table."""

    episode: int
    """Episode index."""
    task_id: str
    """Task within its suite."""
    model: str
    """Served model."""
    termination: str
    """Why it ended."""
    correct: bool | None
    """Verdict (None: not scored)."""
    score: float | None
    """Task score in [0, 1]."""
    turns: int
    """LLM calls."""
    tool_calls: int
    """Tool calls."""
    prompt_tokens: int
    """Sum of context lengths sent."""
    cached_tokens: int
    """Sum of prompt tokens served from cache."""
    recomputed_tokens: int
    """Sum of prompt tokens recomputed after their KV was lost."""
    completion_tokens: int
    """Tokens generated."""
    pte: float | None
    """PTE, ``measured`` variant (what the engine really prefilled); None without a model profile."""
    pte_evict_all: float | None
    """PTE, the paper's ``evict_all`` variant."""
    jct_s: float
    """Episode completion time (wall), seconds."""
    started_at: float
    """Unix time the episode started."""
    patterns: list[str]
    """Names of the inefficiency patterns found in it."""
    timeline: list[TurnSegment] | None = None
    """Per-turn segments (only in a page's rows)."""


class EpisodePage(BaseModel):
    """One page of the episode table."""

    total: int
    """Episodes stored for the job."""
    indexed: int
    """Episodes in the index; sorting and filtering cover only these while ``indexed < total``."""
    matched: int
    """Episodes passing the filter (over the indexed ones; ``total`` for the unfiltered default order)."""
    offset: int
    """First row's position in the sorted, filtered list."""
    rows: list[EpisodeRow]
    """The page."""
    counts: dict[str, int]
    """Indexed episodes per filter (``correct``, ``incorrect``, ``unscored``, ``pattern``) and per pattern name."""


class Distribution(BaseModel):
    """A sample summarised for a small chart."""

    n: int
    """Values."""
    mean: float | None
    """Mean (None when empty)."""
    quantiles: dict[str, float]
    """p10, p50, p90, max."""
    cdf_x: list[float]
    """Sorted values (at most 200, evenly picked), for a CDF."""
    cdf_y: list[float]
    """Fraction of the sample at or below each ``cdf_x``."""


class JobOverview(BaseModel):
    """The job view's head: record, summary, and figures from the episode index."""

    job: JobRecord
    """The stored job record."""
    summary_rows: list[tuple[str, str]] | None
    """``JobSummary.rows()``: the stored summary, or one computed now for a running job (None when the
    job is too large to summarise while running)."""
    retention: dict[str, Any]
    """Requested and effective retention: the spec's policy, and ``retention_requested`` /
    ``retention_effective`` from the summary when it carries them."""
    total: int
    """Episodes stored."""
    indexed: int
    """Episodes in the index (the figures below cover these)."""
    pte_correct: Distribution
    """PTE (measured) of correct episodes."""
    pte_incorrect: Distribution
    """PTE (measured) of incorrect episodes."""
    patterns: dict[str, int]
    """Indexed episodes per pattern found."""


class EpisodeTurnCost(BaseModel):
    """A turn's cost strip in the episode view."""

    index: int
    """Turn index."""
    cached: int
    """Prompt tokens served from cache."""
    recomputed: int
    """Prompt tokens recomputed."""
    new: int
    """Prompt tokens new to the conversation."""
    completion: int
    """Tokens generated."""
    pte: float | None
    """PTE of the turn, ``measured``."""
    pte_evict_all: float | None
    """PTE of the turn, ``evict_all``."""
    share: float | None
    """The turn's share of the episode's ``measured`` PTE."""


class EpisodeDetail(BaseModel):
    """One episode as the episode view reads it (token ids left out: their counts are in ``cost``)."""

    trajectory: dict[str, Any]
    """The ``Trajectory`` as JSON, each turn without ``delta_ids`` / ``completion_ids`` (counted as
    ``n_delta_ids`` / ``n_completion_ids``)."""
    cost: list[EpisodeTurnCost]
    """Per turn, in order."""
    pte: float | None
    """Episode PTE, ``measured``."""
    pte_evict_all: float | None
    """Episode PTE, ``evict_all``."""
    hardware: str
    """Hardware profile PTE is priced on."""
    findings: list[PatternFinding]
    """Pattern findings with their evidence spans."""
    prev: int | None
    """Previous stored episode index."""
    next: int | None
    """Next stored episode index."""


class ServerSeries(BaseModel):
    """One backend over the job's time."""

    url: str
    """Backend base URL."""
    t: list[float]
    """Bin start, seconds since the job's first episode started."""
    held: list[float]
    """Peak KV tokens held through tool pauses (retention holds) in the bin."""
    in_flight: list[float]
    """Peak KV tokens of this job's calls running on the server in the bin (context + generated)."""
    budget_tokens: float | None
    """KV budget for held sessions: ``kv_budget_fraction`` × ``max_total_num_tokens`` as the server reports
    it now (None when the server does not answer ``/server_info``)."""
    max_total_num_tokens: int | None
    """The server's KV pool size (``/server_info``), when it answered."""
    engine_kv_used: list[float | None] = Field(default_factory=list)
    """The engine's KV slots in use (all clients, radix cache included) per bin, from the job's
    ``servers_sampled`` events (the last sample up to the bin's end; None before the first or where the
    engine did not report it). Empty when the job recorded no samples."""
    turns: int
    """LLM calls served."""
    hit_rate: float | None
    """Cached ÷ prompt tokens over the turns the engine reported."""
    recomputed_tokens: int
    """Prompt tokens recomputed on this server."""
    admission_waits: int
    """Turns that waited for admission (``queued``)."""
    admission_wait_s: float
    """Their total wait, seconds."""
    denied: int
    """Holds the budget refused."""
    suspended: int
    """Episodes suspended by admission control."""
    failovers_from: int
    """Failovers away from this server."""
    peak_held: float
    """Peak held tokens."""


class ServersView(BaseModel):
    """The servers view."""

    total: int
    """Episodes stored."""
    indexed: int
    """Episodes the series cover."""
    span_s: float
    """Job time covered, seconds."""
    servers: list[ServerSeries]
    """One per backend that served a call."""
    approximations: list[str]
    """What the series approximate (they are rebuilt from per-turn records, not sampled)."""


class CompareJob(BaseModel):
    """One job's column in the comparison."""

    id: str
    """Job id."""
    status: str
    """Job status."""
    retention: str
    """Retention policy of the spec (and the effective one when the summary records it)."""
    models: list[str]
    """Models used."""
    suite: str
    """Task suite."""
    episodes: int
    """Episodes indexed."""
    total: int
    """Episodes stored."""
    accuracy: float | None
    """Correct ÷ scored."""
    mean_pte: float | None
    """Mean PTE per episode, ``measured``."""
    mean_pte_evict_all: float | None
    """Mean PTE per episode, ``evict_all``."""
    recomputed_tokens: int
    """Recomputed prompt tokens, all episodes."""
    mean_recomputed: float | None
    """Per episode."""
    hit_rate: float | None
    """Cached ÷ prompt tokens."""
    mean_turns: float | None
    """LLM calls per episode."""
    wall_s: float | None
    """Job wall time."""
    jct: Distribution
    """Episode completion times."""
    pte: Distribution
    """Episode PTE (measured)."""


# -- the episode index ---------------------------------------------------------------------------------


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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _recomputed(traj: Trajectory, turns: TurnArrays) -> list[int]:
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
    rec = _recomputed(traj, turns)
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


def _index_chunk(raws: list[str]) -> tuple[list[EpisodeRow], dict[str, ServerTrace]]:
    """Rows and server traces of a chunk of stored trajectories (runs in a worker thread)."""
    trajs = [load_trajectory(r) for r in raws]
    values, gammas, _ = trajectory_pte_values(trajs, _HW)
    rows = []
    servers: dict[str, ServerTrace] = {}
    for k, traj in enumerate(trajs):
        turns = TurnArrays.from_trajectories([traj])
        profile = find_model_profile(traj.model)
        findings = detect_patterns(traj, gamma=gammas.get(profile.name) if profile else None)
        rows.append(
            _row(traj, turns, float(values[PTEVariant.MEASURED][k]), float(values[PTEVariant.EVICT_ALL][k]), findings)
        )
        _trace(traj, turns, _recomputed(traj, turns), servers)
    return rows, servers


def _merge(into: dict[str, ServerTrace], new: dict[str, ServerTrace]) -> None:
    for url, s in new.items():
        d = into.setdefault(url, ServerTrace())
        d.held += s.held
        d.in_flight += s.in_flight
        for name in ("turns", "prompt_reported", "cached_reported", "recomputed", "admission_waits",
                     "admission_wait_s", "denied", "suspended", "failovers_from"):  # fmt: skip
            setattr(d, name, getattr(d, name) + getattr(s, name))


def _distribution(values: list[float]) -> Distribution:
    v = np.sort(np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64))
    if not len(v):
        return Distribution(n=0, mean=None, quantiles={}, cdf_x=[], cdf_y=[])
    pick = np.unique(np.linspace(0, len(v) - 1, min(len(v), 200)).round().astype(int))
    return Distribution(
        n=len(v),
        mean=float(v.mean()),
        quantiles={q: float(np.quantile(v, p)) for q, p in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("max", 1.0))},
        cdf_x=[float(x) for x in v[pick]],
        cdf_y=[float((i + 1) / len(v)) for i in pick],
    )


def _sampled_series(points: list[tuple[float, float]], t0: float, t1: float) -> list[float | None]:
    """The last sampled value up to the end of each of ``SERIES_POINTS`` bins over [t0, t1] (None before
    the first sample)."""
    if not points or t1 <= t0:
        return []
    points = sorted(points)
    width = (t1 - t0) / SERIES_POINTS
    out: list[float | None] = []
    k, last = 0, None
    for b in range(SERIES_POINTS):
        edge = t0 + b * width
        while k < len(points) and points[k][0] <= edge + width:
            last = points[k][1]
            k += 1
        out.append(last)
    return out


def _peak_series(intervals: list[tuple[float, float, float]], t0: float, t1: float) -> list[float]:
    """Peak of the summed intervals within each of ``SERIES_POINTS`` bins over [t0, t1]."""
    if not intervals or t1 <= t0:
        return [0.0] * SERIES_POINTS
    a = np.asarray(intervals, dtype=np.float64)
    times = np.concatenate([a[:, 0], a[:, 1]])
    deltas = np.concatenate([a[:, 2], -a[:, 2]])
    # Ends before starts at equal times: back-to-back intervals do not count twice.
    order = np.lexsort((deltas, times))
    times, level = times[order], np.cumsum(deltas[order])
    width = (t1 - t0) / SERIES_POINTS
    bins = np.clip(((times - t0) / width).astype(np.int64), 0, SERIES_POINTS - 1)
    out = np.zeros(SERIES_POINTS)
    np.maximum.at(out, bins, level)
    # A bin with no change keeps the level reached before it.
    last = 0.0
    starts = np.searchsorted(bins, np.arange(SERIES_POINTS), side="left")
    for b in range(SERIES_POINTS):
        if starts[b] > 0:
            last = float(level[starts[b] - 1])
        out[b] = max(out[b], last)
    return [float(x) for x in out]


# -- the router ------------------------------------------------------------------------------------------


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
            missing = [e for e in ids if e not in index.rows]
            deadline = time.monotonic() + budget_s
            while missing and time.monotonic() < deadline:
                chunk, missing = missing[:INDEX_CHUNK], missing[INDEX_CHUNK:]
                raws = [r for r in await self.raw(record.id, chunk) if r is not None]
                rows, servers = await asyncio.to_thread(_index_chunk, raws)
                for row in rows:
                    index.rows[row.episode] = row
                index.while_running = index.while_running or not final
                _merge(index.servers, servers)
            if final and not missing:
                index.final = True
        return index, len(ids)

    async def page_rows(self, job_id: str, episodes: list[int]) -> list[EpisodeRow]:
        """Rows with timelines, read fresh from the store."""
        raws = [r for r in await self.raw(job_id, episodes) if r is not None]

        def build() -> list[EpisodeRow]:
            rows, _ = _index_chunk(raws)
            for row, raw in zip(rows, raws, strict=True):
                traj = load_trajectory(raw)
                turns = TurnArrays.from_trajectories([traj])
                row.timeline = _segments(traj, turns, _recomputed(traj, turns))
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


def _filtered(rows: list[EpisodeRow], filt: EpisodeFilter, pattern: Pattern | None) -> list[EpisodeRow]:
    if filt == "correct":
        return [r for r in rows if r.correct is True]
    if filt == "incorrect":
        return [r for r in rows if r.correct is False]
    if filt == "unscored":
        return [r for r in rows if r.correct is None]
    if filt == "pattern":
        return [r for r in rows if (pattern.value in r.patterns if pattern else r.patterns)]
    return rows


_SORT = {
    "episode": lambda r: r.episode,
    "score": lambda r: -1.0 if r.score is None else r.score,
    "turns": lambda r: r.turns,
    "tool_calls": lambda r: r.tool_calls,
    "pte": lambda r: -1.0 if r.pte is None else r.pte,
    "pte_evict_all": lambda r: -1.0 if r.pte_evict_all is None else r.pte_evict_all,
    "recomputed": lambda r: r.recomputed_tokens,
    "prompt": lambda r: r.prompt_tokens,
    "jct": lambda r: r.jct_s,
    "termination": lambda r: r.termination,
}


def _counts(rows: list[EpisodeRow]) -> dict[str, int]:
    counts = {"correct": 0, "incorrect": 0, "unscored": 0, "pattern": 0}
    for r in rows:
        counts["correct" if r.correct else "unscored" if r.correct is None else "incorrect"] += 1
        if r.patterns:
            counts["pattern"] += 1
        for p in r.patterns:
            counts[p] = counts.get(p, 0) + 1
    return counts


def _summary_fields(record: JobRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": record.spec.get("retention")}
    for key in ("retention_requested", "retention_effective"):
        if record.summary and record.summary.get(key) is not None:
            out[key] = record.summary[key]
    return out


def dashboard_router(store: JobStore) -> APIRouter:
    """The dashboard's data routes over ``store`` (see the module docstring), for ``include_router``."""
    data = DashboardData(store)
    router = APIRouter(tags=["dashboard"])

    @router.get("/v1/dashboard/jobs/{job_id}", responses=error_responses(404))
    async def overview(job_id: str) -> JobOverview:
        record = await data.job(job_id)
        index, total = await data.advance(record)
        if record.summary:
            rows = JobSummary.model_validate(record.summary).rows()
        elif total <= LIVE_SUMMARY_MAX_EPISODES:
            trajs = await store.get_trajectories(job_id)
            wall = max(0.0, (record.finished_at or time.time()) - record.started_at) if record.started_at else None
            rows = (await asyncio.to_thread(summarize_job, trajs, wall_s=wall)).rows()
        else:
            rows = None
        indexed = list(index.rows.values())
        counts = _counts(indexed)
        return JobOverview(
            job=record,
            summary_rows=rows,
            retention=_summary_fields(record),
            total=total,
            indexed=len(indexed),
            pte_correct=_distribution([r.pte for r in indexed if r.correct is True]),
            pte_incorrect=_distribution([r.pte for r in indexed if r.correct is False]),
            patterns={p.value: counts[p.value] for p in Pattern if counts.get(p.value)},
        )

    @router.get("/v1/dashboard/jobs/{job_id}/episodes", responses=error_responses(404))
    async def episodes(
        job_id: str,
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=200),
        sort: SortKey = "episode",
        order: Literal["asc", "desc"] = "asc",
        filter: EpisodeFilter = "all",
        pattern: Pattern | None = None,
    ) -> EpisodePage:
        record = await data.job(job_id)
        index = data.indexes.get(job_id)
        complete = index is not None and index.final
        if sort == "episode" and filter == "all" and not complete:
            # The default order needs no index: the page's episodes straight from the store.
            ids = await data.episode_ids(job_id)
            if order == "desc":
                ids.reverse()
            rows = await data.page_rows(job_id, ids[offset : offset + limit])
            indexed = list(index.rows.values()) if index else []
            return EpisodePage(
                total=len(ids), indexed=len(indexed), matched=len(ids), offset=offset, rows=rows,
                counts=_counts(indexed),
            )  # fmt: skip
        index, total = await data.advance(record)
        indexed = list(index.rows.values())
        matched = sorted(_filtered(indexed, filter, pattern), key=_SORT[sort], reverse=order == "desc")
        page = [r.episode for r in matched[offset : offset + limit]]
        rows = await data.page_rows(job_id, page)
        return EpisodePage(
            total=total, indexed=len(indexed), matched=len(matched), offset=offset, rows=rows, counts=_counts(indexed)
        )

    @router.get("/v1/dashboard/jobs/{job_id}/episodes/{episode}", responses=error_responses(404))
    async def episode(job_id: str, episode: int) -> EpisodeDetail:
        await data.job(job_id)
        (raw,) = await data.raw(job_id, [episode])
        if raw is None:
            raise HTTPException(status_code=404, detail=f"job {job_id!r} has no stored episode {episode}")
        ids = await data.episode_ids(job_id)
        return await asyncio.to_thread(_detail, raw, ids)

    @router.get("/v1/dashboard/jobs/{job_id}/servers", responses=error_responses(404))
    async def servers(job_id: str) -> ServersView:
        record = await data.job(job_id)
        index, total = await data.advance(record)
        traces = index.servers
        starts = [a for s in traces.values() for a, _, _ in s.in_flight]
        ends = [b for s in traces.values() for _, b, _ in s.in_flight + s.held]
        t0, t1 = (min(starts), max(ends)) if starts else (0.0, 0.0)
        fraction = float(record.spec.get("kv_budget_fraction") or 0.5)
        samples = await data.kv_samples(job_id)
        out = []
        for url, s in sorted(traces.items()):
            capacity = await data.server_capacity(url) if url in record.spec.get("backend_urls", []) else None
            held = _peak_series(s.held, t0, t1)
            used = _sampled_series(samples.get(url, []), t0, t1)
            out.append(
                ServerSeries(
                    url=url,
                    t=[(t1 - t0) * b / SERIES_POINTS for b in range(SERIES_POINTS)],
                    held=held,
                    in_flight=_peak_series(s.in_flight, t0, t1),
                    budget_tokens=fraction * capacity if capacity else None,
                    max_total_num_tokens=capacity,
                    engine_kv_used=used,
                    turns=s.turns,
                    hit_rate=s.cached_reported / s.prompt_reported if s.prompt_reported else None,
                    recomputed_tokens=s.recomputed,
                    admission_waits=s.admission_waits,
                    admission_wait_s=s.admission_wait_s,
                    denied=s.denied,
                    suspended=s.suspended,
                    failovers_from=s.failovers_from,
                    peak_held=max(held, default=0.0),
                )
            )
        return ServersView(
            total=total,
            indexed=len(index.rows),
            span_s=t1 - t0,
            servers=out,
            approximations=[
                "held and in-flight KV are rebuilt from each turn's timings (start = episode start + earlier calls "
                "and pauses); the engine's own KV in use (all clients, radix cache) is sampled every few seconds "
                "while the job runs (servers_sampled events) and drawn as steps",
                "a hold lasts the whole tool pause; one released during it (TTL) ends at its predicted pause",
                "in-flight KV counts a call's full context + generated tokens from its start to its end",
            ],
        )

    @router.get("/v1/dashboard/compare", responses=error_responses(404))
    async def compare(jobs: list[str] = Query(..., min_length=2, max_length=4)) -> list[CompareJob]:
        out = []
        for job_id in jobs:
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
                    jct=_distribution([r.jct_s for r in rows]),
                    pte=_distribution(ptes),
                )
            )
        return out

    @router.get("/dashboard/{name}", responses=error_responses(404))
    async def static(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(status_code=404, detail=f"no dashboard file {name!r}; files: {sorted(_STATIC)}")
        body = (resources.files("interleaf.runtime.service") / "dashboard" / name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"cache-control": "max-age=3600"})

    return router


def _detail(raw: str, ids: list[int]) -> EpisodeDetail:
    traj = load_trajectory(raw)
    turns = TurnArrays.from_trajectories([traj])
    recomputed = _recomputed(traj, turns)
    profile = find_model_profile(traj.model)
    g = gamma(profile, _HW) if profile else None
    measured = turn_pte(turns, g, PTEVariant.MEASURED) if g is not None else None
    evict = turn_pte(turns, g, PTEVariant.EVICT_ALL) if g is not None else None
    total = float(measured.sum()) if measured is not None else None
    cost = []
    for i in range(len(traj.turns)):
        cached = int(turns.cached_tokens[i])
        cost.append(
            EpisodeTurnCost(
                index=i,
                cached=cached,
                recomputed=recomputed[i],
                new=max(0, int(turns.prompt_tokens[i]) - cached - recomputed[i]),
                completion=int(turns.completion_tokens[i]),
                pte=float(measured[i]) if measured is not None else None,
                pte_evict_all=float(evict[i]) if evict is not None else None,
                share=float(measured[i]) / total if measured is not None and total else None,
            )
        )
    body = traj.model_dump(mode="json")
    for turn in body["turns"]:
        turn["n_delta_ids"] = len(turn.pop("delta_ids"))
        turn["n_completion_ids"] = len(turn.pop("completion_ids"))
    pos = ids.index(traj.episode) if traj.episode in ids else -1
    return EpisodeDetail(
        trajectory=body,
        cost=cost,
        pte=total,
        pte_evict_all=float(evict.sum()) if evict is not None else None,
        hardware=_HW.name,
        findings=detect_patterns(traj, gamma=g),
        prev=ids[pos - 1] if pos > 0 else None,
        next=ids[pos + 1] if 0 <= pos < len(ids) - 1 else None,
    )


__all__ = ["DashboardData", "dashboard_router"]
