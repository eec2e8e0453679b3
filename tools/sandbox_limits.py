"""The python sandbox's resource limits: what a caller may set (``SandboxLimits``), the rlimits the boot
program applies from them, and the note that tells the code which limit killed it."""

from __future__ import annotations

import signal

from pydantic import BaseModel, Field

from interleaf.tools import sandbox_boot


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
    open_files: int = Field(default=256, ge=16)
    """RLIMIT_NOFILE per process: open descriptors, which also bounds the kernel buffers (pipes,
    sockets) a process can hold beyond ``memory_mb``."""
    tmp_mb: int = Field(default=64, ge=1)
    """bwrap mode: size of the private ``/tmp``, which holds the working directory: the most the code
    can write, in MiB (files it writes to ``/dev/shm`` come on top, up to ``shm_mb``)."""
    shm_mb: int = Field(default=16, ge=1)
    """bwrap mode: size of the private ``/dev/shm`` (POSIX shared memory, multiprocessing's locks)."""
    output_bytes: int = Field(default=1_000_000, ge=1024)
    """Bytes kept from each of stdout and stderr; the rest is read and dropped."""


def boot_limits(limits: SandboxLimits) -> sandbox_boot.BootLimits:
    """``limits`` as the boot program reads them (it sets these rlimits before running the code)."""
    return sandbox_boot.BootLimits(
        cpu_s=limits.cpu_s,
        memory_mb=limits.memory_mb,
        file_mb=limits.file_mb,
        processes=limits.processes,
        open_files=limits.open_files,
    )


def limit_note(code: int | None, limits: SandboxLimits) -> str:
    """What a run that ended with exit status ``code`` (negative: a signal) ran into; empty when nothing."""
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


__all__ = ["SandboxLimits", "boot_limits", "limit_note"]
