"""The hermes tool-call format (DESIGN §5): how a model writes calls and answers, the grammar that
makes it, and the parser that reads them back. The one place the format's tags are spelled::

    <tool_call>{"name": "search", "arguments": {"query": ["x"]}}</tool_call>
    <tool_response>\\n...\\n</tool_response>
    <answer>42</answer>

It is what SGLang's hermes / qwen25 tool-call parsers read. The agents constrain each turn with
``tool_call_grammar`` and read it with ``parse_turn``. The embedded engine's OpenAI route renders and
reads with the same functions, and builds its grammar from the same pieces (``call_head``,
``CALL_TAIL``, ``TEXT_EBNF``) around xgrammar's JSON-schema converter. Constraining generation means
a call always parses, even from a model far too small to produce one unaided.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from interleaf.tools.json_arguments import ArgumentsError, argument_problem, loads
from interleaf.tools.regex_ebnf import RegexNotSupported, regex_to_ebnf
from interleaf.tools.schema_grammar import JSON_RULES, SchemaGrammar, literal, rule_name
from interleaf.tools.text_grounding import spans_ebnf

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
RESPONSE_OPEN = "<tool_response>"
RESPONSE_CLOSE = "</tool_response>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

# --- writing -------------------------------------------------------------------------------------


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """A call exactly as the grammar makes a model write it, so history renders back to the same text
    (and tokens) the model produced."""
    return CALL_OPEN + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + CALL_CLOSE


def call_template(name: str, arguments: str) -> str:
    """A call with placeholders, as instructions show it to a model:
    ``call_template("<tool name>", "<arguments object>")``."""
    return f'{CALL_OPEN}{{"name": {name}, "arguments": {arguments}}}{CALL_CLOSE}'


def format_tool_responses(results: Sequence[str]) -> str:
    """Tool results as the model reads them: one ``<tool_response>`` block each, newline-separated."""
    return "\n".join(f"{RESPONSE_OPEN}\n{r}\n{RESPONSE_CLOSE}" for r in results)


def format_answer(text: str) -> str:
    """A final answer: ``<answer>text</answer>``."""
    return f"{ANSWER_OPEN}{text}{ANSWER_CLOSE}"


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """The hermes system block offering ``tools`` (OpenAI-style schemas, one JSON line each), as
    Qwen2.5's and NousResearch's hermes chat templates write it."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        f"{CALL_OPEN}{CALL_CLOSE} XML tags:\n{call_template('<function-name>', '<args-json-object>')}"
    )


# --- the grammar ---------------------------------------------------------------------------------
# The pieces below are the format's literals as grammars spell them. ``tool_call_grammar`` uses them
# with its own JSON-schema compiler; the embedded engine's OpenAI route uses them with xgrammar's.


def call_head(name: str) -> str:
    """A call's JSON text before its arguments object (tags excluded): ``{"name": "<name>", "arguments": ``."""
    return '{"name": ' + json.dumps(name) + ', "arguments": '


CALL_TAIL = "}"
"""A call's JSON text after its arguments object (tags excluded): the call object's closing brace."""

TEXT_EBNF = "[^<] [^]*"
"""EBNF for plain text standing instead of calls. It may not open with ``<``: that first character
is how the output commits to a call (or an answer)."""


@dataclass(frozen=True)
class GrammarOptions:
    """Shape of the grammar: what a generation may consist of besides schema-valid calls.

    The defaults are an agent's TIR turn (short reasoning, then one call or an answer). With
    ``max_reasoning_chars=0, allow_answer=False`` they take the shapes of OpenAI's tool choices:
    ``allow_text`` (``tool_choice="auto"``), ``parallel_calls`` (``parallel_tool_calls``) and
    ``only_tool`` (a named ``tool_choice``); the engine's OpenAI route builds those shapes itself, with
    xgrammar's JSON-schema converter for the arguments.
    """

    max_reasoning_chars: int = 160
    """Cap on the free-text reasoning before the action (0 disables reasoning)."""
    max_answer_chars: int = 100
    """Cap on the final answer's length (one line)."""
    allow_answer: bool = True
    """Whether ``<answer>...</answer>`` is allowed (False forces a tool call)."""
    allow_text: bool = False
    """Whether plain text may stand instead of calls. It may not open with ``<``: that first
    character is how the output commits to a call."""
    parallel_calls: bool = False
    """Whether several calls may follow each other. No separator between them: offered a newline
    there, SmolLM2 chains the same call until its token limit; offered only ``<`` or end-of-turn,
    it ends the turn."""
    only_tool: str | None = None
    """Restrict calls to this one tool (it must be among the tools)."""
    answer_pattern: str | None = None
    """A regex the answer's text must match whole (``interleaf.tools.regex_ebnf``'s subset), e.g.
    ``-?[0-9]+(\\.[0-9]+)?`` for a number; None: any one-line text up to ``max_answer_chars``."""
    constrain_arguments: bool = True
    """Enforce the argument schemas' value constraints (``pattern``, lengths, numeric ranges); False
    enforces only types and structure (see ``interleaf.tools.schema_grammar``)."""
    answer_spans: tuple[str, ...] | None = None
    """With no ``answer_pattern``: the answer is exactly one of these texts (``interleaf.tools.text_grounding``:
    short spans of the episode's tool outputs, built into a trie). None or empty: any one-line text.
    An agent fills it per turn (``Agent.ground_text``)."""
    grounded_numbers: tuple[str, ...] | None = None
    """With ``constrain_arguments``: the numbers, repeats kept, that numeric literals in arguments
    may be (``interleaf.tools.grounding``): in a string with a repeated-unit ``pattern`` (the
    calculator's expression) each at most as often as listed; an integer / number argument one of
    them. None: any number. An agent fills it per turn from its conversation (``Agent.ground_numbers``)."""
    grounded_expressions: tuple[str, ...] = ()
    """With ``grounded_numbers``: arithmetic written out in the conversation (``4 mod 48``), each a
    unit that a patterned string argument may hold only whole, its numbers not offered alone
    (``interleaf.tools.grounding.expressions_in``)."""
    grounded_spans: tuple[str, ...] | None = None
    """With ``constrain_arguments``: the texts a string argument marked ``"x-grounded": "question"``
    (a search query) may be, as a trie (``interleaf.tools.question_spans``: short runs of the
    question's words, names whole). None or empty: free text. An agent fills it (``Agent.ground_strings``)."""
    grounded_urls: tuple[str, ...] | None = None
    """With ``constrain_arguments``: the texts a ``"format": "uri"`` string argument (``visit``'s
    url) may be (``interleaf.tools.urls_in``: urls the conversation wrote). None or empty: free text."""

    def __post_init__(self) -> None:
        for name in ("max_reasoning_chars", "max_answer_chars"):
            if getattr(self, name) < 0:
                raise ValueError(f"GrammarOptions.{name} must be >= 0, got {getattr(self, name)}")
        if self.answer_pattern is not None:
            try:
                answer_ebnf(self.answer_pattern)
            except RegexNotSupported as exc:
                raise ValueError(f"GrammarOptions.answer_pattern: {exc}") from None


def answer_ebnf(pattern: str | None, max_chars: int = 100) -> str:
    """EBNF for an answer's text: ``pattern`` matched whole, or any one-line text of up to
    ``max_chars`` characters. Never ``<`` or a newline (they would end the answer early)."""
    if pattern is None:
        return f"[^<\\n]{{1,{max(1, max_chars)}}}"
    return regex_to_ebnf(pattern, forbid="<\n")


class ToolSchemaError(ValueError):
    """A tool's parameter schema cannot be turned into a grammar (not a JSON schema, a bad ``$ref``)."""

    def __init__(self, index: int, tool: str, problem: str):
        super().__init__(f"tools[{index}] ({tool!r}): the parameter schema cannot be turned into a grammar: "
                         f"{problem}; send a valid JSON schema")  # fmt: skip
        self.index = index
        """Position of the tool in the list given."""
        self.tool = tool
        """The tool's name."""
        self.problem = problem
        """What is wrong with the schema."""


def _check_schema(schema: dict[str, Any]) -> None:
    import jsonschema  # ~40 ms; only grammar builders pay it

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"at {where}: {exc.message}") from None


def tool_call_grammar(tools: Sequence[dict[str, Any]], options: GrammarOptions | None = None) -> str:
    """EBNF (xgrammar) for a generation given OpenAI-style tool schemas (``{"type": "function",
    "function": {...}}`` or bare ``{"name", "parameters"}``): calls whose arguments match their tool's
    parameter schema, shaped by ``options``. Raises ``ToolSchemaError`` naming the tool whose schema
    is not a JSON schema, ``ValueError`` when the options leave nothing to generate."""
    opts = options or GrammarOptions()
    comp = SchemaGrammar(
        constrain_values=opts.constrain_arguments,
        grounded_numbers=opts.grounded_numbers,
        grounded_expressions=opts.grounded_expressions,
        grounded_spans=opts.grounded_spans,
        grounded_urls=opts.grounded_urls,
    )
    calls, names = [], []
    for i, tool in enumerate(tools):
        fn = tool.get("function", tool)
        name = fn.get("name")
        if not name:
            raise ValueError(f"tool schema has no 'name': {json.dumps(tool)[:200]}; pass Tool.openai_schema()")
        names.append(name)
        if opts.only_tool is not None and name != opts.only_tool:
            continue
        params = fn.get("parameters") or {"type": "object"}
        try:
            _check_schema(params)
            args = comp.document(params, rule_name("args", name))
        except ValueError as exc:
            raise ToolSchemaError(i, name, str(exc)) from exc
        calls.append(comp.add(rule_name("call", name), f"{literal(call_head(name))} {args} {literal(CALL_TAIL)}"))
    if opts.only_tool is not None and not calls:
        raise ValueError(f"GrammarOptions.only_tool={opts.only_tool!r} is not among the tools {names}")
    actions = []
    if calls:
        call = comp.add("tool_call", f"{literal(CALL_OPEN)} ({' | '.join(calls)}) {literal(CALL_CLOSE)}")
        actions.append(comp.add("tool_calls", f"{call}+") if opts.parallel_calls else call)
    if opts.allow_answer:
        text = answer_ebnf(opts.answer_pattern, opts.max_answer_chars)
        if opts.answer_spans and opts.answer_pattern is None:
            spans = spans_ebnf(opts.answer_spans, "answer_span")
            comp.rules.update(spans)  # the "answer_span" prefix is no other rule's
            text = next(iter(spans))
        body = f"{literal(ANSWER_OPEN)} {text} {literal(ANSWER_CLOSE)}"
        actions.append(comp.add("answer", body))
    alternatives = []
    if actions:
        action = "(" + " | ".join(actions) + ")"
        if opts.max_reasoning_chars > 0:
            action = comp.add("reasoning", f"[^<]{{1,{opts.max_reasoning_chars}}}") + "? " + action
        alternatives.append(action)
    if opts.allow_text:
        alternatives.append(comp.add("text", TEXT_EBNF))
    if not alternatives:
        raise ValueError("tool_call_grammar: no tools and allow_answer=False leaves no valid action; add a tool")
    lines = [f"root ::= {' | '.join(alternatives)}"] + [f"{k} ::= {v}" for k, v in comp.rules.items()]
    return "\n".join(lines) + JSON_RULES


# --- reading -------------------------------------------------------------------------------------


@dataclass
class ParsedCall:
    """One ``<tool_call>`` block as written by the model."""

    raw: str
    """The text between the tags."""
    name: str = ""
    """The tool named ("" when the call did not parse)."""
    arguments: dict[str, Any] | None = None
    """The arguments object (None when the call did not parse)."""
    error: str | None = None
    """Why the call did not parse (None when it did)."""
    start: int = 0
    """Offset of the block's opening tag in the parsed text."""
    end: int = 0
    """Offset just past the block (its closing tag included)."""
    closed: bool = True
    """Whether the block has its closing tag (False: the text ended inside it)."""


@dataclass
class ParsedTurn:
    """A completion split into reasoning, tool calls and final answer."""

    reasoning: str = ""
    """The text before the first call or answer, stripped."""
    calls: list[ParsedCall] = field(default_factory=list)
    """Every ``<tool_call>`` block, in order (those that did not parse included)."""
    answer: str | None = None
    """The first ``<answer>``'s text, stripped (None when there is none)."""

    @property
    def format_error(self) -> str | None:
        """Why calls did not parse, joined (None when all did)."""
        errors = [c.error for c in self.calls if c.error]
        return "; ".join(errors) if errors else None


_CALL_RE = re.compile(rf"{re.escape(CALL_OPEN)}(.*?)(?:{re.escape(CALL_CLOSE)}|$)", re.S)
_ANSWER_RE = re.compile(rf"{re.escape(ANSWER_OPEN)}(.*?){re.escape(ANSWER_CLOSE)}", re.S | re.I)


def parse_call(raw: str) -> ParsedCall:
    """Read the text between ``<tool_call>`` tags: a JSON object with a string ``name`` and an
    ``arguments`` object (double-encoded arguments are accepted). JSON that tools do not take
    (``interleaf.tools.json_arguments``: NaN, integers past 4300 digits, nesting past 64 levels, lone
    surrogates) is a format error like text that is not JSON."""
    call = ParsedCall(raw=raw)
    try:
        obj = loads(raw.strip())
    except json.JSONDecodeError as exc:
        call.error = f"tool call is not valid JSON ({exc.msg} at char {exc.pos})"
        return call
    except ArgumentsError as exc:
        call.error = f"tool call cannot be used: {exc}"
        return call
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        call.error = 'tool call must be a JSON object with a string "name"'
        return call
    call.name = obj["name"]
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = loads(args)
        except json.JSONDecodeError:
            pass  # a string: refused below
        except ArgumentsError as exc:
            call.error = f"tool call cannot be used: {exc}"
            return call
    if not isinstance(args, dict):
        call.error = f'tool call "arguments" must be a JSON object, got {type(args).__name__}'
        return call
    if (problem := argument_problem(call.name)) is not None:
        call.error = f"tool call cannot be used: field 'name': {problem[1]}"
        return call
    if (problem := argument_problem(args)) is not None:
        call.error = f"tool call cannot be used: field '{problem[0]}': {problem[1]}"
        return call
    call.arguments = args
    return call


def parse_calls(text: str) -> list[ParsedCall]:
    """Every ``<tool_call>`` block of ``text`` in order, with where it sits; one the text ends
    inside is read to the end (``closed=False``)."""
    calls = []
    for m in _CALL_RE.finditer(text):
        call = parse_call(m.group(1))
        call.start, call.end, call.closed = m.start(), m.end(), m.group(0).endswith(CALL_CLOSE)
        calls.append(call)
    return calls


def parse_turn(text: str) -> ParsedTurn:
    """Split a completion into reasoning, tool calls (in order) and the final answer."""
    turn = ParsedTurn()
    first = min((i for i in (text.find(CALL_OPEN), text.lower().find(ANSWER_OPEN)) if i >= 0), default=-1)
    turn.reasoning = (text if first < 0 else text[:first]).strip()
    turn.calls = parse_calls(text)
    if m := _ANSWER_RE.search(text):
        turn.answer = m.group(1).strip()
    return turn


__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "CALL_CLOSE",
    "CALL_OPEN",
    "CALL_TAIL",
    "RESPONSE_CLOSE",
    "RESPONSE_OPEN",
    "TEXT_EBNF",
    "GrammarOptions",
    "ParsedCall",
    "ParsedTurn",
    "ToolSchemaError",
    "answer_ebnf",
    "call_head",
    "call_template",
    "format_answer",
    "format_tool_call",
    "format_tool_responses",
    "parse_call",
    "parse_calls",
    "parse_turn",
    "tool_call_grammar",
    "tools_system_prompt",
]
