"""The grid agent: one history-free, grammar-constrained request per step to an SGLang-protocol engine.

Each step's prompt shows only the current grid (PAPERS.md §C); the answer is constrained by a regex
to ``{"action": "UP|DOWN|LEFT|RIGHT"}``, optionally after a line of free reasoning. Hidden states
come back through interleaf's extension of ``/generate`` (``return_hidden_states`` with
``hidden_states_layers`` and ``hidden_states_last_k``): the residual stream after the chosen
decoder layers at the last k prompt positions ('pre', before any reasoning) and at the last k
positions fed through the model by the end of generation ('post'). A stock SGLang server answers
``return_hidden_states`` with the last layer only, per token; :func:`parse_hidden_states` reads
that form too and reports it, so a study can say what it could not measure.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx
import numpy as np

from interleaf.probes.gridworld import Action, Grid, GridState

SYSTEM_PROMPT = (
    "You control an agent A in a grid world. Reach the goal G in as few moves as possible. "
    "Walls # block moves; _ is open floor. Columns are x (left to right), rows are y (top to bottom). "
    "UP decreases y, DOWN increases y, LEFT decreases x, RIGHT increases x."
)
KEY_RULES = " A key K is picked up by stepping on it. A door D opens only for an agent carrying the key."
ANSWER_REGEX = r'\{"action": "(UP|DOWN|LEFT|RIGHT)"\}'
_ACTION_RE = re.compile(r'"action"\s*:\s*"(UP|DOWN|LEFT|RIGHT)"')


class AgentAnswerError(ValueError):
    """The engine's text holds no action (only possible when the engine ignores the grammar)."""


def user_prompt(grid: Grid, state: GridState) -> str:
    rules = KEY_RULES if grid.key is not None or grid.door is not None else ""
    return (
        f"Grid ({grid.size}x{grid.size}):\n{grid.render(state)}\n\n"
        f"You are at x={state.x}, y={state.y}.{rules} Choose one move.\n"
        'Answer with JSON: {"action": "UP" | "DOWN" | "LEFT" | "RIGHT"}'
    )


def chatml(system: str, user: str) -> str:
    """SmolLM2's ChatML template, rendered by hand so no tokenizer is needed client-side."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def answer_regex(reasoning_chars: int) -> str:
    if reasoning_chars <= 0:
        return ANSWER_REGEX
    return r"Thought: [A-Za-z0-9 ,.=()'-]{1," + str(reasoning_chars) + r"}\n" + ANSWER_REGEX


def parse_action(text: str) -> Action:
    m = _ACTION_RE.search(text)
    if m is None:
        raise AgentAnswerError(f"text: {text[-200:]!r} holds no {{'action': ...}}; constrain generation with a regex")
    return Action(m.group(1))


@dataclass
class HiddenStates:
    """Captured activations of one request: [layers, k, d_model] before and after generation."""

    layers: list[int]
    pre: np.ndarray
    post: np.ndarray
    source: str
    """'interleaf' (selected layers) or 'sglang' (stock server: last layer only)."""


def parse_hidden_states(raw: object, layers: list[int], last_k: int) -> HiddenStates:
    """Read ``meta_info.hidden_states`` in interleaf's form or in stock SGLang's per-token form."""
    if isinstance(raw, dict):
        got = [int(v) for v in raw.get("layers", [])]
        pre = np.asarray(raw["prompt"], dtype=np.float32)
        post = np.asarray(raw["output"], dtype=np.float32)
        if pre.ndim != 3 or post.shape != pre.shape:
            raise ValueError(f"hidden_states: prompt {pre.shape} / output {post.shape}; expected equal [L, k, d]")
        return HiddenStates(got, pre, post, "interleaf")
    if isinstance(raw, list) and raw:
        # SGLang: [prompt states [T, d] (or [d]), then one [d] (or [1, d]) per generated token], last layer only.
        first = np.asarray(raw[0], dtype=np.float32)
        prompt = first.reshape(-1, first.shape[-1])
        outs = [np.asarray(r, dtype=np.float32).reshape(-1, prompt.shape[-1]) for r in raw[1:]]
        fed = np.concatenate([prompt, *outs], axis=0)
        pre = prompt[-last_k:][None]
        post = fed[-last_k:][None]
        return HiddenStates([-1], pre, post, "sglang")
    raise ValueError(f"hidden_states: unexpected {type(raw).__name__}; is return_hidden_states supported?")


@dataclass
class StepOutcome:
    """One answered step."""

    action: Action | None
    text: str
    hidden: HiddenStates | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_s: float


class GridAgent:
    """Asks an engine for one move at a time over HTTP (``POST /generate``)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        layers: list[int],
        last_k: int = 3,
        temperature: float = 1.0,
        reasoning_chars: int = 0,
        capture: bool = True,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature: {temperature}; use a value >= 0")
        if last_k < 1:
            raise ValueError(f"last_k: {last_k}; capture at least one position")
        self.client = client
        self.layers = layers
        self.last_k = last_k
        self.temperature = temperature
        self.reasoning_chars = reasoning_chars
        self.capture = capture

    def request(self, grid: Grid, state: GridState, seed: int) -> dict:
        body: dict = {
            "text": chatml(SYSTEM_PROMPT, user_prompt(grid, state)),
            "sampling_params": {
                "temperature": self.temperature,
                "max_new_tokens": 16 + self.reasoning_chars,
                "regex": answer_regex(self.reasoning_chars),
                "sampling_seed": seed,
            },
        }
        if self.capture:
            body["return_hidden_states"] = True
            body["hidden_states_layers"] = self.layers
            body["hidden_states_last_k"] = self.last_k
        return body

    async def act(self, grid: Grid, state: GridState, seed: int) -> StepOutcome:
        t0 = time.perf_counter()
        resp = await self.client.post("/generate", json=self.request(grid, state, seed))
        latency = time.perf_counter() - t0
        if resp.status_code != 200:
            raise RuntimeError(f"engine /generate: HTTP {resp.status_code}: {resp.text[:500]}")
        out = resp.json()
        if isinstance(out, list):
            out = out[0]
        meta = out.get("meta_info", {})
        text = out.get("text", "")
        try:
            action: Action | None = parse_action(text)
        except AgentAnswerError:
            action = None
        hidden = None
        if self.capture:
            raw = meta.get("hidden_states")
            if raw is None:
                raise RuntimeError(
                    "engine /generate: no meta_info.hidden_states; start it with hidden-state capture "
                    "(a stock SGLang server needs --enable-return-hidden-states)"
                )
            hidden = parse_hidden_states(raw, self.layers, self.last_k)
        return StepOutcome(
            action=action,
            text=text,
            hidden=hidden,
            prompt_tokens=int(meta.get("prompt_tokens", 0)),
            completion_tokens=int(meta.get("completion_tokens", 0)),
            cached_tokens=int(meta.get("cached_tokens", 0)),
            latency_s=latency,
        )
