"""The OpenAI chat API's request bodies as the embedded engine accepts them (OpenAI's field names;
SGLang's sampling extras too). Unknown keys are ignored, as OpenAI-compatible servers do."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        """An explicit ``null`` for an optional field means its default, as OpenAI's API takes it (clients such
        as LiteLLM send ``"stop": null``, ``"n": null``); a required field's ``null`` is still refused."""
        if not isinstance(data, dict) or None not in data.values():
            return data
        fields = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None or key not in fields or fields[key].is_required()
        }


class FunctionDef(_In):
    """A function offered to the model."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """Tool name: letters, digits, ``_``, ``-``, ``.``; at most 64 characters (OpenAI's rule)."""
    description: str | None = None
    """What the function does, shown to the model."""
    parameters: dict[str, Any] | None = None
    """JSON schema of the arguments object; None means the tool takes no arguments."""
    strict: bool | None = None
    """OpenAI's strict-schema flag; accepted and ignored (the grammar always enforces the schema)."""


class ToolDef(_In):
    """One entry of ``tools``."""

    type: Literal["function"] = "function"
    """The only tool type: a function."""
    function: FunctionDef
    """The function offered."""


class FunctionCallIn(_In):
    """The function an earlier assistant turn called."""

    name: str
    """The function's name."""
    arguments: str | dict[str, Any] = "{}"
    """The arguments: a JSON object string (OpenAI's form) or the object itself."""


class ToolCallIn(_In):
    """A tool call of an earlier assistant turn (``messages[i].tool_calls[j]``)."""

    id: str | None = None
    """The call's id, which the tool message answering it quotes as ``tool_call_id``."""
    type: Literal["function"] = "function"
    """The only call type: a function call."""
    function: FunctionCallIn
    """The function called and its arguments."""


class MessageIn(_In):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    """Who speaks; ``developer`` renders as ``system``."""
    content: str | list[dict[str, Any]] | None = None
    """The text, or a list of ``{"type": "text", "text": ...}`` parts (other part types are refused)."""
    name: str | None = None
    """Optional participant name, passed on to templates that render tools themselves."""
    tool_calls: list[ToolCallIn] | None = None
    """An assistant message's tool calls."""
    tool_call_id: str | None = None
    """A tool message's answer to this call id."""


class FunctionName(_In):
    """Names a function."""

    name: str
    """The function's name."""


class NamedToolChoice(_In):
    """``tool_choice`` forcing one call of one function."""

    type: Literal["function"] = "function"
    """The only choice type: a function."""
    function: FunctionName
    """The function that must be called."""


class JsonSchemaFormat(_In):
    """``response_format.json_schema``: the schema the reply must match."""

    name: str = "response"
    """The schema's name (informational)."""
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    """The JSON schema; required with ``response_format.type="json_schema"``."""
    strict: bool | None = None
    """OpenAI's strict flag; accepted and ignored (the grammar always enforces the schema)."""


class ResponseFormat(_In):
    """``response_format``: plain text, any JSON object, or JSON matching a schema."""

    type: Literal["text", "json_object", "json_schema"]
    """What the reply must be."""
    json_schema: JsonSchemaFormat | None = None
    """The schema, for ``type="json_schema"``."""


class StreamOptions(_In):
    """``stream_options``."""

    include_usage: bool = False
    """Send a last chunk with ``usage`` (and no choices) before ``[DONE]``."""


class ChatCompletionIn(_In):
    """Body of ``POST /v1/chat/completions`` (OpenAI's names; SGLang's sampling extras accepted)."""

    model: str | None = None
    """Ignored: the engine serves one model."""
    messages: list[MessageIn] = Field(min_length=1)
    """The conversation so far, rendered by the model's chat template."""
    tools: list[ToolDef] | None = None
    """Functions the model may call; their names must be unique."""
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    """``auto`` (default): text or calls; ``none``: no calls; ``required``: calls only; a named
    function: exactly one call of it."""
    parallel_tool_calls: bool = True
    """Whether several calls may follow each other in one reply."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature (default 1; 0 is greedy)."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    """Nucleus sampling mass (default 1)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Cap on generated tokens (default: the rest of the context)."""
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """OpenAI's newer name for ``max_tokens``; wins when both are given."""
    stop: str | list[str] | None = None
    """Stop strings; generation ends before them."""
    seed: int | None = None
    """Sampling seed, for reproducible sampling."""
    n: int = 1
    """Choices per request; only 1 is supported."""
    stream: bool = False
    """Reply as server-sent ``chat.completion.chunk`` events."""
    stream_options: StreamOptions | None = None
    """Options of the stream."""
    response_format: ResponseFormat | None = None
    """Constrain the reply to JSON (not combinable with tools unless ``tool_choice="none"``)."""
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    """Penalty per earlier occurrence of a token in the output."""
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    """Penalty once a token occurred in the output."""
    logprobs: bool = False
    """Refused when true: use ``/generate`` for logprobs."""
    top_k: int = -1
    """SGLang's extra: sample among the k likeliest tokens (-1: all)."""
    min_p: float = 0.0
    """SGLang's extra: drop tokens below this fraction of the likeliest one's probability."""
    repetition_penalty: float = 1.0
    """SGLang's extra: multiplicative penalty on tokens already in the output (1: none)."""
    ignore_eos: bool = False
    """SGLang's extra: keep generating past the end-of-sequence token (load tests use it)."""


class CompletionIn(_In):
    """Body of ``POST /v1/completions`` (OpenAI's legacy text completions; SGLang's sampling extras too)."""

    model: str | None = None
    """Ignored: the engine serves one model."""
    prompt: str | list[str] | list[int] | list[list[int]]
    """A text, token ids, or a batch of either (one choice per prompt, ``index`` in order)."""
    max_tokens: int = Field(default=16, ge=0)
    """Cap on generated tokens (OpenAI's and SGLang's default: 16)."""
    temperature: float = Field(default=1.0, ge=0, le=2)
    """Sampling temperature (0 is greedy)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass."""
    n: int = 1
    """Choices per prompt; only 1 is supported."""
    stream: bool = False
    """Reply as server-sent ``text_completion`` chunks (one prompt only)."""
    stream_options: StreamOptions | None = None
    """Options of the stream."""
    stop: str | list[str] | None = None
    """Stop strings; generation ends before them."""
    seed: int | None = None
    """Sampling seed, for reproducible sampling."""
    echo: bool = False
    """Prepend the prompt to the returned text."""
    logprobs: int | None = None
    """Refused when set: use ``/generate`` with ``return_logprob`` for logprobs."""
    suffix: str | None = None
    """Refused when set: the engine does no fill-in-the-middle."""
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    """Penalty per earlier occurrence of a token in the output."""
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    """Penalty once a token occurred in the output."""
    user: str | None = None
    """Ignored (an end-user id for the provider's abuse monitoring)."""
    top_k: int = -1
    """SGLang's extra: sample among the k likeliest tokens (-1: all)."""
    min_p: float = 0.0
    """SGLang's extra: drop tokens below this fraction of the likeliest one's probability."""
    repetition_penalty: float = 1.0
    """SGLang's extra: multiplicative penalty on tokens already in the output (1: none)."""
    stop_token_ids: list[int] | None = None
    """SGLang's extra: token ids that end generation."""
    ignore_eos: bool = False
    """SGLang's extra: keep generating past the end-of-sequence token (load tests use it)."""
    skip_special_tokens: bool = True
    """SGLang's extra: leave special tokens out of the text."""
    json_schema: str | None = None
    """SGLang's extra: constrain the text to JSON matching this schema (a JSON string)."""
    regex: str | None = None
    """SGLang's extra: constrain the text to this regular expression."""
    ebnf: str | None = None
    """SGLang's extra: constrain the text to this EBNF grammar."""


__all__ = [
    "ChatCompletionIn",
    "CompletionIn",
    "FunctionCallIn",
    "FunctionDef",
    "FunctionName",
    "JsonSchemaFormat",
    "MessageIn",
    "NamedToolChoice",
    "ResponseFormat",
    "StreamOptions",
    "ToolCallIn",
    "ToolDef",
]
