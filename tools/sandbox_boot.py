"""The sandboxed interpreter's first code: contain the process, then run the user's program.

:func:`interleaf.tools.sandbox.run_python` starts ``python -I <this file> <config json>`` (under
``unshare`` in namespace mode) with the user's code on stdin. Run by path, not as
``interleaf.tools.sandbox_boot``: the file is read once at start-up (before any privilege is
dropped), and nothing of interleaf is imported into the sandbox, whose uid may not be able to read
this tree and whose code must not see it. So this module imports the standard library only, and
everything it sets up happens before the user's code runs:

1. read the code from stdin, then point stdin at ``/dev/null``;
2. namespace mode: private tmpfs ``/tmp`` with the scratch dir bound at ``/tmp/work``, ``/`` (and
   ``/dev/shm``, ``/var/tmp``, ``/run/lock``) remounted read-only, interpreter directories that a
   foreign uid cannot traverse exposed again;
3. the working directory, ``HOME`` and ``TMPDIR``; the rlimits; the throwaway uid;
4. plain mode: an audit hook that refuses sockets, launching programs and writing outside the
   working directory (and forking, as root);
5. namespace mode: fork, so that the code does not run as the namespace's pid 1;
6. compile and run the code as ``__main__`` (file name ``<python>``), its traceback without this
   module's frame.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import json
import linecache
import os
import resource
import sys
import traceback
from collections.abc import Callable
from typing import Any, Literal, TypedDict

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 2, 4, 32, 4096, 16384

_BLOCKED_EVENTS = (
    "socket.__new__",
    "socket.connect",
    "socket.bind",
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
    "os.remove": 0,
    "os.rename": 0,
    "os.rmdir": 0,
    "os.mkdir": 0,
    "os.chmod": 0,
    "os.chown": 0,
    "os.symlink": 1,
    "os.link": 1,
    "os.truncate": 0,
    "os.utime": 0,
}
"""Audit events that change the file system -> the index of the argument naming the path changed."""

USER_FILENAME = "<python>"
"""The file name the user's code is compiled under (what its tracebacks show)."""


class BootLimits(TypedDict):
    """The rlimits set before the code runs (``SandboxLimits``' fields of the same names)."""

    cpu_s: int
    memory_mb: int
    file_mb: int
    processes: int


class BootConfig(TypedDict):
    """What run_python tells the boot module, as JSON in ``argv[1]``."""

    mode: Literal["namespace", "plain"]
    scratch: str
    """The host's scratch directory (bound at ``/tmp/work`` in namespace mode)."""
    uid: int | None
    """The throwaway uid to become (namespace mode), or None to stay who we are."""
    tmp_mb: int
    """Size of the private ``/tmp`` tmpfs (namespace mode)."""
    limits: BootLimits
    reexpose: list[tuple[str, str]]
    """(closed parent, needed child) directory pairs to expose again to the sandbox uid."""


def _mount(
    libc: ctypes.CDLL, src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def encode(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    if libc.mount(encode(src), encode(target), encode(fstype), flags, encode(data)) != 0:
        err = ctypes.get_errno()
        # run_python recognises a failed start by this phrase.
        raise OSError(err, f"sandbox mount of {target}: {os.strerror(err)}")


def _contain_mounts(scratch: str, tmp_mb: int, reexpose: list[tuple[str, str]]) -> str:
    """Namespace mode's file system (step 2); returns the working directory inside it."""
    libc = ctypes.CDLL(None, use_errno=True)
    # Directories the interpreter needs but the sandbox uid cannot traverse (e.g. /root/.pyenv):
    # hide the closed parent behind a tmpfs and bind back only the needed child.
    for parent, child in reexpose:
        fd = os.open(child, os.O_PATH | os.O_DIRECTORY)
        _mount(libc, "tmpfs", parent, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
        target = os.path.join(parent, os.path.basename(child))
        os.mkdir(target)
        _mount(libc, f"/proc/self/fd/{fd}", target, None, _MS_BIND | _MS_REC)
        os.close(fd)
    fd = os.open(scratch, os.O_PATH | os.O_DIRECTORY)
    _mount(libc, "tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={tmp_mb}m,mode=1777")
    os.mkdir("/tmp/work")
    _mount(libc, f"/proc/self/fd/{fd}", "/tmp/work", None, _MS_BIND)
    os.close(fd)
    _mount(libc, None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
    for extra in ("/dev/shm", "/var/tmp", "/run/lock"):
        # Not a separate mount here: already covered by the read-only root.
        with contextlib.suppress(OSError):
            _mount(libc, None, extra, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
    return "/tmp/work"


def _set_limits(limits: BootLimits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] << 20, limits["memory_mb"] << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] << 20, limits["file_mb"] << 20))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))


def audit_hook(root: str, *, refuse_fork: bool) -> Callable[[str, tuple[Any, ...]], None]:
    """Plain mode's audit hook: refuse the blocked events, writes outside ``root`` (a directory) and
    reading other processes' environments, each with a PermissionError that says what is allowed."""
    blocked = _BLOCKED_EVENTS + (_FORK_EVENTS if refuse_fork else ())
    inside_root = os.path.realpath(root) + os.sep

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor was checked when it was opened
        return os.path.realpath(os.fsdecode(path)).startswith(inside_root)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in blocked:
            raise PermissionError(f"{event} is not allowed in the sandbox (no network, no programs)")
        if event == "open" and args[0] is not None:
            path, mode, flags = args
            writes = (mode and any(c in mode for c in "wax+")) or (flags and flags & (os.O_WRONLY | os.O_RDWR))
            if writes and not inside(path):
                raise PermissionError(f"writing {path!r} is not allowed: write inside the working directory")
            if isinstance(path, str) and path.startswith("/proc/") and path.endswith("/environ"):
                raise PermissionError("reading other processes' environments is not allowed in the sandbox")
        elif event in _PATH_EVENTS and not inside(args[_PATH_EVENTS[event]]):
            raise PermissionError(f"{event} on {args[0]!r} is not allowed: outside the sandbox directory")

    return hook


def exit_status(wait_status: int) -> int:
    """The exit status that passes a child's wait status on: its own, or 128 + N for signal N."""
    return 128 + os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else os.WEXITSTATUS(wait_status)


def _run_below_init() -> None:
    """We are pid 1 of the namespace, which the kernel shields from signals such as SIGXCPU: run the
    code in a child, reap every orphan, and pass the child's status up (step 5)."""
    child = os.fork()
    if child:
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                break
        os._exit(exit_status(status))


def _contain(config: BootConfig) -> None:
    """Steps 2 to 5, in this order: mounts need root, and the uid is dropped after the rlimits."""
    namespace = config["mode"] == "namespace"
    cwd = config["scratch"]
    if namespace:
        cwd = _contain_mounts(cwd, config["tmp_mb"], config["reexpose"])
    os.chdir(cwd)
    os.environ["HOME"] = cwd
    os.environ["TMPDIR"] = "/tmp" if namespace else cwd
    _set_limits(config["limits"])
    uid = config["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if not namespace:
        sys.addaudithook(audit_hook(cwd, refuse_fork=os.geteuid() == 0))
    if namespace:
        _run_below_init()


def _run_user_code(code: str) -> None:
    """Step 6. Exits the process with status 1 after printing an uncaught exception's traceback."""
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
    """Contain this process as ``argv[1]`` (the JSON config run_python writes) says, then run stdin."""
    code = sys.stdin.read()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.dont_write_bytecode = True
    _contain(json.loads(argv[1]))
    _run_user_code(code)


if __name__ == "__main__":
    main(sys.argv)
