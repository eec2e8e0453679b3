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
    format_tool_call,
    format_tool_responses,
    tool_call_grammar,
)

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from interleaf.agents.tasks import Exemplar
    from interleaf.tools import Toolset

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


def render_exemplar(exemplar: Exemplar, *, with_tools: bool) -> str:
    """One worked example as the model would write it: the question, each call with its response,
    then the answer (``with_tools=False``: the question and the answer only)."""
    lines = [f"Question: {exemplar.question}"]
    if with_tools:
        for step in exemplar.steps:
            lines.append(format_tool_call(step.tool, step.arguments))
            lines.append(format_tool_responses([step.result]))
    lines.append(format_answer(exemplar.answer))
    return "\n".join(lines)


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
    max_exemplars: int = 3
    """Worked examples (the suite's ``exemplars``) shown before the question; 0 shows none. An
    example is shown only when the agent has every tool it uses; an agent without tools sees the
    question and answer only."""
    exemplar_choice: Literal["first", "nearest"] = "first"
    """Which examples of the suite's pool an episode shows: the ``first`` ``max_exemplars``, or the
    ``nearest`` to its question (``interleaf.agents.exemplars``: TF-IDF over the question's shape,
    names and numbers masked; the nearest shown last, right before the question)."""
    exemplars_as: Literal["turns", "system"] = "turns"
    """Where examples go: ``turns`` — earlier turns of the conversation after the system message
    (user question, assistant call, tool response, ..., assistant answer), the form a chat model
    imitates best; ``system`` — a transcript in the system message."""
    answer_after_repeat: bool = True
    """After a turn whose calls all repeat earlier calls (same tool, same arguments: the result
    cannot change), the next turn may only answer."""
    ground_numbers: bool = False
    """Numbers in tool arguments only from the conversation: each turn's grammar lets a numeric
    literal in a patterned string argument (the calculator's expression) be only a number of the
    question or of this episode's tool outputs, each at most as often as it appears there, and an
    integer / number argument only one of those (``interleaf.tools.grounding``); arithmetic written
    out in the question (``4 mod 48``) is one unit, written whole or not at all. Stops a small model
    repeating a sub-expression, inventing a number or miscopying an operator while copying. Needs ``grammar`` with
    ``constrain_arguments``; the worked examples' numbers are not the conversation's."""

    relevant_numbers_only: bool = False
    """With ``ground_numbers``: a tool output's numbers ground arguments only when their sentence shares
    a content word with the question or is a bare result (``interleaf.tools.relevant_sentences``): a
    population question's calculator call cannot use a founding year or a result list's ``1.``."""
    ground_text: bool = False
    """A free-text answer (a task without an answer pattern) only as a short span of this episode's
    tool outputs, once there are any: at most ``MAX_SPAN_WORDS`` words of one sentence, not only
    words of the question (``interleaf.tools.text_grounding``). Stops a small model answering with
    the question's own name or a worked example's answer. Needs ``grammar``."""

    ground_strings: bool = False
    """Free-text arguments grounded in the conversation, where their schema asks for it: a string
    marked ``"x-grounded": "question"`` (``search``'s queries) only as a short run of the question's
    words, names whole (``interleaf.tools.question_spans``), a ``"format": "uri"`` string
    (``visit``'s url) only as a url of the question or of this episode's tool outputs. Stops a small
    model misspelling the name it searches for (``Vespelpel`` for ``Vesolpel``: no results). Needs
    ``grammar`` with ``constrain_arguments``; other strings stay free text."""

    def __post_init__(self) -> None:
        if self.max_exemplars < 0:
            raise ValueError(f"Agent.max_exemplars must be >= 0, got {self.max_exemplars}")
        if self.exemplar_choice not in ("first", "nearest"):
            raise ValueError(f"Agent.exemplar_choice must be 'first' or 'nearest', got {self.exemplar_choice!r}")
        if self.exemplars_as not in ("turns", "system"):
            raise ValueError(f"Agent.exemplars_as must be 'turns' or 'system', got {self.exemplars_as!r}")
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"Agent.name must be a non-empty string, got {self.name!r}")
        if self.min_tool_calls < 0:
            raise ValueError(f"Agent.min_tool_calls must be >= 0, got {self.min_tool_calls}")
        if self.on_no_action not in ("stop", "nudge"):
            raise ValueError(f"Agent.on_no_action must be 'stop' or 'nudge', got {self.on_no_action!r}")
        self._compiled: Any = None
        self._toolset: Any = None
        # Turn grammars by (options, tool schemas): building one costs ~0.4 ms and every episode asks
        # for up to three, always the same few (docs/jobs.md, "Orchestration overhead").
        self._grammars: dict[tuple[GrammarOptions, str], str] = {}

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

    def tools_for(self, names: list[str] | None) -> Toolset:
        """The agent's tools restricted to ``names`` (a task's ``tools``); None: all of them."""
        if names is None:
            return self.toolset
        from interleaf.tools import Toolset

        unknown = [n for n in names if n not in self.toolset]
        if unknown:
            raise ValueError(f"task tools {unknown} are not among the agent's tools {self.toolset.names}")
        return Toolset([self.toolset.get(n) for n in names])

    def shown_exemplars(
        self, exemplars: list[Exemplar] | None, toolset: Toolset | None = None, question: str | None = None
    ) -> list[Exemplar]:
        """The examples an episode shows: up to ``max_exemplars`` that ``toolset`` can follow, the
        nearest to ``question`` with ``exemplar_choice="nearest"`` (else the first ones)."""
        toolset = self.toolset if toolset is None else toolset
        names = set(toolset.names)
        usable = [e for e in exemplars or [] if not names or e.tools <= names]
        if self.exemplar_choice == "nearest" and question is not None:
            from interleaf.agents.exemplars import nearest_exemplars

            return nearest_exemplars(question, usable, self.max_exemplars)
        return usable[: self.max_exemplars]

    def render_system(
        self,
        extra: str = "",
        *,
        exemplars: list[Exemplar] | None = None,
        toolset: Toolset | None = None,
        question: str | None = None,
    ) -> str:
        """The full system message: role text, tools and the turn format, then ``extra`` (and the
        worked examples when ``exemplars_as="system"``)."""
        toolset = self.toolset if toolset is None else toolset
        schemas = toolset.schemas()
        if schemas:
            tools = "\n".join(json.dumps(s, separators=(", ", ": ")) for s in schemas)
            how = _tool_instructions(tools)
        else:
            how = _ANSWER_ONLY
        examples = ""
        if self.exemplars_as == "system" and (shown := self.shown_exemplars(exemplars, toolset, question)):
            examples = "# Examples\n" + "\n\n".join(render_exemplar(e, with_tools=bool(schemas)) for e in shown)
        return "\n\n".join(p for p in (self.system_prompt.strip(), how, extra.strip(), examples) if p)

    def render_history(
        self, exemplars: list[Exemplar] | None, toolset: Toolset | None = None, question: str | None = None
    ) -> str:
        """The worked examples as earlier turns (``exemplars_as="turns"``; else ""): each a user
        question, the assistant's calls exactly as the grammar makes it write them, each answered
        by a tool response, then the assistant's answer."""
        if self.exemplars_as != "turns":
            return ""
        toolset = self.toolset if toolset is None else toolset
        fmt, with_tools = self.chat_format, len(toolset) > 0
        out = []
        for e in self.shown_exemplars(exemplars, toolset, question):
            out.append(fmt.message("user", e.question))
            for step in e.steps if with_tools else []:
                out.append(fmt.message("assistant", format_tool_call(step.tool, step.arguments)))
                out.append(fmt.message(fmt.tool_role, format_tool_responses([step.result])))
            out.append(fmt.message("assistant", format_answer(e.answer)))
        return "".join(out)

    def render_initial(
        self, question: str, extra: str = "", *, exemplars: list[Exemplar] | None = None, toolset: Toolset | None = None
    ) -> str:
        """Turn 0's delta: the system message, the worked examples, the question, the generation prompt."""
        system = self.render_system(extra, exemplars=exemplars, toolset=toolset, question=question)
        return self.chat_format.initial(system, question, self.render_history(exemplars, toolset, question))

    def turn_grammar(
        self,
        *,
        allow_answer: bool = True,
        answer_pattern: str | None = None,
        toolset: Toolset | None = None,
        grounded_numbers: tuple[str, ...] | None = None,
        grounded_expressions: tuple[str, ...] = (),
        answer_spans: tuple[str, ...] | None = None,
        grounded_spans: tuple[str, ...] | None = None,
        grounded_urls: tuple[str, ...] | None = None,
    ) -> str | None:
        """The EBNF a turn is constrained by (None when ``grammar`` is None). ``allow_answer=False``
        gives the tool-calls-only variant (used while ``min_tool_calls`` is not yet met);
        ``answer_pattern`` constrains the answer's text (a task's answer type); ``toolset`` replaces
        the agent's tools (a task's subset); ``grounded_numbers`` the numbers tool arguments may
        use and ``grounded_expressions`` the written-out arithmetic they copy whole (with
        ``ground_numbers``; see ``GrammarOptions.grounded_numbers``); ``answer_spans`` the texts a
        free-text answer may be (with ``ground_text``; ``GrammarOptions.answer_spans``);
        ``grounded_spans`` / ``grounded_urls`` the texts grounded string arguments may be (with
        ``ground_strings``; ``GrammarOptions.grounded_spans``)."""
        if self.grammar is None:
            return None
        schemas = (self.toolset if toolset is None else toolset).schemas()
        opts = self.grammar
        if answer_pattern is not None:
            opts = dataclasses.replace(opts, answer_pattern=answer_pattern)
        if self.ground_numbers and grounded_numbers is not None:
            opts = dataclasses.replace(
                opts, grounded_numbers=grounded_numbers, grounded_expressions=grounded_expressions
            )
        if self.ground_strings and (grounded_spans or grounded_urls):
            opts = dataclasses.replace(opts, grounded_spans=grounded_spans, grounded_urls=grounded_urls)
        if self.ground_text and answer_spans:
            opts = dataclasses.replace(opts, answer_spans=answer_spans)
        if not allow_answer and schemas:
            opts = dataclasses.replace(opts, allow_answer=False)
        key = (opts, json.dumps(schemas))
        grammar = self._grammars.get(key)
        if grammar is None:
            if len(self._grammars) >= 256:  # answer patterns are few; bound it anyway
                self._grammars.clear()
            grammar = self._grammars[key] = tool_call_grammar(schemas, opts)
        return grammar

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
    """The ``tir`` agent, shaped for the default model (SmolLM2-135M): one tool call required before
    answering, no free-text reasoning before the action (its reasoning is noise that costs ~60 tokens
    a turn and leads it off the task), numbers, search queries and urls in tool arguments grounded
    in the conversation, a free-text answer a span of the tool outputs (``ground_text``), greedy
    decoding; the suite's
    exemplars nearest the question show the moves."""
    return Agent(
        name="tir",
        min_tool_calls=1,
        grammar=GrammarOptions(max_reasoning_chars=0),
        ground_numbers=True,
        relevant_numbers_only=True,
        ground_text=True,
        ground_strings=True,
        exemplar_choice="nearest",
    )


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


__all__ = [
    "AGENTS",
    "DEFAULT_SYSTEM_PROMPT",
    "Agent",
    "default_agent",
    "get_agent",
    "register_agent",
    "render_exemplar",
]
