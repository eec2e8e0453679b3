"""The dashboard's data routes (``runtime/service/dashboard_api.py``) over HTTP: ``interleaf serve`` as a real
process on loopback, a real Redis holding synthetic jobs (``tests/runtime/dashboard_jobs.py``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from interleaf.runtime.jobs.store import JobStatus, JobStore
from tests.conftest import start_serve, stop_process
from tests.runtime.dashboard_jobs import SERVERS, store_synthetic_job, synthetic_trajectory
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
SUFFIX = uuid.uuid4().hex[:6]
ADAPTIVE, NONE, SESSION, RUNNING, ALTERED = (
    f"dash-{k}-{SUFFIX}" for k in ("adaptive", "none", "session", "running", "altered")
)


@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[str]:
    async def fill() -> None:
        async with JobStore(redis_url) as store:
            await store_synthetic_job(store, ADAPTIVE, 60, retention="adaptive")
            await store_synthetic_job(store, NONE, 30, retention="none")
            await store_synthetic_job(store, SESSION, 30, retention="session")
            await store_synthetic_job(store, RUNNING, 20, status=JobStatus.RUNNING)
            await store_synthetic_job(store, ALTERED, 6, status=JobStatus.RUNNING)  # no stored summary
            # Episode 1 as another version (or a hand edit in Redis) might have left it.
            key = store._key("job", ALTERED, "trajectories")
            await store.redis.hset(key, "1", '{"job_id": "x", "episode": 1, "turns": "not a list"}')

    asyncio.run(fill())
    proc, url = start_serve("--no-worker", "--redis-url", redis_url, "--backend", "http://127.0.0.1:9")
    try:
        yield url
    finally:
        stop_process(proc, 60)


def get(url: str, path: str, **params) -> dict:
    r = httpx.get(f"{url}{path}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def indexed(url: str, job: str) -> dict:
    """The job overview once its episode index covers every stored episode."""
    return wait_until(
        lambda: get(url, f"/v1/dashboard/jobs/{job}"),
        until=lambda o: o["indexed"] == o["total"],
        message=f"the episode index of {job} to be complete",
        timeout_s=60,
        interval_s=0.2,
    )


def test_default_page_sort_filter_and_pagination(api: str) -> None:
    page = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes", limit=25)
    assert page["total"] == 60 and page["matched"] == 60
    assert [r["episode"] for r in page["rows"]] == list(range(25))
    row = page["rows"][0]
    assert len(row["timeline"]) == 4 and row["pte"] > 0 and row["model"]
    seg = row["timeline"][1]
    assert seg["cached"] + seg["recomputed"] + seg["new"] > 0 and seg["decision"] in ("hold", "release")
    second = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes", limit=25, offset=50)
    assert [r["episode"] for r in second["rows"]] == list(range(50, 60))

    overview = indexed(api, ADAPTIVE)
    by_pte = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes", sort="pte", order="desc", limit=200)
    ptes = [r["pte"] for r in by_pte["rows"]]
    assert len(ptes) == 60 and ptes == sorted(ptes, reverse=True) and ptes[0] > ptes[-1]
    wrong = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes", filter="incorrect", limit=200)
    assert wrong["rows"] and all(r["correct"] is False for r in wrong["rows"])
    assert wrong["matched"] == wrong["counts"]["incorrect"] == overview["pte_incorrect"]["n"]
    assert wrong["counts"]["correct"] + wrong["counts"]["incorrect"] == 60
    redundant = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes", filter="pattern", pattern="redundant_tool_call")
    assert redundant["matched"] == overview["patterns"]["redundant_tool_call"] > 0
    assert all("redundant_tool_call" in r["patterns"] for r in redundant["rows"])
    by_jct = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes", sort="jct", order="asc", limit=200)["rows"]
    assert [r["jct_s"] for r in by_jct] == sorted(r["jct_s"] for r in by_jct)


def test_overview_has_summary_and_pte_of_correct_vs_incorrect(api: str) -> None:
    o = indexed(api, ADAPTIVE)
    rows = dict(o["summary_rows"])
    assert rows["episodes"] == "60" and "accuracy" in rows and rows["patterns"] != "none"
    assert o["pte_correct"]["n"] + o["pte_incorrect"]["n"] == 60
    assert o["pte_correct"]["cdf_y"][-1] == 1.0 and o["retention"]["policy"] == "adaptive"


def test_episode_detail_has_turns_costs_and_evidence(api: str) -> None:
    # Episodes with episode % 4 == 0 state the product before a python call; the pattern needs the final
    # answer to be that product (a correct episode: ~70%, drawn per job id), so pick the first such one.
    n = next(k for k in range(0, 60, 4) if synthetic_trajectory(ADAPTIVE, k).correct)
    d = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes/{n}")
    t = d["trajectory"]
    expected = synthetic_trajectory(ADAPTIVE, n)
    assert t["question"] == expected.question and t["expected"] == expected.expected
    assert "delta_ids" not in t["turns"][0] and t["turns"][0]["n_delta_ids"] == 120
    assert t["turns"][0]["tool_calls"][0]["result"] == expected.turns[0].tool_calls[0].result
    assert abs(sum(c["share"] for c in d["cost"]) - 1.0) < 1e-9
    assert d["pte"] == pytest.approx(sum(c["pte"] for c in d["cost"]))
    spans = [s for f in d["findings"] for s in f["spans"]]
    text = t["turns"][0]["text"]
    span = next(s for s in spans if s["source"] == "text")
    assert text[span["start"] : span["end"]] == expected.expected  # the answer, stated before the python call
    assert (d["prev"], d["next"]) == (n - 1 if n else None, n + 1)
    assert get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/episodes/0")["prev"] is None


def test_servers_view_counts_waits_failovers_and_holds(api: str) -> None:
    indexed(api, ADAPTIVE)
    v = get(api, f"/v1/dashboard/jobs/{ADAPTIVE}/servers")
    by_url = {s["url"]: s for s in v["servers"]}
    assert set(by_url) == set(SERVERS)
    trajs = [synthetic_trajectory(ADAPTIVE, e) for e in range(60)]
    waits = sum(1 for t in trajs for u in t.turns for e in u.retention_events if e.decision == "queued")
    failovers = sum(1 for t in trajs for u in t.turns for e in u.retention_events if e.reason.startswith("failover"))
    assert sum(s["admission_waits"] for s in v["servers"]) == waits > 0
    assert sum(s["failovers_from"] for s in v["servers"]) == failovers > 0
    assert sum(s["turns"] for s in v["servers"]) == 240
    for s in v["servers"]:
        assert len(s["t"]) == len(s["held"]) == len(s["in_flight"])
        assert 0 < s["peak_held"] <= max(s["in_flight"]) * 2 and s["budget_tokens"] is None  # servers not up
        # The engine's own KV in use, from the job's servers_sampled events, as steps over the same bins.
        used = [x for x in s["engine_kv_used"] if x is not None]
        assert len(s["engine_kv_used"]) == len(s["t"]) and used == sorted(used) and used[-1] >= 13000
    none = get(api, f"/v1/dashboard/jobs/{indexed(api, NONE)['job']['id']}/servers")
    assert all(s["peak_held"] == 0 for s in none["servers"])  # retention none never holds


def test_compare_two_jobs(api: str) -> None:
    indexed(api, NONE)
    indexed(api, SESSION)
    cols = get(api, "/v1/dashboard/compare", jobs=[NONE, SESSION])
    none, session = cols
    assert (none["id"], session["id"]) == (NONE, SESSION)
    assert none["recomputed_tokens"] > session["recomputed_tokens"]
    assert none["mean_pte"] > session["mean_pte"] and none["mean_pte_evict_all"] == session["mean_pte_evict_all"]
    assert none["jct"]["n"] == 30 and none["accuracy"] is not None


def test_running_job_index_grows_with_new_episodes(api: str, redis_url: str) -> None:
    first = indexed(api, RUNNING)
    assert first["total"] == 10  # half stored (store_synthetic_job's RUNNING)

    async def more() -> None:
        async with JobStore(redis_url) as store:
            for e in range(10, 14):
                await store.put_trajectory(synthetic_trajectory(RUNNING, e))

    asyncio.run(more())
    page = get(api, f"/v1/dashboard/jobs/{RUNNING}/episodes", sort="pte", limit=200)
    assert page["total"] == 14
    assert indexed(api, RUNNING)["total"] == 14
    assert len(get(api, f"/v1/dashboard/jobs/{RUNNING}/episodes", sort="pte", limit=200)["rows"]) == 14


def test_bad_requests_name_the_field_or_the_missing_thing(api: str) -> None:
    r = httpx.get(f"{api}/v1/dashboard/jobs/{ADAPTIVE}/episodes", params={"sort": "bogus"})
    assert r.status_code == 422 and "sort='bogus'" in r.json()["error"]
    r = httpx.get(f"{api}/v1/dashboard/jobs/{ADAPTIVE}/episodes", params={"filter": "pattern", "pattern": "nope"})
    assert r.status_code == 422 and "pattern='nope'" in r.json()["error"]
    r = httpx.get(f"{api}/v1/dashboard/compare", params={"jobs": [ADAPTIVE]})
    assert r.status_code == 422 and "jobs" in r.json()["error"]
    assert httpx.get(f"{api}/v1/dashboard/jobs/nope").json()["detail"] == "no job with id 'nope'"
    r = httpx.get(f"{api}/v1/dashboard/jobs/{ADAPTIVE}/episodes/999")
    assert r.status_code == 404 and "no stored episode 999" in r.json()["detail"]
    r = httpx.get(f"{api}/dashboard/uPlot.iife.min.js")
    assert (
        r.status_code == 200
        and "MIT License" in r.text[:2000]
        and r.headers["content-type"].startswith("text/javascript")
    )
    assert httpx.get(f"{api}/dashboard/..%2Fapi.py").status_code == 404


def test_a_stored_episode_that_cannot_be_read_is_named_never_a_500(api: str) -> None:
    """The other episodes stay usable; the unreadable one is named with its reason, and nothing stored changes."""
    for path in (f"/v1/jobs/{ALTERED}/trajectories", f"/v1/jobs/{ALTERED}/summary"):
        r = httpx.get(f"{api}{path}", timeout=60)
        assert r.status_code == 409, (path, r.status_code, r.text)
        assert f"job {ALTERED!r} episode 1 cannot be read" in r.json()["detail"], r.text
    r = httpx.get(f"{api}/v1/dashboard/jobs/{ALTERED}/episodes/1", timeout=60)
    assert r.status_code == 409 and "episode 1 cannot be read" in r.json()["detail"]
    assert get(api, f"/v1/dashboard/jobs/{ALTERED}/episodes/0")["trajectory"]["episode"] == 0
    overview = wait_until(
        lambda: get(api, f"/v1/dashboard/jobs/{ALTERED}"),
        until=lambda o: o["indexed"] + len(o["unreadable"]) == o["total"],
        message="the altered job's index",
        timeout_s=60,
        interval_s=0.2,
    )
    assert overview["total"] == 3 and overview["indexed"] == 2 and list(overview["unreadable"]) == ["1"]
    assert "turns" in overview["unreadable"]["1"] and overview["summary_rows"] is None
    page = get(api, f"/v1/dashboard/jobs/{ALTERED}/episodes", limit=10)
    assert [row["episode"] for row in page["rows"]] == [0, 2]
    assert "openapi" in get(api, "/openapi.json")  # the document still builds with the new answers
    doc = get(api, "/openapi.json")
    assert "409" in doc["paths"]["/v1/jobs/{job_id}/trajectories"]["get"]["responses"]
