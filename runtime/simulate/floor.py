"""The best any retention policy could do at a given KV: a lower bound on mean JCT and makespan.

The oracle (infinite KV) is the issue's yardstick; at a small KV it can be out of reach for every policy.
This bound says by how much, from the workload and the cost model alone (SIMULATED units):

* a turn decodes its ``o`` output tokens in ``o`` steps, each at least the cost model's fastest decode step
  ``t`` (one sequence, the weights read once): a session takes at least its decode steps plus its tool
  pauses (its critical path);
* while it decodes, the turn's whole context ``C`` (every earlier input and output token, plus this turn's
  input) must be in KV: it occupies ``C · o · t`` token-seconds of KV at least. The servers offer
  ``servers × KV`` token-seconds per second, so the sessions, served in the best order (least KV work first,
  as a single machine with preemption minimises the sum of completion times), finish no sooner than that
  order's cumulative work ÷ the KV.

Both ignore prefill, recompute and contention, so every real policy is slower; where the bound itself is
above the oracle, no policy can come near the oracle at that KV.
"""

from __future__ import annotations

import statistics

from pydantic import BaseModel

from interleaf.runtime.simulate.simulation import SimulationSetup, profile_executor, server_kv_tokens
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
    """The bound for ``scripts`` on ``setup``'s servers (real tokens, whatever ``setup.token_block``)."""
    if not scripts:
        raise ValueError("kv_floor: no sessions")
    step = profile_executor(setup.gpu, setup.model).cost.step_time([1], [1])
    kv_rate = server_kv_tokens(scripts, setup) * setup.servers  # token-seconds of KV per second, all servers
    paths: list[float] = []
    work: list[float] = []
    for script in scripts:
        context, kv_seconds, path = 0, 0.0, script.tool_time_s
        for turn in script.turns:
            context += turn.input_length
            kv_seconds += context * turn.output_length * step
            path += turn.output_length * step
            context += turn.output_length
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
