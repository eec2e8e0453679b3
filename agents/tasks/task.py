"""A task and a task suite: what an agent is asked, how its answer is scored, which tools it gets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from interleaf.agents.tasks.scoring import check_scorer, score_answer

AnswerType = Literal["number", "text", "expression"]

ANSWER_PATTERNS: dict[str, str | None] = {
    "number": r"-?[0-9]{1,24}(\.[0-9]{1,12})?",
    "text": None,
    "expression": None,
}
"""The regex an answer of each type is constrained to (``GrammarOptions.answer_pattern``); None:
any one-line text. ``expression`` is free text on purpose: LaTeX answers are too varied for a
pattern, and the ``math`` scorer reads them."""


class Task(BaseModel):
    """One question with its reference answer."""

    id: str
    """Identifier, unique within the suite (e.g. ``arith-0007``)."""
    question: str
    """What the agent is asked (the user message)."""
    answer: str | None = None
    """Reference answer; None when the suite has none (the episode is then unscored)."""
    scorer: Literal["math", "text", "exact"] = "text"
    """How answers are compared (``interleaf.agents.tasks.scoring``): ``math`` (math-verify; numbers
    within a relative tolerance of 1e-6; ``numeric`` is read as ``math``), ``text`` (normalised
    match, or the normalised reference contained in a short answer) or ``exact``."""
    answer_type: AnswerType = "text"
    """The answer's shape, which constrains how the agent may write it (``ANSWER_PATTERNS``):
    ``number`` (digits, sign, decimals), ``text`` or ``expression`` (one line of free text)."""
    tools: list[str] | None = None
    """Names of the suite's tools this task may use; None: all of them."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Generator parameters and anything else worth keeping with the trajectory."""

    @field_validator("scorer", mode="before")
    @classmethod
    def _scorer_name(cls, value: Any) -> Any:
        return check_scorer(value) if isinstance(value, str) else value

    @property
    def answer_pattern(self) -> str | None:
        """The regex the answer is constrained to (None: free one-line text)."""
        return ANSWER_PATTERNS[self.answer_type]

    def score(self, answer: str | None) -> float | None:
        """1.0 when ``answer`` matches the reference, 0.0 otherwise, None when unscored."""
        if self.answer is None:
            return None
        return score_answer(answer, self.answer, self.scorer)


class ExemplarStep(BaseModel):
    """One tool call of a worked example and what the tool returned."""

    tool: str
    """The tool called."""
    arguments: dict[str, Any]
    """Its arguments."""
    result: str
    """The tool's output, as the tool itself produced it."""


class Exemplar(BaseModel):
    """A worked example shown to the agent (few-shot), from a pool kept apart from evaluated tasks."""

    question: str
    """The example's question."""
    steps: list[ExemplarStep] = Field(default_factory=list)
    """The tool calls that solve it, in order (shown only to agents that have those tools)."""
    answer: str
    """The final answer."""

    @property
    def tools(self) -> set[str]:
        """The tools the example uses."""
        return {s.tool for s in self.steps}


@dataclass
class TaskSuite:
    """A deterministic set of tasks plus the tools, prompt and worked examples its agent should get."""

    name: str
    tasks: list[Task]
    make_tools: Callable[[], list[Any]]
    """Builds the suite's tools (``interleaf.tools.Tool`` objects); called once per worker."""
    system_prompt: str = ""
    """Extra system-prompt text for this suite's tasks (appended to the agent's own)."""
    params: dict[str, Any] = field(default_factory=dict)
    """How the suite was generated (n, seed, path), recorded in trajectories' metadata."""
    exemplars: list[Exemplar] = field(default_factory=list)
    """Worked examples for few-shot prompting, from a pool disjoint from ``tasks`` (each suite's
    module says how its pool is built)."""

    def __post_init__(self) -> None:
        asked = {t.question for t in self.tasks}
        leaked = [e.question for e in self.exemplars if e.question in asked]
        if leaked:
            raise ValueError(f"suite {self.name!r}: exemplar questions {leaked[:3]} are also evaluated tasks; "
                             "exemplars must come from a pool disjoint from the tasks")  # fmt: skip

    def __len__(self) -> int:
        return len(self.tasks)


__all__ = ["ANSWER_PATTERNS", "AnswerType", "Exemplar", "ExemplarStep", "Task", "TaskSuite"]
