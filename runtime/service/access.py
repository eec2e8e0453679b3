"""Who may talk to ``interleaf serve``, checked before any route runs (an ASGI middleware).

=====================================================  ======  ============================================
request                                                answer  why
=====================================================  ======  ============================================
``Host`` not in ``allowed_hosts``                      400     DNS rebinding: a web page whose name resolves
                                                               to 127.0.0.1 must not reach the API
no or wrong ``Authorization: Bearer <token>`` (or the  401     the optional token (``--token``,
``interleaf_token`` cookie) when a token is set                ``INTERLEAF_API_TOKEN``)
a method no route serves at the path (``PUT            405     with ``Allow``: the methods the path serves
/v1/workers``)
POST/PUT/PATCH/DELETE without ``application/json``     415     a cross-site form (text/plain, urlencoded,
(except an empty body from outside a browser: no                multipart) cannot cancel or submit jobs; a
``Content-Type`` and no ``Origin``)                            page's bodiless ``fetch`` carries ``Origin``
body larger than ``max_body_bytes``                    413     memory: checked on Content-Length and while
                                                               the body streams in
=====================================================  ======  ============================================

``/healthz`` needs no token (load balancers and probes call it). ``GET /?token=<token>`` sets the
cookie (HttpOnly, SameSite=Strict) so the dashboard page works in a browser with a token on.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The default ``allowed_hosts``: the loopback names."""

TOKEN_COOKIE = "interleaf_token"
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OPEN_PATHS = frozenset({"/healthz"})


class AccessPolicy(BaseModel):
    """The service's front door: allowed ``Host`` names, optional bearer token, body size."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS
    """``Host`` header names served (port ignored); ``*`` serves any (only behind a proxy that checks)."""
    token: str | None = Field(default=None, min_length=16, repr=False)
    """Bearer token every route but ``/healthz`` requires; None: no authentication."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body; larger ones are refused with 413."""

    def host_allowed(self, host: str) -> bool:
        if "*" in self.allowed_hosts:
            return True
        name = host.strip().lower()
        if name.startswith("["):  # [::1]:8080
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        return name in {h.lower().strip("[]") for h in self.allowed_hosts}

    def token_ok(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        offered = ""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            offered = auth[7:].strip()
        else:
            for part in headers.get("cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == TOKEN_COOKIE:
                    offered = value
        return hmac.compare_digest(offered.encode(), self.token.encode())


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def _bodiless_outside_a_browser(headers: dict[str, str]) -> bool:
    """No body, no ``Content-Type`` and no ``Origin``: ``curl -X POST .../cancel``. A web page cannot send
    this: a browser adds ``Origin`` to every cross-origin POST, bodiless ``fetch`` included."""
    empty = headers.get("content-length", "").strip() == "0" or (
        "content-length" not in headers and "transfer-encoding" not in headers
    )
    return empty and "content-type" not in headers and "origin" not in headers


class AccessGuard:
    """ASGI middleware applying an ``AccessPolicy`` to every HTTP request."""

    def __init__(
        self, app: ASGIApp, policy: AccessPolicy, route_methods: Callable[[Scope], frozenset[str] | None] | None = None
    ) -> None:
        """``route_methods``: the methods the app serves at a request's path when it serves none for the
        request's method (None: it serves the request, or nothing at that path); without it, no 405s."""
        self.app = app
        self.policy = policy
        self.route_methods = route_methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        policy = self.policy
        if not policy.host_allowed(headers.get("host", "")):
            names = ", ".join(policy.allowed_hosts)
            await _answer(send, 400, f"Host {headers.get('host', '')[:100]!r} is not served here; allowed: {names}")
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if path not in _OPEN_PATHS and not policy.token_ok(headers):
            if path == "/" and method == "GET" and policy.token is not None:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                offered = (query.get("token") or [""])[0]
                if hmac.compare_digest(offered.encode(), policy.token.encode()):
                    cookie = f"{TOKEN_COOKIE}={offered}; HttpOnly; SameSite=Strict; Path=/"
                    await _answer(send, 303, "token accepted", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
                    return
            await _answer(
                send,
                401,
                "missing or wrong token: send 'Authorization: Bearer <token>' (the token given to interleaf serve "
                "with --token or INTERLEAF_API_TOKEN)",
                [(b"www-authenticate", b'Bearer realm="interleaf"')],
            )
            return
        allowed = self.route_methods(scope) if self.route_methods is not None else None
        if allowed:
            allow = ", ".join(sorted(allowed))
            await _answer(
                send, 405, f"{method} is not served at {path[:200]}; allowed: {allow}", [(b"allow", allow.encode())]
            )
            return
        if method in _STATE_CHANGING and not _bodiless_outside_a_browser(headers):
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                await _answer(
                    send, 415, f"{method} {path} needs 'Content-Type: application/json' (got {media or 'none'!r})"
                )
                return
        limit = policy.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _answer(send, 413, f"request body of {int(length)} bytes is over this server's limit of {limit}")
            return
        seen = 0
        too_large = started = False

        async def counted_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a body without Content-Length (chunked) grew past the limit
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:  # whatever the app made of the aborted read, the answer is 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _answer(send, 413, f"request body is over this server's limit of {limit} bytes")
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await _answer(send, 413, f"request body is over this server's limit of {limit} bytes")


__all__ = ["LOCAL_HOSTS", "TOKEN_COOKIE", "AccessGuard", "AccessPolicy"]
