"""What the dashboard's charts draw: a sample summarised as quantiles and a CDF, and per-server series
binned over a job's time (each bin's peak, or the last sample up to its end)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from interleaf.runtime.service.dashboard_models import Distribution

SERIES_POINTS = 400
"""Points per server series (each the peak within its time bin, so short peaks stay visible)."""


def distribution(values: Sequence[float | None]) -> Distribution:
    """``values`` (None and NaN left out) as a ``Distribution``: mean, quantiles, and a CDF of at most 200 points."""
    v = np.sort(np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64))
    if not len(v):
        return Distribution(n=0, mean=None, quantiles={}, cdf_x=[], cdf_y=[])
    pick = np.unique(np.linspace(0, len(v) - 1, min(len(v), 200)).round().astype(int))
    return Distribution(
        n=len(v),
        mean=float(v.mean()),
        quantiles={q: float(np.quantile(v, p)) for q, p in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("max", 1.0))},
        cdf_x=[float(x) for x in v[pick]],
        cdf_y=[float((i + 1) / len(v)) for i in pick],
    )


def sampled_series(points: list[tuple[float, float]], t0: float, t1: float) -> list[float | None]:
    """The last sampled value up to the end of each of ``SERIES_POINTS`` bins over [t0, t1] (None before
    the first sample)."""
    if not points or t1 <= t0:
        return []
    points = sorted(points)
    width = (t1 - t0) / SERIES_POINTS
    out: list[float | None] = []
    k, last = 0, None
    for b in range(SERIES_POINTS):
        edge = t0 + b * width
        while k < len(points) and points[k][0] <= edge + width:
            last = points[k][1]
            k += 1
        out.append(last)
    return out


def peak_series(intervals: list[tuple[float, float, float]], t0: float, t1: float) -> list[float]:
    """Peak of the summed intervals within each of ``SERIES_POINTS`` bins over [t0, t1]."""
    if not intervals or t1 <= t0:
        return [0.0] * SERIES_POINTS
    a = np.asarray(intervals, dtype=np.float64)
    times = np.concatenate([a[:, 0], a[:, 1]])
    deltas = np.concatenate([a[:, 2], -a[:, 2]])
    # Ends before starts at equal times: back-to-back intervals do not count twice.
    order = np.lexsort((deltas, times))
    times, level = times[order], np.cumsum(deltas[order])
    width = (t1 - t0) / SERIES_POINTS
    bins = np.clip(((times - t0) / width).astype(np.int64), 0, SERIES_POINTS - 1)
    out = np.zeros(SERIES_POINTS)
    np.maximum.at(out, bins, level)
    # A bin with no change keeps the level reached before it.
    last = 0.0
    starts = np.searchsorted(bins, np.arange(SERIES_POINTS), side="left")
    for b in range(SERIES_POINTS):
        if starts[b] > 0:
            last = float(level[starts[b] - 1])
        out[b] = max(out[b], last)
    return [float(x) for x in out]


__all__ = ["SERIES_POINTS", "distribution", "peak_series", "sampled_series"]
