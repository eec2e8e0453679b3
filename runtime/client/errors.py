"""Errors of the inference backends: one taxonomy, each naming the server, the request and what to do.

==================  =====================================================  ===============================
error               cause                                                  what the runtime does
==================  =====================================================  ===============================
BackendError        the engine answered with an error (HTTP 4xx, a field   not retried; the episode ends
                    it rejected, a malformed reply)                        with ``backend_error``
BackendUnavailable  the engine could not be reached, dropped the           retried with backoff, then the
                    connection, timed out, or answered 408/429/5xx         router fails over to another
                                                                           server (recorded re-prefill)
RequestAborted      the engine aborted the request (no KV room right now,  retried with longer backoff on
                    its session closed)                                    the same server; the server is
                                                                           not marked down
SessionRejected     the engine refused a streaming-session turn (session   the session is dropped and the
                    reaped by its timeout, unknown id, second in-flight    turn is resent statelessly
                    request) or refused ``/open_session`` (4xx)            (full ids; radix cache matches)
ServerDown          the router declared the server down (``/health``       not retried there: failed over
                    failed) while a turn was in flight there               at once (recorded re-prefill)
NoHealthyServer     every server failed or is marked unhealthy             the episode ends with
                                                                           ``backend_error``
PoolClosed          the pool (or the backend client) was closed with       the call ends: nothing more
                    ``aclose()`` before or while the call ran              can be sent through it
==================  =====================================================  ===============================

A malformed reply (not JSON, the wrong JSON type, a field of the wrong type) is a ``BackendError``
naming the server, the endpoint and what was wrong, with a short excerpt of the reply.
"""

from __future__ import annotations


class BackendError(RuntimeError):
    """The inference server failed a request; the message names the server, the request and why."""

    def __init__(self, server: str, request_id: str, reason: str, *, status: int | None = None) -> None:
        self.server = server
        self.request_id = request_id
        self.reason = reason
        self.status = status
        where = f"server {server}" + (f" request {request_id}" if request_id else "")
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{where}{code}: {reason}")


class BackendUnavailable(BackendError):
    """Transient: connection refused or dropped, timeout, HTTP 5xx. Retried, then failed over."""


class RequestAborted(BackendUnavailable):
    """The server aborted the request (finish_reason ``abort``), e.g. no KV room at that moment."""


class SessionRejected(BackendError):
    """The server refused a streaming-session operation; the turn can be resent without the session."""


class ServerDown(BackendUnavailable):
    """The router declared the server down (failed ``/health``) while this turn was in flight or waiting
    there: the turn is not retried on it but failed over at once."""


class PoolClosed(BackendError):
    """The pool (or this backend client) was closed with ``aclose()``: nothing more can be sent through it."""


class NoHealthyServer(BackendError):
    """Every server of the pool is down or failed this request; the message lists each one's failure."""


__all__ = [
    "BackendError",
    "BackendUnavailable",
    "NoHealthyServer",
    "PoolClosed",
    "RequestAborted",
    "ServerDown",
    "SessionRejected",
]
