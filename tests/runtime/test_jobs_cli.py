"""``interleaf run``: its options (the JobSpec fields) and errors in-process, end to end (subprocess) against
the embedded engine, and the embedded defaults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import typer
from typer.testing import CliRunner

from interleaf.commands import run as run_command
from interleaf.runtime.jobs import JobSpec
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


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("run")(run_command.run)
    app.command("noop")(lambda: None)  # keeps "run" a subcommand
    return app


def test_documented_run_commands_parse_into_job_specs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runs: list[tuple[JobSpec, dict]] = []
    monkeypatch.setattr(run_command, "run_spec", lambda spec, **kw: runs.append((spec, kw)) or 0)
    tasks = tmp_path / "math500.jsonl"
    tasks.write_text('{"question": "1+1?", "answer": "2"}\n')
    commands = [  # README.md and docs/jobs.md
        "--suite arith --n 8 --concurrency 8 --max-turns 4",
        "--suite lookup --n 20 --retention session --backend http://127.0.0.1:30000",
        "--suite lookup --n 50 --backend http://gpu-1:30000 --backend http://gpu-2:30000 --retention adaptive "
        "--ray-address auto",
        f"--suite {tasks} --n 500 --max-turns 6 --max-new-tokens 512 --engine-arg=--executor=sim",
    ]
    for args in commands:
        result = CliRunner().invoke(cli(), ["run", *args.split()])
        assert result.exit_code == 0, result.output
    specs = [spec for spec, _ in runs]
    assert specs[0] == JobSpec(suite="arith", n=8, concurrency=8, max_turns=4)
    assert specs[1] == JobSpec(suite="lookup", n=20, retention="session", backend_urls=["http://127.0.0.1:30000"])
    assert specs[2].backend_urls == ["http://gpu-1:30000", "http://gpu-2:30000"] and runs[2][1]["ray_address"] == "auto"
    assert (specs[3].suite, specs[3].n, specs[3].max_turns, specs[3].max_new_tokens) == (str(tasks), 500, 6, 512)
    assert runs[3][1]["engine_args"] == ["--executor=sim"]


def test_run_rejects_a_bad_spec_before_starting_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_command, "run_spec", lambda spec, **kw: pytest.fail(f"started with {spec}"))

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli(), ["run", *args])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        return " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # unwrap rich's error box

    out = invoke("--suite", "no-such-suite")
    assert "Invalid value for '--suite': JobSpec.suite='no-such-suite' is not a registered suite" in out
    assert "arith" in out and "Traceback" not in out
    out = invoke("--n", "0", "--agent", "nobody")
    assert "'--n', '--agent'" in out and "got 0" in out and "JobSpec.agent='nobody'" in out
    assert "'forever'" in invoke("--retention", "forever")
