"""Blocking work off the event loop, each call in a daemon thread of its own.

Not the loop's default executor: a timed-out sync tool cannot be stopped, so its thread runs on
after the call has returned. In a shared pool of ``cpu_count + 4`` workers a few such threads
leave every later call (the calculator's, the python sandbox's file copies) queued behind them
until its own timeout, and ``asyncio.run`` waits for them at exit. A thread per call costs ~0.1 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MAX_THREADS", "live_threads", "run_in_thread"]

T = TypeVar("T")

MAX_THREADS = 256
"""Worker threads alive at once, abandoned ones included; past it a call is refused (``RuntimeError``)."""

_lock = threading.Lock()
_live = 0


def live_threads() -> int:
    """Worker threads alive now (running a call, or abandoned by one and running on)."""
    return _live


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the caller timed out and left: the thread was abandoned
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def run_in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a new daemon thread (with this task's context variables); cancelling
    the await abandons the thread, which runs on to its end and is never waited for at exit."""
    global _live
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        global _live
        result, error = None, None
        try:
            result = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, which decides
            error = exc
        finally:
            with _lock:
                _live -= 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this result any more
            loop.call_soon_threadsafe(_settle, future, result, error)

    with _lock:
        if _live >= MAX_THREADS:
            raise RuntimeError(
                f"no worker thread for {getattr(fn, '__name__', fn)!r}: {_live} are alive (the limit is "
                f"{MAX_THREADS}), most likely sync tools abandoned after their timeout that never return"
            )
        _live += 1
    try:
        threading.Thread(target=work, name=f"interleaf-{getattr(fn, '__name__', 'work')}", daemon=True).start()
    except BaseException:
        with _lock:
            _live -= 1
        raise
    return await future
