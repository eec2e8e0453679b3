"""The embedded engine's HTTP server: SGLang's protocol (SGLANG.md) over FastAPI."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.engine import Engine
from interleaf.runtime.engine.openai import add_openai_routes
from interleaf.runtime.engine.protocol import (
    AbortIn,
    BadRequest,
    CloseSessionIn,
    DetokenizeIn,
    GenerateIn,
    OpenSessionIn,
    TokenizeIn,
)
from interleaf.runtime.engine.request import SamplingParams
from interleaf.runtime.engine.scheduler import Scheduler, new_request

log = logging.getLogger("interleaf.engine")
VERSION = "0.5.23-interleaf"


def _bad(message: str, param: str | None, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": param,
                                   "code": status}}, status_code=status)  # fmt: skip


_UNION_TAG = re.compile(r"^[A-Z]|\[|^(str|int|float|bool|none|list|dict)$")


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """A validation error's location as one path (``messages[0].content``): the ``body`` root and
    pydantic's union-branch tags (``str``, ``list[int]``, ``literal[...]``, model names) left out."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "body" and not _UNION_TAG.search(part):
            path += f".{part}" if path else part
    return path or "body"


def create_app(engine: Engine) -> FastAPI:
    """SGLang's HTTP routes (and the OpenAI route) over ``engine``."""
    app = FastAPI(title="interleaf engine (SGLang protocol)")
    sched = engine.scheduler

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        if err.get("type") == "json_invalid":
            where = err.get("loc", ("body", "?"))[-1]
            reason = (err.get("ctx") or {}).get("error", "not JSON")
            return _bad(f"body: invalid JSON at character {where}: {reason}", "body")
        value = err.get("input")
        if isinstance(value, bytes):  # FastAPI hands over the raw bytes when the body was not sent as JSON
            return _bad("body: not a JSON object; send it with Content-Type: application/json", "body")
        field = field_path(err.get("loc", ()))
        return _bad(f"{field}: {err.get('msg')} (got {json.dumps(value, default=str)[:200]})", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse({"error": {"message": message, "type": "NotFoundError" if exc.status_code == 404
                                       else "BadRequestError", "param": None, "code": exc.status_code}},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))  # fmt: skip

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
    async def generate(body: GenerateIn, request: Request) -> Any:
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
                                     None if batch_text else item, field=f"text[{i}]")  # type: ignore[arg-type]
                for i, item in enumerate(items or [])
            ]  # fmt: skip
            for r in reqs:
                await engine.run(r)
            return list(await asyncio.gather(*(engine.wait(r, request.is_disconnected) for r in reqs)))
        req = engine.build_request(
            body,
            body.text if isinstance(body.text, str) else None,
            body.input_ids if body.input_ids is not None else None,
        )  # type: ignore[arg-type]
        await engine.run(req)
        if body.stream:
            return StreamingResponse(engine.stream(req), media_type="text/event-stream")
        return await engine.wait(req, request.is_disconnected)

    # GET with a JSON body too, as SGLang's routes accept it.
    @app.api_route("/open_session", methods=["GET", "POST"])
    async def open_session(body: OpenSessionIn) -> Any:
        return engine.open_session(body)

    @app.api_route("/close_session", methods=["GET", "POST"])
    async def close_session(body: CloseSessionIn) -> Any:
        closed = await asyncio.wrap_future(sched.call(lambda s: s.close_session(body.session_id)))
        return {"success": True, "closed": closed}

    @app.post("/tokenize")
    @app.post("/v1/tokenize")
    async def tokenize(body: TokenizeIn) -> Any:
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        fields = ["prompt"] if isinstance(body.prompt, str) else [f"prompt[{i}]" for i in range(len(texts))]
        special = body.add_special_tokens
        ids = [engine.encode(t, f, add_special_tokens=special) for t, f in zip(texts, fields, strict=True)]
        if isinstance(body.prompt, str):
            return {"tokens": ids[0], "count": len(ids[0]), "max_model_len": engine.context_length}
        return {"tokens": ids, "count": [len(i) for i in ids], "max_model_len": engine.context_length}

    @app.post("/detokenize")
    @app.post("/v1/detokenize")
    async def detokenize(body: DetokenizeIn) -> Any:
        batch = bool(body.tokens) and isinstance(body.tokens[0], list)
        lists: list[list[int]] = body.tokens if batch else [body.tokens]  # type: ignore[assignment,list-item]
        for i, ids in enumerate(lists):
            for j, t in enumerate(ids):
                engine.check_token_id(t, f"tokens[{i}][{j}]" if batch else f"tokens[{j}]")
        texts = [engine.tokenizer.decode(ids, skip_special_tokens=body.skip_special_tokens) for ids in lists]
        return {"text": texts if batch else texts[0]}

    @app.get("/get_load")
    async def get_load() -> Any:
        def load(s: Scheduler) -> list[dict[str, int]]:
            return [{"dp_rank": 0, "num_reqs": s.num_running + len(s.waiting), "num_waiting_reqs": len(s.waiting),
                     "num_tokens": s.cache.used_tokens}]  # fmt: skip

        return await asyncio.wrap_future(sched.call(load))

    @app.post("/abort_request")
    async def abort_request(body: AbortIn) -> Any:
        rids = [r.rid for r in [*sched.running, *sched.waiting]] if body.abort_all else [body.rid]
        for rid in rids:
            sched.abort(rid)
        return {"success": True}

    @app.api_route("/flush_cache", methods=["GET", "POST"])
    async def flush_cache() -> Any:
        def flush(s: Scheduler) -> str | None:
            if not s.idle:
                return f"{s.num_running} running and {len(s.waiting)} queued requests"
            if s.cache.sessions.streaming_count:
                return f"{s.cache.sessions.streaming_count} streaming sessions hold KV; close them first"
            s.cache.radix.reset()
            return None

        problem = await asyncio.wrap_future(sched.call(flush))
        if problem:
            return PlainTextResponse(f"Cache not flushed: {problem}", status_code=400)
        return PlainTextResponse("Cache flushed.")

    def model_info() -> dict[str, Any]:
        return {"model_path": engine.model_path, "tokenizer_path": engine.model_path,
                "served_model_name": engine.model_name, "is_generation": True,
                "context_length": engine.context_length, "simulated": engine.simulated,
                "preferred_sampling_params": None}  # fmt: skip

    def server_info() -> dict[str, Any]:
        cfg = engine.config.model_dump()
        cfg.update({"model_path": engine.model_path, "served_model_name": engine.model_name,
                    "enable_streaming_session": engine.config.serves_streaming_sessions,
                    "disable_radix_cache": engine.config.disable_radix_cache,
                    "context_length": engine.context_length,
                    "max_req_input_len": engine.max_req_input_len})  # fmt: skip
        cfg["version"] = VERSION
        cache = sched.cache
        # Top level as SGLang's scheduler info puts them (clients read either place).
        cfg["max_total_num_tokens"] = cache.capacity
        cfg["internal_states"] = [{
            "max_total_num_tokens": cache.capacity,
            "available_tokens": cache.pool.available,
            "evictable_tokens": cache.radix.evictable_tokens,
            "session_held_tokens": cache.sessions.held_tokens,
            "num_streaming_sessions": cache.sessions.streaming_count,
            "simulated": engine.simulated,
            "simulated_seconds": engine.executor.simulated_seconds,
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
        engine.scheduler.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("engine ready: %s on http://%s:%d (KV pool %d tokens%s)", engine.model_name, config.host,
             config.port, engine.config.max_total_tokens, ", SIMULATED" if engine.simulated else "")  # fmt: skip
    try:
        engine.scheduler.run_forever(alive=http.is_alive)
    finally:
        server.should_exit = True
        http.join(timeout=5)
