"""Conversation: one episode's exact token ids, and the streaming session (if any) that holds them.

The ids only ever grow: each turn appends the tokenised delta, then the engine's output ids
(stop token included, as the engine keeps them in the session). History is never re-rendered, so
turn n's prompt is always a prefix of turn n+1's (the cache-prefix invariant the tests check).
With a session on the server only the delta is sent; otherwise the full ids go and the radix
cache matches the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from interleaf.runtime.client.backend import SessionTurn


@dataclass
class Conversation:
    """Exact token ids of one episode plus where their KV lives."""

    ids: list[int] = field(default_factory=list)
    """Every token so far: deltas and outputs, in order."""
    turn_starts: list[int] = field(default_factory=list)
    """``len(ids)`` before each turn's delta (turn i's prompt is ``ids[:turn_starts[i] + len(delta_i)]``)."""
    prompt_lengths: list[int] = field(default_factory=list)
    """Length of each turn's full prompt."""
    computed: int = 0
    """Tokens whose KV an earlier call has computed (the last output token is never fed back)."""
    server: str | None = None
    """Server the conversation's KV lives on (sticky affinity)."""
    session_id: str | None = None
    """Open streaming session on ``server``, or None."""
    last_rid: str | None = None
    """``meta_info.id`` of the last turn run inside ``session_id``."""

    @property
    def turns(self) -> int:
        """Number of finished turns (committed)."""
        return len(self.prompt_lengths)

    def request(self, delta: list[int]) -> tuple[list[int], SessionTurn | None]:
        """The ids to send for a turn appending ``delta`` and the session they continue.

        Only the delta goes when the session already holds the history; a fresh session (or none)
        gets the full ids.
        """
        if self.session_id is not None and self.last_rid is not None:
            return list(delta), SessionTurn(self.session_id, self.last_rid)
        full = [*self.ids, *delta]
        if self.session_id is not None:
            return full, SessionTurn(self.session_id, None)
        return full, None

    def prompt(self, delta: list[int]) -> list[int]:
        """The full context the engine will attend to for this turn."""
        return [*self.ids, *delta]

    def commit(self, delta: list[int], output_ids: list[int], rid: str) -> None:
        """Append a finished turn."""
        self.turn_starts.append(len(self.ids))
        self.ids.extend(delta)
        self.prompt_lengths.append(len(self.ids))
        self.ids.extend(output_ids)
        self.computed = max(self.computed, len(self.ids) - 1)
        self.last_rid = rid if self.session_id is not None else None

    def attach_session(self, session_id: str) -> None:
        """A new session opened for the next turn (which then sends the full ids)."""
        self.session_id = session_id
        self.last_rid = None

    def detach_session(self) -> str | None:
        """Forget the session (closed, reaped or lost with its server); return its id."""
        sid, self.session_id, self.last_rid = self.session_id, None, None
        return sid

    def turn_prompt(self, turn: int) -> list[int]:
        """The exact ids turn ``turn`` asked the engine to continue."""
        return self.ids[: self.prompt_lengths[turn]]

    def recomputed(self, prompt_tokens: int, cached_tokens: int) -> int:
        """Prompt tokens this call prefilled that an earlier call had already computed."""
        return max(0, min(self.computed, prompt_tokens) - cached_tokens)


__all__ = ["Conversation"]
