"""``interleaf run`` end to end (subprocess) against the embedded engine, and the embedded defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from interleaf.runtime.jobs.embedded import EmbeddedServices


def test_embedded_services_start_private_redis_and_keep_given_urls() -> None:
    with EmbeddedServices(["http://127.0.0.1:1"]) as svc:
        assert svc.backend_urls == ["http://127.0.0.1:1"] and not svc.engine_started
        assert svc.redis_url and redis.Redis.from_url(svc.redis_url).ping()
        url = svc.redis_url
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    with EmbeddedServices(["http://127.0.0.1:1"], "redis://127.0.0.1:2/0") as svc:
        assert svc.redis_url == "redis://127.0.0.1:2/0" and svc.redis is None


@pytest.mark.model
@pytest.mark.slow
def test_interleaf_run_cli(engine_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "INTERLEAF_RUNS_DIR": str(tmp_path), "RAY_AUTH_MODE": "disabled", "COLUMNS": "120"}
    cmd = [
        sys.executable, "-c", "from interleaf.cli import main; main()",
        "run", "--suite", "arith", "--n", "2", "--concurrency", "2", "--backend", engine_url,
        "--max-turns", "2", "--max-new-tokens", "24", "--job-id", "cli-test",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("accuracy", "mean turns", "tool calls", "cache hit rate", "recomputed tokens", "wall time"):
        assert label in proc.stdout
    path = tmp_path / "cli-test" / "trajectories.jsonl"
    assert f"trajectories: {path}" in proc.stdout.replace("\n", "")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["episode"] for r in rows] == [0, 1] and all(r["turns"] for r in rows)
