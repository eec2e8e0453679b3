"""The engine: an executor, the scheduler over it, streaming sessions and constrained decoding.

The HTTP routes (server.py, openai/route.py) validate bodies and call into ``Engine``: it builds
``Req``s (session context prepended, grammar compiled, limits checked with errors naming the field),
hands them to the scheduler thread and turns finished requests into SGLang's response shape.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.executor import create_executor
from interleaf.runtime.engine.grammar import GrammarBackend, GrammarError
from interleaf.runtime.engine.metrics import EngineMetrics
from interleaf.runtime.engine.protocol import BadRequest, GenerateIn, OpenSessionIn, SamplingParamsIn, unicode_text
from interleaf.runtime.engine.request import Req, SamplingParams, capture_for
from interleaf.runtime.engine.scheduler import Scheduler, new_request

DISCONNECT_POLL_S = 0.5
"""How often a non-streamed request checks that its client is still connected."""

_FIELD = re.compile(r"[A-Za-z_][\w.\[\]]*")


def field_of(message: str) -> str:
    """The field an error message starts with (``"sampling_params.min_p must be ..."`` ->
    ``sampling_params.min_p``): the messages of ``SamplingParams``, ``capture_for`` and the grammar backend
    begin with the field they are about."""
    match = _FIELD.match(message)
    return match.group(0) if match else "body"


class Engine:
    """Executor + scheduler + sessions; the HTTP handlers call into this."""

    def __init__(self, config: EngineConfig):
        self.executor = create_executor(config)
        # The executor settles the pool size when --max-total-tokens is unset; /server_info reports it.
        self.config = config.model_copy(update={"max_total_tokens": self.executor.kv_capacity})
        self.tokenizer = self.executor.tokenizer
        self.model_name = config.served_model_name or self.executor.model_name
        self.model_path = self.executor.model_path
        self.simulated = self.executor.simulated
        self.context_length = self.executor.context_length
        """The model's context length (prompt + output)."""
        self.grammar = (
            GrammarBackend(self.tokenizer, self.executor.vocab_size) if self.executor.constrained_decoding else None
        )
        self.scheduler = Scheduler(
            self.executor,
            grammar=self.grammar,
            chunk_size=config.chunked_prefill_size,
            max_running=config.max_running_requests,
            enable_radix=not config.disable_radix_cache,
        )
        self.sessions = self.scheduler.cache.sessions
        self.metrics = EngineMetrics(self.scheduler, self.model_name, self.simulated)
        self.started = time.time()

    @property
    def max_req_input_len(self) -> int:
        """Longest prompt accepted: one token short of the longest sequence the scheduler can hold."""
        return self.scheduler.max_seq_len - 1

    # --- request building ---------------------------------------------------------------------
    def encode(self, text: str, field: str, *, add_special_tokens: bool = False) -> list[int]:
        """``text``'s token ids; BadRequest naming ``field`` when it is not valid Unicode (a lone UTF-16
        surrogate such as ``\\ud800``, which JSON can carry but no tokenizer can encode)."""
        unicode_text(text, field)
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def sampling_params(self, sp: SamplingParamsIn | None) -> SamplingParams:
        """``sampling_params`` of a request as the scheduler's ``SamplingParams``; BadRequest naming the field."""
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
            raise BadRequest(str(exc), field_of(str(exc))) from exc
        for i, t in enumerate(params.stop_token_ids):
            self.check_token_id(t, f"sampling_params.stop_token_ids[{i}]")
        return params

    def check_token_id(self, t: int, field: str) -> None:
        """``BadRequest`` naming ``field`` when token id ``t`` is outside the vocabulary."""
        if not 0 <= t < self.executor.vocab_size:
            raise BadRequest(f"{field}: token id {t} is out of range 0..{self.executor.vocab_size - 1}", field)

    def build_request(self, body: GenerateIn, text: str | None, ids: list[int] | None, *,
                      field: str = "text") -> Req:  # fmt: skip
        """A ``Req`` for one prompt of a ``/generate`` body (``text`` or ``ids``, named ``field`` in errors
        about the text); BadRequest naming the field."""
        params = self.sampling_params(body.sampling_params)
        if body.return_logprob and (body.top_logprobs_num or 0) > self.executor.vocab_size:
            raise BadRequest(f"top_logprobs_num={body.top_logprobs_num} is more than the vocabulary's "
                             f"{self.executor.vocab_size} tokens", "top_logprobs_num")  # fmt: skip
        if ids is None:
            ids = self.encode(text or "", field)
        elif ids and not 0 <= min(ids) <= max(ids) < self.executor.vocab_size:  # one pass in C; name the first bad one
            for i, t in enumerate(ids):
                self.check_token_id(t, f"input_ids[{i}]")
        capture = None
        if body.return_hidden_states:
            if not self.executor.hidden_states:
                raise BadRequest(f"return_hidden_states: the {self.config.executor} executor has no hidden states "
                                 "to return", "return_hidden_states")  # fmt: skip
            try:
                capture = capture_for(body.hidden_states_layers, body.hidden_states_last_k, self.executor.n_layers)
            except ValueError as exc:
                raise BadRequest(str(exc), field_of(str(exc))) from exc
        rid = body.rid or uuid.uuid4().hex
        session_id = None
        if body.session_params is not None:
            ids, session_id = self._session_turn(body, ids, rid)
        elif not ids:
            raise BadRequest("input_ids: the prompt is empty; send at least one token", "input_ids")
        radix_sid = body.session_id if self.config.enable_session_radix_cache else None
        priority = (body.priority or 0) if self.config.enable_priority_scheduling else 0
        req = new_request(rid, ids, params, stream=body.stream, session_id=session_id, radix_session_id=radix_sid,
                          capture=capture, priority=priority)  # fmt: skip
        if body.return_logprob:
            req.top_logprobs_num = max(0, body.top_logprobs_num or 0)
            req.logprob_text = body.return_text_in_logprobs
            if body.logprob_start_len > len(ids):
                self._release_inflight(session_id, rid)
                raise BadRequest(f"logprob_start_len={body.logprob_start_len} is beyond the prompt's {len(ids)} "
                                 "tokens; send a smaller one (or -1 for output logprobs only)",
                                 "logprob_start_len")  # fmt: skip
            if 0 <= body.logprob_start_len < len(ids):
                req.logprob_start = body.logprob_start_len
        if len(ids) > self.max_req_input_len:
            self._release_inflight(session_id, rid)
            raise BadRequest(self._too_long_message(len(ids)), "input_ids")
        if params.constrained:
            if self.grammar is None:
                self._release_inflight(session_id, rid)
                raise BadRequest(f"constrained decoding is not available on the {self.config.executor} executor",
                                 "sampling_params")  # fmt: skip
            try:
                req.grammar = self.grammar.matcher(self.grammar.compile(params))
            except GrammarError as exc:
                self._release_inflight(session_id, rid)
                raise BadRequest(str(exc), field_of(str(exc))) from exc
        if session_id is not None:
            self.sessions.attach(session_id, req)
        return req

    def _too_long_message(self, n: int) -> str:
        if self.scheduler.max_seq_len == self.context_length:
            return f"input_ids: {n} tokens exceed the context length {self.context_length}"
        return (f"input_ids: {n} tokens do not fit the KV pool (max_total_num_tokens="
                f"{self.scheduler.cache.capacity}, shorter than the context length {self.context_length}); "
                "raise --max-total-tokens")  # fmt: skip

    def _session_turn(self, body: GenerateIn, delta: list[int], rid: str) -> tuple[list[int], str]:
        sp = body.session_params
        assert sp is not None
        if body.session_id is not None:
            raise BadRequest("session_id and session_params are exclusive; send one", "session_id")
        return self.sessions.begin_turn(rid, sp, delta), sp.id

    def _release_inflight(self, session_id: str | None, rid: str) -> None:
        if session_id is not None:
            self.sessions.release(session_id, rid)

    # --- running ---------------------------------------------------------------------------------
    async def run(self, req: Req) -> None:
        """Hand ``req`` to the scheduler; its events arrive on a queue of the running event loop."""
        req.loop = asyncio.get_running_loop()
        req.queue = asyncio.Queue()
        self.scheduler.submit(req)

    def result(self, req: Req) -> dict[str, Any]:
        """``req`` so far in ``/generate``'s response shape (``text``, ``output_ids``, ``meta_info``)."""
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
            entry = self._logprob_entry if req.logprob_text else _logprob_entry_no_text
            meta["output_token_logprobs"] = [entry(lp, t) for lp, t in req.output_logprobs]
            if req.top_logprobs_num > 0:
                meta["output_top_logprobs"] = [[entry(lp, t) for lp, t in step] for step in req.output_top_logprobs]
            meta["input_token_logprobs"] = [entry(lp, t) for lp, t in req.input_logprobs]  # [] without a start
        if req.finished and req.capture is not None:
            cap = req.capture
            meta["hidden_states"] = {
                "layers": list(cap.layers),
                "prompt": [cap.prompt[layer].tolist() for layer in cap.layers] if cap.prompt else None,
                "output": [cap.snapshot()[layer].tolist() for layer in cap.layers],
            }
        return {"text": text, "output_ids": out_ids, "meta_info": meta}

    def _logprob_entry(self, logprob: float | None, token: int) -> list[Any]:
        return [logprob, token, self.tokenizer.decode([token])]

    async def wait(self, req: Req, disconnected: Callable[[], Awaitable[bool]] | None = None) -> dict[str, Any]:
        """The result once ``req`` finishes; cancelling the wait aborts the request, and so does
        ``disconnected()`` turning true (checked every ``DISCONNECT_POLL_S`` while the request runs: a
        non-streamed HTTP handler is not cancelled when its client goes away)."""
        assert req.queue is not None
        aborted = False
        try:
            while not req.finished:
                if disconnected is None or aborted:
                    await req.queue.get()
                    continue
                try:
                    await asyncio.wait_for(req.queue.get(), timeout=DISCONNECT_POLL_S)
                except TimeoutError:
                    if await disconnected():
                        self.scheduler.abort(req.rid, "client disconnected")
                        aborted = True
        except asyncio.CancelledError:
            self.scheduler.abort(req.rid, "client disconnected")
            raise
        return self.result(req)

    async def stream(self, req: Req) -> AsyncIterator[bytes]:
        """Server-sent events: the cumulative result after each step, then ``[DONE]``; a client that
        disconnects aborts the request."""
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
        """Open a session (``/open_session``): streaming with ``"streaming": true``, else plain (SGLang's
        default, which pins nothing); returns its id."""
        if body.streaming and not self.config.enable_streaming_session:
            raise BadRequest("streaming sessions are disabled: start the server with --enable-streaming-session",
                             "streaming")  # fmt: skip
        if body.timeout is not None and not (math.isfinite(body.timeout) and body.timeout > 0):
            raise BadRequest(f"timeout must be > 0 seconds, got {body.timeout}", "timeout")
        if body.streaming and self.config.disable_radix_cache:
            raise BadRequest("streaming sessions need the radix cache (server started with --disable-radix-cache)",
                             "streaming")  # fmt: skip
        sid = body.session_id or uuid.uuid4().hex
        timeout = body.timeout if body.timeout is not None else self.config.session_timeout_default
        self.sessions.open(sid, timeout, streaming=body.streaming)
        return sid


def _logprob_entry_no_text(logprob: float | None, token: int) -> list[Any]:
    return [logprob, token, None]
