"""The positive control: a LoRA adapter that makes the default model a goal-directed grid navigator.

A probe study on a model that does not navigate cannot show that its analyses find goal-directedness
where it exists. This module trains one: LoRA (PyPI ``peft``) on BFS-optimal trajectories of
:mod:`interleaf.probes` grids, with exactly the agent's prompt (:func:`interleaf.probes.agent.step_prompt`,
coordinate-free) and answer (:func:`interleaf.probes.agent.answer_text`: the TIR agent's
``<answer>MOVE</answer>``) giving one optimal action (the first of π*(s) in ACTIONS order, a
consistent tie-break). Optionally (``reasoning``) a reasoning line naming the agent's and the goal's
cells (``A at (x,y), G at (x,y). ``) precedes the answer. The loss covers the completion only.

[ours] The default is the answer alone: on a shared 2-core CPU a training run sees a few hundred
examples, too few to learn to read coordinates off the grid, while the move of an open room follows
from where A and G sit relative to each other. The adapter is saved in fp16 (a few MB) and the
engine merges it into the weights at load (``interleaf engine serve --lora-path DIR``).

torch, transformers and peft are imported inside the functions: the rest of ``interleaf.probes``
must stay importable (and fast to import) without them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from interleaf.probes.agent import CHAT_FORMAT, answer_text, step_prompt
from interleaf.probes.generator import plain_grid
from interleaf.probes.gridworld import ACTIONS, Grid, GridState
from interleaf.probes.policy import OptimalPolicy
from interleaf.tools import ANSWER_OPEN

if TYPE_CHECKING:
    from interleaf.runtime.client import Transport

logger = logging.getLogger("interleaf.probes")

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear projection of a Llama block carries an adapter."""


def thought(grid: Grid, state: GridState) -> str:
    """The navigator's reasoning line: where the agent and the goal are (x = column, y = row)."""
    return f"A at ({state.x},{state.y}), G at ({grid.goal[0]},{grid.goal[1]}). "


@dataclass(frozen=True)
class Example:
    """One supervised step: the agent's prompt and the completion a perfect navigator writes."""

    prompt: str
    completion: str


def optimal_examples(grid: Grid, reasoning: bool = False) -> list[Example]:
    """One example per state of a BFS-optimal trajectory from the start (the goal state excluded)."""
    policy = OptimalPolicy.solve(grid)
    out = []
    for state in policy.shortest_path()[:-1]:
        best = next(a for a in ACTIONS if a in policy.optimal_actions(state))
        text = answer_text(best, thought(grid, state) if reasoning else None)
        out.append(Example(step_prompt(grid, state), text + CHAT_FORMAT.end))
    return out


def encode_example(tok, example: Example) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) as the engine sees them at inference.

    The engine tokenises ``text`` with add_special_tokens=False. The answer is generated after the
    prompt (and, with reasoning, after the prompt + reasoning sent as one text: the agent's second
    request), so the answer's ids are its own tokenisation, not a merge across the boundary.
    """
    prompt = tok.encode(example.prompt, add_special_tokens=False)
    thought, sep, answer = example.completion.partition(ANSWER_OPEN)
    head = tok.encode(example.prompt + thought, add_special_tokens=False) if thought else prompt
    if head[: len(prompt)] != prompt:
        raise ValueError(f"example: the prompt's tokens change when the reasoning {thought!r} follows it")
    return prompt, head[len(prompt) :] + tok.encode(sep + answer, add_special_tokens=False)


class NavigatorConfig(BaseModel):
    """How the navigator adapter is trained (``interleaf probe train-navigator``); stored with the adapter."""

    sizes: list[int] = Field(default_factory=lambda: [7])
    """Grid sides of the training grids."""
    densities: list[float] = Field(default_factory=lambda: [0.0])
    """Wall densities of the training grids (cycled grid by grid); 0: open rooms."""
    grids: int = 400
    """Training grids; each gives the states of one BFS-optimal trajectory."""
    seed: int = 1000
    """Seed of the training grids. Keep it apart from the study's seeds (0..): held-out grids stay unseen."""
    rank: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (scale = alpha / rank)."""
    lr: float = 3e-3
    """AdamW learning rate (linear warm-up over 10 steps, cosine decay to 10 % over the run: over the
    steps of ``epochs`` or the ``max_minutes`` budget, whichever ends first)."""
    batch_size: int = 4
    """Sequences per optimiser step."""
    epochs: float = 1.0
    """Passes over the examples (fractions allowed); training also stops at ``max_minutes``."""
    max_minutes: float = 30.0
    """Wall-clock budget of the optimisation loop; the adapter is saved when it runs out."""
    bf16: bool = True
    """Run forward and backward under bf16 autocast (CPUs with AVX512-BF16; ~1.2x here, see
    docs/probes.md); adapters stay fp32."""
    reasoning: bool = False
    """Train the ``A at (x,y), G at (x,y).`` line before the answer (off: the answer alone)."""
    threads: int = Field(default=2, ge=1)
    """torch threads: the cores of an idle machine; 1 on a CPU shared with other jobs, where two
    threads wait for each other at every operation (8-11x slower measured, docs/probes.md)."""


class NavigatorLog(BaseModel):
    """What a training run did (``train.json`` next to the adapter)."""

    config: NavigatorConfig
    """The configuration."""
    command: str
    """The command line that reproduces the adapter."""
    base_model: str
    """The base model's directory name."""
    examples: int
    """Training examples (steps of optimal trajectories)."""
    optimiser_steps: int
    """Optimiser steps taken."""
    epochs_done: float
    """Passes over the examples completed."""
    wall_s: float
    """Seconds of the optimisation loop."""
    loss_first: float
    """Mean completion-token loss over the first 10 steps."""
    loss_last: float
    """Mean completion-token loss over the last 10 steps."""
    stopped_by_budget: bool
    """True when ``max_minutes`` ended training before ``epochs``."""
    adapter_bytes: int
    """Size of adapter_model.safetensors."""
    torch_threads: int
    """torch.get_num_threads() during training."""
    losses: list[float] = Field(default_factory=list)
    """Completion-token loss of every optimiser step."""


def training_examples(config: NavigatorConfig) -> list[Example]:
    """The examples of ``config``: ``grids`` random grids, their optimal trajectories' steps."""
    rng = np.random.default_rng(config.seed)
    out: list[Example] = []
    for i in range(config.grids):
        size = config.sizes[i % len(config.sizes)]
        density = config.densities[(i // len(config.sizes)) % len(config.densities)]
        out += optimal_examples(plain_grid(size, density, rng), reasoning=config.reasoning)
    return out


def _lr(step: int, total: int, base: float, time_frac: float = 0.0) -> float:
    """Warm-up over 10 steps, then cosine to 10 % of ``base`` by the end of the run: ``total`` steps
    or the wall-clock budget (``time_frac`` of it spent), whichever comes first."""
    if step < 10:
        return base * (step + 1) / 10
    frac = min(1.0, max((step - 10) / max(1, total - 10), time_frac))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def batch_loss(model, batch: list[tuple[list[int], list[int]]], pad: int):
    """Mean completion-token cross-entropy of a batch of (prompt ids, completion ids) under a PEFT causal LM.

    Two savings over ``model(input_ids, labels=...)``, both exact: the prompts' longest common
    prefix (system prompt, grid header: about half of each prompt) runs once and its KV cache is
    repeated over the batch (gradients flow through it), and the vocabulary projection runs only at
    the positions that predict completion tokens.
    """
    import torch
    import torch.nn.functional as F

    inner = model.base_model.model.model
    lm_head = model.base_model.model.lm_head
    prompts = [p for p, _ in batch]
    limit = min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == prompts[0][n] for p in prompts):
        n += 1
    cache = inner(input_ids=torch.tensor([prompts[0][:n]]), use_cache=True).cache
    cache.batch_repeat_interleave(len(batch))
    tails = [p[n:] + c for p, c in batch]
    width = max(len(t) for t in tails)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), n + width), dtype=torch.long)
    mask[:, :n] = 1
    rows, cols, targets = [], [], []
    for r, ((p, c), t) in enumerate(zip(batch, tails, strict=True)):
        ids[r, : len(t)] = torch.tensor(t)
        mask[r, n : n + len(t)] = 1
        start = len(p) - n - 1  # the hidden state at position i predicts token i + 1
        rows += [r] * len(c)
        cols += list(range(start, start + len(c)))
        targets += c
    positions = (torch.arange(width) + n).unsqueeze(0).expand(len(batch), -1)
    hidden = inner(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    logits = lm_head(hidden.last_hidden_state[torch.tensor(rows), torch.tensor(cols)])
    return F.cross_entropy(logits.float(), torch.tensor(targets))


def train_navigator(
    config: NavigatorConfig,
    base_model: Path,
    out: Path,
    *,
    command: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> NavigatorLog:
    """Train the adapter on ``base_model`` (a HF directory) and save it (fp16) with ``train.json`` to ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    tok = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS), bias="none"
    )
    model = get_peft_model(model, lora)
    model.train()
    examples = training_examples(config)
    encoded = [encode_example(tok, ex) for ex in examples]
    rng = np.random.default_rng(config.seed)
    total = max(1, math.ceil(config.epochs * len(encoded) / config.batch_size))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    losses: list[float] = []
    order = rng.permutation(len(encoded))
    cursor = 0
    t0 = time.perf_counter()
    step = 0
    stopped = False
    while step < total:
        if time.perf_counter() - t0 > 60 * config.max_minutes:
            stopped = True
            break
        if cursor + config.batch_size > len(order):
            order = rng.permutation(len(encoded))
            cursor = 0
        batch = [encoded[int(i)] for i in order[cursor : cursor + config.batch_size]]
        cursor += config.batch_size
        for g in opt.param_groups:
            g["lr"] = _lr(step, total, config.lr, (time.perf_counter() - t0) / (60 * config.max_minutes))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = batch_loss(model, batch, pad)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        step += 1
        if progress is not None:
            progress(step, total, losses[-1])
    wall = time.perf_counter() - t0
    model.eval()
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.float16)
    out.mkdir(parents=True, exist_ok=True)
    readme = out / "README.md"
    kept = readme.read_text() if readme.exists() else None
    model.save_pretrained(out)
    # peft writes a model-card template over README.md; keep the folder's own (or none).
    if kept is not None:
        readme.write_text(kept)
    else:
        readme.unlink(missing_ok=True)
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    # A machine-independent name: the engine applies the adapter to whatever base it serves.
    cfg["base_model_name_or_path"] = base_model.name.rsplit("-", 1)[0]
    cfg_path.write_text(json.dumps(cfg, indent=2))
    log = NavigatorLog(
        config=config,
        command=command,
        base_model=base_model.name,
        examples=len(encoded),
        optimiser_steps=step,
        epochs_done=step * config.batch_size / max(1, len(encoded)),
        wall_s=wall,
        loss_first=float(np.mean(losses[:10])) if losses else float("nan"),
        loss_last=float(np.mean(losses[-10:])) if losses else float("nan"),
        stopped_by_budget=stopped,
        adapter_bytes=(out / "adapter_model.safetensors").stat().st_size,
        torch_threads=torch.get_num_threads(),
        losses=losses,
    )
    (out / "train.json").write_text(log.model_dump_json(indent=2))
    return log


class NavigatorCheck(BaseModel):
    """The navigator's acceptance check (greedy, held-out grids): is it a positive control?"""

    engine_url: str
    """The engine that served the model (with or without the adapter)."""
    size: int
    """Grid side."""
    density: float
    """Wall density of the grids."""
    seed: int
    """Seed of the grids (the study's seeds, apart from the training seed: the grids are held out)."""
    grids: int
    """Grids checked."""
    states: int
    """States scored for action accuracy: every state of one BFS-optimal path per grid (goal excluded)."""
    action_accuracy: float
    """Share of those states where the greedy answer is an optimal action (in π*(s))."""
    successes: int
    """Greedy episodes from the start that reached the goal within the step cap ⌈1.5 L*⌉."""
    success_rate: float
    """successes / grids."""
    invalid_answers: int
    """Answers without a move (only when the engine ignores the grammar)."""
    wall_s: float
    """Seconds the check took."""


async def check_navigator(
    engine_url: str,
    *,
    size: int = 7,
    density: float = 0.0,
    grids: int = 12,
    seed: int = 0,
    reasoning_chars: int = 0,
    concurrency: int = 8,
    timeout_s: float = 1800.0,
    transport: Transport | None = None,
) -> NavigatorCheck:
    """Score the served model as a navigator on ``grids`` held-out grids, greedily, through the
    study's own agent: action accuracy over the states of optimal paths and success of whole
    episodes (the targets of the positive control: ≥ 0.8 and ≥ 0.6)."""
    import asyncio

    from interleaf.probes.agent import GridAgent
    from interleaf.probes.gridworld import step_cap
    from interleaf.runtime.client import SGLangBackend

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    cases = [plain_grid(size, density, rng) for _ in range(grids)]
    backend = await SGLangBackend.connect(engine_url, request_timeout_s=timeout_s, transport=transport)
    agent = GridAgent(backend, layers=[], temperature=0.0, reasoning_chars=reasoning_chars, capture=False)
    gate = asyncio.Semaphore(concurrency)
    invalid = 0

    async def move(grid: Grid, state: GridState):
        nonlocal invalid
        async with gate:
            out = await agent.act(grid, state, seed=0)
        invalid += out.action is None
        return out.action

    async def path_hits(grid: Grid) -> list[bool]:
        policy = OptimalPolicy.solve(grid)
        path = policy.shortest_path()[:-1]
        actions = await asyncio.gather(*(move(grid, s) for s in path))
        return [a is not None and a in policy.optimal_actions(s) for s, a in zip(path, actions, strict=True)]

    async def episode(grid: Grid) -> bool:
        state = grid.initial_state()
        for _ in range(step_cap(OptimalPolicy.solve(grid).optimal_length)):
            action = await move(grid, state)
            if action is not None:
                state = grid.step(state, action)
            if grid.is_goal(state):
                return True
        return False

    try:
        hits = await asyncio.gather(*(path_hits(g) for g in cases))
        wins = await asyncio.gather(*(episode(g) for g in cases))
    finally:
        await backend.aclose()
    flat = [h for hs in hits for h in hs]
    return NavigatorCheck(
        engine_url=engine_url,
        size=size,
        density=density,
        seed=seed,
        grids=grids,
        states=len(flat),
        action_accuracy=float(np.mean(flat)) if flat else float("nan"),
        successes=int(sum(wins)),
        success_rate=float(np.mean(wins)) if wins else float("nan"),
        invalid_answers=invalid,
        wall_s=time.perf_counter() - t0,
    )
