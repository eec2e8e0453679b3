"""Run untrusted Python in a separate, contained process.

Containment, strongest available first:

* ``namespace`` (root and a working ``unshare``): new network namespace (no interfaces up, so no
  network at all), new pid namespace (killing its init kills every descendant, even ones that
  ``setsid``), new mount namespace with ``/`` remounted read-only, a private size-capped tmpfs on
  ``/tmp`` and the scratch directory bound at ``/tmp/work`` as the only persistent writable place.
  The code runs under a throwaway uid (root ignores ``RLIMIT_NPROC``; an unprivileged uid that
  owns nothing else makes the process cap real and keeps it out of root's files and
  ``/proc/<pid>/environ``).
* ``plain`` (anything else): own session/process group killed as a whole, an audit hook that
  refuses socket creation and launching other programs, the rlimits below.

Both: ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, no core dumps, a
wall-clock timeout, a scrubbed environment (nothing of the host's is inherited), stdin closed,
and output read with a byte cap so a flood cannot exhaust the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from interleaf.tools import sandbox_boot

__all__ = ["SandboxLimits", "SandboxRun", "containment_mode", "run_python"]

Mode = Literal["namespace", "plain"]

log = logging.getLogger(__name__)


class SandboxLimits(BaseModel):
    """Resource limits for one sandboxed run."""

    wall_s: float = Field(default=10.0, gt=0)
    """Wall-clock limit; the whole process tree is killed when it passes."""
    cpu_s: int = Field(default=10, ge=1)
    """RLIMIT_CPU per process, in seconds."""
    memory_mb: int = Field(default=1024, ge=64)
    """RLIMIT_AS (virtual address space) per process, in MiB."""
    file_mb: int = Field(default=64, ge=1)
    """RLIMIT_FSIZE: the largest file the code may write, in MiB."""
    processes: int = Field(default=16, ge=1)
    """RLIMIT_NPROC: processes and threads the sandbox uid may have."""
    tmp_mb: int = Field(default=64, ge=1)
    """Size of the private ``/tmp`` tmpfs (namespace mode)."""
    output_bytes: int = Field(default=1_000_000, ge=1024)
    """Bytes kept from each of stdout and stderr; the rest is read and dropped."""


class SandboxRun(BaseModel):
    """What a sandboxed run produced."""

    stdout: str
    """Captured standard output (capped at ``output_bytes``)."""
    stderr: str
    """Captured standard error, plus a note when a limit killed the process."""
    exit_code: int | None
    """Process exit status; negative for a signal; ``None`` when killed at the wall clock."""
    timed_out: bool = False
    """True when the wall-clock limit was reached."""
    duration_s: float = 0.0
    """Wall-clock seconds the run took."""
    mode: str = "plain"
    """Which containment was used: ``namespace`` or ``plain``."""

    def sandbox_fusion_text(self) -> str:
        """The SandboxFusion rendering the PTE paper's agents were trained on."""
        return f"stdout:\n{self.stdout}\n\nstderr:\n{self.stderr}"


_SAFE_ENV = {
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

# Run by path, never as a package module: the sandbox imports nothing of interleaf (see sandbox_boot).
_BOOT_PATH = str(Path(sandbox_boot.__file__).resolve())

_SANDBOX_UID_BASE = 200_000
_SANDBOX_UID_SPAN = 100_000


def _reexpose_pairs() -> list[tuple[str, str]]:
    """(closed parent, needed child) pairs so a foreign uid can still import the interpreter's files."""
    needed = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["stdlib"],
    }
    pairs: dict[str, str] = {}
    for path in needed:
        parts = Path(path).resolve().parts
        for depth in range(1, len(parts)):
            parent = Path(*parts[:depth])
            if not os.stat(parent).st_mode & 0o001:
                pairs.setdefault(str(parent), str(Path(*parts[: depth + 1])))
                break
    return sorted(pairs.items())


@functools.cache
def _namespace_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def containment_mode(requested: Mode | None = None) -> Mode:
    """The containment to use: the requested one, or the strongest this host allows."""
    env = os.environ.get("INTERLEAF_SANDBOX_MODE")
    mode = requested or (env if env in ("namespace", "plain") else None)
    if mode == "namespace" and not _namespace_available():
        raise RuntimeError(
            "sandbox mode 'namespace' needs root and a working `unshare --net --pid --mount-proc`; "
            "use mode='plain' (or unset INTERLEAF_SANDBOX_MODE)"
        )
    return mode or ("namespace" if _namespace_available() else "plain")


@dataclass
class _Capped:
    """Reads a stream to the end, keeping the first ``limit`` bytes."""

    limit: int
    data: bytearray
    dropped: int = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - len(self.data)
            self.data += chunk[:room]
            self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        out = self.data.decode("utf-8", errors="replace")
        return out + (f"\n[... {self.dropped} more bytes of output dropped]" if self.dropped else "")


def _sandbox_uid(scratch: Path) -> int:
    """A uid owned by nothing else on the host; stable per scratch dir so files persist across calls.

    The record lives beside the scratch dir, never inside it: code in the sandbox must not choose
    the uid of its next run.
    """
    marker = scratch.parent / f".{scratch.name}.sandbox-uid"
    if marker.exists():
        uid = int(marker.read_text())
        if _SANDBOX_UID_BASE <= uid < _SANDBOX_UID_BASE + _SANDBOX_UID_SPAN:
            return uid
    uid = _SANDBOX_UID_BASE + secrets.randbelow(_SANDBOX_UID_SPAN)
    marker.write_text(str(uid))
    os.chmod(marker, 0o600)
    return uid


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _uid_pids(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
    return pids


async def _await_uid_gone(uid: int, timeout_s: float = 3.0) -> None:
    """The kernel tears a dead pid namespace down asynchronously; return only once it is empty."""
    deadline = time.monotonic() + timeout_s
    while (pids := _uid_pids(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.02)
    if pids:
        log.warning("sandbox uid %d still has processes %s after %.0f s", uid, pids[:10], timeout_s)


def _limit_note(code: int | None, limits: SandboxLimits) -> str:
    if code is None or code >= 0:
        return ""
    sig = -code
    if sig == signal.SIGXCPU:
        return f"Killed: CPU time limit of {limits.cpu_s} s exceeded."
    if sig == signal.SIGXFSZ:
        return f"Killed: file size limit of {limits.file_mb} MiB exceeded."
    if sig == signal.SIGKILL:
        return "Killed (SIGKILL): a resource limit was exceeded."
    return f"Killed by signal {signal.Signals(sig).name}."


async def run_python(
    code: str, scratch: Path | str, limits: SandboxLimits | None = None, *, mode: Mode | None = None
) -> SandboxRun:
    """Run ``code`` in a contained interpreter with ``scratch`` as its working directory.

    Raises ``RuntimeError`` only when the sandbox itself cannot be started.
    """
    limits = limits or SandboxLimits()
    mode = containment_mode(mode)
    scratch = Path(scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    uid = None
    reexpose: list[tuple[str, str]] = []
    if mode == "namespace":
        uid = _sandbox_uid(scratch)
        os.chown(scratch, uid, uid)
        os.chmod(scratch, 0o700)
        reexpose = _reexpose_pairs()
    cfg = sandbox_boot.BootConfig(
        mode=mode,
        scratch=str(scratch),
        uid=uid,
        tmp_mb=limits.tmp_mb,
        limits=sandbox_boot.BootLimits(
            cpu_s=limits.cpu_s, memory_mb=limits.memory_mb, file_mb=limits.file_mb, processes=limits.processes
        ),
        reexpose=reexpose,
    )
    argv = [sys.executable, "-I", _BOOT_PATH, json.dumps(cfg)]
    if mode == "namespace":
        argv = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--", *argv]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(_SAFE_ENV),
        cwd=str(scratch) if mode == "plain" else "/",
        start_new_session=True,
    )
    out, err = _Capped(limits.output_bytes, bytearray()), _Capped(limits.output_bytes, bytearray())
    assert proc.stdin and proc.stdout and proc.stderr
    timed_out = False
    try:
        proc.stdin.write(code.encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await proc.stdin.drain()
        proc.stdin.close()
        readers = asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr), proc.wait())
        try:
            await asyncio.wait_for(asyncio.shield(readers), limits.wall_s)
        except TimeoutError:
            timed_out = True
            _kill_group(proc)
            # Descendants may hold the pipes open a moment longer; don't wait on them forever.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readers, 5.0)
    finally:
        if proc.returncode is None:
            _kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if uid is not None:
            await _await_uid_gone(uid)
    returncode = proc.returncode
    if mode == "namespace" and returncode is not None and returncode > 128:
        returncode = 128 - returncode
    stderr = err.text()
    if timed_out:
        note = f"TimeoutError: execution exceeded the {limits.wall_s:g} s wall-clock limit and was killed."
    else:
        note = _limit_note(returncode, limits)
    if note:
        stderr = f"{stderr.rstrip()}\n{note}" if stderr.strip() else note
    if mode == "namespace" and returncode not in (None, 0) and "sandbox mount of" in stderr:
        raise RuntimeError(f"the python sandbox failed to start: {stderr.strip()[-500:]}")
    return SandboxRun(
        stdout=out.text(),
        stderr=stderr,
        exit_code=None if timed_out else returncode,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        mode=mode,
    )
