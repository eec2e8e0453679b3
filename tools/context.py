"""What a tool call may know about its episode."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ToolContext", "approx_tokens"]


def approx_tokens(text: str) -> int:
    """Fallback token count when no tokenizer is given: about four characters per token."""
    return (len(text) + 3) // 4


@dataclass
class ToolContext:
    """Per-call context handed to tools that declare a ``ToolContext`` parameter."""

    episode_id: str
    """The episode (trajectory) this call belongs to."""
    scratch_dir: Path
    """A directory private to the episode; tools may write there (the python sandbox runs in it)."""
    deadline: float | None = None
    """Episode deadline on the ``time.monotonic()`` clock; ``None`` means no deadline."""
    count_tokens: Callable[[str], int] | None = None
    """The model's token counter, used for output caps; ``None`` falls back to ~4 chars/token."""

    def __post_init__(self) -> None:
        self.scratch_dir = Path(self.scratch_dir)

    @classmethod
    def create(cls, episode_id: str | None = None, *, root: Path | str | None = None, **kwargs) -> ToolContext:
        """A context with a fresh scratch directory (under ``root``, or the system temp dir)."""
        episode_id = episode_id or uuid.uuid4().hex[:12]
        scratch = Path(tempfile.mkdtemp(prefix=f"interleaf-{episode_id}-", dir=root))
        return cls(episode_id=episode_id, scratch_dir=scratch, **kwargs)

    def tokens(self, text: str) -> int:
        """Count tokens with the model's counter, or approximately."""
        return (self.count_tokens or approx_tokens)(text)

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (may be negative); ``None`` when there is no deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()
