"""Job summaries and ``interleaf report`` (md / json / csv / png, file or job id)."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest
import typer
from typer.testing import CliRunner

from interleaf.commands import report as report_cmd
from interleaf.telemetry import (
    HARDWARE_PROFILES,
    MODEL_PROFILES,
    JobSummary,
    build_report,
    dump_trajectory,
    gamma,
    load_trajectories,
    load_trajectory,
    pte_breakdown,
    render_report,
    summarize_job,
)
from interleaf.telemetry.records import RetentionDecision, RetentionRecord, TerminationReason
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


def test_summary_carries_the_job_figures_and_one_table() -> None:
    trajs = job()[:5]
    trajs[4].termination = TerminationReason.MAX_TURNS
    for k, t in enumerate(trajs):
        t.started_at, t.ended_at = 100.0, 100.0 + k  # episode walls 0..4 s
    s = summarize_job(trajs, wall_s=12.5)
    assert (s.episodes, s.trajectories, s.scored, s.correct) == (5, 5, 5, 4)
    assert s.terminations == {"answered": 4, "max_turns": 1}
    assert s.tool_calls == sum(t.tool_call_count for t in trajs)
    assert s.mean_tool_calls == pytest.approx(s.tool_calls / 5)
    assert s.episode_wall_p50_s == 2.0 and s.wall_s == 12.5
    # Hit rate over the turns the engine reported figures for (the fixtures report them on a few).
    reported = [u.cache for t in trajs for u in t.turns if u.cache.prompt_tokens]
    assert s.cache_hit_rate == pytest.approx(
        sum(c.cached_tokens for c in reported) / sum(c.prompt_tokens for c in reported)
    )
    rows = dict(s.rows())
    assert rows["episodes"] == "5" and rows["accuracy"] == "80.0% of 5 scored"
    assert rows["terminations"] == "answered 4, max_turns 1" and rows["wall time"] == "12.5 s"
    assert rows["recomputed tokens"] == "69" and rows["episode wall p50"] == "2.0 s"
    assert summarize_job([]).rows() == []
    assert dict(summarize_job(trajs).rows())["wall time"] == "n/a"


def test_recomputed_tokens_prefer_the_clients_figure() -> None:
    t = fx.recompute()
    assert summarize_job([t]).recomputed_tokens == 69  # nothing recorded: inferred from the counts
    t.turns[1].cache.recomputed_tokens = 50  # the client's figure wins over the inference
    assert summarize_job([t]).recomputed_tokens == 50
    assert summarize_job([fx.held()]).recomputed_tokens == 0  # KV kept: nothing inferred either


def test_trajectories_without_turns_keep_their_rows() -> None:
    """A job cancelled before its last episodes' first call: those trajectories have no turns."""
    trajs = job()[:2]
    empty = [fx.confirmatory().model_copy(update={"turns": [], "id": f"cancelled-{i}"}) for i in range(2)]
    s = summarize_job([*trajs, *empty])
    smol = MODEL_PROFILES["SmolLM2-135M-Instruct"]
    expected = pte_breakdown(trajs, smol, HARDWARE_PROFILES["H100-PCIe"])
    assert s.trajectories == 4
    assert s.pte_total["evict_all"] == pytest.approx(expected.evict_all)


def test_summaries_stored_by_either_former_shape_still_load() -> None:
    runner_dict = {"episodes": 8, "scored": 8, "correct": 8, "accuracy": 1.0, "mean_turns": 1.0,
                   "prompt_tokens": 80, "cached_tokens": 0, "recomputed_tokens": 0, "completion_tokens": 16,
                   "tool_calls": 0, "cache_hit_rate": 0.0, "terminations": {"answered": 8}, "wall_s": 3.2,
                   "episode_wall_p50_s": 0.4}  # fmt: skip
    old = JobSummary.model_validate(runner_dict)
    assert old.episodes == 8 and old.terminations == {"answered": 8} and old.pte_mean == {}
    report_dict = summarize_job(job()[:5]).model_dump(mode="json")
    report_dict["trajectories"] = report_dict.pop("episodes")
    assert JobSummary.model_validate(report_dict) == summarize_job(job()[:5])
    s = summarize_job(job(), wall_s=1.0)
    assert JobSummary.model_validate_json(s.model_dump_json()) == s


def test_trajectory_file_round_trip_gz_and_bad_line(tmp_path) -> None:
    t = fx.recompute()
    assert load_trajectory(dump_trajectory(t)) == t
    assert "\n" not in dump_trajectory(t)
    gz = tmp_path / "t.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write("".join(dump_trajectory(x) + "\n\n" for x in job()))
    assert load_trajectories(gz) == job()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(dump_trajectory(t) + "\n" + '{"id": 3}' + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2 is not a Trajectory record"):
        load_trajectories(bad)


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


def test_requested_and_effective_retention_in_summary_and_report() -> None:
    """A session job on a server without streaming sessions: the turns record ``unsupported`` and
    the summary, the report's JSON / CSV / Markdown say what was requested and what ran."""
    ran_stateless = fx.held().model_copy(update={"retention_policy": "session", "id": "stateless"}, deep=True)
    for turn in ran_stateless.turns:
        turn.retention = RetentionRecord(
            policy="none", decision=RetentionDecision.UNSUPPORTED, reason="http://x:1 does not serve streaming sessions"
        )
    held = fx.held().model_copy(update={"retention_policy": "session"}, deep=True)
    assert held.retention_effective == "session" and ran_stateless.retention_effective == "none"
    assert json.loads(dump_trajectory(ran_stateless))["retention_effective"] == "none"
    assert load_trajectory(dump_trajectory(ran_stateless)) == ran_stateless

    s = summarize_job([ran_stateless, ran_stateless.model_copy(update={"id": "b"})])
    assert (s.retention_requested, s.retention_effective) == ("session", "none")
    assert dict(s.rows())["retention"] == "requested session, effective none"
    mixed = summarize_job([held, ran_stateless, ran_stateless.model_copy(update={"id": "b"})])
    assert (mixed.retention_requested, mixed.retention_effective) == ("session", "none 2, session 1")
    assert dict(summarize_job([held]).rows())["retention"] == "session"

    rows = build_report([ran_stateless])
    summary = json.loads(render_report(rows, "json"))[0]["summary"]
    assert (summary["retention_requested"], summary["retention_effective"]) == ("session", "none")
    parsed = next(csv.DictReader(io.StringIO(render_report(rows, "csv"))))
    assert (parsed["retention_requested"], parsed["retention_effective"]) == ("session", "none")
    assert "| requested session, effective none |" in render_report(rows, "md")


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


def test_report_and_study_price_a_measured_cpu_alike(tmp_path, monkeypatch) -> None:
    """``interleaf report --hardware cpu`` and ``interleaf study pte-latency`` on the same trajectories
    give the same γ: the CPU is measured in fp32, so both price SmolLM2 at 4 bytes per element
    (``served_model``), not at the shipped profile's 2."""
    from interleaf.commands import study as study_cmd
    from interleaf.telemetry import HardwareProfile, served_model

    cpu = HardwareProfile(name="cpu-2core-fp32", peak_flops=40e9, mem_bw_bytes_per_s=20e9, measured=True, dtype="fp32")
    monkeypatch.setenv("INTERLEAF_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "cpu_profile_fp32.json").write_text(cpu.model_dump_json())  # the measured profile
    trajs = [fx.held(), fx.recompute(), fx.confirmatory()]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(dump_trajectory(t) + "\n" for t in trajs))

    res = CliRunner().invoke(_cli(), ["report", str(path), "--hardware", "cpu", "--format", "json"])
    assert res.exit_code == 0, res.output
    report_gamma = json.loads(res.stdout)[0]["summary"]["gamma"]["SmolLM2-135M-Instruct"]

    async def recorded(cfg):  # the study's load generator, replaced by the recorded trajectories
        return load_trajectories(path)

    monkeypatch.setattr("interleaf.pte_study.run_study", recorded)
    out = tmp_path / "study"
    study = typer.Typer()
    study.command("pte-latency")(study_cmd.pte_latency)
    study.command("noop")(lambda: None)  # keeps "pte-latency" a subcommand
    res = CliRunner().invoke(study, ["pte-latency", "--engine-url", "http://unused", "--out", str(out)])
    assert res.exit_code == 0, res.output
    study_gamma = json.loads((out / "result.json").read_text())["gamma"]

    smol = MODEL_PROFILES["SmolLM2-135M-Instruct"]
    assert served_model(smol, cpu).dtype_bytes == 4 and smol.dtype_bytes == 2
    assert report_gamma == pytest.approx(study_gamma, rel=1e-12)
    assert report_gamma == pytest.approx(2 * gamma(smol, HARDWARE_PROFILES["H100-PCIe"]) * cpu.hoi / 756.5)
