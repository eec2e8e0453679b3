"""Jobs: a task suite run by an agent over ``EpisodeWorker`` actors, with results in Redis and JSONL.

``JobRunner`` spreads a job's episodes over ``spec.actors`` Ray actors, at most ``spec.concurrency``
at once (backpressure: a new episode is dispatched only when one finishes, to the least loaded
actor). Failure handling:

=======================================  ===================================================
cause                                    behaviour
=======================================  ===================================================
an actor dies (OOM, node lost, killed)   a fresh actor replaces it and is prepared before it
                                         gets episodes; its in-flight episodes are retried
                                         with ``attempt + 1``
an episode raises inside the actor       retried up to ``spec.max_attempts``, then recorded
                                         with termination ``error``
``cancel()``                             no new episodes; running ones are cancelled (their
                                         sessions closed) and recorded as ``cancelled``
the job has stored results already (its  they are kept and not run again; the others run
worker died, serve restarted)            (a ``job_resumed`` event instead of ``job_started``)
=======================================  ===================================================

While it runs, the runner records what it finds out about the servers as job events: a
``capability_missing`` event per server that lacks what the job asks for (streaming sessions for a
session-holding ``retention``), and a ``servers_sampled`` event with each backend's KV (the job's
held tokens from its actors' pools, the engine's ``/metrics`` KV usage) at the start, every
``sample_every_s`` and at the end.

Results are idempotent per (job, episode): the runner accepts one result per episode, and the
Redis store keys trajectories by episode, so a retry replaces and never duplicates.

Nothing slow runs on the caller's event loop (an API process serves requests on it): ``ray.init``,
building the suite and the final summary and export run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ray
from pydantic import BaseModel

from interleaf import settings
from interleaf.agents import Agent, get_agent, load_suite
from interleaf.runtime.client import ServerMetrics, parse_prometheus, probe_retention_gaps
from interleaf.runtime.jobs.episode_channel import ChannelClosed, EpisodeChannel, EpisodeFailed
from interleaf.runtime.jobs.ray_orphans import reap_orphaned_ray_agents
from interleaf.runtime.jobs.spec import JobSpec, check_job_id
from interleaf.runtime.jobs.store import (
    JobEvent,
    JobEventType,
    JobRecord,
    JobStatus,
    JobStore,
    ServerSample,
    dump_trajectory,
    error_story,
    error_text,
    load_trajectory,
    one_line,
    printable,
)
from interleaf.runtime.jobs.workers import ModelFactory, trajectory_id, worker_actor
from interleaf.telemetry.records import TerminationReason, Trajectory
from interleaf.telemetry.summary import JobSummary, summarize_job


class JobResult(BaseModel):
    """What ``JobRunner.run`` returns."""

    job_id: str
    """The job."""
    status: JobStatus
    """Final status."""
    trajectories: list[Trajectory]
    """One per finished episode, by episode index."""
    summary: JobSummary
    """Aggregate figures (``summarize_job`` of ``trajectories`` and the job's wall time)."""
    output_path: str
    """The JSONL export."""


def new_job_id() -> str:
    """A fresh job id: ``job-<date>-<time>-<6 hex>``."""
    return f"job-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def trajectories_path(job_id: str, runs_dir: Path | None = None) -> Path:
    """``<runs_dir>/<job-id>/trajectories.jsonl`` (``interleaf report`` reads it). Raises ValueError for a
    job id that is not a plain name (``JOB_ID_PATTERN``) or a path that would leave ``runs_dir``."""
    root = (runs_dir or settings.runs_dir()).resolve()
    path = (root / check_job_id(job_id) / "trajectories.jsonl").resolve()
    if not path.is_relative_to(root):  # a symlinked job directory pointing elsewhere
        raise ValueError(f"job_id={job_id!r}: its output {path} lies outside the runs directory {root}")
    return path


# ray.init blocks for seconds; it runs on this one long-lived thread (not on the caller's event loop, and
# not on a short-lived thread: Ray's driver state is tied to the thread that started it).
_RAY_INIT = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interleaf-ray-init")


async def ensure_ray_async(address: str | None = None) -> None:
    """``ensure_ray`` without blocking the running event loop."""
    if not ray.is_initialized():
        await asyncio.get_running_loop().run_in_executor(_RAY_INIT, ensure_ray, address)


def ensure_ray(address: str | None = None, *, num_cpus: int | None = 2) -> None:
    """``ray.init`` once: a private local instance (``num_cpus``) by default, or the cluster at
    ``address``. Without an address, Ray would attach to any cluster ``ray start`` left running on the
    machine (or ``RAY_ADDRESS``); ``address="local"`` keeps the default what it says."""
    if ray.is_initialized():
        return
    if address in (None, "", "local"):
        # The private local Ray runs without Ray's token auth (unless the environment says otherwise); a
        # cluster at ``address`` is joined with whatever auth its environment sets (deploy/: token mode).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Agents of a local Ray whose driver was killed (an earlier serve) linger for a minute each.
        reap_orphaned_ray_agents()
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(
            address="local", num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False
        )


def _headline(exc: BaseException) -> str:
    """``"<ExceptionType>: <first line of its message>"`` (Ray's errors carry whole tracebacks)."""
    return one_line(error_text(exc))


_REPLACE_ATTEMPTS = 10
"""Placements tried for a dead actor's replacement (about 30 s of back-off in all)."""
_REPLACE_TIMEOUT_S = 120.0
"""How long one replacement may take to start, be prepared and open its channel."""


class _Slot:
    """One actor position: the current handle, its episode channel and its load. A dead actor is
    replaced in place."""

    def __init__(self, index: int, handle: Any) -> None:
        self.index, self.handle, self.generation, self.load = index, handle, 0, 0
        self.ready = asyncio.Event()
        """Set while ``handle`` is prepared for the job: cleared during a replacement."""
        self.channel: EpisodeChannel | None = None
        """The hot path to the actor (None: episodes go as Ray actor calls)."""
        self.watcher: asyncio.Task[None] | None = None
        """Awaits the actor's ``watch()``: closes the channel when Ray reports the actor dead."""

    async def run_episode(self, job_id: str, episode: int, attempt: int) -> str:
        if self.channel is not None:
            return await self.channel.run_episode(job_id, episode, attempt)
        return await self.handle.run_episode.remote(job_id, episode, attempt)

    async def open_channel(self) -> None:
        """Connect the episode channel, and watch the actor through Ray so that a death the
        connection does not show (a lost node) still fails the channel's pending episodes."""
        token = secrets.token_urlsafe(24)
        host, port = await self.handle.open_channel.remote(token, ray.util.get_node_ip_address())
        channel = self.channel = await EpisodeChannel.connect(host, port, token)

        async def watch() -> None:
            try:
                await self.handle.watch.remote()
            except Exception as exc:  # RayActorError: the actor is gone
                channel.close(_headline(exc))

        self.watcher = asyncio.create_task(watch())

    def close_channel(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None
        if self.channel is not None:
            self.channel.close("the job closed the episode channel")
            self.channel = None


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
        worker: str | None = None,
        sample_every_s: float | None = 5.0,
        episode_channel: bool | None = None,
    ) -> None:
        """``worker``: the queue consumer running the job (named in ``job_resumed`` events).
        ``sample_every_s``: period of the ``servers_sampled`` events (None: none); they are recorded
        only for jobs on backend servers (no ``model_factory``). ``episode_channel``: dispatch
        episodes over a direct connection to each actor (``episode_channel``; False: as Ray actor
        calls, e.g. where the driver cannot reach the actors' nodes on other ports than Ray's; None:
        ``INTERLEAF_EPISODE_CHANNEL``, on by default)."""
        if not spec.backend_urls and model_factory is None:
            raise ValueError("JobSpec.backend_urls is empty: pass server URLs or use interleaf.runtime.jobs.embedded")
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
        self.worker = worker
        self.episode_channel = settings.episode_channel() if episode_channel is None else episode_channel
        if sample_every_s is not None and not sample_every_s > 0:
            raise ValueError(f"sample_every_s={sample_every_s!r}: must be > 0, or None for no samples")
        self.sample_every_s = sample_every_s if model_factory is None else None
        self.slots: list[_Slot] = []
        self.results: dict[int, Trajectory] = {}
        self.attempts: dict[int, int] = {}
        self.restarts = 0
        self._cancel = asyncio.Event()
        self._n_total = 0
        self._n_correct = 0
        """Correct episodes among ``results`` (kept for the store's job record)."""
        self._started = 0.0

    @property
    def actors(self) -> list[Any]:
        """Current actor handles (tests kill one to exercise recovery)."""
        return [s.handle for s in self.slots]

    def _spec_dict(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json") | {"job_id": self.job_id}

    async def _emit(self, type_: JobEventType, episode: int | None = None, **data: Any) -> None:
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
            admission=self.spec.admission,
            admission_overcommit=self.spec.admission_overcommit,
            kv_share=1 / self.spec.actors,
            model_factory=self.model_factory,
            name=f"{self.job_id}-w{index}",
            max_concurrency=max(64, 4 * per_actor + 16),
        )

    async def _prepare(self, slot: _Slot) -> int:
        count = await slot.handle.prepare.remote(self.job_id, self.spec, self.agent)
        if self.episode_channel:
            await slot.open_channel()
        return count

    async def _place(self, slot: _Slot, timeout_s: float | None) -> tuple[int, int, str]:
        """Prepare ``slot``'s actor for the job (and open its channel); an actor that dies meanwhile (OOM,
        its node lost, killed) is replaced and the new one prepared, ``_REPLACE_ATTEMPTS`` placements in
        all, backing off. Returns (the job's episode count, placements, why the last one was replaced).

        A replacement can die at once: the episode channel closes the moment an actor's process dies,
        often before Ray has marked its node dead, and one placed there meanwhile fails to start."""
        why = ""
        for attempt in range(1, _REPLACE_ATTEMPTS + 1):
            if attempt > 1:
                slot.close_channel()
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(slot.handle, no_restart=True)
                slot.handle = self._new_actor(slot.index)
            try:
                return await asyncio.wait_for(self._prepare(slot), timeout_s), attempt, why
            except ray.exceptions.RayTaskError:
                raise  # prepare() itself failed: a new actor would fail the same way
            except (ray.exceptions.RayError, ConnectionError, TimeoutError) as exc:
                if attempt == _REPLACE_ATTEMPTS:
                    raise
                why = _headline(exc)
                await asyncio.sleep(min(0.5 * attempt, 5.0))
        raise AssertionError("unreachable: the last placement returns or raises")

    async def _restart(self, slot: _Slot, generation: int, why: str) -> None:
        """Replace a dead actor once per death (several in-flight episodes notice the same death)."""
        if slot.generation != generation:
            return
        slot.generation += 1
        slot.ready.clear()  # lanes wait rather than send episodes to an actor that cannot run them yet
        self.restarts += 1
        slot.close_channel()
        with contextlib.suppress(Exception):  # already gone
            ray.kill(slot.handle, no_restart=True)
        slot.handle = self._new_actor(slot.index)
        _, placements, _ = await self._place(slot, _REPLACE_TIMEOUT_S)
        slot.ready.set()
        await self._emit(JobEventType.WORKER_RESTARTED, worker=slot.index, reason=why, placements=placements)

    async def run(self) -> JobResult:
        """Run every episode (or until cancelled); store and export the results."""
        await ensure_ray_async(self.ray_address)
        self._started = time.time()
        self.slots = [_Slot(i, self._new_actor(i)) for i in range(self.spec.actors)]
        try:
            # No time limit on a first placement: on a busy cluster an actor may wait long for its CPU.
            placed = await asyncio.gather(*(self._place(s, None) for s in self.slots))
            self._n_total = placed[0][0]
            # Raises UnreadableTrajectory for a stored result this version cannot read: the job fails naming
            # it rather than run that episode again over what is stored.
            resumed = await self._load_stored() if self.store is not None else False
        except BaseException:
            await self._shutdown_actors()
            raise
        for slot in self.slots:
            slot.ready.set()
        if resumed:
            await self._emit(
                JobEventType.JOB_RESUMED, n_total=self._n_total, n_done=len(self.results), actors=self.spec.actors,
                worker=self.worker,
            )  # fmt: skip
        else:
            await self._emit(JobEventType.JOB_STARTED, n_total=self._n_total, actors=self.spec.actors)
        for slot, (_, placements, why) in zip(self.slots, placed, strict=True):
            if placements > 1:  # an actor died while it was being prepared
                self.restarts += 1
                await self._emit(JobEventType.WORKER_RESTARTED, worker=slot.index, reason=why, placements=placements)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        kept = "".join(dump_trajectory(self.results[k]) + "\n" for k in sorted(self.results))
        await asyncio.to_thread(self.output_path.write_text, kept)  # a resumed 100k-episode job: seconds
        if self.model_factory is None:  # scripted models have no server to ask
            await self._report_gaps()

        # Lanes take the next index (no 100k-entry queue built on the loop); stored episodes are not rerun.
        queue = (e for e in range(self._n_total) if e not in self.results)
        status = JobStatus.SUCCEEDED
        error: BaseException | None = None
        lanes = [asyncio.create_task(self._lane(queue)) for _ in range(self.spec.concurrency)]
        sampling_done = asyncio.Event()
        sampler = asyncio.create_task(self._sample_loop(sampling_done)) if self.sample_every_s is not None else None
        try:
            await asyncio.gather(*lanes)
            if sampler is not None:  # the job's end, while the actors' pools still hold their figures
                with contextlib.suppress(Exception):  # a sample is worth less than the job: never fail it
                    await asyncio.wait_for(self._sample(), 10)
        except Exception as exc:
            status, error = JobStatus.FAILED, exc
            for lane in lanes:
                lane.cancel()
        finally:
            if sampler is not None:
                # Told to stop, not only cancelled: a cancel landing inside a Redis call can be swallowed there
                # (redis-py 8.1; the queue's watcher had the same), and the loop would sample for ever.
                sampling_done.set()
                sampler.cancel()
                await asyncio.wait([sampler], timeout=15)
            await self._shutdown_actors()
        if self._cancel.is_set():
            status = JobStatus.CANCELLED
        return await self._finish(status, error)

    async def _load_stored(self) -> bool:
        """Create or update the job's record; take over its stored results. True when the job had
        started before (another worker or an earlier ``interleaf serve`` ran part of it)."""
        assert self.store is not None
        record = await self.store.get_job(self.job_id)
        if record is None:
            await self.store.create_job(JobRecord(id=self.job_id, spec=self._spec_dict(), n_total=self._n_total))
        kept = await self.store.get_trajectories(self.job_id)
        self.results = {t.episode: t for t in kept if 0 <= t.episode < self._n_total}
        self._n_correct = sum(1 for t in self.results.values() if t.correct)
        resumed = bool(self.results) or (record is not None and record.started_at is not None)
        if resumed and record is not None and record.started_at is not None:
            self._started = record.started_at  # the job's wall time runs from its first start
        await self.store.update_job(
            self.job_id, status=JobStatus.RUNNING, started_at=self._started, n_total=self._n_total,
            output_path=str(self.output_path), n_done=len(self.results),
            n_correct=self._n_correct,
        )  # fmt: skip
        return resumed

    async def _report_gaps(self) -> None:
        """A ``capability_missing`` event per server that lacks what the job asks for."""
        try:
            gaps = await asyncio.wait_for(probe_retention_gaps(self.spec.backend_urls, self.spec.retention), 30)
        except Exception:  # a report is worth less than the job; the pool names a dead server itself
            return
        for gap in gaps:
            await self._emit(JobEventType.CAPABILITY_MISSING, message=gap.message(), **gap.model_dump(mode="json"))

    async def _sample_loop(self, done: asyncio.Event) -> None:
        """A ``servers_sampled`` event every ``sample_every_s`` until ``done`` is set."""
        assert self.sample_every_s is not None
        while not done.is_set():
            await self._sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.sample_every_s)

    async def _sample(self) -> None:
        """One ``servers_sampled`` event: the actors' pool figures and the engines' ``/metrics``."""
        samples = {url: ServerSample() for url in self.spec.backend_urls}
        stats = await asyncio.gather(
            *(asyncio.wait_for(s.handle.pool_stats.remote(), 5) for s in self.slots), return_exceptions=True
        )
        for pool in stats:
            if not isinstance(pool, dict):  # an actor being replaced, or one without a pool yet
                continue
            for url, figures in pool["servers"].items():
                sample = samples.setdefault(url, ServerSample())
                sample.held_tokens = (sample.held_tokens or 0) + int(figures.get("held_tokens") or 0)
                sample.budget_tokens = (sample.budget_tokens or 0) + int(figures.get("budget_tokens") or 0)
                sample.max_total_num_tokens = figures.get("max_total_num_tokens") or sample.max_total_num_tokens
                sample.open_episodes = (sample.open_episodes or 0) + int(pool.get("open_episodes") or 0)

        async def scrape(client: httpx.AsyncClient, url: str) -> None:
            try:
                response = await client.get(f"{url.rstrip('/')}/metrics")
                response.raise_for_status()
            except httpx.HTTPError:
                return  # no /metrics (SGLang without --enable-metrics) or the server is down
            metrics = ServerMetrics(parse_prometheus(response.text))
            sample = samples[url]
            sample.kv_used_tokens = metrics.kv_used_tokens
            sample.kv_available_tokens = metrics.kv_available_tokens
            sample.session_held_tokens = metrics.streaming_session_held_tokens

        async with httpx.AsyncClient(timeout=2.0) as client:
            await asyncio.gather(*(scrape(client, url) for url in self.spec.backend_urls))
        with contextlib.suppress(Exception):  # a sample is worth less than the job: never fail it
            await self._emit(
                JobEventType.SERVERS_SAMPLED, servers={u: s.model_dump(mode="json") for u, s in samples.items()}
            )

    async def _lane(self, queue: Iterator[int]) -> None:
        """One unit of concurrency: takes episodes until none is left or the job is cancelled."""
        while not self._cancel.is_set():
            episode = next(queue, None)
            if episode is None:
                return
            await self._run_one(episode)

    async def _run_one(self, episode: int) -> None:
        while True:
            attempt = self.attempts.get(episode, 0) + 1
            self.attempts[episode] = attempt
            ready = [s for s in self.slots if s.ready.is_set()]
            slot = min(ready or self.slots, key=lambda s: s.load)
            await slot.ready.wait()  # only when every actor is being replaced
            generation = slot.generation
            slot.load += 1
            await self._emit(JobEventType.EPISODE_STARTED, episode, attempt=attempt, worker=slot.index)
            try:
                raw = await slot.run_episode(self.job_id, episode, attempt)
                traj = load_trajectory(raw)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ChannelClosed) as exc:
                why = _headline(exc)
                if self._cancel.is_set():
                    return
                await self._restart(slot, generation, why)
                if attempt >= self.spec.max_attempts:
                    await self._accept(self._failed(episode, attempt, f"worker died {attempt} times; last: {why}"))
                    return
                await self._emit(JobEventType.EPISODE_RETRIED, episode, attempt=attempt, reason=why)
                continue
            except Exception as exc:  # RayTaskError, or an error Ray could not bring back (unpicklable)
                if isinstance(exc, EpisodeFailed):
                    why = str(exc)
                elif isinstance(exc, ray.exceptions.RayTaskError):
                    why = printable((str(exc).strip().splitlines() or [""])[-1])
                else:
                    why = printable(f"{type(exc).__name__}: {str(exc).strip()[:500]}")
                if attempt >= self.spec.max_attempts or self._cancel.is_set():
                    await self._accept(self._failed(episode, attempt, why))
                    return
                await self._emit(JobEventType.EPISODE_RETRIED, episode, attempt=attempt, reason=why)
                continue
            finally:
                slot.load -= 1
            await self._accept(traj, raw)
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

    async def _accept(self, traj: Trajectory, raw: str | None = None) -> None:
        """Record an episode's result, once (a duplicate late result is dropped). ``raw``: the
        trajectory's JSON as the actor sent it (``dump_trajectory``), stored as is rather than
        serialised again."""
        if traj.episode in self.results:
            return
        self.results[traj.episode] = traj
        line = dump_trajectory(traj) if raw is None else raw
        # Counted here, not summed over all results per episode (that made a job O(episodes²)).
        self._n_correct += bool(traj.correct)
        if self.store is not None:
            await self.store.put_trajectory(traj, line)
            await self.store.update_job(self.job_id, n_done=len(self.results), n_correct=self._n_correct)
        with self.output_path.open("a") as f:
            f.write(line + "\n")
        await self._emit(
            JobEventType.EPISODE_FINISHED,
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
        await self._emit(JobEventType.JOB_CANCELLED)
        await asyncio.gather(*(s.handle.cancel.remote(self.job_id) for s in self.slots), return_exceptions=True)

    async def _shutdown_actors(self) -> None:
        async def close(slot: _Slot) -> None:
            with contextlib.suppress(Exception):  # a dead actor has nothing to close
                await asyncio.wait_for(slot.handle.aclose.remote(), 30)
            slot.close_channel()
            ray.kill(slot.handle, no_restart=True)

        await asyncio.gather(*(close(s) for s in self.slots), return_exceptions=True)

    def _write_outputs(self, trajectories: list[Trajectory], wall: float) -> JobSummary:
        summary = summarize_job(trajectories, wall_s=wall)
        # Rewrite the export in episode order (lines were appended as episodes finished).
        tmp = self.output_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(dump_trajectory(t) + "\n" for t in trajectories))
        tmp.replace(self.output_path)
        (self.output_path.parent / "summary.json").write_text(
            json.dumps({"job_id": self.job_id, "spec": self._spec_dict(), **summary.model_dump(mode="json")}, indent=2)
        )
        return summary

    async def _finish(self, status: JobStatus, error: BaseException | None) -> JobResult:
        """Record the end. ``error``'s first line (capped) is ``JobRecord.error``, which listings print;
        its whole text (Ray's errors carry the remote traceback) is the ``job_failed`` event's ``detail``."""
        trajectories = [self.results[k] for k in sorted(self.results)]
        wall = time.time() - self._started
        summary = await asyncio.to_thread(self._write_outputs, trajectories, wall)  # ~s for 100k episodes
        detail = error_story(error) if error is not None else None
        reason = one_line(error_text(error)) if error is not None else None
        if self.store is not None:
            await self.store.update_job(
                self.job_id, status=status, finished_at=time.time(), summary=summary, error=reason,
                n_done=len(trajectories),
            )  # fmt: skip
        kind = JobEventType.JOB_FAILED if status == JobStatus.FAILED else JobEventType.JOB_FINISHED
        data: dict[str, Any] = {"status": status.value}
        if reason is not None:
            data["error"] = reason
            if detail != reason:
                data["detail"] = detail
        await self._emit(kind, **data)
        return JobResult(
            job_id=self.job_id,
            status=status,
            trajectories=trajectories,
            summary=summary,
            output_path=str(self.output_path),
        )


async def run_job(spec: JobSpec, **kwargs: Any) -> JobResult:
    """Run ``spec`` to the end with a ``JobRunner`` (keyword arguments go to it)."""
    return await JobRunner(spec, **kwargs).run()


__all__ = [
    "JobResult",
    "JobRunner",
    "ensure_ray",
    "ensure_ray_async",
    "run_job",
    "trajectories_path",
]
