"""interleaf.agents: TIR agents as LangGraph graphs, the chat template of their turns, task suites.

Agents see the model only through ``AgentModel`` (``interleaf.agents.model``); the runtime
provides the real one, ``ScriptedModel`` a fake for tests. The tool-call format (grammar, parser)
lives in ``interleaf.tools``, shared with the engine's OpenAI route; ``GrammarOptions``,
``tool_call_grammar``, ``parse_turn``, ``ParsedCall`` and ``ParsedTurn`` are re-exported here.
"""

from interleaf.agents.agent import AGENTS, DEFAULT_SYSTEM_PROMPT, Agent, get_agent, register_agent
from interleaf.agents.budgets import Budgets
from interleaf.agents.chat_format import CHATML, ChatFormat
from interleaf.agents.episode import Episode
from interleaf.agents.graph import (
    EpisodeContext,
    EpisodeState,
    build_tir_graph,
    execute_tools_node,
    generate_node,
    route_after_generate,
)
from interleaf.agents.model import AgentModel, Completion, Constraint
from interleaf.agents.scripted import ScriptedModel, ScriptedModelFactory, ScriptedTurn, ScriptExhausted
from interleaf.agents.tasks import SUITES, Task, TaskSuite, load_suite, register_suite, score_answer
from interleaf.tools import GrammarOptions, ParsedCall, ParsedTurn, parse_turn, tool_call_grammar

__all__ = [
    "AGENTS",
    "CHATML",
    "DEFAULT_SYSTEM_PROMPT",
    "SUITES",
    "Agent",
    "AgentModel",
    "Budgets",
    "ChatFormat",
    "Completion",
    "Constraint",
    "Episode",
    "EpisodeContext",
    "EpisodeState",
    "GrammarOptions",
    "ParsedCall",
    "ParsedTurn",
    "ScriptExhausted",
    "ScriptedModel",
    "ScriptedModelFactory",
    "ScriptedTurn",
    "Task",
    "TaskSuite",
    "build_tir_graph",
    "execute_tools_node",
    "generate_node",
    "get_agent",
    "load_suite",
    "parse_turn",
    "register_agent",
    "register_suite",
    "route_after_generate",
    "score_answer",
    "tool_call_grammar",
]
