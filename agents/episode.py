"""One episode: an agent working one task on one model handle, recorded token-exactly.

``Episode.trajectory`` is filled in as the episode runs, so whoever cancels an episode still has
its partial record (termination ``cancelled``). The episode does not close the model: whoever
opened it does (``async with pool.episode(id) as model``), on every path.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import Any

from interleaf.agents.agent import Agent
from interleaf.agents.graph import EpisodeContext
from interleaf.agents.model import AgentModel
from interleaf.agents.tasks.task import Exemplar, Task
from interleaf.telemetry.records import TerminationReason, Trajectory
from interleaf.telemetry.tracing import EpisodeTracer


@functools.cache
def _default_tracer() -> EpisodeTracer:
    # OpenTelemetry's global providers: no-ops until configure_tracing() (or the application)
    # installs real ones. One per process, so the GenAI metric instruments are created once.
    return EpisodeTracer()


class Episode:
    """Runs ``agent`` on ``task`` with ``model``; ``await run()`` returns the finished trajectory."""

    def __init__(
        self,
        agent: Agent,
        task: Task,
        model: AgentModel,
        *,
        trajectory_id: str | None = None,
        job_id: str = "",
        episode: int = 0,
        attempt: int = 1,
        suite: str = "",
        system_extra: str = "",
        exemplars: list[Exemplar] | None = None,
        retention_policy: str = "none",
        metadata: dict[str, Any] | None = None,
        tracer: EpisodeTracer | None = None,
    ) -> None:
        self.agent, self.task, self.model = agent, task, model
        self.tracer = tracer or _default_tracer()
        self.system_extra = system_extra
        self.exemplars = list(exemplars or [])
        self.toolset = agent.tools_for(task.tools)
        self.trajectory = Trajectory(
            id=trajectory_id or uuid.uuid4().hex,
            job_id=job_id,
            episode=episode,
            attempt=attempt,
            task_id=task.id,
            suite=suite,
            agent=agent.name,
            model=getattr(model, "model_name", ""),
            question=task.question,
            expected=task.answer,
            retention_policy=retention_policy,
            tools=list(self.toolset.names),
            tool_calls_constrained=agent.grammar is not None,
            metadata={**task.metadata, **(metadata or {})},
        )

    async def run(self) -> Trajectory:
        from interleaf.tools import ToolContext, Toolset

        agent, traj = self.agent, self.trajectory
        traj.started_at = time.time()
        wall = agent.budgets.wall_time_s
        deadline = None if wall is None else time.monotonic() + wall
        tool_ctx = ToolContext.create(traj.id, count_tokens=self.model.count_tokens, deadline=deadline)
        pattern, tools = self.task.answer_pattern, self.toolset
        ctx = EpisodeContext(
            agent=agent,
            model=self.model,
            toolset=tools,
            tool_ctx=tool_ctx,
            trajectory=traj,
            grammar=agent.turn_grammar(answer_pattern=pattern, toolset=tools),
            answer_only_grammar=(
                agent.turn_grammar(answer_pattern=pattern, toolset=Toolset())
                if agent.answer_after_repeat and len(tools)
                else None
            ),
            tools_only_grammar=(
                agent.turn_grammar(allow_answer=False, toolset=tools) if agent.min_tool_calls and len(tools) else None
            ),
            answer_pattern=pattern,
            answer_type=self.task.answer_type,
            deadline=deadline,
            tracer=self.tracer,
        )
        first = agent.render_initial(self.task.question, self.system_extra, exemplars=self.exemplars, toolset=tools)
        # Each turn is at most generate + execute_tools (+ a nudge); leave headroom for custom nodes.
        config = {"recursion_limit": 4 * agent.budgets.max_turns + 10}
        with self.tracer.episode_span(traj) as span:
            traj.trace_id = span.trace_id
            try:
                await self._run_graph(ctx, first, config, wall)
            finally:
                self._finish()
                tool_ctx.remove_scratch()  # only if a tool made one: most episodes never do
                span.record(traj)
        return traj

    async def _run_graph(self, ctx: EpisodeContext, first: str, config: dict[str, Any], wall: float | None) -> None:
        from interleaf.tools import ToolInfraError

        traj = self.trajectory
        try:
            async with asyncio.timeout(wall) as timer:
                await self.agent.compiled_graph().ainvoke({"delta": first}, config=config, context=ctx)
        except TimeoutError:
            expired = timer.expired()
            traj.termination = TerminationReason.WALL_TIME if expired else TerminationReason.ERROR
            traj.error = None if expired else "TimeoutError inside the episode (not the wall-time budget)"
        except ToolInfraError as exc:
            traj.termination, traj.error = TerminationReason.TOOL_INFRA_ERROR, str(exc)
        except asyncio.CancelledError:
            traj.termination, traj.error = TerminationReason.CANCELLED, "episode cancelled"
            raise
        except Exception as exc:
            traj.termination, traj.error = TerminationReason.ERROR, f"{type(exc).__name__}: {exc}"

    def _finish(self) -> None:
        """Close the record: end time, score. Never raises (it runs on every path out of ``run``): a
        scorer that fails leaves the episode unscored, ``error`` naming the failure, turns kept."""
        traj = self.trajectory
        traj.ended_at = time.time()
        if self.task.answer is None:
            return
        try:
            traj.score = self.task.score(traj.answer)
        except Exception as exc:  # a scorer bug must not cost the episode's record
            why = f"scoring the answer failed (scorer {self.task.scorer!r}): {type(exc).__name__}: {exc}"
            traj.score, traj.correct = None, None
            traj.error = why if traj.error is None else f"{traj.error}; {why}"
            if traj.termination == TerminationReason.ANSWERED:
                traj.termination = TerminationReason.ERROR
            return
        traj.correct = bool(traj.score and traj.score >= 1.0)


__all__ = ["Episode"]
