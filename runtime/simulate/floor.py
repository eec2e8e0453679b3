"""The best any retention policy could do at a given KV: a lower bound on mean JCT and makespan.

The oracle (infinite KV) is the issue's yardstick; at a small KV it can be out of reach for every policy.
This bound says by how much, from the workload and the cost model alone (SIMULATED units):

* a turn decodes its ``o`` output tokens in ``o`` steps, each at least the cost model's fastest decode step
  ``t`` (one sequence, the weights read once): a session takes at least its decode steps plus its tool
  pauses (its critical path);
* while it decodes, the turn's whole context ``C`` (every earlier input and output token, plus this turn's
  input) must be in KV: it occupies ``C · o · t`` token-seconds of KV at least, less what of ``C`` another
  session may share (hash blocks another session also uses: the radix cache stores a shared prefix once).
  The servers offer ``servers × KV`` token-seconds per second, so the sessions, served in the best order
  (least KV work first, as a single machine with preemption minimises the sum of completion times), finish
  no sooner than that order's cumulative work ÷ the KV.

Both ignore prefill, recompute and contention, so every real policy is slower; where the bound itself is
above the oracle, no policy can come near the oracle at that KV.

Counted as the simulation runs them (``SimulationSetup.token_block`` k): lengths rounded up to whole blocks
of k tokens, the KV as the servers are sized, and a turn's ``o`` tokens as ``ceil(o/k)`` simulated ones, the
first from the prefill forward (at least one step ``t``) and each later one from a decode forward that
stands for k steps: ``1 + (ceil(o/k) - 1)·k`` steps, not ``o``. So a bound is never above a simulated figure;
at k = 1 it is the exact bound.
"""

from __future__ import annotations

import math
import statistics

from pydantic import BaseModel

from interleaf.runtime.simulate.simulation import SimulationSetup, hash_spans, profile_executor, server_kv_slots
from interleaf.runtime.simulate.trace import SessionScript


class KVFloor(BaseModel):
    """No policy's figures can be lower than these at the run's KV (the oracle's KV is unbounded)."""

    mean_jct_s: float
    """Mean JCT at least: the larger of the mean critical path and the KV-work bound."""
    makespan_s: float
    """Makespan at least: the latest session's start + critical path, or all the KV work ÷ the KV."""
    decode_step_s: float
    """The cost model's fastest decode step (one sequence, one token of KV): the bound's time unit."""


def kv_floor(scripts: list[SessionScript], setup: SimulationSetup) -> KVFloor:
    """The bound for ``scripts`` on ``setup``'s servers, at ``setup.token_block`` (the module docstring)."""
    if not scripts:
        raise ValueError("kv_floor: no sessions")
    k = setup.token_block
    step = profile_executor(setup.gpu, setup.model).cost.step_time([1], [1])
    # Token-seconds of KV per second, all servers (simulated tokens: the units of the contexts below).
    kv_rate = server_kv_slots(scripts, setup) * setup.servers
    users: dict[tuple[int, int], set[str]] = {}
    for script in scripts:
        for turn in script.turns:
            for key, _ in hash_spans(turn, k):
                users.setdefault(key, set()).add(script.session_id)
    paths: list[float] = []
    work: list[float] = []
    for script in scripts:
        context, kv_seconds, path = 0, 0.0, script.tool_time_s
        for turn in script.turns:
            shared = sum(n for key, n in hash_spans(turn, k) if len(users[key]) > 1)
            context += math.ceil(turn.input_length / k) - shared
            steps = 1 + (math.ceil(turn.output_length / k) - 1) * k
            kv_seconds += context * steps * step
            path += steps * step
            context += math.ceil(turn.output_length / k)
        paths.append(path)
        work.append(kv_seconds)
    finished, completions = 0.0, 0.0
    for kv_seconds in sorted(work):
        finished += kv_seconds / kv_rate
        completions += finished
    starts = sum(s.start_s for s in scripts)
    return KVFloor(
        mean_jct_s=max(statistics.fmean(paths), (completions - starts) / len(scripts)),
        makespan_s=max(max(s.start_s + p for s, p in zip(scripts, paths, strict=True)), sum(work) / kv_rate),
        decode_step_s=step,
    )


__all__ = ["KVFloor", "kv_floor"]
