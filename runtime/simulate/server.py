"""SimulatedServer: the production engine on a virtual clock, spoken to in-process through the client's
``Backend`` protocol (no HTTP).

It is ``interleaf.runtime.engine.Engine`` — its scheduler, radix cache, KV pool and streaming sessions —
over the ``sim`` executor. Instead of the scheduler thread's loop, an asyncio task calls
``Scheduler.step()`` and then sleeps (virtually) for the step's predicted GPU time, so a server is
busy exactly as long as the cost model says and many servers share one thread. A request's result is
delivered when the step that finished it ends, as a real server's would be. Requests are built with
``Engine.build_request`` (the same validation and session handling as ``POST /generate``), sessions
opened with ``Engine.open_session`` and closed through ``Scheduler.call``, as the HTTP routes do.

Left out: streaming sessions get no inactivity timeout here (the engine's reaper compares against
its own clock of a session's last activity, which is not injected); the client closes every session
it opens, so nothing is lost but the reaping of abandoned ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from interleaf.runtime.client import GenerateResult, ServerInfo, SessionTurn
from interleaf.runtime.client.errors import BackendError, RequestAborted, SessionRejected
from interleaf.runtime.client.server_metrics import ServerMetrics
from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.engine import Engine
from interleaf.runtime.engine.protocol import BadRequest, GenerateIn, OpenSessionIn, SamplingParamsIn, SessionParamsIn
from interleaf.runtime.engine.sim import SimExecutor


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

    def __init__(self, url: str, config: EngineConfig, *, token_block: int = 1) -> None:
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
            executor="sim",
        )
        self.busy_s = 0.0
        """Virtual seconds this server's GPU was busy."""
        self._delivery = _Delivery()
        self._wake = asyncio.Event()
        self._driver = asyncio.ensure_future(self._drive())

    async def _drive(self) -> None:
        sched = self.engine.scheduler
        while True:
            before = self.executor.simulated_seconds
            did = sched.step()
            dt = self.executor.simulated_seconds - before
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
        return_hidden_states: bool = False,
        hidden_states_layers: list[int] | None = None,
        hidden_states_last_k: int | None = None,
    ) -> GenerateResult:
        start = self.clock()
        body = GenerateIn(  # the ids go to build_request directly: validating thousands of ints twice costs
            sampling_params=SamplingParamsIn(**sampling_params),
            rid=rid,
            session_params=SessionParamsIn(id=session.session_id, rid=session.previous_rid) if session else None,
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
        await asyncio.wrap_future(fut)

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


__all__ = ["SimulatedServer"]
