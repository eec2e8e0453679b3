"""The python sandbox's behaviour in each mode; the attacks are in test_sandbox_attacks.py."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import os
import tarfile
import threading
from pathlib import Path

import pytest

from interleaf.tools import SandboxLimits, run_python, sandbox_boot
from interleaf.tools import sandbox as sandbox_module
from interleaf.tools.sandbox import SandboxUnavailable, containment_mode
from interleaf.tools.sandbox_bwrap import bwrap_problem
from interleaf.tools.sandbox_workdir import unpack_report
from tests.waiting import wait_until_async

BWRAP = bwrap_problem() is None
MODES = ["bwrap", "plain"] if BWRAP else ["plain"]
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"bwrap mode unavailable: {bwrap_problem()}")

SMALL = SandboxLimits(wall_s=5, cpu_s=2, memory_mb=256, processes=8, file_mb=1, tmp_mb=8)


@pytest.mark.parametrize("mode", MODES)
async def test_runs_code_and_reports_both_streams(tmp_path, mode):
    run = await run_python("import sys\nprint('out')\nprint('err', file=sys.stderr)", tmp_path, SMALL, mode=mode)
    assert (run.stdout, run.stderr, run.exit_code, run.mode, run.killed_processes) == ("out\n", "err\n", 0, mode, 0)
    assert run.sandbox_fusion_text() == "stdout:\nout\n\n\nstderr:\nerr\n"


@pytest.mark.parametrize("mode", MODES)
async def test_files_in_the_working_directory_persist_between_calls(tmp_path, mode):
    first = "import os\nos.mkdir('d')\nopen('d/a.txt', 'w').write('kept')\nopen('gone.txt', 'w').write('x')\n"
    assert (await run_python(first, tmp_path, SMALL, mode=mode)).exit_code == 0
    second = "import os\nprint(open('d/a.txt').read())\nos.remove('gone.txt')\nprint(os.getcwd() == os.environ['HOME'])"
    run = await run_python(second, tmp_path, SMALL, mode=mode)
    assert run.stdout == "kept\nTrue\n", run
    assert (tmp_path / "d" / "a.txt").read_text() == "kept" and not (tmp_path / "gone.txt").exists()


@pytest.mark.parametrize("mode", MODES)
async def test_no_network(tmp_path, mode):
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('blocked:', exc)\n"
    )
    run = await run_python(code, tmp_path, SMALL, mode=mode)
    assert run.stdout.startswith("blocked:") and "CONNECTED" not in run.stdout
    expected = "Operation not permitted" if mode == "bwrap" else "not allowed in the sandbox"
    assert expected in run.stdout


@pytest.mark.parametrize("mode", MODES)
async def test_env_secrets_not_visible(tmp_path, mode, monkeypatch):
    monkeypatch.setenv("INTERLEAF_TEST_SECRET", "s3cr3t-value")
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "print(os.environ.get('INTERLEAF_TEST_SECRET'))\n"
        f"try:\n    print(open('/proc/{os.getpid()}/environ').read())\n"
        "except OSError as exc:\n    print('environ blocked:', type(exc).__name__)\n"
    )
    run = await run_python(code, tmp_path, SMALL, mode=mode)
    assert "s3cr3t-value" not in run.stdout + run.stderr
    assert "environ blocked" in run.stdout
    assert "INTERLEAF_TEST_SECRET" not in run.stdout


@pytest.mark.parametrize("mode", MODES)
async def test_cannot_write_outside_its_dir(tmp_path, mode):
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    os.chmod(host_dir, 0o777)  # even a world-writable host dir must stay untouched
    target = host_dir / "pwned.txt"
    code = (
        f"for path in [{str(target)!r}, '/var/tmp/pwned.txt', '/usr/pwned.txt']:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, type(exc).__name__)\n"
        "open('mine.txt', 'w').write('ok')\n"
        "print(open('mine.txt').read())\n"
    )
    run = await run_python(code, tmp_path / "work", SMALL, mode=mode)
    assert "WROTE" not in run.stdout, run.stdout
    assert run.stdout.count("refused") == 3 and run.stdout.endswith("ok\n")
    assert not target.exists()
    assert not Path("/var/tmp/pwned.txt").exists() and not Path("/usr/pwned.txt").exists()
    assert (tmp_path / "work" / "mine.txt").read_text() == "ok"


@pytest.mark.parametrize("mode", MODES)
async def test_memory_bomb(tmp_path, mode):
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n"
    run = await run_python(code, tmp_path, SMALL, mode=mode)
    assert run.exit_code != 0 and not run.timed_out
    assert "MemoryError" in run.stderr


@pytest.mark.parametrize("mode", MODES)
async def test_infinite_loop_stops_at_cpu_limit(tmp_path, mode):
    # A generous wall clock: on a busy machine one CPU-second can take several seconds of wall time.
    limits = SMALL.model_copy(update={"cpu_s": 1, "wall_s": 60})
    run = await run_python("while True:\n    pass\n", tmp_path, limits, mode=mode)
    assert run.exit_code is not None and run.exit_code < 0 and not run.timed_out
    assert "CPU time limit of 1 s exceeded" in run.stderr


@pytest.mark.parametrize("mode", MODES)
async def test_sleeping_forever_hits_the_wall_clock(tmp_path, mode):
    limits = SMALL.model_copy(update={"wall_s": 1.0})
    run = await run_python("import time\nprint('started', flush=True)\ntime.sleep(60)\n", tmp_path, limits, mode=mode)
    assert run.timed_out and run.exit_code is None
    assert run.stdout == "started\n"
    assert "exceeded the 1 s wall-clock limit" in run.stderr


@pytest.mark.parametrize("mode", MODES)
async def test_big_file_and_output_flood(tmp_path, mode):
    code = "import sys\nsys.stdout.write('y' * 3_000_000)\nopen('big', 'wb').write(b'x' * (2 << 20))\n"
    limits = SMALL.model_copy(update={"output_bytes": 4096})
    run = await run_python(code, tmp_path, limits, mode=mode)
    # The first three quarters of output_bytes and the last quarter (how output ends matters most).
    assert run.stdout == "y" * 3072 + f"\n[... {3_000_000 - 4096} more bytes of output dropped ...]\n" + "y" * 1024
    assert "File too large" in run.stderr
    assert (tmp_path / "big").stat().st_size <= 1 << 20


async def test_plain_mode_as_root_refuses_fork(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("non-root plain mode relies on RLIMIT_NPROC instead")
    run = await run_python("import os\nos.fork()\n", tmp_path, SMALL, mode="plain")
    assert run.exit_code == 1 and "os.fork is not allowed" in run.stderr


@pytest.mark.parametrize("mode", MODES)
async def test_traceback_points_at_user_code(tmp_path, mode):
    run = await run_python("x = 1\ny = x / 0\n", tmp_path, SMALL, mode=mode)
    assert run.exit_code == 1
    assert 'File "<python>", line 2' in run.stderr and "y = x / 0" in run.stderr
    assert "ZeroDivisionError" in run.stderr and "boot" not in run.stderr


def test_plain_is_never_chosen_silently(monkeypatch, caplog):
    """Without bwrap the default refuses, naming the fix and what plain would not contain."""
    monkeypatch.delenv(sandbox_module.MODE_ENV, raising=False)
    monkeypatch.setattr(sandbox_module, "bwrap_problem", lambda: "no `bwrap` program on PATH")
    with pytest.raises(SandboxUnavailable, match="no `bwrap` program on PATH") as refused:
        containment_mode()
    assert "apt-get install bubblewrap" in str(refused.value) and "INTERLEAF_SANDBOX_MODE=plain" in str(refused.value)
    with pytest.raises(SandboxUnavailable):
        containment_mode("bwrap")
    sandbox_module._warn_plain.cache_clear()
    with caplog.at_level(logging.WARNING, logger="interleaf.tools.sandbox"):
        assert containment_mode("plain") == "plain"
    assert "does NOT contain untrusted code" in caplog.text and "ctypes" in caplog.text
    monkeypatch.setenv(sandbox_module.MODE_ENV, "plain")
    assert containment_mode() == "plain"
    monkeypatch.setenv(sandbox_module.MODE_ENV, "chroot")
    with pytest.raises(SandboxUnavailable, match="INTERLEAF_SANDBOX_MODE='chroot' is not a sandbox mode"):
        containment_mode()


@needs_bwrap
def test_bwrap_is_the_default(monkeypatch):
    monkeypatch.delenv(sandbox_module.MODE_ENV, raising=False)
    assert containment_mode() == "bwrap"


@needs_bwrap
async def test_bwrap_sets_no_new_privs_seccomp_nosuid_and_drops_capabilities(tmp_path):
    code = (
        "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "print(status['NoNewPrivs'].strip(), status['Seccomp'].strip(), status['CapEff'].strip())\n"
        "mounts = [line.split()[4:6] for line in open('/proc/self/mountinfo')]\n"
        "print(all('nosuid' in opts for _, opts in mounts))\n"
        "print(sorted(path for path, opts in mounts if opts.startswith('rw')))\n"
    )
    run = await run_python(code, tmp_path, SMALL)
    flags, nosuid, writable = run.stdout.splitlines()
    assert flags == "1 2 0000000000000000"  # no_new_privs, a seccomp filter, no capabilities
    assert nosuid == "True"
    # Writable: the two quota'd tmpfs, and the kernel's own /proc, /dev/pts and device nodes.
    devices = {f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom", "tty", "pts")}
    assert {"/tmp", "/dev/shm"} <= set(ast.literal_eval(writable)) <= {"/tmp", "/dev/shm", "/proc", *devices}


@needs_bwrap
async def test_bwrap_runs_as_an_unprivileged_host_uid(tmp_path):
    """bwrap never runs as host root (inside its user namespace, root-owned files such as
    /proc/sys would belong to the code); the code's processes belong to a throwaway uid."""
    run_task = asyncio.create_task(
        run_python(
            "import time\nprint('up', flush=True)\ntime.sleep(60)", tmp_path, SMALL.model_copy(update={"wall_s": 20})
        )
    )
    try:

        def sandboxed_uids() -> set[int]:
            uids = set()
            for entry in os.listdir("/proc"):
                try:
                    if Path(f"/proc/{entry}/cmdline").read_text().split("\0")[1:3] == ["-I", "/.interleaf/boot.py"]:
                        uids.add(os.stat(f"/proc/{entry}").st_uid)
                except (OSError, UnicodeDecodeError):
                    pass
            return uids

        uids = await wait_until_async(sandboxed_uids, message="the sandbox's processes to appear", timeout_s=15)
        assert 0 not in uids and (os.geteuid() == 0 or uids == {os.geteuid()})
    finally:
        run_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run_task


@needs_bwrap
async def test_working_directory_over_quota_is_refused_clearly(tmp_path):
    (tmp_path / "huge").write_bytes(b"x" * (SMALL.tmp_mb + 1 << 20))
    run = await run_python("print('never')", tmp_path, SMALL)
    assert run.exit_code == 1 and "does not fit in the sandbox's /tmp quota" in run.stderr
    assert (tmp_path / "huge").exists()  # the host's copy is untouched


# --- what comes back to the host ----------------------------------------------------------------------


@needs_bwrap
async def test_sparse_files_come_back_within_the_quota_and_the_next_call_runs(tmp_path):
    """Sparse files take no tmpfs space but are written out in full on the host: they are counted at
    their apparent size, and what would pass ``tmp_mb`` is left out, so the directory fits next call."""
    code = "for i in range(3):\n    open(f's{i}', 'wb').truncate(3 << 20)\nopen('small', 'w').write('kept')\n"
    limits = SMALL.model_copy(update={"file_mb": 8})
    run = await run_python(code, tmp_path, limits)
    assert run.exit_code == 0, run
    assert "s2 (3145728 bytes: past the 8 MiB /tmp quota)" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0", "s1", "small"]
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= SMALL.tmp_mb << 20
    again = await run_python("import os\nprint(sorted(os.listdir()))", tmp_path, limits)
    assert again.exit_code == 0 and again.stdout == "['s0', 's1', 'small']\n", again


def test_the_host_keeps_no_more_than_the_quota_of_a_report(tmp_path):
    """The host's own check, whatever the sandbox sent: files past the budget are left out, with a note."""
    report = io.BytesIO()
    report.write(
        json.dumps({"killed": 0, "skipped": ["deep/... (nested deeper than 64 directories)"]}).encode() + b"\n"
    )
    with tarfile.open(fileobj=report, mode="w|") as tar:
        for name, size in (("a", 600_000), ("b", 600_000), ("c", 10)):
            info = tarfile.TarInfo(f"{sandbox_boot.WORK_MEMBER}/{name}")
            info.size = size
            tar.addfile(info, io.BytesIO(b"x" * size))
    killed, note = unpack_report(report, tmp_path, 1 << 20)
    assert killed == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["a", "c"]
    assert note == (
        "Note: not kept in the working directory: deep/... (nested deeper than 64 directories), "
        "b (600000 bytes: past the 1 MiB /tmp quota)"
    )


@needs_bwrap
async def test_a_very_deep_working_directory_is_cut_and_the_codes_result_kept(tmp_path):
    code = (
        "import os\nopen('top.txt', 'w').write('top')\n"
        "for _ in range(1200):\n    os.mkdir('a')\n    os.chdir('a')\n"
        "open('bottom.txt', 'w').write('bottom')\nprint('done')\n"
    )
    run = await run_python(code, tmp_path, SMALL)
    assert (run.exit_code, run.stdout) == (0, "done\n"), run
    assert f"(nested deeper than {sandbox_boot.MAX_DEPTH} directories)" in run.stderr
    assert "Traceback" not in run.stderr and (tmp_path / "top.txt").read_text() == "top"
    depth = max(len(Path(path).relative_to(tmp_path).parts) for path, _, _ in os.walk(tmp_path))
    assert depth == sandbox_boot.MAX_DEPTH
    again = await run_python("print(open('top.txt').read())", tmp_path, SMALL)
    assert again.stdout == "top\n"


@pytest.mark.parametrize("mode", MODES)
async def test_runs_while_the_loops_default_executor_is_busy(tmp_path, mode):
    """Sync tools abandoned after a timeout used to hold the default executor's few workers; the
    sandbox's own file copies do not queue behind them."""
    release = threading.Event()
    loop = asyncio.get_running_loop()
    busy = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]
    try:
        run = await asyncio.wait_for(run_python("print('ran')", tmp_path, SMALL, mode=mode), 20)
        assert run.stdout == "ran\n"
    finally:
        release.set()
        await asyncio.gather(*busy)


@needs_bwrap
async def test_the_sandbox_has_few_descriptors(tmp_path):
    run = await run_python("import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))", tmp_path, SMALL)
    assert run.stdout == f"({SMALL.open_files}, {SMALL.open_files})\n"


async def test_plain_mode_says_it_reads_any_host_file(tmp_path):
    """The gap is real, so the warning names it first."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's")
    run = await run_python(f"print(open({str(secret)!r}).read())", tmp_path / "work", SMALL, mode="plain")
    assert run.stdout == "the host's\n"
    assert sandbox_module.PLAIN_GAPS.startswith("the code can read any file this user can read")
