"""The positive-control navigator: its training data, its loss, and its adapter served by the engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from interleaf.probes import plain_grid
from interleaf.probes.agent import CHAT_FORMAT, parse_action, step_prompt
from interleaf.probes.navigator import (
    NavigatorConfig,
    batch_loss,
    check_navigator,
    encode_example,
    optimal_examples,
    thought,
    training_examples,
)
from interleaf.probes.policy import OptimalPolicy


def test_examples_are_bfs_optimal_steps_in_the_agents_own_format() -> None:
    grid = plain_grid(7, 0.4, np.random.default_rng(8))
    policy = OptimalPolicy.solve(grid)
    path = policy.shortest_path()
    examples = optimal_examples(grid)
    assert len(examples) == policy.optimal_length == len(path) - 1
    for state, ex in zip(path, examples, strict=False):
        assert ex.prompt == step_prompt(grid, state)  # the study's coordinate-free prompt, byte for byte
        assert "You are at" not in ex.prompt
        body = ex.completion.removesuffix(CHAT_FORMAT.end)
        assert re.fullmatch(r"<answer>(UP|DOWN|LEFT|RIGHT)</answer>", body), body  # the TIR agent's answer
        assert parse_action(body) in policy.optimal_actions(state)
    for state, ex in zip(path, optimal_examples(grid, reasoning=True), strict=False):
        body = ex.completion.removesuffix(CHAT_FORMAT.end)
        assert body.startswith(thought(grid, state)) and f"A at ({state.x},{state.y})" in body
        assert parse_action(body) in policy.optimal_actions(state)
    # Training grids come from their own seed, apart from the study's (seed 0 and up).
    config = NavigatorConfig(grids=3, densities=[0.0])
    assert len(training_examples(config)) > 3 and config.seed >= 1000


@pytest.mark.model
def test_completion_ids_are_what_the_engine_sees_at_inference() -> None:
    """Prompt ids as the engine tokenises the prompt; with reasoning, the answer's ids start where the
    agent's second request (prompt + reasoning as one text) ends."""
    from transformers import AutoTokenizer

    from interleaf.runtime.engine.model_store import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model().path)
    grid = plain_grid(7, 0.0, np.random.default_rng(5))
    for reasoning in (False, True):
        ex = optimal_examples(grid, reasoning=reasoning)[0]
        prompt, completion = encode_example(tok, ex)
        assert prompt == tok.encode(ex.prompt, add_special_tokens=False)
        assert tok.decode(completion) == ex.completion
        answer = tok.encode(ex.completion[ex.completion.index("<answer>") :], add_special_tokens=False)
        assert completion[-len(answer) :] == answer


def test_batch_loss_equals_the_plain_causal_lm_loss_on_completion_tokens() -> None:
    """Shared-prefix KV and completion-only logits are an optimisation, not an approximation."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)  # fmt: skip
    model = get_peft_model(
        LlamaForCausalLM(cfg), LoraConfig(r=2, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
    )
    prefix = [5, 6, 7, 8, 9, 10]
    batch = [([*prefix, 11, 12], [13, 14, 2]), ([*prefix, 20], [21, 2]), ([*prefix, 30, 31, 32], [33, 2])]
    fast = batch_loss(model, batch, pad=0)
    width = max(len(p) + len(c) for p, c in batch)
    ids = torch.zeros((3, width), dtype=torch.long)
    labels = torch.full((3, width), -100)
    mask = torch.zeros((3, width), dtype=torch.long)
    for r, (p, c) in enumerate(batch):
        ids[r, : len(p) + len(c)] = torch.tensor(p + c)
        labels[r, len(p) : len(p) + len(c)] = torch.tensor(c)
        mask[r, : len(p) + len(c)] = 1
    plain = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert float(fast.detach()) == pytest.approx(float(plain.detach()), rel=1e-5)
    grads = []
    for loss in (fast, plain):
        model.zero_grad()
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.model
def test_a_lora_adapter_round_trips_through_the_engine(tmp_path: Path) -> None:
    """A tiny adapter saved by peft, served with --lora-path: the engine's residual stream is the merged model's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interleaf.runtime.engine.model_store import resolve_model
    from interleaf.runtime.engine.process import EngineProcess

    base_dir = resolve_model().path
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=2, target_modules=["down_proj"], layers_to_transform=[18, 19], init_lora_weights=False)
    adapted = get_peft_model(base, lora)
    adapter = tmp_path / "tiny-lora"
    adapted.save_pretrained(adapter)
    assert (adapter / "adapter_model.safetensors").stat().st_size < 100_000
    tok = AutoTokenizer.from_pretrained(base_dir)
    text = "The grid has a wall on the left."
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.inference_mode():
        want = adapted(input_ids=ids, output_hidden_states=True).hidden_states[21][0, -1]  # after layer 20
        with adapted.disable_adapter():
            plain = adapted(input_ids=ids, output_hidden_states=True).hidden_states[21][0, -1]
    body = {"text": text, "sampling_params": {"max_new_tokens": 1, "temperature": 0},
            "return_hidden_states": True, "hidden_states_layers": [20], "hidden_states_last_k": 1}  # fmt: skip
    with EngineProcess("--lora-path", str(adapter), startup_timeout_s=300.0) as engine:
        info = httpx.get(f"{engine.url}/model_info", timeout=30).json()
        got = httpx.post(f"{engine.url}/generate", json=body, timeout=120).json()["meta_info"]["hidden_states"]
    assert info["served_model_name"].endswith("+tiny-lora")
    served = torch.tensor(got["prompt"][0][-1])
    assert float((want - plain).norm()) > 1.0  # the adapter changes the residual stream ...
    assert torch.allclose(served, want, atol=2e-3 * float(want.abs().max()))  # ... and the engine serves it merged


def _scripted_navigator(always: str | None):
    """An engine that reads the grid from the prompt and answers the first optimal move (or ``always``)."""

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/server_info":
            return httpx.Response(200, json={"internal_states": [{"max_total_num_tokens": 4096}]})
        if request.url.path == "/model_info":
            return httpx.Response(200, json={"model_path": "scripted"})
        body = json.loads(request.content)
        assert "<answer>" in body["sampling_params"]["ebnf"] and body["sampling_params"]["temperature"] == 0.0
        rows = [line.split()[1:] for line in body["text"].splitlines() if re.match(r"^\s*\d+ [#_AG]( |$)", line)]
        cells = {c: (x, y) for y, r in enumerate(rows) for x, c in enumerate(r)}
        (ax, ay), (gx, gy) = cells["A"], cells["G"]
        move = always or ("UP" if gy < ay else "DOWN" if gy > ay else "LEFT" if gx < ax else "RIGHT")
        meta = {"prompt_tokens": 200, "completion_tokens": 8, "cached_tokens": 150}
        return httpx.Response(200, json={"text": f"<answer>{move}</answer>", "output_ids": [], "meta_info": meta})

    return engine


async def test_the_navigator_check_scores_greedy_moves_and_episodes_on_held_out_grids() -> None:
    perfect = await check_navigator(
        "http://scripted", grids=5, transport=httpx.MockTransport(_scripted_navigator(None))
    )
    assert perfect.action_accuracy == 1.0 and perfect.successes == perfect.grids == 5
    assert perfect.states >= 5 * 3 and perfect.invalid_answers == 0  # start and goal are >= 3 steps apart
    stuck = await check_navigator("http://scripted", grids=5, transport=httpx.MockTransport(_scripted_navigator("UP")))
    assert stuck.action_accuracy < 1.0 and stuck.success_rate < 1.0
