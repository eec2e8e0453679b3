"""Request bodies of the SGLang HTTP protocol, validated; errors name the field and value."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from interleaf.text import surrogate_problem


class SamplingParamsIn(BaseModel):
    """``sampling_params`` of ``/generate`` (SGLang names; unknown keys ignored)."""

    model_config = ConfigDict(extra="ignore")

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    no_stop_trim: bool = False
    json_schema: str | None = None
    regex: str | None = None
    ebnf: str | None = None
    sampling_seed: int | None = None
    n: int = 1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema_as_text(cls, v: Any) -> Any:
        return json.dumps(v) if isinstance(v, dict) else v


class SessionParamsIn(BaseModel):
    """``session_params`` of ``/generate`` for a streaming-session turn."""

    model_config = ConfigDict(extra="ignore")

    id: str
    rid: str | None = None
    offset: int | None = None
    replace: bool | None = None
    drop_previous_output: bool | None = None


class GenerateIn(BaseModel):
    """Body of ``POST /generate``."""

    model_config = ConfigDict(extra="ignore")

    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: SamplingParamsIn | None = None
    stream: bool = False
    rid: str | None = None
    return_logprob: bool = False
    logprob_start_len: int = -1
    """With ``return_logprob``: the first prompt position whose logprob to return in
    ``meta_info.input_token_logprobs`` (-1: none, output tokens only). As SGLang: that first entry's
    logprob is null, and the prompt from there on is recomputed rather than read from the cache."""
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool = False
    """Make each logprob entry ``[logprob, token_id, token_text]`` instead of ``[..., null]``."""
    return_hidden_states: bool = False
    hidden_states_layers: list[int] | None = None
    """interleaf extension: decoder layers to return (default: the last)."""
    hidden_states_last_k: int | None = None
    """interleaf extension: how many trailing positions to return (default 3)."""
    session_params: SessionParamsIn | None = None
    session_id: str | None = None
    priority: int | None = None
    """Scheduling priority, larger first (SGLang's default order), when the server runs with
    ``enable_priority_scheduling``; ignored otherwise. None counts as 0."""


class OpenSessionIn(BaseModel):
    """Body of ``POST /open_session``."""

    model_config = ConfigDict(extra="ignore")

    capacity_of_str_len: int = 0
    streaming: bool = False
    timeout: float | None = None
    session_id: str | None = None


class TokenizeIn(BaseModel):
    """Body of ``POST /tokenize`` (and ``/v1/tokenize``): text to token ids."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    """Ignored: the engine serves one model."""
    prompt: str | list[str]
    """The text, or a list of texts (then ``tokens`` and ``count`` are lists too)."""
    add_special_tokens: bool = True
    """Whether the tokenizer adds its special tokens (BOS, ...), as SGLang's default."""


class DetokenizeIn(BaseModel):
    """Body of ``POST /detokenize`` (and ``/v1/detokenize``): token ids to text."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    """Ignored: the engine serves one model."""
    tokens: list[int] | list[list[int]]
    """Token ids, or a list of id lists (then ``text`` is a list)."""
    skip_special_tokens: bool = True
    """Leave special tokens (EOS, padding) out of the text."""


class CloseSessionIn(BaseModel):
    """Body of ``POST /close_session``."""

    model_config = ConfigDict(extra="ignore")

    session_id: str


class AbortIn(BaseModel):
    """Body of ``POST /abort_request``."""

    model_config = ConfigDict(extra="ignore")

    rid: str = ""
    abort_all: bool = False


class BadRequest(ValueError):
    """A 400 answer: ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def unicode_text(text: str, field: str) -> str:
    """``text``, or BadRequest naming ``field`` when it holds a lone UTF-16 surrogate (JSON can carry one as
    ``\\ud800``; no tokenizer can encode it)."""
    problem = surrogate_problem(text)
    if problem is not None:
        raise BadRequest(f"{field}: not valid Unicode: {problem}; send the text as valid UTF-8", field)
    return text
