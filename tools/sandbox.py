"""Run untrusted Python in a separate, contained process.

Two modes (docs/tools.md has the attack table):

* ``bwrap`` (the default; needs the ``bwrap`` program, libseccomp and user namespaces, which every
  current Linux has): bubblewrap puts the code in new user, pid, network, mount, ipc, uts and
  cgroup namespaces with ``no_new_privs``, a seccomp filter (no sockets but AF_UNIX, no ptrace,
  no namespaces, no mounts, no kernel keyring, bpf, io_uring, ...), every mount ``nosuid``, the
  system and the interpreter read-only, a private size-capped ``/tmp`` (the working directory is
  ``/tmp/work`` on it: one quota for everything the code writes) and a small ``/dev/shm``, and a
  clean environment. bwrap never runs as root: as root, a throwaway uid runs it (see
  ``sandbox_boot.launch``). The code runs below an init of ours that the code cannot signal; when
  the code's process ends, everything it left running is killed. The working directory's files
  come in and go back as tar streams, so the host's scratch dir is never mounted into the sandbox.
* ``plain`` (opt-in only: ``mode="plain"`` or ``INTERLEAF_SANDBOX_MODE=plain``): a separate
  process in its own session with rlimits and an audit hook. Native code goes around an audit
  hook, so this does not contain untrusted code; it exists for hosts without bwrap, and says so.

Both: ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, no core dumps, a
wall-clock timeout, a scrubbed environment, stdin closed, output read with a byte cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import io
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, Field

from interleaf.tools import sandbox_boot

__all__ = ["SandboxLimits", "SandboxRun", "SandboxUnavailable", "containment_mode", "run_python"]

Mode = Literal["bwrap", "plain"]

MODE_ENV = "INTERLEAF_SANDBOX_MODE"
"""Environment variable that chooses the mode (``bwrap`` or ``plain``) when the caller does not."""
BWRAP_ENV = "INTERLEAF_BWRAP"
"""Environment variable naming the bwrap program to use (default: ``bwrap`` on ``PATH``)."""

log = logging.getLogger(__name__)


class SandboxUnavailable(RuntimeError):
    """No containment this host can give, and the uncontained fallback was not chosen."""


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
    processes: int = Field(default=16, ge=2)
    """RLIMIT_NPROC: processes and threads the sandbox may have (bwrap mode: its init included)."""
    tmp_mb: int = Field(default=64, ge=1)
    """bwrap mode: size of the private ``/tmp``, which holds the working directory: the most the code
    can write, in MiB (files it writes to ``/dev/shm`` come on top, up to ``shm_mb``)."""
    shm_mb: int = Field(default=16, ge=1)
    """bwrap mode: size of the private ``/dev/shm`` (POSIX shared memory, multiprocessing's locks)."""
    output_bytes: int = Field(default=1_000_000, ge=1024)
    """Bytes kept from each of stdout and stderr; the rest is read and dropped."""


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

PLAIN_GAPS = (
    "native code (ctypes, _posixsubprocess, C extensions) bypasses the audit hook, so the network, "
    "starting programs, forking (as root), writing anywhere this user may (also through os.open with "
    "dir_fd), signalling this process and reading /proc/*/environ are all reachable; background "
    "processes can outlive the call; there is no quota on what it writes; it runs as this user"
)
"""What plain mode does not contain (logged when it is chosen)."""

# Run by path, never as a package module: the sandbox imports nothing of interleaf (see sandbox_boot).
_BOOT_PATH = str(Path(sandbox_boot.__file__).resolve())
_BOOT_IN_SANDBOX = "/.interleaf/boot.py"

_STAGING_PREFIX = ".interleaf-incoming-"
"""Where a run's working directory is unpacked inside the host's scratch dir before it replaces it."""

_SANDBOX_UID_BASE = 200_000
_SANDBOX_UID_SPAN = 100_000
_INNER_ID = "1000"
"""The uid and gid the code has inside bwrap's user namespace."""

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_PATHS = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/fonts",
    "/etc/mime.types",
)
"""What of /etc the interpreter and common libraries read: nothing about the host's users or secrets."""

_DENIED_SYSCALLS = (
    # Other processes' memory, and kernel interfaces a sandbox has no business with.
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "perf_event_open", "bpf", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "fanotify_init", "lookup_dcookie", "syslog",
    "open_by_handle_at", "name_to_handle_at", "uselib", "nfsservctl", "_sysctl", "vhangup",
    # Namespaces and mounts: the sandbox's shape is fixed before the code runs.
    "unshare", "setns", "mount", "umount2", "mount_setattr", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "pivot_root", "chroot",
    # The machine itself.
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "move_pages", "migrate_pages",
)  # fmt: skip
_CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET."""


@functools.cache
def _seccomp_program() -> bytes:
    """The seccomp filter as classic BPF (bwrap loads it after setting no_new_privs).

    Allow by default and refuse with EPERM what the sandbox must not do; other architectures'
    system calls (i386, x32 on x86_64) kill the process, so they cannot go around the filter.
    """
    import pyseccomp as sc  # loads libseccomp; only bwrap mode needs it

    flt = sc.SyscallFilter(sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in _DENIED_SYSCALLS:
        with contextlib.suppress(OSError, ValueError):  # not a system call on this architecture
            flt.add_rule(deny, name)
    for flag in _CLONE_NAMESPACE_FLAGS:
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory a filter cannot read: report it missing, and libc falls
    # back to clone, whose flags are checked above.
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for call in ("socket", "socketpair"):
        flt.add_rule(deny, call, sc.Arg(0, sc.NE, socket.AF_UNIX))
    # Pushing characters into a terminal's input (there is none, but the calls stay refused).
    flt.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, termios.TIOCSTI))
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def _bwrap_program() -> str | None:
    configured = os.environ.get(BWRAP_ENV)
    return shutil.which(configured) if configured else shutil.which("bwrap")


def _interpreter_paths(extra: tuple[str, ...] = ()) -> list[str]:
    """The directories the sandboxed interpreter needs, outermost first, none inside another."""
    needed = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        sysconfig.get_paths()["stdlib"],
        *extra,
    }
    paths: list[str] = []
    for path in sorted({os.path.abspath(p) for p in needed} | {os.path.realpath(p) for p in needed}):
        if not any(path == kept or path.startswith(kept + os.sep) for kept in (*_SYSTEM_DIRS, *paths)):
            paths.append(path)
    return paths


def _reexpose_pairs(paths: list[str]) -> list[tuple[str, str]]:
    """(closed parent, needed child) pairs so a foreign uid can still reach ``paths``."""
    pairs: dict[str, str] = {}
    for path in paths:
        parts = Path(os.path.realpath(path)).parts
        for depth in range(1, len(parts)):
            parent = Path(*parts[:depth])
            if not os.stat(parent).st_mode & 0o001:
                pairs.setdefault(str(parent), str(Path(*parts[: depth + 1])))
                break
    return sorted(pairs.items())


def _bwrap_argv(bwrap: str, limits: SandboxLimits, boot_fd: int, seccomp_fd: int, command: list[str]) -> list[str]:
    """bubblewrap's command line; every mount it makes is nosuid, and it sets no_new_privs."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid", _INNER_ID,
        "--gid", _INNER_ID,
        "--hostname", "sandbox",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--seccomp", str(seccomp_fd),
    ]  # fmt: skip
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in _ETC_PATHS:
        argv += ["--ro-bind-try", path, path]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.shm_mb << 20), "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        "--size", str(limits.tmp_mb << 20), "--tmpfs", "/tmp",
        "--dir", sandbox_boot.SANDBOX_WORKDIR,
        "--ro-bind-data", str(boot_fd), _BOOT_IN_SANDBOX,
    ]  # fmt: skip
    # After the private /tmp: an interpreter or virtualenv that lives under /tmp stays reachable (read-only).
    for path in _interpreter_paths((os.path.dirname(bwrap),)):
        argv += ["--ro-bind", os.path.realpath(path), path]
    argv += [
        "--remount-ro", "/",
        "--chdir", sandbox_boot.SANDBOX_WORKDIR,
        "--clearenv",
    ]  # fmt: skip
    for key, value in _SAFE_ENV.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", *command]


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass
class _Launch:
    """A sandbox process's command line and the descriptors it inherits (closed after the start)."""

    argv: list[str]
    fds: list[int] = field(default_factory=list)
    report_r: int | None = None

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def _bwrap_launch(bwrap: str, limits: SandboxLimits, command: list[str] | None) -> _Launch:
    """bwrap mode's command line: bwrap itself, or (as root) boot's ``launch`` step that runs it as a
    throwaway uid. ``command`` replaces boot's ``run`` step (the availability probe)."""
    boot_fd = _memfd("interleaf-sandbox-boot", Path(_BOOT_PATH).read_bytes())
    seccomp_fd = _memfd("interleaf-sandbox-seccomp", _seccomp_program())
    launch = _Launch(argv=[], fds=[boot_fd, seccomp_fd])
    if command is None:
        launch.report_r, report_w = os.pipe()
        launch.fds.append(report_w)
        cfg = sandbox_boot.BootConfig(
            mode="bwrap",
            workdir=sandbox_boot.SANDBOX_WORKDIR,
            limits=_boot_limits(limits),
            report_fd=report_w,
        )
        command = [sys.executable, "-I", _BOOT_IN_SANDBOX, "run", json.dumps(cfg)]
    launch.argv = _bwrap_argv(bwrap, limits, boot_fd, seccomp_fd, command)
    if os.geteuid() == 0:
        cfg_launch = sandbox_boot.LaunchConfig(
            uid=_SANDBOX_UID_BASE + secrets.randbelow(_SANDBOX_UID_SPAN),
            reexpose=_reexpose_pairs(_interpreter_paths((os.path.dirname(bwrap),))),
            argv=launch.argv,
        )
        launch.argv = [sys.executable, "-I", _BOOT_PATH, "launch", json.dumps(cfg_launch)]
    return launch


@functools.cache
def _bwrap_problem() -> str | None:
    """Why bwrap mode cannot run here, or None when a probe sandbox started and exited cleanly."""
    bwrap = _bwrap_program()
    if bwrap is None:
        return f"no `bwrap` program on PATH (or in ${BWRAP_ENV})"
    try:
        _seccomp_program()
    except (ImportError, OSError, RuntimeError) as exc:
        return f"cannot build the seccomp filter (needs the pyseccomp package and libseccomp): {exc}"
    launch = _bwrap_launch(bwrap, SandboxLimits(), [sys.executable, "-I", "-c", "pass"])
    try:
        probe = subprocess.run(
            launch.argv, capture_output=True, timeout=30, env=dict(_SAFE_ENV), pass_fds=launch.fds, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the probe sandbox did not run: {exc}"
    finally:
        launch.close()
    if probe.returncode != 0:
        reason = probe.stderr.decode(errors="replace").strip()[-400:]
        return f"the probe sandbox failed (exit {probe.returncode}): {reason}"
    return None


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
    if (problem := _bwrap_problem()) is not None:
        raise SandboxUnavailable(
            f"the python sandbox cannot isolate code on this host: {problem}. Install bubblewrap "
            "(Debian/Ubuntu: apt-get install bubblewrap) and allow user namespaces, or accept running "
            f"code uncontained with {MODE_ENV}=plain (or mode='plain'): {PLAIN_GAPS}"
        )
    return mode


@dataclass
class _Capped:
    """Reads a stream to the end, keeping the first ``limit`` bytes in ``sink``."""

    limit: int
    sink: IO[bytes]
    kept: int = 0
    dropped: int = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - self.kept
            self.sink.write(chunk[:room])
            self.kept += min(room, len(chunk))
            self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        assert isinstance(self.sink, io.BytesIO)
        out = self.sink.getvalue().decode("utf-8", errors="replace")
        return out + (f"\n[... {self.dropped} more bytes of output dropped]" if self.dropped else "")


def _boot_limits(limits: SandboxLimits) -> sandbox_boot.BootLimits:
    return sandbox_boot.BootLimits(
        cpu_s=limits.cpu_s, memory_mb=limits.memory_mb, file_mb=limits.file_mb, processes=limits.processes
    )


def _pack_input(code: str, scratch: Path | None) -> IO[bytes]:
    """The tar stream boot's ``run`` step reads from stdin: the code, and the working directory."""
    out = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (returned open, the caller closes it)
    with tarfile.open(fileobj=out, mode="w|") as tar:
        data = code.encode()
        info = tarfile.TarInfo(sandbox_boot.CODE_MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        if scratch is not None:
            for child in sorted(scratch.iterdir()):
                if not child.name.startswith(_STAGING_PREFIX):
                    tar.add(child, arcname=f"{sandbox_boot.WORK_MEMBER}/{child.name}")
    out.seek(0)
    return out


def _unpack_report(report: IO[bytes], scratch: Path) -> tuple[int, str]:
    """Read bwrap mode's report and replace ``scratch``'s contents with the working directory it
    carries; returns (processes killed, a note for stderr)."""
    report.seek(0)
    header = json.loads(report.readline() or b"null")
    if not isinstance(header, dict):
        return 0, "Note: the sandbox sent no working directory back; files written in this call were not kept."
    skipped: list[str] = []

    def keep(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError as exc:
            skipped.append(f"{member.name} ({exc})")
            return None

    # Staged inside scratch (the one directory we may be sure to own), then swapped in entry by entry.
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=scratch))
    try:
        try:
            with tarfile.open(fileobj=report, mode="r|") as tar:
                tar.extractall(staging, filter=keep)
        except (tarfile.TarError, OSError) as exc:
            return int(header["killed"]), f"Note: files written in this call were not kept: {exc}"
        fresh = staging / sandbox_boot.WORK_MEMBER
        fresh.mkdir(exist_ok=True)
        for old in scratch.iterdir():
            if old == staging:
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        for new in fresh.iterdir():
            os.rename(new, scratch / new.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    note = ""
    if skipped:
        note = f"Note: not kept in the working directory (links out of it, devices, ...): {', '.join(skipped[:5])}"
    return int(header["killed"]), note


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


def _kill(proc: asyncio.subprocess.Process, mode: Mode) -> None:
    """Kill a run: in bwrap mode its pid namespace's init (bwrap's child), which takes every process
    of the namespace with it before bwrap can reap it; the process group in any case."""
    if mode == "bwrap":
        for child in _children(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


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


def _failed_to_start(stderr: str) -> bool:
    """bwrap's own errors, or the launch step's (before any of the code's output could exist)."""
    return stderr.startswith("bwrap: ") or "sandbox mount" in stderr or "sandbox_boot.py" in stderr


async def _feed(stdin: asyncio.StreamWriter, data: IO[bytes]) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while chunk := data.read(1 << 16):
            stdin.write(chunk)
            await stdin.drain()
        stdin.close()


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
        bwrap_program = _bwrap_program()
        assert bwrap_program is not None  # containment_mode checked
        launch = _bwrap_launch(bwrap_program, limits, None)
    else:
        cfg = sandbox_boot.BootConfig(mode="plain", workdir=str(scratch), limits=_boot_limits(limits), report_fd=None)
        launch = _Launch(argv=[sys.executable, "-I", _BOOT_PATH, "run", json.dumps(cfg)])
    started = time.monotonic()
    report_file = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (closed once unpacked)
    transport = None
    proc: asyncio.subprocess.Process | None = None
    try:
        stdin_data = await asyncio.to_thread(_pack_input, code, scratch if bwrap else None)
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(_SAFE_ENV),
                cwd="/" if bwrap else str(scratch),
                start_new_session=True,
                pass_fds=launch.fds,
            )
        finally:
            launch.close()
        out = _Capped(limits.output_bytes, io.BytesIO())
        err = _Capped(limits.output_bytes, io.BytesIO())
        # The tar's headers can outgrow the tmpfs (many empty files); beyond this it is not kept.
        report = _Capped(2 * (limits.tmp_mb << 20) + (1 << 20), report_file)
        assert proc.stdin and proc.stdout and proc.stderr
        tasks = [_feed(proc.stdin, stdin_data), out.drain(proc.stdout), err.drain(proc.stderr)]
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
            _kill(proc, mode)
            # Descendants may hold the pipes open a moment longer; don't wait on them forever.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readers, 5.0)
    finally:
        if launch.report_r is not None:
            os.close(launch.report_r)
        if proc is not None and proc.returncode is None:
            _kill(proc, mode)
            await proc.wait()
        if transport is not None:
            transport.close()
    returncode = proc.returncode
    if returncode is not None and returncode > 128:
        returncode = 128 - returncode
    stderr = err.text()
    if bwrap and not timed_out and report.kept == 0 and _failed_to_start(stderr):
        raise RuntimeError(f"the python sandbox failed to start: {stderr.strip()[-500:]}")
    notes = []
    killed = 0
    if timed_out:
        notes.append(f"TimeoutError: execution exceeded the {limits.wall_s:g} s wall-clock limit and was killed.")
    else:
        notes.append(_limit_note(returncode, limits))
    if bwrap:
        if timed_out:
            notes.append("Note: files written in this call were not kept (the run was killed).")
        elif report.dropped:
            notes.append("Note: files written in this call were not kept: the working directory's archive was too big.")
        else:
            killed, note = await asyncio.to_thread(_unpack_report, report_file, scratch)
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
