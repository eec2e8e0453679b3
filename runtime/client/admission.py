"""EpisodeAdmission: which episodes may hold KV on a server, so that those holding can finish holding.

The KV budget (``kv_budget.py``) bounds what is pinned at any instant. A bound alone is not enough:
when the episodes in flight will together need more KV than the budget by the time they finish, the
ones that cannot grow run without a session, their prefixes are evicted by everybody else's growth,
and every later turn recomputes them — the thrashing a stateless server shows, only later.
Admission control keeps the set of holding episodes small enough to finish within the budget (the
"new sessions wait" half of DESIGN.md §6), the way an OS admits processes to avoid thrashing:

* an episode's **projected peak** = its context + its remaining turns × the pool's mean growth per
  turn (delta + completion, learned online; before any observation, the turn's ``max_new_tokens``).
  Remaining turns: the mean length of the episodes this pool has finished, capped by the episode's
  ``max_turns`` hint; before any has finished, the hint (else one more turn);
* episodes are admitted first come, first served while the admitted projections fit the budget
  (program-level FCFS, after Continuum); held KV is at most the budget. The others run their turns
  without a session, keeping their place in the queue — waiting on a GPU the admitted episodes leave idle
  only loses time — except when the caller's ``crowded`` test says the server is crowded (the pool's: the
  open episodes' contexts exceed its KV and the admitted episodes keep it busy). Then only the **head** of
  the queue runs without a session — the waiters whose contexts fit in the KV the admitted projections
  leave free, so that they do not evict each other's prefixes — and the rest wait: a herd of turns without
  sessions on a crowded server recomputes what it evicted from itself;
* when the projections outgrow the budget (the estimate learned that turns are bigger), the most
  recently admitted episodes are **suspended**: a paused hold is released at once, a running turn's
  at its next pause; they wait at the head of the queue, in their original order (no starvation);
* progress: with nothing admitted, the head of the queue is admitted whatever its projection; an
  admitted turn that the budget still refuses runs without a session (recorded ``denied``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

_RECHECK_S = 1.0
"""A waiter re-checks at least this often (the server may have gone down meanwhile)."""


class AdmissionMode(StrEnum):
    """How a pool admits episodes to hold KV (docs/retention.md, "Admission control")."""

    DEFER = "defer"
    """Admission control; a turn not admitted yet runs without a session and keeps its place, except on a
    crowded server (more open context than KV, kept busy by the admitted episodes), where only the head of
    the queue does and the rest wait (the default)."""
    STRICT = "strict"
    """Admission control that always waits: program-level FCFS. Best where the admitted programs keep the
    GPU busy (large fleets of long-context agents, simulated); worst on an idle or lightly loaded server."""
    OFF = "off"
    """No admission control: every episode tries to hold, within the KV budget."""

    def pool_options(self) -> dict[str, bool]:
        """The ``BackendPool`` keyword arguments (``admission``, ``admission_defer``) of this mode."""
        return {"admission": self is not AdmissionMode.OFF, "admission_defer": self is AdmissionMode.DEFER}


@dataclass
class GrowthEstimate:
    """Pool-wide running means: tokens an episode adds per turn, turns an episode lasts."""

    turn_tokens: int = 0
    turns_seen: int = 0
    episode_turns: int = 0
    episodes_seen: int = 0

    def observe_turn(self, added_tokens: int) -> None:
        """A turn after the first added ``added_tokens`` (its delta + completion) to its context."""
        self.turn_tokens += added_tokens
        self.turns_seen += 1

    def observe_episode(self, turns: int) -> None:
        """An episode finished after ``turns`` turns."""
        if turns > 0:
            self.episode_turns += turns
            self.episodes_seen += 1

    def per_turn(self, prior: int) -> float:
        """Mean tokens added per turn; ``prior`` before any observation."""
        return self.turn_tokens / self.turns_seen if self.turns_seen else float(prior)

    def remaining_turns(self, done: int, max_turns: int | None) -> float:
        """Turns an episode that has done ``done`` is expected to run still: up to its ``max_turns``
        before any episode has finished, then the finished episodes' mean length (agents often answer
        early), never beyond ``max_turns``; one more turn when neither is known."""
        limit = None if max_turns is None else max(0, max_turns - done)
        if self.episodes_seen:
            learned = max(1.0, self.episode_turns / self.episodes_seen - done)
            return learned if limit is None else min(limit, learned)
        return 1.0 if limit is None else limit


@dataclass
class _Entry:
    key: str
    rank: int
    context: int
    turns_done: int
    max_turns: int | None
    prior_growth: int


class EpisodeAdmission:
    """Admission control of holding episodes on one server (see the module docstring)."""

    def __init__(
        self,
        server: str,
        capacity: int,
        growth: GrowthEstimate,
        on_suspend: Callable[[str, str], None] | None = None,
        overcommit: float = 1.0,
        kv_capacity: int | None = None,
        one_chunk: int = 0,
    ) -> None:
        if not (isinstance(overcommit, int | float) and math.isfinite(overcommit) and overcommit > 0):
            raise ValueError(
                f"admission overcommit={overcommit!r} must be a finite number > 0 (1.0: projections fit the budget)"
            )
        self.server = server
        self.capacity = capacity
        self.limit = capacity * overcommit
        """Admitted projections may sum to this: above 1x the budget, episodes that do not all reach
        their peak at once share it (more concurrency, some risk of a late suspension or refusal)."""
        self.kv_capacity = capacity if kv_capacity is None else kv_capacity
        """The server's KV this pool's episodes run in (all of it, or the pool's share when several pools use
        the server; ``capacity`` is the pool's budget, a part of it): turns without a session run in what the
        admitted episodes' projections leave of it."""
        self.one_chunk = one_chunk
        """The server's prefill chunk, tokens: a waiter whose projected peak context fits in it never waits
        on a crowded server. Re-prefilling it takes one scheduler iteration — less than waiting behind the
        admitted episodes costs (``bfcl`` at 5% of the peak context: 0.82x → 1.00x ``none``'s makespan,
        simulated; docs/retention.md). 0: every waiter may wait."""
        self.growth = growth
        self.on_suspend = on_suspend
        """Called with (episode key, reason) when an admitted episode is suspended."""
        self.admitted: dict[str, _Entry] = {}
        self.waiting: dict[str, _Entry] = {}
        self.suspensions = 0
        self.waits = 0
        self.peak_admitted = 0
        self._ranks = itertools.count()
        self._changed = asyncio.Event()
        self._version = 0
        """Bumped by every change to the queue or the admitted set's figures (the head is cached on it)."""
        self._head: frozenset[str] = frozenset()
        self._head_stamp: tuple[int, int, int] | None = None

    # -- projections ---------------------------------------------------------------------------

    def projection(self, entry: _Entry) -> float:
        """The entry's projected peak context, tokens."""
        remaining = self.growth.remaining_turns(entry.turns_done, entry.max_turns)
        return entry.context + remaining * self.growth.per_turn(entry.prior_growth)

    def committed(self) -> float:
        """Sum of the admitted episodes' projected peaks."""
        return sum(self.projection(e) for e in self.admitted.values())

    def is_admitted(self, key: str) -> bool:
        return key in self.admitted

    def at_head(self, key: str) -> bool:
        """Whether waiting ``key`` is at the head of the queue: the first waiter, or one whose context, with
        those of the waiters before it, fits in the KV the admitted episodes' projections leave free (turns
        without a session that fit there together do not evict each other's prefixes)."""
        stamp = (self._version, self.growth.turns_seen, self.growth.episodes_seen)
        if self._head_stamp != stamp:  # every waiter asks at every wake-up: compute once per change
            room = self.kv_capacity - self.committed()
            head: set[str] = set()
            total = 0.0
            for entry in sorted(self.waiting.values(), key=lambda e: e.rank):
                total += entry.context
                if head and total > room:
                    break
                head.add(entry.key)
            self._head, self._head_stamp = frozenset(head), stamp
        return key in self._head

    # -- the protocol: admit before a turn, update after it, leave at the end ----------------------

    async def admit(
        self,
        key: str,
        *,
        context: int,
        turns_done: int,
        max_turns: int | None,
        prior_growth: int,
        alive: Callable[[], bool] = lambda: True,
        crowded: Callable[[], bool] | None = None,
    ) -> float:
        """Wait until ``key`` is admitted; returns the seconds waited.

        ``context``: tokens the turn about to run will hold (context + delta + max_new_tokens).
        ``crowded``: None: wait until admitted (strict FCFS). Otherwise return without admission — ``key``
        keeps its place in the queue and the caller runs the turn without a session — unless ``crowded()``
        says the server is crowded, ``key`` is not at the head of the queue (:meth:`at_head`) and its
        projected peak does not fit in one prefill chunk (``one_chunk``); then wait until one changes.
        Raises :class:`AdmissionAbandoned` when ``alive()`` turns false while waiting (server down).
        """
        entry = self.admitted.get(key)
        if entry is not None:
            entry.context, entry.turns_done = context, turns_done + 1
            self._version += 1
            return 0.0
        entry = self.waiting.get(key)
        if entry is None:
            entry = self.waiting[key] = _Entry(key, next(self._ranks), 0, 0, max_turns, prior_growth)
        # The turn about to run is counted in ``context``: project from after it.
        entry.context, entry.turns_done, entry.prior_growth = context, turns_done + 1, prior_growth
        self._fill()

        def may_defer() -> bool:
            if crowded is None:
                return False
            return not crowded() or self.at_head(key) or self.projection(entry) <= self.one_chunk

        if key in self.admitted or may_defer():
            return 0.0
        self.waits += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while key not in self.admitted:
                if not alive():
                    raise AdmissionAbandoned(self.server, key)
                if may_defer():
                    break  # run without a session now, keep the place in the queue
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), _RECHECK_S)
                # No _fill() here: every change that can admit (leave, update, rebalance, a new
                # entry) fills the queue itself; hundreds of waiters each re-filling on every
                # wake-up was most of a 1,000-agent simulation's time.
        except BaseException:
            if self.waiting.get(key) is entry:
                del self.waiting[key]
                self._version += 1
                self._notify()
            raise
        return loop.time() - started

    def update(self, key: str, *, context: int, turns_done: int) -> None:
        """After a turn: the episode holds ``context`` tokens, ``turns_done`` turns are done."""
        entry = self.admitted.get(key) or self.waiting.get(key)
        if entry is not None:
            entry.context, entry.turns_done = context, turns_done
        self.rebalance()

    def rebalance(self) -> None:
        """Suspend the most recently admitted episodes while the projections overrun the budget,
        then admit waiters while they fit (estimates may have moved either way)."""
        committed = self.committed()
        while committed > self.limit and len(self.admitted) > 1:
            victim = max(self.admitted.values(), key=lambda e: e.rank)
            committed -= self.projection(victim)
            del self.admitted[victim.key]
            self.waiting[victim.key] = victim
            self.suspensions += 1
            if self.on_suspend is not None:
                self.on_suspend(
                    victim.key,
                    f"suspended by admission control: the admitted episodes' projected peak "
                    f"{committed + self.projection(victim):,.0f} tokens exceeds the admission limit "
                    f"{self.limit:,.0f} (KV budget {self.capacity:,}) of {self.server}",
                )
        self._fill()

    def leave(self, key: str) -> None:
        """The episode ended (or moved to another server): its commitment goes to the waiters."""
        if self.admitted.pop(key, None) is not None or self.waiting.pop(key, None) is not None:
            self._fill()
            self._notify()

    def _fill(self) -> None:
        """Admit waiters in rank order while their projection fits (the head always, when nothing is
        admitted). Strict order: a later small episode does not overtake an earlier large one."""
        self._version += 1  # called after every change that can move the queue (suspensions included)
        if not self.waiting:
            return
        committed = self.committed()
        admitted_any = False
        for entry in sorted(self.waiting.values(), key=lambda e: e.rank):
            projected = self.projection(entry)
            if self.admitted and committed + projected > self.limit:
                break
            del self.waiting[entry.key]
            self.admitted[entry.key] = entry
            committed += projected
            admitted_any = True
        self.peak_admitted = max(self.peak_admitted, len(self.admitted))
        if admitted_any:
            self._notify()

    def poke(self) -> None:
        """Wake the waiters to re-check (the server's load figures changed)."""
        if self.waiting:
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def stats(self) -> dict[str, float]:
        return {
            "admitted": len(self.admitted),
            "waiting": len(self.waiting),
            "peak_admitted": self.peak_admitted,
            "committed_tokens": round(self.committed()),
            "admission_waits": self.waits,
            "suspensions": self.suspensions,
        }


class AdmissionAbandoned(Exception):
    """A waiter gave up because its server went down; the caller fails over."""

    def __init__(self, server: str, key: str) -> None:
        super().__init__(f"episode {key} stopped waiting for admission on {server}: the server is down")
        self.server = server
        self.key = key


__all__ = ["AdmissionAbandoned", "AdmissionMode", "EpisodeAdmission", "GrowthEstimate"]
