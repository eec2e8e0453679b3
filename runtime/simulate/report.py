"""The simulation's table: each policy's figures and their ratios to ``none``'s (all SIMULATED)."""

from __future__ import annotations

from pydantic import BaseModel

from interleaf.runtime.simulate.floor import KVFloor
from interleaf.runtime.simulate.simulation import PolicyResult, SimulationSetup


class SimulationReport(BaseModel):
    """A whole ``interleaf simulate`` run (``--json`` prints this)."""

    simulated: bool = True
    """Always True: every time here is virtual, from the cost model, not measured."""
    workload: str
    """Workload name or trace file."""
    agents: int
    """Sessions replayed."""
    peak_context_tokens: int
    """The agents' peak total context (real tokens)."""
    kv_tokens_per_server: int
    """KV capacity of each server (real tokens; the oracle's is unbounded)."""
    turns_cut: int = 0
    """Trace turns left out because the context would have passed the model's window (``fit_context``)."""
    tool_floor_s: float
    """The longest session's summed tool pauses: no policy's makespan can be shorter."""
    kv_floor: KVFloor | None = None
    """What no policy can beat at this KV (``kv_floor``); the oracle, with unbounded KV, is not bound by it."""
    setup: SimulationSetup
    """Cluster, model and sizing."""
    results: list[PolicyResult]
    """One entry per policy, in the order run."""


def render(report: SimulationReport) -> str:
    """A plain-text table with ratios vs ``none`` (``x`` > 1 = better than none)."""
    s = report.setup
    base = next((r for r in report.results if r.policy == "none"), None)
    lines = [
        f"SIMULATED: {report.agents} agents of {report.workload} on {s.servers} x {s.gpu} "
        f"({s.model}); peak total context {report.peak_context_tokens:,} tok; KV {report.kv_tokens_per_server:,} "
        f"tok/server; token block {s.token_block}; tool-pause floor {report.tool_floor_s:.1f} s"
        + (f"; {report.turns_cut:,} turns cut at the model's context window" if report.turns_cut else "")
        + (f"; admission overcommit {s.admission_overcommit:g}" if s.admission_overcommit != 1.0 else "")
        + ("" if s.priority_scheduling else "; servers first come, first served (no priority scheduling)"),
    ]
    head = (
        f"{'policy':16s} {'JCT mean':>9s} {'p50':>8s} {'p95':>8s} {'makespan':>9s} {'turns/s':>8s} "
        f"{'recomputed':>12s} {'peak held / budget':>24s} {'adm.waits':>9s} {'failed':>6s} "
        f"{'xJCT':>6s} {'xp95':>6s} {'xmksp':>6s} {'wall':>6s} {'cpu':>6s}"
    )
    lines += [head, "-" * len(head)]
    notes = []
    for r in report.results:
        if r.stalled is not None:  # the simulated system stopped making progress: no JCT to compare
            lines.append(
                f"{r.policy:16s} STUCK (nothing happened for {report.setup.stall_s:.0f} s) from {r.makespan_s:.1f} s: "
                f"{r.completed} of {r.agents} sessions done, {r.turns} turns served {r.wall_s:5.0f}s {r.cpu_s:5.0f}s"
            )
            notes.append(f"{r.policy}: {r.stalled}; the simulation stopped there")
            continue
        if r.kv_exhausted is not None:  # SGLang deadlocks from here on: no JCT to compare
            lines.append(
                f"{r.policy:16s} DEADLOCK (KV exhausted by pinned sessions) at {r.makespan_s:.1f} s: "
                f"{r.completed} of {r.agents} sessions done, {r.turns} turns served, the servers held "
                f"{r.server_held_tokens:,} of their {r.kv_tokens:,} KV tokens (no budget) "
                f"{r.wall_s:5.0f}s {r.cpu_s:5.0f}s"
            )
            notes.append(f"{r.policy}: {r.kv_exhausted}; the simulation stopped there")
            continue

        def ratio(a: float | None, b: float | None) -> str:
            return f"{b / a:5.2f}x" if base is not None and a and b else "    -"

        def secs(x: float | None, width: int) -> str:
            return f"{x:{width}.1f}s" if x is not None else f"{'-':>{width}s} "

        lines.append(
            f"{r.policy:16s} {secs(r.jct_mean_s, 8)} {secs(r.jct_p50_s, 7)} {secs(r.jct_p95_s, 7)} "
            f"{r.makespan_s:8.1f}s "
            f"{r.turns_per_s:8.2f} {r.recomputed_tokens:12,d} {r.peak_held_tokens:11,d} / {r.budget_tokens:<11,d} "
            f"{r.admission_waits:9d} {r.failed:6d} {ratio(r.jct_mean_s, base and base.jct_mean_s)} "
            f"{ratio(r.jct_p95_s, base and base.jct_p95_s)} {ratio(r.makespan_s, base and base.makespan_s)} "
            f"{r.wall_s:5.0f}s {r.cpu_s:5.0f}s"
        )
        for reason, count in r.failures.items():
            notes.append(f"{r.policy}: {count} session(s) failed: {reason}")
    floor = report.kv_floor
    if floor is not None:
        oracle = next((r for r in report.results if r.policy == "oracle" and r.stalled is None), None)
        versus = (
            f" ({floor.mean_jct_s / oracle.jct_mean_s:.2f}x the oracle's mean)" if oracle and oracle.jct_mean_s else ""
        )
        notes.append(
            f"floor at this KV, any policy: mean JCT >= {floor.mean_jct_s:.1f} s{versus}, makespan >= "
            f"{floor.makespan_s:.1f} s (decode steps of >= {floor.decode_step_s * 1e3:.2f} ms, tool pauses, and "
            "every decoding context in KV; docs/retention.md)"
        )
    return "\n".join(lines + notes)


__all__ = ["SimulationReport", "render"]
