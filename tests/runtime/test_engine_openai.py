"""The embedded engine's OpenAI route: grammar, rendering and parsing; then the real model over HTTP
with the official ``openai`` client and LangChain's ``ChatOpenAI``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import xgrammar as xgr
from xgrammar.testing import _is_grammar_accept_string

from interleaf.runtime.engine.openai.hermes import parse_tool_calls, render_prompt, tool_call_ebnf
from interleaf.runtime.engine.openai.protocol import ChatCompletionIn, ToolDef
from interleaf.tools import format_tool_call

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
NOW = {"type": "function", "function": {"name": "now", "description": "The current time"}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def accepts(ebnf: str, text: str) -> bool:
    return _is_grammar_accept_string(xgr.Grammar.from_ebnf(ebnf), text)


# --- logic: grammar, parsing, rendering (no model) ------------------------------------------------


def test_grammar_admits_only_schema_valid_calls_or_text() -> None:
    tools = [ToolDef.model_validate(WEATHER), ToolDef.model_validate(NOW)]
    paris = format_tool_call("get_weather", {"city": "Paris"})
    now = format_tool_call("now", {})
    auto = tool_call_ebnf(tools, only=None, required=False, parallel=True)
    assert accepts(auto, paris) and accepts(auto, paris + now)
    assert accepts(auto, "It is sunny <b>today</b>.")
    assert not accepts(auto, format_tool_call("get_weather", {"town": "Paris"}))  # not the schema's key
    assert not accepts(auto, format_tool_call("get_weather", {}))  # city is required
    assert not accepts(auto, format_tool_call("delete_all", {}))  # not an offered tool
    assert not accepts(auto, "<b>text may not open with a tag</b>")
    required = tool_call_ebnf(tools, only=None, required=True, parallel=False)
    assert accepts(required, now) and not accepts(required, now + now)
    assert not accepts(required, "It is sunny.")
    named = tool_call_ebnf(tools, only="now", required=True, parallel=True)
    assert accepts(named, now) and not accepts(named, paris) and not accepts(named, now + now)


def test_arguments_follow_xgrammars_schema_converter() -> None:
    """The route builds arguments with xgrammar's JSON-schema converter, so the keywords it enforces
    hold (the agents' hand compiler leaves them to the tool's own validation)."""
    params = {"type": "object", "properties": {
        "city": {"type": "string", "pattern": "^[A-Z][a-z]+$"}, "code": {"type": "string", "maxLength": 3},
        "n": {"type": "integer", "minimum": 3}, "note": {"type": "string"}}, "required": ["city"]}  # fmt: skip
    tools = [ToolDef.model_validate({"type": "function", "function": {"name": "f", "parameters": params}}),
             ToolDef.model_validate(NOW),
             ToolDef.model_validate({"type": "function", "function": {"name": "any", "parameters": {}}})]  # fmt: skip
    ebnf = tool_call_ebnf(tools, only=None, required=True, parallel=False)

    def call(name: str, args: str) -> str:
        return f'<tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'

    assert accepts(ebnf, call("f", '{"city": "Paris", "code": "FRA", "n": 3}'))
    assert not accepts(ebnf, call("f", '{"city": "paris"}'))  # pattern
    assert not accepts(ebnf, call("f", '{"city": "Paris", "code": "FRAN"}'))  # maxLength
    assert not accepts(ebnf, call("f", '{"city": "Paris", "n": 2}'))  # minimum
    assert accepts(ebnf, call("f", '{"city": "Paris", "note": "caf\\u00e9"}'))  # json.dumps' \uXXXX escape
    assert accepts(ebnf, call("f", '{"city": "Paris", "n": 123456789012345678901}'))  # no cap on digits
    # No parameters: the empty object only; parameters {} (any value): any object.
    assert accepts(ebnf, call("now", "{}")) and not accepts(ebnf, call("now", '{"x": 1}'))
    assert accepts(ebnf, call("any", '{"x": [1, "y"]}'))


def test_parse_tool_calls_into_openai_shape() -> None:
    text = "Let me look. " + format_tool_call("get_weather", {"city": "Zürich"}) + format_tool_call("x", {})
    content, calls = parse_tool_calls(text, {"get_weather"})
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Zürich"}
    assert content == "Let me look. " + format_tool_call("x", {})  # an unknown tool stays text
    assert parse_tool_calls("<tool_call>{not json</tool_call>", {"x"}) == ("<tool_call>{not json</tool_call>", [])


def test_truncated_tool_call_is_reported_as_a_call_never_as_markup() -> None:
    whole = format_tool_call("get_weather", {"city": "Paris"})
    names = {"get_weather"}
    # cut inside the arguments: a call with the partial arguments text (OpenAI's shape with finish "length")
    content, calls = parse_tool_calls("Sure. " + whole[: whole.index("Paris") + 2], names)
    assert content == "Sure." and [c["function"] for c in calls] == [{"name": "get_weather",
                                                                       "arguments": '{"city": "Pa'}]  # fmt: skip
    # JSON complete, closing tag cut: a complete call (SGLang's and vLLM's parsers read it the same)
    content, calls = parse_tool_calls(whole.removesuffix("</tool_call>"), names)
    assert content is None and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    # cut before the name is complete: dropped, nothing shown as prose
    assert parse_tool_calls("Hm " + whole[:20], names) == ("Hm", [])
    # a complete call followed by a cut one: both reported, in order
    _, calls = parse_tool_calls(whole + whole[:-20], names)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_weather"]
    # arguments complete, cut inside the call's closing brace and tag: a complete call, the JSON alone
    for cut in range(1, len("}</tool_call>")):
        content, calls = parse_tool_calls(whole[:-cut], names)
        assert content is None and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}, cut
    # cut inside the opening tag: a dropped fragment, never content (after a call too)
    for cut in ("<", "<tool_", "<tool_call"):
        assert parse_tool_calls(cut, names) == (None, [])
        assert [c["function"]["name"] for c in parse_tool_calls(whole + cut, names)[1]] == ["get_weather"]
        assert parse_tool_calls(whole + cut, names)[0] is None


class _Template:
    """A stand-in tokenizer that shows what reaches the chat template."""

    def __init__(self, template: str):
        self.chat_template = template
        self.seen: dict[str, Any] = {}

    def apply_chat_template(self, messages: list[dict], tools: Any = None, **kw: Any) -> str:
        self.seen = {"messages": messages, "tools": tools, **kw}
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)


def test_hermes_rendering_of_tools_calls_and_results() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    body = ChatCompletionIn.model_validate({"tools": [WEATHER], "messages": [
        *QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "second"}]},
    ]})  # fmt: skip
    tok = _Template("{% for m in messages %}{{ m['content'] }}{% endfor %}")  # knows nothing of tools
    render_prompt(tok, body)
    msgs = tok.seen["messages"]
    assert tok.seen["tools"] is None and tok.seen["add_generation_prompt"] is True
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert "<tools>\n" + json.dumps(WEATHER) + "\n</tools>" in msgs[0]["content"]
    # The call renders exactly as the grammar makes the model write it (the radix cache can match it).
    assert msgs[2]["content"] == format_tool_call("get_weather", {"city": "Paris"})
    assert accepts(tool_call_ebnf([ToolDef.model_validate(WEATHER)], only=None, required=True, parallel=False),
                   msgs[2]["content"])  # fmt: skip
    assert msgs[3]["content"] == '<tool_response>\n{"temp_c": 18}\n</tool_response>\n<tool_response>\nsecond\n' \
                                 "</tool_response>"  # fmt: skip

    native = _Template("{% if tools %}...{% endif %}")  # a template that renders tools itself
    render_prompt(native, body)
    assert native.seen["tools"] == [WEATHER]
    assert native.seen["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert native.seen["messages"][2] == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_1"}


# --- the real model over HTTP ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(engine_url: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=engine_url + "/v1", api_key="x", timeout=120, max_retries=0)


@pytest.mark.model
def test_models_lists_the_served_model(client: Any, engine_url: str) -> None:
    name = httpx.get(f"{engine_url}/model_info").json()["served_model_name"]
    assert [m.id for m in client.models.list().data] == [name]


@pytest.mark.model
def test_openai_client_tool_exchange_with_cached_tokens(client: Any) -> None:
    first = client.chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER], tool_choice="required",
                                           temperature=0, max_tokens=48)  # fmt: skip
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args["city"], str) and set(args) == {"city"}

    result = {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18, "sky": "sunny"})}
    history = [*QUESTION, choice.message.model_dump(exclude_none=True), result]
    final = client.chat.completions.create(model="m", messages=history, tools=[WEATHER], tool_choice="none",
                                           temperature=0, max_tokens=16)  # fmt: skip
    answer = final.choices[0]
    assert answer.message.tool_calls is None and answer.message.content
    assert answer.finish_reason in ("stop", "length")
    usage = final.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > first.usage.prompt_tokens
    # The second turn re-renders the first as its prefix: the radix cache serves all of it.
    assert usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens


@pytest.mark.model
def test_openai_client_streaming_tool_call_and_text(client: Any) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    stream = client.chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER], tool_choice=named,
                                            temperature=0, max_tokens=48, stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0

    body = {"model": "m", "messages": QUESTION, "temperature": 0, "max_tokens": 12}
    plain = client.chat.completions.create(**body).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**body, stream=True))
    assert streamed == plain and plain


@pytest.mark.model
def test_langchain_chat_openai_tool_exchange(engine_url: str) -> None:
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return json.dumps({"city": city, "temp_c": 18})

    llm = ChatOpenAI(base_url=engine_url + "/v1", api_key="x", model="m", temperature=0, max_tokens=48, max_retries=0)
    messages: list[Any] = [HumanMessage("What is the weather in Paris?")]
    ai = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(messages)
    (call,) = ai.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    messages += [ai, get_weather.invoke(call)]
    final = llm.bind(max_tokens=16).invoke(messages)
    assert isinstance(final.content, str) and final.content and not final.tool_calls
    assert final.usage_metadata["input_token_details"]["cache_read"] > 0


@pytest.mark.model
def test_response_format_json_schema(client: Any) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "What is 2+2? In JSON."}],
                                         temperature=0, max_tokens=24, response_format=fmt)  # fmt: skip
    assert isinstance(json.loads(out.choices[0].message.content)["answer"], int)


@pytest.mark.model
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "user", "content": "a\ud800 b"}]}, "messages[0].content"),
        ({"messages": QUESTION, "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": QUESTION, "stop": 123}, "stop"),
        ({"messages": QUESTION, "min_p": 5}, "min_p"),
        ({"messages": QUESTION, "repetition_penalty": 0}, "repetition_penalty"),
        ({"messages": QUESTION, "seed": 2**70}, "seed"),
        ({"messages": QUESTION, "stop": [""]}, "stop"),
        ({"messages": QUESTION, "temperature": -1}, "temperature"),
        ({"messages": QUESTION, "n": 2}, "n"),
        ({"messages": QUESTION, "tool_choice": "required"}, "tool_choice"),
        ({"messages": QUESTION, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice.function.name"),
        ({"messages": QUESTION, "tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "no-such-type"}}}}}]}, "tools[0].function.parameters"),
        ({"messages": QUESTION, "tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
    ],
)  # fmt: skip
def test_bad_body_is_400_naming_the_field(engine_url: str, body: dict, param: str) -> None:
    raw = json.dumps(body)  # as Python's json writes it: lone surrogates escaped (httpx refuses to encode them)
    r = httpx.post(f"{engine_url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"},
                   timeout=60)  # fmt: skip
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and param.split(".")[0].split("[")[0] in err["message"]
    assert {"message", "type", "param", "code"} <= set(err)


@pytest.mark.model
def test_explicit_null_for_an_optional_field_means_its_default(engine_url: str) -> None:
    """OpenAI's API takes ``null`` for every optional parameter (LiteLLM and others send them); so does ours."""
    optional = "n stop stream temperature top_p logprobs presence_penalty frequency_penalty seed tools tool_choice"
    nulls = dict.fromkeys([*optional.split(), "response_format", "top_k"])
    body = {"messages": QUESTION, "max_tokens": 2, **nulls}
    r = httpx.post(f"{engine_url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 2
    body = {"prompt": "1+1=", "max_tokens": None, "echo": None, "temperature": 0, "stop": None}
    r = httpx.post(f"{engine_url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 16, r.text  # the default, 16
    r = httpx.post(f"{engine_url}/v1/chat/completions", json={"messages": None}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"  # required stays required


@pytest.mark.model
def test_openai_client_raises_bad_request(client: Any) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=QUESTION, max_tokens=0)
    assert "max_tokens" in str(info.value)


@pytest.mark.model
@pytest.mark.slow
def test_cached_tokens_only_with_cache_report() -> None:
    """SGLang's defaults leave ``--enable-cache-report`` off: usage then has no prompt_tokens_details."""
    from tests.conftest import start_engine, stop_process

    proc, url = start_engine("--sglang-defaults", "--max-total-tokens", "1024")
    try:
        body = {"messages": QUESTION, "temperature": 0, "max_tokens": 1}
        usage = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()["usage"]
        assert usage["completion_tokens"] == 1 and "prompt_tokens_details" not in usage
    finally:
        stop_process(proc)
