"""The error taxonomy as the model and the episode see it, through ``Toolset.call``."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import pytest

from interleaf.tools import (
    Tool,
    ToolContext,
    ToolError,
    ToolInfraError,
    ToolResult,
    Toolset,
    UnknownToolError,
    tool,
)
from interleaf.tools.output import truncate_tokens


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
    head, marker, tail = res.content.split("\n")
    assert len(head) == len(tail) == 20  # 10 tokens at ~4 chars each: the first 5 and the last 5
    assert marker == f"[... truncated: {(500 + 3) // 4 - 10} tokens left out ...]"


async def test_truncation_uses_the_models_counter(ts, tmp_path):
    ctx = ToolContext(episode_id="ep", scratch_dir=tmp_path, count_tokens=lambda s: len(s.split()))
    res = await ts.call("chatty", {"n": 25}, ctx)
    assert res.content == "word " * 5 + "\n[... truncated: 15 tokens left out ...]\n" + " word" * 5 + " "
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


# --- sync tools' threads --------------------------------------------------------------------------


async def test_abandoned_sync_tools_do_not_starve_other_tools(ctx):
    """More hung sync tools than the loop's default pool has workers, then a quick sync tool: it runs."""
    release = threading.Event()

    @tool(timeout_s=0.05)
    def hang() -> str:
        """Blocks until released."""
        release.wait(30)
        return "released"

    ts = Toolset([hang, add])
    try:
        hung = await asyncio.gather(*(ts.call("hang", {}, ctx) for _ in range(40)))
        assert all(r.error_type == "ToolTimeout" for r in hung)
        assert "was abandoned (its thread cannot be stopped and runs on)" in hung[0].content
        started = time.monotonic()
        quick = await ts.call("add", {"a": 1}, ctx)
        assert (quick.content, quick.is_error) == ("3", False) and time.monotonic() - started < 1
    finally:
        release.set()


async def test_an_async_tool_past_its_timeout_is_said_to_be_stopped(ts, ctx):
    res = await ts.call("sleepy", {"seconds": 5}, ctx)
    assert "and was stopped." in res.content


# --- retries --------------------------------------------------------------------------------------


async def test_retries_after_a_timeout_back_off(ctx):
    calls = []

    @tool(timeout_s=0.05, retries=2)
    async def slow() -> str:
        """Always too slow."""
        calls.append(time.monotonic())
        await asyncio.sleep(1)
        return ""

    res = await Toolset([slow]).call("slow", {}, ctx)
    assert res.error_type == "ToolTimeout" and res.attempts == 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # Each attempt times out after 0.05 s, then waits 0.1 s, then 0.2 s.
    assert gaps[0] >= 0.05 + 0.1 and gaps[1] >= 0.05 + 0.2, gaps


async def test_no_retry_after_the_episode_deadline(ctx):
    @tool(timeout_s=5, retries=3)
    async def wait() -> str:
        """Wait."""
        await asyncio.sleep(5)
        return ""

    ctx.deadline = time.monotonic() + 0.1
    res = await Toolset([wait]).call("wait", {}, ctx)
    assert res.error_type == "ToolTimeout" and res.attempts == 1 and "episode deadline" in res.content


# --- arguments no tool can take -------------------------------------------------------------------


@tool
def echo(x: object = None) -> str:
    """Say what came in."""
    return repr(x)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"x": ' + "[" * 1000 + "]" * 1000 + "}", "nested too deeply: the limit is 64 levels"),
        ('{"x": ' + "[" * 70 + "]" * 70 + "}", "field 'x.0.0.0...."),
        ('{"x": [1' + "0" * 4300 + "]}", "the integer 10000000000000000000... has 4301 digits; the limit is 4300"),
        ('{"x": NaN}', "NaN is not a JSON number"),
        ('{"x": -Infinity}', "-Infinity is not a JSON number"),
        ('{"x": 1e309}', "the number 1e309 is out of range"),
        ('{"x": "a\\ud800b"}', "field 'x': the string holds a lone surrogate U+D800 at index 1"),
        ({"x": {"y": ["ok", "\udc80"]}}, "field 'x.y.1': the string holds a lone surrogate"),
        ({"x": float("nan")}, "field 'x': nan is not a JSON number"),
        ({"x": [[[]]] * 2, "\ud800": 1}, "the key '\\ud800' holds a lone surrogate"),
    ],
)
async def test_arguments_no_tool_can_take_are_argument_errors(ctx, arguments, expected):
    res = await Toolset([echo]).call("echo", arguments, ctx)
    assert res.error_type == "ToolArgumentError", res
    assert expected in res.content
    res.model_dump_json()  # and the result itself can be written out


async def test_a_deep_call_within_the_limit_runs(ctx):
    res = await Toolset([echo]).call("echo", '{"x": ' + "[" * 60 + "]" * 60 + "}", ctx)
    assert not res.is_error and res.content.startswith("[[[")


# --- rendering what a tool returns ----------------------------------------------------------------


@tool
def returns(kind: str) -> object:
    """Return something awkward."""
    return {
        "huge": 10**5000,
        "nan": {"v": float("nan"), "w": [float("inf"), -float("inf"), 1.5]},
        "surrogate": "a\ud800b",
        "keys": {(1, 2): "tuple key", 3: "int key"},
        "enormous": 1 << 1_000_000,
    }[kind]


async def test_awkward_return_values_render_as_text(ctx):
    ts = Toolset([returns])
    huge = await ts.call("returns", {"kind": "huge"}, ctx)
    assert not huge.is_error and huge.content.startswith("1000") and huge.truncated
    nan = await ts.call("returns", {"kind": "nan"}, ctx)
    assert json.loads(nan.content) == {"v": "NaN", "w": ["Infinity", "-Infinity", 1.5]}
    surrogate = await ts.call("returns", {"kind": "surrogate"}, ctx)
    assert surrogate.content == "a\ufffdb" and json.loads(surrogate.model_dump_json())["content"] == "a\ufffdb"
    keys = await ts.call("returns", {"kind": "keys"}, ctx)
    assert json.loads(keys.content) == {"[1, 2]": "tuple key", "3": "int key"}
    enormous = await ts.call("returns", {"kind": "enormous"}, ctx)
    assert enormous.content == "<an integer of about 301030 digits, too long to write out>"


async def test_a_value_that_cannot_be_shown_is_an_infrastructure_error_naming_the_tool(ctx):
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    @tool
    def odd() -> object:
        """Returns an object whose str() raises."""
        return Unprintable()

    with pytest.raises(ToolInfraError, match="tool 'odd' returned a Unprintable that cannot be shown as text"):
        await Toolset([odd]).call("odd", {}, ctx)


# --- capping output -------------------------------------------------------------------------------


async def test_error_results_are_capped_keeping_their_end(ctx):
    @tool(max_output_tokens=20)
    def loud() -> str:
        """Fails with a long message whose end matters."""
        raise ToolError("noise " * 1000 + "THE REASON")

    res = await Toolset([loud]).call("loud", {}, ctx)
    assert res.is_error and res.truncated and res.content.endswith("THE REASON")
    assert res.content.startswith("noise ") and "tokens left out" in res.content


def test_truncation_counts_bounded_windows_of_a_huge_text():
    counted: list[int] = []

    def count(text: str) -> int:
        counted.append(len(text))
        return (len(text) + 3) // 4

    text = "x" * 5_000_000
    kept, truncated = truncate_tokens(text, 100, count)
    assert truncated and max(counted) <= 100 * 16 and len(counted) < 40
    head, marker, tail = kept.split("\n")
    assert (len(head), len(tail)) == (200, 200) and marker == "[... truncated: about 1249900 tokens left out ...]"


# --- order of one turn's calls ---------------------------------------------------------------------


async def test_call_many_runs_serial_calls_in_the_given_order(ctx):
    order: list[str] = []

    def recorder(label: str, *, safe: bool) -> Tool:
        async def run() -> str:
            order.append(f"{label} start")
            await asyncio.sleep(0.01)
            order.append(f"{label} end")
            return label

        run.__doc__ = "Record."
        return tool(run, name=label, parallel_safe=safe)

    ts = Toolset([recorder("s1", safe=False), recorder("p1", safe=True), recorder("p2", safe=True),
                  recorder("s2", safe=False)])  # fmt: skip
    results = await ts.call_many([("s1", {}), ("p1", {}), ("p2", {}), ("s2", {}), ("p1", {})], ctx)
    assert [r.content for r in results] == ["s1", "p1", "p2", "s2", "p1"]
    assert order[:2] == ["s1 start", "s1 end"]
    assert set(order[2:6]) == {"p1 start", "p2 start", "p1 end", "p2 end"} and order[2:4] == ["p1 start", "p2 start"]
    assert order[6:] == ["s2 start", "s2 end", "p1 start", "p1 end"]


async def test_past_the_thread_limit_a_sync_call_ends_the_episode_naming_the_cause(ctx, monkeypatch):
    from interleaf.tools import worker_threads

    monkeypatch.setattr(worker_threads, "MAX_THREADS", worker_threads.live_threads())
    with pytest.raises(ToolInfraError, match=r"no worker thread for 'add': \d+ are alive \(the limit is \d+\)"):
        await Toolset([add]).call("add", {"a": 1}, ctx)
