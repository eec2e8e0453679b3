"""The client against the real embedded engine over HTTP: sessions, retention, the KV bound, failover.

One small-KV engine serves the module (1,600 tokens, so a few prompts evict each other); the
failover test starts a second one and kills it mid-run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import httpx
import pytest

from interleaf.runtime.client import BackendPool, ServerMetrics, parse_prometheus
from interleaf.runtime.client.retention import ToolDurationEstimator
from interleaf.telemetry.records import RetentionDecision
from tests.conftest import start_engine, stop_process
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.model, pytest.mark.slow]

KV_TOKENS = 1600
WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "oscar",
)


@pytest.fixture(scope="module")
def small_engine_url() -> Iterator[str]:
    """The embedded engine (real SmolLM2), sessions and metrics on, a 1,600-token KV pool."""
    proc, url = start_engine("--max-total-tokens", str(KV_TOKENS))
    try:
        yield url
    finally:
        stop_process(proc)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


async def _metrics(url: str) -> ServerMetrics:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics", timeout=10)
    return ServerMetrics(parse_prometheus(response.text))


async def _wait_sessions(url: str, n: int) -> float:
    """Poll /metrics until num_streaming_sessions == n; returns it (fails after a generous while)."""

    async def sessions() -> float:
        return (await _metrics(url)).num_streaming_sessions or 0.0

    return await wait_until_async(
        sessions,
        until=lambda value: value == n,
        message=f"{n} open streaming sessions on {url}",
        timeout_s=30,
        interval_s=0.1,
    )


async def _noise(url: str, rng: random.Random, prompts: int, tokens: int) -> None:
    """Unrelated stateless traffic that fills the radix cache (other tenants of the server)."""
    async with httpx.AsyncClient(timeout=300) as client:
        for _ in range(prompts):
            ids = [rng.randrange(1000, 40000) for _ in range(tokens)]
            body = {"input_ids": ids, "sampling_params": {"max_new_tokens": 1}}
            (await client.post(f"{url}/generate", json=body)).raise_for_status()


@pytest.mark.parametrize("policy", ["session", "none"])
async def test_engine_sees_growing_prefixes(small_engine_url: str, policy: str) -> None:
    pool = await BackendPool.connect([small_engine_url], retention=policy, kv_budget_fraction=0.5)
    try:
        async with pool.episode(f"prefix-{policy}") as model:
            first = await model.generate(
                "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n", max_new_tokens=6
            )
            completions = [first]
            for question in ("And three animals?", "And three cities?"):
                await model.pause(["lookup"])
                delta = f"<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
                completions.append(await model.generate(delta, max_new_tokens=6))
            conv = model.conversation
            for i, out in enumerate(completions):
                prompt = conv.turn_prompt(i)
                assert out.cache.prompt_tokens == len(prompt)  # the engine saw exactly our ids
                assert prompt[-len(out.delta_ids) :] == out.delta_ids
                if i:
                    previous = conv.turn_prompt(i - 1) + completions[i - 1].output_ids
                    assert prompt[: len(previous)] == previous
                    # SGLang's session invariant (and the radix cache's match without one).
                    assert out.cache.cached_tokens >= len(previous) - 1
                    assert out.cache.recomputed_tokens == 0
            assert all(out.in_session == (policy == "session") for out in completions)
    finally:
        await pool.aclose()


@pytest.mark.parametrize("policy", ["session", "none"])
async def test_session_keeps_kv_while_none_reprefills_under_pressure(small_engine_url: str, policy: str) -> None:
    rng = random.Random(11)
    pool = await BackendPool.connect([small_engine_url], retention=policy, kv_budget_fraction=0.75)
    recomputed: list[int] = []
    try:
        models = [pool.episode(f"pressure-{policy}-{i}") for i in range(2)]
        prompts = [f"<|im_start|>user\n{_text(rng, 180)}<|im_end|>\n<|im_start|>assistant\n" for _ in models]
        outs = await asyncio.gather(
            *(m.generate(p, max_new_tokens=8, ignore_eos=True) for m, p in zip(models, prompts, strict=True))
        )
        for _turn in range(2):
            records = await asyncio.gather(*(m.pause(["search"]) for m in models))
            expected = RetentionDecision.HOLD if policy == "session" else RetentionDecision.NONE
            assert all(r.decision is expected for r in records)
            await _noise(small_engine_url, rng, prompts=3, tokens=400)
            deltas = [f"<|im_end|>\n<|im_start|>tool\n{_text(rng, 50)}<|im_end|>\n" for _ in models]
            outs = await asyncio.gather(
                *(m.generate(d, max_new_tokens=8, ignore_eos=True) for m, d in zip(models, deltas, strict=True))
            )
            recomputed += [o.cache.recomputed_tokens for o in outs]
            assert all(o.in_session == (policy == "session") for o in outs)
        for m in models:
            await m.close()
    finally:
        await pool.aclose()
    if policy == "session":
        assert recomputed == [0, 0, 0, 0]
    else:
        assert sum(recomputed) > 0, "noise should have evicted the unpinned prefixes"


@pytest.mark.parametrize(("policy", "admission"), [("session", True), ("adaptive", True), ("session", False)])
async def test_32_agents_under_a_tight_budget_never_exceed_it(
    small_engine_url: str, policy: str, admission: bool
) -> None:
    fraction = 0.15
    budget = int(fraction * KV_TOKENS)
    pool = await BackendPool.connect(
        [small_engine_url],
        retention=policy,
        kv_budget_fraction=fraction,
        admission_wait_s=0.2,
        admission=admission,
    )
    samples: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            held = (await _metrics(small_engine_url)).streaming_session_held_tokens
            samples.append(held or 0.0)
            await asyncio.sleep(0.05)

    async def agent(i: int) -> int:
        rng = random.Random(i)
        async with pool.episode(f"tight-{policy}-{i}") as model:
            await model.generate(f"<|im_start|>user\n{_text(rng, 25)}", max_new_tokens=4, ignore_eos=True)
            for _ in range(2):
                await model.pause(["calc"])
                await asyncio.sleep(rng.random() * 0.2)
                await model.generate(f"\n{_text(rng, 10)}", max_new_tokens=4, ignore_eos=True)
            return len(model.conversation.prompt_lengths)

    sampler = asyncio.ensure_future(sample())
    try:
        turns = await asyncio.gather(*(agent(i) for i in range(32)))
    finally:
        done.set()
        await sampler
        stats = pool.stats()
        await pool.aclose()
    assert turns == [3] * 32
    server = stats["servers"][small_engine_url]
    assert server["budget_tokens"] == budget
    assert len(samples) > 5 and max(samples) <= budget
    assert 0 < server["peak_held_tokens"] <= budget
    if admission:
        # Episodes beyond what the budget can carry waited for admission, or ran without a session while the
        # server was not thrashing (deferred), instead of all trying to hold.
        waited_or_deferred = stats["decisions"].get("queued", 0) + stats["decisions"].get("deferred", 0)
        assert waited_or_deferred > 0 and server["peak_admitted"] < 32
        assert server["admitted"] == 0 and server["waiting"] == 0
    else:
        assert stats["decisions"].get("denied", 0) > 0, "the budget should have been too small for everyone"
    assert await _wait_sessions(small_engine_url, 0) == 0


async def test_ttl_hold_is_released_when_the_tool_overruns_and_the_next_turn_says_so(small_engine_url: str) -> None:
    estimator = ToolDurationEstimator(prior_median_s=0.05, prior_sigma=0.1)  # predicts ~60 ms pauses
    pool = await BackendPool.connect([small_engine_url], retention="ttl", estimator=estimator)
    try:
        async with pool.episode("ttl-overrun") as model:
            await model.generate("<|im_start|>user\nHello there.", max_new_tokens=3)
            record = await model.pause(["slow_tool"])
            assert record.decision is RetentionDecision.HOLD and record.held_tokens > 0
            assert await _wait_sessions(small_engine_url, 0) == 0  # the TTL closed it during the pause
            out = await model.generate("\nAnd again.", max_new_tokens=3)
            assert [r.decision for r in out.retention] == [RetentionDecision.RELEASE]
            assert "ttl" in out.retention[0].reason and "expired" in out.retention[0].reason
            assert out.pause_s is not None and out.pause_s > 0.05
            # Released, not evicted: the idle server's radix cache still had the prefix.
            assert out.cache.recomputed_tokens == 0
        assert estimator.observations("slow_tool") == 1
    finally:
        await pool.aclose()


async def test_cancelled_episode_leaves_no_open_session(small_engine_url: str) -> None:
    pool = await BackendPool.connect([small_engine_url], retention="session", kv_budget_fraction=0.5)
    try:
        model = pool.episode("cancel-me")
        task = asyncio.ensure_future(
            model.generate("<|im_start|>user\nWrite a long story.", max_new_tokens=400, ignore_eos=True)
        )
        assert await _wait_sessions(small_engine_url, 1) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _wait_sessions(small_engine_url, 0) == 0
        assert pool.stats()["servers"][small_engine_url]["held_tokens"] == 0

        # A held session through a pause, then the agent fails inside `async with`.
        with pytest.raises(RuntimeError, match="agent crashed"):
            async with pool.episode("crash-me") as crashing:
                await crashing.generate("<|im_start|>user\nHi.", max_new_tokens=2)
                assert (await crashing.pause(["search"])).decision is RetentionDecision.HOLD
                assert await _wait_sessions(small_engine_url, 1) == 1
                raise RuntimeError("agent crashed")
        assert await _wait_sessions(small_engine_url, 0) == 0
    finally:
        await pool.aclose()


async def test_killed_server_fails_over_with_recorded_reprefill(small_engine_url: str) -> None:
    proc, doomed = start_engine("--max-total-tokens", str(KV_TOKENS))
    try:
        pool = await BackendPool.connect([small_engine_url, doomed], retention="session", kv_budget_fraction=0.5)
        rng = random.Random(3)
        models = [pool.episode(f"failover-{i}") for i in range(4)]
        firsts = await asyncio.gather(
            *(m.generate(f"<|im_start|>user\n{_text(rng, 40)}", max_new_tokens=4, ignore_eos=True) for m in models)
        )
        on_doomed = {i for i, out in enumerate(firsts) if out.server == doomed}
        assert on_doomed and len(on_doomed) < 4, "new episodes should spread over both servers"
        await asyncio.gather(*(m.pause(["search"]) for m in models))
        proc.kill()
        proc.wait(30)
        later = []
        for _ in range(2):
            later.append(
                await asyncio.gather(
                    *(m.generate(f"\n{_text(rng, 10)}", max_new_tokens=4, ignore_eos=True) for m in models)
                )
            )
            await asyncio.gather(*(m.pause(["search"]) for m in models))
        for i, model in enumerate(models):
            second = later[0][i]
            assert second.server == small_engine_url and later[1][i].server == small_engine_url
            if i in on_doomed:
                assert second.failover_from == doomed
                assert any("failover" in r.reason and doomed in r.reason for r in second.retention)
                assert second.cache.recomputed_tokens > 0  # the re-prefill, recorded
                assert later[1][i].cache.recomputed_tokens == 0  # then held again on the survivor
            else:
                assert second.failover_from is None and second.cache.recomputed_tokens == 0
            assert len(model.conversation.prompt_lengths) == 3
        stats = pool.stats()
        assert stats["failovers"] == len(on_doomed) and stats["reprefill_tokens"] > 0
        assert stats["servers"][doomed]["healthy"] is False
        await pool.aclose()
        assert await _wait_sessions(small_engine_url, 0) == 0
    finally:
        stop_process(proc)
