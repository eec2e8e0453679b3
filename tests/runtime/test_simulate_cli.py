"""``interleaf simulate`` as users meet it: bad options and traces as one line with exit code 2, strict JSON,
and the figures of tiny runs (every figure SIMULATED)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from interleaf.cli import main


def simulate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["simulate", "--jobs", "1", *argv])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def strict_json(text: str) -> Any:
    """``text`` as JSON, refusing NaN and Infinity (not JSON, though Python writes and reads them)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def write_trace(path: Path, *rows: dict[str, Any]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--budget-ratio", "nan"], "--budget-ratio=nan: Input should be a finite number"),
        (["--budget-ratio", "inf"], "--budget-ratio=inf: Input should be a finite number"),
        (["--budget-ratio", "0"], "--budget-ratio=0.0: Input should be greater than 0"),
        (["--budget-ratio", "-1"], "--budget-ratio=-1.0: Input should be greater than 0"),
        (["--kv-budget-fraction", "0"], "--kv-budget-fraction=0.0: Input should be greater than 0"),
        (["--kv-budget-fraction", "nan"], "--kv-budget-fraction=nan: Input should be a finite number"),
        (["--gpu", "FOO"], "--gpu='FOO': not a hardware profile; use one of A100, H100-PCIe"),
        (["--model", "FOO"], "--model='FOO': no shipped model profile; use one of DeepSeek-V3.1-Terminus"),
        (["--seed", "-1"], "--seed=-1: Input should be greater than or equal to 0"),
        (["--chunked-prefill-size", "0"], "--chunked-prefill-size=0: Input should be greater than or equal to 1"),
        (["--max-running-requests", "0"], "--max-running-requests=0: Input should be greater than or equal to 1"),
        (["--capacity", "nan"], "--capacity=nan must be a finite number of seconds > 0"),
        (["--policies", ","], "--policies=',' names no policy"),
        (["--policies", "none,none"], "--policies='none,none' names a policy twice"),
        (["--turns", "-3"], "--turns=-3 must be >= 1"),
        (["--gpu", "H100", "--model", "DeepSeek-V3.1-Terminus"], "DeepSeek-V3.1-Terminus does not fit one H100"),
        (["--workload", "no-such-trace.jsonl"], "--workload='no-such-trace.jsonl' is neither one of reference"),
    ],
)
def test_a_bad_option_is_one_line_naming_it_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = simulate(capsys, "--workload", "bfcl", "--agents", "2", "--servers", "1", *argv)
    assert (code, out) == (2, ""), err
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert "Traceback" not in err


def test_turns_with_a_trace_file_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", {"input_length": 10, "output_length": 2})
    code, _, err = simulate(capsys, "--workload", trace, "--turns", "3", "--policies", "none")
    assert code == 2 and "--turns=3 applies to a generated workload" in err, err


def test_a_trace_whose_every_session_passes_the_window_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # It was `ValueError: max() arg is an empty sequence`.
    trace = write_trace(tmp_path / "t.jsonl", {"timestamp": 0, "input_length": 200_000, "output_length": 10})
    code, _, err = simulate(capsys, "--workload", trace, "--policies", "none", "--servers", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "every session's first turn passes the simulated models' 131,072-token context window" in err


def test_a_model_no_server_count_can_hold_is_refused_by_capacity_planning(capsys: pytest.CaptureFixture[str]) -> None:
    # One RTX-4090 holds 44,592 KV tokens next to Llama-3.1-8B; a swe context reaches 113k. The plan said
    # "=> 1 servers", meets yes, while 9 of the 10 sessions failed.
    argv = ["-w", "swe", "-n", "10", "--policies", "adaptive", "--capacity", "5000", "--servers", "1",
            "--max-servers", "1", "--gpu", "RTX-4090"]  # fmt: skip
    code, out, err = simulate(capsys, *argv)
    assert (code, out) == (2, "") and "no server count can serve it" in err, err


def test_capacity_json_is_one_document_for_every_policy(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-w", "reference", "-n", "2", "--servers", "1", "--policies", "none,session", "--capacity", "100",
            "--max-servers", "1", "--json"]  # fmt: skip
    code, out, err = simulate(capsys, *argv)
    assert code == 0, err
    plans = strict_json(out)  # it was two documents back to back
    assert [p["policy"] for p in plans] == ["none", "session"] and all(p["servers"] == 1 for p in plans)


def test_a_deadlock_before_any_session_ended_writes_null_not_nan(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-w", "bfcl", "-n", "40", "--servers", "2", "--budget-ratio", "0.1", "--policies", "unbounded", "--json"]
    code, out, err = simulate(capsys, *argv)
    assert code == 0, err
    (result,) = strict_json(out)["results"]  # `"jct_mean_s": NaN` was not JSON
    assert result["kv_exhausted"] and result["jct_mean_s"] is None and result["jct_p95_s"] is None
    assert 0 < result["server_held_tokens"] <= result["kv_tokens"]


def test_a_long_tool_pause_is_waited_for_not_reported_stuck(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # An 8,000 s tool pause outlasts the watchdog's 3,600 s: it printed STUCK from 3,600 s.
    trace = write_trace(
        tmp_path / "pause.jsonl",
        {"session_id": "a", "turn": 0, "input_length": 100, "output_length": 10, "timestamp": 0},
        {"session_id": "a", "turn": 1, "input_length": 50, "output_length": 10, "tool_pause_s": 8000},
    )
    code, out, err = simulate(capsys, "-w", trace, "--policies", "none,session", "--servers", "1", "--json")
    assert code == 0, err
    for result in strict_json(out)["results"]:
        assert result["stalled"] is None and result["completed"] == 1 and 8000 < result["makespan_s"] < 8001


def test_a_generated_workload_is_cut_at_the_window_whatever_the_token_block(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 300 reference turns reach 261k tokens. At token block 16 nothing was cut (the engine's window counted
    # simulated tokens: 16 x 131,072 real ones); at token block 1 the sessions failed at the window instead.
    cuts = []
    for block in ("16", "8"):
        argv = ["-w", "reference", "-n", "2", "--turns", "300", "--servers", "1", "--policies", "none",
                "--token-block", block, "--json"]  # fmt: skip
        code, out, err = simulate(capsys, *argv)
        assert code == 0, err
        report = strict_json(out)
        assert report["results"][0]["failed"] == 0 and report["results"][0]["turns"] == 600 - report["turns_cut"]
        cuts.append(report["turns_cut"])
    assert cuts[0] == cuts[1] > 0
