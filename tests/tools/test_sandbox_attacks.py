"""Attacks on the python tool, as a model (or whoever writes its prompts) would try them.

Each runs through the tool as an agent calls it, in the default (bwrap) mode, with small limits.
Each must come back as a model-facing ``ToolError`` whose text says what stopped it, leave the host
untouched, and leave no process of the sandbox alive once the call has returned. The attack code
prints its pid namespace first so the test can look for survivors from the host.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from interleaf.tools import SandboxLimits, ToolContext, ToolResult, Toolset, make_python_tool
from interleaf.tools.sandbox_bwrap import bwrap_problem, reexpose_pairs

pytestmark = pytest.mark.skipif(bwrap_problem() is not None, reason=f"bwrap mode unavailable: {bwrap_problem()}")

LIMITS = SandboxLimits(wall_s=20, cpu_s=5, memory_mb=256, processes=8, file_mb=1, tmp_mb=8, shm_mb=2)
PIDNS = "import os\nprint(os.readlink('/proc/self/ns/pid'), flush=True)\n"


async def attack(code: str, scratch: Path, limits: SandboxLimits = LIMITS) -> ToolResult:
    """Run ``code`` through the python tool; assert nothing of its sandbox outlives the call."""
    toolset = Toolset([make_python_tool(limits)])
    result = await toolset.call("python", {"code": PIDNS + code}, ToolContext(episode_id="attack", scratch_dir=scratch))
    namespace = result.content.removeprefix("stdout:\n").split("\n", 1)[0]
    assert namespace.startswith("pid:["), result.content
    assert _processes_in(namespace) == [], f"processes of {namespace} outlived the call"
    return result


def _processes_in(namespace: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def assert_tool_error(result: ToolResult, *expected: str) -> None:
    assert result.is_error and result.error_type == "ToolError", result
    for text in expected:
        assert text in result.content, result.content


@pytest.fixture
def listener():
    """A TCP server on the host's loopback that no sandboxed code may reach."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    with pytest.raises(BlockingIOError):
        server.accept()  # nobody connected
    server.close()


# --- network -------------------------------------------------------------------------------------


async def test_python_socket(tmp_path, listener):
    port = listener.getsockname()[1]
    result = await attack(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)", tmp_path)
    assert_tool_error(result, "PermissionError: [Errno 1] Operation not permitted")


async def test_ctypes_connect(tmp_path, listener):
    port = listener.getsockname()[1]
    code = (
        "import ctypes, socket, struct\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)\n"
        "if fd < 0:\n    raise OSError(ctypes.get_errno(), 'raw socket()')\n"
        f"addr = struct.pack('!HH4s8x', socket.AF_INET, {port}, bytes([127, 0, 0, 1]))\n"
        "addr = struct.pack('=H', socket.AF_INET) + addr[2:]\n"
        "if libc.connect(fd, addr, len(addr)) != 0:\n    raise OSError(ctypes.get_errno(), 'raw connect()')\n"
    )
    assert_tool_error(await attack(code, tmp_path), "PermissionError: [Errno 1] raw socket()")


async def test_dns(tmp_path):
    result = await attack("import socket\nsocket.getaddrinfo('example.com', 443)", tmp_path)
    assert_tool_error(result, "socket.gaierror")


# --- processes -----------------------------------------------------------------------------------


async def test_os_fork_bomb(tmp_path):
    code = (
        "import time\nforks = 0\n"
        "while True:\n"
        "    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)\n"
        "    forks += 1\n    print(forks, flush=True)\n"
    )
    result = await attack(code, tmp_path)
    assert_tool_error(result, "BlockingIOError: [Errno 11] Resource temporarily unavailable")
    forks = [int(line) for line in result.content.split("\n") if line.isdigit()]
    assert max(forks) < LIMITS.processes


async def test_ctypes_fork_bomb(tmp_path):
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "while True:\n"
        "    pid = libc.fork()\n"
        "    if pid == 0:\n        libc.pause()\n"
        "    if pid < 0:\n        raise OSError(ctypes.get_errno(), 'raw fork()')\n"
    )
    assert_tool_error(await attack(code, tmp_path), "BlockingIOError: [Errno 11] raw fork()")


async def test_posixsubprocess_fork_exec(tmp_path):
    """Starting a program is allowed (it is contained too); what it tries to reach is not there."""
    host_file = tmp_path / "host" / "pwned"
    host_file.parent.mkdir(mode=0o777)
    code = (
        "import _posixsubprocess, subprocess\n"
        "errpipe_read, errpipe_write = os.pipe()\n"
        f"args = [b'/bin/sh', b'-c', b'echo pwned > {host_file}']\n"
        "pid = _posixsubprocess.fork_exec(args, [args[0]], True, (errpipe_write,), None, None, -1, -1, -1, -1,"
        " -1, -1, errpipe_read, errpipe_write, True, False, -1, None, None, None, -1, None, False)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "if status:\n    raise PermissionError(f'the started program failed: wait status {status}')\n"
    )
    result = await attack(code, tmp_path)
    assert_tool_error(result, "Directory nonexistent", "the started program failed")
    assert not host_file.exists()


async def test_setsid_survivors_are_killed(tmp_path):
    code = (
        "import subprocess\n"
        "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "if os.fork() == 0:\n"  # a classic daemon: fork, setsid, fork
        "    os.setsid()\n"
        "    if os.fork() == 0:\n        import time\n        time.sleep(600)\n"
        "    os._exit(0)\n"
        "print('detached', flush=True)\n"
    )
    result = await attack(code, tmp_path)
    assert_tool_error(result, "detached", "Killed 2 process(es) still running when the code ended")


async def test_killing_the_parent(tmp_path):
    """The code's parent is the sandbox's init, which the kernel shields from its namespace's
    signals; the host's processes are not in its pid namespace at all."""
    code = (
        "os.kill(os.getppid(), 9)\n"
        "try:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    pass  # nobody else to kill\n"
        "print('parent', os.getppid(), 'still there', flush=True)\n"
        f"os.kill({os.getpid()}, 9)\n"
    )
    result = await attack(code, tmp_path)
    assert_tool_error(result, "parent 1 still there", "ProcessLookupError")


# --- resources -----------------------------------------------------------------------------------


async def test_memory_bomb(tmp_path):
    result = await attack("blocks = []\nwhile True:\n    blocks.append(bytearray(32 << 20))", tmp_path)
    assert_tool_error(result, "MemoryError")


@pytest.mark.parametrize(
    "code",
    [
        "os.memfd_create('m')",
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.shmget(0, 1 << 20, 0o1600) < 0:\n"
        "    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))",
    ],
    ids=["memfd_create", "shmget"],
)
async def test_memory_rlimit_as_does_not_count_is_refused(tmp_path, code):
    """A memfd's or a System V segment's pages outlive every mapping of them: a loop of them would pin
    host memory past processes x memory_mb. Both calls are refused (``open_files`` bounds the rest)."""
    result = await attack(code, tmp_path)
    assert_tool_error(result, "[Errno 1] Operation not permitted")


async def test_ctypes_callbacks_still_work_without_memfd(tmp_path):
    """libffi may place closures in a memfd; refused one, it falls back to other memory."""
    code = "import ctypes\nprint(ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)())"
    result = await attack(code, tmp_path)
    assert not result.is_error and result.content.split("\n")[2] == "7", result.content


async def test_infinite_loop(tmp_path):
    result = await attack("while True:\n    pass", tmp_path, LIMITS.model_copy(update={"cpu_s": 1, "wall_s": 60}))
    assert_tool_error(result, "CPU time limit of 1 s exceeded")


async def test_sleeping_loop_hits_the_wall_clock(tmp_path):
    toolset = Toolset([make_python_tool(LIMITS.model_copy(update={"wall_s": 1.5}))])
    result = await toolset.call(
        "python", {"code": "import time\ntime.sleep(600)"}, ToolContext(episode_id="wall", scratch_dir=tmp_path)
    )
    assert result.is_error and result.error_type == "ToolTimeout", result
    assert "exceeded the 1.5 s wall-clock limit" in result.content


@pytest.mark.parametrize("where", ["/tmp/work", "/tmp", "/dev/shm"])
async def test_disk_fill(tmp_path, where):
    code = f"i = 0\nwhile True:\n    open(f'{where}/fill{{i}}', 'wb').write(bytes(1 << 20))\n    i += 1\n"
    result = await attack(code, tmp_path / "scratch")
    assert_tool_error(result, "[Errno 28] No space left on device")
    kept = sum(f.stat().st_size for f in (tmp_path / "scratch").rglob("*") if f.is_file())
    assert kept <= LIMITS.tmp_mb << 20


# --- files ---------------------------------------------------------------------------------------


@pytest.fixture
def host_file(tmp_path) -> Path:
    """A world-writable host directory with a file in it, which must stay as it is."""
    directory = tmp_path / "host"
    directory.mkdir(mode=0o777)
    os.chmod(directory, 0o777)
    target = directory / "target.txt"
    target.write_text("original")
    os.chmod(target, 0o666)
    return target


ESCAPES = {
    "open": ("open({host!r}, 'a').write('pwned')", "FileNotFoundError"),
    "open a system file": ("open('/etc/ld.so.cache', 'a').write('pwned')", "Permission denied"),
    "dir_fd": (
        "fd = os.open('/usr/lib', os.O_RDONLY)\nos.open('pwned', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        "Read-only file system",
    ),
    "rename": ("open('mine', 'w').write('x')\nos.rename('mine', '/usr/lib/pwned')", "OSError: [Errno 18]"),
    "symlink": ("os.symlink({host!r}, 'link')\nopen('link', 'a').write('pwned')", "FileNotFoundError"),
    "symlink to a system file": ("os.symlink('/etc/ld.so.cache', 'link')\nopen('link', 'a')", "Permission denied"),
    "hard link": ("os.link('/usr/bin/env', 'env')", "OSError: [Errno 18]"),
}


@pytest.mark.parametrize("name", list(ESCAPES))
async def test_file_escape(tmp_path, host_file, name):
    code, expected = ESCAPES[name]
    scratch = tmp_path / "scratch"
    result = await attack(code.format(host=str(host_file)), scratch)
    assert_tool_error(result, expected)
    assert host_file.read_text() == "original" and sorted(os.listdir(host_file.parent)) == ["target.txt"]
    # A link out of the working directory is not copied back to the host's scratch dir either.
    assert not any(path.is_symlink() and not path.resolve().is_relative_to(scratch) for path in scratch.rglob("*"))


@pytest.mark.parametrize(
    "path",
    [
        "/proc/{host}/environ",
        "//proc/{host}/environ",
        "/proc/./{host}/../{host}/environ",
        "/proc/1/environ",
        "//proc/1/environ",
    ],
)
async def test_proc_environ(tmp_path, monkeypatch, path):
    monkeypatch.setenv("INTERLEAF_ATTACK_SECRET", "s3cr3t-value")
    result = await attack(f"print(open({path.format(host=os.getpid())!r}).read())", tmp_path)
    # The host's pids do not exist in the sandbox; its init (pid 1) is not readable by the code.
    assert_tool_error(result, "Error: [Errno")
    assert "s3cr3t-value" not in result.content


# --- privileges ----------------------------------------------------------------------------------


def _setuid_root_binary() -> str | None:
    for name in ("passwd", "chfn", "gpasswd", "newgrp", "mount", "su"):
        path = shutil.which(name, path="/usr/bin:/bin")
        if path and os.stat(path).st_uid == 0 and os.stat(path).st_mode & stat.S_ISUID:
            return path
    return None


async def test_setuid_binaries_give_nothing(tmp_path):
    binary = _setuid_root_binary()
    if binary is None:
        pytest.skip("no setuid-root program on this host")
    # glibc prints the kernel's auxiliary vector: AT_EUID is the uid the program really got, and a
    # setuid exec would also have AT_SECURE 1 (and drop LD_SHOW_AUXV).
    code = (
        "import subprocess\n"
        f"run = subprocess.run([{binary!r}, '--help'], env={{'LD_SHOW_AUXV': '1'}}, capture_output=True, text=True)\n"
        "out = run.stdout\n"
        "aux = dict(line.split(':', 1) for line in out.splitlines() if line.startswith('AT_'))\n"
        "euid, secure = int(aux['AT_EUID']), int(aux['AT_SECURE'])\n"
        "if euid != 0 and not secure:\n"
        f"    raise PermissionError(f'{binary} ran as euid {{euid}}, AT_SECURE {{secure}}: setuid had no effect')\n"
    )
    assert_tool_error(await attack(code, tmp_path), "setuid had no effect")


async def test_unshare(tmp_path):
    code = (
        "import subprocess\n"
        "done = subprocess.run(['unshare', '-Ur', 'id', '-u'], capture_output=True, text=True)\n"
        "assert done.returncode == 0, done.stderr\n"
    )
    assert_tool_error(await attack(code, tmp_path), "unshare failed: Operation not permitted")


async def test_ctypes_unshare_and_mount(tmp_path):
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.unshare(0x10000000 | 0x00020000) != 0:\n"  # CLONE_NEWUSER | CLONE_NEWNS
        "    raise OSError(ctypes.get_errno(), 'raw unshare()')\n"
    )
    assert_tool_error(await attack(code, tmp_path), "PermissionError: [Errno 1] raw unshare()")


# --- an unprivileged host ------------------------------------------------------------------------

_UNPRIVILEGED_PROBE = """
import asyncio, json, sys
from interleaf.tools.sandbox import SandboxLimits, containment_mode, run_python

async def main():
    limits = SandboxLimits(wall_s=20, memory_mb=256, processes=8, tmp_mb=8)
    codes = {
        "whoami": "import os; print(os.getuid(), open('/proc/self/status').read().count('NoNewPrivs:\\t1'))",
        "network": "import socket; socket.create_connection(('127.0.0.1', 9))",
        "write": "open('/usr/pwned', 'w')",
        "fill": "import itertools\\nfor i in itertools.count(): open(f'f{i}', 'wb').write(bytes(1 << 20))",
        "unshare": "import subprocess; print(subprocess.run(['unshare', '-Ur', 'true']).returncode)",
    }
    out = {name: (await run_python(code, sys.argv[1], limits)).model_dump() for name, code in codes.items()}
    print(json.dumps({"mode": containment_mode(), "runs": out}))

asyncio.run(main())
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to become another user")
def test_the_default_holds_for_an_unprivileged_host_user():
    """The same isolation without root: an unprivileged uid runs interleaf (the interpreter's
    closed parents, e.g. /root, exposed again in a private mount namespace so it can start)."""
    uid = 54_321
    scratch = Path(tempfile.mkdtemp(prefix="interleaf-unprivileged-"))
    try:
        os.chmod(scratch, 0o777)
        mounts = "".join(
            f"d=$(mktemp -d) && mount --bind {child} $d && mount -t tmpfs -o mode=755 tmpfs {parent} && "
            f"mkdir {child} && mount --move $d {child} && "
            for parent, child in reexpose_pairs([sys.prefix, sys.base_prefix])
        )
        command = (
            f'{mounts}exec setpriv --reuid {uid} --regid {uid} --clear-groups {sys.executable} -c "$PROBE" {scratch}'
        )
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
            env={"PATH": os.environ["PATH"], "PROBE": _UNPRIVILEGED_PROBE, "HOME": str(scratch)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    runs = report["runs"]
    assert report["mode"] == "bwrap"
    assert runs["whoami"]["stdout"] == "1000 1\n" and runs["whoami"]["mode"] == "bwrap"
    assert "Operation not permitted" in runs["network"]["stderr"]
    assert "Read-only file system" in runs["write"]["stderr"]
    assert "No space left on device" in runs["fill"]["stderr"]
    assert "Operation not permitted" in runs["unshare"]["stderr"] and runs["unshare"]["stdout"] == "1\n"
