"""``Agent.turn_grammar`` builds each grammar once per agent (every episode asks for the same few;
one costs ~0.4 ms to build), and a cached grammar is exactly the one that would be built."""

from __future__ import annotations

import dataclasses

from interleaf.agents import Agent, GrammarOptions
from interleaf.tools import Toolset, tool, tool_call_grammar


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(name="add")
def add_text(a: str, b: str) -> str:
    """Same name, other schema."""
    return a + b


def test_a_grammar_is_built_once_and_equals_a_fresh_build() -> None:
    agent = Agent(name="t", tools=[add], grammar=GrammarOptions(max_reasoning_chars=0))
    first = agent.turn_grammar(answer_pattern="-?[0-9]+")
    assert agent.turn_grammar(answer_pattern="-?[0-9]+") is first
    opts = dataclasses.replace(agent.grammar, answer_pattern="-?[0-9]+")
    assert first == tool_call_grammar(agent.toolset.schemas(), opts)
    assert agent.turn_grammar(answer_pattern="[a-z]+") != first  # the options are part of the key
    calls_only = agent.turn_grammar(allow_answer=False)
    assert calls_only == tool_call_grammar(
        agent.toolset.schemas(), dataclasses.replace(agent.grammar, allow_answer=False)
    )
    # A toolset whose tool has the same name but another schema gets its own grammar.
    other = agent.turn_grammar(answer_pattern="-?[0-9]+", toolset=Toolset([add_text]))
    assert other != first and other == tool_call_grammar(Toolset([add_text]).schemas(), opts)
