"""An episode's limits. Running out of any one ends the episode with that termination reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budgets:
    """Per-episode limits, checked before every LLM call (and by the wall-clock timer throughout)."""

    max_turns: int = 8
    """LLM calls per episode (``max_turns``)."""
    max_tokens: int = 4096
    """Cap on the whole token sequence, prompt and generated (``max_tokens``); the last turn's
    ``max_new_tokens`` is shortened to fit."""
    max_new_tokens: int = 256
    """Tokens one turn may generate."""
    wall_time_s: float | None = 300.0
    """Wall-clock seconds for the whole episode, tools included (``wall_time``); None = unlimited."""

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_tokens", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Budgets.{name} must be a positive integer, got {value!r}")
        if self.wall_time_s is not None and self.wall_time_s <= 0:
            raise ValueError(f"Budgets.wall_time_s must be > 0 or None, got {self.wall_time_s!r}")


__all__ = ["Budgets"]
