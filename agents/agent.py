"""Defining an agent: a system prompt, tools, budgets, and optionally a custom graph.

    from interleaf import Agent, Budgets
    from interleaf.tools import python_tool

    agent = Agent(name="calc", system_prompt="You are careful.", tools=[python_tool],
                  budgets=Budgets(max_turns=4))
    trajectory = await agent.run("What is 17 * 23?", model)   # model: any AgentModel

``register_agent`` makes an agent factory available by name to jobs and ``interleaf run --agent``.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from interleaf.agents.budgets import Budgets
from interleaf.agents.chat_format import CHATML, ChatFormat
from interleaf.agents.model import AgentModel
from interleaf.tools import (
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    GrammarOptions,
    call_template,
    format_answer,
    tool_call_grammar,
)

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant that solves tasks step by step using tools."


def _tool_instructions(tools: str) -> str:
    """The system prompt's tools section: the schemas (one JSON line each) and the turn format."""
    return f"""# Tools
You can call these tools:
<tools>
{tools}
</tools>
To call a tool, write {call_template("<tool name>", "<arguments object>")}.
The result comes back inside {RESPONSE_OPEN}{RESPONSE_CLOSE}.
When you know the final answer, write {format_answer("the answer")}."""


_ANSWER_ONLY = f"Write the final answer as {format_answer('the answer')}."


@dataclass
class Agent:
    """A TIR agent definition. Stateless and reusable: each ``run`` is one episode."""

    name: str = "tir"
    """Agent name (OTel ``gen_ai.agent.name``, trajectory ``agent``)."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """The role text; tool descriptions and the turn format are appended automatically."""
    tools: list[Any] = field(default_factory=list)
    """``interleaf.tools.Tool`` objects (or a ``Toolset``)."""
    budgets: Budgets = field(default_factory=Budgets)
    """Turn, token and wall-time limits."""
    grammar: GrammarOptions | None = field(default_factory=GrammarOptions)
    """Shape of the constrained turn grammar; None sends no constraint (for models that format
    tool calls reliably on their own; malformed calls are then recorded as format errors)."""
    chat_format: ChatFormat = CHATML
    """How deltas are rendered (ChatML by default)."""
    temperature: float = 0.0
    """Sampling temperature for every turn."""
    min_tool_calls: int = 0
    """Tool calls required before an answer is allowed: until then the turn grammar offers only
    tool calls (small models otherwise guess without using a tool). Needs ``grammar``."""
    on_no_action: Literal["stop", "nudge"] = "stop"
    """A turn with neither tool call nor answer: end (``no_action``) or tell the model and go on."""
    nudge_text: str = f"Call a tool or give the final answer as {format_answer('...')}."
    """What the model is told on ``on_no_action="nudge"``."""
    graph: Callable[[Agent], StateGraph] | None = None
    """Custom graph builder ``graph(agent) -> StateGraph(EpisodeState, context_schema=EpisodeContext)``;
    None uses ``build_tir_graph``."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"Agent.name must be a non-empty string, got {self.name!r}")
        if self.min_tool_calls < 0:
            raise ValueError(f"Agent.min_tool_calls must be >= 0, got {self.min_tool_calls}")
        if self.on_no_action not in ("stop", "nudge"):
            raise ValueError(f"Agent.on_no_action must be 'stop' or 'nudge', got {self.on_no_action!r}")
        self._compiled: Any = None
        self._toolset: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray ships agents to actors; the compiled graph is rebuilt there.
        state = dict(self.__dict__)
        state["_compiled"] = None
        return state

    @property
    def toolset(self) -> Any:
        """The tools as an ``interleaf.tools.Toolset`` (built once)."""
        if self._toolset is None:
            from interleaf.tools import Toolset

            self._toolset = self.tools if isinstance(self.tools, Toolset) else Toolset(self.tools)
        return self._toolset

    def render_system(self, extra: str = "") -> str:
        """The full system message: role text, tools and the turn format, then ``extra``."""
        schemas = self.toolset.schemas()
        if schemas:
            tools = "\n".join(json.dumps(s, separators=(", ", ": ")) for s in schemas)
            how = _tool_instructions(tools)
        else:
            how = _ANSWER_ONLY
        return "\n\n".join(p for p in (self.system_prompt.strip(), how, extra.strip()) if p)

    def turn_grammar(self, *, allow_answer: bool = True) -> str | None:
        """The EBNF a turn is constrained by (None when ``grammar`` is None). ``allow_answer=False``
        gives the tool-calls-only variant (used while ``min_tool_calls`` is not yet met)."""
        if self.grammar is None:
            return None
        schemas = self.toolset.schemas()
        opts = self.grammar
        if not allow_answer and schemas:
            opts = dataclasses.replace(opts, allow_answer=False)
        return tool_call_grammar(schemas, opts)

    def compiled_graph(self) -> Any:
        """The compiled LangGraph graph (built once per agent per process)."""
        if self._compiled is None:
            from interleaf.agents.graph import build_tir_graph

            builder = self.graph or build_tir_graph
            self._compiled = builder(self).compile()
        return self._compiled

    async def run(self, task: Any, model: AgentModel, **kwargs: Any) -> Any:
        """Run one episode of ``task`` (a ``Task`` or a question string) on ``model``; returns the
        ``Trajectory``. Keyword arguments go to ``Episode`` (job_id, episode, suite, system_extra, ...)."""
        from interleaf.agents.episode import Episode
        from interleaf.agents.tasks import Task

        if isinstance(task, str):
            task = Task(id=f"adhoc-{uuid.uuid4().hex[:8]}", question=task)
        return await Episode(self, task, model, **kwargs).run()


AgentFactory = Callable[[], Agent]


def default_agent() -> Agent:
    """The ``tir`` agent: the defaults, plus one tool call required before answering."""
    return Agent(name="tir", min_tool_calls=1)


AGENTS: dict[str, AgentFactory] = {"tir": default_agent}


def register_agent(name: str, factory: AgentFactory) -> None:
    """Make ``factory() -> Agent`` available by name (``JobSpec.agent``, ``interleaf run --agent``).
    The suite's tools are added to the agent's own when a job runs it."""
    AGENTS[name] = factory


def get_agent(name: str) -> Agent:
    """A fresh agent from the factory registered as ``name``."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; registered: {sorted(AGENTS)} (add one with register_agent)")
    return AGENTS[name]()


__all__ = ["AGENTS", "DEFAULT_SYSTEM_PROMPT", "Agent", "default_agent", "get_agent", "register_agent"]
