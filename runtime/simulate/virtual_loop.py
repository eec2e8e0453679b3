"""An asyncio event loop whose clock is virtual: when nothing is ready, time jumps to the next timer.

The production client (pool, sessions, KV budget, admission, retention, router) is asyncio code whose
waits are ``asyncio.sleep`` / ``wait_for`` / ``asyncio.wait(timeout=)`` — timers of the running loop —
and whose clock is injected (``loop.time``). On this loop a 30 s tool pause costs no wall time, and
events still happen in the order their virtual times say: a discrete-event simulation of the real
code (the idea of the ``looptime`` test plugin, here without a dependency). Single-threaded only: a
thread that woke the loop would see virtual time jump past it.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class SimulationStuck(RuntimeError):
    """Nothing is ready and no timer is pending, yet the awaited work is not done: a deadlock."""


class _VirtualSelector(selectors.DefaultSelector):
    """Polls the real file descriptors without blocking; advances the loop's clock instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise SimulationStuck(
                "the simulation is stuck: no task can run and no timer is pending (a wait that nothing will end)"
            )
        assert self.loop is not None
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``loop.time()`` is virtual seconds from 0; ``run_until_complete`` takes as long as the Python work."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the selector does it when the loop would otherwise sleep)."""
        if seconds > 0:
            self._now += seconds


def run_virtual(main: Any) -> Any:
    """Run coroutine ``main`` to completion on a fresh virtual-time loop; returns its result."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


__all__ = ["SimulationStuck", "VirtualTimeLoop", "run_virtual"]
