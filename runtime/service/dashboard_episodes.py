"""The dashboard's episode views: one page of a job's episode table (sorted, filtered, from the index
or straight from the store), and one episode with its per-turn costs and pattern evidence."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import HTTPException

from interleaf.runtime.jobs.store import read_stored_trajectory
from interleaf.runtime.service.dashboard_index import (
    HARDWARE,
    DashboardData,
    filter_counts,
    recomputed_per_turn,
)
from interleaf.runtime.service.dashboard_models import (
    EpisodeDetail,
    EpisodeFilter,
    EpisodePage,
    EpisodeRow,
    EpisodeTurnCost,
    SortKey,
)
from interleaf.telemetry import (
    Pattern,
    PTEVariant,
    TurnArrays,
    detect_patterns,
    find_model_profile,
    gamma,
    turn_pte,
)
from interleaf.telemetry.records import Trajectory


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


async def episode_page(
    data: DashboardData,
    job_id: str,
    *,
    offset: int,
    limit: int,
    sort: SortKey,
    order: Literal["asc", "desc"],
    filt: EpisodeFilter,
    pattern: Pattern | None,
) -> EpisodePage:
    """One page of the job's episode table, sorted by ``sort`` and filtered by ``filt`` (and ``pattern``)."""
    record = await data.job(job_id)
    index = data.indexes.get(job_id)
    complete = index is not None and index.final
    if sort == "episode" and filt == "all" and not complete:
        # The default order needs no index: the page's episodes straight from the store.
        ids = await data.episode_ids(job_id)
        if order == "desc":
            ids.reverse()
        rows = await data.page_rows(job_id, ids[offset : offset + limit])
        indexed = list(index.rows.values()) if index else []
        return EpisodePage(
            total=len(ids), indexed=len(indexed), matched=len(ids), offset=offset, rows=rows,
            counts=filter_counts(indexed),
        )  # fmt: skip
    index, total = await data.advance(record)
    indexed = list(index.rows.values())
    matched = sorted(_filtered(indexed, filt, pattern), key=_SORT[sort], reverse=order == "desc")
    page = [r.episode for r in matched[offset : offset + limit]]
    rows = await data.page_rows(job_id, page)
    return EpisodePage(
        total=total, indexed=len(indexed), matched=len(matched), offset=offset, rows=rows, counts=filter_counts(indexed)
    )


async def episode_detail(data: DashboardData, job_id: str, episode: int) -> EpisodeDetail:
    """One stored episode as the episode view reads it; 404 naming the job or the episode when absent."""
    await data.job(job_id)
    (raw,) = await data.raw(job_id, [episode])
    if raw is None:
        raise HTTPException(status_code=404, detail=f"job {job_id!r} has no stored episode {episode}")
    traj = read_stored_trajectory(job_id, episode, raw)  # the service answers UnreadableTrajectory with a 409
    ids = await data.episode_ids(job_id)
    return await asyncio.to_thread(_detail, traj, ids)


def _detail(traj: Trajectory, ids: list[int]) -> EpisodeDetail:
    turns = TurnArrays.from_trajectories([traj])
    recomputed = recomputed_per_turn(traj, turns)
    profile = find_model_profile(traj.model)
    g = gamma(profile, HARDWARE) if profile else None
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
        hardware=HARDWARE.name,
        findings=detect_patterns(traj, gamma=g),
        prev=ids[pos - 1] if pos > 0 else None,
        next=ids[pos + 1] if 0 <= pos < len(ids) - 1 else None,
    )


__all__ = ["episode_detail", "episode_page"]
