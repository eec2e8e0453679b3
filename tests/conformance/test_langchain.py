"""LangChain's ``ChatOpenAI`` and LangGraph's ``create_react_agent`` against the embedded engine's OpenAI
route (real model, real HTTP): invoke, stream, ``bind_tools``, ``with_structured_output``, a ReAct loop."""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def llm(engine_url: str) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=engine_url + "/v1", api_key="x", model="SmolLM2-135M-Instruct", temperature=0,
                      max_tokens=12, max_retries=0, timeout=120, stream_usage=True)  # fmt: skip


def weather_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return json.dumps({"city": city, "temp_c": 18})

    return get_weather


def test_invoke_and_stream_agree(llm: Any) -> None:
    whole = llm.invoke("Say hello.")
    assert isinstance(whole.content, str) and whole.content
    assert whole.usage_metadata["output_tokens"] == 12
    chunks = list(llm.stream("Say hello."))
    assert "".join(c.content for c in chunks) == whole.content
    assert sum((c.usage_metadata or {}).get("output_tokens", 0) for c in chunks) == 12


def test_bind_tools_call_then_answer_with_cache_hit(llm: Any) -> None:
    from langchain_core.messages import HumanMessage

    get_weather = weather_tool()
    messages: list[Any] = [HumanMessage("What is the weather in Paris?")]
    ai = llm.bind_tools([get_weather], tool_choice="get_weather").bind(max_tokens=48).invoke(messages)
    (call,) = ai.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str) and not ai.invalid_tool_calls
    messages += [ai, get_weather.invoke(call)]
    final = llm.invoke(messages)
    assert final.content and not final.tool_calls
    assert final.usage_metadata["input_token_details"]["cache_read"] > 0


def test_truncated_tool_call_is_an_invalid_call_not_prose(llm: Any, engine_url: str) -> None:
    """max_tokens cuts the call: LangChain sees an invalid tool call (partial arguments), never markup as text."""
    head = '<tool_call>{"name": "get_weather", "arguments": '
    cut = httpx.post(f"{engine_url}/tokenize", json={"prompt": head}).json()["count"] + 2  # inside the arguments
    ai = llm.bind_tools([weather_tool()], tool_choice="required").bind(max_tokens=cut).invoke("Weather in Paris?")
    assert "<tool_call>" not in ai.content and ai.response_metadata["finish_reason"] == "length"
    assert [c["name"] for c in ai.invalid_tool_calls] == ["get_weather"] and not ai.tool_calls


class Capital(BaseModel):
    """The capital city of a country."""

    country: str = Field(description="the country", max_length=24)
    capital: str = Field(description="its capital city", max_length=24)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output(llm: Any, method: str) -> None:
    structured = llm.model_copy(update={"max_tokens": 64}).with_structured_output(Capital, method=method)
    out = structured.invoke("What is the capital of France?")
    assert isinstance(out, Capital) and out.country and out.capital


def test_langgraph_react_agent_calls_the_tool_and_answers(llm: Any) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    with warnings.catch_warnings():  # create_react_agent is deprecated for langchain.agents.create_agent
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    get_weather = weather_tool()

    def model(state: dict[str, Any], runtime: Any) -> Any:
        # SmolLM2-135M does not decide to call tools unaided: require the call on the user's turn and
        # forbid it after the tool answered, so the loop runs call -> tool -> answer every time.
        first = isinstance(state["messages"][-1], HumanMessage)
        return llm.bind_tools([get_weather], tool_choice="required" if first else "none").bind(max_tokens=40)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = create_react_agent(model, [get_weather])
    result = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]}, {"recursion_limit": 6})
    kinds = [type(m) for m in result["messages"]]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    call, answer = result["messages"][1].tool_calls[0], result["messages"][2]
    assert call["name"] == "get_weather" and answer.tool_call_id == call["id"] and '"temp_c": 18' in answer.content
    assert result["messages"][3].content and not result["messages"][3].tool_calls
