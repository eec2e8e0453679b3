"""JobStore against a real redis-server: records, idempotent trajectories, events, the queue."""

from __future__ import annotations

import json
import uuid

import pytest

from interleaf.runtime.jobs.store import JobEvent, JobEventType, JobRecord, JobStatus, JobStore, WorkerBeat
from interleaf.telemetry.records import TerminationReason, Trajectory, Turn


@pytest.fixture
async def store(redis_url: str):
    s = JobStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    await s.aclose()


def traj(job: str, episode: int, attempt: int = 1) -> Trajectory:
    turns = [
        Turn(index=0, delta_ids=[1, 2, 3], completion_ids=[4, 5, 2]),
        Turn(index=1, delta_ids=[6, 7], completion_ids=[8, 2]),
    ]
    return Trajectory(
        id=f"{job}-{episode}-{attempt}",
        job_id=job,
        episode=episode,
        attempt=attempt,
        turns=turns,
        termination=TerminationReason.ANSWERED,
    )


async def test_job_record_roundtrip(store: JobStore) -> None:
    rec = JobRecord(id="j1", spec={"suite": "arith", "n": 3}, n_total=3)
    await store.create_job(rec)
    with pytest.raises(ValueError, match="already exists"):
        await store.create_job(rec)
    await store.update_job("j1", status=JobStatus.RUNNING, n_done=2, summary={"accuracy": 0.5})
    got = await store.get_job("j1")
    assert got is not None
    assert (got.status, got.n_done, got.spec, got.summary) == (JobStatus.RUNNING, 2, rec.spec, {"accuracy": 0.5})
    assert [j.id for j in await store.list_jobs()] == ["j1"]
    with pytest.raises(ValueError, match="no field 'bogus'"):
        await store.update_job("j1", bogus=1)
    assert await store.get_job("nope") is None


async def test_trajectories_are_idempotent_per_episode(store: JobStore) -> None:
    assert await store.put_trajectory(traj("j", 0))
    assert await store.put_trajectory(traj("j", 1))
    assert not await store.put_trajectory(traj("j", 0, attempt=2))  # a retry replaces
    assert await store.count_trajectories("j") == 2
    got = await store.get_trajectories("j")
    assert [(t.episode, t.attempt) for t in got] == [(0, 2), (1, 1)]
    assert got[0].token_ids() == [1, 2, 3, 4, 5, 2, 6, 7, 8, 2]
    assert got[0].termination == TerminationReason.ANSWERED


async def test_events_stream(store: JobStore) -> None:
    await store.add_event(JobEvent(type="job_started", job_id="j"))
    last = await store.add_event(JobEvent(type="episode_finished", job_id="j", episode=3, data={"score": 1.0}))
    events = await store.read_events("j")
    assert [(e.type, e.episode) for _, e in events] == [("job_started", None), ("episode_finished", 3)]
    assert await store.read_events("j", after=last) == []


async def test_queue_consumer_group_and_reclaim(store: JobStore) -> None:
    await store.enqueue("a")
    await store.enqueue("b")
    first = await store.claim("w1", block_ms=100)
    second = await store.claim("w1", block_ms=100)
    assert first is not None and second is not None
    assert (first[1], second[1]) == ("a", "b")
    assert await store.claim("w2", block_ms=50) is None  # nothing new
    await store.ack(first[0])
    # w1 "crashed" holding b: w2 takes it over once it has been idle long enough.
    reclaimed = await store.reclaim("w2", min_idle_ms=0)
    assert [job for _, job in reclaimed] == ["b"]
    await store.ack(reclaimed[0][0])
    assert await store.reclaim("w3", min_idle_ms=0) == []


async def test_event_types_round_trip_as_their_strings(store: JobStore) -> None:
    for kind in JobEventType:
        await store.add_event(JobEvent(type=kind, job_id="k", data={"kind": kind.value}))
    [(_, raw)] = await store.redis.xrange(f"{store.prefix}:job:k:events", count=1)  # as stored
    assert json.loads(raw["event"])["type"] == "job_started"
    events = [e for _, e in await store.read_events("k")]
    assert [e.type for e in events] == list(JobEventType)
    assert all(type(e.type) is JobEventType and e.type == e.data["kind"] for e in events)
    assert [e.model_dump(mode="json")["type"] for e in events] == [k.value for k in JobEventType]  # the API's JSON
    with pytest.raises(ValueError, match="type"):
        JobEvent(type="job_exploded", job_id="k")


async def test_raw_trajectories_by_episode(store: JobStore) -> None:
    for e in (3, 0, 11):
        await store.put_trajectory(traj("r", e))
    assert await store.episode_ids("r") == [0, 3, 11]  # numeric order, not the hash's strings
    raws = await store.get_trajectories_raw("r", [11, 4, 0])
    assert raws[1] is None and [json.loads(r)["episode"] for r in (raws[0], raws[2])] == [11, 0]
    assert await store.get_trajectories_raw("r", []) == []
    assert await store.episode_ids("nothing") == []


async def test_a_workers_hold_on_its_entry(store: JobStore) -> None:
    """``touch`` renews only the holder's entry; after a reclaim the old holder learns it lost the job;
    ``pending_own`` gives a restarted consumer its own unacked entries."""
    await store.enqueue("job-a")
    entry, _ = await store.claim("w1", block_ms=100)
    assert await store.touch("w1", entry) and not await store.touch("w2", entry)
    assert await store.reclaim("w2", min_idle_ms=60_000) == []  # touched just now: not idle
    assert await store.pending_own("w1") == [(entry, "job-a")] and await store.pending_own("w2") == []
    assert await store.reclaim("w2", min_idle_ms=0) == [(entry, "job-a")]
    assert not await store.touch("w1", entry) and await store.touch("w2", entry)
    await store.ack(entry)
    assert not await store.touch("w2", entry) and await store.pending_own("w2") == []


async def test_worker_beats_expire(store: JobStore) -> None:
    from tests.waiting import wait_until_async

    await store.beat(WorkerBeat(consumer="w-long", pid=1, host="h", phase="idle"), ttl_s=60)
    await store.beat(WorkerBeat(consumer="w-short", pid=2, host="h", phase="running", job_id="j"), ttl_s=0.2)
    assert [w.consumer for w in await store.list_workers()] == ["w-long", "w-short"]
    await wait_until_async(
        lambda: store.list_workers(),
        until=lambda ws: [w.consumer for w in ws] == ["w-long"],
        message="the short beat to expire",
    )
    assert await store.redis.zrange(f"{store.prefix}:workers", 0, -1) == ["w-long"]  # forgotten too
    await store.remove_worker("w-long")
    assert await store.list_workers() == []


async def test_concurrent_creates_of_one_id_store_it_once(store: JobStore) -> None:
    """The check and the write are one Redis step: of 30 creates racing, one wins, the rest get
    ``JobExists``, and the stored record is the winner's."""
    import asyncio

    from interleaf.runtime.jobs.store import JobExists

    records = [JobRecord(id="race", spec={"n": 1 + i}, n_total=1 + i) for i in range(30)]
    results = await asyncio.gather(*(store.create_job(r) for r in records), return_exceptions=True)
    won = [r for r in results if isinstance(r, JobRecord)]
    assert len(won) == 1 and all(isinstance(r, JobExists) for r in results if r is not won[0])
    stored = await store.get_job("race")
    assert stored is not None and stored.n_total == won[0].n_total
    assert await store.redis.zrange(f"{store.prefix}:jobs", 0, -1) == ["race"]


async def test_cancel_of_an_ended_job_changes_nothing(store: JobStore) -> None:
    from interleaf.runtime.jobs.store import JobEnded

    await store.create_job(JobRecord(id="live", spec={}))
    assert await store.request_cancel("live") and await store.cancel_requested("live")
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        await store.create_job(JobRecord(id=f"over-{status}", spec={}, status=status))
        with pytest.raises(JobEnded, match=f"has already ended \\({status.value}\\)"):
            await store.request_cancel(f"over-{status}")
        record = await store.get_job(f"over-{status}")
        assert record is not None and (record.status, record.cancel_requested) == (status, False)
    assert await store.request_cancel("nope") is False


async def test_a_record_that_cannot_be_read_comes_back_failed_naming_it(store: JobStore) -> None:
    key = f"{store.prefix}:job:odd"
    spec = json.dumps({"backend_urls": ["http://h/\ud800"]})  # an older version stored this (as the escape)
    await store.redis.hset(key, mapping={"id": "odd", "spec": spec, "status": "queued", "created_at": "7"})
    await store.redis.zadd(f"{store.prefix}:jobs", {"odd": 7})
    await store.create_job(JobRecord(id="fine", spec={"suite": "arith", "emoji": "\U0001f600"}, created_at=8))
    odd = await store.get_job("odd")
    assert odd is not None and (odd.status, odd.spec, odd.created_at) == (JobStatus.FAILED, {}, 7.0)
    assert odd.error is not None and "cannot be read" in odd.error and repr(key) in odd.error
    assert "UnicodeEncodeError" in odd.error and "\n" not in odd.error
    odd.model_dump_json()  # an answer can carry it
    await store.redis.hset(f"{store.prefix}:job:fine2", mapping={"id": "fine2", "spec": "{nope"})
    await store.redis.zadd(f"{store.prefix}:jobs", {"fine2": 9})
    listed = await store.list_jobs()
    assert [(r.id, r.status) for r in listed] == [
        ("fine2", JobStatus.FAILED),
        ("fine", JobStatus.QUEUED),
        ("odd", JobStatus.FAILED),
    ]
    assert listed[1].spec["emoji"] == "\U0001f600"  # a surrogate pair in the stored JSON is fine


async def test_text_utf8_cannot_encode_is_stored_as_escapes(store: JobStore) -> None:
    """A message holding a lone surrogate (an exception's text) is written as its escape instead of
    failing the write that records a job's failure."""
    await store.create_job(JobRecord(id="esc", spec={}))
    await store.update_job("esc", error="OSError: bad \ud800 path")
    record = await store.get_job("esc")
    assert record is not None and record.error == "OSError: bad \\ud800 path"
