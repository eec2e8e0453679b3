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
    assert problems("[1, 2]") == {"(body)": [1, 2]}
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
    # A cross-site form post (a "simple" request, no preflight) cannot cancel.
    r = httpx.post(f"{api_only}/v1/jobs/{job['id']}/cancel", data={"x": "1"})
    assert r.status_code == 415
    assert httpx.post(f"{api_only}/v1/jobs/{job['id']}/cancel").status_code == 415
    assert httpx.get(f"{api_only}/v1/jobs/api-door").json()["cancel_requested"] is False
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
