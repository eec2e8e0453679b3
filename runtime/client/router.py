"""Router: which server runs an episode's next turn.

* Sticky affinity: an episode stays on the server that holds its KV (session or radix prefix).
* New episodes go to the healthy server with the fewest outstanding tokens (in-flight prompt
  tokens still to prefill plus tokens still to decode, plus the tokens of turns waiting there for
  admission control), ties to the fewest episodes. Waiting turns count: they are that server's work
  queued on the client side, and a server whose episodes all wait would otherwise look idle and draw
  every new episode (what made strict admission 1.9x slower on 2 servers than on 1, same density).
* Health: ``/health`` polled every ``health_interval_s``; a server that fails a request's retries
  is marked down at once and comes back when ``/health`` answers again. When the health check
  declares a server down while another is healthy, the turns in flight there (:class:`Flight`) are
  cut short with ``ServerDown`` and fail over at once: a hung server (SIGSTOP, a wedged GPU) would
  otherwise keep them for the whole request timeout. ``cut_all`` does the same with ``PoolClosed``
  when the pool closes.
* Failover: an episode whose server is down is moved to the best healthy one; the caller resends
  the full ids there (a re-prefill it records).

Pure bookkeeping plus the health loop; the retry/backoff loop around a request lives in
``interleaf.runtime.client.failover``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

from interleaf.runtime.client.errors import NoHealthyServer, PoolClosed, ServerDown


class Flight:
    """One attempt of a turn on a server, as an ``async with`` block the router can cut short.

    Cutting cancels the block's task at its current ``await`` (through an ``asyncio.timeout`` scope, so
    the cancellation stays local to the block) and the block raises ``ServerDown`` (the server was
    declared down) or ``PoolClosed`` (the pool closed) instead of ``TimeoutError``. A cut that arrives
    after the block finished its work does nothing."""

    __slots__ = ("_flights", "_scope", "closing", "rid", "url", "why")

    def __init__(self, url: str, flights: set[Flight]) -> None:
        self.url = url
        self.rid = ""
        """The request the block sends, once known (errors name it)."""
        self.why: str | None = None
        """Why the block was cut short; None while it was not."""
        self.closing = False
        """The cut came from the pool closing (``PoolClosed``), not from a server declared down."""
        self._flights = flights
        self._scope: asyncio.Timeout | None = None

    def cut(self, why: str, *, closing: bool = False) -> None:
        if self.why is not None or self._scope is None:
            return
        self.why, self.closing = why, closing
        self._scope.reschedule(asyncio.get_running_loop().time())  # now: cancel the block's await

    async def __aenter__(self) -> Flight:
        self._scope = asyncio.timeout(None)
        await self._scope.__aenter__()
        self._flights.add(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._flights.discard(self)
        assert self._scope is not None
        try:
            return await self._scope.__aexit__(exc_type, exc, tb)
        except TimeoutError as err:
            if self.why is None:
                raise
            kind = PoolClosed if self.closing else ServerDown
            raise kind(self.url, self.rid, self.why) from err


@dataclass
class ServerState:
    """The router's view of one server."""

    url: str
    healthy: bool = True
    outstanding_tokens: int = 0
    in_flight: int = 0
    waiting_tokens: int = 0
    """Tokens of turns waiting on the client for admission to this server (queued work)."""
    episodes: set[str] = field(default_factory=set)
    last_error: str = ""
    failures: int = 0
    flights: set[Flight] = field(default_factory=set)
    """Turns in flight (or waiting) on this server, which a health check or ``cut_all`` may cut short."""


class Router:
    """Sticky, least-outstanding-tokens routing over a fixed set of servers."""

    def __init__(self, urls: list[str]) -> None:
        if not urls:
            raise ValueError("Router needs at least one server URL (urls=[])")
        self.servers: dict[str, ServerState] = {u: ServerState(u) for u in urls}
        self.affinity: dict[str, str] = {}
        self.failovers = 0
        self._health_task: asyncio.Task | None = None

    def healthy(self) -> list[ServerState]:
        return [s for s in self.servers.values() if s.healthy]

    def pick(self, episode: str, *, exclude: frozenset[str] = frozenset()) -> str:
        """The server for ``episode``'s next turn (sticky while healthy)."""
        current = self.affinity.get(episode)
        if current is not None and current not in exclude and self.servers[current].healthy:
            return current
        candidates = [s for s in self.healthy() if s.url not in exclude]
        if not candidates:
            # All marked down (maybe a slow /health under load): the request itself is the next probe.
            candidates = [s for s in self.servers.values() if s.url not in exclude]
        if not candidates:
            reasons = "; ".join(
                f"{s.url}: {'down' if not s.healthy else 'failed this request'}"
                + (f" ({s.last_error})" if s.last_error else "")
                for s in self.servers.values()
            )
            raise NoHealthyServer(
                ",".join(self.servers),
                "",
                f"no healthy server for episode {episode}: {reasons}; check that the engines run and answer /health",
            )
        best = min(candidates, key=lambda s: (s.outstanding_tokens + s.waiting_tokens, len(s.episodes), s.url))
        self.assign(episode, best.url)
        if current is not None and current != best.url:
            self.failovers += 1
        return best.url

    def assign(self, episode: str, url: str) -> None:
        old = self.affinity.get(episode)
        if old is not None:
            self.servers[old].episodes.discard(episode)
        self.affinity[episode] = url
        self.servers[url].episodes.add(episode)

    def forget(self, episode: str) -> None:
        url = self.affinity.pop(episode, None)
        if url is not None:
            self.servers[url].episodes.discard(episode)

    def begin(self, url: str, tokens: int) -> None:
        state = self.servers[url]
        state.outstanding_tokens += tokens
        state.in_flight += 1

    def end(self, url: str, tokens: int) -> None:
        state = self.servers[url]
        state.outstanding_tokens -= tokens
        state.in_flight -= 1

    @contextlib.contextmanager
    def waiting(self, url: str, tokens: int) -> Iterator[None]:
        """A turn of ``tokens`` waits for admission on ``url`` meanwhile (counted as queued work there)."""
        state = self.servers[url]
        state.waiting_tokens += tokens
        try:
            yield
        finally:
            state.waiting_tokens -= tokens

    def flight(self, url: str) -> Flight:
        """An ``async with`` block for one attempt of a turn on ``url`` (see :class:`Flight`)."""
        return Flight(url, self.servers[url].flights)

    def mark_down(self, url: str, why: str, *, cut_in_flight: bool = False) -> None:
        """Route no new turn to ``url`` until it is marked up. ``cut_in_flight``: also cut short the turns
        in flight there (``ServerDown``: they fail over) when another server is healthy to take them;
        with none, they keep their chance on ``url`` (it may only have been slow to answer ``/health``)."""
        state = self.servers[url]
        state.healthy = False
        state.last_error = why
        state.failures += 1
        if cut_in_flight:
            self.cut_in_flight(url, why)

    def cut_in_flight(self, url: str, why: str) -> None:
        """Cut short the turns in flight on ``url`` (``ServerDown``) if another server is healthy."""
        flights = self.servers[url].flights
        if flights and any(s.healthy for s in self.servers.values() if s.url != url):
            for flight in list(flights):
                flight.cut(f"declared down while the turn was in flight there ({why})")

    def cut_all(self, why: str) -> None:
        """Cut short every turn in flight on every server (``PoolClosed``): the pool is closing."""
        for state in self.servers.values():
            for flight in list(state.flights):
                flight.cut(why, closing=True)

    def mark_up(self, url: str) -> None:
        self.servers[url].healthy = True

    def start_health_checks(self, check: Callable[[str], Awaitable[bool]], *, interval_s: float) -> None:
        """Poll ``check(url)`` for every server every ``interval_s`` in the background."""

        async def loop() -> None:
            while True:
                results = await asyncio.gather(*(check(u) for u in self.servers), return_exceptions=True)
                for url, ok in zip(self.servers, results, strict=True):
                    if ok is True:
                        self.mark_up(url)
                    elif self.servers[url].healthy:
                        self.mark_down(url, f"/health failed: {ok!r}", cut_in_flight=True)
                    else:  # down already (a request's retries failed): turns still there go too
                        self.cut_in_flight(url, f"/health failed: {ok!r}")
                await asyncio.sleep(interval_s)

        self._health_task = asyncio.ensure_future(loop())

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None

    def stats(self) -> dict[str, dict[str, object]]:
        return {
            s.url: {
                "healthy": s.healthy,
                "outstanding_tokens": s.outstanding_tokens,
                "in_flight": s.in_flight,
                "waiting_tokens": s.waiting_tokens,
                "episodes": len(s.episodes),
                "failures": s.failures,
                "last_error": s.last_error,
            }
            for s in self.servers.values()
        }


__all__ = ["Flight", "Router", "ServerState"]
