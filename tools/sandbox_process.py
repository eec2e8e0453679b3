"""The sandboxed process from the host's side, in either mode: its command line (``Launch``), the
environment and boot program it starts with, its input fed and its output read with a byte cap, and
its killing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from interleaf.tools import sandbox_boot

SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "MPLBACKEND": "Agg",
    # Thread pools count against RLIMIT_NPROC and reserve address space per thread.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The whole environment of a sandboxed process (nothing of the host's is passed on)."""

# Run by path, never as a package module: the sandbox imports nothing of interleaf (see sandbox_boot).
BOOT_PATH = str(Path(sandbox_boot.__file__).resolve())


@dataclass
class Launch:
    """A sandbox process's command line and the descriptors it inherits (closed after the start)."""

    argv: list[str]
    fds: list[int] = field(default_factory=list)
    report_r: int | None = None

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


@dataclass
class Capped:
    """Reads a stream to the end, keeping its first ``limit - tail`` bytes in ``sink`` and its last
    ``tail`` bytes (how output ends, a traceback or a summary, is what a reader needs most)."""

    limit: int
    sink: IO[bytes]
    tail: int = 0
    kept: int = 0
    """Bytes written to ``sink``."""
    dropped: int = 0
    """Bytes read and kept nowhere (between the head and the tail)."""
    _end: bytearray = field(default_factory=bytearray)

    async def drain(self, stream: asyncio.StreamReader) -> None:
        head = self.limit - self.tail
        while chunk := await stream.read(65536):
            room = max(0, head - self.kept)
            self.sink.write(chunk[:room])
            self.kept += min(room, len(chunk))
            self._end += chunk[room:]
            if (over := len(self._end) - self.tail) > 0:
                self.dropped += over
                del self._end[:over]

    def text(self) -> str:
        assert isinstance(self.sink, io.BytesIO)
        head = self.sink.getvalue()
        if not self.dropped:
            return (head + self._end).decode("utf-8", errors="replace")
        marker = f"\n[... {self.dropped} more bytes of output dropped ...]\n"
        return head.decode("utf-8", errors="replace") + marker + self._end.decode("utf-8", errors="replace")


async def feed(stdin: asyncio.StreamWriter, data: IO[bytes]) -> None:
    """Write ``data`` to the process's stdin and close it (a process that stopped reading is no error)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while chunk := data.read(1 << 16):
            stdin.write(chunk)
            await stdin.drain()
        stdin.close()


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (/proc/<pid>/task/*/children needs CONFIG_PROC_CHILDREN)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry))
    return found


def kill_run(proc: asyncio.subprocess.Process, *, pid_namespace: bool) -> None:
    """Kill a run: with ``pid_namespace`` (bwrap mode) its pid namespace's init (bwrap's child), which
    takes every process of the namespace with it before bwrap can reap it; the process group in any case."""
    if pid_namespace:
        for child in _children(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


__all__ = ["BOOT_PATH", "SAFE_ENV", "Capped", "Launch", "feed", "kill_run"]
