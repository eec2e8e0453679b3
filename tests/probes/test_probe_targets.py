"""Probe targets, coordinate probes, bootstrap intervals and warnings, and the post-reasoning capture."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest

from interleaf.probes import GridAgent, StudyConfig, fit_probe, plain_grid
from interleaf.probes.agent import answer_grammar, step_prompt, user_prompt
from interleaf.probes.bootstrap import MIN_GROUPS, bootstrap_interval, mean_interval, too_few
from interleaf.probes.dataset import interior_cells, map_samples, step_targets
from interleaf.probes.gridworld import CellClass
from interleaf.probes.policy import OptimalPolicy
from interleaf.probes.records import GridRecord, StepRecord
from interleaf.probes.report import render_comparison, render_markdown
from interleaf.runtime.client import SGLangBackend


def _steps(grid, grid_id: str = "g0") -> tuple[list[StepRecord], dict[str, GridRecord]]:
    policy = OptimalPolicy.solve(grid)
    rec = GridRecord.of(grid, grid_id=grid_id, base_id=grid_id, transform="base", optimal_length=4, cap=6)
    steps = []
    for i, s in enumerate(policy.shortest_path()[:-1]):
        best = sorted(a.value for a in policy.optimal_actions(s))
        fields = {"row": i, "grid_id": grid_id, "trajectory": 0, "step": i, "x": s.x, "y": s.y, "has_key": False,
                  "door_open": False, "action": best[0], "optimal": best, "distance": policy.dist(s), "text": "",
                  "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "latency_s": 0.0}  # fmt: skip
        steps.append(StepRecord(**fields))
    return steps, {grid_id: rec}


def test_prompt_is_coordinate_free_by_default_and_an_option_adds_them() -> None:
    grid = plain_grid(7, 0.4, np.random.default_rng(2))
    state = grid.initial_state()
    plain = user_prompt(grid, state)
    assert "x=" not in plain and "You are at" not in plain
    assert f"You are at x={state.x}, y={state.y}." in user_prompt(grid, state, coordinates=True)
    # The grid itself (with its row and column numbers) is in both.
    assert grid.render(state) in plain and step_prompt(grid, state).count(grid.render(state)) == 1


def test_position_targets_come_as_coordinates_and_the_map_covers_every_interior_cell() -> None:
    grid = plain_grid(7, 0.4, np.random.default_rng(4))
    steps, recs = _steps(grid)
    targets = {t.name: t for t in step_targets(steps, recs, next_k=2)}
    assert targets["agent_xy"].regression and targets["agent_xy"].labels.shape == (len(steps), 2)
    assert targets["agent_xy"].labels.tolist() == [[s.x, s.y] for s in steps]
    assert targets["goal_xy"].labels.tolist() == [list(grid.goal)] * len(steps)
    samples = map_samples(steps, {"g0": grid})
    cells = interior_cells(7)
    assert samples.labels.size == len(steps) * len(cells) == 25 * len(steps)
    first = [tuple(c) for c, r in zip(samples.cells, samples.step_rows, strict=True) if r == 0]
    assert sorted(first) == sorted(cells)
    assert (samples.labels == CellClass.AGENT.value).sum() == len(steps)  # the agent's cell, once per step
    assert (samples.labels == CellClass.GOAL.value).sum() == len(steps)


def test_coordinate_probe_reports_r2_cell_error_and_an_interval() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(24), 10)
    xy = rng.integers(1, 6, size=(groups.size, 2)).astype(float)
    x = rng.normal(size=(groups.size, 16))
    x[:, :2] += 2.0 * xy
    score, _ = fit_probe(x, xy, groups, regression=True, target="agent_xy", pca_dims=None)
    control, _ = fit_probe(x, xy, groups, regression=True, control=True, target="agent_xy", pca_dims=None)
    assert score.r2 > 0.8 and score.cell_error < 0.8  # noise caps R² near 0.89
    assert control.r2 < 0.2 and control.cell_error > 1.0
    assert score.interval is not None and score.interval.low <= score.r2 <= score.interval.high
    assert score.interval.n_groups == score.n_test // 10 and score.interval.warning is None


def test_intervals_resample_grids_and_warn_when_samples_are_too_few() -> None:
    values = np.array([0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.2, 0.8, 0.4, 0.6])
    groups = np.repeat(np.arange(5), 2)
    mean, interval = mean_interval(values, groups)
    assert mean == pytest.approx(0.5) and interval.low < 0.5 < interval.high
    assert interval.n_groups == 5 and interval.warning is not None  # 10 rows < MIN_ROWS
    assert too_few(MIN_GROUPS, 100) is None and "2 grids" in too_few(2, 100)
    # One grid: no interval at all, and the warning says so.
    lone = bootstrap_interval(lambda r: 1.0, np.zeros(50))
    assert lone.low is None and lone.high is None and lone.warning is not None
    # Constant per grid: every replicate is the same grid mix, so the interval spans the grid means.
    wide = bootstrap_interval(lambda r: float(np.repeat([0.0, 1.0], 20)[r].mean()), np.repeat([0, 1], 20))
    assert wide.low == pytest.approx(0.0) and wide.high == pytest.approx(1.0)


def test_reports_print_every_figure_with_its_interval_and_flag_thin_ones(tmp_path) -> None:
    from interleaf.probes import StudyReport
    from interleaf.probes.metrics import Episode, grid_metrics

    grid = plain_grid(7, 0.0, np.random.default_rng(1))
    policy = OptimalPolicy.solve(grid)
    path = policy.shortest_path()
    actions = [next(a for a in policy.optimal_actions(s)) for s in path[:-1]]
    gm = [grid_metrics([Episode(path[:-1], actions, True)], policy, grid_id=f"g{i}") for i in range(3)]
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 5)
    y = rng.integers(0, 2, size=20)
    score, _ = fit_probe(rng.normal(size=(20, 4)), y, groups, target="next_action_1", layer=9, position="pre",
                         pca_dims=None)  # fmt: skip
    report = StudyReport(config=StudyConfig(), model="m", engine_url="u", hidden_state_source="interleaf",
                         n_grids=3, n_steps=20, wall_s=0, agent_s=0, probe_s=0, invalid_answers=0,
                         grid_metrics=gm, paired_tests=[], probe_scores=[score], consistency=[])  # fmt: skip
    md = render_markdown(report)
    assert "Too few samples" in md and "⚠" in md
    assert re.search(r"\| 1\.000 \[1\.00, 1\.00\] ⚠ \|", md)  # action accuracy of 3 perfect grids, flagged
    both = render_comparison({"base": report, "navigator": report})
    assert "base probe" in both and "navigator probe" in both and "d=" not in both


async def test_post_is_captured_after_the_reasoning_and_before_the_answer() -> None:
    """Two requests: the reasoning (stopped where <answer> opens), then the answer; 'post' is the end
    of the second prompt."""
    seen: list[dict] = []

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/server_info":
            return httpx.Response(200, json={"internal_states": [{"max_total_num_tokens": 4096}]})
        if request.url.path == "/model_info":
            return httpx.Response(200, json={"model_path": "scripted"})
        body = json.loads(request.content)
        seen.append(body)
        # Like a server that ignores `stop`: the reasoning request returns the answer too.
        reasoning = body["sampling_params"].get("stop")
        text = "A at (1,1), G at (3,3). <answer>UP</answer>" if reasoning else "<answer>DOWN</answer>"
        # The 'prompt' states carry the prompt's length, so the test can tell which prompt they end.
        n = len(body["text"])
        pre = np.full((2, 3, 4), float(n))
        hidden = {"layers": body["hidden_states_layers"], "prompt": pre.tolist(), "output": (pre + 1e6).tolist()}
        meta = {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0, "hidden_states": hidden}
        return httpx.Response(200, json={"text": text, "output_ids": [], "meta_info": meta})

    grid = plain_grid(7, 0.0, np.random.default_rng(3))
    state = grid.initial_state()
    backend = await SGLangBackend.connect("http://scripted", transport=httpx.MockTransport(engine))
    try:
        agent = GridAgent(backend, layers=[9, 19], reasoning_chars=32)
        out = await agent.act(grid, state, seed=5)
    finally:
        await backend.aclose()
    first, second = seen
    prompt = step_prompt(grid, state)
    assert first["text"] == prompt and first["sampling_params"]["ebnf"] == answer_grammar(32)
    assert first["sampling_params"]["stop"] == ["<answer>"]
    assert second["text"] == prompt + "A at (1,1), G at (3,3). "  # the reasoning only, not the first answer
    assert second["sampling_params"]["ebnf"] == answer_grammar(0) and "stop" not in second["sampling_params"]
    assert out.action is not None and out.action.value == "DOWN"
    assert out.hidden is not None
    assert (out.hidden.pre == len(first["text"])).all()
    assert (out.hidden.post == len(second["text"])).all()  # end of reasoning, no answer token in it
    assert out.prompt_tokens == 20 and out.completion_tokens == 10


def test_default_layers_sit_at_the_papers_relative_depths() -> None:
    config = StudyConfig()
    paper = [7, 15, 23]  # of 24 layers (0-based)
    assert config.layers == [round(p / 23 * 29) for p in paper] == [9, 19, 29]
    assert config.reasoning_chars > 0 and config.coordinates is False
