"""Progress and ETA for the benchmarks: one line to stderr every few seconds, and one when done.

A benchmark that prints nothing for 25 minutes cannot be told apart from a hung one. Every bench
here wraps its units of work (requests, turns, episodes, variants) in a ``Progress``:

    progress = Progress("decode 8 x 4k", total=8, unit="requests")
    for ...:
        ...
        progress.advance()

prints ``[decode 8 x 4k] 3/8 requests, 41 s elapsed, ETA 1 min 8 s`` at most every ``every_s``
seconds (the ETA extrapolates the mean rate so far). Lines go to stderr so the figures on stdout
stay clean to pipe or diff. Imported as ``from progress import Progress``: the benches run as
scripts (``python bench/x.py``), which puts bench/ on ``sys.path``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


class Progress:
    """Counts done units of ``total`` and reports elapsed time and an ETA, throttled."""

    def __init__(self, label: str, total: int, unit: str = "items", every_s: float = 5.0, stream: TextIO | None = None):
        if total < 0:
            raise ValueError(f"Progress total must be >= 0, got {total}")
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self._last_print = self.started
        self._print(time.monotonic())  # announce the start: the first unit may take long

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the mean rate so far; None before the first unit is done."""
        if self.done == 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.done * (self.total - self.done)

    def advance(self, n: int = 1, note: str = "") -> None:
        """Mark ``n`` more units done; print if ``every_s`` passed since the last line, or when finished."""
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if self.done >= self.total or now - self._last_print >= self.every_s:
            self._print(now, note)

    def _print(self, now: float, note: str = "") -> None:
        self._last_print = now
        elapsed = format_seconds(now - self.started)
        if self.done >= self.total:
            tail = f"done in {elapsed}"
        else:
            eta = self.eta_s
            tail = f"{elapsed} elapsed, ETA {format_seconds(eta) if eta is not None else '?'}"
        extra = f" ({note})" if note else ""
        print(f"[{self.label}] {self.done}/{self.total} {self.unit}, {tail}{extra}", file=self.stream, flush=True)
