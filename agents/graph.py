"""The TIR agent as a LangGraph ``StateGraph``: generate -> [tool call?] -> execute -> generate ... -> end.

The graph's *state* is small and per step (the next delta to send, the pending tool calls); the
episode's hot objects (model handle, toolset, the growing trajectory, deadlines) travel as the run's
*context* (``EpisodeContext``), so nodes stay plain async functions and a custom graph can reuse them:

    def my_graph(agent):
        g = StateGraph(EpisodeState, context_schema=EpisodeContext)
        g.add_node("generate", generate_node)
        g.add_node("execute_tools", execute_tools_node)
        g.add_node("reflect", my_reflect_node)          # anything that returns {"delta": ...}
        g.add_edge(START, "generate")
        g.add_conditional_edges("generate", route_after_generate)
        g.add_edge("execute_tools", "reflect")
        g.add_edge("reflect", "generate")
        return g

    Agent(name="reflective", tools=[python_tool], graph=my_graph)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from opentelemetry.trace import Status, StatusCode

from interleaf.agents.model import AgentModel, Completion, Constraint
from interleaf.telemetry.records import (
    CacheFigures,
    RetentionRecord,
    TerminationReason,
    ToolCallRecord,
    Trajectory,
    Turn,
    TurnTimings,
)
from interleaf.tools import CALL_CLOSE, CALL_OPEN, ParsedCall, parse_turn

if TYPE_CHECKING:
    from interleaf.agents.agent import Agent
    from interleaf.telemetry.tracing import EpisodeTracer
    from interleaf.tools import ToolContext, Toolset


class EpisodeState(TypedDict, total=False):
    """What flows between nodes at each step."""

    delta: str
    """Text to append to the conversation before the next LLM call."""
    calls: list[ParsedCall]
    """Tool calls parsed from the last turn, waiting to run."""
    done: bool
    """True once the episode is over (``EpisodeContext.trajectory.termination`` says why)."""


@dataclass
class EpisodeContext:
    """Everything one episode's nodes share: the model handle, the tools and the record being built."""

    agent: Agent
    model: AgentModel
    toolset: Toolset
    tool_ctx: ToolContext
    trajectory: Trajectory
    grammar: str | None = None
    """The turn grammar (EBNF) built once from the tool schemas; None = unconstrained."""
    tools_only_grammar: str | None = None
    """The grammar without ``<answer>``, used until ``Agent.min_tool_calls`` calls were made."""
    answer_only_grammar: str | None = None
    """The grammar offering only ``<answer>``, used after a turn that repeated earlier calls
    (``Agent.answer_after_repeat``)."""
    answer_pattern: str | None = None
    """The task's answer regex (rebuilding the grammars keeps it)."""
    answer_type: str = "text"
    """The task's ``answer_type``: only a ``text`` answer is grounded in tool outputs (``Agent.ground_text``);
    an ``expression`` (``\\frac{\\sqrt{3}}{2}``) is written, not copied."""
    grounded_numbers: tuple[str, ...] | None = None
    """The numbers the current grammars ground tool arguments in (``Agent.ground_numbers``)."""
    grounded_urls: tuple[str, ...] | None = None
    """The urls the current grammars ground ``format: uri`` arguments in (``Agent.ground_strings``)."""
    answer_spans: tuple[str, ...] | None = None
    """The texts a free-text answer may be (``Agent.ground_text``); None: any one-line text."""
    deadline: float | None = None
    """``time.monotonic()`` deadline from the wall-time budget."""
    context_tokens: int = 0
    """Tokens in the conversation so far (every delta and completion)."""
    last_completion_at: float | None = None
    """Monotonic time the last completion came back (for the pause length)."""
    tracer: EpisodeTracer | None = None
    """OpenTelemetry spans (``interleaf.telemetry.tracing``); None records no spans."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Free space for custom nodes."""

    def ground(self) -> None:
        """With ``Agent.ground_numbers`` / ``ground_text`` / ``ground_strings``: rebuild the grammars
        when the conversation (question and successful tool outputs) holds numbers, answer spans or
        urls they do not use yet (the question's spans are fixed: the first turn builds them in)."""
        agent = self.agent
        if not (agent.ground_numbers or agent.ground_text or agent.ground_strings) or self.grammar is None:
            return
        from interleaf.tools import expressions_in, numbers_in, question_spans, urls_in

        texts = [self.trajectory.question]
        texts += [c.result or "" for t in self.trajectory.turns for c in t.tool_calls if not c.is_error]
        if agent.relevant_numbers_only:
            from interleaf.tools import relevant_sentences

            numbers = numbers_in([texts[0], *relevant_sentences(texts[0], texts[1:])])
        else:
            numbers = numbers_in(texts)
        spans = self._answer_spans(texts[1:])
        urls = urls_in(texts) if agent.ground_strings else None
        if numbers == self.grounded_numbers and spans == self.answer_spans and urls == self.grounded_urls:
            return
        self.grounded_numbers, self.answer_spans, self.grounded_urls = numbers, spans, urls
        # Only the question's arithmetic is copied whole; a tool output's "1650-1706" is two numbers.
        grounded: dict[str, Any] = {"grounded_numbers": numbers, "grounded_expressions": expressions_in(texts[:1])}
        if agent.ground_strings:
            grounded.update(grounded_spans=tuple(question_spans(texts[0])), grounded_urls=urls)
        tools, pattern = self.toolset, self.answer_pattern
        self.grammar = agent.turn_grammar(answer_pattern=pattern, toolset=tools, answer_spans=spans, **grounded)
        if self.tools_only_grammar is not None:
            self.tools_only_grammar = agent.turn_grammar(allow_answer=False, toolset=tools, **grounded)
        if self.answer_only_grammar is not None and spans:
            from interleaf.tools import Toolset

            self.answer_only_grammar = agent.turn_grammar(answer_pattern=pattern, toolset=Toolset(), answer_spans=spans)

    def _answer_spans(self, outputs: list[str]) -> tuple[str, ...] | None:
        """What a free-text answer may be (``Agent.ground_text``): spans of the tool outputs that hold
        a word — of the passages about a name of the question when there are any
        (``passages_about``: not the 2nd hit, a town on the river of that name); None (any text)
        before there are outputs, when they hold no words (a calculator's ``0.5`` cannot answer
        "Capital of France?"), or when the task's answer is not text (a pattern, an expression)."""
        if not self.agent.ground_text or self.answer_type != "text" or self.answer_pattern is not None:
            return None
        if not any(outputs):
            return None
        from interleaf.tools import passages_about, text_spans

        question = self.trajectory.question
        about = passages_about(question, outputs)
        spans = text_spans(about or outputs, question=question)
        return tuple(s for s in spans if any(ch.isalpha() for ch in s)) or None

    def finish(self, reason: TerminationReason, error: str | None = None) -> dict[str, Any]:
        """Record the termination reason and return the state update that ends the graph."""
        self.trajectory.termination = reason
        if error:
            self.trajectory.error = error
        return {"done": True, "calls": [], "delta": ""}


def _turn_from(index: int, delta_ids: list[int], c: Completion) -> Turn:
    return Turn(
        index=index,
        delta_ids=list(delta_ids),
        completion_ids=list(c.output_ids),
        text=c.text,
        finish_reason=c.finish_reason,
        timings=TurnTimings.model_validate(c.timings.model_dump()),
        cache=CacheFigures.model_validate(c.cache.model_dump()),
        server=c.server,
        request_id=c.request_id,
        retention_events=list(c.retention),
    )


async def generate_node(state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
    """One LLM call: check the budgets, send the delta, record the turn, parse it."""
    ctx = runtime.context
    agent, traj = ctx.agent, ctx.trajectory
    budgets = agent.budgets
    if len(traj.turns) >= budgets.max_turns:
        return ctx.finish(TerminationReason.MAX_TURNS)
    if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
        return ctx.finish(TerminationReason.WALL_TIME)
    delta = state.get("delta", "")
    room = budgets.max_tokens - ctx.context_tokens - ctx.model.count_tokens(delta)
    if room < 1:
        return ctx.finish(TerminationReason.MAX_TOKENS)
    ctx.ground()
    grammar = ctx.grammar
    if ctx.tools_only_grammar and traj.tool_call_count < agent.min_tool_calls:
        grammar = ctx.tools_only_grammar
    elif ctx.answer_only_grammar and _repeated_calls(traj):
        grammar = ctx.answer_only_grammar
    constraint = Constraint("ebnf", grammar) if grammar else None
    sent_at = time.monotonic()
    if traj.turns and ctx.last_completion_at is not None:
        traj.turns[-1].timings.pause_s = sent_at - ctx.last_completion_at
    max_new = min(budgets.max_new_tokens, room)
    with _llm_span(ctx, max_new) as llm:
        if llm is not None:
            llm.set_prompt(delta)  # recorded only with content capture on
        try:
            completion = await ctx.model.generate(
                delta, max_new_tokens=max_new, constraint=constraint, temperature=agent.temperature
            )
        except Exception as exc:  # the backend already retried / failed over; the episode cannot go on
            if llm is not None:
                llm.span.set_attribute("error.type", type(exc).__qualname__)
                llm.span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
            return ctx.finish(TerminationReason.BACKEND_ERROR, f"{type(exc).__name__}: {exc}")
        ctx.last_completion_at = time.monotonic()
        turn = _turn_from(len(traj.turns), completion.delta_ids, completion)
        if not turn.timings.e2e_s:
            turn.timings.e2e_s = ctx.last_completion_at - sent_at
        traj.turns.append(turn)
        if llm is not None:
            llm.record(turn)
            turn.span_id = llm.span_id
    ctx.context_tokens += len(completion.delta_ids) + len(completion.output_ids)

    parsed = parse_turn(completion.text)
    if completion.finish_reason == "length":
        for call in parsed.calls:
            if call.error:
                call.error += " (the turn hit max_new_tokens before the call was complete)"
    turn.format_error = parsed.format_error
    if parsed.calls:
        return {"calls": parsed.calls, "delta": ""}
    if parsed.answer is not None:
        traj.answer = parsed.answer
        return ctx.finish(TerminationReason.ANSWERED)
    if completion.finish_reason == "length" and ctx.context_tokens >= budgets.max_tokens:
        return ctx.finish(TerminationReason.MAX_TOKENS)
    if agent.on_no_action == "nudge":
        nudge = agent.chat_format.user_feedback(agent.nudge_text, completion_finished=_finished(completion))
        return {"calls": [], "delta": nudge}
    if completion.finish_reason == "length":  # cut by max_new_tokens before any action
        return ctx.finish(TerminationReason.MAX_TOKENS, "the turn hit max_new_tokens before a tool call or answer")
    return ctx.finish(TerminationReason.NO_ACTION)


def _repeated_calls(traj: Trajectory) -> bool:
    """Whether the last turn's calls all repeat calls of earlier turns (same tool, same arguments)."""
    if not traj.turns or not traj.turns[-1].tool_calls:
        return False
    earlier = {(c.name, repr(c.arguments)) for t in traj.turns[:-1] for c in t.tool_calls}
    return all((c.name, repr(c.arguments)) in earlier for c in traj.turns[-1].tool_calls)


@contextmanager
def _llm_span(ctx: EpisodeContext, max_new_tokens: int) -> Iterator[Any]:
    if ctx.tracer is None:
        yield None
        return
    with ctx.tracer.llm_span(
        ctx.trajectory.model or "model",
        conversation_id=ctx.trajectory.id,
        temperature=ctx.agent.temperature,
        max_tokens=max_new_tokens,
    ) as llm:
        yield llm


def _emit_tool_spans(ctx: EpisodeContext, records: list[ToolCallRecord], started_wall: float) -> None:
    """Tool spans after the fact: the calls ran (possibly in parallel) from ``started_wall`` for
    their measured durations; the spans carry those times."""
    if ctx.tracer is None:
        return
    for rec in records:
        ctx.tracer.emit_tool_call(rec, started_wall)


def _finished(c: Completion) -> bool:
    """Whether the completion ended on the end-of-turn token (so no marker needs adding)."""
    return c.finish_reason == "stop"


async def execute_tools_node(state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
    """Run the last turn's tool calls (retention decision first), record them, build the next delta."""
    ctx = runtime.context
    traj, agent = ctx.trajectory, ctx.agent
    turn = traj.turns[-1]
    calls = state.get("calls", [])
    runnable = [(i, c) for i, c in enumerate(calls) if c.error is None]
    turn.retention = RetentionRecord.model_validate((await ctx.model.pause([c.name for _, c in runnable])).model_dump())
    ctx.tool_ctx.deadline = ctx.deadline
    started, started_wall = time.monotonic(), time.time()
    results = await ctx.toolset.call_many([(c.name, c.arguments) for _, c in runnable], ctx.tool_ctx)
    by_index = dict(zip((i for i, _ in runnable), results, strict=True))
    turn.timings.tool_s = time.monotonic() - started
    texts = []
    for i, call in enumerate(calls):
        rec = ToolCallRecord(id=f"call_{turn.index}_{i}", name=call.name, arguments=call.arguments, raw=call.raw)
        if call.error is not None:
            rec.is_error, rec.error_type = True, "ToolFormatError"
            rec.result = f"Your tool call could not be parsed: {call.error}. Write {CALL_OPEN}{{...}}{CALL_CLOSE}."
        else:
            res = by_index[i]
            rec.result, rec.is_error, rec.error_type = res.content, res.is_error, res.error_type
            rec.truncated, rec.duration_s = res.truncated, res.duration_s
        turn.tool_calls.append(rec)
        texts.append(rec.result)
    _emit_tool_spans(ctx, turn.tool_calls, started_wall)
    completion_finished = turn.finish_reason == "stop"
    return {"calls": [], "delta": agent.chat_format.tool_responses(texts, completion_finished)}


async def route_after_generate(state: EpisodeState, runtime: Runtime[EpisodeContext]) -> str:
    """``execute_tools`` when the turn called tools (and budget remains), ``generate`` after a nudge,
    else the end. Async although it never waits: LangGraph runs a sync edge function in a thread."""
    if state.get("done"):
        return END
    ctx = runtime.context
    if len(ctx.trajectory.turns) >= ctx.agent.budgets.max_turns:
        # A call on the last allowed turn would be executed only to be thrown away; after a nudge,
        # ``generate`` would only find the turn budget spent (one graph step saved: ~0.4 ms).
        ctx.finish(TerminationReason.MAX_TURNS)
        return END
    return "execute_tools" if state.get("calls") else "generate"


def build_tir_graph(agent: Agent) -> StateGraph:
    """The default TIR graph (uncompiled): generate <-> execute_tools."""
    g: StateGraph = StateGraph(EpisodeState, context_schema=EpisodeContext)
    g.add_node("generate", generate_node)
    g.add_node("execute_tools", execute_tools_node)
    g.add_edge(START, "generate")
    g.add_conditional_edges("generate", route_after_generate, ["execute_tools", "generate", END])
    g.add_edge("execute_tools", "generate")
    return g


__all__ = [
    "EpisodeContext",
    "EpisodeState",
    "build_tir_graph",
    "execute_tools_node",
    "generate_node",
    "route_after_generate",
]
