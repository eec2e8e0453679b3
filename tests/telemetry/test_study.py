"""The PTE-latency study: the analysis (pure), the load generator's protocol logic, and a real-engine run."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from interleaf.pte_study import StudyConfig, _interval_overlap_batch, run_study
from interleaf.telemetry import MODEL_PROFILES, HardwareProfile, gamma, load_trajectories, step_weight_pte
from interleaf.telemetry.records import CacheFigures, TerminationReason, Trajectory, Turn, TurnTimings
from interleaf.telemetry.study import pte_latency_study

SMOL = MODEL_PROFILES["SmolLM2-135M-Instruct"].model_copy(update={"dtype_bytes": 4})
CPU = HardwareProfile(name="cpu-test", peak_flops=100e9, mem_bw_bytes_per_s=26e9, measured=True, dtype="fp32")


def synthetic(latency_of) -> list[Trajectory]:
    rng = np.random.default_rng(1)
    trajs = []
    for k in range(8):
        turns, context = [], 0
        for i in range(int(rng.integers(2, 5))):
            new = int(rng.integers(20, 300))
            prompt = context + new
            cached = context if k % 2 == 0 else 0
            completion = int(rng.integers(4, 40))
            batch = float(rng.integers(1, 5))
            lat = latency_of(prompt, prompt - cached, completion, batch)
            turns.append(
                Turn(
                    index=i,
                    delta_ids=[1] * new,
                    completion_ids=[2] * completion,
                    cache=CacheFigures(
                        prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion, batch_size=batch
                    ),
                    timings=TurnTimings(e2e_s=lat),
                )
            )
            context = prompt + completion
        trajs.append(Trajectory(id=f"s{k}", model=SMOL.name, turns=turns))
    return trajs


def test_latency_proportional_to_measured_plus_gives_r_one() -> None:
    g, w = gamma(SMOL, CPU), step_weight_pte(SMOL, CPU)
    trajs = synthetic(lambda p, prefill, d, b: 1e-3 * (prefill + g * p * d + w * d / b))
    res = pte_latency_study(trajs, SMOL, CPU)
    by = {(c.proxy, c.level): c for c in res.correlations}
    assert by[("measured_plus", "turn")].pearson_r == pytest.approx(1.0)
    assert by[("measured_plus", "trajectory")].spearman_rho == pytest.approx(1.0)
    assert by[("evict_all", "turn")].pearson_r < 0.999
    assert {c.proxy for c in res.correlations} == {
        "evict_all",
        "measured",
        "perfect_reuse",
        "pte_plus",
        "measured_plus",
        "naive_tokens",
        "cache_aware_tokens",
        "price_1:1.5",
        "price_1:3",
        "price_1:4",
        "output_tokens",
    }
    assert res.turns == sum(len(t.turns) for t in trajs) and res.trajectories == 8
    assert "| measured_plus | +1.000 [+1.00, +1.00] |" in res.table()


def test_latency_fit_recovers_cost_constants() -> None:
    trajs = synthetic(lambda p, prefill, d, b: 0.05 + 0.002 * prefill + 0.08 * d + 1e-6 * p * d)
    fit = pte_latency_study(trajs, SMOL, CPU).fit
    assert fit is not None and fit.r2 == pytest.approx(1.0)
    assert fit.c_prefill_s == pytest.approx(0.002, rel=1e-6)
    assert fit.decode_token_pte == pytest.approx(40.0, rel=1e-6)
    assert fit.gamma_empirical == pytest.approx(5e-4, rel=1e-5)


def test_decode_share_is_the_decode_terms_part_of_pte() -> None:
    trajs = synthetic(lambda *a: 1.0)
    res = pte_latency_study(trajs, SMOL, CPU)
    g, w = gamma(SMOL, CPU), step_weight_pte(SMOL, CPU)
    cache = [t.cache for tr in trajs for t in tr.turns]
    kv = sum(g * c.prompt_tokens * c.completion_tokens for c in cache)
    weights = sum(w * c.completion_tokens / c.batch_size for c in cache)
    prompt = sum(c.prompt_tokens for c in cache)
    share = res.decode_share["all"]
    assert share["evict_all"] == pytest.approx(kv / (prompt + kv))
    assert share["pte_plus"] == pytest.approx((kv + weights) / (prompt + kv + weights))
    assert share["measured"] > share["evict_all"]  # same decode work over a smaller prefill
    assert "decode terms' share of PTE: evict_all " in res.table()


def test_price_proxy_and_constant_series() -> None:
    trajs = synthetic(lambda p, prefill, d, b: p + 3 * d)
    by = {(c.proxy, c.level): c for c in pte_latency_study(trajs, SMOL, CPU).correlations}
    assert by[("price_1:3", "turn")].pearson_r == pytest.approx(1.0)
    flat = synthetic(lambda *a: 0.5)
    c = next(c for c in pte_latency_study(flat, SMOL, CPU).correlations if c.proxy == "evict_all")
    assert c.pearson_r is None and c.spearman_rho is None


def test_interval_overlap_batch_estimate() -> None:
    assert _interval_overlap_batch([(0, 1), (0, 1)]) == [2.0, 2.0]
    assert _interval_overlap_batch([(0, 1), (1, 2)]) == [1.0, 1.0]
    assert _interval_overlap_batch([(0, 2), (1, 2)]) == [1.5, 2.0]


def fake_engine(requests: list[dict], *, fail_call: int | None = None) -> httpx.MockTransport:
    """An in-process fake of the engine's /generate and session endpoints (request logic only);
    the ``fail_call``-th /generate (1-based) answers 503."""
    state = {"n": 0, "sessions": {}}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/model_info":
            return httpx.Response(200, json={"served_model_name": "SmolLM2-135M-Instruct"})
        if path == "/server_info":
            return httpx.Response(
                200, json={"enable_streaming_session": True, "internal_states": [{"max_total_num_tokens": 20000}]}
            )
        body = json.loads(request.content or b"{}")
        requests.append({"path": path, **body})
        if path == "/open_session":
            return httpx.Response(200, json="sid-1")
        if path == "/close_session":
            return httpx.Response(200, json=True)
        state["n"] += 1
        if state["n"] == fail_call:
            return httpx.Response(503, text="overloaded")
        n_out = body["sampling_params"]["max_new_tokens"]
        sp = body.get("session_params")
        prompt = len(body["input_ids"]) + (state["sessions"].get(sp["id"], 0) if sp and sp.get("rid") else 0)
        if sp:
            state["sessions"][sp["id"]] = prompt + n_out
        meta = {
            "id": f"r{state['n']}",
            "prompt_tokens": prompt,
            "completion_tokens": n_out,
            "cached_tokens": prompt - len(body["input_ids"]),
            "e2e_latency": 0.01 * prompt,
            "finish_reason": {"type": "length"},
            "batch_size": 1.0,
        }
        return httpx.Response(200, json={"text": "", "output_ids": [5] * n_out, "meta_info": meta})

    return httpx.MockTransport(handler)


async def test_runner_speaks_the_session_protocol() -> None:
    """Request logic only, against an in-process fake of /generate (the real engine test is below)."""
    requests: list[dict] = []
    cfg = StudyConfig(engine_url="http://127.0.0.1:9", trajectories=3, concurrency=1, turns=(3, 3), arms=["session"])
    trajs = await run_study(cfg, transport=fake_engine(requests))
    assert len(trajs) == 3 and all(len(t.turns) == 3 for t in trajs)
    gens = [r for r in requests if r["path"] == "/generate"]
    assert gens[0]["session_params"] == {"id": "sid-1"}
    assert gens[1]["session_params"] == {"id": "sid-1", "rid": "r1"}
    # Later turns send only the new tokens; the engine-reported context grows by prompt + completion.
    t = trajs[0]
    assert len(gens[1]["input_ids"]) == len(t.turns[1].delta_ids)
    assert t.turns[1].cache.cached_tokens == t.turns[0].cache.prompt_tokens + t.turns[0].cache.completion_tokens
    assert sum(r["path"] == "/close_session" for r in requests) == 3


async def test_runner_keeps_calls_inside_the_context_window() -> None:
    """The decode shape runs up to the model's window: a call that would not fit ends its trajectory."""
    requests: list[dict] = []
    cfg = StudyConfig(
        engine_url="http://127.0.0.1:9",
        trajectories=6,
        concurrency=2,
        turns=(3, 3),
        prompt_tokens=(100, 400),
        tool_tokens=(50, 300),
        completion_tokens=(100, 300),
        arms=["radix", "evict"],
        max_context=1000,
    )
    trajs = await run_study(cfg, transport=fake_engine(requests))
    gens = [r for r in requests if r["path"] == "/generate"]
    assert all(len(r["input_ids"]) + r["sampling_params"]["max_new_tokens"] <= 1000 for r in gens)
    lengths = [len(t.turns) for t in trajs]
    assert min(lengths) < 3 and len(gens) == sum(lengths)  # some were cut short, none lost
    assert all(t.termination == TerminationReason.MAX_TOKENS for t in trajs if len(t.turns) < 3)
    # Without the window every trajectory runs its three calls, and some exceed 1,000 tokens.
    unbounded = await run_study(cfg.model_copy(update={"max_context": None}), transport=fake_engine([]))
    assert all(len(t.turns) == 3 for t in unbounded)


async def test_a_failed_call_ends_its_trajectory_and_keeps_the_run() -> None:
    """A timeout or 503 on a saturated machine costs one trajectory's remaining calls, not the run."""
    cfg = StudyConfig(engine_url="http://127.0.0.1:9", trajectories=2, concurrency=1, turns=(3, 3), arms=["radix"])
    first, second = await run_study(cfg, transport=fake_engine([], fail_call=2))
    assert len(first.turns) == 1 and first.termination == TerminationReason.BACKEND_ERROR
    assert first.error is not None and "overloaded" in first.error
    assert len(second.turns) == 3 and second.termination == TerminationReason.ANSWERED


async def test_runner_starts_nothing_after_the_time_budget() -> None:
    """``time_budget_s``: trajectories not started by then are skipped, those in flight finish."""
    requests: list[dict] = []
    cfg = StudyConfig(engine_url="http://127.0.0.1:9", trajectories=5, concurrency=1, turns=(2, 2), time_budget_s=1e-9)
    # Connecting alone takes longer than 1 ns: nothing starts.
    assert await run_study(cfg, transport=fake_engine(requests)) == []
    assert not any(r["path"] == "/generate" for r in requests)
    full = await run_study(cfg.model_copy(update={"time_budget_s": 3600.0}), transport=fake_engine([]))
    assert len(full) == 5


@pytest.mark.model
@pytest.mark.slow
async def test_study_on_the_embedded_engine(engine_url) -> None:
    cfg = StudyConfig(
        engine_url=engine_url,
        trajectories=6,
        concurrency=3,
        turns=(2, 3),
        prompt_tokens=(16, 96),
        tool_tokens=(8, 48),
        completion_tokens=(2, 8),
    )
    trajs = await run_study(cfg)
    assert len(trajs) == 6
    for t in trajs:
        for turn in t.turns:
            assert turn.cache.completion_tokens == len(turn.completion_ids) > 0
            assert turn.timings.e2e_s > 0
    session = [t for t in trajs if t.metadata["arm"] == "session"]
    evict = [t for t in trajs if t.metadata["arm"] == "evict"]
    s1 = session[0].turns[1].cache
    assert s1.cached_tokens >= session[0].turns[0].cache.prompt_tokens  # KV held across the turn
    assert evict[0].turns[1].cache.cached_tokens == 0  # first token changed: nothing reusable
    res = pte_latency_study(trajs, SMOL, CPU)
    assert res.turns == sum(len(t.turns) for t in trajs)


# The documented study (docs/pte.md): recorded trajectories and the hardware profile measured then.
DATA = Path(__file__).with_name("data")
CPU_THEN = HardwareProfile(
    name="cpu-2core-fp32", peak_flops=39838473064.25, mem_bw_bytes_per_s=19151888591.23, measured=True, dtype="fp32"
)


def test_documented_study_reproduces_from_recorded_runs() -> None:
    c1 = pte_latency_study(load_trajectories(DATA / "pte_latency_c1.jsonl.gz"), SMOL, CPU_THEN)
    by = {(c.proxy, c.level): c.pearson_r for c in c1.correlations}
    assert (c1.trajectories, c1.turns) == (18, 65)
    assert by[("measured", "turn")] == pytest.approx(0.848, abs=1e-3)
    assert by[("measured_plus", "trajectory")] == pytest.approx(0.951, abs=1e-3)
    # The doc's claims are the ones the paired bootstrap intervals support, and no more.
    verdict = {(c.proxy, c.baseline, c.level, c.arm): c.verdict for c in c1.comparisons}
    for level in ("turn", "trajectory"):
        assert verdict[("measured", "naive_tokens", level, "all")] == "higher"
        # ... but not above a token count that knows the cache: the decode term adds nothing here.
        assert verdict[("measured", "cache_aware_tokens", level, "all")] != "higher"
        assert verdict[("measured_plus", "cache_aware_tokens", level, "all")] == "not separated"
    # Where the paper's assumption holds (evict arm, 26 calls), its PTE ties naive tokens; its 6
    # trajectories are too few for any verdict.
    assert verdict[("evict_all", "naive_tokens", "turn", "evict")] == "not separated"
    assert verdict[("evict_all", "naive_tokens", "trajectory", "evict")] == "n/a (n < 10)"
    assert c1.arms["evict"][0].pearson_ci is not None
    # Why these runs cannot test the decode term: γ·L·D is under 1 % of the paper's PTE.
    assert c1.decode_share["all"]["evict_all"] < 0.01
    c4 = pte_latency_study(load_trajectories(DATA / "pte_latency_c4.jsonl.gz"), SMOL, CPU_THEN)
    by4 = {(c.proxy, c.level): c.pearson_r for c in c4.correlations}
    assert c4.turns == 128 and by4[("output_tokens", "turn")] == pytest.approx(0.700, abs=1e-3)
    assert max(by4[(v, "turn")] for v in ("evict_all", "measured", "pte_plus", "measured_plus")) < 0.1


CPU_DECODE = HardwareProfile(
    name="cpu-2core-fp32",
    peak_flops=82437678967.06018,
    mem_bw_bytes_per_s=41890996997.883896,
    measured=True,
    dtype="fp32",
)


def test_decode_arms_reproduce_from_recorded_runs() -> None:
    """docs/pte.md "Decode-heavy arms": the verdicts it states, re-derived from the recorded runs."""

    def verdicts(name: str, shape: tuple[int, int]) -> dict[tuple[str, str, str, str], str]:
        result = pte_latency_study(load_trajectories(DATA / name), SMOL, CPU_DECODE)
        assert (result.trajectories, result.turns) == shape
        # These arms exercise the decode term: ~16-17 % of the paper's PTE (under 1 % in Runs A and B).
        assert result.decode_share["all"]["evict_all"] > 0.15
        return {(c.proxy, c.baseline, c.level, c.arm): c.verdict for c in result.comparisons}

    c1 = verdicts("pte_latency_decode_c1.jsonl.gz", (11, 29))
    assert c1[("measured", "naive_tokens", "turn", "all")] == "higher"
    assert c1[("measured", "cache_aware_tokens", "turn", "all")] == "higher"
    assert c1[("evict_all", "cache_aware_tokens", "turn", "all")] == "not separated"
    # The c = 1 evict arm has 7 calls: below the 10 a verdict needs.
    assert c1[("evict_all", "naive_tokens", "turn", "evict")] == "n/a (n < 10)"
    assert c1[("pte_plus", "naive_tokens", "turn", "evict")] == "n/a (n < 10)"
    c4 = verdicts("pte_latency_decode_c4.jsonl.gz", (16, 35))
    assert c4[("measured", "naive_tokens", "turn", "all")] == "not separated"
    assert c4[("evict_all", "naive_tokens", "turn", "evict")] == "not separated"
    assert c4[("pte_plus", "naive_tokens", "turn", "evict")] == "higher"
    for run in (c1, c4):
        # With the per-step weight read (pte_plus / measured_plus), PTE beats the token counts.
        assert run[("measured_plus", "cache_aware_tokens", "turn", "all")] == "higher"


def test_verdicts_agree_with_the_printed_interval_and_need_ten_points() -> None:
    from interleaf.telemetry.study import MIN_VERDICT_POINTS, Comparison, StudyResult

    def comparison(n: int, ci: tuple[float, float]) -> Comparison:
        return Comparison(proxy="measured", baseline="naive_tokens", level="turn", arm="all", n=n,
                          difference=sum(ci) / 2, ci=ci)  # fmt: skip

    # An upper end of -0.0003 prints as -0.000: not below 0 as printed, so not "lower".
    assert comparison(40, (-0.15, -0.0003)).verdict == "not separated"
    assert comparison(40, (-0.15, -0.0006)).verdict == "lower"
    assert comparison(40, (0.0004, 0.2)).verdict == "not separated"
    assert comparison(40, (0.0006, 0.2)).verdict == "higher"
    assert comparison(MIN_VERDICT_POINTS - 1, (0.2, 0.5)).verdict == f"n/a (n < {MIN_VERDICT_POINTS})"
    result = StudyResult(model="m", hardware=CPU, gamma=0.1, step_weight=1.0, trajectories=1, turns=40,
                         mean_batch_size=1.0, comparisons=[comparison(40, (-0.15, -0.0003))])  # fmt: skip
    assert "| -0.075 [-0.150, -0.000] | not separated |" in result.table()
