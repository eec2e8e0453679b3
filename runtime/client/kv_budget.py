"""KVBudget: a hard bound on the KV one pool keeps pinned on one server.

SGLang does not cap streaming sessions and can deadlock when they fill the GPU (its issue #27024).
A pool may pin at most ``capacity`` tokens per server (``kv_budget_fraction`` × the server's
``max_total_num_tokens``; N pools sharing a server each pass fraction/N, so the bound holds
globally). A session's tokens are counted from before it is opened until the server has confirmed
its close, and an in-flight turn reserves its prompt plus ``max_new_tokens`` up front, so the
server's own ``streaming_session_held_tokens`` never exceeds what this object counts.

Never deadlock: a request that does not fit waits at most ``wait_s`` while paused holds are released
(lowest value first, when the policy preempts) and then is refused; the caller runs that turn
without a session (full ids, radix cache), which needs no budget. Active holds (a turn in flight)
always finish and shrink, so a refused caller never waits on itself. Which episodes may try to hold
at all is decided one level up, by admission control (``interleaf.runtime.client.admission``), so that the
admitted ones rarely meet a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

_PREEMPT_MARGIN = 2.0


class HoldState(StrEnum):
    ACTIVE = "active"
    """A turn is running or about to: not evictable."""
    PAUSED = "paused"
    """Held through a tool pause: the budget may release it for a more valuable request."""
    RELEASING = "releasing"
    """Its session is being closed; its tokens count until the server confirms."""


@dataclass
class Hold:
    """Tokens one conversation has pinned (or reserved) on the server."""

    key: str
    tokens: int
    state: HoldState = HoldState.ACTIVE
    value: float = 0.0
    """Net saving of keeping it (PTE); lowest goes first under pressure."""
    on_release: Callable[[str], Awaitable[None]] | None = None
    """Closes the session; called with the reason when the budget or a timer releases the hold."""
    releasing: asyncio.Task | None = None
    since: float = field(default_factory=time.monotonic)
    expected_s: float = 0.0
    """Predicted pause length (0: unknown); a hold paused past it is worth less and less."""

    def current_value(self, now: float) -> float:
        """``value`` discounted by how long the pause has run against its prediction: a pause that
        overruns is likely a long one (heavy-tailed tool times), so its KV is the first to go."""
        if self.expected_s <= 0:
            return self.value
        return self.value / (1.0 + (now - self.since) / self.expected_s)


class KVBudget:
    """Held-token accounting and admission control for one server."""

    def __init__(self, server: str, capacity: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"KVBudget capacity for {server} must be an int >= 0 tokens, got {capacity!r}")
        self.server = server
        self.capacity = capacity
        self.clock = clock
        """Seconds for wait deadlines and pause ages (a simulation injects its virtual clock)."""
        self.holds: dict[str, Hold] = {}
        self.held = 0
        self.peak = 0
        self.refusals = 0
        self.preemptions = 0
        self._changed = asyncio.Event()
        self._paused_or_dropped = asyncio.Event()

    @property
    def free(self) -> int:
        return self.capacity - self.held

    def _set(self, hold: Hold, tokens: int) -> None:
        self.held += tokens - hold.tokens
        hold.tokens = tokens
        self.peak = max(self.peak, self.held)
        assert self.held <= self.capacity, f"KV budget of {self.server} overrun: {self.held} > {self.capacity}"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _notify_paused_or_dropped(self) -> None:
        self._paused_or_dropped.set()
        self._paused_or_dropped = asyncio.Event()

    def pinned_besides(self, key: str) -> bool:
        """Whether another conversation's hold pins KV that will come free without ``key`` doing anything:
        its turn is in flight (or between its turn and its pause: it will pause, then be releasable, or end),
        or its session is being closed."""
        return any(h.state is not HoldState.PAUSED and h.key != key for h in self.holds.values())

    async def paused_or_dropped(self, timeout_s: float) -> None:
        """Wait until some hold is paused or dropped, at most ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._paused_or_dropped.wait(), timeout_s)

    async def reserve(self, key: str, tokens: int, *, wait_s: float, preempt: bool, value: float = 0.0) -> bool:
        """Make ``key``'s hold ``tokens`` large (new or growing); False when refused.

        The hold must not be paused/releasing (call :meth:`resume` first). Waits at most ``wait_s``
        (plus the time to close sessions it preempted) for room.
        """
        hold = self.holds.get(key)
        if hold is not None and hold.releasing is not None:
            # Its session is being closed: wait, then start a fresh hold.
            await asyncio.shield(hold.releasing)
            hold = self.holds.get(key)
        current = hold.tokens if hold else 0
        if tokens > self.capacity:
            self.refusals += 1
            return False
        deadline = self.clock() + wait_s
        while True:
            if tokens - current <= self.free:
                if hold is None:
                    hold = self.holds[key] = Hold(key, 0, value=value)
                hold.state = HoldState.ACTIVE
                self._set(hold, tokens)
                return True
            pending = [h.releasing for h in self.holds.values() if h.releasing is not None]
            if preempt:
                pending += self._preempt(tokens - current - self.free, below=value, exclude=key)
            remaining = deadline - self.clock()
            if remaining <= 0 and not pending:
                self.refusals += 1
                return False
            changed = self._changed
            waiters = [asyncio.ensure_future(changed.wait())]
            try:
                await asyncio.wait(
                    [*waiters, *pending],
                    timeout=max(remaining, 0.0) if not pending else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiters[0].cancel()
            hold = self.holds.get(key)
            current = hold.tokens if hold else 0

    def _preempt(
        self, needed: int, *, below: float, exclude: str, reason: str = "preempted: KV budget full"
    ) -> list[asyncio.Task]:
        """Start releasing paused holds, lowest current value first, until ``needed`` tokens are on
        the way. Only holds worth less than half the requester's ``below`` go: trading a hold for an
        equal one would only churn sessions."""
        tasks: list[asyncio.Task] = []
        freed = sum(h.tokens for h in self.holds.values() if h.state is HoldState.RELEASING)
        now = self.clock()
        for hold in sorted(
            (h for h in self.holds.values() if h.state is HoldState.PAUSED and h.key != exclude),
            key=lambda h: h.current_value(now),
        ):
            if freed >= needed or hold.current_value(now) * _PREEMPT_MARGIN > below:
                break
            self.preemptions += 1
            tasks.append(self.release_paused(hold.key, f"{reason} ({self.server})"))
            freed += hold.tokens
        return tasks

    def make_room(self, needed: int, *, exclude: str, reason: str) -> list[asyncio.Task]:
        """Release paused holds, lowest current value first, until ``needed`` tokens are on the way,
        whatever they are worth: the server aborted a request for lack of KV, and what fills it may be
        this budget's own paused sessions (a turn without a session needs its whole context unpinned)."""
        return self._preempt(needed, below=math.inf, exclude=exclude, reason=reason)

    def shrink(self, key: str, tokens: int) -> None:
        """Lower an active hold to what the server really keeps (after a turn finished)."""
        hold = self.holds.get(key)
        if hold is not None and tokens < hold.tokens:
            self._set(hold, tokens)
            self._notify()

    def pause(
        self, key: str, *, value: float, on_release: Callable[[str], Awaitable[None]], expected_s: float = 0.0
    ) -> None:
        """The hold is kept through a tool pause: it becomes preemptable."""
        hold = self.holds[key]
        hold.state = HoldState.PAUSED
        hold.value = value
        hold.expected_s = expected_s
        hold.on_release = on_release
        hold.since = self.clock()
        self._notify_paused_or_dropped()

    async def resume(self, key: str) -> bool:
        """The episode is back: True if its hold survived (now active), False if it was released."""
        hold = self.holds.get(key)
        if hold is None:
            return False
        if hold.state is HoldState.RELEASING and hold.releasing is not None:
            await asyncio.shield(hold.releasing)
            return False
        hold.state = HoldState.ACTIVE
        return True

    def release_paused(self, key: str, reason: str) -> asyncio.Task:
        """Release a paused hold via its ``on_release`` (session close); tokens freed when it returns."""
        hold = self.holds[key]
        if hold.releasing is not None:
            return hold.releasing
        hold.state = HoldState.RELEASING

        async def run() -> None:
            try:
                if hold.on_release is not None:
                    await hold.on_release(reason)
            finally:
                if self.holds.get(key) is hold:
                    self.drop(key)

        hold.releasing = asyncio.ensure_future(run())
        return hold.releasing

    def drop(self, key: str) -> None:
        """Forget a hold whose session the server has closed (or never opened)."""
        hold = self.holds.pop(key, None)
        if hold is not None:
            self.held -= hold.tokens
            self._notify()
            self._notify_paused_or_dropped()

    def stats(self) -> dict[str, int]:
        return {
            "budget_tokens": self.capacity,
            "held_tokens": self.held,
            "peak_held_tokens": self.peak,
            "holds": len(self.holds),
            "paused_holds": sum(1 for h in self.holds.values() if h.state is HoldState.PAUSED),
            "refusals": self.refusals,
            "preemptions": self.preemptions,
        }


__all__ = ["Hold", "HoldState", "KVBudget"]
