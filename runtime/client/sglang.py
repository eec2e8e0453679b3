"""SGLangBackend: one SGLang-protocol server over HTTP (httpx, async).

The one module on the client side that builds SGLang HTTP requests (the runtime, the probes and the
PTE-latency study all go through it). Speaks ../shared/SGLANG.md: ``/generate`` with ``input_ids``
(the runtime's conversations own exact token ids) or with ``text`` (:meth:`SGLangBackend.generate_text`,
for callers without a tokenizer), hidden-state capture (``return_hidden_states`` and interleaf's
``hidden_states_layers`` / ``hidden_states_last_k``), streaming sessions via ``/open_session`` +
``session_params`` + ``/close_session``, ``/server_info`` / ``/model_info`` for capabilities,
``/health`` and ``/metrics``. Works against real SGLang (``--enable-streaming-session
--enable-metrics``) and interleaf's embedded engine alike.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import httpx
import orjson

from interleaf.runtime.client.backend import GenerateResult, ServerInfo, SessionTurn
from interleaf.runtime.client.errors import (
    BackendError,
    BackendUnavailable,
    PoolClosed,
    RequestAborted,
    SessionRejected,
)
from interleaf.runtime.client.server_metrics import ServerMetrics, parse_prometheus
from interleaf.telemetry.records import MAX_TOKENS

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_SHARD_CONNECTIONS = 32
"""Connections per httpx client (see ``_ClientShards``)."""
_MAX_SHARDS = 32
"""Clients per server at most: 1,024 connections in all."""
_JSON_HEADERS = {"content-type": "application/json"}
"""``/generate`` bodies are encoded with orjson: a body of 2,000 token ids takes ~6 us against httpx's
``json=`` (the standard library) ~86 us, and without a session a turn sends the whole conversation."""

Transport: TypeAlias = httpx.AsyncBaseTransport
"""What replaces the network under :class:`SGLangBackend` (tests pass an ``httpx.MockTransport``)."""


def _positive_int(value: Any, default: int) -> int:
    """``value`` when it is a positive int (SGLang reports -1 for "off"), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _flag(info: dict[str, Any], name: str) -> bool | None:
    """A server arg from /server_info (flat in SGLang; nested under server_args in some versions)."""
    nested = info.get("server_args")
    for source in (info, nested if isinstance(nested, dict) else {}):
        if name in source:
            return bool(source[name])
    return None


def _excerpt(response: httpx.Response, limit: int = 200) -> str:
    """The start of a reply's body for an error message, with its content type."""
    kind = response.headers.get("content-type", "no content-type")
    return f"{kind}, {response.text[:limit]!r}"


class _ClientShards:
    """The connections to one server, split over several httpx clients.

    httpcore's pool walks every connection it holds (polling each idle socket) on every request: one
    client of 1,024 connections spent 1.3-2.6 ms of CPU per request at 500 requests in flight, the
    largest cost of a Ray actor running 500 episodes; clients of 32 connections spend ~0.5 ms
    (docs/jobs.md, "Orchestration overhead"). A request goes to the client with the fewest in
    flight; another client is opened only when every open one is full, so light use keeps one.
    """

    def __init__(self, make: Callable[[], httpx.AsyncClient]) -> None:
        self._make = make
        self.clients = [make()]
        self.in_flight = [0]

    @contextlib.contextmanager
    def pick(self) -> Iterator[httpx.AsyncClient]:
        i = min(range(len(self.clients)), key=self.in_flight.__getitem__)
        if self.in_flight[i] >= _SHARD_CONNECTIONS and len(self.clients) < _MAX_SHARDS:
            i = len(self.clients)
            self.clients.append(self._make())
            self.in_flight.append(0)
        self.in_flight[i] += 1
        try:
            yield self.clients[i]
        finally:
            self.in_flight[i] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


class SGLangBackend:
    """Async client of one server. Build it with :meth:`connect` (reads capabilities once)."""

    def __init__(
        self,
        url: str,
        info: ServerInfo,
        *,
        request_timeout_s: float = 600.0,
        transport: Transport | None = None,
    ) -> None:
        if not (
            isinstance(request_timeout_s, int | float) and math.isfinite(request_timeout_s) and request_timeout_s > 0
        ):
            raise ValueError(f"request_timeout_s={request_timeout_s!r} must be a finite number of seconds > 0")
        self.url = url.rstrip("/")
        self.info = info
        self._closed = False
        self._http = _ClientShards(
            lambda: httpx.AsyncClient(
                base_url=self.url,
                timeout=httpx.Timeout(request_timeout_s, connect=5.0),
                limits=httpx.Limits(max_connections=_SHARD_CONNECTIONS, max_keepalive_connections=_SHARD_CONNECTIONS),
                transport=transport,
            )
        )

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        request_timeout_s: float = 600.0,
        transport: Transport | None = None,
    ) -> SGLangBackend:
        """Read ``/server_info`` and ``/model_info``; raise BackendUnavailable / BackendError naming why."""
        url = url.rstrip("/")
        probe = cls(
            url, ServerInfo(url=url, max_total_num_tokens=1), request_timeout_s=request_timeout_s, transport=transport
        )
        try:
            server_info = await probe._get_json("/server_info", alias="/get_server_info")
            model_info = await probe._get_json("/model_info", alias="/get_model_info")
        except BaseException:
            await probe.aclose()
            raise
        states = server_info.get("internal_states")
        state = states[0] if isinstance(states, list) and states and isinstance(states[0], dict) else {}
        max_total = _first(state, "max_total_num_tokens") or server_info.get("max_total_num_tokens")
        if not isinstance(max_total, int) or max_total <= 0:
            await probe.aclose()
            raise BackendError(
                url,
                "",
                f"/server_info internal_states[0].max_total_num_tokens is {max_total!r}; need a positive int "
                "(the KV budget is a fraction of it): is this an SGLang-protocol server?",
            )
        model_path = str(model_info.get("model_path") or server_info.get("model_path") or "")
        info = ServerInfo(
            url=url,
            model_path=model_path,
            served_model_name=str(model_info.get("served_model_name") or model_path),
            max_total_num_tokens=max_total,
            streaming_sessions=bool(_flag(server_info, "enable_streaming_session")),
            metrics=bool(_flag(server_info, "enable_metrics")),
            chunked_prefill_size=_positive_int(server_info.get("chunked_prefill_size"), 8192),
            version=str(server_info.get("version") or ""),
            executor=str(server_info.get("executor") or ""),
        )
        await probe.aclose()
        return cls(url, info, request_timeout_s=request_timeout_s, transport=transport)

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _refuse_if_closed(self, what: str, rid: str = "") -> None:
        if self._closed:
            raise PoolClosed(self.url, rid, f"{what}: this client was closed (pool.aclose()); open a new pool")

    async def _request(self, method: str, path: str, *, rid: str = "", **kwargs: Any) -> httpx.Response:
        self._refuse_if_closed(f"{method} {path}", rid)
        try:
            with self._http.pick() as http:
                response = await http.request(method, path, **kwargs)
        except RuntimeError as exc:
            # httpx: "Cannot send a request, as the client has been closed" (aclose() while this waited).
            self._refuse_if_closed(f"{method} {path}", rid)
            raise BackendError(self.url, rid, f"{method} {path} failed: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(self.url, rid, f"{method} {path} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                self.url, rid, f"{method} {path} failed: {type(exc).__name__}: {exc}; is the server running?"
            ) from exc
        if response.status_code in _TRANSIENT_STATUS:
            raise BackendUnavailable(
                self.url, rid, f"{method} {path}: {response.text[:300]!r}", status=response.status_code
            )
        return response

    async def _get_json(self, path: str, *, alias: str | None = None) -> dict[str, Any]:
        response = await self._request("GET", path)
        if response.status_code == 404 and alias:
            response = await self._request("GET", alias)
        if response.status_code != 200:
            raise BackendError(self.url, "", f"GET {path}: {response.text[:300]!r}", status=response.status_code)
        try:
            # The standard library's parser: it reads NaN / Infinity, which some servers write in server args.
            data = response.json()
        except ValueError:  # json.JSONDecodeError, UnicodeDecodeError
            raise BackendError(
                self.url, "", f"GET {path} returned non-JSON ({_excerpt(response)}): is this an SGLang-protocol server?"
            ) from None
        if not isinstance(data, dict):
            raise BackendError(
                self.url, "", f"GET {path} returned JSON {type(data).__name__}, not an object ({_excerpt(response)})"
            )
        return data

    # -- protocol ------------------------------------------------------------------------------

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
        """POST /generate with ``input_ids``; raises SessionRejected when the server refused the session.

        ``sampling_params`` go as given (SGLang names: ``max_new_tokens``, ``regex``, ``ignore_eos``,
        ``sampling_seed``...). ``hidden_states_layers`` / ``hidden_states_last_k`` (interleaf's
        extension; a stock server ignores them) need ``return_hidden_states=True``. ``priority`` goes as SGLang's
        top-level ``priority`` (larger first where the server runs ``--enable-priority-scheduling``)."""
        payload: dict[str, Any] = {"input_ids": input_ids}
        if priority is not None:
            payload["priority"] = priority
        return await self._generate(
            payload,
            sampling_params,
            rid,
            session,
            _hidden_state_fields(return_hidden_states, hidden_states_layers, hidden_states_last_k),
        )

    async def generate_text(
        self,
        text: str,
        *,
        sampling_params: dict[str, Any],
        rid: str | None = None,
        return_hidden_states: bool = False,
        hidden_states_layers: list[int] | None = None,
        hidden_states_last_k: int | None = None,
    ) -> GenerateResult:
        """POST /generate with ``text``: the server tokenises it. For one-shot requests from callers
        that hold no tokenizer (the probes); the runtime's multi-turn conversations use :meth:`generate`,
        which is why :class:`~interleaf.runtime.client.backend.Backend` does not require this method.
        ``rid`` None lets the server name the request. Other arguments as in :meth:`generate`."""
        payload: dict[str, Any] = {"text": text}
        return await self._generate(
            payload,
            sampling_params,
            rid,
            None,
            _hidden_state_fields(return_hidden_states, hidden_states_layers, hidden_states_last_k),
        )

    async def _generate(
        self,
        payload: dict[str, Any],
        sampling_params: dict[str, Any],
        rid: str | None,
        session: SessionTurn | None,
        hidden: dict[str, Any],
    ) -> GenerateResult:
        payload["sampling_params"] = sampling_params
        if rid is not None:
            payload["rid"] = rid
        if session is not None:
            # A session's first request names no earlier turn: send no rid rather than null.
            payload["session_params"] = {"id": session.session_id}
            if session.previous_rid is not None:
                payload["session_params"]["rid"] = session.previous_rid
        payload.update(hidden)
        label = rid or ""  # errors name the request; "" when the server assigns the rid
        start = time.monotonic()
        body = orjson.dumps(payload)
        response = await self._request("POST", "/generate", rid=label, content=body, headers=_JSON_HEADERS)
        elapsed = time.monotonic() - start
        if response.status_code != 200:
            body = response.text[:500]
            if session is not None and response.status_code in (400, 404, 409):
                raise SessionRejected(
                    self.url,
                    label,
                    f"session {session.session_id} turn after rid {session.previous_rid} refused: {body!r}",
                    status=response.status_code,
                )
            raise BackendError(self.url, label, f"/generate refused: {body!r}", status=response.status_code)
        try:
            data = orjson.loads(response.content)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            raise BackendError(self.url, label, f"/generate returned non-JSON: {response.text[:200]!r}") from exc
        if isinstance(data, list):
            data = data[0] if data else {}
        if not isinstance(data, dict):
            raise BackendError(
                self.url, label, f"/generate returned JSON {type(data).__name__}, not an object ({_excerpt(response)})"
            )
        return self._parse_generate(data, label, elapsed)

    def _parse_generate(self, data: dict[str, Any], rid: str, elapsed: float) -> GenerateResult:
        meta = data.get("meta_info")
        if not isinstance(meta, dict):
            raise BackendError(self.url, rid, f"/generate reply has no meta_info object: {str(data)[:200]!r}")
        output_ids = data.get("output_ids")
        if not isinstance(output_ids, list):
            raise BackendError(
                self.url, rid, "/generate reply has no output_ids list: the client needs exact token ids"
            )
        for i, token in enumerate(output_ids):
            if not isinstance(token, int) or isinstance(token, bool) or token < 0:
                raise BackendError(
                    self.url,
                    rid,
                    f"/generate output_ids[{i}] is {token!r}, expected a token id (an int >= 0): "
                    f"{str(output_ids)[:120]}",
                )
        finish = meta.get("finish_reason")
        finish_type = finish.get("type") if isinstance(finish, dict) else finish
        for key in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            value = meta.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TOKENS:
                raise BackendError(
                    self.url, rid, f"/generate meta_info.{key} is {value!r}, expected an int in 0..{MAX_TOKENS}"
                )
        if meta["cached_tokens"] > meta["prompt_tokens"]:
            raise BackendError(self.url, rid, f"/generate meta_info.cached_tokens={meta['cached_tokens']} exceeds "
                               f"prompt_tokens={meta['prompt_tokens']}")  # fmt: skip
        if finish_type == "abort":
            message = finish.get("message", "") if isinstance(finish, dict) else ""
            raise RequestAborted(self.url, rid, f"request aborted by the server: {message or finish!r}")
        hidden = meta.get("hidden_states", data.get("hidden_states"))
        return GenerateResult(
            text=str(data.get("text") or ""),
            output_ids=output_ids,
            finish_reason=str(finish_type or ""),
            request_id=str(meta.get("id") or rid),
            server=self.url,
            prompt_tokens=meta["prompt_tokens"],
            cached_tokens=meta["cached_tokens"],
            completion_tokens=meta["completion_tokens"],
            e2e_s=elapsed,
            server_e2e_s=_float(meta.get("e2e_latency")),
            queue_s=_float(_first(meta, "queue_time", "queue_s")),
            ttft_s=_float(_first(meta, "ttft", "first_token_latency", "time_to_first_token")),
            batch_size=_batch_size(_first(meta, "batch_size", "mean_batch_size")),
            hidden_states=hidden if isinstance(hidden, list | dict) else None,
            meta_info=meta,
        )

    async def open_session(self, *, timeout_s: float) -> str:
        """POST /open_session (streaming); returns the session id."""
        if not self.info.streaming_sessions:
            raise SessionRejected(
                self.url,
                "",
                "streaming sessions are off on this server: start it with --enable-streaming-session",
            )
        body = {"capacity_of_str_len": 0, "streaming": True, "timeout": timeout_s}
        response = await self._request("POST", "/open_session", json=body)
        if response.status_code != 200:
            raise SessionRejected(
                self.url, "", f"/open_session refused: {response.text[:300]!r}", status=response.status_code
            )
        try:
            sid = orjson.loads(response.content)
        except ValueError:
            sid = None
        if not isinstance(sid, str) or not sid:
            raise SessionRejected(
                self.url, "", f"/open_session returned {_excerpt(response)}, expected a session id (a JSON string)"
            )
        return sid

    async def close_session(self, session_id: str) -> None:
        """POST /close_session; an unknown session (already reaped) is fine."""
        response = await self._request("POST", "/close_session", json={"session_id": session_id})
        if response.status_code not in (200, 400, 404):
            raise BackendError(
                self.url,
                "",
                f"/close_session {session_id}: {response.text[:300]!r}",
                status=response.status_code,
            )

    async def abort(self, rid: str) -> None:
        """POST /abort_request (best effort; errors are swallowed: the request may be gone)."""
        if self._closed:
            return
        with contextlib.suppress(httpx.HTTPError, RuntimeError), self._http.pick() as http:
            await http.post("/abort_request", json={"rid": rid}, timeout=5.0)

    async def health(self) -> bool:
        if self._closed:
            return False
        try:
            with self._http.pick() as http:
                response = await http.get("/health", timeout=5.0)
        except (httpx.HTTPError, RuntimeError):  # RuntimeError: closed meanwhile
            return False
        return response.status_code == 200

    async def metrics(self) -> ServerMetrics | None:
        if not self.info.metrics or self._closed:
            return None
        try:
            with self._http.pick() as http:
                response = await http.get("/metrics", timeout=5.0)
        except (httpx.HTTPError, RuntimeError):  # RuntimeError: closed meanwhile
            return None
        if response.status_code != 200:
            return None
        return ServerMetrics(parse_prometheus(response.text))

    async def aclose(self) -> None:
        """Close the connections; later calls raise ``PoolClosed`` (``abort``/``health`` do nothing)."""
        self._closed = True
        await self._http.aclose()


def _hidden_state_fields(capture: bool, layers: list[int] | None, last_k: int | None) -> dict[str, Any]:
    """The ``/generate`` fields of a hidden-state request; the qualifiers alone would be ignored silently."""
    if not capture:
        for name, value in (("hidden_states_layers", layers), ("hidden_states_last_k", last_k)):
            if value is not None:
                raise ValueError(f"{name}={value!r} needs return_hidden_states=True (nothing is captured without it)")
        return {}
    fields: dict[str, Any] = {"return_hidden_states": True}
    if layers is not None:
        fields["hidden_states_layers"] = list(layers)
    if last_k is not None:
        if last_k < 1:
            raise ValueError(f"hidden_states_last_k={last_k}: capture at least one position")
        fields["hidden_states_last_k"] = last_k
    return fields


def _float(value: Any) -> float | None:
    """A finite number the server reported, or None (absent, not a number, NaN or infinite)."""
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _batch_size(value: Any) -> float | None:
    """The mean decode batch the server reported; None when it reported none that can be one (below 1)."""
    number = _float(value)
    return number if number is not None and number >= 1 else None


__all__ = ["SGLangBackend", "Transport"]
