"""interleaf: a runtime for agentic tool-integrated reasoning.

The SDK in one import (resolved lazily, so ``import interleaf`` and the CLI stay fast)::

    from interleaf import Agent, Budgets, JobSpec, run_job, tool

    @tool
    def lookup(key: str) -> str:
        "Look a key up."
        ...

    agent = Agent(name="mine", system_prompt="Be brief.", tools=[lookup], budgets=Budgets(max_turns=4))
"""

from __future__ import annotations

from interleaf.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # agents (issue 6)
    "Agent": "interleaf.agents",
    "Budgets": "interleaf.agents",
    "GrammarOptions": "interleaf.agents",
    "Task": "interleaf.agents",
    "TaskSuite": "interleaf.agents",
    "ScriptedModel": "interleaf.agents",
    "load_suite": "interleaf.agents",
    "register_agent": "interleaf.agents",
    "register_suite": "interleaf.agents",
    # jobs (issue 6)
    "JobSpec": "interleaf.runtime.jobs",
    "JobRunner": "interleaf.runtime.jobs",
    "run_job": "interleaf.runtime.jobs",
    # a remote `interleaf serve` (issue 16)
    "JobsClient": "interleaf.jobs_client",
    "AsyncJobsClient": "interleaf.jobs_client",
    # telemetry: the trajectory file (a job's JSONL export, or a job id)
    "load_trajectories": "interleaf.telemetry",
    # tools
    "tool": "interleaf.tools",
    "Tool": "interleaf.tools",
    "Toolset": "interleaf.tools",
}

__getattr__, __dir__, _names = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *_names]
