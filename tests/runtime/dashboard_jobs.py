"""Synthetic jobs for the dashboard's tests and screenshots, written straight into a ``JobStore``.

Deterministic per (job, episode): correct and incorrect episodes, two servers, holds and releases,
admission waits, a failover, and evidence for several inefficiency patterns (a confirmatory python
call, a python error, a repeated call, recompute after a released pause). Sized freely: the load
test stores 10,000 episodes of 10 turns (100,000 turns).
"""

from __future__ import annotations

import asyncio
import json
import random
import time

from interleaf.runtime.jobs.store import JobEvent, JobEventType, JobRecord, JobStatus, JobStore
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

MODEL = "SmolLM2-135M-Instruct"  # a shipped model profile: episodes get PTE figures
SERVERS = ("http://127.0.0.1:30001", "http://127.0.0.1:30002")


def _call(turn: int, name: str, arguments: dict, result: str, *, error: str | None = None) -> ToolCallRecord:
    raw = json.dumps({"name": name, "arguments": arguments})
    return ToolCallRecord(
        id=f"call_{turn}_0", name=name, arguments=arguments, raw=raw, result=result,
        is_error=error is not None, error_type=error, duration_s=0.05 + 0.01 * turn,
    )  # fmt: skip


def synthetic_trajectory(
    job_id: str, episode: int, *, turns: int = 4, retention: str = "adaptive", start: float = 1_000.0
) -> Trajectory:
    """One episode of ``turns`` LLM calls, the last one answering; ``start``: the job's start (Unix time).
    Holds follow ``retention``: ``none`` releases at every pause, ``session`` holds, others mix."""
    rng = random.Random(f"{job_id}/{episode}")
    a, b = rng.randint(10, 99), rng.randint(2, 9)
    expected = str(a * b)
    correct = rng.random() < 0.7
    answer = expected if correct else str(a * b + rng.randint(1, 9))
    server = SERVERS[episode % 2]
    kind = episode % 4  # which pattern this episode shows
    out: list[Turn] = []
    context = 0
    for i in range(turns):
        last = i == turns - 1
        delta = 120 if i == 0 else 24 + 4 * i
        completion = 18 + (i * 7) % 11
        if last:
            text = f"So {a}*{b} = {answer}. <answer>{answer}</answer>"
            calls = []
        elif kind == 0 and i == 0:
            text = f"{a}*{b} is {expected}, I am fairly sure. Let me check with python. <tool_call>"
            calls = [_call(i, "python", {"code": f"print({a}*{b})"}, f"stdout: {expected}\nstderr:")]
        elif kind == 1 and i == 0:
            text = "I will compute it in python. <tool_call>"
            calls = [_call(i, "python", {"code": f"{a}*{b}"}, "stdout:\nstderr:")]
        elif kind == 2:
            text = "Let me use the calculator. <tool_call>"
            calls = [_call(i, "calculator", {"expression": f"{a}*{b}"}, expected)]
        else:
            text = f"Step {i}: look up the rule for {a}. <tool_call>"
            calls = [_call(i, "lookup", {"key": f"rule-{a}-{i}"}, f"rule {a}: multiply by {b} <b>&amp;</b> add 0")]
        cached = context if context else 0
        recomputed = 0
        events: list[RetentionRecord] = []
        if i > 0 and out[-1].retention.decision == RetentionDecision.RELEASE:
            recomputed, cached = context // 2, context - context // 2
        if i == 1 and episode % 5 == 0:
            events.append(RetentionRecord(policy=retention, decision=RetentionDecision.QUEUED, wait_s=0.3,
                                          reason="waited for room in the KV budget"))  # fmt: skip
        turn_server = server
        if i == 2 and episode % 7 == 3:
            other = SERVERS[(episode + 1) % 2]
            events.append(RetentionRecord(policy=retention, decision=RetentionDecision.RELEASE,
                                          reason=f"failover: {server} failed (connection refused); re-prefill of "
                                          f"{context} tokens on {other}"))  # fmt: skip
            recomputed, cached, turn_server = context, 0, other
        hold = not last and retention != "none" and (retention == "session" or (episode + i) % 3 != 0)
        prompt = context + delta
        out.append(
            Turn(
                index=i,
                delta_ids=[1] * delta,
                completion_ids=[2] * completion,
                text=text,
                finish_reason="stop",
                tool_calls=calls,
                timings=TurnTimings(
                    queue_s=0.02 + (0.3 if events and events[0].decision == RetentionDecision.QUEUED else 0.0),
                    ttft_s=0.08 + recomputed / 2000 + (0.3 if events else 0.0),
                    decode_s=completion / 25,
                    e2e_s=0.08 + recomputed / 2000 + (0.3 if events else 0.0) + completion / 25,
                    tool_s=0.0 if last else 0.05,
                    pause_s=0.0 if last else 0.4 + 0.1 * (episode % 3),
                ),
                cache=CacheFigures(
                    prompt_tokens=prompt,
                    cached_tokens=cached,
                    recomputed_tokens=recomputed,
                    completion_tokens=completion,
                ),
                retention=RetentionRecord(
                    policy=retention,
                    decision=RetentionDecision.NONE
                    if last
                    else RetentionDecision.HOLD
                    if hold
                    else RetentionDecision.RELEASE,
                    reason="" if last else "recompute 900 PTE > hold 240 PTE" if hold else "pause too long to hold",
                    predicted_pause_s=0.5,
                    held_tokens=prompt + completion if hold else 0,
                ),
                retention_events=events,
                server=turn_server,
            )
        )
        context = prompt + completion
    start = start + 0.05 * episode
    wall = sum(t.timings.e2e_s + t.timings.pause_s for t in out)
    return Trajectory(
        id=f"{job_id}-e{episode}",
        job_id=job_id,
        episode=episode,
        task_id=f"arith-{episode}",
        suite="arith",
        agent="tir",
        model=MODEL,
        question=f"What is {a}*{b}?",
        expected=expected,
        answer=answer,
        score=1.0 if correct else 0.0,
        correct=correct,
        termination=TerminationReason.ANSWERED,
        retention_policy=retention,
        tools=["python", "calculator", "lookup"],
        turns=out,
        started_at=start,
        ended_at=start + wall,
    )


async def store_synthetic_job(
    store: JobStore,
    job_id: str,
    n: int,
    *,
    turns: int = 4,
    retention: str = "adaptive",
    status: JobStatus = JobStatus.SUCCEEDED,
    batch: int = 500,
) -> None:
    """A job record and ``n`` stored episodes (plus an event per episode), as a runner would leave them."""
    done = n if status != JobStatus.RUNNING else n // 2
    spec = {"suite": "arith", "n": n, "retention": retention, "kv_budget_fraction": 0.5,
            "backend_urls": list(SERVERS)}  # fmt: skip
    t0 = time.time() - 600
    await store.create_job(JobRecord(id=job_id, spec=spec, n_total=n, n_done=done, created_at=t0 - 1))
    correct = 0
    for lo in range(0, done, batch):
        trajs = [
            synthetic_trajectory(job_id, e, turns=turns, retention=retention, start=t0)
            for e in range(lo, min(done, lo + batch))
        ]
        correct += sum(1 for t in trajs if t.correct)
        for k in range(0, len(trajs), 32):  # a few at a time: one connection each
            await asyncio.gather(*(store.put_trajectory(t) for t in trajs[k : k + 32]))
    if done <= 2000:
        for e in range(done):
            data = {"attempt": 1, "termination": "answered", "score": 1.0, "turns": turns}
            await store.add_event(JobEvent(type=JobEventType.EPISODE_FINISHED, job_id=job_id, episode=e, data=data))
    # The runner's KV samples (the engine's KV in use on each server), every 0.7 s of the ~9 s this job spans.
    for k in range(13):
        servers = {url: {"kv_used_tokens": 1000.0 * (k + 1) + 500 * i} for i, url in enumerate(SERVERS)}
        await store.add_event(
            JobEvent(type=JobEventType.SERVERS_SAMPLED, job_id=job_id, ts=t0 + 0.7 * k, data={"servers": servers})
        )
    finished = None if status == JobStatus.RUNNING else t0 + 0.05 * n + 10
    await store.update_job(job_id, status=status, started_at=t0, finished_at=finished, n_correct=correct)


__all__ = ["MODEL", "SERVERS", "store_synthetic_job", "synthetic_trajectory"]
