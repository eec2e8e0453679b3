"""``interleaf serve`` refusing to start, as users meet it: the console script in a real process, one line
on stderr and exit status 2, before Ray, Redis or an engine start, and never a claim to be serving."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from interleaf.runtime.child_process import free_port
from tests.conftest import start_serve, stop_process


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("interleaf")
    assert exe, "the interleaf console script is installed by scripts/install.sh"
    return subprocess.run([exe, "serve", *args], capture_output=True, text=True, timeout=120)


def test_a_port_in_use_is_one_line_before_anything_starts(redis_url: str) -> None:
    """It used to print that it served on the port, then uvicorn's own error, and exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--port", str(port), "--no-worker", "--redis-url", redis_url)
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines() == [
        f"interleaf serve: port {port} is in use on 127.0.0.1: stop what listens there or pass another --port"
    ]


def test_a_runs_directory_another_serve_holds_is_named_not_the_redis_url_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --redis-url there is no --redis-url to blame: the message names the runs directory."""
    monkeypatch.setenv("INTERLEAF_RUNS_DIR", str(tmp_path))
    first, _url = start_serve("--no-worker", "--backend", "http://127.0.0.1:9")  # holds tmp_path/.redis
    try:
        done = serve("--port", str(free_port()), "--no-worker", "--backend", "http://127.0.0.1:9")
    finally:
        stop_process(first, 60)
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("interleaf serve: cannot start the private Redis (no --redis-url given): ")
    assert f"another process runs the Redis of {tmp_path / '.redis'}" in line and "Invalid value" not in line


def test_the_listener_is_a_tcp_socket_so_responses_are_not_delayed() -> None:
    """asyncio sets TCP_NODELAY only on accepted sockets whose protocol is IPPROTO_TCP; a socket made with
    protocol 0 left every kept-alive response waiting ~40 ms (Nagle + delayed ACK)."""
    import asyncio

    from interleaf.commands.serve import _listen_socket

    listener = _listen_socket("127.0.0.1", 0)
    try:
        listener.listen()
        assert listener.proto == socket.IPPROTO_TCP

        async def accepted_nodelay() -> int:
            seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                sock = writer.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                writer.close()

            server = await asyncio.start_server(on_connect, sock=listener)
            async with server:
                _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
                value = await asyncio.wait_for(seen, 10)
                writer.close()
            return value

        assert asyncio.run(accepted_nodelay()) != 0
    finally:
        listener.close()
