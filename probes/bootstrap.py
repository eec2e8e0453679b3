"""Bootstrap confidence intervals by grid, and the warning that a figure rests on too few samples.

Rows of one grid (its steps, its trajectories, its cells) are not independent, so intervals resample
whole grids with replacement (a cluster bootstrap) and recompute the statistic; the interval is the
2.5th–97.5th percentile of those replicates. A figure whose held-out grids or rows are below
:data:`MIN_GROUPS` / :data:`MIN_ROWS` carries a warning: it is printed, never read as a finding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

MIN_GROUPS = 5
"""Fewer held-out grids than this and a figure is flagged: one odd grid can move it anywhere."""
MIN_ROWS = 30
"""Fewer held-out rows than this and a figure is flagged."""
N_BOOT = 500
"""Bootstrap replicates per interval (enough for a 95 % percentile interval to settle to ~0.01)."""


class Interval(BaseModel):
    """A 95 % bootstrap interval of one figure, resampling grids."""

    low: float | None
    """2.5th percentile of the replicates (None when fewer than 2 groups: no interval exists)."""
    high: float | None
    """97.5th percentile of the replicates."""
    n_groups: int
    """Distinct grids the figure rests on."""
    n_rows: int
    """Rows (steps, cells, trajectories) the figure rests on."""
    warning: str | None = None
    """Set when the figure rests on too few grids or rows to mean anything."""


def too_few(n_groups: int, n_rows: int) -> str | None:
    """The warning for a figure on ``n_groups`` grids and ``n_rows`` rows, or None when enough."""
    if n_groups < MIN_GROUPS or n_rows < MIN_ROWS:
        return (
            f"too few samples ({n_groups} grids, {n_rows} rows; want >= {MIN_GROUPS} grids and >= {MIN_ROWS} rows): "
            "not a finding"
        )
    return None


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    groups: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Interval:
    """95 % interval of ``statistic(rows)`` over grid-level resamples of the rows.

    ``statistic`` gets an index array into the rows (rows of a grid drawn twice appear twice) and
    returns a float; replicates where it is undefined (NaN, e.g. R² of one constant target) are dropped.
    """
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    n_rows = int(groups.size)
    warning = too_few(int(uniq.size), n_rows)
    if uniq.size < 2:
        return Interval(low=None, high=None, n_groups=int(uniq.size), n_rows=n_rows, warning=warning)
    members = [np.nonzero(inverse == g)[0] for g in range(uniq.size)]
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        pick = rng.integers(uniq.size, size=uniq.size)
        rows = np.concatenate([members[int(p)] for p in pick])
        v = statistic(rows)
        if np.isfinite(v):
            reps.append(v)
    if not reps:
        return Interval(low=None, high=None, n_groups=int(uniq.size), n_rows=n_rows, warning=warning)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return Interval(low=float(lo), high=float(hi), n_groups=int(uniq.size), n_rows=n_rows, warning=warning)


def mean_interval(values: np.ndarray, groups: np.ndarray, *, seed: int = 0) -> tuple[float, Interval]:
    """The mean of ``values`` and its grid-bootstrap interval."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else float("nan")
    return mean, bootstrap_interval(lambda rows: float(values[rows].mean()), groups, seed=seed)
