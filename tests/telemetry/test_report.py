"""Job summaries and ``interleaf report`` (md / json / csv / png, file or job id)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import typer
from typer.testing import CliRunner

from interleaf.commands import report as report_cmd
from interleaf.telemetry import (
    HARDWARE_PROFILES,
    MODEL_PROFILES,
    build_report,
    gamma,
    load_trajectories,
    pte_breakdown,
    render_report,
    summarize_job,
)
from tests.telemetry import telemetry_fixtures as fx


def job():
    trajs = [fx.confirmatory(), fx.not_confirmatory(), fx.held(), fx.recompute(), fx.silent_python()]
    trajs[1].correct, trajs[1].score = False, 0.0
    other = fx.mixing()
    other.model, other.suite = "Qwen3-32B", "mixed"
    return [*trajs, other]


def test_summarize_job_figures() -> None:
    trajs = job()[:5]
    s = summarize_job(trajs)
    assert s.trajectories == 5 and s.scored == 5 and s.accuracy == pytest.approx(0.8)
    assert s.hardware == "H100-PCIe"
    smol = MODEL_PROFILES["SmolLM2-135M-Instruct"]
    assert s.gamma == {"SmolLM2-135M-Instruct": pytest.approx(gamma(smol, HARDWARE_PROFILES["H100-PCIe"]))}
    expected = pte_breakdown(trajs, smol, HARDWARE_PROFILES["H100-PCIe"])
    assert s.pte_total["evict_all"] == pytest.approx(expected.evict_all)
    assert s.pte_mean["measured"] == pytest.approx(expected.measured / 5)
    assert s.recomputed_tokens == 69  # only fx.recompute() lost KV
    assert s.pattern("confirmatory_tool_usage").with_pattern == 1
    assert s.pattern("lack_of_tool_priors").with_pattern == 1
    assert s.pattern("recompute_after_pause").with_pattern == 1
    rows = dict(s.rows())
    assert rows["PTE evict_all (mean, H100-PCIe)"] == f"{expected.evict_all / 5:,.0f}"
    assert "lack_of_tool_priors 1" in rows["patterns"]
    text = "\n".join(s.lines())
    assert "accuracy 80.0% of 5" in text and "evict_all" in text and "confirmatory_tool_usage 1/5" in text


def test_unprofiled_model_counts_patterns_but_has_no_pte() -> None:
    t = fx.silent_python()
    t.model = "my-private-model"
    s = summarize_job([t, fx.held()])
    assert s.unprofiled_models == ["my-private-model"]
    lack = s.pattern("lack_of_tool_priors")
    assert (lack.with_pattern, lack.trajectories) == (1, 2) and lack.cost_multiplier is None
    assert s.pte_total["evict_all"] == pytest.approx(
        pte_breakdown(fx.held(), MODEL_PROFILES["SmolLM2-135M-Instruct"], HARDWARE_PROFILES["H100-PCIe"]).evict_all
    )


def test_report_formats(tmp_path) -> None:
    rows = build_report(job())
    assert [(r.model, r.suite, r.summary.trajectories) for r in rows] == [
        ("Qwen3-32B", "mixed", 1),
        ("SmolLM2-135M-Instruct", "arith", 5),
    ]
    md = render_report(rows, "md")
    assert (
        "| model | suite | n | accuracy |" in md
        and "PTE evict_all" in md
        and "| Qwen3-32B | mixed | tool_mixing |" in md
    )
    parsed = list(csv.DictReader(io.StringIO(render_report(rows, "csv"))))
    assert parsed[1]["model"] == "SmolLM2-135M-Instruct" and float(parsed[1]["accuracy"]) == pytest.approx(0.8)
    assert float(parsed[1]["lack_of_tool_priors_freq"]) == pytest.approx(0.2)
    data = json.loads(render_report(rows, "json"))
    assert data[0]["summary"]["patterns"][1]["pattern"] == "tool_mixing"
    with pytest.raises(ValueError, match="fmt='xml'"):
        render_report(rows, "xml")


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("report")(report_cmd.report)
    app.command("noop")(lambda: None)  # keeps "report" a subcommand
    return app


def test_cli_report_file_job_id_and_png(tmp_path, monkeypatch) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(t.model_dump_json() + "\n" for t in job()))
    assert [t.id for t in load_trajectories(path)] == [t.id for t in job()]
    runner = CliRunner()
    res = runner.invoke(_cli(), ["report", str(path), "--format", "csv", "--png", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("model,suite,trajectories,accuracy")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setenv("INTERLEAF_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs" / "job-42").mkdir(parents=True)
    (tmp_path / "runs" / "job-42" / "trajectories.jsonl").write_text(path.read_text())
    res = runner.invoke(_cli(), ["report", "job-42", "--hardware", "a100"])
    assert res.exit_code == 0, res.output
    assert "on A100" in res.stdout
    res = runner.invoke(_cli(), ["report", "no-such-job"])
    assert res.exit_code != 0 and "no-such-job" in res.output
