"""Acceptance: JobRunner on real Ray actors against the embedded engine (SmolLM2-135M, CPU).

The tiny model scores low; these tests check the machinery: every episode completes, and each
trajectory's reconstructed token sequence matches what the engine reported turn by turn.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
import ray

from interleaf.agents import Agent, Budgets, GrammarOptions
from interleaf.runtime.client import parse_prometheus
from interleaf.runtime.jobs import JobRunner, JobSpec, load_trajectories
from interleaf.runtime.jobs.store import JobStatus, JobStore
from interleaf.telemetry.records import RetentionDecision, TerminationReason
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def small_agent() -> Agent:
    # Short turns keep the CPU engine quick; one tool call is required before an answer.
    return Agent(
        name="tir-small",
        min_tool_calls=1,
        budgets=Budgets(max_turns=3, max_new_tokens=40, max_tokens=2048, wall_time_s=600),
        grammar=GrammarOptions(max_reasoning_chars=24, max_answer_chars=16),
    )


def engine_tokenizer(url: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(httpx.get(f"{url}/model_info").json()["model_path"])


async def sessions_open(url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    return parse_prometheus(text).get("sglang:num_streaming_sessions", 0.0)


async def test_eight_episodes_two_actors_token_exact(local_ray, engine_url, redis_url, tmp_path: Path) -> None:
    spec = JobSpec(
        suite="arith", n=8, actors=2, concurrency=8, backend_urls=[engine_url], retention="session",
        job_id=f"e2e-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    async with JobStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}") as store:
        runner = JobRunner(spec, store=store, agent=small_agent(), runs_dir=tmp_path)
        result = await runner.run()
        assert await store.count_trajectories(runner.job_id) == 8
    assert result.status == JobStatus.SUCCEEDED
    trajs = load_trajectories(result.output_path)
    assert [t.episode for t in trajs] == list(range(8))
    assert len({t.metadata["worker"] for t in trajs}) == 2
    engine_terminations = {TerminationReason.BACKEND_ERROR, TerminationReason.ERROR}
    assert not [t for t in trajs if t.termination in engine_terminations], [t.error for t in trajs]
    tokenizer = engine_tokenizer(engine_url)
    tool_turns = 0
    for t in trajs:
        assert t.turns and t.model
        for i, turn in enumerate(t.turns):
            # What the engine says it saw equals what the record rebuilds.
            assert len(t.prompt_ids(i)) == turn.cache.prompt_tokens, (t.id, i)
            assert len(turn.completion_ids) == turn.cache.completion_tokens, (t.id, i)
            if i > 0 and t.turns[i - 1].retention.decision == RetentionDecision.HOLD:
                # SGLang's streaming-session invariant: the held context is exactly our prefix.
                held = len(t.prompt_ids(i - 1)) + len(t.turns[i - 1].completion_ids)
                assert held - 1 <= turn.cache.cached_tokens <= len(t.prompt_ids(i)), (t.id, i)
            tool_turns += bool(turn.tool_calls)
        # The ids decode to the turn format: turn 0 is the rendered prompt, completions their text.
        first = tokenizer.decode(t.turns[0].delta_ids)
        assert first.startswith("<|im_start|>system\n") and t.question in first
        assert first.endswith("<|im_start|>assistant\n")
        for turn in t.turns:
            assert tokenizer.decode(turn.completion_ids, skip_special_tokens=True) == turn.text
    assert tool_turns >= 8  # min_tool_calls=1: every episode's first turn called a tool
    assert await sessions_open(engine_url) == 0  # closed at episode end


async def test_cancel_closes_sessions(local_ray, engine_url, tmp_path: Path) -> None:
    agent = Agent(
        name="slow",
        min_tool_calls=1,
        budgets=Budgets(max_turns=8, max_new_tokens=400, wall_time_s=600),
    )
    spec = JobSpec(suite="arith", n=6, actors=2, concurrency=4, backend_urls=[engine_url], retention="session")
    runner = JobRunner(spec, agent=agent, runs_dir=tmp_path)
    job = asyncio.create_task(runner.run())

    async def sessions_while_running() -> float:
        assert not job.done(), "job ended before any session was opened"
        return await sessions_open(engine_url)

    await wait_until_async(
        sessions_while_running,
        until=lambda sessions: sessions >= 1,
        message="some episode to hold a session on the engine (sglang:num_streaming_sessions >= 1)",
        timeout_s=300,
        interval_s=0.2,
    )
    await runner.cancel()
    assert await sessions_open(engine_url) == 0  # cancelled episodes closed their sessions
    result = await job
    assert result.status == JobStatus.CANCELLED
    cancelled = [t for t in result.trajectories if t.termination == TerminationReason.CANCELLED]
    assert 1 <= len(cancelled) <= spec.concurrency  # only the running ones; nothing new started
