"""MCP both ways, with real processes: a third-party server through interleaf's adapter, and an
interleaf toolset served to the official MCP client over stdio and streamable HTTP (127.0.0.1)."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from interleaf.runtime.child_process import free_port
from interleaf.tools import ToolContext, ToolInfraError, mcp_toolset
from interleaf.tools.mcp_client import without_regexes
from tests.tools.mcp_odd_server import CATASTROPHIC
from tests.waiting import wait_until

SAMPLE = f"{Path(__file__).with_name('tools_mcp_sample.py')}:toolset"
TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
SERVE = [sys.executable, "-m", "interleaf.tools.mcp_server", SAMPLE]


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(episode_id="ep-mcp", scratch_dir=tmp_path)


@pytest.fixture
def quiet() -> Iterator:
    with open(os.devnull, "w") as devnull:
        yield devnull


async def test_third_party_time_server(ctx, quiet):
    async with mcp_toolset(TIME_SERVER, errlog=quiet) as ts:
        assert set(ts.names) == {"get_current_time", "convert_time"}
        schema = ts.get("get_current_time").openai_schema()["function"]
        assert schema["parameters"]["required"] == ["timezone"] and schema["description"]

        now = await ts.call("get_current_time", {"timezone": "UTC"}, ctx)
        assert not now.is_error and json.loads(now.content)["timezone"] == "UTC"
        converted = await ts.call(
            "convert_time", '{"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}', ctx
        )
        assert not converted.is_error and json.loads(converted.content)["target"]["datetime"].endswith("21:00:00+09:00")

        bad_zone = await ts.call("get_current_time", {"timezone": "Nowhere/Atlantis"}, ctx)
        assert bad_zone.error_type == "ToolError" and "Nowhere/Atlantis" in bad_zone.content
        missing = await ts.call("get_current_time", {}, ctx)
        assert missing.error_type == "ToolArgumentError" and "field 'timezone': required but missing" in missing.content
        wrong_type = await ts.call("get_current_time", {"timezone": 5}, ctx)
        assert (
            wrong_type.error_type == "ToolArgumentError" and "field 'timezone': 5 is not of type" in wrong_type.content
        )
        unknown = await ts.call("get_time", {}, ctx)
        assert unknown.error_type == "UnknownToolError" and "get_current_time" in unknown.content
        not_json = await ts.call("get_current_time", "timezone=UTC", ctx)
        assert not_json.error_type == "ToolArgumentError" and "not valid JSON" in not_json.content


async def test_prefix_namespaces_tools_with_openai_valid_names(quiet):
    openai_name = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
    async with mcp_toolset(TIME_SERVER, prefix="time", errlog=quiet) as ts:
        assert sorted(ts.names) == ["time_convert_time", "time_get_current_time"]
    # A dotted prefix (OpenAI refuses '.') is made valid; another separator can be chosen.
    async with mcp_toolset(TIME_SERVER, prefix="time.", errlog=quiet) as ts:
        assert sorted(ts.names) == ["time_convert_time", "time_get_current_time"]
        assert all(openai_name.match(n) for n in ts.names)
    async with mcp_toolset(TIME_SERVER, prefix="clock", separator="-", errlog=quiet) as ts:
        assert sorted(ts.names) == ["clock-convert_time", "clock-get_current_time"]
    with pytest.raises(ValueError, match=r"separator='\.'"):
        async with mcp_toolset(TIME_SERVER, prefix="time", separator="."):
            pass


async def test_server_dying_at_start_is_an_infrastructure_error_naming_it(quiet):
    dies = [sys.executable, "-c", "import sys; sys.exit(3)"]
    with pytest.raises(ToolInfraError) as info:
        async with mcp_toolset(dies, errlog=quiet):
            pass
    message = str(info.value)
    assert "sys.exit(3)" in message and "closed the connection" in message
    with pytest.raises(ToolInfraError, match=r"no-such-mcp-server.*No such file"):
        async with mcp_toolset(["no-such-mcp-server"], errlog=quiet):
            pass


async def test_dead_url_is_an_infrastructure_error_naming_it():
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    with pytest.raises(ToolInfraError) as info:
        async with mcp_toolset(url=url):
            pass
    assert url in str(info.value) and "ConnectError" in str(info.value)
    assert not isinstance(info.value, BaseExceptionGroup)


async def test_an_error_in_the_callers_block_passes_through(quiet):
    with pytest.raises(KeyError, match="mine"):
        async with mcp_toolset(TIME_SERVER, errlog=quiet):
            raise KeyError("mine")


async def test_official_client_calls_interleaf_toolset_over_stdio(quiet):
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:])
    async with Client(params) as client:
        listing = await client.list_tools()
        tools = {t.name: t for t in listing.tools}
        assert set(tools) == {"add", "calculator", "crash"}
        assert tools["add"].description == "Add two numbers."
        assert tools["add"].input_schema["properties"]["a"] == {"type": "integer", "description": "first addend"}

        ok = await client.call_tool("add", {"a": 40})
        assert not ok.is_error and ok.content[0].text == "42"
        bad = await client.call_tool("add", {"a": "forty"})
        assert bad.is_error and "field 'a'" in bad.content[0].text and "'forty'" in bad.content[0].text
        refused = await client.call_tool("calculator", {"expression": "1/0"})
        assert refused.is_error and "division by zero" in refused.content[0].text


async def test_lost_server_is_an_infrastructure_error(ctx, quiet):
    async with mcp_toolset(SERVE, errlog=quiet, timeout_s=20) as ts:
        assert (await ts.call("add", {"a": 1, "b": 1}, ctx)).content == "2"
        with pytest.raises(ToolInfraError) as info:
            await ts.call("crash", {}, ctx)
        assert info.value.tool == "crash"


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [*SERVE, "--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def accepts() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"MCP server exited: {proc.stderr.read().decode()[-2000:]}")
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True

    try:
        wait_until(
            accepts,
            message=f"the MCP server to accept connections on port {port}",
            timeout_s=60,
            interval_s=0.1,
            ignore=(OSError,),
        )
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_streamable_http_both_clients(http_server, ctx):
    async with Client(http_server) as client:
        result = await client.call_tool("calculator", {"expression": "2 ** 10"})
        assert not result.is_error and result.content[0].text == "1024"
    # And interleaf's own adapter over HTTP: interleaf -> MCP -> interleaf.
    async with mcp_toolset(url=http_server) as ts:
        assert (await ts.call("add", {"a": 2, "b": 3}, ctx)).content == "5"
        res = await ts.call("add", {"a": 2, "z": 1}, ctx)
        assert res.is_error and "field 'z': unexpected argument (value 1); allowed: a, b" in res.content


async def test_bad_configuration_names_the_problem():
    with pytest.raises(ValueError, match="exactly one of command"):
        async with mcp_toolset():
            pass
    with pytest.raises(ValueError, match=r"command=\[\] is empty"):
        async with mcp_toolset([]):
            pass


# --- servers whose tools no interleaf tool could be ----------------------------------------------------

ODD_SERVER = [sys.executable, str(Path(__file__).with_name("mcp_odd_server.py"))]


async def test_colliding_and_empty_names_are_left_out_with_a_warning_naming_the_server(ctx, quiet, caplog):
    with caplog.at_level(logging.WARNING, logger="interleaf.tools.mcp_client"):
        async with mcp_toolset(ODD_SERVER, errlog=quiet) as ts:
            assert ts.names == ["a_b", "match"]
            res = await ts.call("a_b", {"s": "x"}, ctx)
            assert json.loads(res.content) == {"tool": "a.b", "arguments": {"s": "x"}}  # the first one kept
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("mcp_odd_server.py" in w for w in warnings)
    assert "tool 'a_b' left out: its name here, 'a_b', is already that of the server's tool 'a.b'" in warnings[0]
    assert "tool '' left out: the server gave it an empty name" in warnings[1]


async def test_a_servers_catastrophic_pattern_never_holds_the_loop(ctx, quiet):
    """Python's re backtracks with the GIL held; the server's patterns are left to the server."""
    async with mcp_toolset(ODD_SERVER, errlog=quiet) as ts:
        started = time.monotonic()
        res = await ts.call("match", {"s": "a" * 40 + "!"}, ctx)
        assert time.monotonic() - started < 2 and not res.is_error
        wrong = await ts.call("match", {"s": "a", "n": "one"}, ctx)  # the rest of the schema still holds
        assert wrong.error_type == "ToolArgumentError" and "field 'n': 'one' is not of type 'integer'" in wrong.content


def test_client_side_checks_leave_regular_expressions_out():
    schema = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "pattern": CATASTROPHIC},  # a property named "pattern" stays
            "tags": {"type": "object", "patternProperties": {CATASTROPHIC: {}}, "additionalProperties": False},
        },
        "$defs": {"x": {"const": {"pattern": "data, not a keyword"}}},
        "unevaluatedProperties": False,
    }
    assert without_regexes(schema) == {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "tags": {"type": "object"}},
        "$defs": {"x": {"const": {"pattern": "data, not a keyword"}}},
    }


# --- stopping a server --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
def test_sigterm_removes_the_servers_scratch_directories(tmp_path, transport):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    port = free_port()
    proc = subprocess.Popen(
        [*SERVE, "--transport", transport, "--port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        if transport == "streamable-http":
            wait_until(
                lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5).close() or True,
                message=f"the MCP server to accept connections on port {port}",
                timeout_s=60,
                ignore=(OSError,),
            )
        else:
            wait_until(lambda: list(tmp_path.glob("interleaf-mcp-*")), message="the scratch root", timeout_s=60)
        assert list(tmp_path.glob("interleaf-mcp-*"))
        proc.terminate()
        assert proc.wait(20) == 143, proc.stderr.read().decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp_path.glob("interleaf-mcp-*")) == []
