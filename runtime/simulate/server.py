"""SimulatedServer: the production engine on a virtual clock, spoken to in-process through the client's
``Backend`` protocol (no HTTP).

It is ``interleaf.runtime.engine.Engine`` — its scheduler, radix cache, KV pool and streaming sessions —
over the ``sim`` executor. Instead of the scheduler thread's loop, an asyncio task calls
``Scheduler.step()`` and then sleeps (virtually) for the step's predicted GPU time, so a server is
busy exactly as long as the cost model says and many servers share one thread. A request's result is
delivered when the step that finished it ends, as a real server's would be. Requests are built with
``Engine.build_request`` (the same validation and session handling as ``POST /generate``), sessions
opened with ``Engine.open_session`` and closed through ``Scheduler.call``, as the HTTP routes do.

``unbounded`` runs (SGLang's sessions, no budget) pass ``on_kv_exhausted``: the engine aborts a request that
cannot fit even with nothing else running because streaming sessions pin the rest of the KV; SGLang's
scheduler would leave it waiting instead, and once every session's owner waits so, nothing ever frees the
KV (its issue #27024). The server reports that moment (:class:`KVExhaustion`) and the simulation stops
there rather than replaying the client's retries of a state SGLang cannot leave.

Left out: streaming sessions get no inactivity timeout here (the engine's reaper compares against
its own clock of a session's last activity, which is not injected); the client closes every session
it opens, so nothing is lost but the reaping of abandoned ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interleaf.runtime.client import GenerateResult, ServerInfo, SessionTurn
from interleaf.runtime.client.errors import BackendError, RequestAborted, SessionRejected
from interleaf.runtime.client.server_metrics import ServerMetrics
from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.engine import Engine
from interleaf.runtime.engine.protocol import BadRequest, GenerateIn, OpenSessionIn, SamplingParamsIn, SessionParamsIn
from interleaf.runtime.engine.sim import SimExecutor

_NO_ROOM = "request needs "
"""How the engine's no-KV-room abort begins (``CacheManager.no_room_message``); the other aborts (a closed
session, ``/abort_request``) are the client's doing. ``test_unbounded_sessions_stop_at_kv_exhaustion``
fails if the wording changes."""


@dataclass(frozen=True)
class KVExhaustion:
    """The moment pinned streaming sessions left a request no KV: where SGLang stalls (SIMULATED time)."""

    server: str
    at_s: float
    sessions: int
    """Streaming sessions open on the server."""
    held_tokens: int
    """KV tokens the server cannot free (pinned by the sessions, a shared prefix once), real tokens: at most
    ``capacity``."""
    session_tokens: int
    """The sessions' contexts summed (a shared prefix counted once per session), real tokens."""
    capacity: int
    waiting: int

    def describe(self) -> str:
        return (
            f"KV exhausted on {self.server} at {self.at_s:.1f} s: {self.held_tokens:,} of its {self.capacity:,} KV "
            f"tokens cannot be freed, pinned by {self.sessions} streaming sessions (whose contexts sum to "
            f"{self.session_tokens:,} tokens, shared prefixes counted per session); a request cannot fit with "
            f"nothing else running and {self.waiting} more wait (SGLang leaves them waiting: deadlock, its issue "
            "#27024)"
        )


class _Delivery:
    """Stands in for ``Req.loop``: the scheduler's notifications wait until the step's GPU time has passed."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        self.pending.append((fn, args))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for fn, args in pending:
            fn(*args)


class SimulatedServer:
    """One simulated server (``interleaf.runtime.client.Backend``) driven by the running loop's clock."""

    def __init__(
        self,
        url: str,
        config: EngineConfig,
        *,
        token_block: int = 1,
        on_kv_exhausted: Callable[[KVExhaustion], None] | None = None,
        host_request_s: float = 0.0,
        host_step_s: float = 0.0,
    ) -> None:
        if host_request_s < 0 or host_step_s < 0:
            raise ValueError(f"host_request_s={host_request_s}, host_step_s={host_step_s}: host overheads are >= 0 s")
        if config.executor != "sim":
            raise ValueError(f"executor={config.executor!r}: a simulated server runs the 'sim' executor")
        self.url = url
        self.engine = Engine(config.model_copy(update={"sim_clock": "virtual"}))
        executor = self.engine.executor
        assert isinstance(executor, SimExecutor)
        self.executor = executor
        executor.cost.token_block = token_block
        self.clock: Callable[[], float] = asyncio.get_running_loop().time
        self.engine.scheduler.clock = self.clock
        self.info = ServerInfo(
            url=url,
            model_path=self.engine.model_path,
            served_model_name=self.engine.model_name,
            max_total_num_tokens=self.engine.scheduler.cache.capacity,
            streaming_sessions=config.enable_streaming_session,
            metrics=config.enable_metrics,
            # One simulated iteration prefills token_block real chunks: a real chunk, in simulated tokens.
            chunked_prefill_size=max(1, config.chunked_prefill_size // token_block),
            executor="sim",
        )
        self.busy_s = 0.0
        """Virtual seconds this server's GPU was busy."""
        self.host_request_s = host_request_s
        """Host seconds added to each request's latency (``SimulationSetup.host_request_s``)."""
        self.host_step_s = host_step_s
        """Host seconds added to each working step (``SimulationSetup.host_step_s``)."""
        self.steps = 0
        """Scheduler steps that did work."""
        self.step_python_s = 0.0
        """Real seconds those steps took in Python (the engine's host time per step, measured)."""
        self.on_kv_exhausted = on_kv_exhausted
        self.exhausted: KVExhaustion | None = None
        """The first time pinned sessions left a request no KV (None: never)."""
        self._delivery = _Delivery()
        self._wake = asyncio.Event()
        self._driver = asyncio.ensure_future(self._drive())

    async def _drive(self) -> None:
        sched = self.engine.scheduler
        while True:
            before, started = self.executor.simulated_seconds, time.perf_counter()
            did = sched.step()
            dt = self.executor.simulated_seconds - before
            if did:
                self.steps += 1
                self.step_python_s += time.perf_counter() - started
                dt += self.host_step_s
            if dt > 0:
                self.busy_s += dt
                await asyncio.sleep(dt)
            self._delivery.flush()
            if not did:
                self._wake.clear()
                await self._wake.wait()
            elif dt <= 0:
                await asyncio.sleep(0)

    def _poke(self) -> None:
        self._wake.set()

    # -- Backend protocol ------------------------------------------------------------------------

    async def generate(
        self,
        input_ids: list[int],
        *,
        sampling_params: dict[str, Any],
        rid: str,
        session: SessionTurn | None = None,
        priority: int | None = None,
        return_hidden_states: bool = False,
        hidden_states_layers: list[int] | None = None,
        hidden_states_last_k: int | None = None,
    ) -> GenerateResult:
        start = self.clock()
        if self.host_request_s:
            await asyncio.sleep(self.host_request_s)  # the request's trip through the host, before the engine
        body = GenerateIn(  # the ids go to build_request directly: validating thousands of ints twice costs
            sampling_params=SamplingParamsIn(**sampling_params),
            rid=rid,
            session_params=SessionParamsIn(id=session.session_id, rid=session.previous_rid) if session else None,
            priority=priority,
            return_hidden_states=return_hidden_states,
        )
        try:
            req = self.engine.build_request(body, None, input_ids)
        except BadRequest as exc:
            if session is not None:
                raise SessionRejected(self.url, rid, str(exc), status=400) from exc
            raise BackendError(self.url, rid, str(exc), status=400) from exc
        req.created = start
        req.loop = self._delivery  # type: ignore[assignment]  # results arrive when the step's GPU time is over
        req.queue = asyncio.Queue()
        self.engine.scheduler.submit(req)
        self._poke()
        data = await self.engine.wait(req)
        meta = data["meta_info"]
        finish = meta["finish_reason"] or {}
        if finish.get("type") == "abort":
            message = str(finish.get("message", ""))
            cache = self.engine.scheduler.cache
            if message.startswith(_NO_ROOM) and cache.sessions.held_tokens and self.exhausted is None:
                k = self.executor.cost.token_block
                self.exhausted = KVExhaustion(
                    server=self.url, at_s=self.clock(), sessions=cache.sessions.streaming_count,
                    held_tokens=(cache.capacity - cache.freeable_tokens) * k,
                    session_tokens=cache.sessions.held_tokens * k, capacity=cache.capacity * k,
                    waiting=len(self.engine.scheduler.waiting),
                )  # fmt: skip
                if self.on_kv_exhausted is not None:
                    self.on_kv_exhausted(self.exhausted)
            raise RequestAborted(self.url, rid, f"request aborted by the server: {finish.get('message', '')}")
        return GenerateResult(
            text=data["text"],
            output_ids=data["output_ids"],
            finish_reason=str(finish.get("type") or ""),
            request_id=meta["id"],
            server=self.url,
            prompt_tokens=meta["prompt_tokens"],
            cached_tokens=meta["cached_tokens"],
            completion_tokens=meta["completion_tokens"],
            e2e_s=self.clock() - start,
            server_e2e_s=meta["e2e_latency"],
            queue_s=meta["queue_time"],
            ttft_s=meta["ttft"],
            batch_size=meta["batch_size"],
            meta_info=meta,
        )

    async def open_session(self, *, timeout_s: float) -> str:
        try:
            return self.engine.open_session(OpenSessionIn(streaming=True, timeout=None))
        except BadRequest as exc:
            raise SessionRejected(self.url, "", str(exc), status=400) from exc

    async def close_session(self, session_id: str) -> None:
        fut = self.engine.scheduler.call(lambda s: s.close_session(session_id))
        self._poke()
        # Shielded: a client that stops waiting (a timeout, a cancelled episode) must not cancel the scheduler's
        # call, as an HTTP client's disconnect does not undo the server's close; a cancelled call future made
        # Scheduler.step() raise InvalidStateError, which ended this server's driver: every later request hung.
        await asyncio.shield(asyncio.wrap_future(fut))

    async def abort(self, rid: str) -> None:
        self.engine.scheduler.abort(rid)
        self._poke()

    async def health(self) -> bool:
        return not self._driver.done()

    async def metrics(self) -> ServerMetrics | None:
        return ServerMetrics(self.metric_values(), at=self.clock())

    def metric_values(self) -> dict[str, float]:
        """The ``/metrics`` samples the client reads (``ServerMetrics``), straight from the scheduler's state:
        the pool scrapes every server every simulated second, and rendering the whole exposition text for
        that was an eighth of a 1,000-agent run. ``tests/runtime/test_simulate.py`` checks them against
        the engine's own rendering."""
        sched = self.engine.scheduler
        cache, stats = sched.cache, sched.stats
        return {
            "sglang:prompt_tokens_total": float(stats.prompt_tokens),
            "sglang:cached_tokens_total": float(stats.cached_tokens),
            "sglang:generation_tokens_total": float(stats.generation_tokens),
            "sglang:max_total_num_tokens": float(cache.capacity),
            "sglang:kv_used_tokens": float(cache.used_tokens),
            "sglang:kv_available_tokens": float(cache.pool.available),
            "sglang:kv_evictable_tokens": float(cache.radix.evictable_tokens),
            "sglang:num_streaming_sessions": float(len(cache.sessions)),
            "sglang:streaming_session_held_tokens": float(cache.sessions.held_tokens),
            "sglang:num_running_reqs": float(sched.num_running),
            "sglang:num_queue_reqs": float(len(sched.waiting)),
        }

    async def aclose(self) -> None:
        self._driver.cancel()


__all__ = ["KVExhaustion", "SimulatedServer"]
