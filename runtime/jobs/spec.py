"""``JobSpec``: what a job runs (suite, agent, scale, backends, retention, budgets), validated at the door."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class JobSpec(BaseModel):
    """What to run: suite, agent, scale, backends, retention, budgets. Persisted with the job."""

    suite: str = "arith"
    """Task suite: arith | lookup | mixed | a registered name | a path to a ``.jsonl`` file."""
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
    retention: str = "adaptive"
    """Retention policy: none | session | ttl | adaptive (``interleaf.runtime.client.retention``)."""
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

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        if value not in ("none", "session", "ttl", "adaptive"):
            raise ValueError(f"retention must be none, session, ttl or adaptive, got {value!r}")
        return value


__all__ = ["JobSpec"]
