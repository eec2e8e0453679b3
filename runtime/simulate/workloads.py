"""Workload generators: seeded agent traces (``TraceTurn`` lines) named ``reference``, ``swe`` and ``bfcl``.

Every parameter is below with its source. ``[bench]`` = bench/retention.py's reference workload (kept
identical so simulated and measured figures compare); ``[issue]`` = the figures of public coding-agent
traces quoted in issue 14 (SWE-bench coding agents, Claude Code traces in Mooncake format, AIPerf's
``agentic-code`` defaults); ``[ours]`` = a choice where sources are silent, exposed as a parameter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from interleaf.runtime.simulate.trace import TraceTurn

_Z95 = 1.6449
"""z-score of the 95th percentile: a log-normal with median m and p95 q has σ = ln(q/m)/z."""


@dataclass(frozen=True)
class WorkloadShape:
    """The knobs of a synthetic agent workload (all token counts in real tokens)."""

    turns: tuple[int, int]
    """Turns per agent, uniform in [lo, hi]."""
    shared_prefix: int
    """System prompt + tool schemas, identical for every agent (one hash block: the radix cache shares it)."""
    first_turn: tuple[int, int]
    """First turn's input tokens (shared prefix included), uniform in [lo, hi]."""
    tool_output: tuple[int, int]
    """New input tokens of a later turn (the tool's output and the turn's framing)."""
    tool_output_log_uniform: bool
    """Draw tool outputs log-uniformly (heavy toward short outputs) instead of uniformly."""
    output: tuple[int, int]
    """Generated tokens per turn, uniform in [lo, hi]."""
    pause_median_s: float
    """Tool pause, log-normal: median seconds."""
    pause_p95_s: float
    """Tool pause, log-normal: 95th percentile seconds."""
    tools: tuple[str, ...]
    """Tool names, drawn uniformly per pause."""


SHAPES: dict[str, WorkloadShape] = {
    # [bench] 6 turns; 400-token system prompt shared (+ ~30 tokens of chat tags in the byte-level
    # simulator's vocabulary); 40-token task + tags; tool outputs 50-800 (+ ~50 tag tokens); decode 32-96;
    # pauses log-normal median 2 s, p95 10 s; tools search/python/browse.
    "reference": WorkloadShape(
        turns=(6, 6),
        shared_prefix=430,
        first_turn=(520, 520),
        tool_output=(100, 850),
        tool_output_log_uniform=False,
        output=(32, 96),
        pause_median_s=2.0,
        pause_p95_s=10.0,
        tools=("search", "python", "browse"),
    ),
    # [issue] coding agent: 20-60 turns; first turn 8-24k tokens; tool outputs 200-4k tokens; 50-300
    # output tokens per turn; tool pauses heavy-tailed, median 3 s, p95 30 s. [ours] a 2,048-token shared
    # system prompt + tool schemas inside the first turn; log-uniform tool outputs (most are short file
    # reads and test runs, a few are long); tools bash/edit/read/search.
    "swe": WorkloadShape(
        turns=(20, 60),
        shared_prefix=2048,
        first_turn=(8192, 24576),
        tool_output=(200, 4096),
        tool_output_log_uniform=True,
        output=(50, 300),
        pause_median_s=3.0,
        pause_p95_s=30.0,
        tools=("bash", "edit", "read", "search"),
    ),
    # [issue] function calling (BFCL multi-turn): 3-10 turns, short contexts, sub-second tools. [ours]
    # 1,024-token shared system prompt with the function schemas; first turn 1-2k; tool results 20-300
    # tokens; 20-150 output tokens (a call or a short answer); pauses median 0.2 s, p95 0.8 s.
    "bfcl": WorkloadShape(
        turns=(3, 10),
        shared_prefix=1024,
        first_turn=(1100, 2048),
        tool_output=(20, 300),
        tool_output_log_uniform=False,
        output=(20, 150),
        pause_median_s=0.2,
        pause_p95_s=0.8,
        tools=("api_call",),
    ),
}
"""The named synthetic workloads."""


def generate(name: str, agents: int, *, seed: int = 0, turns: int | None = None) -> list[TraceTurn]:
    """``agents`` sessions of workload ``name``, all starting at time 0 (concurrent agents), seeded.

    ``turns`` overrides the shape's turn range (every agent gets exactly that many)."""
    shape = SHAPES.get(name)
    if shape is None:
        raise ValueError(f"workload={name!r} is not one of {sorted(SHAPES)} (or give a trace file)")
    if agents < 1:
        raise ValueError(f"agents={agents} must be >= 1")
    if turns is not None and turns < 1:
        raise ValueError(f"turns={turns} must be >= 1")
    rng = random.Random(seed)
    mu = math.log(shape.pause_median_s)
    sigma = math.log(shape.pause_p95_s / shape.pause_median_s) / _Z95
    out: list[TraceTurn] = []
    for a in range(agents):
        n = turns if turns is not None else rng.randint(*shape.turns)
        sid = f"{name}-{a}"
        first = rng.randint(*shape.first_turn)
        out.append(
            TraceTurn(
                timestamp=0.0,
                input_length=first,
                output_length=rng.randint(*shape.output),
                hash_ids=[0],
                block_tokens=shape.shared_prefix,
                session_id=sid,
                turn=0,
            )
        )
        for t in range(1, n):
            lo, hi = shape.tool_output
            new = (
                round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
                if shape.tool_output_log_uniform
                else rng.randint(lo, hi)
            )
            out.append(
                TraceTurn(
                    input_length=new,
                    output_length=rng.randint(*shape.output),
                    session_id=sid,
                    turn=t,
                    tool_pause_s=rng.lognormvariate(mu, sigma),
                    tool=rng.choice(shape.tools),
                )
            )
    return out


__all__ = ["SHAPES", "WorkloadShape", "generate"]
