"""A study folder that is not what it should be: ``interleaf probe report`` says which file (and line,
and field) in one line, never a traceback; and what a re-analysis reports about itself."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from interleaf.commands import probe as probe_cmd
from interleaf.probes import StudyConfig, analyse, build_grids, fit_probe
from interleaf.probes.report import render_markdown, score_ci, warning_lines
from interleaf.probes.study import run_trajectories, save_run
from tests.probes.test_probe_study import scripted_engine


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A small study's artefacts as `interleaf probe run` writes them (scripted engine, no analysis)."""
    out = tmp_path_factory.mktemp("study")
    config = StudyConfig(sizes=[7], densities=[0.0], grids=2, trajectories=1, layers=[3], pca_dims=None,
                         probe_kinds=["linear"], reasoning_chars=0)  # fmt: skip
    grids = build_grids(config)
    col = asyncio.run(
        run_trajectories(config, "http://scripted", grids, transport=httpx.MockTransport(scripted_engine))
    )
    save_run(out, grids, col)
    (out / "config.json").write_text(config.model_dump_json())
    return out


def copy_of(study: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "s"
    folder.mkdir()
    for f in study.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def probe_report(folder: Path):
    return CliRunner().invoke(probe_cmd.app, ["report", str(folder)], env={"COLUMNS": "400"})


def garbage_line(path: Path) -> None:
    path.write_text(path.read_text() + "not json\n")


def cut_last_line(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) - 40])


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


MUTATIONS = {
    "bad config": (lambda f: (f / "config.json").write_text('{"sizes": "seven"}'),
                   "config.json is not a valid StudyConfig: sizes='seven': Input should be a valid array"),
    "config not JSON": (lambda f: (f / "config.json").write_text("{"), "config.json is not a valid StudyConfig"),
    "no config": (lambda f: (f / "config.json").unlink(), "config.json: cannot be read (no such file)"),
    "garbage step": (lambda f: garbage_line(f / "steps.jsonl"), "steps.jsonl:{n} is not a valid StepRecord"),
    "truncated step": (lambda f: cut_last_line(f / "steps.jsonl"), "steps.jsonl:{m} is not a valid StepRecord"),
    "empty steps": (lambda f: (f / "steps.jsonl").write_text(""), "steps.jsonl lists 0 steps"),
    "bad grid": (lambda f: (f / "grids.jsonl").write_text('{"grid_id": 3}\n'),
                 "grids.jsonl:1 is not a valid GridRecord"),
    "truncated hidden.npz": (lambda f: truncate(f / "hidden.npz"), "hidden.npz: not a readable hidden-state archive"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_a_broken_artefact_is_one_error_naming_the_file(study: Path, tmp_path: Path, case: str) -> None:
    folder = copy_of(study, tmp_path)
    n_steps = len((study / "steps.jsonl").read_text().splitlines())
    mutate, needle = MUTATIONS[case]
    mutate(folder)
    res = probe_report(folder)
    assert res.exit_code in (1, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())
    assert "Traceback" not in text
    assert needle.format(n=n_steps + 1, m=n_steps) in text, text


def test_a_missing_folder_or_a_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    for folder, needle in [("nope", "nope does not exist"), ("a_file", "a_file is a file"),
                           ("empty", "empty/config.json: cannot be read (no such file)")]:  # fmt: skip
        res = probe_report(tmp_path / folder)
        assert res.exit_code == 2, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        assert needle in " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split()), res.output


def test_a_reanalysed_study_counts_the_agent_time(study: Path, tmp_path: Path) -> None:
    """`probe report` re-runs the analysis only: the total still includes the agent's time."""
    folder = copy_of(study, tmp_path)
    (folder / "hidden.npz").unlink()  # behaviour only: no probes to fit
    config = StudyConfig.model_validate_json((folder / "config.json").read_text())
    report = analyse(folder, config, model="scripted", engine_url="scripted", agent_s=107.0)
    assert report.wall_s >= report.agent_s + report.probe_s
    header = next(line for line in render_markdown(report).splitlines() if "total" in line)
    agent, total = (float(x) for x in re.findall(r"agent (\d+) s.*total (\d+) s", header)[0])
    assert total >= agent == 107


def test_r2_of_a_constant_held_out_target_is_not_reported() -> None:
    """goal_xy on one held-out grid: the goal is one cell, so R² is undefined (sklearn would score
    the constant axes 1.0 or 0.0 and print a meaningless 0.500)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 8)
    goal = np.array([[1, 1], [2, 3], [3, 5], [4, 2], [5, 4], [2, 5]], dtype=float)[groups]  # one goal per grid
    x = rng.normal(size=(groups.size, 6))
    x[:, :2] += goal
    test = np.nonzero(groups == 5)[0]  # one held-out grid: both goal axes constant
    train = np.nonzero(groups != 5)[0]
    score, _ = fit_probe(x, goal, groups, regression=True, target="goal_xy", pca_dims=None, split=(train, test))
    assert score.r2 is None and score.mae is not None and score.cell_error is not None
    assert score_ci(score) == "n/a (held-out target constant)"
    # One axis constant is enough: R² "averaged over x and y" would average a made-up 1.0 or 0.0 in.
    one_axis = goal.copy()
    one_axis[test, 0] = 3.0
    score, _ = fit_probe(x, one_axis, groups, regression=True, target="goal_xy", pca_dims=None, split=(train, test))
    assert score.r2 is None
    varied = np.nonzero(groups >= 4)[0]
    score, _ = fit_probe(x, goal, groups, regression=True, target="goal_xy", pca_dims=None,
                         split=(np.nonzero(groups < 4)[0], varied))  # fmt: skip
    assert score.r2 is not None and np.isfinite(score.r2)


def test_too_few_samples_lines_name_their_figures() -> None:
    from interleaf.probes import StudyReport

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 5)
    scores = [
        fit_probe(rng.normal(size=(20, 4)), rng.integers(0, 2, size=20), groups, target=target, layer=9,
                  position="pre", pca_dims=None)[0]
        for target in ("next_action_1", "agent_position")
    ]  # fmt: skip
    report = StudyReport(config=StudyConfig(), model="m", engine_url="u", hidden_state_source="interleaf",
                         n_grids=4, n_steps=20, wall_s=0, agent_s=0, probe_s=0, invalid_answers=0,
                         grid_metrics=[], paired_tests=[], probe_scores=scores, consistency=[])  # fmt: skip
    (line,) = [w for w in warning_lines(report) if w.startswith("probes")]
    assert line.startswith("probes agent_position, next_action_1: too few samples (1 grids, 5 rows")
    assert any(w.startswith("behaviour: too few samples") for w in warning_lines(report))
