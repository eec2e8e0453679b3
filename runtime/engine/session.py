"""Streaming sessions (SGLang's ``--enable-streaming-session``): KV pinned across turns.

A session holds a lock on the radix node covering every token of its last finished turn that
has KV (prompt + output minus the final sampled token, which is fed at the start of the next
turn). Turns are append-only: the next request sends only new ids; the server prepends the
session's ids. The lock is dropped by ``/close_session``, by ``timeout`` seconds of inactivity,
or never before: the client must bound how much it pins (interleaf's retention layer does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from interleaf.runtime.engine.radix_cache import Node
from interleaf.runtime.engine.request import Req


@dataclass(eq=False)
class Session:
    id: str
    timeout: float | None
    node: Node | None = None
    """Locked radix node covering ``kv_ids``."""
    kv_ids: list[int] = field(default_factory=list)
    """Ids whose KV the session pins, in order."""
    pending_ids: list[int] = field(default_factory=list)
    """Ids of the last turn without KV yet (its final sampled token)."""
    last_rid: str | None = None
    inflight: Req | None = None
    last_active: float = field(default_factory=time.monotonic)
    closed: bool = False

    @property
    def held_tokens(self) -> int:
        return len(self.kv_ids)

    @property
    def context_ids(self) -> list[int]:
        """Everything the next turn's new ids are appended to."""
        return self.kv_ids + self.pending_ids

    def expired(self, now: float) -> bool:
        return self.timeout is not None and self.inflight is None and now - self.last_active > self.timeout
