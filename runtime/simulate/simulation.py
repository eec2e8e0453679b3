"""Replay a trace against N simulated servers, once per retention policy, on a virtual clock.

Every agent is a production :class:`~interleaf.runtime.client.EpisodeModel` of one production
:class:`~interleaf.runtime.client.BackendPool` (router, KV budgets, admission control, retention
policy, tool-duration estimator), exactly as ``bench/retention.py`` drives a real engine: per turn
``pause(tool)``, the tool's pause (a virtual sleep), ``generate(delta, ignore_eos)``. The servers are
:class:`~interleaf.runtime.simulate.server.SimulatedServer`\\ s. Policies beside the production ones:

- ``unbounded``: streaming sessions held for the whole episode with no budget and no admission control
  (SGLang's own sessions): held KV fills the pool until a request cannot fit with nothing else running.
  interleaf's engine aborts it; SGLang's leaves it waiting, and deadlocks once every session's owner waits
  (its issue #27024). The run stops at that moment and reports it (``PolicyResult.kv_exhausted``): what
  follows in SGLang is a deadlock, and replaying the client's retries against interleaf's aborts instead
  would measure neither system. A run that never exhausts the KV ends normally.
- ``oracle``: every server's KV holds every agent's whole context (nothing is ever evicted or
  recomputed, nobody waits for admission): the upper bound any policy can reach.
- any holding policy + ``-greedy``: without episode admission control; + ``-strict``: with admission
  control that always waits (``admission_defer=False``, the behaviour before deferral).
"""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from interleaf.runtime.client import AdmissionMode, BackendPool
from interleaf.runtime.client.retention import RetentionPolicyName
from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.sim import MEM_FRACTION, RooflineCost, SimExecutor, kv_room
from interleaf.runtime.simulate.server import KVExhaustion, SimulatedServer
from interleaf.runtime.simulate.trace import SessionScript, TraceTurn
from interleaf.runtime.simulate.virtual_loop import run_virtual
from interleaf.runtime.tokenizer import ByteTokenizer
from interleaf.telemetry import find_hardware_profile, find_model_profile
from interleaf.telemetry.hardware_profile import EXTRA_HARDWARE_PROFILES, HARDWARE_PROFILES
from interleaf.telemetry.model_profile import MODEL_PROFILES
from interleaf.telemetry.records import RetentionDecision

GREEDY = "-greedy"
STRICT = "-strict"
EXTRA_POLICIES = ("unbounded", "oracle")


def split_policy(name: str) -> tuple[str, str]:
    """(production policy, variant suffix) of a simulation policy name."""
    for suffix in (GREEDY, STRICT):
        if name.endswith(suffix):
            return name.removesuffix(suffix), suffix
    return name, ""


def admission_mode(name: str) -> AdmissionMode:
    """The episode admission control a simulation policy runs with: none for ``none``, ``unbounded`` and
    ``oracle`` (nothing to admit) and ``-greedy``; always-waiting for ``-strict``; deferral otherwise."""
    base, suffix = split_policy(name)
    if base == "none" or name in EXTRA_POLICIES or suffix == GREEDY:
        return AdmissionMode.OFF
    return AdmissionMode.STRICT if suffix == STRICT else AdmissionMode.DEFER


def check_policy(name: str) -> str:
    """``name`` if it is a policy the simulation runs; ValueError listing them otherwise."""
    base, suffix = split_policy(name)
    known = [p.value for p in RetentionPolicyName]
    if name in EXTRA_POLICIES or (base in known and not (suffix and base == "none")):
        return name
    raise ValueError(
        f"policy {name!r} is not one of {', '.join([*known, *EXTRA_POLICIES])} (append {GREEDY} to a holding "
        f"policy to run it without admission control, {STRICT} for admission control that always waits)"
    )


class SimulationSetup(BaseModel):
    """What is simulated: cluster, model, KV sizing (every figure the run produces is SIMULATED). Checked at
    construction: counts and sizes positive, ratios finite, a known GPU and model, the model's weights within
    one GPU's memory (each server is one GPU)."""

    model_config = ConfigDict(allow_inf_nan=False)

    servers: int = Field(default=8, ge=1)
    """Simulated servers (one GPU each)."""
    gpu: str = "H100"
    """Hardware profile (``interleaf.telemetry``)."""
    model: str = "Llama-3.1-8B-Instruct"
    """Model profile."""
    budget_ratio: float = Field(default=0.5, gt=0)
    """KV budget (what pools may pin, all servers) ÷ the agents' peak total context."""
    kv_budget_fraction: float = Field(default=0.75, gt=0, le=1)
    """Budget ÷ KV capacity per server (the rest is for running requests and the radix cache)."""
    kv_tokens: int | None = Field(default=None, ge=1)
    """KV capacity per server in real tokens; None = from ``kv_from_gpu``, else from ``budget_ratio`` and
    ``kv_budget_fraction``."""
    kv_from_gpu: bool = False
    """Size each server's KV from the GPU's memory (what the weights leave of 85% of it, SGLang's
    ``mem_fraction_static``) instead of from ``budget_ratio``: capacity planning, where adding a server
    adds a GPU's worth of KV."""
    token_block: int = Field(default=1, ge=1)
    """Real tokens per simulated token (1 = exact; 16 makes a 1,000-agent run take minutes)."""
    chunked_prefill_size: int = Field(default=8192, ge=1)
    """Prefill chunk per scheduler iteration, real tokens (SGLang's default on 80 GB GPUs). With token
    block k a simulated iteration stands for k real ones and prefills k chunks."""
    max_running_requests: int = Field(default=64, ge=1)
    """Concurrent requests per server (the embedded engine's default)."""
    admission_overcommit: float = Field(default=1.0, gt=0)
    """Admitted episodes' projected peaks may sum to this × the budget."""
    priority_scheduling: bool = True
    """Servers admit waiting requests by priority (SGLang's ``--enable-priority-scheduling``): the client's
    turns inside sessions before stateless ones. False: first come, first served."""
    seed: int = Field(default=0, ge=0)
    """Seed of the token content."""
    host_request_s: float = Field(default=0.0, ge=0)
    """Host seconds on each request's path outside the GPU (HTTP round trip, JSON, the client's Python),
    added to the request's latency before it reaches the scheduler; it does not occupy the server. 0 by
    default: the figures of ``interleaf simulate`` are GPU-bound, and a cluster's host overhead is not this
    box's. Only fidelity runs against the real-clock ``sim`` engine set it, to the value measured on the box
    (``bench/simulate_fidelity.py``)."""
    stall_s: float = Field(default=3600.0, gt=0)
    """Virtual seconds without progress (no turn finishing, no agent waking from a tool pause or arriving)
    while no agent is in a tool pause or yet to arrive, after which the run is declared stuck and stopped
    (``PolicyResult.stalled``). The pool's periodic health checks keep a timer pending forever, so a wait that
    nothing ends would otherwise let the virtual clock run on for ever; a long tool pause or arrival gap is
    not such a wait."""
    host_step_s: float = Field(default=0.0, ge=0)
    """Host seconds of the engine's Python per scheduler step that did work, added to the step's time (it
    occupies the server, as the real engine's scheduler thread does between GPU steps). 0 by default; the
    fidelity bench sets the value it measures (the simulation's own ``Scheduler.step()`` time per step)."""

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, gpu: str) -> str:
        try:
            find_hardware_profile(gpu)
        except ValueError:
            known = ", ".join(sorted({**HARDWARE_PROFILES, **EXTRA_HARDWARE_PROFILES}))
            raise ValueError(f"not a hardware profile; use one of {known} (or cpu)") from None
        return gpu

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        if find_model_profile(model) is None:
            raise ValueError(f"no shipped model profile; use one of {', '.join(MODEL_PROFILES)}")
        return model

    @model_validator(mode="after")
    def _gpu_holds_the_model(self) -> SimulationSetup:
        hw, profile = find_hardware_profile(self.gpu), find_model_profile(self.model)
        assert profile is not None
        room = kv_room(hw, RooflineCost.for_profiles(hw, profile))
        if hw.memory_bytes is not None and room is not None and room < 1:
            weights = profile.n_params * profile.dtype_bytes
            raise ValueError(
                f"model {self.model} does not fit one {hw.name} (gpu={self.gpu!r}): its weights take "
                f"{weights / 2**30:,.1f} GiB, while {MEM_FRACTION:.0%} of the GPU's {hw.memory_bytes / 2**30:,.0f} GiB "
                f"({MEM_FRACTION * hw.memory_bytes / 2**30:,.1f} GiB) is for weights and KV together (each simulated "
                "server is one GPU): choose a larger GPU or a smaller model"
            )
        return self


class PolicyResult(BaseModel):
    """One policy's run (virtual seconds: SIMULATED)."""

    policy: str
    """Policy name."""
    agents: int
    """Sessions replayed."""
    failed: int
    """Sessions that ended with an error (e.g. requests the engine aborted for lack of KV)."""
    jct_mean_s: float | None
    """Mean job (session) completion time, first request to last answer; None when no session ended (a run
    stopped, ``kv_exhausted`` or ``stalled``, before any did)."""
    jct_p50_s: float | None
    """Median JCT (None as ``jct_mean_s``)."""
    jct_p95_s: float | None
    """95th-percentile JCT (None as ``jct_mean_s``)."""
    makespan_s: float
    """Start to the last session's end."""
    turns: int
    """Turns served."""
    turns_per_s: float
    """Turns ÷ makespan."""
    prompt_tokens: int
    """Prompt tokens over all turns (real tokens)."""
    cached_tokens: int
    """Prompt tokens served from the cache."""
    recomputed_tokens: int
    """Prompt tokens computed before and lost (evicted or released), computed again."""
    budget_tokens: int
    """KV budget, all servers."""
    peak_held_tokens: int
    """Sum over servers of each budget's peak held tokens: the client's reservations (a shared prefix counted
    once per session that holds it), not the servers' KV; ``unbounded`` has no budget, see ``server_held_tokens``."""
    admission_waits: int
    """Turns that waited for episode admission."""
    admission_wait_s: float
    """Their summed wait."""
    decisions: dict[str, int]
    """Retention decision counts."""
    gpu_busy: float
    """Mean share of the makespan the servers' GPUs were busy."""
    wall_s: float
    """Real seconds the simulation of this policy took."""
    cpu_s: float = 0.0
    """CPU seconds it took (on a shared box the wall time also counts other processes' turns)."""
    steps: int = 0
    """Scheduler steps that did work, all servers."""
    step_python_s: float = 0.0
    """Real seconds spent in those ``Scheduler.step()`` calls: the engine's host Python per step on this box."""
    completed: int = 0
    """Sessions that ran to their end (the JCT figures are over these and the failed ones)."""
    stalled: str | None = None
    """Set when no turn finished for ``SimulationSetup.stall_s`` virtual seconds while sessions remained: the
    simulated system is stuck (a wait nothing ends); the run stopped there (makespan = that moment)."""
    failures: dict[str, int] = {}
    """Why sessions failed: the error's type and message (its first 160 characters), with how many ended so."""
    kv_exhausted: str | None = None
    """``unbounded`` only: where pinned sessions left a request no KV, the point from which SGLang's server
    deadlocks; the run stopped there (makespan = that moment). None: it never happened."""
    kv_tokens: int = 0
    """KV capacity of all servers together (real tokens)."""
    server_held_tokens: int = 0
    """KV the servers held and could not free when the run ended (pinned by streaming sessions or in use by
    running requests, a shared prefix once), all servers, real tokens: at most ``kv_tokens``. What a run
    stopped at a deadlock or a stall leaves; about 0 after a run that ended normally."""


@dataclass
class Totals:
    """What a replay counts (token figures in simulated tokens: × the token block for real ones)."""

    prompt: int = 0
    cached: int = 0
    recomputed: int = 0
    turns: int = 0
    waits: int = 0
    wait_s: float = 0.0
    jct: list[float] = field(default_factory=list)
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    end: float = 0.0
    host_gap_s: float = 0.0
    """Σ over turns of the client's e2e time minus the server's own (HTTP, JSON, client Python)."""
    progress: int = 0
    """Events that show the run moving: a turn finished, an agent arrived or woke from its tool pause."""
    progress_at: float = 0.0
    """When the last of them happened (the loop's clock)."""
    sleeping: int = 0
    """Agents now waiting on their own clock (yet to arrive, or in a tool pause): their wake-up is scheduled, so
    the run cannot be stuck while one is."""


def hash_spans(turn: TraceTurn, token_block: int) -> list[tuple[tuple[int, int], int]]:
    """The turn's input as the replay writes it, in simulated tokens: ``(block key, tokens taken from it)`` per
    ``hash_ids`` block, in order (equal keys, equal text); the rest of the input is unique text."""
    n = math.ceil(turn.input_length / token_block)
    per_block = max(1, math.ceil(turn.block_tokens / token_block))
    spans, have = [], 0
    for h in turn.hash_ids:
        if have >= n:
            break
        take = min(per_block, n - have)
        spans.append(((h, per_block), take))
        have += take
    return spans


class _Content:
    """Token content of trace turns: shared hash blocks are identical text, the rest is unique."""

    def __init__(self, token_block: int, seed: int) -> None:
        self.k = token_block
        self.rng = np.random.default_rng(seed)
        self.blocks: dict[tuple[int, int], str] = {}

    def _letters(self, n: int) -> str:
        return self.rng.integers(97, 123, size=n, dtype=np.uint8).tobytes().decode()

    def text(self, turn: TraceTurn) -> str:
        n = math.ceil(turn.input_length / self.k)
        parts, have = [], 0
        for key, take in hash_spans(turn, self.k):
            if key not in self.blocks:
                self.blocks[key] = self._letters(key[1])
            parts.append(self.blocks[key][:take])
            have += take
        if have < n:
            parts.append(self._letters(n - have))
        return "".join(parts)


def peak_context(scripts: list[SessionScript]) -> int:
    """The agents' peak total context (every agent at its largest), real tokens."""
    return sum(s.peak_context for s in scripts)


def server_kv_tokens(scripts: list[SessionScript], setup: SimulationSetup) -> int:
    """KV capacity per server, real tokens."""
    if setup.kv_tokens is not None:
        return setup.kv_tokens
    if setup.kv_from_gpu:
        return gpu_kv_tokens(setup.gpu, setup.model)
    budget = setup.budget_ratio * peak_context(scripts)
    return math.ceil(budget / setup.servers / setup.kv_budget_fraction)


def server_kv_slots(scripts: list[SessionScript], setup: SimulationSetup) -> int:
    """KV capacity per server as the run sizes it: simulated tokens (× ``setup.token_block`` for real ones)."""
    return max(16, math.ceil(server_kv_tokens(scripts, setup) / setup.token_block))


def gpu_kv_tokens(gpu: str, model: str) -> int:
    """KV tokens one ``gpu`` holds next to ``model``'s weights (the ``sim`` executor's own sizing)."""
    return profile_executor(gpu, model).kv_capacity


def profile_executor(gpu: str, model: str) -> SimExecutor:
    """The ``sim`` executor of ``model`` on ``gpu`` at its default sizing: its cost model and KV capacity."""
    return SimExecutor.from_config(EngineConfig(executor="sim", sim_gpu=gpu, sim_model=model))


async def replay(
    pool: BackendPool,
    scripts: list[SessionScript],
    *,
    token_block: int = 1,
    seed: int = 0,
    totals: Totals | None = None,
) -> Totals:
    """Every session of ``scripts`` as an episode of ``pool``, on the running loop's clock: per turn
    ``pause(tool)``, the tool's pause (``asyncio.sleep``), ``generate(delta, ignore_eos)``, as
    ``bench/retention.py`` drives an engine. On a virtual-time loop this is the simulation; on an ordinary
    loop against real servers it is the same replay in real time (``bench/simulate_fidelity.py``).
    ``totals`` (default: a new one) is filled as sessions end, so a cancelled replay leaves what it had."""
    loop = asyncio.get_running_loop()
    clock, k = loop.time, token_block
    content = _Content(k, seed)
    totals = Totals() if totals is None else totals

    def progressed() -> None:
        totals.progress += 1
        totals.progress_at = clock()

    async def wait(seconds: float) -> None:
        totals.sleeping += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            totals.sleeping -= 1
        progressed()

    async def agent(script: SessionScript) -> None:
        await wait(script.start_s)
        start = clock()
        try:
            async with pool.episode(script.session_id, max_turns=len(script.turns)) as model:
                for i, turn in enumerate(script.turns):
                    if i:
                        await model.pause([turn.tool])
                        await wait(turn.tool_pause_s or 0.0)
                    out = await model.generate(
                        content.text(turn), max_new_tokens=max(1, math.ceil(turn.output_length / k)), ignore_eos=True
                    )
                    totals.prompt += out.cache.prompt_tokens
                    totals.cached += out.cache.cached_tokens
                    totals.recomputed += out.cache.recomputed_tokens
                    totals.turns += 1
                    progressed()
                    timing = out.timings
                    totals.host_gap_s += max(0.0, timing.e2e_s - timing.ttft_s - timing.decode_s)
                    for record in out.retention:
                        if record.decision is RetentionDecision.QUEUED:
                            totals.waits += 1
                            totals.wait_s += record.wait_s
        except Exception as exc:  # a failed session is a result (e.g. the engine aborted it for lack of KV)
            totals.failed += 1
            totals.failures[f"{type(exc).__name__}: {exc}"[:600]] += 1
        else:
            totals.completed += 1
        totals.jct.append(clock() - start)
        totals.end = max(totals.end, clock())

    await asyncio.gather(*(agent(s) for s in scripts))
    return totals


async def _run_policy(scripts: list[SessionScript], policy: str, setup: SimulationSetup) -> PolicyResult:
    loop = asyncio.get_running_loop()
    clock = loop.time
    k = setup.token_block
    # The oracle's servers could each hold every agent's whole context: nothing is ever evicted.
    slots = math.ceil((peak_context(scripts) + 1024 * k) / k) if policy == "oracle" else server_kv_slots(scripts, setup)
    config = EngineConfig(
        executor="sim", sim_gpu=setup.gpu, sim_model=setup.model, sim_clock="virtual",
        # One scheduler iteration stands for k real ones (its decode step is k real steps), so it
        # prefills k real chunks: chunked_prefill_size simulated tokens. Dividing the chunk by k
        # starved prefill against decode k-fold and inflated `none`'s JCT by 20% at k=16.
        max_total_tokens=max(16, slots), chunked_prefill_size=setup.chunked_prefill_size,
        max_running_requests=setup.max_running_requests, enable_priority_scheduling=setup.priority_scheduling,
    )  # fmt: skip
    exhausted: list[KVExhaustion] = []
    stop = asyncio.Event()

    def on_exhausted(event: KVExhaustion) -> None:
        exhausted.append(event)
        stop.set()

    watch = on_exhausted if policy == "unbounded" else None
    servers = [
        SimulatedServer(f"sim://server-{i}", config, token_block=k, on_kv_exhausted=watch,
                        host_request_s=setup.host_request_s, host_step_s=setup.host_step_s)
        for i in range(setup.servers)
    ]  # fmt: skip
    fraction = 1.0 if policy in EXTRA_POLICIES else setup.kv_budget_fraction
    pool = BackendPool(
        list(servers),
        retention="session" if policy in EXTRA_POLICIES else split_policy(policy)[0],
        kv_budget_fraction=fraction,
        tokenizer=ByteTokenizer(),
        admission_overcommit=setup.admission_overcommit,
        clock=clock,
        **admission_mode(policy).pool_options(),
    )
    if policy == "unbounded":
        for budget in pool.budgets.values():  # SGLang has no budget: only the KV itself bounds the sessions
            budget.capacity = sys.maxsize
    pool.router.start_health_checks(pool._check, interval_s=1.0)
    t0 = clock()
    wall, cpu = time.perf_counter(), time.process_time()
    totals = Totals()
    stalled: list[str] = []
    stall_at: list[float] = []
    held = 0

    async def watchdog() -> None:
        # Progress is counted in events, not in virtual seconds: a tool pause or an arrival hours away is a
        # wake-up already scheduled, so the run is stuck only when nothing happened for stall_s and no agent
        # is waiting on its own clock (the pool's health checks alone keep a timer pending for ever).
        seen = -1
        while True:
            await asyncio.sleep(setup.stall_s)
            if totals.progress == seen and not totals.sleeping:
                left = len(scripts) - totals.completed - totals.failed
                stalled.append(
                    f"nothing happened between {totals.progress_at - t0:.1f} s and {clock() - t0:.1f} s (no turn "
                    f"finished, no agent arrived or ended a tool pause, none about to) with {left} of {len(scripts)} "
                    "sessions unfinished: the simulated system is stuck"
                )
                stall_at.append(totals.progress_at)
                stop.set()
                return
            seen = totals.progress

    try:
        run = asyncio.ensure_future(replay(pool, scripts, token_block=k, seed=setup.seed, totals=totals))
        guard = asyncio.ensure_future(watchdog())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
        # What the servers hold now, before a stopped run's cancelled episodes close their sessions.
        held = sum(s.engine.scheduler.cache.capacity - s.engine.scheduler.cache.freeable_tokens for s in servers)
        stopped.cancel()
        guard.cancel()
        if not run.done():  # SGLang would deadlock from here: end the run at this moment
            totals.end = clock()
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        else:
            run.result()
    finally:
        stats = pool.stats()
        await pool.aclose()
        for s in servers:
            await s.aclose()
        # A run stopped at a deadlock leaves the cancelled episodes' shielded session closes waiting on servers
        # that no longer step: end them here rather than let the loop's close destroy them pending.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
    makespan = (exhausted[0].at_s if exhausted else stall_at[0] if stall_at else totals.end) - t0
    jct = sorted(totals.jct)
    budget = sum(v["budget_tokens"] for v in stats["servers"].values()) * k
    return PolicyResult(
        policy=policy,
        agents=len(scripts),
        failed=totals.failed,
        failures=dict(totals.failures.most_common(5)),
        jct_mean_s=statistics.fmean(jct) if jct else None,
        jct_p50_s=statistics.median(jct) if jct else None,
        jct_p95_s=jct[min(len(jct) - 1, math.ceil(0.95 * len(jct)) - 1)] if jct else None,
        makespan_s=makespan,
        turns=totals.turns,
        turns_per_s=totals.turns / makespan if makespan > 0 else 0.0,
        prompt_tokens=totals.prompt * k,
        cached_tokens=totals.cached * k,
        recomputed_tokens=totals.recomputed * k,
        budget_tokens=0 if policy == "unbounded" else budget,
        peak_held_tokens=sum(v["peak_held_tokens"] for v in stats["servers"].values()) * k,
        admission_waits=totals.waits,
        admission_wait_s=totals.wait_s,
        decisions=stats["decisions"],
        gpu_busy=sum(s.busy_s for s in servers) / (len(servers) * makespan) if makespan > 0 else 0.0,
        wall_s=time.perf_counter() - wall,
        cpu_s=time.process_time() - cpu,
        completed=totals.completed,
        steps=sum(s.steps for s in servers),
        step_python_s=sum(s.step_python_s for s in servers),
        kv_exhausted=exhausted[0].describe() if exhausted else None,
        stalled=stalled[0] if stalled else None,
        kv_tokens=sum(s.engine.scheduler.cache.capacity for s in servers) * k,
        server_held_tokens=held * k,
    )


def simulate_policy(scripts: list[SessionScript], policy: str, setup: SimulationSetup) -> PolicyResult:
    """Run one policy on a fresh cluster and a fresh virtual clock."""
    check_policy(policy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sim's tensors are tiny: intra-op threads only spin and steal a core
    # The run allocates millions of short-lived objects (asyncio handles, futures) beside a large long-lived
    # heap (token lists, radix nodes): the cyclic collector's default thresholds rescan that heap so often that
    # it grew faster than the run (-22% CPU on 500 agents x 4 servers with these, same results). What exists
    # before the run (the scripts) is frozen out of collection altogether.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        return run_virtual(_run_policy(scripts, policy, setup))
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        torch.set_num_threads(threads)


def simulate_policies(
    scripts: list[SessionScript], policies: list[str], setup: SimulationSetup, *, jobs: int = 1
) -> Iterator[PolicyResult]:
    """Each policy's result as it finishes; ``jobs`` > 1 runs that many policies at once in worker processes
    (each run is single-threaded and independent, so N cores finish N policies in the time of one)."""
    for policy in policies:
        check_policy(policy)
    if jobs <= 1 or len(policies) <= 1:
        for policy in policies:
            yield simulate_policy(scripts, policy, setup)
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or loops
    with ProcessPoolExecutor(max_workers=min(jobs, len(policies)), mp_context=context) as workers:
        futures = [workers.submit(simulate_policy, scripts, policy, setup) for policy in policies]
        for future in as_completed(futures):
            yield future.result()


__all__ = ["EXTRA_POLICIES", "PolicyResult", "SimulationSetup", "check_policy", "simulate_policies", "simulate_policy"]
