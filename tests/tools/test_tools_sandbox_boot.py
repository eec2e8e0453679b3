"""The sandbox's boot module, piece by piece in this process (the whole of it runs in test_tools_sandbox.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from interleaf.tools import sandbox_boot
from interleaf.tools.sandbox_boot import audit_hook, exit_status


def test_plain_mode_hook_refuses_network_programs_and_writes_outside(tmp_path: Path) -> None:
    hook = audit_hook(str(tmp_path), refuse_fork=False)
    for event in ("socket.__new__", "socket.connect", "subprocess.Popen", "os.system", "os.exec"):
        with pytest.raises(PermissionError, match=re.escape(f"{event} is not allowed in the sandbox")):
            hook(event, ())
    hook("os.fork", ())  # allowed unless refuse_fork: RLIMIT_NPROC caps a non-root uid
    with pytest.raises(PermissionError, match=r"os\.fork is not allowed"):
        audit_hook(str(tmp_path), refuse_fork=True)("os.fork", ())

    hook("open", (str(tmp_path / "mine.txt"), "w", 0))
    hook("open", ("/etc/passwd", "r", os.O_RDONLY))  # reading outside is fine
    hook("open", (3, "w", 0))  # a descriptor was checked when it was opened
    with pytest.raises(PermissionError, match="write inside the working directory"):
        hook("open", ("/etc/passwd", "a", 0))
    with pytest.raises(PermissionError, match="write inside the working directory"):
        hook("open", ("/etc/passwd", None, os.O_WRONLY))
    # A symlink or .. out of the directory is judged by where it really points.
    (tmp_path / "out").symlink_to("/etc")
    with pytest.raises(PermissionError):
        hook("open", (str(tmp_path / "out" / "x"), "w", 0))
    with pytest.raises(PermissionError):
        hook("open", (str(tmp_path / ".." / "x"), "w", 0))
    with pytest.raises(PermissionError, match="environments is not allowed"):
        hook("open", ("/proc/1/environ", "r", os.O_RDONLY))


def test_plain_mode_hook_checks_the_path_each_file_operation_changes(tmp_path: Path) -> None:
    hook = audit_hook(str(tmp_path), refuse_fork=False)
    at_cwd = -100  # AT_FDCWD: what the os functions pass when no dir_fd is given
    hook("os.remove", (str(tmp_path / "a"), at_cwd))
    hook("os.rename", (str(tmp_path / "a"), str(tmp_path / "b"), at_cwd, at_cwd))
    with pytest.raises(PermissionError, match=r"os\.remove on '/etc/a' is not allowed"):
        hook("os.remove", ("/etc/a", at_cwd))
    # Both ends of a rename or link count: moving a file out is writing outside.
    with pytest.raises(PermissionError, match=r"os\.rename on '/etc/b' is not allowed"):
        hook("os.rename", (str(tmp_path / "a"), "/etc/b", at_cwd, at_cwd))
    with pytest.raises(PermissionError, match=r"os\.link on '/etc/b'"):
        hook("os.link", (str(tmp_path / "a"), "/etc/b", at_cwd, at_cwd, True))
    # A dir_fd makes a relative path point anywhere.
    with pytest.raises(PermissionError, match="with dir_fd is not allowed"):
        hook("os.mkdir", ("x", 0o777, 3))
    hook("os.mkdir", (str(tmp_path / "x"), 0o777, at_cwd))  # the mode is not a dir_fd
    # os.symlink(src, dst): what is created is argument 1.
    hook("os.symlink", ("/etc/passwd", str(tmp_path / "link"), at_cwd))
    with pytest.raises(PermissionError, match="outside the sandbox directory"):
        hook("os.symlink", (str(tmp_path / "x"), "/etc/link", at_cwd))
    hook("import", ("json", None, sys.path, sys.meta_path, sys.path_hooks))  # other events pass


def test_plain_mode_hook_refuses_environ_spellings_and_foreign_signals(tmp_path: Path) -> None:
    hook = audit_hook(str(tmp_path), refuse_fork=False)
    for path in ("/proc/1/environ", "//proc/1/environ", "/proc/./1/../1/environ", b"/proc/self/environ"):
        with pytest.raises(PermissionError, match="environments is not allowed"):
            hook("open", (path, "r", os.O_RDONLY))
    hook("os.kill", (os.getpid(), signal.SIGTERM))  # its own process group: allowed
    hook("os.kill", (0, signal.SIGTERM))
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)  # another process group
    try:
        for pid in (other.pid, -1):
            with pytest.raises(PermissionError, match=r"os\.kill\(-?\d+\) is not allowed"):
                hook("os.kill", (pid, signal.SIGKILL))
        with pytest.raises(PermissionError, match=r"os\.killpg"):
            hook("os.killpg", (other.pid, signal.SIGKILL))
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    ("code", "expected"),
    [("raise SystemExit(3)", 3), (f"import os; os.kill(os.getpid(), {int(signal.SIGXCPU)})", 128 + signal.SIGXCPU)],
)
def test_exit_status_passes_the_childs_exit_code_or_signal_on(code: str, expected: int) -> None:
    child = subprocess.Popen([sys.executable, "-c", code])
    _, status = os.waitpid(child.pid, 0)  # the raw wait status, as the namespace's init sees it
    assert exit_status(status) == expected


def test_boot_module_imports_only_the_standard_library() -> None:
    """The sandboxed interpreter runs it by path and may not be able to read interleaf's tree."""
    source = Path(sandbox_boot.__file__).read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports and all(name.split(".")[0] in sys.stdlib_module_names | {"__future__"} for name in imports)
