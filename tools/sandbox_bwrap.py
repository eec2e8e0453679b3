"""bwrap mode's launcher: bubblewrap's command line (namespaces, the seccomp filter, read-only system and
interpreter, a private size-capped ``/tmp`` and ``/dev/shm``, a clean environment), run as a throwaway
uid when we are root, and the probe that tells whether this host can run it at all."""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from interleaf.tools import sandbox_boot
from interleaf.tools.sandbox_limits import SandboxLimits, boot_limits
from interleaf.tools.sandbox_process import BOOT_PATH, SAFE_ENV, Launch
from interleaf.tools.sandbox_seccomp import seccomp_program

BWRAP_ENV = "INTERLEAF_BWRAP"
"""Environment variable naming the bwrap program to use (default: ``bwrap`` on ``PATH``)."""

_BOOT_IN_SANDBOX = "/.interleaf/boot.py"

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


def bwrap_program() -> str | None:
    """The bwrap program to run: ``$INTERLEAF_BWRAP`` or ``bwrap``, found on ``PATH`` (None when absent)."""
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


def reexpose_pairs(paths: list[str]) -> list[tuple[str, str]]:
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
    for key, value in SAFE_ENV.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", *command]


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def bwrap_launch(bwrap: str, limits: SandboxLimits, command: list[str] | None) -> Launch:
    """bwrap mode's command line: bwrap itself, or (as root) boot's ``launch`` step that runs it as a
    throwaway uid. ``command`` replaces boot's ``run`` step (the availability probe)."""
    boot_fd = _memfd("interleaf-sandbox-boot", Path(BOOT_PATH).read_bytes())
    seccomp_fd = _memfd("interleaf-sandbox-seccomp", seccomp_program())
    launch = Launch(argv=[], fds=[boot_fd, seccomp_fd])
    if command is None:
        launch.report_r, report_w = os.pipe()
        launch.fds.append(report_w)
        cfg = sandbox_boot.BootConfig(
            mode="bwrap",
            workdir=sandbox_boot.SANDBOX_WORKDIR,
            limits=boot_limits(limits),
            report_fd=report_w,
            tmp_mb=limits.tmp_mb,
        )
        command = [sys.executable, "-I", _BOOT_IN_SANDBOX, "run", json.dumps(cfg)]
    launch.argv = _bwrap_argv(bwrap, limits, boot_fd, seccomp_fd, command)
    if os.geteuid() == 0:
        cfg_launch = sandbox_boot.LaunchConfig(
            uid=_SANDBOX_UID_BASE + secrets.randbelow(_SANDBOX_UID_SPAN),
            reexpose=reexpose_pairs(_interpreter_paths((os.path.dirname(bwrap),))),
            argv=launch.argv,
        )
        launch.argv = [sys.executable, "-I", BOOT_PATH, "launch", json.dumps(cfg_launch)]
    return launch


@functools.cache
def bwrap_problem() -> str | None:
    """Why bwrap mode cannot run here, or None when a probe sandbox started and exited cleanly."""
    bwrap = bwrap_program()
    if bwrap is None:
        return f"no `bwrap` program on PATH (or in ${BWRAP_ENV})"
    try:
        seccomp_program()
    except (ImportError, OSError, RuntimeError) as exc:
        return f"cannot build the seccomp filter (needs the pyseccomp package and libseccomp): {exc}"
    launch = bwrap_launch(bwrap, SandboxLimits(), [sys.executable, "-I", "-c", "pass"])
    try:
        probe = subprocess.run(
            launch.argv, capture_output=True, timeout=30, env=dict(SAFE_ENV), pass_fds=launch.fds, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the probe sandbox did not run: {exc}"
    finally:
        launch.close()
    if probe.returncode != 0:
        reason = probe.stderr.decode(errors="replace").strip()[-400:]
        return f"the probe sandbox failed (exit {probe.returncode}): {reason}"
    return None


def failed_to_start(stderr: str) -> bool:
    """bwrap's own errors, or the launch step's (before any of the code's output could exist)."""
    return stderr.startswith("bwrap: ") or "sandbox mount" in stderr or "sandbox_boot.py" in stderr


__all__ = ["BWRAP_ENV", "bwrap_launch", "bwrap_problem", "bwrap_program", "failed_to_start", "reexpose_pairs"]
