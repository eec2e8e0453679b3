"""Waiting on a condition with a deadline: how tests synchronise with servers, tasks and jobs.

Tests never sleep a fixed time to let something happen: they poll what they are waiting for (a
``/metrics`` gauge, a job's status, a queue's length) and fail, naming what was awaited and the last
value seen, when it does not happen in time. A fixed sleep is either too short on a busy machine
(flaky) or too long everywhere (slow).
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_NOTHING = object()


def _timed_out(message: str, timeout_s: float, last: object) -> AssertionError:
    seen = "nothing (never observed)" if last is _NOTHING else repr(last)
    return AssertionError(f"timed out after {timeout_s:g} s waiting for {message}; last observed: {seen}")


def wait_until(
    observe: Callable[[], T],
    *,
    until: Callable[[T], object] = bool,
    message: str,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``observe()`` every ``interval_s`` until ``until(value)`` holds; return that value.

    ``observe`` may be a plain predicate (``until`` defaults to truthiness) or return the state to
    report, with ``until`` judging it. Exceptions of the ``ignore`` types mean "not yet" (a server
    still starting); any other propagates at once, so ``observe`` can fail fast (a process died).
    Raises ``AssertionError`` after ``timeout_s``, naming ``message`` and the last value observed.
    """
    deadline = time.monotonic() + timeout_s
    last: object = _NOTHING
    while True:
        try:
            value = observe()
        except ignore as exc:
            last = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _timed_out(message, timeout_s, last)
        time.sleep(interval_s)


async def wait_until_async(
    observe: Callable[[], T | Awaitable[T]],
    *,
    until: Callable[[T], object] = bool,
    message: str,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """:func:`wait_until` for the event loop: ``observe`` may be sync or a coroutine function, and
    the loop keeps running the tasks under test between polls."""
    deadline = time.monotonic() + timeout_s
    last: object = _NOTHING
    while True:
        try:
            value: Any = observe()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            last = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _timed_out(message, timeout_s, last)
        await asyncio.sleep(interval_s)


async def wait_until_started(task: asyncio.Task, *, message: str, timeout_s: float = 10.0) -> None:
    """Wait until ``task``'s coroutine has run to its first ``await`` (or to its end).

    For calls whose only sign of waiting is that they block (a reservation parked on a condition):
    afterwards the test checks ``task.done()`` to tell "blocked" from "returned at once".
    """
    await wait_until_async(
        lambda: inspect.getcoroutinestate(task.get_coro()),
        until=lambda state: state != inspect.CORO_CREATED,
        message=message,
        timeout_s=timeout_s,
        interval_s=0.005,
    )


__all__ = ["wait_until", "wait_until_async", "wait_until_started"]


def wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float = 120.0) -> None:
    """Until a server process's ``/healthz`` answers 200; fails at once if the process exits."""
    import httpx

    def healthz() -> int:
        assert proc.poll() is None, f"the server process exited with {proc.returncode}"
        return httpx.get(f"{url}/healthz", timeout=2).status_code

    wait_until(
        healthz,
        until=lambda code: code == 200,
        message=f"{url}/healthz to answer 200",
        timeout_s=timeout_s,
        interval_s=0.3,
        ignore=(httpx.HTTPError,),
    )
