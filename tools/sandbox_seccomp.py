"""The python sandbox's seccomp filter: the system calls bwrap mode refuses the code (with EPERM), as the
classic BPF program bwrap loads after setting no_new_privs."""

from __future__ import annotations

import contextlib
import errno
import functools
import socket
import tempfile
import termios

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
    # Memory that RLIMIT_AS does not count: a memfd's pages and a System V segment's outlive every
    # mapping of them, so a loop of them pins host memory past processes x memory_mb (POSIX shared
    # memory lives in the size-capped /dev/shm instead).
    "memfd_create", "memfd_secret", "shmget",
)  # fmt: skip
_CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET."""


@functools.cache
def seccomp_program() -> bytes:
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


__all__ = ["seccomp_program"]
