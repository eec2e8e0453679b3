"""Behavioural metrics of PAPERS.md §C, as the authors compute them.

Per grid, over its trajectories: action accuracy (mean over trajectories of the fraction of steps
whose action is in π*(s)), goal success, SPL = mean 1_S·L*/max(L*, L), mean entropy of the
empirical action distribution per visited state (pooled over the grid's trajectories), mean JSD
between that distribution and the uniform distribution over π*(s) (states where π* is empty are
skipped), and ECE with 10 equal-width bins (confidence = the most frequent action's share, correct
= that action is optimal). Entropy and JSD are in bits, so JSD lies in [0, 1] and the entropy of
four equally likely actions is 2.

[ours] The authors' ECE bins are half-open ``[lo, hi)``, which drops confidence 1.0 (the commonest
value when trajectories agree); here the last bin is closed so every state counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel
from scipy.stats import wilcoxon

from interleaf.probes.gridworld import ACTIONS, Action, GridState
from interleaf.probes.policy import OptimalPolicy


@dataclass
class Episode:
    """One trajectory as the metrics see it: the state before each action, and the actions."""

    states: list[GridState]
    actions: list[Action]
    success: bool
    final_state: GridState | None = None

    def __post_init__(self) -> None:
        if len(self.states) != len(self.actions):
            raise ValueError(
                f"states/actions: {len(self.states)} states but {len(self.actions)} actions; one state per action"
            )

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def picked_up_key(self) -> bool:
        last = [self.final_state] if self.final_state is not None else []
        return any(s.has_key for s in [*self.states, *last])


def action_accuracy(episode: Episode, policy: OptimalPolicy) -> float:
    """Mean of 1[a_t ∈ π*(s_t)] over the episode's steps (0 for an empty episode)."""
    if not episode.actions:
        return 0.0
    hits = sum(a in policy.optimal_actions(s) for s, a in zip(episode.states, episode.actions, strict=True))
    return hits / len(episode.actions)


def spl(episodes: Sequence[Episode], optimal_length: int) -> float:
    """Success weighted by path length: mean of 1_S·L*/max(L*, L)."""
    if not episodes or optimal_length <= 0:
        return 0.0
    return sum(optimal_length / max(optimal_length, e.length) for e in episodes if e.success) / len(episodes)


def action_counts(episodes: Sequence[Episode]) -> dict[GridState, Counter[Action]]:
    """Actions taken in each visited state, pooled over the episodes."""
    counts: dict[GridState, Counter[Action]] = {}
    for e in episodes:
        for s, a in zip(e.states, e.actions, strict=True):
            counts.setdefault(s, Counter())[Action(a)] += 1
    return counts


def distribution(counts: Counter[Action]) -> np.ndarray:
    """Empirical distribution over ACTIONS order from counts."""
    total = sum(counts.values())
    if total == 0:
        raise ValueError("counts: empty; a distribution needs at least one action")
    return np.array([counts.get(a, 0) / total for a in ACTIONS], dtype=float)


def entropy_bits(p: np.ndarray) -> float:
    """Shannon entropy in bits."""
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum()) + 0.0


def jsd_bits(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in bits, in [0, 1]."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return min(1.0, max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def uniform_over(actions: frozenset[Action]) -> np.ndarray:
    """The uniform distribution over a non-empty action set, in ACTIONS order."""
    if not actions:
        raise ValueError("actions: empty optimal set; JSD is undefined there (the goal or an unreachable state)")
    return np.array([1.0 / len(actions) if a in actions else 0.0 for a in ACTIONS])


def ece(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """Expected calibration error Σ_b |B|/n · |acc(B) − conf(B)| with equal-width bins on [0, 1]."""
    conf = np.asarray(confidences, dtype=float)
    acc = np.asarray(correct, dtype=float)
    if conf.shape != acc.shape:
        raise ValueError(f"confidences/correct: lengths {conf.size} and {acc.size} differ")
    if conf.size == 0:
        return 0.0
    if n_bins < 1:
        raise ValueError(f"n_bins: {n_bins}; use at least 1")
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(acc[sel].mean() - conf[sel].mean())
    return float(total)


class GridMetrics(BaseModel):
    """The behavioural metrics of one grid over its trajectories."""

    grid_id: str
    """The grid's id in the study."""
    size: int
    """Grid side N (walls included)."""
    density: float | None
    """Wall density d (None for TwoPathKey, whose layout is a fixed loop)."""
    variant: str
    """plain, keydoor, keynodoor or twopathkey."""
    transform: str
    """'base' or the transform applied to the base grid."""
    optimal_length: int
    """L*, the BFS shortest path length from the start."""
    n_trajectories: int
    """How many trajectories were pooled."""
    action_accuracy: float
    """Mean over trajectories of the fraction of actions in π*(s)."""
    success: float
    """Fraction of trajectories that reached the goal within the step cap."""
    spl: float
    """Success weighted by path length."""
    mean_entropy: float
    """Mean entropy (bits) of the empirical action distribution over visited states."""
    mean_jsd: float
    """Mean JSD (bits) between the empirical distribution and uniform-over-π*(s)."""
    ece: float
    """Expected calibration error of the most frequent action per visited state, 10 bins."""
    key_pickup: float | None
    """Fraction of trajectories that picked up the key (key variants only)."""
    mean_length: float
    """Mean number of steps taken."""


def grid_metrics(
    episodes: Sequence[Episode],
    policy: OptimalPolicy,
    *,
    grid_id: str,
    transform: str = "base",
    n_bins: int = 10,
) -> GridMetrics:
    """All behavioural metrics of one grid."""
    if not episodes:
        raise ValueError(f"episodes: none for grid {grid_id}; run at least one trajectory")
    counts = action_counts(episodes)
    entropies, jsds, confs, oks = [], [], [], []
    for state, c in counts.items():
        p = distribution(c)
        entropies.append(entropy_bits(p))
        opt = policy.optimal_actions(state)
        if opt:
            jsds.append(jsd_bits(p, uniform_over(opt)))
        best = ACTIONS[int(np.argmax(p))]
        confs.append(float(p.max()))
        oks.append(best in opt)
    grid = policy.grid
    has_key = grid.key is not None
    return GridMetrics(
        grid_id=grid_id,
        size=grid.size,
        density=grid.meta.get("density"),  # type: ignore[arg-type]
        variant=grid.variant.value,
        transform=transform,
        optimal_length=policy.optimal_length,
        n_trajectories=len(episodes),
        action_accuracy=float(np.mean([action_accuracy(e, policy) for e in episodes])),
        success=float(np.mean([e.success for e in episodes])),
        spl=spl(episodes, policy.optimal_length),
        mean_entropy=float(np.mean(entropies)) if entropies else 0.0,
        mean_jsd=float(np.mean(jsds)) if jsds else 0.0,
        ece=ece(confs, oks, n_bins),
        key_pickup=float(np.mean([e.picked_up_key for e in episodes])) if has_key else None,
        mean_length=float(np.mean([e.length for e in episodes])),
    )


class PairedTest(BaseModel):
    """A Wilcoxon signed-rank test of one metric between base grids and their transforms."""

    metric: str
    """Which GridMetrics field was compared."""
    transform: str
    """The transform applied to each base grid."""
    n_pairs: int
    """Number of (base, transformed) grid pairs."""
    mean_base: float
    """Mean of the metric over the base grids."""
    mean_transformed: float
    """Mean of the metric over the transformed grids."""
    statistic: float | None
    """Wilcoxon W; None when every difference is zero or fewer than 2 pairs."""
    p_value: float | None
    """Two-sided p-value; None when the test is undefined (see statistic)."""


def paired_test(base: Sequence[float], transformed: Sequence[float], *, metric: str, transform: str) -> PairedTest:
    """Wilcoxon signed-rank test on paired per-grid values (zero differences dropped, 'wilcox')."""
    if len(base) != len(transformed):
        raise ValueError(f"base/transformed: {len(base)} vs {len(transformed)} values; pair them one to one")
    diffs = np.asarray(transformed, dtype=float) - np.asarray(base, dtype=float)
    stat: float | None = None
    p: float | None = None
    if len(diffs) >= 2 and np.any(diffs != 0):
        res = wilcoxon(diffs, zero_method="wilcox")
        stat = float(res.statistic)
        p = None if math.isnan(res.pvalue) else float(res.pvalue)
    return PairedTest(
        metric=metric,
        transform=transform,
        n_pairs=len(diffs),
        mean_base=float(np.mean(base)) if len(base) else 0.0,
        mean_transformed=float(np.mean(transformed)) if len(transformed) else 0.0,
        statistic=stat,
        p_value=p,
    )
