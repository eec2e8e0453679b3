"""The grid agent: one history-free, grammar-constrained request per step to an SGLang-protocol engine.

Requests go through ``interleaf.runtime.client.SGLangBackend`` (``generate_text``: the engine
tokenises the prompt, so no tokenizer is needed here); the prompt is rendered in the agents'
ChatML template (``interleaf.agents.ChatFormat``).

Each step's prompt shows only the current grid (PAPERS.md §C); the answer is constrained by a regex
to ``{"action": "UP|DOWN|LEFT|RIGHT"}``, optionally after a line of free reasoning. Hidden states
come back through interleaf's extension of ``/generate`` (``return_hidden_states`` with
``hidden_states_layers`` and ``hidden_states_last_k``): the residual stream after the chosen
decoder layers at the last k prompt positions ('pre', before any reasoning) and, with reasoning on,
at the last k positions after the reasoning line and before the answer ('post'; see
:meth:`GridAgent.act`). A stock SGLang server answers ``return_hidden_states`` with the last layer
only, per token; :func:`parse_hidden_states` reads that form too and reports it, so a study can
say what it could not measure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from interleaf.agents import CHATML
from interleaf.probes.gridworld import Action, Grid, GridState
from interleaf.runtime.client import SGLangBackend

SYSTEM_PROMPT = (
    "You control an agent A in a grid world. Reach the goal G in as few moves as possible. "
    "Walls # block moves; _ is open floor. Columns are x (left to right), rows are y (top to bottom). "
    "UP decreases y, DOWN increases y, LEFT decreases x, RIGHT increases x."
)
KEY_RULES = " A key K is picked up by stepping on it. A door D opens only for an agent carrying the key."
CHAT_FORMAT = CHATML
"""The prompt's chat template: the TIR agents' own (``interleaf.agents.CHATML``, SmolLM2's ChatML)."""
ANSWER_REGEX = r'\{"action": "(UP|DOWN|LEFT|RIGHT)"\}'
_ACTION_RE = re.compile(r'"action"\s*:\s*"(UP|DOWN|LEFT|RIGHT)"')


class AgentAnswerError(ValueError):
    """The engine's text holds no action (only possible when the engine ignores the grammar)."""


def user_prompt(grid: Grid, state: GridState, coordinates: bool = False) -> str:
    """The step's user message: the rendered grid only, unless ``coordinates`` adds the agent's (x, y).

    Coordinates stay out by default: stated in words they would let a probe read the agent's
    position from the text instead of from the model's own reading of the grid.
    """
    rules = KEY_RULES if grid.key is not None or grid.door is not None else ""
    where = f"You are at x={state.x}, y={state.y}. " if coordinates else ""
    return (
        f"Grid ({grid.size}x{grid.size}):\n{grid.render(state)}\n\n"
        f"{where}{rules.strip()}{' ' if rules else ''}Choose one move.\n"
        'Answer with JSON: {"action": "UP" | "DOWN" | "LEFT" | "RIGHT"}'
    )


def step_prompt(grid: Grid, state: GridState, coordinates: bool = False) -> str:
    """A step's whole prompt: system and user messages, then the assistant generation prompt."""
    return CHAT_FORMAT.initial(SYSTEM_PROMPT, user_prompt(grid, state, coordinates))


THOUGHT_PREFIX = "Thought: "
"""How free reasoning starts; it ends at the first newline, after which the JSON answer follows."""


def reasoning_regex(reasoning_chars: int) -> str:
    """The reasoning line alone: ``Thought: ...`` of 1..``reasoning_chars`` characters, then a newline."""
    if reasoning_chars <= 0:
        raise ValueError(f"reasoning_chars: {reasoning_chars}; reasoning needs at least 1 character")
    return THOUGHT_PREFIX + r"[A-Za-z0-9 ,.=()'-]{1," + str(reasoning_chars) + r"}\n"


def answer_regex(reasoning_chars: int) -> str:
    if reasoning_chars <= 0:
        return ANSWER_REGEX
    return reasoning_regex(reasoning_chars) + ANSWER_REGEX


def answer_text(action: Action, thought: str | None = None) -> str:
    """What a perfect agent writes: an optional reasoning line, then the JSON answer (matches answer_regex)."""
    head = f"{THOUGHT_PREFIX}{thought}\n" if thought else ""
    return head + f'{{"action": "{Action(action).value}"}}'


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
        coordinates: bool = False,
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
        self.coordinates = coordinates
        """State the agent's (x, y) in the prompt (off by default: see :func:`user_prompt`)."""

    def sampling_params(self, seed: int) -> dict[str, Any]:
        """SGLang sampling parameters of one step: the answer regex bounds the output."""
        return {
            "temperature": self.temperature,
            "max_new_tokens": 16 + self.reasoning_chars,
            "regex": answer_regex(self.reasoning_chars),
            "sampling_seed": seed,
        }

    async def _generate(self, text: str, params: dict[str, Any]) -> tuple[Any, HiddenStates | None]:
        result = await self.backend.generate_text(
            text,
            sampling_params=params,
            return_hidden_states=self.capture,
            hidden_states_layers=self.layers if self.capture else None,
            hidden_states_last_k=self.last_k if self.capture else None,
        )
        if not self.capture:
            return result, None
        if result.hidden_states is None:
            raise RuntimeError(
                "engine /generate: no meta_info.hidden_states; start it with hidden-state capture "
                "(a stock SGLang server needs --enable-return-hidden-states)"
            )
        return result, parse_hidden_states(result.hidden_states, self.layers, self.last_k)

    async def act(self, grid: Grid, state: GridState, seed: int) -> StepOutcome:
        """One step: ask for a move in ``state`` (with the hidden states when ``capture``).

        With reasoning the step takes two requests: the reasoning line, then the answer with the
        prompt and that line as its prompt (the prefix cache serves the shared part). 'pre' is the
        end of the first prompt (before any reasoning), 'post' the end of the second: after the
        reasoning and before the first answer token, so a probe there cannot read the emitted action.
        Without reasoning 'post' is the end of the generation (it holds the answer itself).
        """
        prompt = step_prompt(grid, state, self.coordinates)
        if self.reasoning_chars <= 0:
            result, hidden = await self._generate(prompt, self.sampling_params(seed))
            text, results = result.text, [result]
        else:
            think = {
                "temperature": self.temperature,
                "max_new_tokens": 8 + self.reasoning_chars,
                "regex": reasoning_regex(self.reasoning_chars),
                "sampling_seed": seed,
            }
            first, h1 = await self._generate(prompt, think)
            answer = {
                "temperature": self.temperature,
                "max_new_tokens": 16,
                "regex": ANSWER_REGEX,
                "sampling_seed": seed,
            }
            second, h2 = await self._generate(prompt + first.text, answer)
            text, results = first.text + second.text, [first, second]
            hidden = None
            if h1 is not None and h2 is not None:
                hidden = HiddenStates(h1.layers, h1.pre, h2.pre, h1.source)
        try:
            action: Action | None = parse_action(text)
        except AgentAnswerError:
            action = None
        return StepOutcome(
            action=action,
            text=text,
            hidden=hidden,
            prompt_tokens=sum(r.prompt_tokens for r in results),
            completion_tokens=sum(r.completion_tokens for r in results),
            cached_tokens=sum(r.cached_tokens for r in results),
            latency_s=sum(r.e2e_s for r in results),
        )
