"""The jobs HTTP API and dashboard: ``interleaf serve`` as a real process on loopback, real Redis;
the end-to-end test runs a job on local Ray against the real engine."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import start_serve, stop_process
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_only(redis_url: str) -> Iterator[str]:
    proc, url = start_serve("--no-worker", "--redis-url", redis_url, "--backend", "http://127.0.0.1:9")
    try:
        yield url
    finally:
        stop_process(proc, 60)


def test_bad_specs_name_the_field_and_value(api_only: str) -> None:
    r = httpx.post(f"{api_only}/v1/jobs", json={"suite": "arith", "n": 0, "retention": "forever"})
    assert r.status_code == 422
    body = r.json()
    fields = {f["field"]: f["value"] for f in body["fields"]}
    assert fields == {"n": 0, "retention": "forever"}
    assert "n=0" in body["error"] and "'forever'" in body["error"]
    r = httpx.post(f"{api_only}/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "invalid request" in r.json()["error"]
    assert httpx.get(f"{api_only}/v1/jobs/nope").json()["detail"] == "no job with id 'nope'"
    assert httpx.get(f"{api_only}/v1/jobs/nope/events").status_code == 404
    assert httpx.get(f"{api_only}/v1/jobs/x/events", params={"after": "drop table"}).status_code == 422


def test_submit_list_cancel_and_read_a_queued_job(api_only: str) -> None:
    r = httpx.post(f"{api_only}/v1/jobs", json={"suite": "arith", "n": 3, "job_id": "api-queued-1"})
    assert r.status_code == 201
    record = r.json()
    assert record["id"] == "api-queued-1" and record["status"] == "queued" and record["n_total"] == 3
    assert record["spec"]["backend_urls"] == ["http://127.0.0.1:9"]  # the server's default backend
    assert httpx.post(f"{api_only}/v1/jobs", json={"job_id": "api-queued-1"}).status_code == 409
    assert "api-queued-1" in [j["id"] for j in httpx.get(f"{api_only}/v1/jobs").json()]
    cancelled = httpx.post(f"{api_only}/v1/jobs/api-queued-1/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"] is True
    assert httpx.get(f"{api_only}/v1/jobs/api-queued-1/trajectories").json() == []
    summary = httpx.get(f"{api_only}/v1/jobs/api-queued-1/summary").json()
    assert summary["rows"] == [] and summary["summary"]["episodes"] == 0
    assert httpx.get(f"{api_only}/v1/jobs/api-queued-1/events").json() == {"events": [], "last_id": "0-0"}


def test_dashboard_page_is_served(api_only: str) -> None:
    r = httpx.get(f"{api_only}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<title>interleaf" in page and "/v1/jobs" in page and "retention_events" in page
    assert "http://" not in page.replace("http://127.0.0.1", ""), "the page must load nothing from elsewhere"


@pytest.mark.model
def test_job_submitted_over_http_runs_to_the_end(redis_url: str, engine_url: str) -> None:
    proc, url = start_serve("--redis-url", redis_url, "--backend", engine_url)
    try:
        spec = {"suite": "arith", "n": 2, "concurrency": 2, "actors": 1, "max_turns": 2, "max_new_tokens": 24}
        job = httpx.post(f"{url}/v1/jobs", json={**spec, "job_id": "api-e2e", "retention": "session"}).json()
        assert job["spec"]["backend_urls"] == [engine_url]
        wait_until(
            lambda: httpx.get(f"{url}/v1/jobs/api-e2e").json()["status"],
            until=lambda status: status in ("succeeded", "failed", "cancelled"),
            message="job api-e2e to end",
            timeout_s=420,
            interval_s=1,
        )
        record = httpx.get(f"{url}/v1/jobs/api-e2e").json()
        assert record["status"] == "succeeded", record
        assert record["n_done"] == 2
        trajs = httpx.get(f"{url}/v1/jobs/api-e2e/trajectories").json()
        assert sorted(t["episode"] for t in trajs) == [0, 1]
        assert all(t["turns"] and t["retention_policy"] == "session" for t in trajs)
        assert all(turn["cache"]["prompt_tokens"] > 0 for t in trajs for turn in t["turns"])
        rows = dict(httpx.get(f"{url}/v1/jobs/api-e2e/summary").json()["rows"])
        assert rows and any("hit" in k.lower() for k in rows)
        events = httpx.get(f"{url}/v1/jobs/api-e2e/events").json()["events"]
        types = [e["type"] for e in events]
        assert types[0] == "job_started" and types[-1] == "job_finished"
        assert types.count("episode_finished") == 2
        later = httpx.get(f"{url}/v1/jobs/api-e2e/events", params={"after": events[-2]["id"]}).json()
        assert [e["type"] for e in later["events"]] == ["job_finished"]
    finally:
        stop_process(proc, 60)


def test_unknown_suite_agent_and_retention_are_422_naming_the_field(api_only: str) -> None:
    r = httpx.post(f"{api_only}/v1/jobs", json={"suite": "no-such-suite", "agent": "nobody", "retention": "forever"})
    assert r.status_code == 422
    body = r.json()
    assert {f["field"]: f["value"] for f in body["fields"]} == {
        "suite": "no-such-suite",
        "agent": "nobody",
        "retention": "forever",
    }
    assert "suite='no-such-suite'" in body["error"] and "arith" in body["error"]
    assert "agent='nobody'" in body["error"] and "'adaptive'" in body["error"]
