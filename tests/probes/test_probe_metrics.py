"""Behavioural metrics on hand-computed trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest

from interleaf.probes import (
    Action,
    Episode,
    Grid,
    GridState,
    OptimalPolicy,
    action_accuracy,
    ece,
    entropy_bits,
    grid_metrics,
    jsd_bits,
    paired_test,
    spl,
)

U, D, L, R = Action.UP, Action.DOWN, Action.LEFT, Action.RIGHT


def corridor() -> Grid:
    """A 1×3 corridor inside a 5×5 grid: start (1,2), goal (3,2); L* = 2."""
    walls = np.ones((5, 5), dtype=bool)
    walls[2, 1:4] = False
    return Grid(walls, (1, 2), (3, 2))


def run(grid: Grid, actions: list[Action]) -> Episode:
    s = grid.initial_state()
    states = []
    for a in actions:
        states.append(s)
        s = grid.step(s, a)
    return Episode(states, actions, success=grid.is_goal(s), final_state=s)


def test_accuracy_success_spl_by_hand() -> None:
    grid = corridor()
    pol = OptimalPolicy.solve(grid)
    perfect = run(grid, [R, R])
    bumpy = run(grid, [U, R, L, R, R])  # U bumps (wrong), R ok, L wrong, R ok, R ok -> 3/5
    lost = run(grid, [L, L, L])  # never optimal, never arrives
    assert action_accuracy(perfect, pol) == 1.0
    assert action_accuracy(bumpy, pol) == pytest.approx(3 / 5)
    assert action_accuracy(lost, pol) == 0.0
    assert perfect.success and bumpy.success and not lost.success
    # SPL = (1·2/2 + 1·2/5 + 0) / 3
    assert spl([perfect, bumpy, lost], 2) == pytest.approx((1 + 0.4) / 3)
    assert spl([], 2) == 0.0


def test_entropy_and_jsd_edge_cases() -> None:
    assert entropy_bits(np.array([1.0, 0, 0, 0])) == 0.0
    assert entropy_bits(np.full(4, 0.25)) == pytest.approx(2.0)
    assert entropy_bits(np.array([0.5, 0.5, 0, 0])) == pytest.approx(1.0)
    p = np.array([1.0, 0, 0, 0])
    assert jsd_bits(p, p) == 0.0
    assert jsd_bits(p, np.array([0, 1.0, 0, 0])) == pytest.approx(1.0)  # disjoint supports: the maximum
    # JSD([1,0], [.5,.5]) = 0.5·KL(p||m) + 0.5·KL(q||m), m = [.75,.25]
    q = np.array([0.5, 0.5, 0, 0])
    want = 0.5 * math.log2(1 / 0.75) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25))
    assert jsd_bits(p, q) == pytest.approx(want)
    assert jsd_bits(p, q) == pytest.approx(jsd_bits(q, p))


def test_ece_by_hand_and_edges() -> None:
    assert ece([], []) == 0.0
    assert ece([1.0, 1.0], [True, True]) == 0.0  # confidence 1.0 counts (closed last bin)
    assert ece([1.0, 1.0], [False, False]) == pytest.approx(1.0)
    # bins: 0.25 -> bin 2 (acc 1): |1-.25|; 0.95 and 0.9 -> bin 9: acc .5, conf .925
    got = ece([0.25, 0.95, 0.9], [True, True, False])
    assert got == pytest.approx((1 / 3) * 0.75 + (2 / 3) * abs(0.5 - 0.925))
    with pytest.raises(ValueError, match="lengths"):
        ece([0.5], [])


def test_grid_metrics_pool_states_over_trajectories() -> None:
    grid = corridor()
    pol = OptimalPolicy.solve(grid)
    eps = [run(grid, [R, R]), run(grid, [R, R]), run(grid, [L, R, R]), run(grid, [U, R, R])]
    m = grid_metrics(eps, pol, grid_id="g0")
    # State (1,2) visited 6 times: R×2, L then R, U then R -> counts R4 L1 U1.
    # State (2,2) visited 4 times, always R.
    start = np.array([1 / 6, 0, 1 / 6, 4 / 6])  # ACTIONS order U, D, L, R
    h0 = entropy_bits(start)
    assert m.mean_entropy == pytest.approx((h0 + 0.0) / 2)
    opt = np.array([0, 0, 0, 1.0])
    assert m.mean_jsd == pytest.approx((jsd_bits(start, opt) + 0.0) / 2)
    # Most frequent action is optimal in both states: confidences 4/6 and 1.
    assert m.ece == pytest.approx(0.5 * (1 - 4 / 6) + 0.5 * 0)
    assert m.action_accuracy == pytest.approx((1 + 1 + 2 / 3 + 2 / 3) / 4)
    assert m.success == 1.0
    assert m.spl == pytest.approx((1 + 1 + 2 / 3 + 2 / 3) / 4)
    assert m.key_pickup is None and m.optimal_length == 2


def test_key_pickup_rate() -> None:
    walls = np.ones((5, 5), dtype=bool)
    walls[1:4, 1:4] = False
    grid = Grid(walls, (1, 1), (3, 3), key=(2, 1))
    pol = OptimalPolicy.solve(grid)
    via_key = run(grid, [R, R, D, D])
    around = run(grid, [D, D, R, R])
    m = grid_metrics([via_key, around], pol, grid_id="k")
    assert via_key.picked_up_key and not around.picked_up_key
    assert m.key_pickup == 0.5
    assert GridState(2, 1, has_key=True) in via_key.states


def test_paired_wilcoxon() -> None:
    same = paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], metric="action_accuracy", transform="rotate")
    assert same.statistic is None and same.p_value is None and same.n_pairs == 3
    worse = paired_test([0.9] * 8, [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.4, 0.2], metric="m", transform="reflect")
    assert worse.p_value is not None and worse.p_value < 0.01
    assert worse.mean_base == pytest.approx(0.9)
    with pytest.raises(ValueError, match="pair"):
        paired_test([1.0], [1.0, 2.0], metric="m", transform="t")
