"""The episode channel: the runner's hot path to an ``EpisodeWorker`` actor, one TCP connection.

Ray places the actors, restarts them and reports their death; an episode's dispatch and its
trajectory's return go over this channel instead of a Ray actor call. A Ray call costs ~0.85 ms
round trip on an idle 2-core box (the core worker's RPC, a thread hop into each side's event loop)
and far more under load; a frame on an open loopback connection costs ~0.03 ms. An episode that
makes one LLM call paid two Ray legs for it (docs/jobs.md, "Orchestration overhead").

The actor listens on loopback when it shares the driver's node, else on its node's address, and
accepts only a connection whose first frame is the token the driver gave it (any local user can
reach a port). Frames (big-endian):

- hello, client to actor: ``u32 length`` + token (UTF-8);
- request, client to actor: ``u32 length, u64 id`` + JSON ``[job_id, episode, attempt]``;
- reply, actor to client: ``u32 length, u64 id, u8 status`` + UTF-8 payload: the trajectory's JSON
  (``status`` 0) or ``"<ExceptionType>: <message>"`` of the episode's error (``status`` 1; what UTF-8
  cannot encode, a lone surrogate, as a ``\\udXXX`` escape). Every request gets its reply.

``length`` counts the bytes after itself. Replies come in the order episodes finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import struct
from collections.abc import Awaitable, Callable

import orjson

_LEN = struct.Struct(">I")
_REQUEST = struct.Struct(">IQ")
_REPLY = struct.Struct(">IQB")
MAX_HELLO = 256
"""Longest hello frame the actor reads (a token)."""
MAX_REQUEST = 4096
"""Longest request frame the actor reads (a job id is at most 128 characters)."""
OK, FAILED = 0, 1

RunEpisode = Callable[[str, int, int], Awaitable[str]]
"""``EpisodeWorker.run_episode``: (job id, episode, attempt) -> the trajectory's JSON."""


class ChannelClosed(ConnectionError):
    """The connection to the actor is gone (the actor died, or its node): treat as the actor's death."""


class EpisodeFailed(RuntimeError):
    """The episode raised inside the actor; the message is ``"<ExceptionType>: <message>"``."""


async def serve_episodes(run: RunEpisode, token: str, host: str) -> asyncio.Server:
    """Listen on ``host`` (port chosen by the kernel) for the runner's channel; each request runs
    ``run`` as its own task, so episodes run concurrently and reply as they finish."""
    expected = token.encode()
    tasks: set[asyncio.Task[None]] = set()  # held here: an episode outlives a dropped connection

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
            if n > MAX_HELLO or not hmac.compare_digest(await reader.readexactly(n), expected):
                return
            while True:
                n, request_id = _REQUEST.unpack(await reader.readexactly(_REQUEST.size))
                if n < 8 or n - 8 > MAX_REQUEST:
                    return
                body = await reader.readexactly(n - 8)
                task = asyncio.create_task(_reply(run, writer, request_id, body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the runner closed the channel (job over) or went away
        finally:
            writer.close()

    return await asyncio.start_server(connection, host, 0)


async def _reply(run: RunEpisode, writer: asyncio.StreamWriter, request_id: int, body: bytes) -> None:
    """Run one episode and answer, whatever happens: the runner waits for this reply and for nothing
    else, so a reply that cannot be built must still go back, as a failure."""
    try:
        job_id, episode, attempt = orjson.loads(body)
        status, payload = OK, (await run(str(job_id), int(episode), int(attempt))).encode()
    except asyncio.CancelledError:
        raise  # the actor is shutting down; the runner learns it from the closed connection
    except Exception as exc:  # also a trajectory that is not UTF-8
        status, payload = FAILED, _failure_text(exc)
    if writer.is_closing():
        return
    writer.write(_REPLY.pack(len(payload) + 9, request_id, status) + payload)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def _failure_text(exc: BaseException) -> bytes:
    """``"<ExceptionType>: <message>"`` as UTF-8, never failing: a message holding what UTF-8 cannot encode
    (a lone surrogate) keeps it as a ``\\udXXX`` escape, and one whose ``str`` raises is named so."""
    try:
        message = str(exc)
    except Exception as inner:  # a broken __str__
        message = f"(its message could not be read: {type(inner).__name__})"
    return f"{type(exc).__name__}: {message}".encode("utf-8", "backslashreplace")


class EpisodeChannel:
    """The runner's end: ``await EpisodeChannel.connect(host, port, token)``, then ``run_episode``
    from any number of tasks; ``close(why)`` fails every pending call with ``ChannelClosed``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._closed: str | None = None
        self._reader_task = asyncio.create_task(self._read_replies())

    @classmethod
    async def connect(cls, host: str, port: int, token: str, timeout_s: float = 10.0) -> EpisodeChannel:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        hello = token.encode()
        writer.write(_LEN.pack(len(hello)) + hello)
        await writer.drain()
        return cls(reader, writer)

    async def run_episode(self, job_id: str, episode: int, attempt: int) -> str:
        """The episode's trajectory JSON. Raises ``EpisodeFailed`` (it raised in the actor) or
        ``ChannelClosed`` (the actor or the connection is gone)."""
        if self._closed is not None:
            raise ChannelClosed(self._closed)
        request_id = next(self._ids)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        body = orjson.dumps([job_id, episode, attempt])
        self._writer.write(_REQUEST.pack(len(body) + 8, request_id) + body)
        try:
            await self._writer.drain()
            return await future
        except ConnectionError as exc:
            raise ChannelClosed(self._closed or f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)

    async def _read_replies(self) -> None:
        why = "the actor closed the episode channel"
        try:
            while True:
                n, request_id, status = _REPLY.unpack(await self._reader.readexactly(_REPLY.size))
                payload = (await self._reader.readexactly(n - 9)).decode()
                future = self._pending.get(request_id)
                if future is None or future.done():
                    continue  # its caller stopped waiting (job cancelled or failed)
                if status == OK:
                    future.set_result(payload)
                else:
                    future.set_exception(EpisodeFailed(payload))
        except asyncio.IncompleteReadError:
            pass  # end of stream: the actor's process is gone or it shut the channel
        except Exception as exc:  # a reset connection, or a frame that does not decode
            why = f"episode channel lost: {type(exc).__name__}: {exc}"
        self.close(why)

    def close(self, why: str = "episode channel closed") -> None:
        """Fail every pending call with ``ChannelClosed(why)`` and close the connection (idempotent)."""
        if self._closed is None:
            self._closed = why
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed(self._closed))
        self._writer.close()
        if asyncio.current_task() is not self._reader_task:
            self._reader_task.cancel()


__all__ = ["ChannelClosed", "EpisodeChannel", "EpisodeFailed", "serve_episodes"]
