"""Local child services (the embedded engine, a private redis-server): a free loopback port to bind,
and a child that dies with its parent. Imported by the engine and by jobs; imports nothing of either."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn`` for child services: SIGTERM when the parent dies (Linux), so no server outlives
    a killed test run or CLI."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


__all__ = ["die_with_parent", "free_port"]
