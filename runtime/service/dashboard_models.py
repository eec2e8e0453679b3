"""The dashboard's response models: what each data route answers (``dashboard_api.py`` has the routes),
and the sort keys and filters of the episode table."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from interleaf.runtime.jobs.store import JobRecord
from interleaf.telemetry import PatternFinding

SortKey = Literal[
    "episode", "score", "turns", "tool_calls", "pte", "pte_evict_all", "recomputed", "prompt", "jct", "termination"
]
EpisodeFilter = Literal["all", "correct", "incorrect", "unscored", "pattern"]


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
    unreadable: dict[int, str] = {}
    """Stored episodes this version cannot read (written by another version, or altered in Redis), and why;
    left out of the index and the figures, and kept as stored."""


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


__all__ = [
    "CompareJob",
    "Distribution",
    "EpisodeDetail",
    "EpisodeFilter",
    "EpisodePage",
    "EpisodeRow",
    "EpisodeTurnCost",
    "JobOverview",
    "ServerSeries",
    "ServersView",
    "SortKey",
    "TurnSegment",
]
