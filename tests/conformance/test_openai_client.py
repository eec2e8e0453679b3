"""The official ``openai`` client against the embedded engine (real model, real HTTP): every surface the
issue names — chat, streaming, tools (auto / required / named), json_schema, completions, models."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.model

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(engine_url: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=engine_url + "/v1", api_key="x", timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def model(client: Any) -> str:
    return client.models.list().data[0].id


def test_models_list_and_retrieve(client: Any, model: str) -> None:
    import openai

    card = client.models.retrieve(model)
    assert card.id == model and card.model_extra["root"] == model and card.model_extra["max_model_len"] == 8192
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found" and "no-such-model" in info.value.message


def test_chat_plain_and_streamed_agree(client: Any, model: str) -> None:
    kw = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0}
    whole = client.chat.completions.create(**kw)
    assert whole.choices[0].message.role == "assistant" and whole.choices[0].message.content
    assert whole.usage.completion_tokens == 8 and whole.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["required", "named"],
)
def test_tool_choice_required_and_named_give_a_valid_call(client: Any, model: str, choice: Any) -> None:
    r = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice,
                                       max_tokens=40, temperature=0)  # fmt: skip
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and calls
    if isinstance(choice, dict):
        assert [c.function.name for c in calls] == ["get_weather"]
    for call in calls:
        args = json.loads(call.function.arguments)
        assert call.id.startswith("call_")
        assert set(args) == ({"city"} if call.function.name == "get_weather" else set())


def test_tool_choice_auto_stream_assembles_the_same_calls(client: Any, model: str) -> None:
    kw = {"model": model, "messages": ASK, "tools": [WEATHER], "tool_choice": "auto", "max_tokens": 40,
          "temperature": 0, "seed": 1}  # fmt: skip
    whole = client.chat.completions.create(**kw).choices[0]
    calls: dict[int, dict[str, str]] = {}
    content, finish = "", None
    for chunk in client.chat.completions.create(**kw, stream=True):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            slot["name"] += tc.function.name or ""
            slot["arguments"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == whole.finish_reason
    assert [c["name"] for c in calls.values()] == [c.function.name for c in whole.message.tool_calls or []]
    assert (content or None) == whole.message.content


def test_truncated_tool_call_is_a_call_with_partial_arguments(client: Any, model: str) -> None:
    """max_tokens cuts the call inside its arguments: no markup in content; the call is reported with
    the arguments written so far and finish_reason "length" (OpenAI's behaviour; SGLang and vLLM stream
    the same)."""
    head = client.post("/tokenize", body={"prompt": '<tool_call>{"name": "get_weather", "arguments": '},
                       cast_to=object)["count"]  # fmt: skip
    kw = {"model": model, "messages": ASK, "tools": [WEATHER], "tool_choice": "required", "max_tokens": head + 2,
          "temperature": 0}  # fmt: skip
    r = client.chat.completions.create(**kw).choices[0]
    assert r.finish_reason == "length" and not r.message.content
    (call,) = r.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)
    streamed = list(client.chat.completions.create(**kw, stream=True))
    assert "<tool_call>" not in "".join(c.choices[0].delta.content or "" for c in streamed)
    args = "".join(tc.function.arguments or "" for c in streamed for tc in c.choices[0].delta.tool_calls or [])
    assert args == call.function.arguments and streamed[-1].choices[0].finish_reason == "length"


def test_json_schema_response_format(client: Any, model: str) -> None:
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20}},
              "required": ["capital"], "additionalProperties": False}  # fmt: skip
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "The capital of France, as JSON."}], max_tokens=24,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )  # fmt: skip
    assert set(json.loads(r.choices[0].message.content)) == {"capital"}


def test_completions_text_ids_batch_stream_and_usage(client: Any, model: str) -> None:
    r = client.completions.create(model=model, prompt="The capital of France is", max_tokens=4, temperature=0)
    (choice,) = r.choices
    assert r.object == "text_completion" and choice.text and choice.finish_reason == "length"
    assert r.usage.completion_tokens == 4 and r.usage.total_tokens == r.usage.prompt_tokens + 4
    ids = client.post("/tokenize", body={"prompt": "The capital of France is"}, cast_to=object)["tokens"]
    same = client.completions.create(model=model, prompt=ids, max_tokens=4, temperature=0)
    assert same.choices[0].text == choice.text  # a token-id prompt is the same prompt
    batch = client.completions.create(model=model, prompt=["One, two,", "Red, green,"], max_tokens=2, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1] and batch.usage.completion_tokens == 4
    echo = client.completions.create(model=model, prompt="Hi", max_tokens=1, temperature=0, echo=True)
    assert echo.choices[0].text.startswith("Hi")
    chunks = list(
        client.completions.create(
            model=model,
            prompt="The capital of France is",
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert chunks[-1].usage.completion_tokens == 4
    stopped = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=["7"])
    assert "7" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"


def test_completions_bad_request_names_the_field(client: Any, model: str) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt=[10**9], max_tokens=1)
    assert "prompt[0]" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt="x", suffix="y", max_tokens=1)
    assert "suffix" in info.value.message
