"""``interleaf.JobsClient`` / ``AsyncJobsClient`` and ``interleaf jobs``: against a real ``interleaf serve``
process on loopback with real Redis; the end-to-end test follows a job run on local Ray and the real engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from interleaf import AsyncJobsClient, JobsClient
from interleaf.jobs_client import JobsAPIError
from interleaf.runtime.child_process import free_port
from interleaf.runtime.jobs import JobSpec
from tests.conftest import start_serve, stop_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_only(redis_url: str) -> Iterator[str]:
    proc, url = start_serve("--no-worker", "--redis-url", redis_url, "--backend", "http://127.0.0.1:9")
    try:
        yield url
    finally:
        stop_process(proc, 60)


def test_submit_get_list_cancel_events_and_results(api_only: str) -> None:
    with JobsClient(api_only) as client:
        record = client.submit(JobSpec(suite="arith", n=3, job_id="client-queued-1", retention="session"))
        assert (record.id, record.status.value, record.n_total) == ("client-queued-1", "queued", 3)
        assert record.spec["retention"] == "session"
        assert client.get("client-queued-1") == record
        assert "client-queued-1" in [r.id for r in client.list(limit=10)]
        assert client.submit({"suite": "lookup"}, n=2).spec["n"] == 2  # a mapping and keywords
        cancelled = client.cancel("client-queued-1")
        assert cancelled.cancel_requested
        assert list(client.events("client-queued-1", follow=False)) == []  # no worker ran it
        assert client.trajectories("client-queued-1") == []
        assert client.summary("client-queued-1").episodes == 0


def test_errors_name_the_field_the_job_or_the_server(api_only: str) -> None:
    with JobsClient(api_only) as client:
        with pytest.raises(JobsAPIError) as refused:
            client.submit(suite="arith", n=0, retention="forever")
        assert refused.value.status == 422
        assert "n=0" in str(refused.value) and "'forever'" in str(refused.value)
        with pytest.raises(JobsAPIError, match="404 no job with id 'nope'"):
            client.get("nope")
    dead = f"http://127.0.0.1:{free_port()}"
    with JobsClient(dead) as client, pytest.raises(JobsAPIError, match="is `interleaf serve` running there") as info:
        client.list()
    assert info.value.status is None and dead in str(info.value)
    with pytest.raises(ValueError, match="base URL"):
        JobsClient("127.0.0.1:8080")


async def test_async_client_does_the_same(api_only: str) -> None:
    async with AsyncJobsClient(api_only) as client:
        record = await client.submit(suite="arith", n=2, job_id="client-async-1")
        assert (await client.get(record.id)).status.value == "queued"
        assert record.id in [r.id for r in await client.list()]
        assert (await client.cancel(record.id)).cancel_requested
        assert [e async for e in client.events(record.id, follow=False)] == []
        with pytest.raises(JobsAPIError, match="404"):
            await client.summary("nope")


def test_token_goes_as_a_bearer_header_and_bodies_as_json() -> None:
    """What the hardened API requires of a client (fake transport: this checks the request only)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "j", "spec": json.loads(request.content)})

    client = JobsClient("http://api.test", token="s3cret", transport=httpx.MockTransport(handler))
    client.submit(suite="arith", n=1)
    request = seen[0]
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"suite": "arith", "n": 1}
    anonymous = JobsClient("http://api.test", transport=httpx.MockTransport(handler))
    anonymous.submit(suite="arith")
    assert "authorization" not in seen[1].headers


def test_cli_errors_are_one_line_exit_2(api_only: str) -> None:
    exe = shutil.which("interleaf")
    assert exe
    bad = subprocess.run(
        [exe, "jobs", "submit", "--server", api_only, "--suite", "arith", "--n", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "422" in bad.stderr and "n=0" in bad.stderr
    missing = subprocess.run([exe, "jobs", "status", "nope", "--server", api_only], capture_output=True, text=True)
    assert missing.returncode == 2 and "no job with id 'nope'" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr


@pytest.mark.model
def test_jobs_submit_follow_shows_progress_and_ends_with_the_summary(own_redis_url: str, engine_url: str) -> None:
    proc, url = start_serve("--redis-url", own_redis_url, "--backend", engine_url)
    try:
        exe = shutil.which("interleaf")
        assert exe
        cmd = [
            exe, "jobs", "submit", "--server", url, "--suite", "arith", "--n", "2", "--follow",
            "--job-id", "client-follow", "--concurrency", "2", "--actors", "1", "--max-turns", "2",
            "--max-new-tokens", "24", "--retention", "session",
        ]  # fmt: skip
        env = {**os.environ, "COLUMNS": "120"}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "submitted client-follow" in done.stderr
        assert "2/2" in done.stderr  # the progress bar, fed by the job's events
        for label in ("accuracy", "mean turns", "cache hit rate", "retention", "wall time"):
            assert label in done.stdout, done.stdout
        assert "job client-follow" in done.stdout and "succeeded" in done.stdout

        logs = subprocess.run([exe, "jobs", "logs", "client-follow", "--server", url], capture_output=True, text=True)
        lines = logs.stdout.strip().splitlines()
        assert "job_started" in lines[0] and "job_finished" in lines[-1]
        assert sum("episode_finished" in line for line in lines) == 2

        with JobsClient(url) as client:
            events = list(client.events("client-follow"))  # ended: follows to the last event and stops
            assert events[-1].type.value == "job_finished"
            later = list(client.events("client-follow", after=events[-2].id))
            assert [e.type.value for e in later] == ["job_finished"]
            assert client.wait("client-follow", timeout_s=5).status.value == "succeeded"
            trajectories = client.trajectories("client-follow")
            assert sorted(t.episode for t in trajectories) == [0, 1]
            assert all(t.retention_effective == "session" for t in trajectories)
            summary = client.summary("client-follow")
            assert (summary.episodes, summary.retention_requested, summary.retention_effective) == (
                2,
                "session",
                "session",
            )
    finally:
        stop_process(proc, 60)
