"""BackendPool: the servers, their KV budgets, the router and the retention policy one process uses.

One pool per process (per Ray actor); ``pool.episode(id)`` hands each episode an
:class:`~interleaf.runtime.client.episode_model.EpisodeModel` (the ``AgentModel`` the agent calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from interleaf.runtime.client.admission import EpisodeAdmission, GrowthEstimate
from interleaf.runtime.client.backend import Backend
from interleaf.runtime.client.capabilities import CapabilityGap, retention_gaps
from interleaf.runtime.client.episode_model import EpisodeModel
from interleaf.runtime.client.errors import BackendError, BackendUnavailable, PoolClosed
from interleaf.runtime.client.kv_budget import HoldState, KVBudget
from interleaf.runtime.client.retention import RetentionPolicy, ServerPressure, ToolDurationEstimator, make_policy
from interleaf.runtime.client.router import Router
from interleaf.runtime.client.server_metrics import ServerMetrics
from interleaf.runtime.client.settings import PoolSettings
from interleaf.runtime.client.sglang import SGLangBackend, Transport
from interleaf.runtime.tokenizer import load_tokenizer

_INGEST_HALF_LIFE_S = 10.0
_ADMITTED_BUSY = 0.7
"""A server whose admitted (session-holding) episodes alone kept it running turns this share of the time
(smoothed) is busy with them: if it is crowded too, only the head of its admission queue runs without a
session."""
_UNWIND_S = 30.0
"""``aclose()`` waits at most this long for the turns it cut short to give back their sessions (an abort and a
close each bounded by 5-10 s against a server that does not answer)."""
_NOT_SETTINGS = frozenset({"estimator", "clock"})
"""Constructor options that are objects, not :class:`PoolSettings` values."""


@dataclass
class _IngestRate:
    """Exponentially weighted tokens/s written into a server's KV."""

    rate: float = 0.0
    known: bool = False
    last_total: float | None = None
    last_at: float = 0.0

    def sample(self, total: float, at: float) -> None:
        if not (math.isfinite(total) and math.isfinite(at)):
            return  # a counter that overflowed or a broken clock: the rate stays what it was, never NaN
        if self.last_total is not None and at > self.last_at and total >= self.last_total:
            instant = (total - self.last_total) / (at - self.last_at)
            if math.isfinite(instant):
                weight = 1 - 0.5 ** ((at - self.last_at) / _INGEST_HALF_LIFE_S)
                self.rate = instant if not self.known else self.rate + weight * (instant - self.rate)
                self.known = True
        self.last_total, self.last_at = total, at


@dataclass
class _HeldBusy:
    """Exponentially weighted share of time the server was running a turn inside a session (an admitted,
    holding episode's turn), from the client's own requests: how busy the admitted episodes alone keep it,
    whatever the deferred turns add."""

    in_flight: int = 0
    share: float = 0.0
    last_at: float | None = None

    def value(self, now: float) -> float:
        if self.last_at is None:
            return 0.0
        weight = 1 - 0.5 ** (max(0.0, now - self.last_at) / _INGEST_HALF_LIFE_S)
        return self.share + weight * (float(self.in_flight > 0) - self.share)

    def change(self, delta: int, now: float) -> None:
        self.share = self.value(now)
        self.last_at = now
        self.in_flight += delta


class BackendPool:
    """N servers behind a sticky router, each with a bounded KV budget, one retention policy."""

    def __init__(
        self,
        backends: list[Backend],
        *,
        retention: str | RetentionPolicy = "adaptive",
        kv_budget_fraction: float = 0.5,
        tokenizer: Any,
        admission_wait_s: float = 1.0,
        session_timeout_s: float = 300.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        estimator: ToolDurationEstimator | None = None,
        admission: bool = True,
        admission_overcommit: float = 1.0,
        admission_defer: bool = True,
        kv_share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = PoolSettings.check(
            kv_budget_fraction=kv_budget_fraction,
            kv_share=kv_share,
            admission_wait_s=admission_wait_s,
            session_timeout_s=session_timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            admission=admission,
            admission_overcommit=admission_overcommit,
            admission_defer=admission_defer,
        )
        """The checked knobs (``connect`` adds its own: ``health_interval_s``, ``request_timeout_s``)."""
        if not backends:
            raise ValueError("BackendPool(backends=[]): give at least one backend")
        if len({b.url for b in backends}) != len(backends):
            raise ValueError(f"BackendPool: backends with the same url: {[b.url for b in backends]}")
        self.backends: dict[str, Backend] = {b.url: b for b in backends}
        self.clock = clock
        """Seconds for pauses, budget waits and ingest rates; the event loop's clock must agree with it
        (a simulation runs the pool on a virtual-time loop and injects that loop's ``time``)."""
        self.policy = retention if isinstance(retention, RetentionPolicy) else make_policy(retention)
        self.kv_budget_fraction = kv_budget_fraction
        self.tokenizer = tokenizer
        self.admission_wait_s = admission_wait_s
        self.session_timeout_s = session_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.estimator = estimator or ToolDurationEstimator()
        self.router = Router(list(self.backends))
        self.budgets = {
            url: KVBudget(url, int(kv_budget_fraction * b.info.max_total_num_tokens), clock=clock)
            for url, b in self.backends.items()
        }
        self.kv_share = {url: int(kv_share * b.info.max_total_num_tokens) for url, b in self.backends.items()}
        """Per server: the KV tokens this pool's episodes can count on (its share of the server when N pools
        use it); whether a server is crowded, and how many waiters may run without a session, is measured
        against it."""
        self.admission_defer = admission_defer
        """A turn not admitted yet runs without a session and keeps its place in the queue, except on a
        crowded server (``crowded``) where only the head of the queue does. False: it always waits."""
        self.growth = GrowthEstimate()
        self.admissions: dict[str, EpisodeAdmission] = {}
        if admission and self.policy.uses_sessions:
            self.admissions = {
                url: EpisodeAdmission(
                    url,
                    budget.capacity,
                    self.growth,
                    on_suspend=functools.partial(self._suspended, budget),
                    overcommit=admission_overcommit,
                    kv_capacity=self.kv_share[url],
                    one_chunk=self.backends[url].info.chunked_prefill_size,
                )
                for url, budget in self.budgets.items()
            }
        self.decisions: Counter[str] = Counter()
        self.reprefill_tokens = 0
        self.episodes: dict[str, EpisodeModel] = {}
        self.last_metrics: dict[str, ServerMetrics] = {}
        self._ingest = {url: _IngestRate() for url in self.backends}
        self._client_ingest = {url: _IngestRate() for url in self.backends}
        self._client_totals: Counter[str] = Counter()
        self._episode_context: dict[str, tuple[str, int]] = {}
        """Each open episode's server and context tokens (after its last turn)."""
        self._open_context: Counter[str] = Counter()
        """Per server: the open episodes' context tokens, summed."""
        self._held_busy = {url: _HeldBusy() for url in self.backends}
        self.capability_gaps: list[CapabilityGap] = [
            gap for b in backends for gap in retention_gaps(self.policy.name, b.info)
        ]
        """What the servers lack for this pool's retention policy (there, episodes run with ``none``;
        each one records it as an ``unsupported`` retention record)."""
        first = backends[0].info
        self.model_name = first.served_model_name or first.model_path
        self.sessions_refused: dict[str, str] = {}
        """Servers that refused ``/open_session`` with a 4xx although ``/server_info`` offers streaming sessions
        (e.g. an engine without its radix cache), with the refusal: their episodes run stateless, recorded
        ``unsupported``, for the life of the pool."""
        self.closed = False
        """``aclose()`` was called: nothing more is sent (``PoolClosed``)."""
        self._turns_in_flight = 0
        self._no_turns = asyncio.Event()
        self._no_turns.set()
        self._background: set[asyncio.Task] = set()
        """Best-effort clean-ups on servers the pool left (abort, close), cancelled by ``aclose()``."""

    @classmethod
    async def connect(
        cls,
        urls: str | Iterable[str],
        *,
        retention: str = "adaptive",
        kv_budget_fraction: float = 0.5,
        tokenizer: Any = None,
        health_interval_s: float = 1.0,
        request_timeout_s: float = 600.0,
        transport: Transport | None = None,
        **options: Any,
    ) -> BackendPool:
        """Connect to every server (``/server_info`` capabilities), load the tokenizer, start health checks.

        ``urls``: the servers' base URLs (``http://host:port``, or ``https://``), or one such URL as a string.
        Every argument is checked before the network is touched (``ValueError`` naming it and its value).

        ``tokenizer``: a Hugging Face tokenizer; default: ``AutoTokenizer`` from the ``model_path`` the
        first server's ``/model_info`` names (must be a local directory). ``options``: admission_wait_s,
        session_timeout_s, retries, backoff_s, estimator, admission, admission_overcommit, admission_defer,
        kv_share (see the constructor; ``admission=False`` turns episode admission control off: every episode
        may try to hold; ``admission_overcommit`` > 1 lets the admitted projections exceed the budget by that
        factor; ``admission_defer=False`` makes a turn not admitted always wait; ``kv_share`` < 1 when other
        pools use the same servers).
        """
        urls = _server_urls(urls)
        make_policy(retention)  # fail on a bad name before touching the network
        settings = PoolSettings.check(
            kv_budget_fraction=kv_budget_fraction,
            health_interval_s=health_interval_s,
            request_timeout_s=request_timeout_s,
            **{k: v for k, v in options.items() if k not in _NOT_SETTINGS},
        )
        results = await asyncio.gather(
            *(SGLangBackend.connect(u, request_timeout_s=request_timeout_s, transport=transport) for u in urls),
            return_exceptions=True,
        )
        errors = {u: r for u, r in zip(urls, results, strict=True) if isinstance(r, BaseException)}
        if errors:
            for r in results:
                if isinstance(r, SGLangBackend):
                    await r.aclose()
            failed = "; ".join(
                f"{u}: {r.reason if isinstance(r, BackendError) and r.server == u else r}" for u, r in errors.items()
            )
            if all(isinstance(r, BackendUnavailable) for r in errors.values()):
                raise BackendUnavailable(",".join(urls), "", f"cannot connect: {failed}")
            # A server answered, but not as an SGLang-protocol server does: retrying will not help.
            raise BackendError(",".join(urls), "", f"cannot use: {failed}")
        backends: list[Backend] = [r for r in results if isinstance(r, SGLangBackend)]
        if tokenizer is None:
            tokenizer = await asyncio.to_thread(_load_tokenizer, backends[0].info.url, backends[0].info.model_path)
        pool = cls(
            backends,
            retention=retention,
            kv_budget_fraction=kv_budget_fraction,
            tokenizer=tokenizer,
            **options,
        )
        pool.settings = settings
        pool.router.start_health_checks(pool._check, interval_s=health_interval_s)
        return pool

    # -- episodes ------------------------------------------------------------------------------

    def episode(self, episode_id: str, *, max_turns: int | None = None) -> EpisodeModel:
        """A fresh AgentModel for one episode (also an async context manager that always closes it).

        ``max_turns``: the episode's turn limit, if known; admission control projects the episode's
        peak context from it (without it, from the mean length of the episodes already finished).
        """
        if self.closed:
            raise PoolClosed(",".join(self.backends), "", f"pool.episode({episode_id!r}): the pool was closed")
        if episode_id in self.episodes:
            raise ValueError(f"episode_id={episode_id!r} is already open in this pool; ids must be unique")
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns={max_turns} must be >= 1 (or None when unknown)")
        model = EpisodeModel(self, episode_id, max_turns=max_turns)
        self.episodes[episode_id] = model
        return model

    def after_turn(self, episode_id: str, server: str, *, context: int, turns_done: int, added: int | None) -> None:
        """Admission bookkeeping after a turn: learn the growth, re-project, suspend or admit."""
        if added is not None:
            self.growth.observe_turn(added)
        self._forget_context(episode_id)
        self._episode_context[episode_id] = (server, context)
        self._open_context[server] += context
        # Only this server's admission re-projects now; the others pick up the new growth estimate at
        # their own next turn (re-projecting every server after every turn made a turn cost O(episodes)).
        admission = self.admissions.get(server)
        if admission is not None:
            admission.update(episode_id, context=context, turns_done=turns_done)

    def episode_closed(self, episode_id: str) -> None:
        """The episode has given back everything it held: forget it (router, context figures)."""
        self.router.forget(episode_id)
        self.episodes.pop(episode_id, None)
        self._forget_context(episode_id)

    def _forget_context(self, episode_id: str) -> None:
        previous = self._episode_context.pop(episode_id, None)
        if previous is not None:
            self._open_context[previous[0]] -= previous[1]

    def _suspended(self, budget: KVBudget, episode_id: str, reason: str) -> None:
        """Admission control suspended an episode: a paused hold goes now (a running turn's at its pause)."""
        self.decisions["suspended"] += 1
        hold = budget.holds.get(episode_id)
        if hold is not None and hold.state is HoldState.PAUSED:
            budget.release_paused(episode_id, reason)

    def serves_sessions(self, url: str) -> bool:
        """Whether episodes on ``url`` may open streaming sessions: it offers them (``/server_info``) and has
        not refused one (``sessions_refused``)."""
        return self.backends[url].info.streaming_sessions and url not in self.sessions_refused

    @contextlib.contextmanager
    def turn_in_flight(self) -> Iterator[None]:
        """A turn runs meanwhile (``aclose()`` waits for the turns it cut short to give back their sessions)."""
        if self.closed:
            raise PoolClosed(",".join(self.backends), "", "the pool was closed (pool.aclose()); open a new pool")
        self._turns_in_flight += 1
        self._no_turns.clear()
        try:
            yield
        finally:
            self._turns_in_flight -= 1
            if self._turns_in_flight == 0:
                self._no_turns.set()

    def in_background(self, work: Awaitable[None]) -> None:
        """Run best-effort clean-up ``work`` (an abort, a close on a server left behind) without waiting."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))

    # -- pressure, health, metrics --------------------------------------------------------------

    async def _check(self, url: str) -> bool:
        backend = self.backends[url]
        ok = await backend.health()
        if ok:
            metrics = await backend.metrics()
            if metrics is not None:
                self.last_metrics[url] = metrics
                total = metrics.ingested_tokens_total
                if total is not None:
                    self._ingest[url].sample(total, metrics.at)
                if url in self.admissions and not self.crowded(url):
                    self.admissions[url].poke()  # not crowded: waiters may run without a session
        return ok

    def crowded(self, url: str) -> bool:
        """Whether only the head of ``url``'s admission queue may run turns without a session, the other
        waiters waiting for admission (``admission_defer``): when the open episodes' contexts exceed the
        server's KV — turns without a session would evict each other's prefixes and recompute them, turn
        after turn — and its admitted episodes keep it busy: turns inside sessions were running ≥ 70% of the
        time lately (the client's own requests, smoothed over ~10 s). Where the admitted episodes leave the
        GPU idle (one or two fit, long tool pauses), waiting would idle it: every waiter runs without a
        session. Predictive, not reactive: an earlier signal (later turns recomputing ≥ 20% of their context)
        switched waiting on only once a herd of sessionless turns had thrashed the cache, and off again as
        soon as waiting stopped the thrashing — on `swe` at 6.25% of the peak context the default's mean JCT
        went 4,448 → 3,288 s with this one (simulated, docs/retention.md)."""
        return self.oversubscribed(url) and self._held_busy[url].value(self.clock()) >= _ADMITTED_BUSY

    def oversubscribed(self, url: str) -> bool:
        """Whether the open episodes' contexts on ``url`` exceed its KV (this pool's share of it): not every
        conversation's prefix can stay cached, so turns without a session evict each other's."""
        return self._open_context[url] > self.kv_share[url]

    def held_request(self, url: str, delta: int) -> None:
        """A turn inside a session started (+1) or ended (-1) on ``url``."""
        self._held_busy[url].change(delta, self.clock())

    def observe_call(self, url: str, ingested_tokens: int) -> None:
        """Client-side ingest figures (used when a server serves no /metrics)."""
        self._client_totals[url] += ingested_tokens
        self._client_ingest[url].sample(float(self._client_totals[url]), self.clock())

    def pressure(self, url: str) -> ServerPressure:
        """The server's KV pressure now, from its last /metrics scrape (client figures otherwise)."""
        capacity = self.backends[url].info.max_total_num_tokens
        metrics = self.last_metrics.get(url)
        ingest = self._ingest[url] if self._ingest[url].known else self._client_ingest[url]
        # Before any measurement, assume the cache turns over once a minute (a busy server).
        rate = ingest.rate if ingest.known else capacity / 60.0
        busy = self.budgets[url].held + self.router.servers[url].outstanding_tokens
        available = metrics.kv_available_tokens if metrics else None
        evictable = metrics.kv_evictable_tokens if metrics else None
        if available is not None:
            used = 1.0 - available / capacity
            reclaimable = available + (evictable or 0.0)
        else:
            used = busy / capacity
            reclaimable = capacity - busy
        return ServerPressure(
            capacity_tokens=capacity,
            used_fraction=min(1.0, max(0.0, used)),
            reclaimable_tokens=max(1.0, reclaimable),
            ingest_tokens_per_s=rate,
        )

    # -- stats, shutdown ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Held tokens and budget per server, router state, decision counts."""
        routing = self.router.stats()
        servers = {}
        for url, budget in self.budgets.items():
            metrics = self.last_metrics.get(url)
            servers[url] = {
                **budget.stats(),
                **routing[url],
                "max_total_num_tokens": self.backends[url].info.max_total_num_tokens,
                "server_held_tokens": metrics.streaming_session_held_tokens if metrics else None,
            }
        for url, admission in self.admissions.items():
            servers[url].update(admission.stats())
        return {
            "policy": self.policy.name.value,
            "kv_budget_fraction": self.kv_budget_fraction,
            "servers": servers,
            "decisions": dict(self.decisions),
            "failovers": self.router.failovers,
            "reprefill_tokens": self.reprefill_tokens,
            "open_episodes": len(self.episodes),
        }

    async def aclose(self) -> None:
        """Cut short the turns in flight (they raise ``PoolClosed``, aborting their requests), close every open
        episode (their sessions), stop health checks, drop connections. Later calls raise ``PoolClosed``."""
        if self.closed:
            return
        self.closed = True
        self.router.cut_all("the pool was closed (pool.aclose()) while the turn ran")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_turns.wait(), _UNWIND_S)
        await asyncio.gather(*(m.close() for m in list(self.episodes.values())), return_exceptions=True)
        await self.router.stop()
        for task in list(self._background):
            task.cancel()
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()

    async def __aenter__(self) -> BackendPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _server_urls(urls: str | Iterable[str]) -> list[str]:
    """``urls`` as a list of distinct server base URLs; ``ValueError`` naming the first that is not one."""
    if isinstance(urls, str):
        urls = [urls]  # one server: "http://host:port" is not a list of characters
    elif isinstance(urls, bytes | dict) or not isinstance(urls, Iterable):
        raise ValueError(f"urls={urls!r}: give a server URL (http://host:port) or a list of them")
    found: list[str] = []
    for url in urls:
        if not isinstance(url, str):
            raise ValueError(f"urls: {url!r} is not a URL string: give http://host:port")
        try:
            parts = urllib.parse.urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:  # a port that is not a number, a bad IPv6 literal
            parts, port_ok = None, False
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or not port_ok
            or parts.query
            or parts.fragment
            or any(c.isspace() for c in url)
        ):
            raise ValueError(f"urls: {url!r} is not a server URL: give http://host:port (or https://host:port)")
        base = url.rstrip("/")
        if base in found:
            raise ValueError(f"urls: {url!r} is listed twice: give each server once")
        found.append(base)
    if not found:
        raise ValueError("BackendPool.connect(urls=[]): give at least one server URL")
    return found


def _load_tokenizer(url: str, model_path: str) -> Any:
    try:
        return load_tokenizer(model_path)
    except Exception as exc:
        raise BackendError(
            url,
            "",
            f"cannot load the tokenizer from /model_info model_path={model_path!r} ({exc}); "
            "pass tokenizer=... to BackendPool.connect when the server's model is not a local directory",
        ) from exc


__all__ = ["BackendPool"]
