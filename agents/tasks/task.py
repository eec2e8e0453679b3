"""A task and a task suite: what an agent is asked, how its answer is scored, which tools it gets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from interleaf.agents.tasks.scoring import score_answer


class Task(BaseModel):
    """One question with its reference answer."""

    id: str
    """Identifier, unique within the suite (e.g. ``arith-0007``)."""
    question: str
    """What the agent is asked (the user message)."""
    answer: str | None = None
    """Reference answer; None when the suite has none (the episode is then unscored)."""
    scorer: Literal["numeric", "text"] = "text"
    """How answers are compared: ``numeric`` (parsed numbers, relative tolerance 1e-6) or ``text``
    (normalised exact match, or the normalised reference contained in a short answer)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Generator parameters and anything else worth keeping with the trajectory."""

    def score(self, answer: str | None) -> float | None:
        """1.0 when ``answer`` matches the reference, 0.0 otherwise, None when unscored."""
        if self.answer is None:
            return None
        return score_answer(answer, self.answer, self.scorer)


@dataclass
class TaskSuite:
    """A deterministic set of tasks plus the tools and prompt its agent should get."""

    name: str
    tasks: list[Task]
    make_tools: Callable[[], list[Any]]
    """Builds the suite's tools (``interleaf.tools.Tool`` objects); called once per worker."""
    system_prompt: str = ""
    """Extra system-prompt text for this suite's tasks (appended to the agent's own)."""
    params: dict[str, Any] = field(default_factory=dict)
    """How the suite was generated (n, seed, path), recorded in trajectories' metadata."""

    def __len__(self) -> int:
        return len(self.tasks)


__all__ = ["Task", "TaskSuite"]
