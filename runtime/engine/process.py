"""Run the embedded engine as a child process (the embedded default of ``interleaf run``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from interleaf.runtime.child_process import die_with_parent, free_port


class EngineProcess:
    """``python -m interleaf.runtime.engine`` on a free loopback port; a context manager."""

    def __init__(self, *args: str, port: int | None = None, startup_timeout_s: float = 300.0):
        self.port = port or free_port()
        self._log = tempfile.NamedTemporaryFile(prefix="interleaf-engine-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [sys.executable, "-m", "interleaf.runtime.engine", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy(), preexec_fn=die_with_parent
        )
        self._wait_ready(startup_timeout_s)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return self._log.name

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = Path(self._log.name).read_text()[-3000:]
                raise RuntimeError(f"engine exited with code {self.proc.returncode} during startup:\n{tail}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"engine on {self.url} not healthy after {timeout_s} s; log: {self._log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
