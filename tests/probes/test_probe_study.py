"""The study pipeline: a scripted engine for the logic, the real embedded engine end to end."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from interleaf.agents import Agent, GrammarOptions
from interleaf.probes import (
    ACTIONS,
    Action,
    GridAgent,
    StudyConfig,
    Variant,
    analyse,
    build_grids,
    key_grid,
    parse_hidden_states,
    plain_grid,
    run_study,
)
from interleaf.probes.agent import ANSWER_TOKENS, SYSTEM_PROMPT, answer_grammar, grid_agent, step_prompt, user_prompt
from interleaf.probes.policy import cell_distances
from interleaf.probes.study import run_trajectories, save_run
from interleaf.runtime.client import SGLangBackend


def scripted_engine(request: httpx.Request) -> httpx.Response:
    """Random moves; the 'pre' activation carries the BFS distance to the goal, 'post' only noise.

    The distance is computed from the rendered text alone (plain grids: no key or door rules).
    """
    if request.url.path == "/server_info":
        return httpx.Response(200, json={"internal_states": [{"max_total_num_tokens": 4096}]})
    if request.url.path == "/model_info":
        return httpx.Response(200, json={"model_path": "scripted"})
    body = json.loads(request.content)
    rows = [line.split()[1:] for line in body["text"].splitlines() if re.match(r"^\s*\d+ [#_AGKD]( |$)", line)]
    walls = np.array([[c == "#" for c in r] for r in rows])
    goal = next((x, y) for y, r in enumerate(rows) for x, c in enumerate(r) if c == "G")
    agent = next((x, y) for y, r in enumerate(rows) for x, c in enumerate(r) if c == "A")
    dist = cell_distances(walls, goal)[agent]
    rng = np.random.default_rng(body["sampling_params"]["sampling_seed"])
    layers, k = body["hidden_states_layers"], body["hidden_states_last_k"]
    pre = rng.normal(size=(len(layers), k, 8))
    pre[:, :, 0] += 3.0 * dist
    post = rng.normal(size=(len(layers), k, 8))
    action = ACTIONS[int(rng.integers(4))].value
    hidden = {"layers": layers, "prompt": pre.tolist(), "output": post.tolist()}
    meta = {"prompt_tokens": 200, "completion_tokens": 8, "cached_tokens": 150, "hidden_states": hidden}
    return httpx.Response(200, json={"text": f"<answer>{action}</answer>", "output_ids": [], "meta_info": meta})


async def test_agent_sends_the_chatml_prompt_as_text_with_the_capture_fields() -> None:
    """The prompt is the TIR agent's rendering (ChatML, the agents' answer instruction); the answer
    is constrained by the TIR agent's turn grammar with the moves as the answer pattern."""
    seen: list[dict] = []

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/generate":
            seen.append(json.loads(request.content))
        return scripted_engine(request)

    def chatml(user: str) -> str:  # hand-written: the system prompt + the agents' answer instruction
        instruction = "Write the final answer as <answer>the answer</answer>."
        system = f"<|im_start|>system\n{SYSTEM_PROMPT}\n\n{instruction}<|im_end|>\n"
        return f"{system}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"

    tir = Agent(name="grid", system_prompt=SYSTEM_PROMPT, tools=[], max_exemplars=0)

    rng = np.random.default_rng(3)
    keyed = key_grid(7, 0.4, Variant.KEY_DOOR, rng)
    assert step_prompt(keyed, keyed.initial_state()) == chatml(user_prompt(keyed, keyed.initial_state()))
    assert step_prompt(keyed, keyed.initial_state()) == tir.render_initial(user_prompt(keyed, keyed.initial_state()))
    assert isinstance(grid_agent(), Agent)
    grid = plain_grid(7, 0.4, rng)
    state = grid.initial_state()
    backend = await SGLangBackend.connect("http://scripted", transport=httpx.MockTransport(engine))
    try:
        agent = GridAgent(backend, layers=[3, 5], last_k=2, temperature=0.5)
        out = await agent.act(grid, state, seed=11)
    finally:
        await backend.aclose()
    (body,) = seen
    assert body["text"] == chatml(user_prompt(grid, state))
    assert "input_ids" not in body
    assert body["sampling_params"] == {
        "temperature": 0.5,
        "max_new_tokens": ANSWER_TOKENS,
        "ebnf": answer_grammar(0),
        "sampling_seed": 11,
    }
    # The TIR agent's own turn grammar: <answer> constrained to the four moves, nothing else.
    no_reasoning = Agent(name="grid", system_prompt=SYSTEM_PROMPT, grammar=GrammarOptions(max_reasoning_chars=0))
    assert body["sampling_params"]["ebnf"] == no_reasoning.turn_grammar(answer_pattern="UP|DOWN|LEFT|RIGHT")
    assert body["return_hidden_states"] is True
    assert (body["hidden_states_layers"], body["hidden_states_last_k"]) == ([3, 5], 2)
    assert isinstance(out.action, Action) and out.hidden is not None
    assert out.hidden.source == "interleaf" and out.hidden.pre.shape == (2, 2, 8)
    assert (out.prompt_tokens, out.completion_tokens, out.cached_tokens) == (200, 8, 150)


def test_pipeline_with_a_scripted_engine_finds_the_planted_distance(tmp_path: Path) -> None:
    config = StudyConfig(
        sizes=[7],
        densities=[0.0, 1.0],
        grids=3,
        trajectories=3,
        transforms=["rotate"],
        layers=[3, 5],
        pca_dims=None,
        probe_kinds=["linear"],
        reasoning_chars=0,
    )
    grids = build_grids(config)
    assert len(grids) == 2 * 3 * 2  # base + rotated per plain grid
    col = asyncio.run(
        run_trajectories(config, "http://scripted", grids, transport=httpx.MockTransport(scripted_engine))
    )
    assert len(col.trajectories) == len(grids) * 3
    assert sum(t.length for t in col.trajectories) == len(col.steps) == len(col.pre)
    for t in col.trajectories:
        cap = next(r.step_cap for r, _ in grids if r.grid_id == t.grid_id)
        assert t.success or t.length == cap
    save_run(tmp_path, grids, col)
    report = analyse(tmp_path, config, model="scripted", engine_url="scripted")
    # Without reasoning there is no post-reasoning position: only 'pre' is probed (2 layers x 1 position).
    assert (tmp_path / "report.md").read_text().count("| distance |") == 2
    assert (tmp_path / "plots" / "probes.png").stat().st_size > 0
    scores = {(s.target, s.layer, s.position, s.control): s for s in report.probe_scores}
    for layer in (3, 5):
        assert scores[("distance", layer, "pre", False)].r2 > 0.8
        assert scores[("distance", layer, "pre", True)].r2 < 0.2
        assert ("distance", layer, "post", False) not in scores
    assert {t.transform for t in report.paired_tests} == {"rotate"}
    assert all(m.key_pickup is None for m in report.grid_metrics)
    assert len(report.consistency) == 2


def test_stock_sglang_hidden_states_are_read_as_last_layer_only() -> None:
    prompt = np.arange(5 * 4, dtype=float).reshape(5, 4)
    raw = [prompt.tolist(), [100.0, 100, 100, 100], [200.0, 200, 200, 200]]
    h = parse_hidden_states(raw, [7, 15], 3)
    assert h.source == "sglang" and h.layers == [-1]
    assert h.pre.shape == (1, 3, 4) and (h.pre[0, -1] == prompt[-1]).all()
    assert h.post[0, -1, 0] == 200 and h.post[0, 0, 0] == prompt[-1, 0]
    with pytest.raises(ValueError, match="hidden_states"):
        parse_hidden_states("nope", [7], 3)


@pytest.mark.model
def test_study_end_to_end_on_the_embedded_engine(engine_url: str, tmp_path: Path) -> None:
    config = StudyConfig(
        sizes=[7],
        densities=[0.0, 1.0],
        grids=2,
        trajectories=2,
        layers=[7, 29],
        pca_dims=32,
        probe_kinds=["linear"],
        engine_url=engine_url,
        concurrency=8,
        timeout_s=600.0,  # a correctness test: a loaded CI box must not turn it into a timing test
    )
    report = run_study(config, tmp_path)
    assert report.hidden_state_source == "interleaf"
    assert report.invalid_answers == 0  # the turn grammar makes every answer parse
    assert report.n_steps > 0 and report.n_grids == 4
    z = np.load(tmp_path / "hidden.npz")
    assert z["pre"].shape == (report.n_steps, 2, 3, 576) and z["post"].shape == z["pre"].shape
    assert np.isfinite(z["pre"].astype(np.float32)).all()
    # The pre-reasoning activations read the prompt only: the same state gives the same prompt and
    # (up to batching numerics) the same activations; different states must differ.
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert all(s["action"] in {a.value for a in ACTIONS} for s in steps)
    seen: dict[tuple, int] = {}
    compared = 0
    for s in steps:
        key = (s["grid_id"], s["x"], s["y"])
        if key in seen:
            a, b = z["pre"][seen[key]].astype(np.float32), z["pre"][s["row"]].astype(np.float32)
            assert np.allclose(a, b, atol=0.05 * np.abs(a).max()), key
            compared += 1
        seen.setdefault(key, s["row"])
    assert compared > 0
    first, other = steps[0], next(s for s in steps if (s["x"], s["y"]) != (steps[0]["x"], steps[0]["y"]))
    assert not np.allclose(z["pre"][first["row"]], z["pre"][other["row"]])
    targets = {s.target for s in report.probe_scores}
    assert {"map", "agent_position", "distance", "next_action_1"} <= targets
    assert all(any(c.control for c in report.probe_scores if c.target == t) for t in targets)
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.json").exists()
