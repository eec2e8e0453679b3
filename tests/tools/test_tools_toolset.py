"""The error taxonomy as the model and the episode see it, through ``Toolset.call``."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from interleaf.tools import (
    ToolContext,
    ToolError,
    ToolInfraError,
    ToolResult,
    Toolset,
    UnknownToolError,
    tool,
)


@tool
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


@tool
def refuse(reason: str) -> str:
    """Always fails in a way the model can act on."""
    raise ToolError(f"cannot do that: {reason}")


@tool
def buggy() -> str:
    """A tool with a bug."""
    raise KeyError("missing")


@tool(timeout_s=0.2)
async def sleepy(seconds: float) -> str:
    """Sleep."""
    await asyncio.sleep(seconds)
    return "awake"


_release = threading.Event()


@tool(timeout_s=0.2)
def blocking() -> str:
    """A sync tool that blocks its worker thread."""
    _release.wait(5)
    return "done"


@tool(max_output_tokens=10)
def chatty(n: int) -> str:
    """Long output."""
    return "word " * n


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(episode_id="ep", scratch_dir=tmp_path)


@pytest.fixture
def ts() -> Toolset:
    return Toolset([add, refuse, buggy, sleepy, blocking, chatty])


async def test_success_with_dict_and_json_string(ts, ctx):
    assert (await ts.call("add", {"a": 1}, ctx)).content == "3"
    res = await ts.call("add", '{"a": 1, "b": 5}', ctx)
    assert isinstance(res, ToolResult)
    assert (res.content, res.is_error, res.error_type, res.truncated, res.attempts) == ("6", False, None, False, 1)


async def test_unknown_tool_lists_available(ts, ctx):
    res = await ts.call("sub", {"a": 1}, ctx)
    assert res.is_error and res.error_type == "UnknownToolError"
    assert "Unknown tool 'sub'" in res.content and "add, refuse" in res.content
    with pytest.raises(UnknownToolError, match="Unknown tool 'sub'"):
        ts.get("sub")


async def test_non_json_string_names_problem(ts, ctx):
    res = await ts.call("add", '{"a": 1,', ctx)
    assert res.is_error and res.error_type == "ToolArgumentError"
    assert "not valid JSON" in res.content and "'{\"a\": 1,'" in res.content


async def test_json_that_is_not_an_object(ts, ctx):
    res = await ts.call("add", "[1, 2]", ctx)
    assert res.error_type == "ToolArgumentError" and "must be a JSON object, got list" in res.content


async def test_validation_error_names_field_and_value(ts, ctx):
    res = await ts.call("add", {"a": "seven", "c": 1}, ctx)
    assert res.error_type == "ToolArgumentError"
    assert "field 'a'" in res.content and "'seven'" in res.content
    assert "field 'c': unexpected argument" in res.content and "allowed: a, b" in res.content
    missing = await ts.call("add", {}, ctx)
    assert "field 'a': required but missing" in missing.content


async def test_tool_error_shown_verbatim(ts, ctx):
    res = await ts.call("refuse", {"reason": "no"}, ctx)
    assert (res.content, res.is_error, res.error_type) == ("cannot do that: no", True, "ToolError")


async def test_unexpected_exception_is_infrastructure(ts, ctx):
    with pytest.raises(ToolInfraError) as info:
        await ts.call("buggy", {}, ctx)
    assert info.value.tool == "buggy" and "KeyError" in info.value.reason


async def test_async_timeout(ts, ctx):
    res = await ts.call("sleepy", {"seconds": 5}, ctx)
    assert res.error_type == "ToolTimeout" and "0.2 s timeout" in res.content


async def test_sync_timeout_does_not_block_the_loop(ts, ctx):
    try:
        res = await ts.call("blocking", {}, ctx)
    finally:
        _release.set()
    assert res.error_type == "ToolTimeout"


async def test_deadline_caps_the_timeout(ctx):
    ctx.deadline = time.monotonic() + 0.05

    @tool(timeout_s=10)
    async def wait() -> str:
        """Wait."""
        await asyncio.sleep(5)
        return ""

    res = await Toolset([wait]).call("wait", {}, ctx)
    assert res.error_type == "ToolTimeout" and "episode deadline" in res.content
    ctx.deadline = time.monotonic() - 1
    res = await Toolset([wait]).call("wait", {}, ctx)
    assert res.error_type == "ToolTimeout" and res.attempts == 1 and "deadline has passed" in res.content


async def test_retries_after_infrastructure_failure(ctx):
    calls = []

    @tool(retries=2)
    def flaky() -> str:
        """Fails twice, then works."""
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("transient")
        return "ok"

    res = await Toolset([flaky]).call("flaky", {}, ctx)
    assert (res.content, res.attempts) == ("ok", 3)


async def test_tool_error_is_not_retried(ctx):
    calls = []

    @tool(retries=3)
    def no() -> str:
        """Refuses."""
        calls.append(1)
        raise ToolError("no")

    res = await Toolset([no]).call("no", {}, ctx)
    assert res.is_error and len(calls) == 1


async def test_truncation_marker_with_fallback_counter(ts, ctx):
    res = await ts.call("chatty", {"n": 100}, ctx)
    assert res.truncated
    kept, marker = res.content.split("\n[... truncated: ")
    assert len(kept) == 40  # 10 tokens at ~4 chars each
    assert marker == f"{(500 - 40 + 3) // 4} more tokens]"


async def test_truncation_uses_the_models_counter(ts, tmp_path):
    ctx = ToolContext(episode_id="ep", scratch_dir=tmp_path, count_tokens=lambda s: len(s.split()))
    res = await ts.call("chatty", {"n": 25}, ctx)
    assert res.content.startswith("word " * 9 + "word")
    assert res.content.endswith("[... truncated: 15 more tokens]")
    short = await ts.call("chatty", {"n": 3}, ctx)
    assert not short.truncated and short.content == "word word word "


async def test_call_many_keeps_order(ts, ctx):
    results = await ts.call_many([("add", {"a": 1}), ("nope", {}), ("add", '{"a": 10}')], ctx)
    assert [r.content for r in results][0::2] == ["3", "12"]
    assert results[1].error_type == "UnknownToolError"


def test_registry_basics(ts):
    assert ts.names == ["add", "refuse", "buggy", "sleepy", "blocking", "chatty"]
    assert ts.get("add") is add and "add" in ts and len(ts) == 6
    assert ts.schemas()[0] == add.openai_schema()
    with pytest.raises(ValueError, match="duplicate tool name 'add'"):
        Toolset([add, add])
