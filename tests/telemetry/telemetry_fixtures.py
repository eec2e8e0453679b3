"""Hand-written trajectories for the telemetry tests (positive and negative cases per pattern)."""

from __future__ import annotations

import json
from typing import Any

from interleaf.telemetry.records import (
    CacheFigures,
    RetentionDecision,
    RetentionRecord,
    TerminationReason,
    ToolCallRecord,
    Trajectory,
    Turn,
    TurnTimings,
)
from interleaf.telemetry.tracing import AgentSpan, EpisodeTracer


def call(i: int, j: int, name: str, arguments: dict[str, Any] | None, result: str = "", **kw: Any) -> ToolCallRecord:
    raw = kw.pop("raw", None)
    if raw is None:
        raw = json.dumps({"name": name, "arguments": arguments})
    return ToolCallRecord(id=f"call_{i}_{j}", name=name, arguments=arguments, raw=raw, result=result, **kw)


def turn(
    i: int,
    text: str,
    calls: list[ToolCallRecord] | None = None,
    *,
    delta: int = 20,
    completion: int = 10,
    cached: int | None = None,
    prompt: int | None = None,
    **kw: Any,
) -> Turn:
    cache = CacheFigures(completion_tokens=completion)
    if prompt is not None:
        cache.prompt_tokens = prompt
    if cached is not None:
        cache.cached_tokens = cached
    return Turn(
        index=i,
        delta_ids=[7] * delta,
        completion_ids=[8] * completion,
        text=text,
        tool_calls=calls or [],
        cache=cache,
        **kw,
    )


def traj(
    tid: str,
    turns: list[Turn],
    *,
    answer: str | None = None,
    tools: list[str] | None = None,
    model: str = "SmolLM2-135M-Instruct",
    suite: str = "arith",
    correct: bool | None = True,
) -> Trajectory:
    return Trajectory(
        id=tid,
        turns=turns,
        answer=answer,
        tools=tools or [],
        model=model,
        suite=suite,
        correct=correct,
        score=None if correct is None else float(correct),
        termination=TerminationReason.ANSWERED,
    )


TC = '<tool_call>{"name": "python", "arguments": {"code": "print(17*3)"}}</tool_call>'


def confirmatory() -> Trajectory:
    return traj(
        "confirm",
        [
            turn(
                0,
                "17 times 3 is 51. Let me double-check with python. " + TC,
                [call(0, 0, "python", {"code": "print(17*3)"}, "51\n")],
            ),
            turn(1, "Confirmed. <answer>51</answer>"),
        ],
        answer="51",
        tools=["python"],
    )


def not_confirmatory() -> Trajectory:
    # 510 and 5.1 must not count as "51"; the answer only appears after the tool result.
    return traj(
        "explore",
        [
            turn(
                0,
                "Maybe 510 or 5.1? Compute it. " + TC,
                [call(0, 0, "python", {"code": "print(17*3)"}, "51\n")],
            ),
            turn(1, "The tool says 51. <answer>51</answer>"),
        ],
        answer="51",
        tools=["python"],
    )


def mixing() -> Trajectory:
    return traj(
        "mix",
        [
            turn(0, "search", [call(0, 0, "search", {"query": "capital of France"}, "Paris is ...")]),
            turn(1, "compute", [call(1, 0, "python", {"code": "print(len('Paris'))"}, "5\n")]),
            turn(2, "<answer>5</answer>"),
        ],
        answer="5",
        tools=["search", "python"],
    )


def silent_python() -> Trajectory:
    """Lack of Tool Priors: the code computes but prints nothing (SandboxFusion's empty format)."""
    return traj(
        "silent",
        [
            turn(0, "x", [call(0, 0, "python", {"code": "17*3"}, "stdout:\n\nstderr:\n")]),
            turn(
                1,
                "x",
                [
                    call(
                        1,
                        0,
                        "python",
                        {"code": "print(17*3"},
                        ("stdout:\n\nstderr:\n  File \"<stdin>\", line 1\nSyntaxError: '(' was never closed\n"),
                    )
                ],
            ),
            turn(2, "<answer>51</answer>"),
        ],
        answer="51",
        tools=["python"],
    )


def healthy_python() -> Trajectory:
    return traj(
        "healthy",
        [
            turn(
                0,
                "x",
                [
                    call(
                        0,
                        0,
                        "python",
                        {"code": "print('Error rate: 0')"},
                        "stdout:\nError rate: 0\n\nstderr:\n",
                    )
                ],
            ),
            turn(1, "<answer>0</answer>"),
        ],
        answer="0",
        tools=["python"],
    )


def malformed_call() -> Trajectory:
    """Tool Format Collapse: the JSON did not parse, then an argument violated the schema."""
    return traj(
        "malformed",
        [
            turn(
                0,
                '<tool_call>{"name": "python", "arguments": {"code": print(1)}</tool_call>',
                [
                    call(
                        0,
                        0,
                        "python",
                        None,
                        "ToolArgumentError: invalid JSON",
                        is_error=True,
                        error_type="ToolArgumentError",
                        raw='{"name": "python", "arguments": {"code": print(1)}',
                    )
                ],
                format_error="Expecting value: line 1 column 40",
            ),
            turn(
                1,
                "x",
                [
                    call(
                        1,
                        0,
                        "python",
                        {"cod": "print(1)"},
                        "missing argument 'code'",
                        is_error=True,
                        error_type="ToolArgumentError",
                    )
                ],
            ),
            turn(2, "<answer>1</answer>"),
        ],
        answer="1",
        tools=["python"],
    )


def long_response() -> Trajectory:
    return traj(
        "long",
        [
            turn(
                0,
                "fetch",
                [call(0, 0, "visit", {"url": "http://x"}, "lorem " * 900)],
                delta=100,
                completion=20,
            ),
            turn(1, "summarise", delta=1200, completion=30),
            turn(2, "<answer>x</answer>", delta=10, completion=10),
        ],
        answer="x",
        tools=["visit"],
    )


def recompute() -> Trajectory:
    t0 = turn(
        0,
        "a",
        [call(0, 0, "python", {"code": "print(1)"}, "1\n")],
        delta=100,
        completion=10,
        prompt=100,
        timings=TurnTimings(pause_s=3.0),
        retention=RetentionRecord(policy="none", decision=RetentionDecision.RELEASE),
    )
    # Turn 1: 130-token prompt, 20 new; 109 had KV before (the last sampled token never ran), only 40
    # cached: 69 recomputed.
    t1 = turn(1, "<answer>1</answer>", delta=20, completion=5, prompt=130, cached=40)
    return traj("recompute", [t0, t1], answer="1", tools=["python"])


def held() -> Trajectory:
    t0 = turn(0, "a", [call(0, 0, "python", {"code": "print(1)"}, "1\n")], delta=100, completion=10, prompt=100)
    t1 = turn(1, "<answer>1</answer>", delta=20, completion=5, prompt=130, cached=110)
    return traj("held", [t0, t1], answer="1", tools=["python"])


def redundant() -> Trajectory:
    return traj(
        "redundant",
        [
            turn(0, "a", [call(0, 0, "search", {"query": "x", "k": 3}, "r")]),
            turn(1, "b", [call(1, 0, "search", {"k": 3, "query": "x"}, "r")]),
            turn(2, "<answer>r</answer>"),
        ],
        answer="r",
        tools=["search"],
    )


def run_episode(tracer: EpisodeTracer) -> AgentSpan:
    """What the runtime does around one two-turn episode."""
    turn0 = Turn(
        index=0,
        delta_ids=[1] * 30,
        completion_ids=[2] * 7,
        text="Let me compute. <tool_call>...</tool_call>",
        finish_reason="stop",
        request_id="req-0",
        cache=CacheFigures(prompt_tokens=30, cached_tokens=0, completion_tokens=7, batch_size=2.0),
    )
    call = ToolCallRecord(id="call_0_0", name="python", arguments={"code": "print(6*7)"}, result="42\n")
    with tracer.agent_span(
        "arith-agent",
        conversation_id="traj-1",
        agent_id="agent-7",
        model="SmolLM2-135M-Instruct",
        retention_policy="session",
    ) as agent:
        with tracer.llm_span(
            "SmolLM2-135M-Instruct",
            conversation_id="traj-1",
            temperature=0.0,
            max_tokens=64,
            seed=3,
            server_address="127.0.0.1",
            server_port=30000,
        ) as llm:
            llm.set_prompt("What is 6*7?")
            llm.record(turn0, pte=31.5)
        with tracer.tool_span("python", call_id=call.id, arguments=call.arguments) as tool:
            tool.record(call)
    return agent
