"""Jobs: a task suite run by an agent over ``EpisodeWorker`` actors, with results in Redis and JSONL.

``JobRunner`` spreads a job's episodes over ``spec.actors`` Ray actors, at most ``spec.concurrency``
at once (backpressure: a new episode is dispatched only when one finishes, to the least loaded
actor). Failure handling:

=======================================  ===================================================
cause                                    behaviour
=======================================  ===================================================
an actor dies (OOM, node lost, killed)   a fresh actor replaces it; its in-flight episodes
                                         are retried there with ``attempt + 1``
an episode raises inside the actor       retried up to ``spec.max_attempts``, then recorded
                                         with termination ``error``
``cancel()``                             no new episodes; running ones are cancelled (their
                                         sessions closed) and recorded as ``cancelled``
=======================================  ===================================================

Results are idempotent per (job, episode): the runner accepts one result per episode, and the
Redis store keys trajectories by episode, so a retry replaces and never duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, Field, field_validator

from interleaf.agents import Agent, get_agent, load_suite
from interleaf.runtime.store import JobEvent, JobRecord, JobStatus, JobStore, dump_trajectory, load_trajectory
from interleaf.runtime.workers import ModelFactory, trajectory_id, worker_actor
from interleaf.telemetry.records import TerminationReason, Trajectory


class JobSpec(BaseModel):
    """What to run: suite, agent, scale, backends, retention, budgets. Persisted with the job."""

    suite: str = "arith"
    """Task suite: arith | lookup | mixed | a registered name | a path to a ``.jsonl`` file."""
    n: int = Field(default=20, ge=1)
    """Number of tasks (episodes)."""
    seed: int = 0
    """Seed of the suite's generator."""
    agent: str = "tir"
    """Registered agent name (``interleaf.agents.register_agent``)."""
    concurrency: int = Field(default=8, ge=1)
    """Episodes running at once across all actors."""
    actors: int = Field(default=2, ge=1)
    """Number of ``EpisodeWorker`` actors."""
    backend_urls: list[str] = Field(default_factory=list)
    """SGLang-protocol servers (the router spreads episodes over them)."""
    retention: str = "adaptive"
    """Retention policy: none | session | ttl | adaptive (``interleaf.runtime.retention``)."""
    kv_budget_fraction: float = Field(default=0.5, gt=0, le=1)
    """Share of each server's KV capacity that held sessions may use, split over the actors."""
    max_turns: int | None = Field(default=None, ge=1)
    """Override the agent's turn budget."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Override the agent's token budget (whole sequence)."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Override the agent's per-turn generation cap."""
    wall_time_s: float | None = Field(default=None, gt=0)
    """Override the agent's per-episode wall-time budget, seconds."""
    temperature: float | None = Field(default=None, ge=0)
    """Override the agent's sampling temperature."""
    max_attempts: int = Field(default=3, ge=1)
    """Attempts per episode across actor deaths and worker errors."""
    job_id: str | None = None
    """Job id; generated when omitted."""

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, value: str) -> str:
        if value not in ("none", "session", "ttl", "adaptive"):
            raise ValueError(f"retention must be none, session, ttl or adaptive, got {value!r}")
        return value


class JobSummary(BaseModel):
    """Aggregate figures of a job's trajectories."""

    episodes: int = 0
    """Episodes with a result."""
    scored: int = 0
    """Episodes with a reference answer."""
    correct: int = 0
    """Episodes judged correct."""
    accuracy: float | None = None
    """correct / scored."""
    mean_turns: float = 0.0
    """Mean LLM calls per episode."""
    prompt_tokens: int = 0
    """Sum over turns of the context length the engine saw."""
    cached_tokens: int = 0
    """Sum over turns of prompt tokens served from cache."""
    recomputed_tokens: int = 0
    """Sum over turns of tokens prefilled again after eviction or release."""
    completion_tokens: int = 0
    """Tokens generated."""
    tool_calls: int = 0
    """Tool calls made."""
    cache_hit_rate: float | None = None
    """cached_tokens / prompt_tokens."""
    terminations: dict[str, int] = Field(default_factory=dict)
    """Episodes per termination reason."""
    wall_s: float = 0.0
    """Job wall time, seconds."""
    episode_wall_p50_s: float | None = None
    """Median episode wall time, seconds."""


def summarize(trajectories: list[Trajectory], wall_s: float = 0.0) -> JobSummary:
    """Figures of a set of trajectories (the job summary)."""
    s = JobSummary(episodes=len(trajectories), wall_s=wall_s)
    for t in trajectories:
        if t.expected is not None:
            s.scored += 1
            s.correct += int(bool(t.correct))
        s.tool_calls += t.tool_call_count
        s.terminations[t.termination.value] = s.terminations.get(t.termination.value, 0) + 1
        for turn in t.turns:
            s.prompt_tokens += turn.cache.prompt_tokens
            s.cached_tokens += turn.cache.cached_tokens
            s.recomputed_tokens += turn.cache.recomputed_tokens
            s.completion_tokens += len(turn.completion_ids)
    if trajectories:
        s.mean_turns = sum(len(t.turns) for t in trajectories) / len(trajectories)
        s.episode_wall_p50_s = statistics.median(t.wall_s for t in trajectories)
    s.accuracy = s.correct / s.scored if s.scored else None
    s.cache_hit_rate = s.cached_tokens / s.prompt_tokens if s.prompt_tokens else None
    return s


def summary_rows(
    trajectories: list[Trajectory], wall_s: float = 0.0, *, summary: JobSummary | None = None
) -> list[tuple[str, str]]:
    """(label, value) rows of the run summary table. The one place to add figures: telemetry's PTE
    and inefficiency patterns belong here, computed from the same trajectories. ``summary``: the
    ``summarize`` result when the caller has it already."""
    s = summary or summarize(trajectories, wall_s)

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    rows = [
        ("episodes", str(s.episodes)),
        ("accuracy", f"{pct(s.accuracy)} ({s.correct}/{s.scored})"),
        ("mean turns", f"{s.mean_turns:.2f}"),
        ("tool calls", str(s.tool_calls)),
        ("prompt tokens", str(s.prompt_tokens)),
        ("completion tokens", str(s.completion_tokens)),
        ("cache hit rate", pct(s.cache_hit_rate)),
        ("recomputed tokens", str(s.recomputed_tokens)),
        ("terminations", ", ".join(f"{k} {v}" for k, v in sorted(s.terminations.items()))),
        ("episode wall p50", "n/a" if s.episode_wall_p50_s is None else f"{s.episode_wall_p50_s:.1f} s"),
        ("wall time", f"{s.wall_s:.1f} s"),
    ]
    if trajectories:
        from interleaf.telemetry import summarize_job

        # PTE on the paper's reference GPU (H100 PCIe) for the model's published shape, and pattern counts.
        rows += summarize_job(trajectories).rows()
    return rows


class JobResult(BaseModel):
    """What ``JobRunner.run`` returns."""

    job_id: str
    """The job."""
    status: JobStatus
    """Final status."""
    trajectories: list[Trajectory]
    """One per finished episode, by episode index."""
    summary: JobSummary
    """Aggregate figures."""
    output_path: str
    """The JSONL export."""


def new_job_id() -> str:
    """A fresh job id: ``job-<date>-<time>-<6 hex>``."""
    return f"job-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def trajectories_path(job_id: str, runs_dir: Path | None = None) -> Path:
    """``<runs_dir>/<job-id>/trajectories.jsonl`` (``interleaf report`` reads it)."""
    from interleaf.settings import runs_dir as default_runs_dir

    return (runs_dir or default_runs_dir()) / job_id / "trajectories.jsonl"


def load_trajectories(path: str | Path) -> list[Trajectory]:
    """Read a JSONL export; each line is one trajectory (``prompt_ids``/``token_ids`` rebuild tokens)."""
    with open(path) as f:
        return [load_trajectory(line) for line in f if line.strip()]


def ensure_ray(address: str | None = None, *, num_cpus: int | None = 2) -> None:
    """``ray.init`` once: local (``num_cpus``) by default, or the cluster at ``address``."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)


class _Slot:
    """One actor position: the current handle and its load. A dead actor is replaced in place."""

    def __init__(self, index: int, handle: Any) -> None:
        self.index, self.handle, self.generation, self.load = index, handle, 0, 0


class JobRunner:
    """Runs one job to the end. ``await runner.run()``; ``await runner.cancel()`` from elsewhere."""

    def __init__(
        self,
        spec: JobSpec,
        *,
        store: JobStore | None = None,
        agent: Agent | None = None,
        model_factory: ModelFactory | None = None,
        ray_address: str | None = None,
        runs_dir: Path | None = None,
        on_event: Callable[[JobEvent], None] | None = None,
    ) -> None:
        if not spec.backend_urls and model_factory is None:
            raise ValueError("JobSpec.backend_urls is empty: pass server URLs or use interleaf.runtime.embedded")
        try:  # fail here, naming the field, rather than inside every actor
            load_suite(spec.suite, spec.n, spec.seed)
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"JobSpec.suite={spec.suite!r}: {exc}") from exc
        self.spec = spec
        self.job_id = spec.job_id or new_job_id()
        self.store = store
        # Resolved here, in the driver, so agents registered in the user's process reach the actors.
        self.agent = agent or get_agent(spec.agent)
        self.model_factory = model_factory
        self.ray_address = ray_address
        self.output_path = trajectories_path(self.job_id, runs_dir)
        self.on_event = on_event
        self.slots: list[_Slot] = []
        self.results: dict[int, Trajectory] = {}
        self.attempts: dict[int, int] = {}
        self.restarts = 0
        self._cancel = asyncio.Event()
        self._n_total = 0
        self._started = 0.0

    @property
    def actors(self) -> list[Any]:
        """Current actor handles (tests kill one to exercise recovery)."""
        return [s.handle for s in self.slots]

    def _spec_dict(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json") | {"job_id": self.job_id}

    async def _emit(self, type_: str, episode: int | None = None, **data: Any) -> None:
        event = JobEvent(type=type_, job_id=self.job_id, episode=episode, data=data)
        if self.on_event is not None:
            self.on_event(event)
        if self.store is not None:
            await self.store.add_event(event)

    def _new_actor(self, index: int) -> Any:
        per_actor = max(1, -(-self.spec.concurrency // self.spec.actors))
        return worker_actor(
            self.spec.backend_urls,
            retention=self.spec.retention,
            kv_budget_fraction=self.spec.kv_budget_fraction / self.spec.actors,
            model_factory=self.model_factory,
            name=f"{self.job_id}-w{index}",
            max_concurrency=max(64, 4 * per_actor + 16),
        )

    async def _prepare(self, slot: _Slot) -> int:
        return await slot.handle.prepare.remote(self.job_id, self._spec_dict(), self.agent)

    async def _restart(self, slot: _Slot, generation: int, why: str) -> None:
        """Replace a dead actor once per death (several in-flight episodes notice the same death)."""
        if slot.generation != generation:
            return
        slot.generation += 1
        self.restarts += 1
        with contextlib.suppress(Exception):  # already gone
            ray.kill(slot.handle, no_restart=True)
        slot.handle = self._new_actor(slot.index)
        await self._prepare(slot)
        await self._emit("worker_restarted", worker=slot.index, reason=why)

    async def run(self) -> JobResult:
        """Run every episode (or until cancelled); store and export the results."""
        ensure_ray(self.ray_address)
        self._started = time.time()
        self.slots = [_Slot(i, self._new_actor(i)) for i in range(self.spec.actors)]
        try:
            counts = await asyncio.gather(*(self._prepare(s) for s in self.slots))
        except BaseException:
            await self._shutdown_actors()
            raise
        self._n_total = counts[0]
        if self.store is not None:
            record = await self.store.get_job(self.job_id)
            if record is None:
                await self.store.create_job(JobRecord(id=self.job_id, spec=self._spec_dict(), n_total=self._n_total))
            await self.store.update_job(
                self.job_id, status=JobStatus.RUNNING, started_at=self._started, n_total=self._n_total,
                output_path=str(self.output_path),
            )  # fmt: skip
        await self._emit("job_started", n_total=self._n_total, actors=self.spec.actors)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        self.output_path.write_text("")

        queue: asyncio.Queue[int] = asyncio.Queue()
        for ep in range(self._n_total):
            queue.put_nowait(ep)
        status = JobStatus.SUCCEEDED
        error: str | None = None
        lanes = [asyncio.create_task(self._lane(queue)) for _ in range(self.spec.concurrency)]
        try:
            await asyncio.gather(*lanes)
        except Exception as exc:
            status, error = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
            for lane in lanes:
                lane.cancel()
        finally:
            await self._shutdown_actors()
        if self._cancel.is_set():
            status = JobStatus.CANCELLED
        return await self._finish(status, error)

    async def _lane(self, queue: asyncio.Queue[int]) -> None:
        """One unit of concurrency: takes episodes until the queue is empty or the job is cancelled."""
        while not self._cancel.is_set():
            try:
                episode = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._run_one(episode)

    async def _run_one(self, episode: int) -> None:
        while True:
            attempt = self.attempts.get(episode, 0) + 1
            self.attempts[episode] = attempt
            slot = min(self.slots, key=lambda s: s.load)
            generation = slot.generation
            slot.load += 1
            await self._emit("episode_started", episode, attempt=attempt, worker=slot.index)
            try:
                raw = await slot.handle.run_episode.remote(self.job_id, episode, attempt)
                traj = load_trajectory(raw)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if self._cancel.is_set():
                    return
                await self._restart(slot, generation, why)
                if attempt >= self.spec.max_attempts:
                    await self._accept(self._failed(episode, attempt, f"worker died {attempt} times; last: {why}"))
                    return
                await self._emit("episode_retried", episode, attempt=attempt, reason=why)
                continue
            except ray.exceptions.RayTaskError as exc:
                why = str(exc).strip().splitlines()[-1]
                if attempt >= self.spec.max_attempts or self._cancel.is_set():
                    await self._accept(self._failed(episode, attempt, why))
                    return
                await self._emit("episode_retried", episode, attempt=attempt, reason=why)
                continue
            finally:
                slot.load -= 1
            await self._accept(traj)
            return

    def _failed(self, episode: int, attempt: int, why: str) -> Trajectory:
        return Trajectory(
            id=trajectory_id(self.job_id, episode, attempt),
            job_id=self.job_id,
            episode=episode,
            attempt=attempt,
            termination=TerminationReason.ERROR,
            error=why,
        )

    async def _accept(self, traj: Trajectory) -> None:
        """Record an episode's result, once (a duplicate late result is dropped)."""
        if traj.episode in self.results:
            return
        self.results[traj.episode] = traj
        if self.store is not None:
            await self.store.put_trajectory(traj)
            await self.store.update_job(
                self.job_id,
                n_done=len(self.results),
                n_correct=sum(1 for t in self.results.values() if t.correct),
            )
        with self.output_path.open("a") as f:
            f.write(dump_trajectory(traj) + "\n")
        await self._emit(
            "episode_finished",
            traj.episode,
            attempt=traj.attempt,
            termination=traj.termination.value,
            score=traj.score,
            turns=len(traj.turns),
        )

    async def cancel(self) -> None:
        """Stop dispatching, cancel running episodes (their sessions are closed), keep their records."""
        if self._cancel.is_set():
            return
        self._cancel.set()
        await self._emit("job_cancelled")
        await asyncio.gather(*(s.handle.cancel.remote(self.job_id) for s in self.slots), return_exceptions=True)

    async def _shutdown_actors(self) -> None:
        async def close(slot: _Slot) -> None:
            with contextlib.suppress(Exception):  # a dead actor has nothing to close
                await asyncio.wait_for(slot.handle.aclose.remote(), 30)
            ray.kill(slot.handle, no_restart=True)

        await asyncio.gather(*(close(s) for s in self.slots), return_exceptions=True)

    async def _finish(self, status: JobStatus, error: str | None) -> JobResult:
        trajectories = [self.results[k] for k in sorted(self.results)]
        wall = time.time() - self._started
        summary = summarize(trajectories, wall)
        # Rewrite the export in episode order (lines were appended as episodes finished).
        tmp = self.output_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(dump_trajectory(t) + "\n" for t in trajectories))
        tmp.replace(self.output_path)
        (self.output_path.parent / "summary.json").write_text(
            json.dumps({"job_id": self.job_id, "spec": self._spec_dict(), **summary.model_dump(mode="json")}, indent=2)
        )
        if self.store is not None:
            await self.store.update_job(
                self.job_id, status=status, finished_at=time.time(), summary=summary, error=error,
                n_done=len(trajectories),
            )  # fmt: skip
        await self._emit("job_finished" if status != JobStatus.FAILED else "job_failed", status=status.value)
        return JobResult(
            job_id=self.job_id,
            status=status,
            trajectories=trajectories,
            summary=summary,
            output_path=str(self.output_path),
        )


async def submit_job(store: JobStore, spec: JobSpec) -> JobRecord:
    """Record a job and put it on the Redis queue; a ``serve_jobs`` worker will run it."""
    job_id = spec.job_id or new_job_id()
    spec = spec.model_copy(update={"job_id": job_id})
    record = await store.create_job(JobRecord(id=job_id, spec=spec.model_dump(mode="json"), n_total=spec.n))
    await store.enqueue(job_id)
    return record


async def serve_jobs(
    store: JobStore,
    consumer: str,
    *,
    stop: asyncio.Event | None = None,
    reclaim_idle_ms: int = 60_000,
    poll_cancel_s: float = 0.5,
    **runner_kwargs: Any,
) -> int:
    """Worker loop: take jobs from the queue (first any a crashed worker left pending for
    ``reclaim_idle_ms``), run each with a ``JobRunner``, ack it. A job whose ``cancel_requested`` flag
    is set (``JobStore.request_cancel``) is cancelled. Runs until ``stop`` is set; returns jobs run.
    ``runner_kwargs`` go to ``JobRunner`` (ray_address, runs_dir, model_factory, agent)."""
    stop = stop or asyncio.Event()
    done = 0
    while not stop.is_set():
        entries = await store.reclaim(consumer, min_idle_ms=reclaim_idle_ms)
        if not entries:
            claimed = await store.claim(consumer, block_ms=500)
            entries = [claimed] if claimed else []
        for entry_id, job_id in entries:
            record = await store.get_job(job_id)
            if record is None or record.status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
                await store.ack(entry_id)  # finished before a crash, or deleted: nothing to do
                continue
            await store.update_job(job_id, worker=consumer)
            spec = JobSpec.model_validate(record.spec | {"job_id": job_id})
            runner = JobRunner(spec, store=store, **runner_kwargs)

            async def watch(r: JobRunner = runner, j: str = job_id) -> None:
                while not await store.cancel_requested(j):
                    await asyncio.sleep(poll_cancel_s)
                await r.cancel()

            watcher = asyncio.create_task(watch())
            try:
                if record.cancel_requested:
                    await store.update_job(job_id, status=JobStatus.CANCELLED, finished_at=time.time())
                else:
                    await runner.run()
            except Exception as exc:
                await store.update_job(job_id, status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            finally:
                watcher.cancel()
            await store.ack(entry_id)
            done += 1
    return done


async def run_job(spec: JobSpec, **kwargs: Any) -> JobResult:
    """Run ``spec`` to the end with a ``JobRunner`` (keyword arguments go to it)."""
    return await JobRunner(spec, **kwargs).run()


__all__ = [
    "JobResult",
    "JobRunner",
    "JobSpec",
    "JobSummary",
    "ensure_ray",
    "load_trajectories",
    "run_job",
    "serve_jobs",
    "submit_job",
    "summarize",
    "summary_rows",
    "trajectories_path",
]
