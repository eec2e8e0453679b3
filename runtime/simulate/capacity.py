"""Capacity planning: the fewest servers on which N agents of a trace meet a job-completion-time target.

Each probe is a whole simulation (``simulate_policy``) of the trace on S servers, each server's KV sized
from its GPU's memory (``SimulationSetup.kv_from_gpu``: one more server is one more GPU's worth of KV).
The search doubles S from ``min_servers`` until the target is met, then bisects between the last miss and
the first hit. It assumes that more servers never make the JCT worse (true of the router's least-loaded
placement up to simulation noise); every probe is reported, so a non-monotone run shows in the table.
A probe in which any session failed (or that stopped: stuck, KV exhausted) never meets the target, whatever
its JCT: a failed session's JCT is the time until it failed. A trace whose longest context does not fit one
server's KV is refused before any probe (no server count serves it). Every figure is SIMULATED.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from interleaf.runtime.simulate.simulation import PolicyResult, SimulationSetup, check_policy, simulate_policy
from interleaf.runtime.simulate.trace import SessionScript

Statistic = Literal["mean", "p50", "p95"]


class CapacityProbe(BaseModel):
    """One simulated server count."""

    servers: int
    """Servers simulated."""
    jct_s: float | None
    """The planned statistic of job completion time, SIMULATED seconds (None: no session ended)."""
    meets: bool
    """Whether ``jct_s`` is within the target with every session completed (none failed, the run not stopped)."""
    result: PolicyResult
    """The whole run."""


class CapacityPlan(BaseModel):
    """The answer and the probes behind it (SIMULATED)."""

    simulated: bool = True
    """Always True: from the cost model, not measured."""
    policy: str
    """Retention policy simulated."""
    agents: int
    """Sessions replayed."""
    target_s: float
    """JCT target, seconds."""
    statistic: Statistic
    """Which JCT statistic must meet the target."""
    servers: int | None
    """Fewest servers that meet it; None when even ``max_servers`` does not."""
    kv_tokens_per_server: int
    """KV capacity of each server (real tokens)."""
    probes: list[CapacityProbe]
    """Every simulated server count, in the order run."""


def _statistic(result: PolicyResult, statistic: Statistic) -> float | None:
    return {"mean": result.jct_mean_s, "p50": result.jct_p50_s, "p95": result.jct_p95_s}[statistic]


def _served(result: PolicyResult) -> bool:
    """Every session ran to its end: no failure, no stop."""
    return result.completed == result.agents and result.stalled is None and result.kv_exhausted is None


def plan_capacity(
    scripts: list[SessionScript],
    policy: str,
    setup: SimulationSetup,
    *,
    target_s: float,
    statistic: Statistic = "mean",
    min_servers: int = 1,
    max_servers: int = 1024,
    on_probe: Callable[[CapacityProbe], None] | None = None,
) -> CapacityPlan:
    """The fewest servers (between ``min_servers`` and ``max_servers``) whose simulated JCT ``statistic``
    is at most ``target_s``; ``on_probe`` is called after each probe (progress)."""
    check_policy(policy)
    if not (math.isfinite(target_s) and target_s > 0):
        raise ValueError(f"target_s={target_s} must be a finite number of seconds > 0")
    if not 1 <= min_servers <= max_servers:
        raise ValueError(f"min_servers={min_servers}, max_servers={max_servers}: need 1 <= min <= max")
    if not scripts:
        raise ValueError("no sessions to plan for")
    from interleaf.runtime.simulate.simulation import server_kv_slots, server_kv_tokens

    setup = setup.model_copy(update={"kv_from_gpu": setup.kv_tokens is None or setup.kv_from_gpu})
    k, slots = setup.token_block, server_kv_slots(scripts, setup)
    longest = max(scripts, key=lambda s: s.peak_context)
    need = sum(math.ceil(t.input_length / k) + math.ceil(t.output_length / k) for t in longest.turns)
    if need > slots:  # a turn holds its whole context in one server's KV: more servers do not help
        where = f"one {setup.gpu}'s KV next to {setup.model}'s weights" if setup.kv_from_gpu else "one server's KV"
        raise ValueError(
            f"session {longest.session_id!r} reaches {longest.peak_context:,} tokens of context, more than "
            f"{where} ({slots * k:,} tokens): no server count can serve it; choose a GPU with more memory or a "
            "smaller model"
        )
    probes: dict[int, CapacityProbe] = {}
    order: list[CapacityProbe] = []

    def probe(servers: int) -> bool:
        if servers not in probes:
            result = simulate_policy(scripts, policy, setup.model_copy(update={"servers": servers}))
            jct = _statistic(result, statistic)
            meets = _served(result) and jct is not None and jct <= target_s
            probes[servers] = CapacityProbe(servers=servers, jct_s=jct, meets=meets, result=result)
            order.append(probes[servers])
            if on_probe is not None:
                on_probe(probes[servers])
        return probes[servers].meets

    lo, hi = min_servers - 1, min_servers  # invariant once found: lo misses (or is below the range), hi meets
    while not probe(hi):
        before, now = probes.get(lo), probes[hi]
        # Flat: doubling no longer helps (the tool pauses bound the JCT). Only between runs that served every
        # session: failed sessions' JCTs are the time to their failure, which more servers can lengthen.
        flat = (
            before is not None
            and before.jct_s is not None
            and now.jct_s is not None
            and _served(before.result)
            and _served(now.result)
            and now.jct_s >= 0.99 * before.jct_s
        )
        if hi >= max_servers or flat:
            return CapacityPlan(policy=policy, agents=len(scripts), target_s=target_s, statistic=statistic,
                                servers=None, kv_tokens_per_server=server_kv_tokens(scripts, setup),
                                probes=order)  # fmt: skip
        lo, hi = hi, min(2 * hi, max_servers)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            hi = mid
        else:
            lo = mid
    return CapacityPlan(policy=policy, agents=len(scripts), target_s=target_s, statistic=statistic, servers=hi,
                        kv_tokens_per_server=server_kv_tokens(scripts, setup), probes=order)  # fmt: skip


def render_plan(plan: CapacityPlan) -> str:
    """The probes as a table and the answer (plain text)."""
    lines = [
        f"SIMULATED capacity plan: {plan.agents} agents, policy {plan.policy}, target {plan.statistic} JCT <= "
        f"{plan.target_s:.0f} s; KV {plan.kv_tokens_per_server:,} tok/server (from the GPU's memory)",
        f"{'servers':>8s} {'JCT ' + plan.statistic:>10s} {'mean':>8s} {'p95':>8s} {'makespan':>9s} "
        f"{'recomputed':>12s} {'gpu busy':>8s} {'failed':>6s} {'meets':>5s}",
    ]
    notes = []

    def secs(x: float | None, width: int) -> str:
        return f"{x:{width}.1f}s" if x is not None else f"{'-':>{width}s} "

    for p in sorted(plan.probes, key=lambda p: p.servers):
        r = p.result
        lines.append(
            f"{p.servers:8d} {secs(p.jct_s, 9)} {secs(r.jct_mean_s, 7)} {secs(r.jct_p95_s, 7)} {r.makespan_s:8.1f}s "
            f"{r.recomputed_tokens:12,d} {r.gpu_busy:8.2f} {r.failed:6d} {'yes' if p.meets else 'no':>5s}"
        )
        stop = r.stalled or r.kv_exhausted
        if stop is not None:
            notes.append(f"{p.servers} servers: {stop}; the simulation stopped there")
        notes += [f"{p.servers} servers: {n} session(s) failed: {why}" for why, n in r.failures.items()]
    lines.append(
        f"=> {plan.servers} servers"
        if plan.servers is not None
        else "=> not met: the largest count probed misses it, or doubling the servers stopped helping"
    )
    return "\n".join(lines + notes)


__all__ = ["CapacityPlan", "CapacityProbe", "plan_capacity", "render_plan"]
