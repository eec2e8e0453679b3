"""The ``interleaf`` command line as users meet it: ``--version``, user errors as one line on stderr
with exit 2, and a real ``interleaf run --json`` against an engine without streaming sessions, with its
OpenTelemetry export captured by a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import interleaf
from interleaf.cli import main
from interleaf.runtime.child_process import free_port
from tests.conftest import start_engine, stop_process


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert (code, out) == (0, f"interleaf {interleaf.__version__}\n")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--retention", "forever"], "'forever' is not one of 'none', 'session', 'ttl', 'adaptive'"),
        (
            ["run", "--n", "0", "--concurrency", "0"],
            "'--n', '--concurrency': --n: Input should be greater than or equal to 1, got 0; --concurrency: Input",
        ),
        (["run", "--suite", "no-such-suite"], "'no-such-suite' is not a registered suite"),
        (["run", "--admission", "fcfs"], "'fcfs' is not one of 'defer', 'strict', 'off'"),
        (["run", "--admission-overcommit", "0"], "--admission-overcommit: Input should be greater than 0, got 0.0"),
        (["tools", "list", "nosuchmod:x"], "no module named 'nosuchmod'"),
        (["tools", "list", "interleaf.tools:nothing"], "has no attribute 'nothing'"),
        (["report", "no-such-file.jsonl"], "no-such-file.jsonl"),
        (["report", "runs/nope/trajectories.jsonl"], "no such file: 'runs/nope/trajectories.jsonl' (pass a"),
        (["report", "nope-job"], "no job 'nope-job' in the runs directory"),
        (["run", "--n", "2.5"], "Invalid value for '--n' / '-n': Input should be a valid integer, got '2.5'"),
        (["run", "--temperature", "hot"], "Input should be a valid number, got 'hot'"),
        (["jobs", "submit", "--n", "2.5"], "Input should be a valid integer, got '2.5'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["jobs", "submit", "--server", "localhost:8080"], "give the server's base URL"),
        (["engine", "serve", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["engine", "serve", "--mem-fraction-static", "2"], "--mem-fraction-static 2.0: Input should be less than 1"),
        (["serve", "--host", "0.0.0.0", "--port", "1"], "'0.0.0.0' is not loopback and no --token is set"),
        (["engine", "serve", "--max-running-requests", "0"], "--max-running-requests 0: Input should be greater"),
        (["engine", "serve", "--chunked-prefill-size", "0"], "--chunked-prefill-size 0: Input should be greater"),
        (["engine", "serve", "--session-timeout", "nan"], "--session-timeout nan: Input should be a finite number"),
    ],
)
def test_user_errors_are_one_line_on_stderr_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert says in err and err.startswith("interleaf")
    assert "Traceback" not in err and "https://" not in err and "╭" not in err


@pytest.mark.parametrize(
    ("argv", "variable"),
    [
        (["run", "--n", "1"], "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (["serve", "--port", "1"], "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
    ],
)
def test_an_otlp_protocol_interleaf_cannot_export_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], variable: str
) -> None:
    monkeypatch.setenv(variable, "grpc")
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"{variable}='grpc' is not supported" in err and "http/protobuf" in err


def test_report_names_a_missing_path_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "report", "runs/nope/trajectories.jsonl")
    assert code == 2 and "runs/runs" not in err and "trajectories.jsonl/trajectories.jsonl" not in err, err


def test_serve_names_a_bad_body_limit_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERLEAF_MAX_BODY_BYTES", "10")
    code, out, err = run_cli(capsys, "serve", "--no-worker", "--redis-url", "redis://127.0.0.1:9/0")
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1, err
    assert "INTERLEAF_MAX_BODY_BYTES='10': Input should be greater than or equal to 1024" in err
    assert "validation error" not in err and "input_type" not in err


@pytest.mark.slow
def test_run_names_why_episodes_failed_and_exits_1_when_all_did(tmp_path: Path) -> None:
    """A backend nobody listens on: the job "succeeds" (every episode has a result), but every result
    is an error; the reason is printed once with its count, and the exit status says it."""
    exe = shutil.which("interleaf")
    assert exe
    env = {**os.environ, "INTERLEAF_RUNS_DIR": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    cmd = [exe, "run", "--n", "2", "--backend", "http://127.0.0.1:1", "--max-turns", "1", "--json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("interleaf run: ")]
    assert len(lines) == 2, done.stderr[-3000:]
    assert lines[0].startswith("interleaf run: 2 episodes ended in error: ") and "127.0.0.1:1" in lines[0]
    assert lines[1] == "interleaf run: every episode (2) ended in error"
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and [e["episodes"] for e in result["episode_errors"]] == [2]


def test_sandbox_unavailable_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERLEAF_SANDBOX_MODE", "bogus")
    code, out, err = run_cli(capsys, "tools", "sandbox")
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and "INTERLEAF_SANDBOX_MODE='bogus'" in err


def test_the_console_script_exits_2_without_a_traceback() -> None:
    exe = shutil.which("interleaf")
    assert exe, "the interleaf console script is installed by scripts/install.sh"
    done = subprocess.run([exe, "tools", "list", "nosuchmod:x"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "interleaf tools list: Invalid value for TOOLSET: toolset 'nosuchmod:x': no module named 'nosuchmod' "
        "(is it installed, or on PYTHONPATH?) (see 'interleaf tools list --help')"
    ]


# -- a real run: capability line, requested vs effective retention, live OTLP spans ------------------


@pytest.fixture(scope="module")
def engine_without_sessions() -> Iterator[str]:
    """The embedded engine with SGLang's defaults: no streaming sessions (as a stock SGLang server)."""
    proc, url = start_engine("--sglang-defaults", "--enable-cache-report")
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def otlp_receiver() -> Iterator[str]:
    port = free_port()
    receiver = Path(__file__).parent / "telemetry" / "otlp_receiver.py"
    proc = subprocess.Popen([sys.executable, str(receiver), str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def session_run(
    engine_without_sessions: str, otlp_receiver: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """``interleaf run --retention session --json`` against the engine without sessions, exporting to
    the receiver with content capture on. Run once; the tests below read its outputs."""
    runs = tmp_path_factory.mktemp("runs")
    env = {
        **os.environ,
        "INTERLEAF_RUNS_DIR": str(runs),
        "RAY_AUTH_MODE": "disabled",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver,
        "OTEL_SERVICE_NAME": "interleaf-cli-test",
        "INTERLEAF_TRACE_CONTENT": "1",
    }
    exe = shutil.which("interleaf")
    assert exe
    cmd = [
        exe, "run", "--suite", "arith", "--n", "1", "--concurrency", "1", "--actors", "1",
        "--backend", engine_without_sessions, "--retention", "session", "--max-turns", "2",
        "--max-new-tokens", "64", "--job-id", "cli-no-sessions", "--json",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    spans = httpx.get(f"{otlp_receiver}/spans").json()
    metrics = httpx.get(f"{otlp_receiver}/metrics").json()
    trajectories = [
        json.loads(line) for line in (runs / "cli-no-sessions" / "trajectories.jsonl").read_text().splitlines()
    ]
    return {"proc": done, "spans": spans, "metrics": metrics, "trajectories": trajectories}


@pytest.mark.model
@pytest.mark.slow
def test_run_says_the_server_lacks_sessions_and_reports_what_ran(
    session_run: dict[str, Any], engine_without_sessions: str
) -> None:
    done = session_run["proc"]
    warnings = [line for line in done.stderr.splitlines() if "streaming sessions" in line]
    assert len(warnings) == 1, done.stderr
    assert engine_without_sessions in warnings[0] and "--enable-streaming-session" in warnings[0]
    assert "retention session" in warnings[0] and "retention none" in warnings[0]

    result = json.loads(done.stdout)  # stdout is the JSON document only; progress went to stderr
    assert result["job_id"] == "cli-no-sessions" and result["status"] == "succeeded"
    summary = result["summary"]
    assert (summary["retention_requested"], summary["retention_effective"]) == ("session", "none")
    assert ["retention", "requested session, effective none"] in result["rows"]

    (traj,) = session_run["trajectories"]
    assert (traj["retention_policy"], traj["retention_effective"]) == ("session", "none")
    first = traj["turns"][0]["retention_events"]
    assert [e["decision"] for e in first] == ["unsupported"]
    assert "--enable-streaming-session" in first[0]["reason"]


@pytest.mark.model
@pytest.mark.slow
def test_live_spans_carry_the_documented_attributes(session_run: dict[str, Any], engine_without_sessions: str) -> None:
    spans = session_run["spans"]
    (traj,) = session_run["trajectories"]
    agent = next(s for s in spans if s["name"].startswith("invoke_agent"))
    llm_calls = [s for s in spans if s["name"].startswith("text_completion")]
    tools = [s for s in spans if s["name"].startswith("execute_tool")]
    assert agent["resource"]["service.name"] == "interleaf-cli-test"
    assert len(llm_calls) == len(traj["turns"]) and tools, [s["name"] for s in spans]

    a = agent["attributes"]
    assert a["gen_ai.agent.id"] == traj["id"] and a["gen_ai.conversation.id"] == traj["id"]
    assert a["gen_ai.agent.name"] == traj["agent"] and a["interleaf.retention.policy"] == "session"
    for key in ("evict_all", "measured", "perfect_reuse", "pte_plus", "gamma", "hardware"):
        assert f"interleaf.pte.{key}" in a, key

    port = int(engine_without_sessions.rsplit(":", 1)[1])
    first = min(llm_calls, key=lambda s: s["start"])
    for call in llm_calls:
        attrs = call["attributes"]
        assert call["parent_span_id"] == agent["span_id"] and call["kind"] == 3  # CLIENT
        assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", port)
        assert attrs["gen_ai.provider.name"] == "sglang" and attrs["gen_ai.request.model"]
        assert json.loads(attrs["gen_ai.input.messages"])[0]["parts"][0]["content"]
        assert json.loads(attrs["gen_ai.output.messages"])[0]["role"] == "assistant"
        assert attrs["gen_ai.usage.input_tokens"] > 0 and "gen_ai.response.id" in attrs
        assert call["end"] <= agent["end"]
    assert first["attributes"]["interleaf.retention.policy"] == "none"
    assert first["attributes"]["interleaf.retention.decision"] == "unsupported"
    assert [e["name"] for e in first["events"]] == ["interleaf.retention.unsupported"]

    recorded = {c["id"]: c for t in traj["turns"] for c in t["tool_calls"]}
    for tool in tools:
        attrs = tool["attributes"]
        assert attrs["gen_ai.operation.name"] == "execute_tool"
        assert attrs["gen_ai.tool.call.id"] in recorded
        assert attrs["gen_ai.tool.name"] == recorded[attrs["gen_ai.tool.call.id"]]["name"]
        assert "gen_ai.tool.call.arguments" in attrs  # content capture is on

    usage = [m for m in session_run["metrics"] if m["name"] == "gen_ai.client.token.usage"]
    points = [p for m in usage for p in m["points"]]
    assert points and {p["attributes"]["server.address"] for p in points} == {"127.0.0.1"}
    assert {p["attributes"]["gen_ai.token.type"] for p in points} == {"input", "output"}
