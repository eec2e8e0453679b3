"""The virtual-time simulation: production engine and client classes on a discrete-event clock."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator

import pytest

from interleaf.runtime.client import BackendPool, EpisodeAdmission, KVBudget
from interleaf.runtime.client.retention import SessionRetention
from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.scheduler import Scheduler
from interleaf.runtime.engine.sim import RooflineCost
from interleaf.runtime.simulate import (
    PolicyResult,
    SimulationSetup,
    TraceTurn,
    run_virtual,
    sessions,
    simulate_policy,
)
from interleaf.runtime.simulate.server import SimulatedServer
from interleaf.runtime.tokenizer import ByteTokenizer

W = 0.01
"""Seconds per forward of the toy cost model: weight reads only (1 byte at 100 B/s), no compute, no overhead."""


def _toy_cost() -> RooflineCost:
    return RooflineCost(n_active_params=1, n_layers=1, n_heads=1, head_dim=1, kv_bytes_per_token=0.0,
                        weight_bytes=1.0, flops_per_s=1e30, bytes_per_s=1 / W, overhead_s=0.0)  # fmt: skip


async def _toy_run(
    n_agents: int, policy: str, *, host_request_s: float = 0.0, host_step_s: float = 0.0
) -> tuple[list[float], Scheduler, BackendPool]:
    """Agents of two turns: 300-token prompt, 5 tokens out; a 2 s tool; 40-token delta, 3 tokens out."""
    loop = asyncio.get_running_loop()
    config = EngineConfig(executor="sim", max_total_tokens=8192, chunked_prefill_size=2048)
    server = SimulatedServer("sim://toy", config, host_request_s=host_request_s, host_step_s=host_step_s)
    server.executor.cost = _toy_cost()
    pool = BackendPool([server], retention=policy, kv_budget_fraction=0.5, tokenizer=ByteTokenizer(), clock=loop.time)
    jct: list[float] = []

    async def agent(i: int) -> None:
        start = loop.time()
        async with pool.episode(f"a{i}", max_turns=2) as model:
            await model.generate(chr(97 + i) * 300, max_new_tokens=5, ignore_eos=True)
            await model.pause(["tool"])
            await asyncio.sleep(2.0)
            await model.generate("x" * 40, max_new_tokens=3, ignore_eos=True)
        jct.append(loop.time() - start)

    await asyncio.gather(*(agent(i) for i in range(n_agents)))
    await pool.aclose()
    await server.aclose()
    return jct, server.engine.scheduler, pool


@pytest.mark.parametrize("n_agents", [1, 3])
@pytest.mark.parametrize("policy", ["none", "session"])
def test_toy_jct_matches_the_hand_computation(n_agents, policy):
    # Every forward takes W. Turn 1: one prefill forward (first token) + 4 decode steps = 5 W; the tool
    # 2 s; turn 2: one prefill forward + 2 decode steps = 3 W. Agents arriving together are prefilled in
    # one padded forward and decoded in one batch, so each one's JCT is the single agent's: 8 W + 2 s.
    jct, _, _ = run_virtual(_toy_run(n_agents, policy))
    assert jct == pytest.approx([8 * W + 2.0] * n_agents, abs=1e-9)


def test_host_overhead_adds_to_the_hand_computation():
    # The 8 forwards run in 6 scheduler steps (a step prefills, then decodes what is running, the new request
    # included): turn 1 = prefill+decode, 3 decodes; turn 2 = prefill+decode, 1 decode. Each step also takes
    # the host's step time s; each of the 2 requests waits h on the host before the engine sees it:
    # JCT = 8 W + 6 s + 2 s of tool + 2 h.
    h, s = 0.003, 0.0005
    jct, _, _ = run_virtual(_toy_run(1, "session", host_request_s=h, host_step_s=s))
    assert jct == pytest.approx([8 * W + 6 * s + 2.0 + 2 * h], abs=1e-9)
    with pytest.raises(ValueError, match="host_request_s=-1"):
        SimulatedServer("sim://x", EngineConfig(executor="sim"), host_request_s=-1)


def test_the_simulation_runs_the_production_classes():
    _, scheduler, pool = run_virtual(_toy_run(2, "session"))
    assert type(scheduler) is Scheduler
    assert scheduler.stats.generation_tokens == 2 * (5 + 3)
    assert scheduler.stats.cached_tokens > 0  # turn 2 found turn 1's KV in the radix tree / session
    assert all(type(b) is KVBudget for b in pool.budgets.values())
    assert all(type(a) is EpisodeAdmission for a in pool.admissions.values())
    assert type(pool.policy) is SessionRetention
    assert pool.decisions["hold"] == 2


@pytest.mark.parametrize("priority_scheduling", [True, False])
def test_waiting_requests_are_admitted_by_priority_first_come_first_served_among_equals(priority_scheduling):
    from interleaf.runtime.engine.engine import Engine
    from interleaf.runtime.engine.protocol import GenerateIn, SamplingParamsIn

    # A 1,024-token pool holds one 600-token request at a time: the order they finish is the order the
    # scheduler admitted them. A session turn is sent with priority 1 (``SESSION_TURN_PRIORITY``).
    engine = Engine(
        EngineConfig(
            executor="sim", sim_clock="virtual", max_total_tokens=1024, enable_priority_scheduling=priority_scheduling
        )
    )
    scheduler = engine.scheduler
    priorities = {"a": 0, "b": 0, "c": 1, "d": None, "e": 1}
    reqs = []
    for rid, priority in priorities.items():
        body = GenerateIn(
            rid=rid, priority=priority, sampling_params=SamplingParamsIn(max_new_tokens=4, ignore_eos=True)
        )
        reqs.append(engine.build_request(body, None, [97 + len(reqs)] * 600))
        scheduler.submit(reqs[-1])
    scheduler.step()  # drains the inbox: "c" and "e" jump the queue, in their order, when priority counts
    expected = ["c", "e", "a", "b", "d"] if priority_scheduling else ["a", "b", "c", "d", "e"]
    assert [r.rid for r in [scheduler.prefilling, *scheduler.running, *scheduler.waiting] if r is not None] == expected
    while not scheduler.idle:
        scheduler.step()
    assert [r.rid for r in sorted(reqs, key=lambda r: r.finished_at)] == expected
    assert all(r.finish_reason == {"type": "length", "length": 4} for r in reqs)


def test_priority_scheduling_is_on_by_default_and_off_with_sglang_defaults():
    from interleaf.runtime.engine.__main__ import config_from_args

    assert config_from_args([]).enable_priority_scheduling
    assert not config_from_args(["--sglang-defaults"]).enable_priority_scheduling  # SGLang's default
    assert config_from_args(["--sglang-defaults", "--enable-priority-scheduling"]).enable_priority_scheduling


def test_turns_in_a_session_get_priority_only_while_the_server_is_oversubscribed(monkeypatch):
    from interleaf.runtime.client.failover import SESSION_TURN_PRIORITY

    seen: list[tuple[bool, int]] = []  # (in a session, priority) per request the engine received
    submit = Scheduler.submit

    def recording_submit(self: Scheduler, req) -> None:
        seen.append((req.session_id is not None, req.priority))
        submit(self, req)

    monkeypatch.setattr(Scheduler, "submit", recording_submit)
    # One agent: its 350-token context fits in the 8,192-token KV many times over: first come, first served.
    run_virtual(_toy_run(1, "session"))
    assert seen == [(True, 0), (True, 0)]
    # 30 agents: their second turns find 30 contexts of ~350 tokens open, more than the KV: turns inside
    # sessions go first; the deferred episodes' turns (no session) are sent without a priority.
    seen.clear()
    run_virtual(_toy_run(30, "session"))
    assert (True, SESSION_TURN_PRIORITY) in seen and (False, 0) in seen
    assert {p for in_session, p in seen if not in_session} == {0}


def test_policies_on_a_small_reference_workload():
    from interleaf.runtime.simulate import generate

    scripts = sessions(generate("reference", 12, seed=1, turns=3))
    setup = SimulationSetup(servers=2, token_block=4, chunked_prefill_size=512)
    results = {p: simulate_policy(scripts, p, setup) for p in ("none", "session", "oracle")}
    for r in results.values():
        assert r.failed == 0 and r.turns == 36
        assert r.makespan_s >= max(s.tool_time_s for s in scripts)
    assert results["oracle"].recomputed_tokens == 0
    assert results["session"].peak_held_tokens <= results["session"].budget_tokens
    # Nothing is recomputed either way at this size; holding sessions costs the oracle almost nothing.
    assert results["oracle"].jct_mean_s <= results["none"].jct_mean_s * 1.02


def test_admission_defers_rather_than_idles_the_gpu():
    # 8 reference agents on one server with KV for half their context: the server is mostly idle, so an
    # episode admission control cannot admit yet runs its turn without a session instead of waiting
    # (the 0.74x regression of admission control that always waits, `session-strict`).
    from interleaf.runtime.simulate import generate

    scripts = sessions(generate("reference", 8, seed=0))
    setup = SimulationSetup(servers=1, token_block=4, chunked_prefill_size=512)
    none, session, strict = (simulate_policy(scripts, p, setup) for p in ("none", "session", "session-strict"))
    assert strict.admission_waits > 0 and strict.jct_mean_s > none.jct_mean_s * 1.1
    assert session.decisions.get("deferred", 0) > 0
    assert session.jct_mean_s <= none.jct_mean_s * 1.02 and session.makespan_s <= none.makespan_s * 1.02


def test_simulated_metrics_are_the_engines_own():
    from interleaf.runtime.client.server_metrics import parse_prometheus

    async def run() -> tuple[dict[str, float], dict[str, float]]:
        server = SimulatedServer("sim://m", EngineConfig(executor="sim", max_total_tokens=4096))
        await server.generate(list(b"hello world"), sampling_params={"max_new_tokens": 3}, rid="r1")
        rendered = parse_prometheus(server.engine.metrics.render().decode())
        values = server.metric_values()
        await server.aclose()
        return rendered, values

    rendered, values = run_virtual(run())
    assert values["sglang:prompt_tokens_total"] == 11 and values["sglang:generation_tokens_total"] == 3
    assert values == {name: rendered[name] for name in values}


def test_trace_turn_defaults():
    turn = TraceTurn(input_length=3, output_length=1)
    assert turn.session_id is None and turn.hash_ids == [] and turn.block_tokens == 512


def test_capacity_plan_finds_the_fewest_servers_by_search():
    from interleaf.runtime.simulate import generate, plan_capacity

    scripts = sessions(generate("reference", 12, seed=2, turns=2))
    setup = SimulationSetup(token_block=8, chunked_prefill_size=512, kv_tokens=4096)
    probes = {s: simulate_policy(scripts, "none", setup.model_copy(update={"servers": s})) for s in (1, 2, 3, 4)}
    # A target between what 2 and 3 servers give: the answer is 3 (the JCT falls as servers are added).
    means = [probes[s].jct_mean_s for s in (1, 2, 3, 4)]
    assert means == sorted(means, reverse=True) and means[1] > means[2]
    target = (means[1] + means[2]) / 2
    plan = plan_capacity(scripts, "none", setup, target_s=target, max_servers=8)
    assert plan.servers == 3 and plan.simulated
    assert {p.servers for p in plan.probes} == {1, 2, 4, 3}  # doubled to 4, then bisected
    assert all(p.meets == (p.jct_s <= target) for p in plan.probes)


def test_a_server_is_crowded_when_its_open_contexts_exceed_its_kv_and_admitted_turns_keep_it_busy():
    async def run() -> list[bool]:
        server = SimulatedServer("sim://s", EngineConfig(executor="sim", max_total_tokens=4096))
        pool = BackendPool(
            [server], retention="session", tokenizer=ByteTokenizer(), clock=asyncio.get_running_loop().time
        )
        url, seen = server.url, []
        kv = server.info.max_total_num_tokens
        pool.held_request(url, +1)  # an admitted episode's turn runs for 30 s: busy
        await asyncio.sleep(30)
        pool.after_turn("a", url, context=kv // 2, turns_done=1, added=None)
        pool.after_turn("b", url, context=kv // 2, turns_done=1, added=None)
        seen.append(pool.crowded(url))  # busy, but every open context fits the KV: not crowded
        pool.after_turn("c", url, context=100, turns_done=1, added=None)
        seen.append(pool.crowded(url))  # more open context than KV, and busy: crowded
        pool.held_request(url, -1)
        await asyncio.sleep(30)  # no admitted turn for 30 s: the busy share decays under 70%
        seen.append(pool.crowded(url))  # waiting would idle the GPU: not crowded
        pool.held_request(url, +1)
        await asyncio.sleep(60)
        seen.append(pool.crowded(url))
        pool.episode_closed("c")  # an episode ends: its context no longer counts
        seen.append(pool.crowded(url))
        pool.after_turn("b", url, context=kv, turns_done=2, added=None)  # b grew: counted once, at its new size
        seen.append(pool.crowded(url))
        pool.held_request(url, -1)
        await pool.aclose()
        await server.aclose()
        return seen

    assert run_virtual(run()) == [False, True, False, True, False, True]


def test_a_pool_sharing_its_servers_is_crowded_at_its_share_of_the_kv():
    async def run() -> tuple[bool, bool, int]:
        server = SimulatedServer("sim://s", EngineConfig(executor="sim", max_total_tokens=4096))
        clock = asyncio.get_running_loop().time
        alone = BackendPool([server], retention="session", tokenizer=ByteTokenizer(), clock=clock)
        shared = BackendPool([server], retention="session", tokenizer=ByteTokenizer(), clock=clock, kv_share=0.25)
        url, kv = server.url, server.info.max_total_num_tokens
        for pool in (alone, shared):
            pool.held_request(url, +1)
            pool.after_turn("a", url, context=kv // 2, turns_done=1, added=None)
        await asyncio.sleep(30)
        result = alone.crowded(url), shared.crowded(url), shared.admissions[url].kv_capacity
        for pool in (alone, shared):
            await pool.aclose()
        await server.aclose()
        return result

    alone, shared, room = run_virtual(run())
    assert (alone, shared) == (False, True)  # half the KV is open context: a quarter-share pool is crowded
    assert room == 4096 // 4
    with pytest.raises(ValueError, match="kv_share=0"):
        BackendPool([], retention="session", tokenizer=ByteTokenizer(), kv_share=0)


def test_unbounded_sessions_stop_at_kv_exhaustion():
    # SGLang's sessions with no budget on a server whose KV holds ~2/3 of the agents' first turns: the
    # sessions pin it all, a turn cannot fit with nothing else running (SGLang deadlocks there), and the run
    # stops at that moment instead of replaying retries. With room for everything it ends normally.
    from interleaf.runtime.simulate import generate

    scripts = sessions(generate("swe", 8, seed=3, turns=6))
    first = sum(s.turns[0].input_length for s in scripts)
    tight = SimulationSetup(servers=1, token_block=16, kv_tokens=first * 2 // 3)
    stuck = simulate_policy(scripts, "unbounded", tight)
    assert stuck.kv_exhausted is not None and "SGLang" in stuck.kv_exhausted
    assert "sim://server-0" in stuck.kv_exhausted and stuck.completed < stuck.agents
    assert stuck.budget_tokens == 0 and stuck.peak_held_tokens > 0
    # What the servers held, not the client's reservations (a shared prefix once): never more than their KV.
    # It was the sessions' contexts summed ("pin 15,936 of 7,792 KV tokens").
    held, capacity = (int(n.replace(",", "")) for n in re.findall(r"([\d,]+) of its ([\d,]+) KV tokens",
                                                                   stuck.kv_exhausted)[0])  # fmt: skip
    assert 0 < held <= capacity and 0 < stuck.server_held_tokens <= stuck.kv_tokens
    roomy = simulate_policy(scripts, "unbounded", tight.model_copy(update={"kv_tokens": 4 * first * 6}))
    assert roomy.kv_exhausted is None and roomy.completed == roomy.agents and roomy.turns == 6 * 8
    # A deadlock before any session ended has no JCT: null in JSON (strict JSON, no NaN), and it reads back.
    none_done = stuck.model_copy(update={"jct_mean_s": None, "jct_p50_s": None, "jct_p95_s": None})
    text = none_done.model_dump_json()
    assert '"jct_mean_s":null' in text and "NaN" not in text
    assert PolicyResult.model_validate_json(text).jct_mean_s is None


def test_unbounded_deadlock_is_a_row_of_the_table():
    from interleaf.runtime.simulate import SimulationReport, generate, render

    scripts = sessions(generate("swe", 8, seed=3, turns=6))
    first = sum(s.turns[0].input_length for s in scripts)
    setup = SimulationSetup(servers=1, token_block=16, kv_tokens=first * 2 // 3)
    results = [simulate_policy(scripts, p, setup) for p in ("none", "unbounded")]
    report = SimulationReport(workload="swe", agents=8, peak_context_tokens=1, kv_tokens_per_server=1,
                              tool_floor_s=0.0, setup=setup, results=results)  # fmt: skip
    text = render(report)
    assert "unbounded        DEADLOCK (KV exhausted by pinned sessions)" in text
    row = next(line for line in text.splitlines() if "DEADLOCK" in line)
    held, kv = (
        int(n.replace(",", "")) for n in re.findall(r"servers held ([\d,]+) of their ([\d,]+) KV tokens", row)[0]
    )
    assert 0 < held <= kv == results[1].kv_tokens
    assert "the simulation stopped there" in text.splitlines()[-1]


def test_common_prefix_agrees_with_a_token_by_token_comparison():
    import random

    from interleaf.runtime.engine.radix_cache import _common_prefix

    def slow(key: list[int], ids: list[int], start: int) -> int:
        n, i = min(len(key), len(ids) - start), 0
        while i < n and key[i] == ids[start + i]:
            i += 1
        return i

    rng = random.Random(0)
    for _ in range(3000):
        key = [rng.randint(0, 2) for _ in range(rng.randint(0, 200))]
        start, keep = rng.randint(0, 20), rng.randint(0, len(key))
        ids = [7] * start + key[:keep] + [rng.randint(0, 3) for _ in range(rng.randint(0, 200))]
        assert _common_prefix(key, ids, start) == slow(key, ids, start)


def test_a_long_tool_pause_or_arrival_gap_is_not_stuck_but_a_wait_nothing_ends_is(monkeypatch):
    # The pool's health checks keep a timer pending for ever, so a wait nothing ends would let the virtual clock
    # run on unbounded; the watchdog stops a run in which nothing happened for stall_s virtual seconds. A tool
    # pause or an arrival far off is a wake-up already scheduled: it outlasting the window is not a stall
    # (it was: a 100 s pause or a 100 s gap between arrivals stopped a 30 s-window run as STUCK at 30 s).
    from interleaf.runtime.simulate import SimulationReport, render
    from interleaf.runtime.simulate import simulation as simulation_module

    setup = SimulationSetup(servers=1, kv_tokens=4096, stall_s=30.0)
    pause = sessions(
        [
            TraceTurn(session_id="a", turn=0, input_length=64, output_length=4),
            TraceTurn(session_id="a", turn=1, input_length=16, output_length=4, tool_pause_s=100.0),
        ]
    )
    done = simulate_policy(pause, "session", setup)
    assert done.stalled is None and done.completed == 1 and 100.0 < done.makespan_s < 101.0
    gap = sessions(
        [TraceTurn(input_length=64, output_length=4, timestamp=0), TraceTurn(input_length=64, output_length=4,
                                                                           timestamp=100_000)]
    )  # fmt: skip
    done = simulate_policy(gap, "none", setup)
    assert done.stalled is None and done.completed == 2 and 100.0 < done.makespan_s < 101.0

    class AnswersOnce(SimulatedServer):  # a server that never answers its second request: a wait nothing ends
        answered = 0

        async def generate(self, input_ids, **kw):  # type: ignore[no-untyped-def]
            if self.answered:
                await asyncio.Event().wait()
            self.answered += 1
            return await super().generate(input_ids, **kw)

    monkeypatch.setattr(simulation_module, "SimulatedServer", AnswersOnce)
    stuck = simulate_policy(pause, "session", setup)
    assert stuck.stalled is not None and "stuck" in stuck.stalled and stuck.turns == 1 and stuck.completed == 0
    assert 100.0 < stuck.makespan_s < 101.0  # stopped at the last thing that happened: the end of the pause
    assert stuck.jct_mean_s is None  # no session ended
    text = render(SimulationReport(workload="t", agents=1, peak_context_tokens=1, kv_tokens_per_server=1,
                                   tool_floor_s=0.0, setup=setup, results=[stuck]))  # fmt: skip
    assert "STUCK (nothing happened for 30 s) from 100." in text


def test_a_cancelled_session_close_does_not_stop_the_server():
    # A client that stops waiting for /close_session (a timeout, a cancelled episode) must not cancel the
    # scheduler's call: that made Scheduler.step() raise and ended the simulated server's driver for good.
    async def run() -> tuple[bool, str]:
        server = SimulatedServer("sim://c", EngineConfig(executor="sim", max_total_tokens=4096))
        sid = await server.open_session(timeout_s=60)
        busy = asyncio.ensure_future(
            server.generate(list(b"x" * 2000), sampling_params={"max_new_tokens": 20}, rid="busy")
        )
        await asyncio.sleep(0.001)  # the server is inside a step's GPU time: the close waits in its inbox
        closing = asyncio.ensure_future(server.close_session(sid))
        await asyncio.sleep(0)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        await busy
        out = await server.generate(list(b"hello"), sampling_params={"max_new_tokens": 2}, rid="after")
        alive = await server.health()
        await server.aclose()
        return alive, out.finish_reason

    assert run_virtual(run()) == (True, "length")


def test_a_killed_worker_still_prints_the_policies_that_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy's worker killed from outside (the OOM killer at 10,000 agents) takes the process pool
    down; the command names the lost policies and still prints the finished ones' rows."""
    from concurrent.futures.process import BrokenProcessPool

    import typer
    from typer.testing import CliRunner

    import interleaf.runtime.simulate as simulate_api
    from interleaf.commands import simulate as simulate_command

    real = simulate_api.simulate_policies

    def first_then_killed(scripts: list, policies: list[str], setup: object, *, jobs: int = 1) -> Iterator:
        yield next(real(scripts, policies[:1], setup))
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(simulate_api, "simulate_policies", first_then_killed)
    app = typer.Typer()
    app.command("simulate")(simulate_command.simulate)
    app.command("noop")(lambda: None)
    args = ["simulate", "--workload", "swe", "--agents", "4", "--turns", "2", "--servers", "1", "--policies",
            "none,session,oracle", "--jobs", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "before session, oracle finished" in result.output
    rows = [line.split()[0] for line in result.output.splitlines() if line.split()[:1] in (["none"], ["session"])]
    assert rows == ["none"]


def test_a_request_waits_for_kv_held_by_requests_admitted_in_the_same_prefill_round():
    # 1,000 KV tokens, one 2,048-token prefill round: A (300) and B (800) arrive together. A's chunk takes 300
    # slots; B does not fit beside it, but will once A has run: B must wait, not be aborted as if it could
    # never fit (nothing was running yet, so the scheduler took the round's own chunks for pinned KV).
    async def run() -> list:
        config = EngineConfig(executor="sim", max_total_tokens=1000, chunked_prefill_size=2048)
        server = SimulatedServer("sim://round", config)
        try:
            return await asyncio.gather(
                server.generate([7] * 300, sampling_params={"max_new_tokens": 4}, rid="a"),
                server.generate([9] * 800, sampling_params={"max_new_tokens": 4}, rid="b"),
            )
        finally:
            await server.aclose()

    a, b = run_virtual(run())  # before the fix: RequestAborted ("request needs 800 more KV tokens ...")
    assert (a.finish_reason, a.completion_tokens, b.finish_reason, b.completion_tokens) == ("length", 4, "length", 4)


def test_no_session_fails_when_every_context_fits_the_kv_even_under_pinned_sessions():
    # 24 swe agents, KV 148k tokens (15% of the peak total context), the longest context 39k: the pool's
    # paused sessions pin up to 75% of the KV, so a turn without a session could find no room for its
    # context. The pool then releases its own paused holds (the server aborted the request) and the turn
    # runs; before, 9 of the 24 sessions failed (and their short JCTs flattered the policy's mean).
    from interleaf.runtime.simulate import generate

    scripts = sessions(generate("swe", 24, seed=3, turns=10))
    setup = SimulationSetup(servers=1, token_block=16, budget_ratio=0.15)
    for policy in ("session", "adaptive"):
        result = simulate_policy(scripts, policy, setup)
        assert result.failed == 0 and result.completed == 24, (policy, result.failures)


def test_no_session_fails_when_an_abort_outlasts_the_retries_while_the_pools_own_session_pins_the_kv():
    # 24 swe agents x 10 turns, KV 61,806 tokens while one context reaches ~33k, no admission control: a
    # 33k-token turn was aborted while another episode's session pinned 32k; that session paused only after
    # the last retry, which then gave up without releasing it ("1 session failed"). Past the retries the pool
    # now releases its own paused holds and retries, and waits while its own turns in flight pin the KV.
    from interleaf.runtime.simulate import generate

    scripts = sessions(generate("swe", 24, turns=10))
    setup = SimulationSetup(servers=1, token_block=16, budget_ratio=0.0625)
    result = simulate_policy(scripts, "adaptive-greedy", setup)
    assert result.failed == 0 and result.completed == 24, result.failures


def test_a_turn_the_server_aborts_for_pinned_kv_releases_the_pools_own_paused_sessions():
    # KV 1,000 tokens, budget 90%: A's session (704 tokens) is paused in a tool call; B's 500-token turn is
    # refused a session by the budget and runs without one, but the server cannot fit it beside A's pinned
    # KV and aborts it. The pool releases its own paused hold (A's) and B's retry runs; A recomputes later.
    async def run() -> tuple[str, str, dict[str, int]]:
        loop = asyncio.get_running_loop()
        server = SimulatedServer("sim://pinned", EngineConfig(executor="sim", max_total_tokens=1000))
        pool = BackendPool(
            [server], retention="session", kv_budget_fraction=0.9, admission=False, tokenizer=ByteTokenizer(),
            clock=loop.time, admission_wait_s=0.5,
        )  # fmt: skip
        try:
            async with pool.episode("a") as a:
                await a.generate("a" * 700, max_new_tokens=4, ignore_eos=True)
                await a.pause(["tool"])
                async with pool.episode("b") as b:
                    out_b = await b.generate("b" * 500, max_new_tokens=4, ignore_eos=True)
                out_a = await a.generate("more", max_new_tokens=4, ignore_eos=True)
                return out_b.finish_reason, out_a.finish_reason, dict(pool.decisions)
        finally:
            await pool.aclose()
            await server.aclose()

    finish_b, finish_a, decisions = run_virtual(run())
    assert (finish_b, finish_a) == ("length", "length")
    assert decisions.get("released_for_abort") == 1, decisions


def test_policy_names_map_to_the_production_admission_modes():
    from interleaf.runtime.client import AdmissionMode
    from interleaf.runtime.simulate.simulation import admission_mode

    expected = {"none": AdmissionMode.OFF, "oracle": AdmissionMode.OFF, "unbounded": AdmissionMode.OFF,
                "session": AdmissionMode.DEFER, "adaptive": AdmissionMode.DEFER, "ttl-greedy": AdmissionMode.OFF,
                "session-strict": AdmissionMode.STRICT, "adaptive-strict": AdmissionMode.STRICT}  # fmt: skip
    assert {name: admission_mode(name) for name in expected} == expected


def test_the_kv_floor_matches_the_hand_computation():
    from interleaf.runtime.simulate import kv_floor

    # Session a: 100 in / 10 out, a 2 s tool, 50 in / 10 out; session b: 300 in / 20 out, starting at 1 s.
    # In decode steps t: a decodes 20 steps with contexts 100 and 160 in KV: 100*10 + 160*10 = 2,600 t
    # token-seconds; b decodes 20 steps with 300: 6,000 t. On 20 tokens of KV, least work first: a is done
    # at 130 t, b at 430 t; mean JCT >= (130 t + 430 t - 1 s) / 2 = 280 t - 0.5 s, makespan >= 430 t.
    scripts = sessions(
        [
            TraceTurn(session_id="a", turn=0, input_length=100, output_length=10, timestamp=0.0),
            TraceTurn(session_id="a", turn=1, input_length=50, output_length=10, tool_pause_s=2.0),
            TraceTurn(session_id="b", turn=0, input_length=300, output_length=20, timestamp=1000.0),
        ]
    )
    floor = kv_floor(scripts, SimulationSetup(servers=1, kv_tokens=20))
    t = floor.decode_step_s
    assert 0.001 < t < 0.1  # one decode step of Llama-3.1-8B on an H100
    assert floor.mean_jct_s == pytest.approx(280 * t - 0.5)
    assert floor.makespan_s == pytest.approx(430 * t)
    # With ample KV the critical paths bind: a = 20 t + 2 s of tool, b = 20 t (it starts at 1 s).
    roomy = kv_floor(scripts, SimulationSetup(servers=1, kv_tokens=10**9))
    assert roomy.mean_jct_s == pytest.approx(20 * t + 1.0)
    assert roomy.makespan_s == pytest.approx(max(20 * t + 2.0, 1.0 + 20 * t))
    from interleaf.runtime.simulate import SimulationReport, render

    report = SimulationReport(
        workload="t", agents=2, peak_context_tokens=490, kv_tokens_per_server=20, tool_floor_s=2.0, kv_floor=floor,
        setup=SimulationSetup(kv_tokens=20), results=[],
    )  # fmt: skip
    expected = f"floor at this KV, any policy: mean JCT >= {280 * t - 0.5:.1f} s, makespan >= {430 * t:.1f} s"
    assert expected in render(report)


@pytest.mark.parametrize(
    ("workload", "agents", "kv_tokens"),
    [("reference", 2, None), ("bfcl", 12, 3000)],  # KV to spare: the critical paths bind; scarce: the KV work
)
def test_no_simulated_policy_beats_the_floor(workload: str, agents: int, kv_tokens: int | None) -> None:
    # At token block 16 a turn's first simulated token comes from the prefill forward and stands for 16 real
    # tokens: the floor counted every real output token as a decode step and was above `none`'s own figures
    # (reference, 2 agents: mean 24.5 s > 24.4 s, makespan 25.0 s > 24.6 s).
    from interleaf.runtime.simulate import generate, kv_floor

    scripts = sessions(generate(workload, agents, seed=0, turns=3))
    setup = SimulationSetup(servers=1, token_block=16, kv_tokens=kv_tokens)
    floor = kv_floor(scripts, setup)
    for policy in ("none", "session"):
        result = simulate_policy(scripts, policy, setup)
        assert result.failed == 0 and result.jct_mean_s is not None, result.failures
        assert floor.mean_jct_s <= result.jct_mean_s and floor.makespan_s <= result.makespan_s, (policy, floor)


def test_a_capacity_probe_in_which_sessions_failed_never_meets_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    # A failed session's JCT is the time until it failed: 9 of 10 sessions failing for lack of KV made one
    # RTX-4090 "meet" a 5,000 s target. Here the first probe's sessions fail (faked), the second's do not.
    from interleaf.runtime.simulate import capacity, generate, plan_capacity, render_plan

    real = capacity.simulate_policy

    def one_server_fails(scripts: list, policy: str, setup: SimulationSetup) -> PolicyResult:
        result = real(scripts, policy, setup)
        if setup.servers > 1:
            return result
        why = {"BackendError: input_ids: 2801 tokens do not fit the KV pool": result.agents - 1}
        return result.model_copy(update={"failed": result.agents - 1, "completed": 1, "failures": why})

    monkeypatch.setattr(capacity, "simulate_policy", one_server_fails)
    scripts = sessions(generate("reference", 2, seed=0, turns=2))
    plan = plan_capacity(scripts, "none", SimulationSetup(token_block=16), target_s=1e6, max_servers=2)
    one, two = plan.probes
    assert one.jct_s is not None and one.jct_s < 1e6 and not one.meets
    assert two.meets and plan.servers == 2
    text = render_plan(plan)
    assert "failed meets" in text and "1 servers: 1 session(s) failed: BackendError: input_ids" in text


def test_capacity_refuses_a_trace_whose_context_no_server_holds() -> None:
    from interleaf.runtime.simulate import generate, plan_capacity

    scripts = sessions(generate("swe", 10, seed=0))  # contexts up to ~113k tokens; an RTX-4090 holds 44,592
    with pytest.raises(ValueError, match=r"session 'swe-\d+' reaches [\d,]+ tokens of context, more than one "
                                         r"RTX-4090's KV next to Llama-3.1-8B-Instruct's weights"):  # fmt: skip
        plan_capacity(scripts, "none", SimulationSetup(gpu="RTX-4090", token_block=16), target_s=5000)


def test_a_setup_names_the_field_of_a_bad_value_and_refuses_a_model_the_gpu_cannot_hold() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"budget_ratio\n  Input should be a finite number"):
        SimulationSetup(budget_ratio=math.nan)
    with pytest.raises(ValidationError, match=r"gpu\n  Value error, not a hardware profile; use one of A100, H100"):
        SimulationSetup(gpu="FOO")
    with pytest.raises(ValidationError, match=r"model\n  Value error, no shipped model profile; use one of .*Qwen3"):
        SimulationSetup(model="FOO")
    # 1,250 GiB of weights on an 80 GiB GPU: it used to get a 1,024-token KV pool and a JCT of 0.0 s.
    with pytest.raises(ValidationError, match=r"DeepSeek-V3.1-Terminus does not fit one H100-PCIe .* 1,249.8 GiB"):
        SimulationSetup(gpu="H100", model="DeepSeek-V3.1-Terminus")
    with pytest.raises(ValidationError, match=r"Llama-3\.1-70B-Instruct does not fit one H200"):
        SimulationSetup(gpu="H200", model="Llama-3.1-70B-Instruct")  # 131.5 GiB of weights, 112.2 GiB of room
    assert SimulationSetup(gpu="H200", model="Qwen2.5-32B-Instruct").model == "Qwen2.5-32B-Instruct"
