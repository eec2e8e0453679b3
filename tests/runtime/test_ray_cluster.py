"""A job on a multi-node Ray cluster on this machine: a head and two worker nodes
(``ray.cluster_utils.Cluster``), every process bound to 127.0.0.1. The job's actors are placed on
all three nodes; a worker node removed mid-job (its raylet and actors killed) loses no episode and
duplicates none. Real Ray, real Redis, real HTTP to the embedded engine (sim executor, real clock,
so episodes are in flight long enough to be caught); ``interleaf run --ray-address`` joins the
same cluster from another process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import ray._private.ray_constants as ray_constants
from ray.cluster_utils import Cluster

from interleaf.agents import Agent, Budgets
from interleaf.runtime.jobs import JobRunner, JobSpec
from interleaf.runtime.jobs.store import JobStatus, JobStore
from interleaf.telemetry.records import TerminationReason
from tests.conftest import start_engine, stop_process
from tests.waiting import wait_until_async

pytestmark = pytest.mark.slow

# Ray rewrites a loopback address given to ray.init into the host's interface address ("so that
# other machines can reach it"); with this off it keeps 127.0.0.1, where this cluster listens.
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Node death noticed in ~1 s instead of Ray's default ~30 s, so the test waits on recovery, not on it.
_FAST_HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 2}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, list]]:
    if ray.is_initialized():
        ray.shutdown()
    patch = pytest.MonkeyPatch()
    patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            "_system_config": _FAST_HEALTH,
        },
    )
    # The head recorded itself as this machine's current cluster, where any plain ray.init() (another
    # test process's local Ray) would join it: forget it; this test always names the address.
    ray._common.utils.reset_ray_address()
    try:
        workers = [c.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
        c.wait_for_nodes()
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()
        patch.undo()


@pytest.fixture(scope="module")
def sim_engine() -> Iterator[str]:
    proc, url = start_engine("--executor", "sim", "--sim-clock", "real")
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture
async def store(redis_url: str):
    s = JobStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    await s.aclose()


def episode_workers(c: Cluster) -> dict[str, dict]:
    """Every EpisodeWorker actor the cluster has known (dead ones too), from its GCS, by actor id."""
    return {k: v for k, v in c.global_state.actor_table(None).items() if v["ActorClassName"] == "EpisodeWorker"}


def sim_agent(turns: int) -> Agent:
    """The sim executor has no constrained decoding and writes no tool calls: the agent nudges it
    on until its turn budget (every episode ends ``max_turns``)."""
    return Agent(
        name="cluster",
        grammar=None,
        on_no_action="nudge",
        budgets=Budgets(max_turns=turns, max_new_tokens=24, max_tokens=8192, wall_time_s=None),
    )


async def test_worker_node_removed_mid_job_loses_and_duplicates_nothing(
    cluster, sim_engine: str, store: JobStore, tmp_path: Path
) -> None:
    c, workers = cluster
    n = 24
    spec = JobSpec(
        suite="arith", n=n, actors=3, concurrency=6, backend_urls=[sim_engine], retention="session",
        job_id=f"job-cluster-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    runner = JobRunner(spec, store=store, agent=sim_agent(4), ray_address=c.address, runs_dir=tmp_path)
    known = set(episode_workers(c))
    job = asyncio.create_task(runner.run())
    await wait_until_async(lambda: len(runner.slots) == 3 or job.done(), message="the job's 3 actors", timeout_s=60)

    async def placement() -> list[dict]:
        return list(await asyncio.gather(*(a.ping.remote() for a in runner.actors)))

    pings = await placement()
    nodes = {p["node"] for p in pings}
    all_nodes = {c.head_node.node_id, *(w.node_id for w in workers)}
    assert nodes == all_nodes, f"actors should be spread over the 3 nodes: {pings}"

    # Remove the worker node under an actor that is running episodes right now (not gracefully).
    doomed_node = workers[0]
    doomed = next(i for i, p in enumerate(pings) if p["node"] == doomed_node.node_id)

    async def running_on_doomed() -> int:
        return (await runner.actors[doomed].ping.remote())["running"]

    await wait_until_async(running_on_doomed, until=lambda k: k >= 1, message="episodes running on the doomed node")
    done_before = (await store.get_job(runner.job_id)).n_done
    c.remove_node(doomed_node, allow_graceful=False)
    result = await asyncio.wait_for(job, 120)

    assert done_before < n, "the node was removed before the job ended"
    record = await store.get_job(runner.job_id)
    assert result.status == JobStatus.SUCCEEDED, record.error if record else None
    assert runner.restarts >= 1
    # 0 lost: every episode has exactly one result, in memory, in Redis and in the JSONL export.
    assert [t.episode for t in result.trajectories] == list(range(n))
    assert await store.count_trajectories(runner.job_id) == n
    exported = [json.loads(line) for line in Path(result.output_path).read_text().splitlines() if line.strip()]
    assert sorted(r["episode"] for r in exported) == list(range(n))  # 0 duplicated
    events = [e for _, e in await store.read_events(runner.job_id)]
    finished = Counter(e.episode for e in events if e.type == "episode_finished")
    assert set(finished) == set(range(n)) and max(finished.values()) == 1
    restarted = [e for e in events if e.type == "worker_restarted"]
    assert restarted and all(e.data["placements"] >= 1 for e in restarted)
    retried = {e.episode for e in events if e.type == "episode_retried"}
    assert retried, "the removed node had episodes in flight: they must have been retried"
    # A retried episode's record is its later attempt, named by (job, episode, attempt).
    for t in result.trajectories:
        assert t.id == f"{runner.job_id}-e{t.episode}-a{t.attempt}"
        assert t.termination == TerminationReason.MAX_TURNS, (t.episode, t.termination, t.error)
        assert (t.attempt > 1) == (t.episode in retried)
    # The replacement went to a node that is alive. (A replacement placed on the removed node before
    # Ray marked it dead never starts — no address — and is placed again: the runner retries.)
    initial = {p["pid"] for p in pings}
    replacements = [a for k, a in episode_workers(c).items() if k not in known and a["Pid"] not in initial]
    started = [a for a in replacements if a["Address"]["IPAddress"]]
    assert len(started) == runner.restarts, replacements
    assert {a["Address"]["NodeID"] for a in started} <= all_nodes - {doomed_node.node_id}


def test_interleaf_run_joins_the_cluster_with_ray_address(cluster, engine_url: str, tmp_path: Path) -> None:
    """The documented recipe: ``interleaf run --ray-address HOST:PORT`` runs its actors on the cluster."""
    c, _ = cluster
    before = set(episode_workers(c))
    exe = shutil.which("interleaf")
    assert exe, "the interleaf console script is installed by scripts/install.sh"
    env = {**os.environ, **_LOOPBACK_ENV, "RAY_AUTH_MODE": "disabled", "INTERLEAF_RUNS_DIR": str(tmp_path)}
    args = ["run", "--ray-address", c.address, "--backend", engine_url, "--suite", "arith", "--n", "3"]
    args += ["--actors", "3", "--concurrency", "3", "--max-turns", "1", "--max-new-tokens", "8", "--json"]
    proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["status"] == "succeeded" and out["summary"]["episodes"] == 3
    # Its three actors lived on this cluster, one per alive node (round-robin placement).
    theirs = [v for k, v in episode_workers(c).items() if k not in before]
    assert len(theirs) == 3, theirs
    alive = {n["NodeID"] for n in c.global_state.node_table() if n["Alive"]}
    placed = [a["Address"]["NodeID"] for a in theirs]
    assert set(placed) <= alive and len(set(placed)) == min(3, len(alive)), (placed, alive)
