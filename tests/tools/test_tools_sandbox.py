"""Containment of the python sandbox: each attack gets a clear result and leaves the host unharmed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interleaf.tools import SandboxLimits, run_python
from interleaf.tools.sandbox import _namespace_available, _sandbox_uid

MODES = ["namespace", "plain"] if _namespace_available() else ["plain"]
needs_namespace = pytest.mark.skipif(not _namespace_available(), reason="needs root and unshare")

SMALL = SandboxLimits(wall_s=5, cpu_s=2, memory_mb=256, processes=8, file_mb=1)


def _sandbox_pids(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except FileNotFoundError:
                pass
    return pids


@pytest.mark.parametrize("mode", MODES)
async def test_runs_code_and_reports_both_streams(tmp_path, mode):
    run = await run_python("import sys\nprint('out')\nprint('err', file=sys.stderr)", tmp_path, SMALL, mode=mode)
    assert (run.stdout, run.stderr, run.exit_code, run.mode) == ("out\n", "err\n", 0, mode)
    assert run.sandbox_fusion_text() == "stdout:\nout\n\n\nstderr:\nerr\n"


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
    expected = "Network is unreachable" if mode == "namespace" else "not allowed in the sandbox"
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
        f"for path in [{str(target)!r}, '/var/tmp/pwned.txt', '/dev/shm/pwned.txt']:\n"
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
    assert not Path("/var/tmp/pwned.txt").exists() and not Path("/dev/shm/pwned.txt").exists()
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
    assert run.stdout.startswith("y" * 4096) and "more bytes of output dropped" in run.stdout
    assert "File too large" in run.stderr
    assert (tmp_path / "big").stat().st_size <= 1 << 20


@needs_namespace
async def test_fork_bomb_is_capped_and_cleaned_up(tmp_path):
    # Verify the cap first, with processes that just sleep: at most `processes` may exist.
    probe = (
        "import os, time\nn = 0\n"
        "for _ in range(40):\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(2)\n        os._exit(0)\n"
        "    n += 1\n"
        "print(n)\n"
    )
    run = await run_python(probe, tmp_path, SMALL, mode="namespace")
    assert 0 < int(run.stdout) < SMALL.processes, run
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    limits = SMALL.model_copy(update={"wall_s": 1.5})
    run = await run_python(bomb, tmp_path, limits, mode="namespace")
    assert run.timed_out
    uid = _sandbox_uid(tmp_path)
    assert _sandbox_pids(uid) == []  # the pid namespace took every descendant with it


async def test_plain_mode_as_root_refuses_fork(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("non-root plain mode relies on RLIMIT_NPROC instead")
    run = await run_python("import os\nos.fork()\n", tmp_path, SMALL, mode="plain")
    assert run.exit_code == 1 and "os.fork is not allowed" in run.stderr


async def test_traceback_points_at_user_code(tmp_path):
    run = await run_python("x = 1\ny = x / 0\n", tmp_path, SMALL)
    assert run.exit_code == 1
    assert 'File "<python>", line 2' in run.stderr and "y = x / 0" in run.stderr
    assert "ZeroDivisionError" in run.stderr and "_BOOT" not in run.stderr and "sandbox_boot" not in run.stderr


@needs_namespace
async def test_runs_as_a_foreign_uid_that_code_cannot_change(tmp_path):
    work = tmp_path / "python"
    run = await run_python("import os\nprint(os.getuid())\nopen('.python.sandbox-uid', 'w').write('0')\n", work, SMALL)
    uid = int(run.stdout)
    assert uid == _sandbox_uid(work) and uid >= 200_000
    again = await run_python("import os\nprint(os.getuid())\n", work, SMALL)
    assert int(again.stdout) == uid  # the record beside the dir, not the file the code wrote, decides
