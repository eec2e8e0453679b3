"""The official ``mcp`` client against ``interleaf tools mcp-serve`` (the CLI a user runs), over stdio and
streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters

from interleaf.runtime.child_process import free_port
from tests.waiting import wait_until

SAMPLE = f"{Path(__file__).parents[1] / 'tools' / 'tools_mcp_sample.py'}:toolset"


def serve_command(*extra: str) -> list[str]:
    exe = shutil.which("interleaf")
    assert exe, "the interleaf console script is installed by scripts/install.sh"
    return [exe, "tools", "mcp-serve", SAMPLE, *extra]


async def test_stdio_lists_schemas_and_calls_tools() -> None:
    command = serve_command()
    async with Client(StdioServerParameters(command=command[0], args=command[1:])) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"add", "calculator"} <= set(tools)
        assert tools["add"].input_schema["required"] == ["a"]
        ok = await client.call_tool("add", {"a": 40})
        assert not ok.is_error and ok.content[0].text == "42"
        bad = await client.call_tool("add", {"a": "forty"})  # the tool's validation error, shown to the model
        assert bad.is_error and "field 'a'" in bad.content[0].text


@pytest.fixture
def http_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(serve_command("--transport", "streamable-http", "--port", str(port)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"

    def answers() -> bool:
        assert proc.poll() is None, f"mcp-serve exited: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        httpx.get(url, timeout=1)
        return True

    try:
        wait_until(answers, message=f"interleaf tools mcp-serve to answer {url}", timeout_s=60, interval_s=0.2,
                   ignore=(httpx.HTTPError,))  # fmt: skip
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_streamable_http(http_url: str) -> None:
    async with Client(http_url) as client:
        assert "calculator" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("calculator", {"expression": "6 * 7"})
        assert not result.is_error and result.content[0].text == "42"
