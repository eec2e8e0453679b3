"""EpisodeWorker's logic in-process (the Ray actor wraps this class unchanged)."""

from __future__ import annotations

import asyncio

import pytest

from interleaf.agents import Agent, ScriptedModel, ScriptedModelFactory, ScriptedTurn, load_suite
from interleaf.runtime.jobs import JobSpec
from interleaf.runtime.jobs.store import load_trajectory
from interleaf.runtime.jobs.workers import EpisodeWorker, build_job_agent, trajectory_id
from interleaf.telemetry.records import TerminationReason
from tests.waiting import wait_until_async

SPEC = JobSpec(suite="arith", n=3, seed=0, agent="tir", retention="session", max_turns=3)


async def test_prepare_and_run_episode() -> None:
    worker = EpisodeWorker([], model_factory=ScriptedModelFactory(["<answer>1</answer>"]), name="w")
    assert await worker.prepare("j", SPEC) == 3
    traj = load_trajectory(await worker.run_episode("j", 2, attempt=2))
    assert (traj.id, traj.episode, traj.attempt, traj.job_id) == (trajectory_id("j", 2, 2), 2, 2, "j")
    assert traj.task_id == load_suite("arith", 3).tasks[2].id and traj.suite == "arith"
    assert traj.tools == ["calculator"] and traj.retention_policy == "session" and traj.metadata["worker"] == "w"
    assert (await worker.ping())["done"] == 1
    with pytest.raises(KeyError, match="not prepared"):
        await worker.run_episode("other", 0)


async def test_cancel_returns_partial_records_and_refuses_new_episodes() -> None:
    scripted = ScriptedModelFactory([ScriptedTurn("<answer>1</answer>", delay_s=60)])
    models: list[ScriptedModel] = []

    def factory(episode_id: str) -> ScriptedModel:
        models.append(scripted(episode_id))  # kept, to see when each episode is inside its model call
        return models[-1]

    worker = EpisodeWorker([], model_factory=factory)
    await worker.prepare("j", SPEC)
    running = [asyncio.create_task(worker.run_episode("j", i)) for i in range(2)]
    await wait_until_async(
        lambda: [len(m.calls) for m in models],
        until=lambda calls: calls == [1, 1],
        message="both episodes to be inside their first model call (calls per model)",
        interval_s=0.01,
    )
    assert await worker.cancel("j") == 2
    for task in running:
        traj = load_trajectory(await task)
        assert traj.termination == TerminationReason.CANCELLED
    late = load_trajectory(await worker.run_episode("j", 2))
    assert late.termination == TerminationReason.CANCELLED and not late.turns


def test_job_agent_gets_suite_tools_and_overrides() -> None:
    suite = load_suite("mixed", 2)
    base = Agent(name="mine", temperature=0.5)
    agent = build_job_agent(JobSpec(max_turns=2, max_new_tokens=32, temperature=None), base, suite)
    assert [t.name for t in agent.tools] == ["search", "visit", "calculator"]
    assert (agent.budgets.max_turns, agent.budgets.max_new_tokens, agent.temperature) == (2, 32, 0.5)
    assert base.tools == [] and base.budgets.max_turns == 8  # the given agent is not modified
