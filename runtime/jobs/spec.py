"""``JobSpec``: what a job runs (suite, agent, scale, backends, retention, budgets), validated at the door.

The suite and agent are checked against their registries (``interleaf.agents.SUITES`` and ``AGENTS``)
and the retention policy against ``RetentionPolicyName``, so an unknown name fails here, naming the
field, the value and the choices, and never inside a Ray actor. Every field's docstring is its
description (``use_attribute_docstrings``): the API's schema and ``interleaf run --help`` show it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from interleaf.agents import AGENTS, SUITES
from interleaf.runtime.client import RetentionPolicyName


class JobSpec(BaseModel):
    """What to run: suite, agent, scale, backends, retention, budgets. Persisted with the job."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    suite: str = "arith"
    """Task suite: a registered name (``interleaf.agents.register_suite``) or a path to a ``.jsonl`` file."""
    n: int = Field(default=20, ge=1)
    """Number of tasks (episodes)."""
    seed: int = 0
    """Seed of the suite's generator."""
    agent: str = "tir"
    """Registered agent name (``interleaf.agents.register_agent``)."""
    concurrency: int = Field(default=8, ge=1)
    """Episodes running at once across all actors."""
    actors: int = Field(default=2, ge=1)
    """Number of ``EpisodeWorker`` actors."""
    backend_urls: list[str] = Field(default_factory=list)
    """SGLang-protocol servers (the router spreads episodes over them)."""
    retention: RetentionPolicyName = RetentionPolicyName.ADAPTIVE
    """Retention policy at tool pauses (``interleaf.runtime.client.retention``)."""
    kv_budget_fraction: float = Field(default=0.5, gt=0, le=1)
    """Share of each server's KV capacity that held sessions may use, split over the actors."""
    max_turns: int | None = Field(default=None, ge=1)
    """Override the agent's turn budget."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Override the agent's token budget (whole sequence)."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Override the agent's per-turn generation cap."""
    wall_time_s: float | None = Field(default=None, gt=0)
    """Override the agent's per-episode wall-time budget, seconds."""
    temperature: float | None = Field(default=None, ge=0)
    """Override the agent's sampling temperature."""
    max_attempts: int = Field(default=3, ge=1)
    """Attempts per episode across actor deaths and worker errors."""
    job_id: str | None = None
    """Job id; generated when omitted."""

    @field_validator("suite")
    @classmethod
    def _check_suite(cls, value: str) -> str:
        if value.endswith(".jsonl"):
            if not Path(value).is_file():
                raise ValueError(f"JobSpec.suite={value!r}: no such file; pass an existing .jsonl task file")
        elif value not in SUITES:
            raise ValueError(
                f"JobSpec.suite={value!r} is not a registered suite; choose one of {', '.join(sorted(SUITES))} "
                "(add one with interleaf.agents.register_suite) or pass a path to a .jsonl file"
            )
        return value

    @field_validator("agent")
    @classmethod
    def _check_agent(cls, value: str) -> str:
        if value not in AGENTS:
            raise ValueError(
                f"JobSpec.agent={value!r} is not a registered agent; choose one of {', '.join(sorted(AGENTS))} "
                "(add one with interleaf.agents.register_agent)"
            )
        return value


__all__ = ["JobSpec"]
