"""The ``tir`` agent grounds search queries in the question and visited urls in the search results
(``Agent.ground_strings``), through a ``ScriptedModel``, checked on the real xgrammar grammar."""

from __future__ import annotations

import json

from interleaf.agents import Agent, ScriptedModel, Task, load_suite
from interleaf.agents.agent import default_agent
from tests.grammar_check import can_end


def _call(name: str, **arguments: object) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(arguments)}}}</tool_call>'


async def test_the_tir_agent_grounds_the_query_in_the_question_and_the_url_in_the_results() -> None:
    agent = default_agent()
    assert agent.ground_strings
    suite = load_suite("mixed", 2)
    town = suite.tasks[0].metadata["towns"][0]
    url = f"https://wiki.interleaf.local/{town.lower()}"
    agent.tools = suite.make_tools()
    task = Task(id="v", question=f"When was the town of {town} founded?", answer="1", answer_type="number")
    script = [
        _call("search", query=[town]),
        _call("visit", url=url, goal="founded"),
        "<answer>1</answer>",
    ]
    model = ScriptedModel(script)
    await agent.run(task, model)
    first, second = (c.constraint.value for c in model.calls[:2])
    assert can_end(first, script[0]) and not can_end(first, _call("search", query=[town + "x"]))
    # Before any result no url was seen: the url is free; after the search only the hits' urls.
    assert can_end(first, _call("visit", url="https://wiki.interleaf.local/other", goal="x"))
    assert can_end(second, script[1])
    assert not can_end(second, _call("visit", url=url + "x", goal="x"))
    # ground_strings off: any query.
    model = ScriptedModel(script)
    await Agent(name="free", tools=suite.make_tools(), min_tool_calls=1).run(task, model)
    assert can_end(model.calls[0].constraint.value, _call("search", query=[town + "x"]))


_HITS = """## Results for 'Kapel'
1. [Kapel](https://wiki.interleaf.local/kapel)
   Kapel is a town in Westfold, on the banks of the Lorlor river. The town is known for tea trading.
2. [Quaithlor](https://wiki.interleaf.local/quaithlor)
   Quaithlor is a town on the banks of the Kapel river. The town is known for salt mining."""


async def test_a_text_answer_comes_from_the_passages_about_the_question_name() -> None:
    from interleaf.tools import tool

    @tool
    def search(query: list[str]) -> str:
        """Search.

        Args:
            query: what to look for.
        """
        return _HITS

    task = Task(id="k", question="What is the town of Kapel known for?", answer="tea trading")
    script = [_call("search", query=["Kapel"]), "<answer>tea trading</answer>"]
    model = ScriptedModel(script)
    assert (await Agent(name="t", tools=[search], ground_text=True).run(task, model)).correct
    after = model.calls[1].constraint.value
    assert can_end(after, "<answer>tea trading</answer>") and can_end(after, "<answer>Lorlor river</answer>")
    for refused in ("salt mining", "Quaithlor"):  # the second hit only mentions Kapel
        assert not can_end(after, f"<answer>{refused}</answer>"), refused
    # No passage opens with a name of the question: every output's spans.
    other = Task(id="o", question="What is the town of Velmin known for?", answer="salt mining")
    model = ScriptedModel([_call("search", query=["Velmin"]), "<answer>salt mining</answer>"])
    assert (await Agent(name="t", tools=[search], ground_text=True).run(other, model)).correct
    assert can_end(model.calls[1].constraint.value, "<answer>salt mining</answer>")
