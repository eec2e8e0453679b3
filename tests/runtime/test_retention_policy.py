"""Retention policy logic: the tool-duration estimate and adaptive's cost model (no server)."""

from __future__ import annotations

import math

import pytest

from interleaf.runtime.client.retention import (
    PauseContext,
    ServerPressure,
    ToolDurationEstimator,
    hold_cost_pte,
    make_policy,
    recompute_cost_pte,
)


def _ctx(tokens: int, pause_s: float, *, used: float, reclaimable: float, rate: float, cap: int = 10_000):
    pressure = ServerPressure(cap, used, reclaimable, rate)
    return PauseContext(tokens, ("search",), pause_s, pause_s * 2, pressure)


def test_estimator_learns_per_tool_and_falls_back_to_pooled() -> None:
    est = ToolDurationEstimator(prior_median_s=2.0, prior_sigma=1.0)
    assert est.expected_s(["never_seen"]) == pytest.approx(2.0 * math.exp(0.5))
    for d in (0.9, 1.0, 1.1, 1.0):
        est.observe(["fast"], d)
    for d in (9.0, 11.0, 10.0):
        est.observe(["slow"], d)
    assert est.expected_s(["fast"]) == pytest.approx(1.0, rel=0.05)
    assert est.expected_s(["slow"]) == pytest.approx(10.0, rel=0.05)
    # Two tools in one pause: the sum; TTL (upper quantile) is above the median.
    assert est.expected_s(["fast", "slow"]) == pytest.approx(11.0, rel=0.05)
    assert est.ttl_s(["slow"]) > 10.0
    # Unknown tools use what all tools did, not the prior any more.
    assert 1.0 < est.expected_s(["other"]) < 10.0
    assert est.observations("fast") == 4


def test_idle_server_releases_busy_server_holds_short_pauses() -> None:
    adaptive = make_policy("adaptive")
    idle = _ctx(2000, 2.0, used=0.1, reclaimable=9000, rate=0.0)
    assert recompute_cost_pte(idle) == 0.0
    assert not adaptive.decide(idle).hold
    busy_short = _ctx(2000, 2.0, used=0.9, reclaimable=1000, rate=500.0)
    d = adaptive.decide(busy_short)
    assert d.hold and d.value > 0 and "PTE" in d.reason
    # A very long pause under high pressure: holding costs more than the recompute it saves.
    busy_long = _ctx(2000, 600.0, used=0.95, reclaimable=1000, rate=500.0)
    assert hold_cost_pte(busy_long) > recompute_cost_pte(busy_long)
    assert not adaptive.decide(busy_long).hold


def test_recompute_cost_grows_with_pause_and_is_bounded_by_context() -> None:
    costs = [recompute_cost_pte(_ctx(1000, t, used=0.5, reclaimable=4000, rate=400.0)) for t in (1, 5, 30, 1e4)]
    assert costs == sorted(costs)
    assert costs[-1] == pytest.approx(1000.0)


def test_fixed_policies_and_bad_name() -> None:
    ctx = _ctx(500, 3.0, used=0.5, reclaimable=1000, rate=100.0)
    assert not make_policy("none").uses_sessions
    assert make_policy("session").decide(ctx).hold
    ttl = make_policy("TTL").decide(ctx)
    assert ttl.hold and ttl.ttl_s == ctx.ttl_s
    with pytest.raises(ValueError, match="retention='lru' is not a policy: use one of none, session"):
        make_policy("lru")
