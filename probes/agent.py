"""The grid agent: one history-free, grammar-constrained request per step to an SGLang-protocol engine.

Requests go through ``interleaf.runtime.client.SGLangBackend`` (``generate_text``: the engine
tokenises the prompt, so no tokenizer is needed here); the prompt is rendered in the agents'
ChatML template (``interleaf.agents.ChatFormat``).

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from interleaf.agents import ChatFormat
from interleaf.probes.gridworld import Action, Grid, GridState
from interleaf.runtime.client import SGLangBackend

SYSTEM_PROMPT = (
    "You control an agent A in a grid world. Reach the goal G in as few moves as possible. "
    "Walls # block moves; _ is open floor. Columns are x (left to right), rows are y (top to bottom). "
    "UP decreases y, DOWN increases y, LEFT decreases x, RIGHT increases x."
)
KEY_RULES = " A key K is picked up by stepping on it. A door D opens only for an agent carrying the key."
CHAT_FORMAT = ChatFormat()
"""The prompt's chat template: ChatML, SmolLM2's (the default model's)."""
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


def step_prompt(grid: Grid, state: GridState) -> str:
    """A step's whole prompt: system and user messages, then the assistant generation prompt."""
    return CHAT_FORMAT.initial(SYSTEM_PROMPT, user_prompt(grid, state))


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
    """Asks an engine for one move at a time (``POST /generate`` through :class:`SGLangBackend`)."""

    def __init__(
        self,
        backend: SGLangBackend,
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
        self.backend = backend
        self.layers = layers
        self.last_k = last_k
        self.temperature = temperature
        self.reasoning_chars = reasoning_chars
        self.capture = capture

    def sampling_params(self, seed: int) -> dict[str, Any]:
        """SGLang sampling parameters of one step: the answer regex bounds the output."""
        return {
            "temperature": self.temperature,
            "max_new_tokens": 16 + self.reasoning_chars,
            "regex": answer_regex(self.reasoning_chars),
            "sampling_seed": seed,
        }

    async def act(self, grid: Grid, state: GridState, seed: int) -> StepOutcome:
        """One step: ask for a move in ``state`` (with the hidden states when ``capture``)."""
        result = await self.backend.generate_text(
            step_prompt(grid, state),
            sampling_params=self.sampling_params(seed),
            return_hidden_states=self.capture,
            hidden_states_layers=self.layers if self.capture else None,
            hidden_states_last_k=self.last_k if self.capture else None,
        )
        try:
            action: Action | None = parse_action(result.text)
        except AgentAnswerError:
            action = None
        hidden = None
        if self.capture:
            if result.hidden_states is None:
                raise RuntimeError(
                    "engine /generate: no meta_info.hidden_states; start it with hidden-state capture "
                    "(a stock SGLang server needs --enable-return-hidden-states)"
                )
            hidden = parse_hidden_states(result.hidden_states, self.layers, self.last_k)
        return StepOutcome(
            action=action,
            text=result.text,
            hidden=hidden,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cached_tokens=result.cached_tokens,
            latency_s=result.e2e_s,
        )
