"""``EpisodeWorker``: a Ray actor that runs many episodes concurrently on its own asyncio loop.

Each actor owns one ``BackendPool`` (its share of the KV budget: ``kv_budget_fraction / n_actors``),
builds each job's agent and tools once (``prepare``), and runs episodes on request. It returns
trajectories as compact JSON; the ``JobRunner`` stores them, so an actor dying mid-episode loses
only in-flight work, which the runner retries on a fresh actor.

Cancelling a job (``cancel``) cancels its running episodes' tasks: the graph stops at its next
await, the episode's model handle is closed by its ``async with`` (the streaming session is closed
on the server), and the partial trajectory comes back with termination ``cancelled``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from interleaf.agents import Agent, AgentModel, Episode, TaskSuite, get_agent, load_suite, registered_suites
from interleaf.runtime.client import AdmissionMode, BackendPool, RetentionPolicyName
from interleaf.runtime.jobs.episode_channel import serve_episodes
from interleaf.runtime.jobs.spec import JobSpec
from interleaf.runtime.jobs.store import dump_trajectory
from interleaf.telemetry.records import TerminationReason, Trajectory
from interleaf.text import printable

ModelFactory = Callable[[str], AbstractAsyncContextManager[AgentModel]]
"""``factory(episode_id)`` -> an async context manager yielding the episode's ``AgentModel``."""

ShippedSuites = dict[str, bytes | str]
"""Suite factories registered in the driver, for its actors: each cloudpickled, or (a str) why it
could not be (said only when a job uses that suite)."""


def ship_suites(factories: dict[str, Callable[[int, int], TaskSuite]] | None = None) -> ShippedSuites:
    """The driver's registered suites (``interleaf.agents.registered_suites``; ``factories``
    instead when given) as ``EpisodeWorker`` takes them. The factory travels, not its tasks: an
    actor builds the suite itself, so a 100k-task suite costs the size of its function."""
    from ray import cloudpickle

    shipped: ShippedSuites = {}
    for name, factory in (registered_suites() if factories is None else factories).items():
        try:
            shipped[name] = cloudpickle.dumps(factory)
        except Exception as exc:  # any pickling failure: named if a job uses the suite
            shipped[name] = f"{type(exc).__name__}: {exc}"
    return shipped


def trajectory_id(job_id: str, episode: int, attempt: int) -> str:
    """Deterministic trajectory id: the same (job, episode, attempt) always names the same record."""
    return f"{job_id}-e{episode}-a{attempt}"


@dataclass
class _PreparedJob:
    agent: Agent
    suite: TaskSuite
    retention: RetentionPolicyName


# JobSpec fields that override the same-named ``Budgets`` field when set.
_BUDGET_OVERRIDES = ("max_turns", "max_tokens", "max_new_tokens", "wall_time_s")


def build_job_agent(spec: JobSpec, agent: Agent | None, suite: TaskSuite) -> Agent:
    """The agent a job runs: the named (or given) agent, plus the suite's tools, with the spec's
    budget and temperature overrides applied."""
    base = agent or get_agent(spec.agent)
    own = list(base.toolset)
    names = {t.name for t in own}
    tools = own + [t for t in suite.make_tools() if t.name not in names]
    overrides = {k: getattr(spec, k) for k in _BUDGET_OVERRIDES if getattr(spec, k) is not None}
    budgets = dataclasses.replace(base.budgets, **overrides)
    temperature = base.temperature if spec.temperature is None else spec.temperature
    return dataclasses.replace(base, tools=tools, budgets=budgets, temperature=temperature)


class EpisodeError(RuntimeError):
    """An episode's own error, ``"<ExceptionType>: <message>"``, its message escaped where UTF-8 could
    not carry it (``EpisodeWorker.run_episode``)."""


class EpisodeWorker:
    """Runs episodes for jobs. Create with ``EpisodeWorker.remote(...)`` through ``worker_actor``."""

    def __init__(
        self,
        backend_urls: list[str],
        *,
        retention: RetentionPolicyName = RetentionPolicyName.SESSION,
        kv_budget_fraction: float = 0.5,
        admission: AdmissionMode = AdmissionMode.DEFER,
        admission_overcommit: float = 1.0,
        kv_share: float = 1.0,
        model_factory: ModelFactory | None = None,
        name: str = "",
        suites: ShippedSuites | None = None,
    ) -> None:
        """``suites``: the driver's registered suites (``ship_suites``), which this actor's process
        never registered; they take precedence over its own registry."""
        self.backend_urls = list(backend_urls)
        self.retention = retention
        self.kv_budget_fraction = kv_budget_fraction
        self.admission = admission
        self.admission_overcommit = admission_overcommit
        self.kv_share = kv_share
        """This actor's share of each server's KV (1/actors: the actors share the servers)."""
        self.name = name
        self._model_factory = model_factory
        self._suites = dict(suites or {})
        self._pool: BackendPool | None = None
        self._pool_lock = asyncio.Lock()
        self._jobs: dict[str, _PreparedJob] = {}
        self._running: dict[tuple[str, int], tuple[asyncio.Task, list[Episode]]] = {}
        self._cancelled: set[str] = set()
        self.episodes_run = 0
        self._channel: asyncio.Server | None = None
        self._closed = asyncio.Event()
        self._tracing: Any = None
        if any(k.startswith("OTEL_EXPORTER_OTLP") and k.endswith("ENDPOINT") for k in os.environ):
            # Spans leave the actor only when an OTLP endpoint is configured (standard variables);
            # otherwise the episode's spans stay no-ops.
            from interleaf.telemetry.tracing import configure_tracing

            self._tracing = configure_tracing(service_name=os.environ.get("OTEL_SERVICE_NAME") or "interleaf-worker")

    async def ping(self) -> dict[str, Any]:
        """Liveness and load: pid, Ray node id, running episodes, episodes run so far."""
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        running, done = len(self._running), self.episodes_run
        return {"pid": os.getpid(), "node": node, "name": self.name, "running": running, "done": done}

    async def open_channel(self, token: str, driver_ip: str) -> tuple[str, int]:
        """Listen for the runner's episode channel (``episode_channel``); returns (host, port). On the
        driver's node it listens on loopback, elsewhere on this node's address."""
        if self._channel is not None:  # a runner reconnecting: only its new token opens the channel
            self._channel.close()
        node_ip = ray.util.get_node_ip_address() if ray.is_initialized() else driver_ip
        host = "127.0.0.1" if node_ip == driver_ip else node_ip
        self._channel = await serve_episodes(self._run_episode, token, host)
        host, port = self._channel.sockets[0].getsockname()[:2]
        return host, port

    async def watch(self) -> None:
        """Returns when the worker is closed; the runner keeps one pending so that Ray tells it when
        the actor dies (a lost node does not always reset its connections)."""
        await self._closed.wait()

    async def pool_stats(self) -> dict[str, Any] | None:
        """``BackendPool.stats()`` (held tokens and budget per server), for the runner's KV samples; None
        before the first episode opened the pool, or with a ``model_factory``."""
        return self._pool.stats() if self._pool is not None else None

    async def prepare(self, job_id: str, spec: JobSpec, agent: Agent | None = None) -> int:
        """Build the job's suite and agent (deterministic, so every actor agrees); returns task count.
        ``agent``: the job's agent resolved by the caller (else ``spec.agent`` from this process's registry)."""
        if job_id not in self._jobs:
            suite = load_suite(spec.suite, spec.n, spec.seed, factories=self._shipped_suite(spec.suite))
            self._jobs[job_id] = _PreparedJob(build_job_agent(spec, agent, suite), suite, spec.retention)
        return len(self._jobs[job_id].suite)

    def _shipped_suite(self, name: str) -> dict[str, Callable[[int, int], TaskSuite]]:
        """The driver's factory for suite ``name`` ({} when the driver registered none)."""
        shipped = self._suites.get(name)
        if shipped is None:
            return {}
        if isinstance(shipped, str):
            raise ValueError(
                f"suite {name!r} is registered in the driver, but its factory could not be sent to the "
                f"actors ({shipped}); register a module-level function, or register it in a module the "
                "actors import too"
            )
        from ray import cloudpickle

        try:
            return {name: cloudpickle.loads(shipped)}
        except Exception as exc:  # e.g. its module cannot be imported on this node
            raise ValueError(
                f"suite {name!r}: the driver's factory cannot be loaded in the actor ({type(exc).__name__}: "
                f"{exc}); make its module importable on every node"
            ) from None

    async def _get_pool(self) -> BackendPool:
        async with self._pool_lock:
            pool = self._pool
            if pool is None:
                pool = self._pool = await BackendPool.connect(
                    self.backend_urls,
                    retention=self.retention,
                    kv_budget_fraction=self.kv_budget_fraction,
                    admission_overcommit=self.admission_overcommit,
                    kv_share=self.kv_share,
                    **self.admission.pool_options(),
                )
        return pool

    @asynccontextmanager
    async def _open_model(self, episode_id: str, max_turns: int | None = None) -> AsyncIterator[AgentModel]:
        if self._model_factory is not None:
            async with self._model_factory(episode_id) as model:
                yield model
            return
        pool = await self._get_pool()
        async with pool.episode(episode_id, max_turns=max_turns) as model:
            yield model

    async def run_episode(self, job_id: str, episode: int, attempt: int = 1) -> str:
        """Run one episode; returns its trajectory as compact JSON (``load_trajectory`` reads it). An
        error whose message UTF-8 cannot carry (a lone surrogate) is raised again as ``EpisodeError``
        with it escaped: Ray's worker process dies encoding such an error, which would read as the
        actor's death and lose the episode's reason (the episode channel escapes it itself)."""
        try:
            return await self._run_episode(job_id, episode, attempt)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if printable(text) == text:
                raise
            raise EpisodeError(printable(text)) from None

    async def _run_episode(self, job_id: str, episode: int, attempt: int = 1) -> str:
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"job {job_id!r} not prepared on worker {self.name!r}; call prepare() first")
        task = job.suite.tasks[episode]
        tid = trajectory_id(job_id, episode, attempt)
        holder: list[Episode] = []

        async def body() -> Trajectory:
            async with self._open_model(tid, job.agent.budgets.max_turns) as model:
                ep = Episode(
                    job.agent,
                    task,
                    model,
                    trajectory_id=tid,
                    job_id=job_id,
                    episode=episode,
                    attempt=attempt,
                    suite=job.suite.name,
                    system_extra=job.suite.system_prompt,
                    exemplars=job.suite.exemplars,
                    retention_policy=job.retention,
                    metadata={"worker": self.name, "suite_params": job.suite.params},
                )
                holder.append(ep)
                return await ep.run()

        key = (job_id, episode)
        if job_id in self._cancelled:
            return dump_trajectory(self._cancelled_record(job_id, episode, attempt, task.id))
        runner = asyncio.create_task(body())
        self._running[key] = (runner, holder)
        try:
            traj = await runner
        except asyncio.CancelledError:
            if job_id not in self._cancelled or not runner.cancelled():
                raise  # cancelled from outside (Ray), not by cancel(): propagate
            traj = holder[0].trajectory if holder else self._cancelled_record(job_id, episode, attempt, task.id)
            traj.termination = TerminationReason.CANCELLED
        finally:
            self._running.pop(key, None)
        self.episodes_run += 1
        return dump_trajectory(traj)

    def _cancelled_record(self, job_id: str, episode: int, attempt: int, task_id: str) -> Trajectory:
        return Trajectory(
            id=trajectory_id(job_id, episode, attempt),
            job_id=job_id,
            episode=episode,
            attempt=attempt,
            task_id=task_id,
            termination=TerminationReason.CANCELLED,
            error="job cancelled before the episode started",
        )

    async def cancel(self, job_id: str) -> int:
        """Cancel the job's running episodes (and refuse new ones); returns how many were running.
        Waits until they have wound down, sessions closed."""
        self._cancelled.add(job_id)
        tasks = [t for (j, _), (t, _) in self._running.items() if j == job_id]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def aclose(self) -> None:
        """Cancel everything and close the backend pool (call before killing the actor)."""
        for job_id in list(self._jobs):
            await self.cancel(job_id)
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._closed.set()
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        if self._tracing is not None:
            self._tracing.shutdown()  # flush spans before the actor is killed
            self._tracing = None


_placements = itertools.count()


def _next_node() -> Any:
    """Where the next actor goes: round-robin over the alive nodes that offer CPUs (a KubeRay head
    started with ``num-cpus: 0`` gets none). Zero-CPU actors would all pack on the driver's node by
    default, and Ray's ``SPREAD`` and soft affinity are best effort for them (3 actors on a fresh
    3-node cluster landed on 2 nodes here), so the affinity is hard; a node that dies before its
    actor starts fails that actor like any dead actor."""
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)
    if not nodes:
        return "SPREAD"
    return NodeAffinitySchedulingStrategy(nodes[next(_placements) % len(nodes)], soft=False)


def worker_actor(
    backend_urls: list[str],
    *,
    retention: RetentionPolicyName = RetentionPolicyName.SESSION,
    kv_budget_fraction: float = 0.5,
    admission: AdmissionMode = AdmissionMode.DEFER,
    admission_overcommit: float = 1.0,
    kv_share: float = 1.0,
    model_factory: ModelFactory | None = None,
    name: str = "",
    max_concurrency: int = 1000,
    num_cpus: float = 0,
    suites: ShippedSuites | None = None,
) -> Any:
    """Start an ``EpisodeWorker`` actor. ``max_concurrency`` bounds episodes running at once in it
    (plus control calls); ``num_cpus=0`` lets several actors share a small machine (the engine, not
    the actor, is the bottleneck). Successive actors go round-robin over the cluster's nodes
    (``_next_node``). ``suites``: what ``ship_suites()`` gives when None — the suites registered in
    this (the driver's) process, which the actor's process has not registered."""
    cls = ray.remote(EpisodeWorker)
    options = {"max_concurrency": max_concurrency, "num_cpus": num_cpus, "max_restarts": 0}
    return cls.options(**options, scheduling_strategy=_next_node()).remote(
        backend_urls,
        retention=retention,
        kv_budget_fraction=kv_budget_fraction,
        admission=admission,
        admission_overcommit=admission_overcommit,
        kv_share=kv_share,
        model_factory=model_factory,
        name=name,
        suites=ship_suites() if suites is None else suites,
    )


__all__ = [
    "EpisodeError",
    "EpisodeWorker",
    "ModelFactory",
    "ShippedSuites",
    "build_job_agent",
    "ship_suites",
    "trajectory_id",
    "worker_actor",
]
