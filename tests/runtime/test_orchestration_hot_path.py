"""What the runtime does per LLM call, kept lean without changing what is recorded: a delta is
tokenised once (the agent's budget check counts it just before sending it), the runner stores the
trajectory JSON the actor sent as it is, and the last allowed turn ends the graph without another
step. The pool talks to an in-process ``httpx.MockTransport`` (logic, not the engine)."""

from __future__ import annotations

import json

import httpx

import interleaf.agents.graph as graph_module
from interleaf.agents import Agent, Budgets, ScriptedModel, Task
from interleaf.runtime.client import BackendPool
from interleaf.runtime.tokenizer import ByteTokenizer
from interleaf.telemetry.records import TerminationReason
from interleaf.telemetry.trajectory_file import dump_trajectory, load_trajectory
from interleaf.tools import format_answer, format_tool_call, tool


class CountingTokenizer(ByteTokenizer):
    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        self.encoded.append(text)
        return super().encode(text, add_special_tokens)


def _server(sent: list[list[int]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/server_info":
            return httpx.Response(200, json={"internal_states": [{"max_total_num_tokens": 100_000}]})
        if path == "/model_info":
            return httpx.Response(200, json={"model_path": "sim://m", "served_model_name": "m"})
        if path == "/generate":
            ids = json.loads(request.content)["input_ids"]
            sent.append(ids)
            meta = {"id": "r", "finish_reason": {"type": "stop"}, "prompt_tokens": len(ids), "completion_tokens": 2,
                    "cached_tokens": 0}  # fmt: skip
            return httpx.Response(200, json={"text": "ok", "output_ids": [111, 107], "meta_info": meta})
        return httpx.Response(200, json={})

    return httpx.MockTransport(handler)


async def test_a_counted_delta_is_tokenised_once_and_sent_exactly() -> None:
    tok, sent = CountingTokenizer(), []
    pool = await BackendPool.connect(["http://srv:1"], retention="none", tokenizer=tok, transport=_server(sent))
    try:
        async with pool.episode("e1") as model:
            delta = "<system>be brief</system><user>2 + 3?</user><assistant>"
            assert model.count_tokens(delta) == len(delta)
            completion = await model.generate(delta, max_new_tokens=4)
            assert tok.encoded == [delta]  # counted, then sent: one tokenisation
            assert sent == [list(delta.encode())] and completion.delta_ids == sent[0]
            completion.delta_ids.append(0)  # the caller's copy: the conversation's ids stay exact
            second = await model.generate("<user>and 4?</user>", max_new_tokens=4)
            assert tok.encoded == [delta, "<user>and 4?</user>"]
            assert second.delta_ids == list(b"<user>and 4?</user>")
            assert model.conversation.ids == [*sent[0], 111, 107, *second.delta_ids, 111, 107]
    finally:
        await pool.aclose()


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_the_json_an_actor_sends_is_what_the_runner_would_write() -> None:
    # The runner stores the actor's JSON as it is instead of serialising the parsed record again:
    # that is the same text only if dump(load(raw)) == raw for every record an episode produces.
    agent = Agent(name="t", tools=[add], grammar=None, on_no_action="nudge", budgets=Budgets(max_turns=3))
    model = ScriptedModel([format_tool_call("add", {"a": 2, "b": 3}), "thinking...", format_answer("5")])
    traj = await agent.run(Task(id="t", question="2 + 3?", answer="5"), model)
    assert traj.termination == TerminationReason.ANSWERED and traj.turns[0].tool_calls
    raw = dump_trajectory(traj)
    assert dump_trajectory(load_trajectory(raw)) == raw


async def test_a_nudge_on_the_last_allowed_turn_ends_without_another_graph_step(monkeypatch) -> None:
    steps: list[int] = []
    original = graph_module.generate_node

    async def counted(state, runtime):
        steps.append(len(runtime.context.trajectory.turns))
        return await original(state, runtime)

    monkeypatch.setattr(graph_module, "generate_node", counted)
    agent = Agent(name="t", grammar=None, on_no_action="nudge", budgets=Budgets(max_turns=2))
    model = ScriptedModel(["hmm", "still thinking", "never asked"])
    traj = await agent.run(Task(id="t", question="2 + 3?", answer="5"), model)
    assert traj.termination == TerminationReason.MAX_TURNS and len(traj.turns) == 2
    assert len(model.calls) == 2 and steps == [0, 1]  # no third step only to find the budget spent
    assert traj.token_ids() == model.sent_ids
