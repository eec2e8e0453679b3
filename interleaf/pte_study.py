"""The PTE-latency study's load generator: synthetic multi-turn conversations through an engine's ``/generate``.

Requests go through the runtime client (``interleaf.runtime.client.SGLangBackend``); the analysis of
what it records is pure and lives in ``interleaf.telemetry.study`` (telemetry never talks to a server).
Each synthetic trajectory is a random token prompt followed by turns that each append a random
"tool result" and generate a fixed number of tokens (``ignore_eos``), in one of three arms:

- ``session``: a streaming session; each turn sends only its new tokens (KV held across turns).
- ``radix``: stateless; each turn sends the full ids and the engine's prefix cache does the matching.
- ``evict``: stateless with the first token changed every turn, so no prefix matches and the whole
  context is recomputed — what the paper's ``evict_all`` assumes happens at every pause.

Per call it records the engine's ``meta_info`` (prompt/cached/completion tokens, ``e2e_latency``,
``batch_size``) into ``Trajectory`` records, which ``interleaf.telemetry.study.pte_latency_study``
analyses.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

from pydantic import BaseModel, Field

from interleaf.runtime.client import BackendError, SessionTurn, SGLangBackend, Transport
from interleaf.telemetry.records import TerminationReason, Trajectory, Turn, TurnTimings

ARMS = ("session", "radix", "evict")

SHAPES: dict[str, dict[str, tuple[int, int] | int]] = {
    "short": {"turns": (2, 5), "prompt_tokens": (32, 384), "tool_tokens": (8, 256), "completion_tokens": (4, 32)},
    # Where PTE's decode term γ·L·D matters: contexts from ~1k up to SmolLM2's 8,192-token limit and
    # 200–1,000 decoded tokens per call, so γ·L·D is a sizeable share of a call's PTE rather than ~1 %.
    # A trajectory whose next call would not fit the window ends there (``max_context``).
    "decode": {
        "turns": (2, 3),
        "prompt_tokens": (768, 6144),
        "tool_tokens": (128, 1024),
        "completion_tokens": (200, 1000),
        "max_context": 8192,
        # A 1,000-token decode at a 7k context takes minutes on a loaded 2-core CPU.
        "timeout_s": 900,
    },
}
"""Named conversation shapes for ``interleaf study pte-latency --shape``."""
SESSION_TIMEOUT_S = 300.0
"""Inactivity after which the engine reaps a ``session`` arm's streaming session (it is closed at the end)."""


class StudyConfig(BaseModel):
    """What the runner generates."""

    engine_url: str
    """Base URL of an SGLang-compatible engine (e.g. ``http://127.0.0.1:30000``)."""
    trajectories: int = Field(default=12, gt=0)
    """Number of synthetic trajectories."""
    concurrency: int = Field(default=4, gt=0)
    """Trajectories in flight at once."""
    turns: tuple[int, int] = (2, 5)
    """Min and max LLM calls per trajectory (inclusive)."""
    prompt_tokens: tuple[int, int] = (32, 384)
    """Initial prompt length range."""
    tool_tokens: tuple[int, int] = (8, 256)
    """Appended 'tool result' length range per later turn."""
    completion_tokens: tuple[int, int] = (4, 32)
    """Generated tokens per call (exact, with ``ignore_eos``)."""
    arms: list[str] = Field(default_factory=lambda: list(ARMS))
    """Arms to mix, assigned round-robin."""
    token_range: tuple[int, int] = (100, 20000)
    """Token ids are drawn uniformly from this range (must lie inside the model's vocabulary)."""
    seed: int = 0
    """Random seed (lengths, ids, arms)."""
    timeout_s: float = 600.0
    """HTTP timeout per call."""
    max_context: int | None = Field(default=None, gt=0)
    """Model context window: a trajectory ends before a call whose prompt + output would exceed it
    (None: no limit)."""
    time_budget_s: float | None = Field(default=None, gt=0)
    """Wall time after which no further call starts: trajectories in flight end after their current
    call, later ones never start (None: run them all)."""


def _interval_overlap_batch(spans: list[tuple[float, float]]) -> list[float]:
    """Client-side estimate of the batch each call ran in: the time-averaged number of calls in flight
    during it (itself included). Used only where the engine reports no ``batch_size``."""
    out = []
    for s, e in spans:
        dur = max(e - s, 1e-9)
        out.append(sum(max(0.0, min(e, e2) - max(s, s2)) for s2, e2 in spans) / dur)
    return out


async def _one(
    backend: SGLangBackend,
    cfg: StudyConfig,
    k: int,
    rng: random.Random,
    model: str,
    spans: list[tuple[int, int, float, float, bool]],
    deadline: float,
) -> Trajectory:
    arm = cfg.arms[k % len(cfg.arms)]
    lo, hi = cfg.token_range
    n_turns = rng.randint(*cfg.turns)
    ids = [rng.randrange(lo, hi) for _ in range(rng.randint(*cfg.prompt_tokens))]
    traj = Trajectory(
        id=f"study-{k}-{uuid.uuid4().hex[:8]}",
        model=model,
        suite=f"study-{arm}",
        agent="synthetic",
        termination=TerminationReason.ANSWERED,
        metadata={"arm": arm},
        started_at=time.time(),
    )
    sid = await backend.open_session(timeout_s=SESSION_TIMEOUT_S) if arm == "session" else None
    context: list[int] = []
    prev_rid: str | None = None
    try:
        for i in range(n_turns):
            delta = ids if i == 0 else [rng.randrange(lo, hi) for _ in range(rng.randint(*cfg.tool_tokens))]
            max_new = rng.randint(*cfg.completion_tokens)
            if cfg.max_context is not None and len(context) + len(delta) + max_new > cfg.max_context:
                traj.termination = TerminationReason.MAX_TOKENS  # the call would not fit the model's window
                break
            if time.monotonic() > deadline:
                traj.termination = TerminationReason.WALL_TIME
                break
            sampling = {"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True}
            full = context + delta
            session = None
            if sid is not None:
                sent, session = delta, SessionTurn(sid, prev_rid)
            elif arm == "evict" and i > 0:
                full = [lo + (full[0] - lo + i) % (hi - lo), *full[1:]]
                sent = full
            else:
                sent = full
            t0 = time.monotonic()
            try:
                result = await backend.generate(sent, sampling_params=sampling, rid=f"{traj.id}-t{i}", session=session)
            except BackendError as exc:
                # One failed call (typically a timeout on a saturated machine) ends this trajectory; the
                # calls already measured stay in the study rather than the whole run being lost.
                traj.termination, traj.error = TerminationReason.BACKEND_ERROR, str(exc)
                break
            t1 = time.monotonic()
            spans.append((k, i, t0, t1, bool(result.batch_size)))
            traj.turns.append(
                Turn(
                    index=i,
                    delta_ids=delta,
                    completion_ids=result.output_ids,
                    finish_reason=result.finish_reason,
                    request_id=result.request_id,
                    server=cfg.engine_url,
                    cache=result.cache_figures(),
                    timings=TurnTimings(
                        e2e_s=result.server_e2e_s or (t1 - t0),
                        ttft_s=result.ttft_s or 0.0,
                        queue_s=result.queue_s or 0.0,
                    ),
                )
            )
            prev_rid = result.request_id
            context = full + result.output_ids
    finally:
        if sid is not None:
            await backend.close_session(sid)
    traj.ended_at = time.time()
    return traj


async def run_study(cfg: StudyConfig, *, transport: Transport | None = None) -> list[Trajectory]:
    """Run ``cfg.trajectories`` synthetic trajectories, ``cfg.concurrency`` at a time (fewer when
    ``cfg.time_budget_s`` runs out first; trajectories that never started are not returned).

    ``transport`` replaces the network (tests of the request logic only)."""
    rng = random.Random(cfg.seed)
    seeds = [rng.randrange(1 << 30) for _ in range(cfg.trajectories)]
    sem = asyncio.Semaphore(cfg.concurrency)
    spans: list[tuple[int, int, float, float, bool]] = []
    backend = await SGLangBackend.connect(cfg.engine_url, request_timeout_s=cfg.timeout_s, transport=transport)
    try:
        model = backend.info.served_model_name or "model"

        deadline = time.monotonic() + (cfg.time_budget_s if cfg.time_budget_s is not None else float("inf"))

        async def bounded(k: int) -> Trajectory | None:
            async with sem:
                if time.monotonic() > deadline:
                    return None
                return await _one(backend, cfg, k, random.Random(seeds[k]), model, spans, deadline)

        trajs = await asyncio.gather(*(bounded(k) for k in range(cfg.trajectories)))
    finally:
        await backend.aclose()
    # Where the engine gave no batch size, estimate it from the calls' overlap on the client.
    estimates = _interval_overlap_batch([(s, e) for _, _, s, e, _ in spans])
    for (k, i, _, _, reported), estimate in zip(spans, estimates, strict=True):
        traj = trajs[k]  # never None here: spans come from trajectories that started
        if not reported and traj is not None:
            traj.turns[i].cache.batch_size = max(1.0, estimate)
    return [t for t in trajs if t is not None and t.turns]


__all__ = ["ARMS", "StudyConfig", "run_study"]
