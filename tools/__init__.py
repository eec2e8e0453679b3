"""interleaf.tools: write a typed Python function, get a safe model-callable tool.

Public API (the implementation modules are private to this package's layout)::

    @tool / Tool / Toolset / ToolContext / ToolResult       the SDK
    ToolError, ToolArgumentError, UnknownToolError,          model-recoverable errors
    ToolTimeout, ToolInfraError                              (and the one that ends an episode)
    python_tool, calculator, answer, Corpus, Document,       built-in tools
    make_corpus_tools
    mcp_toolset, serve_mcp                                   MCP in both directions
    format_tool_call, tool_call_grammar, parse_turn, ...    the hermes tool-call format (call_format)
"""

from typing import TYPE_CHECKING

from interleaf.lazy_exports import lazy_exports
from interleaf.tools.call_format import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    CALL_CLOSE,
    CALL_OPEN,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    GrammarOptions,
    ParsedCall,
    ParsedTurn,
    ToolSchemaError,
    answer_ebnf,
    call_template,
    format_answer,
    format_tool_call,
    format_tool_responses,
    parse_call,
    parse_calls,
    parse_turn,
    tool_call_grammar,
    tools_system_prompt,
)
from interleaf.tools.context import ToolContext
from interleaf.tools.errors import ToolArgumentError, ToolError, ToolInfraError, ToolTimeout, UnknownToolError
from interleaf.tools.grounding import expressions_in, numbers_in
from interleaf.tools.regex_ebnf import RegexNotSupported, regex_to_ebnf
from interleaf.tools.result import ToolResult
from interleaf.tools.sandbox import SandboxLimits, SandboxRun, run_python
from interleaf.tools.text_grounding import passages_about, question_spans, relevant_sentences, text_spans, urls_in
from interleaf.tools.tool import Tool, tool
from interleaf.tools.toolset import Toolset

if TYPE_CHECKING:
    from interleaf.tools.builtin import (
        Corpus,
        Document,
        SearchHit,
        answer,
        calculator,
        make_corpus_tools,
        make_python_tool,
        python_tool,
    )
    from interleaf.tools.mcp_client import mcp_toolset
    from interleaf.tools.mcp_server import build_mcp_server, serve_mcp, serve_mcp_async

# Loaded on first use: the MCP SDK takes ~0.4 s to import, the built-in tools ~0.2 s (bm25s, scipy),
# and the embedded engine imports this package for the tool-call format alone.
_LAZY = {
    **dict.fromkeys(
        [
            "Corpus",
            "Document",
            "SearchHit",
            "answer",
            "calculator",
            "make_corpus_tools",
            "make_python_tool",
            "python_tool",
        ],
        "interleaf.tools.builtin",
    ),
    "mcp_toolset": "interleaf.tools.mcp_client",
    "build_mcp_server": "interleaf.tools.mcp_server",
    "serve_mcp": "interleaf.tools.mcp_server",
    "serve_mcp_async": "interleaf.tools.mcp_server",
}


# The literal ``__all__`` below lists the eager names too, so linters see the re-exports.
__getattr__, __dir__, _ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "CALL_CLOSE",
    "CALL_OPEN",
    "RESPONSE_CLOSE",
    "RESPONSE_OPEN",
    "Corpus",
    "Document",
    "GrammarOptions",
    "ParsedCall",
    "ParsedTurn",
    "RegexNotSupported",
    "SandboxLimits",
    "SandboxRun",
    "SearchHit",
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolInfraError",
    "ToolResult",
    "ToolSchemaError",
    "ToolTimeout",
    "Toolset",
    "UnknownToolError",
    "answer",
    "answer_ebnf",
    "build_mcp_server",
    "calculator",
    "call_template",
    "expressions_in",
    "format_answer",
    "format_tool_call",
    "format_tool_responses",
    "make_corpus_tools",
    "make_python_tool",
    "mcp_toolset",
    "numbers_in",
    "parse_call",
    "parse_calls",
    "parse_turn",
    "passages_about",
    "python_tool",
    "question_spans",
    "regex_to_ebnf",
    "relevant_sentences",
    "run_python",
    "serve_mcp",
    "serve_mcp_async",
    "text_spans",
    "tool",
    "tool_call_grammar",
    "tools_system_prompt",
    "urls_in",
]
