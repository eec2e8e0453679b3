"""The embedded engine's HTTP server: SGLang's protocol (SGLANG.md) over FastAPI."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.grammar import GrammarError
from interleaf.runtime.engine.metrics import EngineMetrics
from interleaf.runtime.engine.protocol import (
    AbortIn,
    BadRequest,
    CloseSessionIn,
    GenerateIn,
    OpenSessionIn,
    SamplingParamsIn,
)
from interleaf.runtime.engine.request import Req, SamplingParams
from interleaf.runtime.engine.scheduler import Scheduler, capture_for, new_request
from interleaf.runtime.engine.session import Session
from interleaf.runtime.tokenizer import SIM_SCHEME

log = logging.getLogger("interleaf.engine")
VERSION = "0.5.23-interleaf"


class Engine:
    """Tokenizer + scheduler + executor; the HTTP handlers call into this."""

    def __init__(self, config: EngineConfig):
        if config.max_total_tokens is None:
            from interleaf.runtime.engine.sim import SimExecutor

            capacity = SimExecutor.default_capacity(config) if config.executor == "sim" else 16384
            config = config.model_copy(update={"max_total_tokens": capacity})
        self.config = config
        if config.executor == "sim":
            from interleaf.runtime.engine.sim import SimExecutor

            self.executor: Any = SimExecutor.from_config(config)
            self.tokenizer: Any = self.executor.tokenizer
            self.model_name = config.served_model_name or f"sim:{config.sim_model}@{config.sim_gpu}"
            self.model_path = f"{SIM_SCHEME}{config.sim_model}"
            eos = self.executor.eos_token_ids
            grammar = None
        else:
            from transformers import AutoTokenizer

            from interleaf.runtime.engine.grammar import GrammarBackend
            from interleaf.runtime.engine.llama import LlamaExecutor
            from interleaf.runtime.engine.model_store import resolve_model

            spec = resolve_model(config.model_path)
            self.tokenizer = AutoTokenizer.from_pretrained(spec.path)
            self.executor = LlamaExecutor(spec, config.max_total_tokens, config.dtype)
            self.model_name = config.served_model_name or spec.name
            self.model_path = str(spec.path)
            eos = sorted({self.tokenizer.eos_token_id, *_generation_eos(self.executor.config)} - {None})
            grammar = GrammarBackend(self.tokenizer, self.executor.vocab_size)
        self.simulated = config.executor == "sim"
        self.grammar = grammar
        self.context_length = int(getattr(self.executor, "context_length", 8192))
        self.scheduler = Scheduler(
            self.executor,
            config.max_total_tokens,
            tokenizer=self.tokenizer,
            eos_token_ids=eos,
            grammar=grammar,
            chunk_size=config.chunked_prefill_size,
            max_running=config.max_running_requests,
            context_length=self.context_length,
            enable_radix=not config.disable_radix_cache,
        )
        self.metrics = EngineMetrics(self.scheduler, self.model_name, self.simulated)
        self.started = time.time()

    # --- request building ---------------------------------------------------------------------
    def sampling_params(self, sp: SamplingParamsIn | None) -> SamplingParams:
        sp = sp or SamplingParamsIn()
        if sp.n != 1:
            raise BadRequest(f"sampling_params.n={sp.n} is not supported by the embedded engine; send n requests",
                             "sampling_params.n")  # fmt: skip
        stop = [sp.stop] if isinstance(sp.stop, str) else list(sp.stop or [])
        try:
            params = SamplingParams(
                max_new_tokens=sp.max_new_tokens, temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k,
                min_p=sp.min_p, stop=stop, stop_token_ids=list(sp.stop_token_ids or []), ignore_eos=sp.ignore_eos,
                skip_special_tokens=sp.skip_special_tokens, no_stop_trim=sp.no_stop_trim,
                sampling_seed=sp.sampling_seed, frequency_penalty=sp.frequency_penalty,
                presence_penalty=sp.presence_penalty, repetition_penalty=sp.repetition_penalty,
                json_schema=sp.json_schema, regex=sp.regex, ebnf=sp.ebnf,
            )  # fmt: skip
        except ValueError as exc:
            field = str(exc).split(" ", 1)[0].rstrip(":")
            raise BadRequest(str(exc), field) from exc
        for i, t in enumerate(params.stop_token_ids):
            self._check_id(t, f"sampling_params.stop_token_ids[{i}]")
        return params

    def _check_id(self, t: int, field: str) -> None:
        if not 0 <= t < self.executor.vocab_size:
            raise BadRequest(f"{field}: token id {t} is out of range 0..{self.executor.vocab_size - 1}", field)

    def build_request(self, body: GenerateIn, text: str | None, ids: list[int] | None) -> Req:
        params = self.sampling_params(body.sampling_params)
        if ids is None:
            ids = self.tokenizer.encode(text or "", add_special_tokens=False)
        else:
            for i, t in enumerate(ids):
                self._check_id(t, f"input_ids[{i}]")
        capture = None
        if body.return_hidden_states:
            try:
                capture = capture_for(body.hidden_states_layers, body.hidden_states_last_k, self.executor.n_layers)
            except ValueError as exc:
                raise BadRequest(str(exc), str(exc).split(":", 1)[0]) from exc
        rid = body.rid or uuid.uuid4().hex
        session_id = None
        if body.session_params is not None:
            ids, session_id = self._session_turn(body, ids, rid)
        elif not ids:
            raise BadRequest("input_ids: the prompt is empty; send at least one token", "input_ids")
        radix_sid = body.session_id if self.config.enable_session_radix_cache else None
        req = new_request(rid, ids, params, stream=body.stream, session_id=session_id, radix_session_id=radix_sid,
                          capture=capture)  # fmt: skip
        if body.return_logprob:
            req.top_logprobs_num = max(0, body.top_logprobs_num or 0)
        if len(ids) + 1 > self.context_length:
            self._release_inflight(session_id)
            raise BadRequest(f"input_ids: {len(ids)} tokens exceed the context length {self.context_length}",
                             "input_ids")  # fmt: skip
        if params.constrained:
            if self.grammar is None:
                self._release_inflight(session_id)
                raise BadRequest("constrained decoding is not available on the sim executor", "sampling_params")
            try:
                req.grammar = self.grammar.matcher(self.grammar.compile(params))
            except GrammarError as exc:
                self._release_inflight(session_id)
                raise BadRequest(str(exc), str(exc).split(" ", 1)[0]) from exc
        if session_id is not None:
            with self.scheduler.sessions_lock:
                self.scheduler.sessions[session_id].inflight = req
        return req

    def _session_turn(self, body: GenerateIn, delta: list[int], rid: str) -> tuple[list[int], str]:
        sp = body.session_params
        assert sp is not None
        if body.session_id is not None:
            raise BadRequest("session_id and session_params are exclusive; send one", "session_id")
        if sp.replace:
            raise BadRequest("session_params.replace is not allowed on a streaming session (append-only)",
                             "session_params.replace")  # fmt: skip
        if sp.drop_previous_output:
            raise BadRequest("session_params.drop_previous_output is not allowed on a streaming session",
                             "session_params.drop_previous_output")  # fmt: skip
        if sp.offset not in (None, 0, -1):
            raise BadRequest(f"session_params.offset={sp.offset}: streaming sessions are append-only (use 0)",
                             "session_params.offset")  # fmt: skip
        with self.scheduler.sessions_lock:
            s = self.scheduler.sessions.get(sp.id)
            if s is None or s.closed:
                raise BadRequest(f"session_params.id: unknown or closed session {sp.id!r}; open one with "
                                 "/open_session", "session_params.id")  # fmt: skip
            if s.inflight is not None:
                raise BadRequest(f"session_params.id: session {sp.id!r} already has a request in flight "
                                 f"({s.inflight.rid}); wait for it to finish", "session_params.id")  # fmt: skip
            if sp.rid is not None and s.last_rid is not None and sp.rid != s.last_rid:
                raise BadRequest(f"session_params.rid={sp.rid!r} is not the session's last finished request "
                                 f"{s.last_rid!r}", "session_params.rid")  # fmt: skip
            if not s.context_ids and not delta:
                raise BadRequest("input_ids: the first turn of a session needs at least one token", "input_ids")
            s.inflight = Req(rid=rid, input_ids=[], params=SamplingParams())  # placeholder until built
            s.last_active = time.monotonic()
            return s.context_ids + delta, s.id

    def _release_inflight(self, session_id: str | None) -> None:
        if session_id is None:
            return
        with self.scheduler.sessions_lock:
            s = self.scheduler.sessions.get(session_id)
            if s is not None:
                s.inflight = None

    # --- running ---------------------------------------------------------------------------------
    async def run(self, req: Req) -> None:
        req.loop = asyncio.get_running_loop()
        req.queue = asyncio.Queue()
        self.scheduler.submit(req)

    def result(self, req: Req) -> dict[str, Any]:
        out_ids = list(req.output_ids)
        text = req.text if req.finished else self.tokenizer.decode(
            out_ids, skip_special_tokens=req.params.skip_special_tokens)  # fmt: skip
        meta: dict[str, Any] = {
            "id": req.rid,
            "finish_reason": req.finish_reason,
            "prompt_tokens": len(req.input_ids),
            "completion_tokens": len(out_ids),
            "cached_tokens": req.cached_tokens,
            "e2e_latency": (req.finished_at or time.monotonic()) - req.created,
            "queue_time": (req.prefill_started - req.created) if req.prefill_started else None,
            "ttft": (req.first_token_at - req.created) if req.first_token_at else None,
            "batch_size": req.batch_size_sum / req.decode_steps if req.decode_steps else 0.0,
            "retractions": req.retractions,
        }
        if self.simulated:
            meta["simulated"] = True
        if req.top_logprobs_num >= 0:
            meta["output_token_logprobs"] = [[lp, t, None] for lp, t in req.output_logprobs]
            if req.top_logprobs_num > 0:
                meta["output_top_logprobs"] = [[[lp, t, None] for lp, t in step] for step in req.output_top_logprobs]
        if req.finished and req.capture is not None:
            cap = req.capture
            meta["hidden_states"] = {
                "layers": list(cap.layers),
                "prompt": [cap.prompt[layer].tolist() for layer in cap.layers] if cap.prompt else None,
                "output": [cap.snapshot()[layer].tolist() for layer in cap.layers],
            }
        return {"text": text, "output_ids": out_ids, "meta_info": meta}

    async def wait(self, req: Req) -> dict[str, Any]:
        assert req.queue is not None
        try:
            while not req.finished:
                await req.queue.get()
        except asyncio.CancelledError:
            self.scheduler.abort(req.rid, "client disconnected")
            raise
        return self.result(req)

    async def stream(self, req: Req) -> AsyncIterator[bytes]:
        assert req.queue is not None
        try:
            while True:
                kind = await req.queue.get()
                while not req.queue.empty() and kind != "done":
                    kind = req.queue.get_nowait()
                yield b"data: " + json.dumps(self.result(req)).encode() + b"\n\n"
                if kind == "done" or req.finished:
                    break
            yield b"data: [DONE]\n\n"
        finally:
            if not req.finished:
                self.scheduler.abort(req.rid, "client disconnected")

    def open_session(self, body: OpenSessionIn) -> str:
        if not self.config.enable_streaming_session:
            raise BadRequest("streaming sessions are disabled: start the server with --enable-streaming-session",
                             "streaming")  # fmt: skip
        if not body.streaming:
            raise BadRequest('only streaming sessions are supported: send "streaming": true', "streaming")
        if body.timeout is not None and body.timeout <= 0:
            raise BadRequest(f"timeout must be > 0 seconds, got {body.timeout}", "timeout")
        if self.config.disable_radix_cache:
            raise BadRequest("streaming sessions need the radix cache (server started with --disable-radix-cache)",
                             "streaming")  # fmt: skip
        sid = body.session_id or uuid.uuid4().hex
        with self.scheduler.sessions_lock:
            if sid in self.scheduler.sessions:
                raise BadRequest(f"session_id {sid!r} is already open", "session_id")
            timeout = body.timeout if body.timeout is not None else self.config.session_timeout_default
            self.scheduler.sessions[sid] = Session(id=sid, timeout=timeout)
        return sid


def _generation_eos(config: dict[str, Any]) -> list[int]:
    eos = config.get("eos_token_id")
    if isinstance(eos, list):
        return eos
    return [eos] if isinstance(eos, int) else []


def _bad(message: str, param: str | None, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": param,
                                   "code": status}}, status_code=status)  # fmt: skip


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="interleaf engine (SGLang protocol)")
    sched = engine.scheduler

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", []) if p != "body"]
        field = ".".join(loc) or "body"
        value = err.get("input")
        return _bad(f"{field}: {err.get('msg')} (got {json.dumps(value, default=str)[:200]})", field)

    @app.exception_handler(BadRequest)
    async def _badreq(_: Request, exc: BadRequest) -> JSONResponse:
        return _bad(str(exc), exc.param)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/health_generate")
    async def health_generate() -> Response:
        req = new_request(uuid.uuid4().hex, [engine.tokenizer.eos_token_id or 0],
                          SamplingParams(max_new_tokens=1, temperature=0))  # fmt: skip
        await engine.run(req)
        try:
            await asyncio.wait_for(engine.wait(req), timeout=60)
        except TimeoutError:
            return Response(status_code=503)
        return Response(status_code=200 if req.finish_reason and req.finish_reason["type"] != "abort" else 503)

    @app.post("/generate", response_model=None)
    async def generate(body: GenerateIn) -> Any:
        if (body.text is None) == (body.input_ids is None):
            raise BadRequest("send exactly one of text or input_ids", "text" if body.text is not None else "input_ids")
        batch_text = isinstance(body.text, list)
        batch_ids = bool(body.input_ids) and isinstance(body.input_ids[0], list)  # type: ignore[index]
        if batch_text or batch_ids:
            if body.stream or body.session_params:
                raise BadRequest("batch input cannot stream or use session_params", "input_ids")
            items = body.text if batch_text else body.input_ids
            reqs = [
                engine.build_request(body.model_copy(update={"rid": None}), item if batch_text else None,
                                     None if batch_text else item)  # type: ignore[arg-type]
                for item in items or []
            ]  # fmt: skip
            for r in reqs:
                await engine.run(r)
            return list(await asyncio.gather(*(engine.wait(r) for r in reqs)))
        req = engine.build_request(
            body,
            body.text if isinstance(body.text, str) else None,
            body.input_ids if body.input_ids is not None else None,
        )  # type: ignore[arg-type]
        await engine.run(req)
        if body.stream:
            return StreamingResponse(engine.stream(req), media_type="text/event-stream")
        return await engine.wait(req)

    @app.post("/open_session")
    async def open_session(body: OpenSessionIn) -> Any:
        return engine.open_session(body)

    @app.post("/close_session")
    async def close_session(body: CloseSessionIn) -> Any:
        closed = await asyncio.wrap_future(sched.call(lambda s: s.close_session(body.session_id)))
        return {"success": True, "closed": closed}

    @app.post("/abort_request")
    async def abort_request(body: AbortIn) -> Any:
        rids = [r.rid for r in [*sched.running, *sched.waiting]] if body.abort_all else [body.rid]
        for rid in rids:
            sched.abort(rid)
        return {"success": True}

    @app.post("/flush_cache")
    async def flush_cache() -> Any:
        def flush(s: Scheduler) -> str | None:
            if not s.idle:
                return f"{s.num_running} running and {len(s.waiting)} queued requests"
            if s.sessions:
                return f"{len(s.sessions)} streaming sessions hold KV; close them first"
            s.radix.reset()
            return None

        problem = await asyncio.wrap_future(sched.call(flush))
        if problem:
            return PlainTextResponse(f"Cache not flushed: {problem}", status_code=400)
        return PlainTextResponse("Cache flushed.")

    def model_info() -> dict[str, Any]:
        return {"model_path": engine.model_path, "tokenizer_path": engine.model_path,
                "served_model_name": engine.model_name, "is_generation": True,
                "simulated": engine.simulated, "preferred_sampling_params": None}  # fmt: skip

    def server_info() -> dict[str, Any]:
        cfg = engine.config.model_dump()
        cfg.update({"model_path": engine.model_path, "served_model_name": engine.model_name,
                    "enable_streaming_session": engine.config.enable_streaming_session,
                    "disable_radix_cache": engine.config.disable_radix_cache,
                    "context_length": engine.context_length})  # fmt: skip
        cfg["version"] = VERSION
        cfg["internal_states"] = [{
            "max_total_num_tokens": sched.pool.capacity,
            "available_tokens": sched.pool.available,
            "evictable_tokens": sched.radix.evictable_tokens,
            "session_held_tokens": sched.session_held_tokens,
            "num_streaming_sessions": len(sched.sessions),
            "simulated": engine.simulated,
            "simulated_seconds": getattr(engine.executor, "simulated_seconds", None),
        }]  # fmt: skip
        return cfg

    app.get("/model_info")(model_info)
    app.get("/get_model_info")(model_info)
    app.get("/server_info")(server_info)
    app.get("/get_server_info")(server_info)

    @app.get("/metrics")
    async def metrics() -> Response:
        if not engine.config.enable_metrics:
            return _bad("metrics are disabled: start the server with --enable-metrics", None, 404)
        return Response(engine.metrics.render(), media_type="text/plain; version=0.0.4")

    try:
        from interleaf.runtime.engine.openai_route import add_openai_routes
    except ImportError:  # pragma: no cover - module lands with the OpenAI route
        pass
    else:
        add_openai_routes(app, engine)
    return app


def serve_engine(config: EngineConfig) -> None:
    """Load the model and serve HTTP until SIGTERM/SIGINT.

    The scheduler runs on the main thread (torch is fastest there on this CPU build, see
    ``Scheduler.run_forever``); uvicorn serves HTTP from a daemon thread with its own event loop.
    """
    import signal
    import threading

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    engine = Engine(config)
    app = create_app(engine)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning"))
    http = threading.Thread(target=server.run, name="interleaf-http", daemon=True)
    http.start()
    deadline = time.monotonic() + 30
    while not server.started and http.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise SystemExit(f"could not serve HTTP on {config.host}:{config.port} (port in use?)")

    def _stop(*_: object) -> None:
        engine.scheduler._stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("engine ready: %s on http://%s:%d (KV pool %d tokens%s)", engine.model_name, config.host,
             config.port, engine.config.max_total_tokens, ", SIMULATED" if engine.simulated else "")  # fmt: skip
    try:
        engine.scheduler.run_forever(alive=http.is_alive)
    finally:
        server.should_exit = True
        http.join(timeout=5)
