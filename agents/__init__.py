"""interleaf.agents: TIR agents as LangGraph graphs, the chat template of their turns, task suites.

Agents see the model only through ``AgentModel`` (``interleaf.agents.model``); the runtime
provides the real one, ``ScriptedModel`` a fake for tests. The tool-call format (grammar, parser)
lives in ``interleaf.tools``, shared with the engine's OpenAI route; ``GrammarOptions``,
``tool_call_grammar``, ``parse_turn``, ``ParsedCall`` and ``ParsedTurn`` are re-exported here.
"""

from __future__ import annotations

from interleaf.lazy_exports import lazy_exports

# Resolved lazily: a job spec reads the agent and suite registries without loading LangGraph.
_EXPORTS: dict[str, str] = {
    "AGENTS": "interleaf.agents.agent",
    "Agent": "interleaf.agents.agent",
    "AgentModel": "interleaf.agents.model",
    "Budgets": "interleaf.agents.budgets",
    "CHATML": "interleaf.agents.chat_format",
    "ChatFormat": "interleaf.agents.chat_format",
    "Completion": "interleaf.agents.model",
    "Constraint": "interleaf.agents.model",
    "DEFAULT_SYSTEM_PROMPT": "interleaf.agents.agent",
    "Episode": "interleaf.agents.episode",
    "EpisodeContext": "interleaf.agents.graph",
    "EpisodeState": "interleaf.agents.graph",
    "Exemplar": "interleaf.agents.tasks",
    "ExemplarStep": "interleaf.agents.tasks",
    "GrammarOptions": "interleaf.tools",
    "ParsedCall": "interleaf.tools",
    "ParsedTurn": "interleaf.tools",
    "SUITES": "interleaf.agents.tasks",
    "ScriptExhausted": "interleaf.agents.scripted",
    "ScriptedModel": "interleaf.agents.scripted",
    "ScriptedModelFactory": "interleaf.agents.scripted",
    "ScriptedTurn": "interleaf.agents.scripted",
    "Task": "interleaf.agents.tasks",
    "TaskFileError": "interleaf.agents.tasks",
    "TaskSuite": "interleaf.agents.tasks",
    "build_tir_graph": "interleaf.agents.graph",
    "execute_tools_node": "interleaf.agents.graph",
    "generate_node": "interleaf.agents.graph",
    "get_agent": "interleaf.agents.agent",
    "load_suite": "interleaf.agents.tasks",
    "parse_turn": "interleaf.tools",
    "register_agent": "interleaf.agents.agent",
    "register_suite": "interleaf.agents.tasks",
    "registered_suites": "interleaf.agents.tasks",
    "route_after_generate": "interleaf.agents.graph",
    "score_answer": "interleaf.agents.tasks",
    "tool_call_grammar": "interleaf.tools",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
