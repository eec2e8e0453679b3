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


def test_a_policy_name_must_be_a_string() -> None:
    """``None`` is not the ``none`` policy (``str(None).lower()`` used to make it one)."""
    with pytest.raises(ValueError, match="retention=None is not a policy name: use one of none, session"):
        make_policy(None)  # type: ignore[arg-type]
    assert make_policy("SESSION").name.value == "session"


@pytest.mark.parametrize(
    ("option", "value"), [("prior_median_s", math.nan), ("prior_sigma", -1.0), ("ttl_z", math.inf)]
)
def test_the_estimator_refuses_non_finite_priors(option, value) -> None:
    with pytest.raises(ValueError, match=f"ToolDurationEstimator.{option}={value!r} must be a finite number"):
        ToolDurationEstimator(**{option: value})


async def test_non_finite_metrics_are_dropped_and_the_ingest_rate_never_becomes_nan() -> None:
    """A ``+Inf`` counter in /metrics (valid Prometheus) used to make the server's ingest rate inf, then
    NaN for good (inf - inf), and adaptive's cost model with it."""
    from interleaf.runtime.client import BackendPool, ServerInfo, ServerMetrics, parse_prometheus

    text = "sglang:prompt_tokens_total +Inf\nsglang:cached_tokens_total NaN\nsglang:x -Inf\nsglang:y 3\n"
    assert parse_prometheus(text) == {"sglang:y": 3.0}

    def scrape(prompt: float, at: float) -> ServerMetrics:
        return ServerMetrics({"sglang:prompt_tokens_total": prompt, "sglang:generation_tokens_total": 0.0}, at=at)

    class _Server:
        url = "http://a"
        info = ServerInfo(url=url, max_total_num_tokens=10_000, metrics=True)

        def __init__(self) -> None:
            # A counter that overflowed to inf between finite ones (as if past the parser).
            self.scrapes = [
                scrape(100, 0.0),
                scrape(200, 1.0),
                scrape(math.inf, 2.0),
                scrape(300, 3.0),
                scrape(400, 4.0),
            ]

        async def health(self) -> bool:
            return True

        async def metrics(self) -> ServerMetrics:
            return self.scrapes.pop(0)

        async def aclose(self) -> None:
            return None

    server = _Server()
    pool = BackendPool([server], retention="adaptive", tokenizer=None)  # type: ignore[list-item]
    for _ in range(5):
        await pool._check(server.url)  # what the health loop does every second
    rate = pool.pressure(server.url).ingest_tokens_per_s
    assert math.isfinite(rate) and 50.0 <= rate <= 100.0  # the inf scrape skipped: 100 tok/s, then 50, then 100
    decision = make_policy("adaptive").decide(_ctx(1000, 5.0, used=0.5, reclaimable=5000, rate=rate))
    assert math.isfinite(decision.value)
    await pool.aclose()
