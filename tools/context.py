"""What a tool call may know about its episode."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["ToolContext", "approx_tokens"]


def approx_tokens(text: str) -> int:
    """Fallback token count when no tokenizer is given: about four characters per token."""
    return (len(text) + 3) // 4


class ToolContext:
    """Per-call context handed to tools that declare a ``ToolContext`` parameter.

    The scratch directory is made on first use of ``scratch_dir``: most episodes call no tool that
    writes, and making and removing an empty directory cost ~2.6 ms of wall time per episode on this
    machine's disk (ext4 with ``discard``; docs/jobs.md, "Orchestration overhead"). Use it as
    ``with ToolContext.create(...) as ctx:`` (or call ``remove_scratch()``) to remove what was made.
    """

    __slots__ = ("_lock", "_owned", "_scratch", "count_tokens", "deadline", "episode_id", "scratch_root")

    def __init__(
        self,
        episode_id: str,
        scratch_dir: Path | str | None = None,
        deadline: float | None = None,
        count_tokens: Callable[[str], int] | None = None,
        *,
        scratch_root: Path | str | None = None,
    ) -> None:
        self.episode_id = episode_id
        """The episode (trajectory) this call belongs to."""
        self.deadline = deadline
        """Episode deadline on the ``time.monotonic()`` clock; ``None`` means no deadline."""
        self.count_tokens = count_tokens
        """The model's token counter, used for output caps; ``None`` falls back to ~4 chars/token."""
        self.scratch_root = None if scratch_root is None else Path(scratch_root)
        """Where a scratch directory is made on first use (``None``: the system temp dir)."""
        self._scratch = None if scratch_dir is None else Path(scratch_dir)
        # Only a directory this context made is removed by it; a given one belongs to the caller.
        self._owned = False
        # Sync tools run in worker threads, so two parallel calls may ask for the directory at once.
        self._lock = threading.Lock()

    @classmethod
    def create(cls, episode_id: str | None = None, *, root: Path | str | None = None, **kwargs) -> ToolContext:
        """A context whose private scratch directory is made (under ``root``, or the system temp dir)
        when a tool first asks for ``scratch_dir``; ``remove_scratch()`` removes it."""
        return cls(episode_id or uuid.uuid4().hex[:12], scratch_root=root, **kwargs)

    @property
    def scratch_dir(self) -> Path:
        """A directory private to the episode; tools may write there (the python sandbox runs in it).
        Made on first access."""
        scratch = self._scratch
        if scratch is None:
            with self._lock:
                if self._scratch is None:
                    self._scratch = Path(
                        tempfile.mkdtemp(prefix=f"interleaf-{self.episode_id}-", dir=self.scratch_root)
                    )
                    self._owned = True
                scratch = self._scratch
        return scratch

    @property
    def has_scratch(self) -> bool:
        """Whether a scratch directory exists for this context (given, or made on first use)."""
        return self._scratch is not None

    def remove_scratch(self) -> None:
        """Remove the scratch directory if this context made it (nothing to do if no tool asked for
        one; a directory passed in is left to its owner). Idempotent."""
        with self._lock:
            scratch, owned = self._scratch, self._owned
            if owned:
                self._scratch, self._owned = None, False
        if owned and scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def __enter__(self) -> ToolContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_scratch()

    def __repr__(self) -> str:
        return f"ToolContext(episode_id={self.episode_id!r}, scratch_dir={self._scratch!r}, deadline={self.deadline!r})"

    def tokens(self, text: str) -> int:
        """Count tokens with the model's counter, or approximately."""
        return (self.count_tokens or approx_tokens)(text)

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (may be negative); ``None`` when there is no deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()
