"""The grid agent: the TIR agent's prompt and constrained answer, one history-free step at a time.

The grid agent is :class:`interleaf.agents.Agent` (:func:`grid_agent`): no tools, the prompt rendered
by the agent (``Agent.render_initial``: system message with the agents' answer instruction, ChatML),
and each step's output constrained by the agent's own turn grammar (``Agent.turn_grammar``) with the
answer pattern ``UP|DOWN|LEFT|RIGHT``: optional free reasoning, then ``<answer>MOVE</answer>``, read
back with ``interleaf.tools.parse_turn``. So improvements to the TIR agent's format carry over.
Requests go through the runtime client's ``SGLangBackend`` (``generate_text``: the engine tokenises
the prompt, so no tokenizer is needed here).

Each step's prompt shows only the current grid (PAPERS.md §C). Hidden states come back through
interleaf's extension of ``/generate`` (``return_hidden_states`` with ``hidden_states_layers`` and
``hidden_states_last_k``): the residual stream after the chosen decoder layers at the last k prompt
positions ('pre', before any reasoning) and, with reasoning on, at the last k positions after the
reasoning and before the answer ('post'; see :meth:`GridAgent.act`). A stock SGLang server answers
``return_hidden_states`` with the last layer only, per token; :func:`parse_hidden_states` reads that
form too and reports it, so a study can say what it could not measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from interleaf.agents import Agent, GrammarOptions, parse_turn
from interleaf.probes.gridworld import Action, Grid, GridState
from interleaf.runtime.client import SGLangBackend
from interleaf.tools import ANSWER_OPEN, Toolset, format_answer

SYSTEM_PROMPT = (
    "You control an agent A in a grid world. Reach the goal G in as few moves as possible. "
    "Walls # block moves; _ is open floor. Columns are x (left to right), rows are y (top to bottom). "
    "UP decreases y, DOWN increases y, LEFT decreases x, RIGHT increases x."
)
KEY_RULES = " A key K is picked up by stepping on it. A door D opens only for an agent carrying the key."
ACTION_PATTERN = "UP|DOWN|LEFT|RIGHT"
"""The answer's pattern (``GrammarOptions.answer_pattern``): one move."""


class AgentAnswerError(ValueError):
    """The engine's text holds no action (only possible when the engine ignores the grammar)."""


def grid_agent(reasoning_chars: int = 0, temperature: float = 1.0) -> Agent:
    """The TIR agent shaped for the grid: the grid system prompt, no tools, no exemplars, reasoning of
    up to ``reasoning_chars`` characters before the answer (0: none)."""
    if reasoning_chars < 0:
        raise ValueError(f"reasoning_chars: {reasoning_chars}; use 0 (no reasoning) or more")
    return Agent(
        name="grid",
        system_prompt=SYSTEM_PROMPT,
        grammar=GrammarOptions(max_reasoning_chars=reasoning_chars, max_answer_chars=len("RIGHT")),
        temperature=temperature,
        max_exemplars=0,
    )


_PROMPT_AGENT = grid_agent()
"""Renders prompts; the prompt does not depend on reasoning or temperature."""
CHAT_FORMAT = _PROMPT_AGENT.chat_format
"""The prompt's chat template: the TIR agents' own (``interleaf.agents.CHATML``, SmolLM2's ChatML)."""


def user_prompt(grid: Grid, state: GridState, coordinates: bool = False) -> str:
    """The step's user message: the rendered grid only, unless ``coordinates`` adds the agent's (x, y).

    Coordinates stay out by default: stated in words they would let a probe read the agent's
    position from the text instead of from the model's own reading of the grid.
    """
    rules = KEY_RULES if grid.key is not None or grid.door is not None else ""
    where = f"You are at x={state.x}, y={state.y}. " if coordinates else ""
    return (
        f"Grid ({grid.size}x{grid.size}):\n{grid.render(state)}\n\n"
        f"{where}{rules.strip()}{' ' if rules else ''}Choose one move: UP, DOWN, LEFT or RIGHT."
    )


def step_prompt(grid: Grid, state: GridState, coordinates: bool = False) -> str:
    """A step's whole prompt as the TIR agent renders turn 0: system, user message, generation prompt."""
    return _PROMPT_AGENT.render_initial(user_prompt(grid, state, coordinates), toolset=Toolset())


def answer_grammar(reasoning_chars: int = 0) -> str:
    """The agent's turn grammar (EBNF) for one step: reasoning of up to ``reasoning_chars``
    characters (optional; 0: none), then ``<answer>`` with one move."""
    grammar = grid_agent(reasoning_chars).turn_grammar(answer_pattern=ACTION_PATTERN, toolset=Toolset())
    assert grammar is not None  # grid_agent always has a grammar
    return grammar


def answer_text(action: Action, thought: str | None = None) -> str:
    """What a perfect agent writes: optional reasoning, then the answer (matches :func:`answer_grammar`)."""
    return (thought or "") + format_answer(Action(action).value)


def parse_action(text: str) -> Action:
    """The move in ``text``'s ``<answer>`` (the TIR agent's parser)."""
    answer = parse_turn(text).answer
    try:
        return Action(answer or "")
    except ValueError:
        raise AgentAnswerError(
            f"text: {text[-200:]!r} holds no <answer>UP|DOWN|LEFT|RIGHT</answer>; constrain generation with the grammar"
        ) from None


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


ANSWER_TOKENS = len("<answer>RIGHT</answer>") + 1
"""``max_new_tokens`` of the answer: the longest answer spelt one character per token, then the end of
turn. Usually ~8 tokens; under the grammar a model pulled elsewhere (say, mid-word after free
reasoning) can spell it character by character, and a tighter cap then cut it (seen at 16)."""


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
        self.agent = grid_agent(reasoning_chars, temperature)
        """The TIR agent whose prompt and grammar each step uses."""
        self.temperature = temperature
        self.reasoning_chars = reasoning_chars
        self.capture = capture
        self.coordinates = coordinates
        """State the agent's (x, y) in the prompt (off by default: see :func:`user_prompt`)."""
        self._answer_only = answer_grammar(0)
        self._with_reasoning = answer_grammar(reasoning_chars) if reasoning_chars > 0 else self._answer_only

    def sampling_params(self, seed: int, *, reasoning: bool = False) -> dict[str, Any]:
        """SGLang sampling parameters of one request: the agent's turn grammar bounds the output.

        ``reasoning``: the first request of a reasoning step, which stops where the answer opens.
        """
        params: dict[str, Any] = {"temperature": self.temperature, "sampling_seed": seed}
        if reasoning:
            # Reasoning of N characters is at most N tokens, then `<answer>` (at most 8) ends it at the stop.
            limit = self.reasoning_chars + len(ANSWER_OPEN)
            params |= {"max_new_tokens": limit, "ebnf": self._with_reasoning, "stop": [ANSWER_OPEN]}
        else:
            params |= {"max_new_tokens": ANSWER_TOKENS, "ebnf": self._answer_only}
        return params

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

        With reasoning the step takes two requests: the reasoning (the agent's grammar, stopped
        where ``<answer>`` opens), then the answer with the prompt and that reasoning as its prompt
        (the prefix cache serves the shared part). 'pre' is the end of the first prompt (before any
        reasoning), 'post' the end of the second: after the reasoning and before the first answer
        token, so a probe there cannot read the emitted action. Without reasoning 'post' is the end
        of the generation (it holds the answer itself).
        """
        prompt = step_prompt(grid, state, self.coordinates)
        if self.reasoning_chars <= 0:
            result, hidden = await self._generate(prompt, self.sampling_params(seed))
            text, results = result.text, [result]
        else:
            first, h1 = await self._generate(prompt, self.sampling_params(seed, reasoning=True))
            # A server that ignores `stop` returns the answer too: keep only what precedes it.
            thought = first.text.split(ANSWER_OPEN, 1)[0]
            second, h2 = await self._generate(prompt + thought, self.sampling_params(seed))
            text, results = thought + second.text, [first, second]
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
