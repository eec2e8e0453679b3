"""The embedded engine's OpenAI-compatible route: ``/v1/models`` and ``/v1/chat/completions``.

What SGLang serves with ``--tool-call-parser hermes``: ``messages`` are rendered by the model's chat
template, tools travel in hermes style (``interleaf.tools.call_format``), and the output's tool calls
are parsed back into OpenAI ``tool_calls``. Unlike SGLang's parser, which trusts the model, the
generation is constrained by a grammar built from the tools' parameter schemas whenever tools are
offered and ``tool_choice`` is not ``"none"`` (DESIGN.md §5): a small model cannot write a valid call
unaided, and with the grammar every call it starts parses.

    protocol.py   the request bodies (pydantic)
    hermes.py     request -> prompt, tools -> grammar, output -> tool_calls
    plan.py       request -> engine request (validation, sampling parameters, grammar matcher)
    route.py      the FastAPI handlers and the SSE stream
"""

from interleaf.runtime.engine.openai.protocol import ChatCompletionIn
from interleaf.runtime.engine.openai.route import add_openai_routes

__all__ = ["ChatCompletionIn", "add_openai_routes"]
