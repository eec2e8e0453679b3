"""Run untrusted Python in a separate, contained process.

Two modes (docs/tools.md has the attack table):

* ``bwrap`` (the default; needs the ``bwrap`` program, libseccomp and user namespaces, which every
  current Linux has): bubblewrap puts the code in new user, pid, network, mount, ipc, uts and
  cgroup namespaces with ``no_new_privs``, a seccomp filter (no sockets but AF_UNIX, no ptrace,
  no namespaces, no mounts, no kernel keyring, bpf, io_uring, memfds or System V shared memory,
  ...), every mount ``nosuid``, the system and the interpreter read-only, a private size-capped
  ``/tmp`` (the working directory is ``/tmp/work`` on it: one quota for everything the code
  writes) and a small ``/dev/shm``, and a clean environment. bwrap never runs as root: as root, a
  throwaway uid runs it (see ``sandbox_boot.launch``). The code runs below an init of ours that
  the code cannot signal; when the code's process ends, everything it left running is killed. The
  working directory's files come in and go back as tar streams, so the host's scratch dir is
  never mounted into the sandbox.
* ``plain`` (opt-in only: ``mode="plain"`` or ``INTERLEAF_SANDBOX_MODE=plain``): a separate
  process in its own session with rlimits and an audit hook. It reads any host file its user can,
  and native code goes around an audit hook, so this does not contain untrusted code; it exists for
  hosts without bwrap, and says so.

Both: ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, ``RLIMIT_NOFILE``, no core
dumps, a wall-clock timeout, a scrubbed environment, stdin closed, output read with a byte cap.

This module chooses the mode and runs the code; the parts are ``sandbox_limits.py`` (``SandboxLimits``),
``sandbox_bwrap.py`` (bubblewrap's command line and the availability probe), ``sandbox_seccomp.py``
(the filter), ``sandbox_workdir.py`` (the files in and out as tar streams), ``sandbox_process.py`` (the
child's environment, I/O and killing) and ``sandbox_boot.py`` (what runs inside).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from interleaf.tools import sandbox_boot
from interleaf.tools.sandbox_bwrap import bwrap_launch, bwrap_problem, bwrap_program, failed_to_start
from interleaf.tools.sandbox_limits import SandboxLimits, boot_limits, limit_note
from interleaf.tools.sandbox_process import BOOT_PATH, SAFE_ENV, Capped, Launch, feed, kill_run
from interleaf.tools.sandbox_workdir import pack_input, unpack_report
from interleaf.tools.worker_threads import run_in_thread

__all__ = ["SandboxLimits", "SandboxRun", "SandboxUnavailable", "containment_mode", "run_python"]

Mode = Literal["bwrap", "plain"]

MODE_ENV = "INTERLEAF_SANDBOX_MODE"
"""Environment variable that chooses the mode (``bwrap`` or ``plain``) when the caller does not."""

log = logging.getLogger(__name__)


class SandboxUnavailable(RuntimeError):
    """No containment this host can give, and the uncontained fallback was not chosen."""


class SandboxRun(BaseModel):
    """What a sandboxed run produced."""

    stdout: str
    """Captured standard output (capped at ``output_bytes``)."""
    stderr: str
    """Captured standard error, plus a note when a limit or the sandbox stopped something."""
    exit_code: int | None
    """Process exit status; negative for a signal; ``None`` when killed at the wall clock."""
    timed_out: bool = False
    """True when the wall-clock limit was reached."""
    killed_processes: int = 0
    """Processes the code left running when its main process ended; all were killed."""
    duration_s: float = 0.0
    """Wall-clock seconds the run took."""
    mode: str = "bwrap"
    """Which containment was used: ``bwrap`` or ``plain``."""

    def sandbox_fusion_text(self) -> str:
        """The SandboxFusion rendering the PTE paper's agents were trained on."""
        return f"stdout:\n{self.stdout}\n\nstderr:\n{self.stderr}"


PLAIN_GAPS = (
    "the code can read any file this user can read (the whole host file system: keys, credentials, "
    "other episodes' scratch dirs; the audit hook checks writes only); "
    "native code (ctypes, _posixsubprocess, C extensions) bypasses the audit hook, so the network, "
    "starting programs, forking (as root), writing anywhere this user may (also through os.open with "
    "dir_fd), signalling this process and reading /proc/*/environ are all reachable; background "
    "processes can outlive the call; there is no quota on what it writes; it runs as this user"
)
"""What plain mode does not contain (logged when it is chosen)."""


@functools.cache
def _warn_plain() -> None:
    log.warning(
        "python sandbox in 'plain' mode (chosen explicitly): it does NOT contain untrusted code: %s", PLAIN_GAPS
    )


def containment_mode(requested: Mode | None = None) -> Mode:
    """The containment to use: ``requested``, else ``$INTERLEAF_SANDBOX_MODE``, else ``bwrap``.

    Raises ``SandboxUnavailable`` when bwrap mode is wanted and this host cannot run it: there is
    no silent fall back to ``plain``, which must be asked for.
    """
    env = os.environ.get(MODE_ENV)
    if requested is None and env:
        if env not in ("bwrap", "plain"):
            raise SandboxUnavailable(f"{MODE_ENV}={env!r} is not a sandbox mode: use 'bwrap' or 'plain'")
        requested = env  # type: ignore[assignment]
    mode: Mode = requested or "bwrap"
    if mode == "plain":
        _warn_plain()
        return mode
    if (problem := bwrap_problem()) is not None:
        raise SandboxUnavailable(
            f"the python sandbox cannot isolate code on this host: {problem}. Install bubblewrap "
            "(Debian/Ubuntu: apt-get install bubblewrap) and allow user namespaces, or accept running "
            f"code uncontained with {MODE_ENV}=plain (or mode='plain'): {PLAIN_GAPS}"
        )
    return mode


async def run_python(
    code: str, scratch: Path | str, limits: SandboxLimits | None = None, *, mode: Mode | None = None
) -> SandboxRun:
    """Run ``code`` in a contained interpreter with ``scratch``'s files in its working directory.

    Raises ``SandboxUnavailable`` (a ``RuntimeError``) when no containment can be had without an
    explicit opt-in to ``plain``, and ``RuntimeError`` when the sandbox itself fails to start.
    """
    limits = limits or SandboxLimits()
    mode = containment_mode(mode)
    scratch = Path(scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    bwrap = mode == "bwrap"
    if bwrap:
        program = bwrap_program()
        assert program is not None  # containment_mode checked
        launch = bwrap_launch(program, limits, None)
    else:
        cfg = sandbox_boot.BootConfig(
            mode="plain", workdir=str(scratch), limits=boot_limits(limits), report_fd=None, tmp_mb=None
        )
        launch = Launch(argv=[sys.executable, "-I", BOOT_PATH, "run", json.dumps(cfg)])
    started = time.monotonic()
    report_file = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (closed once unpacked)
    transport = None
    proc: asyncio.subprocess.Process | None = None
    try:
        stdin_data = await run_in_thread(pack_input, code, scratch if bwrap else None)
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(SAFE_ENV),
                cwd="/" if bwrap else str(scratch),
                start_new_session=True,
                pass_fds=launch.fds,
            )
        finally:
            launch.close()
        out = Capped(limits.output_bytes, io.BytesIO(), tail=limits.output_bytes // 4)
        err = Capped(limits.output_bytes, io.BytesIO(), tail=limits.output_bytes // 4)
        # The tar's headers can outgrow the tmpfs (many empty files); beyond this it is not kept.
        report = Capped(2 * (limits.tmp_mb << 20) + (1 << 20), report_file)
        assert proc.stdin and proc.stdout and proc.stderr
        tasks = [feed(proc.stdin, stdin_data), out.drain(proc.stdout), err.drain(proc.stderr)]
        if launch.report_r is not None:
            reader = asyncio.StreamReader()
            transport, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(launch.report_r, "rb", 0)
            )
            launch.report_r = None
            tasks.append(report.drain(reader))
        readers = asyncio.gather(*tasks, proc.wait())
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(readers), limits.wall_s)
        except TimeoutError:
            timed_out = True
            kill_run(proc, pid_namespace=bwrap)
            # Descendants may hold the pipes open a moment longer; don't wait on them forever.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readers, 5.0)
    finally:
        if launch.report_r is not None:
            os.close(launch.report_r)
        if proc is not None and proc.returncode is None:
            kill_run(proc, pid_namespace=bwrap)
            await proc.wait()
        if transport is not None:
            transport.close()
    returncode = proc.returncode
    if returncode is not None and returncode > 128:
        returncode = 128 - returncode
    stderr = err.text()
    if bwrap and not timed_out and report.kept == 0 and failed_to_start(stderr):
        raise RuntimeError(f"the python sandbox failed to start: {stderr.strip()[-500:]}")
    notes = []
    killed = 0
    if timed_out:
        notes.append(f"TimeoutError: execution exceeded the {limits.wall_s:g} s wall-clock limit and was killed.")
    else:
        notes.append(limit_note(returncode, limits))
        if returncode is not None and returncode > 0:
            # Last, so a cut output still shows it; os._exit(7) would otherwise leave two empty streams.
            notes.append(f"Exit status {returncode}.")
    if bwrap:
        if timed_out:
            notes.append("Note: files written in this call were not kept (the run was killed).")
        elif report.dropped:
            notes.append("Note: files written in this call were not kept: the working directory's archive was too big.")
        else:
            killed, note = await run_in_thread(unpack_report, report_file, scratch, limits.tmp_mb << 20)
            notes.append(note)
        if killed:
            notes.append(f"Killed {killed} process(es) still running when the code ended: nothing outlives a call.")
    report_file.close()
    for note in filter(None, notes):
        stderr = f"{stderr.rstrip()}\n{note}" if stderr.strip() else note
    return SandboxRun(
        stdout=out.text(),
        stderr=stderr,
        exit_code=None if timed_out else returncode,
        timed_out=timed_out,
        killed_processes=killed,
        duration_s=time.monotonic() - started,
        mode=mode,
    )
