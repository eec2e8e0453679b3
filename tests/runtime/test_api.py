"""The jobs HTTP API and dashboard: ``interleaf serve`` as a real process on loopback, real Redis;
the end-to-end test runs a job on local Ray against the real engine."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

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
    cancelled = httpx.post(f"{api_only}/v1/jobs/api-queued-1/cancel", json={})
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
def test_job_submitted_over_http_runs_to_the_end(own_redis_url: str, engine_url: str) -> None:
    proc, url = start_serve("--redis-url", own_redis_url, "--backend", engine_url)
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


def test_limits_strictness_and_ids_are_422_naming_the_field(api_only: str) -> None:
    def problems(body: str) -> dict[str, object]:
        r = httpx.post(f"{api_only}/v1/jobs", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        return {f["field"]: f["value"] for f in r.json()["fields"]}

    assert problems('{"n": 1000000000, "actors": 100000, "concurrency": 10000000}') == {
        "n": 1_000_000_000,
        "actors": 100_000,
        "concurrency": 10_000_000,
    }
    assert problems('{"n": true, "max_turns": 100000, "max_new_tokens": 10000000, "colour": "red"}') == {
        "n": True,
        "max_turns": 100_000,
        "max_new_tokens": 10_000_000,
        "colour": "red",
    }
    found = problems('{"temperature": NaN, "wall_time_s": Infinity, "kv_budget_fraction": -Infinity}')
    assert set(found) == {"temperature", "wall_time_s", "kv_budget_fraction"}
    assert problems('{"job_id": "../../../../x/trav"}') == {"job_id": "../../../../x/trav"}
    assert problems('{"backend_urls": ["file:///etc/passwd"]}') == {"backend_urls": ["file:///etc/passwd"]}
    assert problems('{"suite": "/etc/tasks.jsonl"}') == {"suite": "/etc/tasks.jsonl"}
    assert problems("[1, 2]") == {"body": [1, 2]}
    r = httpx.post(f"{api_only}/v1/jobs", json={"n": 10**9})
    assert "less than or equal to 100000" in r.json()["error"]
    # Ids that are not plain names never reach Redis keys or paths.
    assert httpx.get(f"{api_only}/v1/jobs/X:events").status_code == 422
    assert httpx.get(f"{api_only}/v1/jobs/x/events", params={"after": "99999999999999999999-0"}).status_code == 422
    assert all(j["id"] != "../../../../x/trav" for j in httpx.get(f"{api_only}/v1/jobs").json())


def test_front_door_body_size_media_type_and_host(api_only: str) -> None:
    big = b'{"suite": "' + b"a" * 2_000_000 + b'"}'
    r = httpx.post(f"{api_only}/v1/jobs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(40):
            yield b" " * 65536

    r = httpx.post(f"{api_only}/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(f"{api_only}/v1/jobs", content='{"n": 2}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    job = httpx.post(f"{api_only}/v1/jobs", json={"n": 2, "job_id": "api-door"}).json()
    # A cross-site form post (a "simple" request, no preflight) cannot cancel, nor can a page's bodiless
    # fetch (the browser adds Origin to it).
    r = httpx.post(f"{api_only}/v1/jobs/{job['id']}/cancel", data={"x": "1"})
    assert r.status_code == 415
    r = httpx.post(f"{api_only}/v1/jobs/{job['id']}/cancel", headers={"origin": "https://evil.example.com"})
    assert r.status_code == 415
    assert httpx.get(f"{api_only}/v1/jobs/api-door").json()["cancel_requested"] is False
    # Outside a browser a cancel needs no body (the body is optional): curl -X POST .../cancel.
    r = httpx.post(f"{api_only}/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    # DNS rebinding: a page on evil.example.com resolving to 127.0.0.1.
    r = httpx.get(f"{api_only}/v1/jobs", headers={"host": "evil.example.com"})
    assert r.status_code == 400 and "evil.example.com" in r.json()["detail"]
    port = api_only.rsplit(":", 1)[1]
    assert httpx.get(f"{api_only}/v1/jobs", headers={"host": f"localhost:{port}"}).status_code == 200


def test_openapi_documents_every_routes_error_codes(api_only: str) -> None:
    doc = httpx.get(f"{api_only}/openapi.json").json()
    ours = {p: ops for p, ops in doc["paths"].items() if p.startswith("/v1/jobs") or p in ("/", "/healthz")}
    assert len(ours) == 8
    for path, ops in ours.items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path == "/healthz":
                assert {"400", "503"} <= codes
                continue
            assert {"400", "401", "503"} <= codes, (method, path, codes)
            if path == "/":
                assert "application/json" in op["responses"]["401"]["content"]
            if method == "post":
                assert {"413", "415", "422"} <= codes, (method, path, codes)
            if "{job_id}" in path:
                assert {"404", "422"} <= codes, (method, path, codes)
            if "422" in codes:
                ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/InvalidRequest")
    n = doc["components"]["schemas"]["JobRequest"]["properties"]["n"]
    assert n["maximum"] == 100_000


@pytest.fixture(scope="module")
def with_token(redis_url: str) -> Iterator[str]:
    args = ("--no-worker", "--redis-url", redis_url, "--backend", "http://127.0.0.1:9", "--token", TOKEN)
    proc, url = start_serve(*args)
    try:
        yield url
    finally:
        stop_process(proc, 60)


TOKEN = "t0ken-for-tests-0123456789"


def test_bearer_token_is_required_when_set(with_token: str) -> None:
    r = httpx.get(f"{with_token}/v1/jobs")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{with_token}/v1/jobs", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{with_token}/v1/jobs", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert httpx.get(f"{with_token}/healthz").status_code == 200  # probes need no token
    # The dashboard in a browser: /?token= sets an HttpOnly cookie, which then authenticates.
    with httpx.Client(base_url=with_token) as browser:
        r = browser.get("/", params={"token": TOKEN})
        assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
        assert browser.get("/v1/jobs").status_code == 200
    assert httpx.get(f"{with_token}/", params={"token": "wrong"}).status_code == 401


def test_redis_down_is_503_everywhere_and_unknown_suite_never_queued() -> None:
    """``/healthz`` 503 within 5 s of Redis dying, every route 503 with a message; a job with an unknown
    suite is refused at the door (nothing stored, nothing queued)."""
    from interleaf.runtime.jobs.redis_server import RedisServer

    redis = RedisServer()
    proc, url = start_serve("--redis-url", redis.url, "--backend", "http://127.0.0.1:9")  # with a worker
    try:
        health = httpx.get(f"{url}/healthz").json()
        assert {k: health[k] for k in ("ok", "redis", "worker")} == {"ok": True, "redis": "ok", "worker": "idle"}
        r = httpx.post(f"{url}/v1/jobs", json={"suite": "no-such-suite"})
        assert r.status_code == 422 and "arith" in r.json()["error"]
        assert httpx.get(f"{url}/v1/jobs").json() == []
        redis.stop()
        down = wait_until(
            lambda: httpx.get(f"{url}/healthz", timeout=5),
            until=lambda r: r.status_code == 503,
            message="/healthz to answer 503 after Redis died",
            timeout_s=5,
        )
        assert down.json()["redis"].startswith("unreachable") and down.json()["ok"] is False
        for r in (httpx.get(f"{url}/v1/jobs"), httpx.get(f"{url}/v1/jobs/x"), httpx.post(f"{url}/v1/jobs", json={})):
            assert r.status_code == 503 and "redis unreachable" in r.json()["detail"], r.text
        assert proc.poll() is None
    finally:
        stop_process(proc, 60)
        redis.stop()


def test_healthz_is_503_within_5_s_of_the_worker_dying(redis_url: str) -> None:
    """In-process (the test needs the worker task): the app on a real uvicorn server on loopback."""
    import threading

    import uvicorn

    from interleaf.runtime.child_process import free_port
    from interleaf.runtime.jobs.store import JobStore
    from interleaf.runtime.service import create_app

    app = create_app(JobStore(redis_url, prefix="t-health"), worker={"consumer": "health-test"})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/healthz").json()["worker"],
            until=lambda w: w == "idle",
            message="the worker to be idle",
            ignore=(httpx.HTTPError,),
        )
        task = app.state.worker_task
        task.get_loop().call_soon_threadsafe(task.cancel)  # the loop ends as if a BaseException killed it
        down = wait_until(
            lambda: httpx.get(f"{url}/healthz"),
            until=lambda r: r.status_code == 503,
            message="/healthz to answer 503 after the worker died",
            timeout_s=5,
        )
        assert down.json()["worker"].startswith("stopped: worker loop ended: CancelledError"), down.json()
        assert down.json()["redis"] == "ok"
    finally:
        server.should_exit = True
        thread.join(30)


def test_stopping_serve_leaves_no_process_behind(own_redis_url: str) -> None:
    """After a job ran (so the worker started local Ray), SIGTERM ends serve and everything it started."""
    import psutil

    proc, url = start_serve("--redis-url", own_redis_url, "--backend", "http://127.0.0.1:9")
    try:
        spec = {"suite": "arith", "n": 1, "actors": 1, "concurrency": 1, "max_attempts": 1, "job_id": "api-stop"}
        assert httpx.post(f"{url}/v1/jobs", json=spec).status_code == 201
        wait_until(
            lambda: httpx.get(f"{url}/v1/jobs/api-stop").json()["status"],
            until=lambda s: s not in ("queued", "running"),
            message="job api-stop to end",
            timeout_s=180,
            interval_s=0.5,
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("raylet" in " ".join(c.cmdline()) for c in children), [c.cmdline()[:2] for c in children]
    finally:
        stop_process(proc, 60)
    alive = wait_until(
        lambda: [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
        until=lambda left: not left,
        message="every process serve started to exit",
        timeout_s=60,
        interval_s=0.5,
    )
    assert alive == []


# -- hostile input: a 4xx naming the field and the value, never a 5xx, nothing stored ---------------


def post_json(url: str, body: str | bytes) -> httpx.Response:
    """``body`` sent as is (a JSON escape such as ``\\ud800`` stays the six characters it is)."""
    content = body.encode() if isinstance(body, str) else body
    return httpx.post(url, content=content, headers={"content-type": "application/json"})


def test_a_lone_surrogate_in_any_field_is_422_naming_it_and_nothing_is_stored(api_only: str) -> None:
    """``"\\ud800"`` is JSON but not UTF-8. In a backend URL it used to hang the worker for good (the
    episode's error could not be sent back) and break ``GET /v1/jobs`` (the stored record could not be
    answered); in a refused field it broke the 422 itself."""
    fields = {
        "suite": '"\\ud800"',
        "agent": '"tir\\udfff"',
        "job_id": '"api-surrogate\\ud800"',
        "retention": '"\\ud800"',
        "admission": '"\\udbff"',
        "backend_urls": '["http://127.0.0.1:1/\\ud800"]',
        "n": '"\\ud800"',
    }
    for field, value in fields.items():
        r = post_json(f"{api_only}/v1/jobs", f'{{"{field}": {value}}}')
        assert r.status_code == 422, (field, r.status_code, r.text)
        body = r.json()
        assert [f["field"] for f in body["fields"]] == [field], body
        assert "\\ud" in body["error"] and "lone surrogate" in body["error"], body
    r = post_json(f"{api_only}/v1/jobs", '{"n": 1, "job_id": "api-surrogate-key", "\\ud800": 1}')
    assert r.status_code == 422 and "\\ud800" in r.text, r.text
    listed = httpx.get(f"{api_only}/v1/jobs")
    assert listed.status_code == 200 and not any(j["id"].startswith("api-surrogate") for j in listed.json())
    # In a refused field of a cancel, too: 422, and the job is not cancelled.
    assert httpx.post(f"{api_only}/v1/jobs", json={"n": 1, "job_id": "api-surrogate-cancel"}).status_code == 201
    r = post_json(f"{api_only}/v1/jobs/api-surrogate-cancel/cancel", '{"\\ud800": 1}')
    assert r.status_code == 422 and "\\ud800" in r.text, r.text
    assert httpx.get(f"{api_only}/v1/jobs/api-surrogate-cancel").json()["cancel_requested"] is False


def test_a_stored_record_that_cannot_be_read_is_listed_with_the_reason_never_a_500(
    api_only: str, redis_url: str
) -> None:
    """A record stored before specs were checked for surrogates (or by another version) used to make
    ``GET /v1/jobs`` answer 500 for good; now it is listed ``failed`` with an error naming it."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    spec = json.dumps({"suite": "arith", "backend_urls": ["http://127.0.0.1:1/\ud800"]})  # stored as the escape
    now = time.time()
    client.hset(
        "interleaf:job:api-unreadable",
        mapping={"id": "api-unreadable", "spec": spec, "status": "queued", "created_at": str(now), "n_total": "1"},
    )
    client.zadd("interleaf:jobs", {"api-unreadable": now})
    try:
        listed = httpx.get(f"{api_only}/v1/jobs")
        assert listed.status_code == 200, listed.text
        [record] = [j for j in listed.json() if j["id"] == "api-unreadable"]
        assert record["status"] == "failed" and "api-unreadable" in record["error"]
        assert "cannot be read" in record["error"] and "interleaf:job:api-unreadable" in record["error"]
        assert httpx.get(f"{api_only}/v1/jobs/api-unreadable").json() == record
        r = httpx.post(f"{api_only}/v1/jobs/api-unreadable/cancel", json={})
        assert r.status_code == 409 and "failed" in r.json()["detail"]
        for path in ("events", "summary", "trajectories"):
            assert httpx.get(f"{api_only}/v1/jobs/api-unreadable/{path}").status_code == 200, path
        assert httpx.get(f"{api_only}/v1/dashboard/jobs/api-unreadable").status_code == 200
    finally:
        client.delete("interleaf:job:api-unreadable")
        client.zrem("interleaf:jobs", "api-unreadable")
        client.close()


async def test_concurrent_submits_of_one_job_id_store_and_queue_it_once(api_only: str, redis_url: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(
            *(client.post(f"{api_only}/v1/jobs", json={"job_id": "api-race", "n": 1 + i}) for i in range(30))
        )
    codes = [a.status_code for a in answers]
    assert sorted(codes) == [201] + [409] * 29, codes
    [winner] = [a.json() for a in answers if a.status_code == 201]
    assert all("job_id='api-race' already exists" in a.json()["detail"] for a in answers if a.status_code == 409)
    assert httpx.get(f"{api_only}/v1/jobs/api-race").json() == winner  # not overwritten by a loser
    queue = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert [fields["job_id"] for _, fields in queue.xrange("interleaf:queue")].count("api-race") == 1
    finally:
        queue.close()


def test_events_after_is_an_ascii_stream_id_within_64_bits_as_documented(api_only: str) -> None:
    from interleaf.runtime.service.params import STREAM_ID_PATTERN

    assert httpx.post(f"{api_only}/v1/jobs", json={"n": 1, "job_id": "api-after"}).status_code == 201
    refused = ["\u0661-\u0661", "\uff11-\uff11", "108-40464080946342096076", "18446744073709551616-0", "1-" + "0" * 21]
    for after in refused:
        r = httpx.get(f"{api_only}/v1/jobs/api-after/events", params={"after": after})
        assert r.status_code == 422, (after, r.status_code, r.text)
        assert r.json()["fields"][0]["field"] == "after" and r.json()["fields"][0]["value"] == after
        assert not re.fullmatch(STREAM_ID_PATTERN, after)
    for after in ["0-0", "18446744073709551615-18446744073709551615", "00000000000000000001-7"]:
        r = httpx.get(f"{api_only}/v1/jobs/api-after/events", params={"after": after})
        assert r.status_code == 200, (after, r.text)
        assert re.fullmatch(STREAM_ID_PATTERN, after)
    doc = httpx.get(f"{api_only}/openapi.json").json()
    [param] = [p for p in doc["paths"]["/v1/jobs/{job_id}/events"]["get"]["parameters"] if p["name"] == "after"]
    assert param["schema"]["pattern"] == STREAM_ID_PATTERN


def test_dashboard_routes_refuse_a_job_id_that_is_not_a_plain_name(api_only: str, redis_url: str) -> None:
    """``api-dash-id:events`` names the job's event stream: read as a job record it was a 500 (WRONGTYPE)."""
    from interleaf.runtime.jobs.spec import JOB_ID_PATTERN
    from interleaf.runtime.jobs.store import dump_trajectory
    from interleaf.telemetry.records import TerminationReason, Trajectory

    assert httpx.post(f"{api_only}/v1/jobs", json={"n": 1, "job_id": "api-dash-id"}).status_code == 201
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xadd("interleaf:job:api-dash-id:events", {"event": '{"type": "job_started", "job_id": "api-dash-id"}'})
    episode = Trajectory(id="api-dash-id-e0", job_id="api-dash-id", episode=0, termination=TerminationReason.ANSWERED)
    client.hset("interleaf:job:api-dash-id:trajectories", "0", dump_trajectory(episode))
    client.close()
    for path in (
        "/v1/dashboard/jobs/api-dash-id:events",
        "/v1/dashboard/jobs/api-dash-id:events/episodes",
        "/v1/dashboard/jobs/api-dash-id:events/episodes/0",
        "/v1/dashboard/jobs/api-dash-id:events/servers",
        "/v1/dashboard/jobs/api-dash-id:trajectories",
    ):
        r = httpx.get(f"{api_only}{path}")
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "job_id", (path, r.status_code, r.text)
    r = httpx.get(f"{api_only}/v1/dashboard/compare", params={"jobs": ["api-dash-id:events", "api-dash-id"]})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "jobs.0", r.text
    assert httpx.get(f"{api_only}/v1/dashboard/jobs/api-dash-id").status_code == 200
    doc = httpx.get(f"{api_only}/openapi.json").json()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param["name"] == "job_id":
                    assert param["schema"]["pattern"] == JOB_ID_PATTERN, path
                if param["name"] == "jobs":
                    assert param["schema"]["items"]["pattern"] == JOB_ID_PATTERN, path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from interleaf.cli import main

    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_cancelling_an_ended_job_is_409_naming_its_status_and_changes_nothing(
    api_only: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert httpx.post(f"{api_only}/v1/jobs", json={"n": 1, "job_id": "api-ended"}).status_code == 201
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset("interleaf:job:api-ended", mapping={"status": "succeeded", "finished_at": str(time.time())})
    client.close()
    before = httpx.get(f"{api_only}/v1/jobs/api-ended").json()
    r = httpx.post(f"{api_only}/v1/jobs/api-ended/cancel", json={})
    assert r.status_code == 409 and r.json()["detail"] == (
        "job 'api-ended' has already ended (succeeded): there is nothing to cancel"
    )
    assert httpx.get(f"{api_only}/v1/jobs/api-ended").json() == before  # the final record is left as it is
    code, out, err = run_cli(capsys, "jobs", "cancel", "api-ended", "--server", api_only)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1, err
    assert err.startswith("interleaf jobs cancel: ") and "409 job 'api-ended' has already ended (succeeded)" in err
    doc = httpx.get(f"{api_only}/openapi.json").json()
    assert "already ended" in doc["paths"]["/v1/jobs/{job_id}/cancel"]["post"]["responses"]["409"]["description"]


def test_the_documented_422_example_is_what_the_server_answers(api_only: str) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "jobs-api.md").read_text()
    example = re.search(r'`(\{"n": 0, "retention": "forever"\})` →\s*`422 \{"error": "(.+?)", "fields"', doc, re.S)
    assert example, "docs/jobs-api.md: the 422 example of {'n': 0, 'retention': 'forever'}"
    r = post_json(f"{api_only}/v1/jobs", example.group(1))
    assert r.status_code == 422
    assert r.json()["error"] == " ".join(example.group(2).split())  # the doc wraps the line


def test_a_body_that_is_not_json_is_422_naming_the_body_with_the_parsers_reason(api_only: str) -> None:
    def only_problem(body: bytes) -> dict:
        r = post_json(f"{api_only}/v1/jobs", body)
        assert r.status_code == 422, (body[:40], r.status_code, r.text[:500])
        [problem] = r.json()["fields"]
        assert problem["field"] == "body" and r.json()["error"].startswith("invalid request: body=")
        return problem

    malformed = only_problem(b'{"n": 2,')
    assert malformed["value"] == '{"n": 2,' and malformed["problem"] == (
        "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 9 (char 8)"
    )
    not_utf8 = only_problem(b'{"suite": "\xff\xfe"}')
    assert "not UTF-8" in not_utf8["problem"] and "byte 0xff at position 11" in not_utf8["problem"]
    assert not_utf8["value"] == '{"suite": "\\xff\\xfe"}'
    assert "nested too deeply" in only_problem(b"[" * 100_000)["problem"]
    assert "nested too deeply" in only_problem(b'{"suite": ' + b"[" * 100_000)["problem"]
    assert httpx.get(f"{api_only}/v1/jobs").status_code == 200
    doc = httpx.get(f"{api_only}/openapi.json").json()
    assert "'body'" in doc["paths"]["/v1/jobs"]["post"]["responses"]["422"]["description"]


def test_a_method_no_route_serves_is_405_with_allow_before_the_media_type(api_only: str) -> None:
    doc = httpx.get(f"{api_only}/openapi.json").json()
    concrete = {"{job_id}": "x", "{episode}": "0", "{name}": "uPlot.min.css"}
    for path, ops in doc["paths"].items():
        url = api_only + re.sub(r"\{\w+\}", lambda m: concrete[m.group(0)], path)
        declared = {method.upper() for method in ops}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - declared:
            r = httpx.request(method, url)  # no Content-Type: the method is what is wrong
            assert r.status_code == 405, (method, path, r.status_code, r.text)
            assert declared <= set(r.headers["allow"].split(", ")) and method in r.json()["detail"]
    assert httpx.put(f"{api_only}/v1/nothing-here").status_code == 404  # no route has the path


def test_a_long_value_is_shown_cut_not_as_json_text(api_only: str) -> None:
    r = httpx.post(f"{api_only}/v1/jobs", json={"job_id": "a" * 300})
    [problem] = r.json()["fields"]
    assert problem["value"] == "a" * 200 + "…"
    assert f"job_id='{'a' * 200}…': String should match pattern" in r.json()["error"]


def test_the_openapi_document_states_what_is_accepted(api_only: str) -> None:
    from interleaf.runtime.jobs.spec import BACKEND_URL_PATTERN

    doc = httpx.get(f"{api_only}/openapi.json").json()
    items = doc["components"]["schemas"]["JobRequest"]["properties"]["backend_urls"]["items"]
    assert (items["pattern"], items["maxLength"]) == (BACKEND_URL_PATTERN, 2048)
    for url in ["", "http://", "file:///etc/passwd", "http://h:65536", "http://\u00e9x.org", "http://[::1:80"]:
        assert not re.fullmatch(BACKEND_URL_PATTERN, url), url
        r = httpx.post(f"{api_only}/v1/jobs", json={"backend_urls": [url]})
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "backend_urls", (url, r.text)
    for url in ["http://127.0.0.1:30000", "HTTPS://gpu-1.example.org:0443/v1?x=1", "http://[::1]:8000"]:
        assert re.fullmatch(BACKEND_URL_PATTERN, url), url
        job = httpx.post(f"{api_only}/v1/jobs", json={"backend_urls": [url]})
        assert job.status_code == 201, job.text
    cancel = doc["paths"]["/v1/jobs/{job_id}/cancel"]["post"]
    assert not cancel.get("requestBody", {}).get("required", False)  # no body is fine (see the front-door test)


async def test_jobs_logs_prints_one_line_per_event_even_for_a_long_failure(
    api_only: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job_failed event keeps the whole text of the failure (Ray's multi-line report) as ``detail``;
    ``interleaf jobs logs`` prints one line per event (``--json`` has it all)."""
    from interleaf.runtime.jobs.store import JobEvent, JobEventType, JobStore

    assert httpx.post(f"{api_only}/v1/jobs", json={"n": 1, "job_id": "api-long-failure"}).status_code == 201
    report = "ActorDiedError: The actor died unexpectedly.\n" + "\tclass_name: EpisodeWorker\n" * 80
    async with JobStore(redis_url) as store:
        data = {"status": "failed", "error": "ActorDiedError: The actor died unexpectedly. …", "detail": report}
        await store.add_event(JobEvent(type=JobEventType.JOB_FAILED, job_id="api-long-failure", data=data))
    code, out, _ = run_cli(capsys, "jobs", "logs", "api-long-failure", "--server", api_only)
    assert code == 0 and len(out.strip().splitlines()) == 1, out
    assert "detail=ActorDiedError: The actor died unexpectedly. …" in out
    code, out, _ = run_cli(capsys, "jobs", "logs", "api-long-failure", "--server", api_only, "--json")
    assert json.loads(out)["data"]["detail"] == report
