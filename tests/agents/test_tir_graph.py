"""The TIR graph's branches, budgets and records, driven by a scripted model (no server)."""

from __future__ import annotations

import asyncio

import pytest
import xgrammar as xg
from langgraph.graph import END, START, StateGraph

from interleaf.agents import (
    Agent,
    Budgets,
    EpisodeContext,
    EpisodeState,
    Exemplar,
    ExemplarStep,
    GrammarOptions,
    ScriptedModel,
    ScriptedTurn,
    Task,
    execute_tools_node,
    generate_node,
    route_after_generate,
)
from interleaf.telemetry.records import RetentionDecision, TerminationReason
from interleaf.tools import ToolInfraError, tool
from tests.waiting import wait_until_async


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first.
        b: second.
    """
    return a + b


@tool
def broken(x: int) -> str:
    """Always fails for infrastructure reasons."""
    raise ToolInfraError("sandbox could not start")


def call(name: str, args: str) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'


TASK = Task(id="t1", question="What is 2 + 3?", answer="5", scorer="numeric")


def agent(**kw) -> Agent:
    return Agent(name="test", tools=[add, broken], **kw)


async def test_answer_directly() -> None:
    model = ScriptedModel(["It is five. <answer>5</answer>"])
    traj = await agent().run(TASK, model)
    assert traj.termination == TerminationReason.ANSWERED
    assert (traj.answer, traj.score, traj.correct) == ("5", 1.0, True)
    assert len(traj.turns) == 1 and traj.tool_call_count == 0
    assert model.pauses == []  # no tool pause happened


async def test_tool_call_then_answer_is_token_exact() -> None:
    model = ScriptedModel(["Add them." + call("add", '{"a": 2, "b": 3}'), "<answer>5</answer>"])
    traj = await agent().run(TASK, model)
    assert traj.termination == TerminationReason.ANSWERED and traj.correct
    first, second = traj.turns
    rec = first.tool_calls[0]
    assert (rec.id, rec.name, rec.arguments, rec.result, rec.is_error) == (
        "call_0_0",
        "add",
        {"a": 2, "b": 3},
        "5",
        False,
    )
    assert first.retention.decision == RetentionDecision.HOLD and model.pauses == [["add"]]
    # Turn 0 sent the rendered system + user prompt; turn 1 only the tool response delta.
    assert model.calls[0].delta_text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n" in model.calls[0].delta_text
    assert model.calls[1].delta_text == (
        "\n<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    # The record rebuilds exactly what the 'server' saw, turn by turn and in full.
    assert traj.token_ids() == model.sent_ids
    assert traj.prompt_ids(1) == model.sent_ids[: len(traj.prompt_ids(1))]
    assert first.completion_ids[-1] == model.eos_id
    assert second.cache.cached_tokens == len(first.delta_ids) + len(first.completion_ids)
    assert first.timings.pause_s >= first.timings.tool_s >= 0


async def test_every_turn_is_constrained_by_the_tool_grammar() -> None:
    script = [call("add", '{"a": 2, "b": 3}'), "<answer>5</answer>"]
    model = ScriptedModel(script)
    await agent().run(TASK, model)
    constraints = {c.constraint for c in model.calls}
    assert len(constraints) == 1
    (constraint,) = constraints
    assert constraint.kind == "ebnf" and "call_add ::=" in constraint.value and "call_broken ::=" in constraint.value
    vocab = [chr(i) for i in range(32, 127)] + ["<eos>"]
    info = xg.TokenizerInfo(vocab, stop_token_ids=[len(vocab) - 1])
    compiled = xg.GrammarCompiler(info).compile_grammar(xg.Grammar.from_ebnf(constraint.value))
    for text in script:  # the scripted completions are sentences of the grammar
        m = xg.GrammarMatcher(compiled)
        assert m.accept_string(text) and m.accept_token(len(vocab) - 1)
    unconstrained = ScriptedModel(["<answer>5</answer>"])
    await agent(grammar=None).run(TASK, unconstrained)
    assert unconstrained.calls[0].constraint is None


async def test_format_error_and_unknown_tool_are_shown_to_the_model() -> None:
    model = ScriptedModel(
        ['<tool_call>{"name": "add", "arguments": {"a": 2,</tool_call>', call("mul", "{}"), "<answer>6</answer>"]
    )
    traj = await agent(grammar=None).run(TASK, model)
    t0, t1, _ = traj.turns
    assert t0.format_error and t0.tool_calls[0].error_type == "ToolFormatError" and t0.tool_calls[0].arguments is None
    assert "could not be parsed" in model.calls[1].delta_text
    assert model.pauses[0] == []  # nothing runnable: the retention policy saw no tools
    assert t1.tool_calls[0].is_error and t1.tool_calls[0].error_type == "UnknownToolError"
    assert (traj.termination, traj.correct) == (TerminationReason.ANSWERED, False)


async def test_bad_arguments_are_a_tool_error() -> None:
    model = ScriptedModel([call("add", '{"a": "two", "b": 3}'), "<answer>5</answer>"])
    traj = await agent(grammar=None).run(TASK, model)
    assert traj.turns[0].tool_calls[0].error_type == "ToolArgumentError"


async def test_max_turns_does_not_execute_the_last_call() -> None:
    model = ScriptedModel([call("add", '{"a": 1, "b": 1}')] * 3)
    traj = await agent(budgets=Budgets(max_turns=2)).run(TASK, model)
    assert traj.termination == TerminationReason.MAX_TURNS
    assert len(traj.turns) == 2 and len(model.calls) == 2
    assert [len(t.tool_calls) for t in traj.turns] == [1, 0]
    assert (traj.score, traj.correct) == (0.0, False)


async def test_no_action_stops_or_nudges() -> None:
    traj = await agent().run(TASK, ScriptedModel(["I am not sure."]))
    assert traj.termination == TerminationReason.NO_ACTION
    traj = await agent().run(TASK, ScriptedModel([ScriptedTurn("I am not", finish_reason="length")]))
    assert traj.termination == TerminationReason.MAX_TOKENS and "max_new_tokens" in (traj.error or "")
    model = ScriptedModel([ScriptedTurn("I am not", finish_reason="length"), "<answer>5</answer>"])
    traj = await agent(on_no_action="nudge").run(TASK, model)
    assert traj.termination == TerminationReason.ANSWERED
    # Cut by length: the nudge delta closes the turn with the end-of-turn marker first.
    assert model.calls[1].delta_text.startswith("<|im_end|>\n<|im_start|>user\nCall a tool")
    assert traj.token_ids() == model.sent_ids


async def test_token_budget() -> None:
    model = ScriptedModel([call("add", '{"a": 1, "b": 1}')] * 5)
    first_prompt = len(agent().render_system()) + 200
    traj = await agent(budgets=Budgets(max_tokens=first_prompt + 100, max_new_tokens=60)).run(TASK, model)
    assert traj.termination == TerminationReason.MAX_TOKENS
    assert all(c.max_new_tokens <= 60 for c in model.calls)
    assert len(traj.token_ids()) <= first_prompt + 100


async def test_wall_time_budget() -> None:
    model = ScriptedModel([ScriptedTurn("<answer>5</answer>", delay_s=30)])
    traj = await agent(budgets=Budgets(wall_time_s=0.2)).run(TASK, model)
    assert traj.termination == TerminationReason.WALL_TIME


async def test_backend_and_tool_infra_errors_end_the_episode() -> None:
    traj = await agent().run(TASK, ScriptedModel([ConnectionError("engine down")]))
    assert traj.termination == TerminationReason.BACKEND_ERROR and "engine down" in (traj.error or "")
    traj = await agent().run(TASK, ScriptedModel([call("broken", '{"x": 1}'), "<answer>5</answer>"]))
    assert traj.termination == TerminationReason.TOOL_INFRA_ERROR and "sandbox" in (traj.error or "")


async def test_cancellation_records_and_closes() -> None:
    model = ScriptedModel([call("add", '{"a": 2, "b": 3}'), ScriptedTurn("<answer>5</answer>", delay_s=60)])
    from interleaf.agents import Episode

    async def run() -> None:
        async with model:
            await episode.run()

    episode = Episode(agent(), TASK, model)
    task = asyncio.create_task(run())
    await wait_until_async(
        lambda: len(model.calls),
        until=lambda calls: calls >= 2,
        message="the episode to be inside its second model call (model calls)",
        interval_s=0.01,
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert episode.trajectory.termination == TerminationReason.CANCELLED
    assert len(episode.trajectory.turns) == 1 and model.closed


async def test_custom_graph_with_extra_node() -> None:
    seen: list[int] = []

    async def reflect(state: EpisodeState, runtime) -> dict:
        ctx: EpisodeContext = runtime.context
        seen.append(len(ctx.trajectory.turns))
        return {"delta": state["delta"].replace("<tool_response>", "<tool_response>\n[checked]")}

    def build(a: Agent) -> StateGraph:
        g = StateGraph(EpisodeState, context_schema=EpisodeContext)
        g.add_node("generate", generate_node)
        g.add_node("execute_tools", execute_tools_node)
        g.add_node("reflect", reflect)
        g.add_edge(START, "generate")
        g.add_conditional_edges("generate", route_after_generate, ["execute_tools", "generate", END])
        g.add_edge("execute_tools", "reflect")
        g.add_edge("reflect", "generate")
        return g

    model = ScriptedModel([call("add", '{"a": 2, "b": 3}'), "<answer>5</answer>"])
    traj = await agent(graph=build).run(TASK, model)
    assert seen == [1] and "[checked]" in model.calls[1].delta_text and traj.correct


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        Budgets(max_turns=0)
    with pytest.raises(ValueError, match="on_no_action"):
        Agent(on_no_action="retry")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_reasoning_chars"):
        GrammarOptions(max_reasoning_chars=-1)


async def test_min_tool_calls_withholds_answer_until_a_tool_was_used() -> None:
    model = ScriptedModel([call("add", '{"a": 2, "b": 3}'), "<answer>5</answer>"])
    traj = await agent(min_tool_calls=1).run(TASK, model)
    first, second = (c.constraint.value for c in model.calls)
    assert "answer ::=" not in first and "<answer>" not in first  # turn 0: tool calls only
    assert "answer ::=" in second
    assert traj.correct


def test_default_agent_requires_one_tool_call() -> None:
    from interleaf.agents import get_agent

    assert get_agent("tir").min_tool_calls == 1
    with pytest.raises(ValueError, match="unknown agent"):
        get_agent("nope")


async def test_episode_emits_genai_spans() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from interleaf.telemetry.tracing import EpisodeTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = ScriptedModel([call("add", '{"a": 2, "b": 3}'), "<answer>5</answer>"])
    traj = await agent().run(TASK, model, tracer=EpisodeTracer(provider))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "execute_tool add",
        "invoke_agent test",
        "text_completion scripted",
        "text_completion scripted",
    ]
    root = spans["invoke_agent test"]
    assert traj.trace_id == format(root.context.trace_id, "032x")
    assert all(
        s.parent is not None and s.parent.span_id == root.context.span_id for n, s in spans.items() if n != root.name
    )
    assert root.attributes["interleaf.termination"] == "answered"
    llm_ids = {format(s.context.span_id, "016x") for s in exporter.get_finished_spans() if s.name.startswith("text")}
    assert {t.span_id for t in traj.turns} == llm_ids
    assert spans["execute_tool add"].attributes["gen_ai.tool.call.id"] == "call_0_0"


SHOTS = [
    Exemplar(
        question="What is 4 + 4?", steps=[ExemplarStep(tool="add", arguments={"a": 4, "b": 4}, result="8")], answer="8"
    ),
    Exemplar(
        question="Is it broken?", steps=[ExemplarStep(tool="broken", arguments={"x": 1}, result="no")], answer="no"
    ),
]


async def test_exemplars_precede_the_question_as_turns_the_model_then_continues() -> None:
    model = ScriptedModel([call("add", '{"a": 2, "b": 3}'), "<answer>5</answer>"])
    traj = await Agent(name="t", tools=[add]).run(TASK, model, exemplars=SHOTS)
    first = model.calls[0].delta_text
    # The example the agent can follow (it has no 'broken' tool) is a real exchange before the question.
    shot = (
        "<|im_start|>user\nWhat is 4 + 4?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>{"name": "add", "arguments": {"a": 4, "b": 4}}</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n8\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<answer>8</answer><|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert first.endswith(shot) and "Is it broken?" not in first
    assert traj.correct and traj.token_ids() == model.sent_ids
    direct = ScriptedModel(["<answer>5</answer>"])
    await Agent(name="d", tools=[]).run(TASK, direct, exemplars=SHOTS)
    assert "<|im_start|>user\nWhat is 4 + 4?<|im_end|>\n<|im_start|>assistant\n<answer>8</answer>" in (
        direct.calls[0].delta_text
    )  # no tools: question and answer only
    in_system = ScriptedModel(["<answer>5</answer>"])
    await Agent(name="s", tools=[add], exemplars_as="system").run(TASK, in_system, exemplars=SHOTS)
    system = in_system.calls[0].delta_text.split("<|im_end|>")[0]
    assert "# Examples\nQuestion: What is 4 + 4?\n<tool_call>" in system
    none = ScriptedModel(["<answer>5</answer>"])
    await Agent(name="n", tools=[add], max_exemplars=0).run(TASK, none, exemplars=SHOTS)
    assert "4 + 4" not in none.calls[0].delta_text


async def test_the_task_answer_type_and_tools_shape_the_grammar() -> None:
    task = Task(id="t2", question="What is 2 + 3?", answer="5", answer_type="number", tools=["add"])
    model = ScriptedModel(["<answer>5</answer>"])
    traj = await agent().run(task, model)
    grammar = model.calls[0].constraint.value
    assert "call_add ::=" in grammar and "call_broken" not in grammar and traj.tools == ["add"]
    assert '"<answer>" (' in grammar and "[^<\\n]{1," not in grammar  # a number, not free text
    with pytest.raises(ValueError, match="not among the agent's tools"):
        await agent().run(Task(id="t3", question="?", tools=["mul"]), ScriptedModel([]))


async def test_a_repeated_call_is_followed_by_an_answer_only_turn() -> None:
    same = call("add", '{"a": 2, "b": 3}')
    model = ScriptedModel([same, same, "<answer>5</answer>"])
    traj = await agent().run(TASK, model)
    first, second, third = (c.constraint.value for c in model.calls)
    assert first == second and "tool_call ::=" in second
    assert "tool_call ::=" not in third and "answer ::=" in third
    assert traj.correct
    keep_going = ScriptedModel([same, same, same, "<answer>5</answer>"])
    await agent(answer_after_repeat=False).run(TASK, keep_going)
    assert len({c.constraint.value for c in keep_going.calls}) == 1


def test_default_agent_is_shaped_for_the_small_model() -> None:
    from interleaf.agents import get_agent

    tir = get_agent("tir")
    assert tir.temperature == 0.0 and tir.grammar is not None and tir.grammar.max_reasoning_chars == 0
    assert tir.exemplars_as == "turns" and tir.max_exemplars >= 1 and tir.answer_after_repeat
    assert tir.ground_numbers


async def test_ground_numbers_draws_arguments_from_the_question_and_tool_outputs() -> None:
    vocab = [chr(i) for i in range(32, 127)]
    info = xg.TokenizerInfo([*vocab, "<eos>"], stop_token_ids=[len(vocab)])

    def allows(ebnf: str, text: str) -> bool:
        m = xg.GrammarMatcher(xg.GrammarCompiler(info).compile_grammar(xg.Grammar.from_ebnf(ebnf)))
        return bool(m.accept_string(text)) and bool(m.accept_token(len(vocab)))

    model = ScriptedModel([call("add", '{"a": 2, "b": 3}'), call("add", '{"a": 5, "b": 2}'), "<answer>7</answer>"])
    await agent(ground_numbers=True).run(TASK, model)
    first, second, _ = (c.constraint.value for c in model.calls)
    assert allows(first, call("add", '{"a": 2, "b": 3}'))
    assert not allows(first, call("add", '{"a": 5, "b": 2}'))  # 5 is not in the question
    assert allows(second, call("add", '{"a": 5, "b": 2}'))  # the first call returned 5
    free = ScriptedModel([call("add", '{"a": 5, "b": 2}'), "<answer>7</answer>"])
    await agent().run(TASK, free)
    assert allows(free.calls[0].constraint.value, call("add", '{"a": 5, "b": 2}'))  # off by default
