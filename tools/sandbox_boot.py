"""The sandboxed interpreter's first code: contain the process, then run the user's program.

Run by path (``python -I <this file> <step> <config json>``), never as
``interleaf.tools.sandbox_boot``: nothing of interleaf is imported into the sandbox, whose uid may
not be able to read this tree and whose code must not see it. So this module imports the standard
library only. Its steps, as :func:`interleaf.tools.sandbox.run_python` drives them:

* ``launch`` (``bwrap`` mode, host root only, outside the sandbox): a private mount namespace in
  which the interpreter's directories that a foreign uid cannot traverse (e.g. ``/root/.pyenv``)
  are exposed again, then the throwaway uid, then ``exec bwrap``. bwrap itself never runs as root:
  inside its user namespace a host root would own every root-owned file, ``/proc/sys`` included.
* ``run``: stdin is a tar stream: the code (``code.py``) and, in ``bwrap`` mode, the working
  directory's files from the last call (``work/...``).

  - ``bwrap`` mode (inside bubblewrap, as pid 1 of its pid namespace, which the kernel shields
    from the code's signals): unpack the working directory into the size-capped ``/tmp``, set the
    rlimits, fork the code, reap every orphan, and when the code's process ends kill whatever it
    left running, then send a one-line JSON report and a tar of ``/tmp/work`` down
    ``report_fd`` for the host to keep.
  - ``plain`` mode (the opt-in fallback): rlimits and an audit hook that refuses sockets,
    launching programs, writing outside the working directory, signalling other processes and
    reading ``/proc/*/environ``, then the code in this very process.

The code is compiled as ``__main__`` under the file name ``<python>``; its traceback leaves this
module's frames out.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import json
import linecache
import os
import resource
import signal
import stat
import sys
import tarfile
import traceback
from collections.abc import Callable
from typing import IO, Any, Literal, TypedDict

_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
_CLONE_NEWNS = 0x00020000
_PR_SET_DUMPABLE = 4

CODE_MEMBER = "code.py"
"""The tar member on stdin that holds the code."""
WORK_MEMBER = "work"
"""The tar directory (on stdin and in the report) that holds the working directory's files."""
SANDBOX_WORKDIR = "/tmp/work"
"""The working directory inside bwrap: on the size-capped ``/tmp`` tmpfs."""
USER_FILENAME = "<python>"
"""The file name the user's code is compiled under (what its tracebacks show)."""
MAX_DEPTH = 64
"""Directories nested deeper than this in the working directory are not sent back (nor what they hold)."""
MAX_PATH = 1024
"""Entries whose path in the working directory is longer than this are not sent back."""
_PAGE = 4096
"""tmpfs allocates whole pages: a file's size is counted rounded up to one."""

_BLOCKED_EVENTS = (
    "socket.__new__",
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "pty.spawn",
)
"""Audit events refused in plain mode: no network, no other programs."""
_FORK_EVENTS = ("os.fork", "os.forkpty")
"""Also refused in plain mode as root, which ignores RLIMIT_NPROC."""
_PATH_EVENTS = {
    "os.remove": ((0,), (1,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.symlink": ((1,), (2,)),
    "os.link": ((0, 1), (2, 3)),
    "os.truncate": ((0,), ()),
    "os.utime": ((0,), (3,)),
}
"""Audit events that change the file system -> (indexes of the paths changed, indexes of their dir_fds)."""


class BootLimits(TypedDict):
    """The rlimits set before the code runs (``SandboxLimits``' fields of the same names)."""

    cpu_s: int
    memory_mb: int
    file_mb: int
    processes: int
    open_files: int


class BootConfig(TypedDict):
    """The ``run`` step's configuration, as JSON in ``argv[2]``."""

    mode: Literal["bwrap", "plain"]
    workdir: str
    """Where the code runs: ``/tmp/work`` inside bwrap, the host's scratch dir in plain mode."""
    limits: BootLimits
    report_fd: int | None
    """bwrap mode: the pipe for the report and the working directory's tar."""
    tmp_mb: int | None
    """bwrap mode: the private ``/tmp``'s size; the files sent back, counted at their apparent size
    (a sparse file as if written out), stay within it, so the next call's copy fits again."""


class LaunchConfig(TypedDict):
    """The ``launch`` step's configuration, as JSON in ``argv[2]``."""

    uid: int
    """The throwaway host uid bwrap runs as."""
    reexpose: list[tuple[str, str]]
    """(closed parent, needed child) directory pairs to expose again to that uid."""
    argv: list[str]
    """The bwrap command line to exec."""


class Report(TypedDict):
    """The first line bwrap mode's init writes to ``report_fd``; the working directory's tar follows."""

    killed: int
    """Processes the code left running when its main process ended (all killed)."""
    skipped: list[str]
    """Entries of the working directory not sent back, each with why (too deep, over the quota)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, src: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def encode(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    if libc.mount(encode(src), encode(target), encode(fstype), flags, encode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox mount of {target}: {os.strerror(err)}")


def launch(config: LaunchConfig) -> None:
    """The ``launch`` step: runs as host root; never returns (execs bwrap as ``config['uid']``)."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox mount namespace: {os.strerror(err)}")
    # Nothing mounted here may propagate back to the host.
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE, None)
    # Hide the closed parent behind a tmpfs and bind back only the needed child.
    for parent, child in config["reexpose"]:
        fd = os.open(child, os.O_PATH | os.O_DIRECTORY)
        _mount(libc, "tmpfs", parent, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
        target = os.path.join(parent, os.path.basename(child))
        os.mkdir(target)
        _mount(libc, f"/proc/self/fd/{fd}", target, None, _MS_BIND | _MS_REC, None)
        os.close(fd)
    uid = config["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    os.execv(config["argv"][0], config["argv"])


def _set_limits(limits: BootLimits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] << 20, limits["memory_mb"] << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] << 20, limits["file_mb"] << 20))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))


def _normalised(path: Any) -> str:
    """``//proc/./1/../1/environ`` -> ``/proc/1/environ``: what the kernel will open."""
    return os.path.normpath(os.path.realpath(os.fsdecode(path)))


def audit_hook(root: str, *, refuse_fork: bool) -> Callable[[str, tuple[Any, ...]], None]:
    """Plain mode's audit hook: refuse the blocked events, writes outside ``root`` (a directory),
    signals to other process groups and reading processes' environments, each with a
    PermissionError that says what is allowed. Native code (ctypes) is not seen by audit hooks."""
    blocked = _BLOCKED_EVENTS + (_FORK_EVENTS if refuse_fork else ())
    inside_root = os.path.realpath(root) + os.sep
    own_group = os.getpgid(0)

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor was checked when it was opened
        return _normalised(path).startswith(inside_root)

    def own_process(pid: int) -> bool:
        if pid in (0, -own_group):
            return True
        try:
            return pid > 0 and os.getpgid(pid) == own_group
        except OSError:
            return False

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in blocked:
            raise PermissionError(f"{event} is not allowed in the sandbox (no network, no programs)")
        if event == "open" and args[0] is not None:
            path, mode, flags = args
            writes = (mode and any(c in mode for c in "wax+")) or (flags and flags & (os.O_WRONLY | os.O_RDWR))
            if writes and not inside(path):
                raise PermissionError(f"writing {path!r} is not allowed: write inside the working directory")
            if isinstance(path, str | bytes) and _normalised(path).endswith("/environ"):
                raise PermissionError("reading processes' environments is not allowed in the sandbox")
        elif event in _PATH_EVENTS:
            paths, dir_fds = _PATH_EVENTS[event]
            if any(isinstance(args[index], int) and args[index] >= 0 for index in dir_fds):
                # A dir_fd makes a relative path mean something this check cannot see.
                raise PermissionError(f"{event} with dir_fd is not allowed in the sandbox")
            for index in paths:
                if not inside(args[index]):
                    raise PermissionError(f"{event} on {args[index]!r} is not allowed: outside the sandbox directory")
        elif event in ("os.kill", "os.killpg") and not own_process(args[0] if event == "os.kill" else -args[0]):
            raise PermissionError(f"{event}({args[0]}) is not allowed: signal only this program's own processes")

    return hook


def exit_status(wait_status: int) -> int:
    """The exit status that passes a child's wait status on: its own, or 128 + N for signal N."""
    return 128 + os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else os.WEXITSTATUS(wait_status)


def _read_input(stream: IO[bytes], workdir: str | None) -> str:
    """The code from the stdin tar; with ``workdir``, the working directory's files unpacked there."""
    code = None
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.name == CODE_MEMBER:
                handle = tar.extractfile(member)
                code = handle.read().decode() if handle else ""
            elif workdir and (member.name + "/").startswith(WORK_MEMBER + "/"):
                tar.extract(member, os.path.dirname(workdir), filter="data")
    if code is None:
        raise ValueError(f"sandbox input has no {CODE_MEMBER}")
    return code


def _live_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != "1":
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rpartition(")")[2].split()[0] != "Z":
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def _kill_everything_else() -> int:
    """As pid 1: kill every other process of the namespace and reap it; how many were alive."""
    left = len(_live_pids())
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # everyone but us
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return left


def page_rounded(size: int) -> int:
    """``size`` bytes as tmpfs counts them: in whole pages."""
    return -(-size // _PAGE) * _PAGE


def _workdir_entries(workdir: str, budget: int) -> tuple[list[tuple[str, str]], list[str]]:
    """What of ``workdir`` to send back, as (path, tar name) with each directory before its
    contents, and what is left out, each with why. Iterative (a directory chain thousands deep must
    not exhaust the interpreter's stack) and bounded by ``MAX_DEPTH``, ``MAX_PATH`` and ``budget``
    bytes of regular files at their apparent size (names in sorted order, the first ones kept)."""
    entries: list[tuple[str, str]] = []
    skipped: list[str] = []
    used = 0
    with contextlib.suppress(OSError):
        os.chmod(workdir, 0o700)
    pending = [(workdir, WORK_MEMBER, 0)]
    while pending:
        directory, arcname, depth = pending.pop()
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            skipped.append(f"{arcname.removeprefix(WORK_MEMBER + '/')}/ ({exc.strerror})")
            continue
        subdirs = []
        for name in names:
            path, member = os.path.join(directory, name), f"{arcname}/{name}"
            shown = member.removeprefix(WORK_MEMBER + "/")
            try:
                info = os.lstat(path)
            except OSError as exc:
                skipped.append(f"{shown} ({exc.strerror})")
                continue
            if len(member) > MAX_PATH:
                skipped.append(f"{shown[:60]}... (path longer than {MAX_PATH} characters)")
                continue
            if stat.S_ISDIR(info.st_mode):
                if depth + 1 > MAX_DEPTH:
                    skipped.append(f"{shown[:60]}... (nested deeper than {MAX_DEPTH} directories)")
                    continue
                subdirs.append((path, member, depth + 1))
            elif stat.S_ISREG(info.st_mode):
                size = page_rounded(info.st_size)
                if used + size > budget:
                    skipped.append(f"{shown} ({info.st_size} bytes: past the {budget >> 20} MiB /tmp quota)")
                    continue
                used += size
            if not stat.S_ISLNK(info.st_mode):
                # The code may have made its own files unreadable; it owns them, so it can read them again.
                with contextlib.suppress(OSError):
                    os.chmod(path, info.st_mode | (0o700 if stat.S_ISDIR(info.st_mode) else 0o600))
            entries.append((path, member))
        pending.extend(reversed(subdirs))
    return entries, skipped


def _send_workdir(report_fd: int, workdir: str, killed: int, budget: int) -> None:
    """The report line, then the working directory as a tar stream (the host unpacks it)."""
    entries, skipped = _workdir_entries(workdir, budget)
    with os.fdopen(report_fd, "wb") as out:
        out.write(json.dumps(Report(killed=killed, skipped=skipped)).encode() + b"\n")
        with tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(workdir, arcname=WORK_MEMBER, recursive=False)
            for path, member in entries:
                try:
                    tar.add(path, arcname=member, recursive=False)
                except OSError as exc:  # raised on opening, before anything of the entry is written
                    sys.stderr.write(f"sandbox: {member.removeprefix(WORK_MEMBER + '/')} not kept: {exc}\n")


def _init(config: BootConfig) -> None:
    """bwrap mode as pid 1: returns only in a child that runs the code; the parent reaps orphans
    until that child ends, then kills what it left behind and reports."""
    report_fd = config["report_fd"]
    assert report_fd is not None
    # Neither ptrace-able nor its /proc/1/fd readable by the code, which runs as the same uid.
    _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    child = os.fork()
    if child == 0:
        os.close(report_fd)
        _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        return
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            break
    try:
        killed = _kill_everything_else()
        _send_workdir(report_fd, config["workdir"], killed, (config["tmp_mb"] or 0) << 20)
    except BrokenPipeError:
        pass  # the host stopped listening; the exit status still goes up
    except BaseException as exc:  # the code's own result must still be reported as it was
        sys.stderr.write(f"sandbox: the working directory could not be sent back: {type(exc).__name__}: {exc}\n")
    finally:
        sys.stderr.flush()
        os._exit(exit_status(status))


def run(config: BootConfig) -> None:
    """The ``run`` step: contain this process as ``config`` says, then run the code from stdin."""
    bwrap = config["mode"] == "bwrap"
    workdir = config["workdir"]
    try:
        code = _read_input(sys.stdin.buffer, workdir if bwrap else None)
    except OSError as exc:
        sys.stderr.write(f"sandbox: the working directory does not fit in the sandbox's /tmp quota: {exc}\n")
        sys.exit(1)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.dont_write_bytecode = True
    os.chdir(workdir)
    os.environ["HOME"] = workdir
    os.environ["TMPDIR"] = "/tmp" if bwrap else workdir
    _set_limits(config["limits"])
    if bwrap:
        _init(config)
    else:
        sys.addaudithook(audit_hook(workdir, refuse_fork=os.geteuid() == 0))
    _run_user_code(code)


def _run_user_code(code: str) -> None:
    """Exits the process with status 1 after printing an uncaught exception's traceback."""
    linecache.cache[USER_FILENAME] = (len(code), None, code.splitlines(True), USER_FILENAME)
    sys.argv = [USER_FILENAME]
    sys.path.insert(0, os.getcwd())
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(code, USER_FILENAME, "exec"), namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        # Skip this frame: the user sees only their own code.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    """``<this file> launch|run <config json>``."""
    step, config = argv[1], json.loads(argv[2])
    if step == "launch":
        launch(config)
    else:
        run(config)


if __name__ == "__main__":
    main(sys.argv)
