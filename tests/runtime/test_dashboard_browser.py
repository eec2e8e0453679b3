"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright against
``interleaf serve`` and a real Redis.

- ``test_every_view_on_real_jobs``: two jobs (retention ``none`` and ``session``) submitted over HTTP and run
  by the server's worker on local Ray against the embedded engine (the real model); the browser watches
  one finish live, opens an episode by URL and reads a tool result, opens the servers view and compares
  the two jobs. A stored synthetic job (``dashboard_jobs.py``) supplies a known pattern finding whose
  evidence must be highlighted in the text.
- ``test_ten_thousand_episode_job_first_page``: a 10,000-episode, 100,000-turn job written straight into
  Redis; its job view's first page must load in under 2 s (the issue's acceptance; generous here,
  where it takes ~0.2 s).

Needs /usr/bin/chromium: ``.ci/run`` installs it and sets INTERLEAF_BROWSER=1, which makes these tests
required; elsewhere they are skipped when Chromium is missing. ``INTERLEAF_SCREENSHOTS=<dir>`` saves a
screenshot of each view there (docs/img/dashboard-*.png are made this way).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from interleaf.runtime.jobs.store import JobStore
from tests.conftest import start_serve, stop_process
from tests.runtime.dashboard_jobs import store_synthetic_job, synthetic_trajectory
from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("INTERLEAF_BROWSER") and not Path(CHROMIUM).exists(),
        reason="no /usr/bin/chromium (set INTERLEAF_BROWSER=1 to require it; .ci/run installs it)",
    ),
]
SHOTS = os.environ.get("INTERLEAF_SCREENSHOTS")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"dashboard-{name}.png"), full_page=True)


def fits(page, width: int) -> None:
    """Nothing is clipped or scrolls sideways at ``width`` px."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"page is {scroll} px wide at a {width} px viewport ({page.url})"


@pytest.mark.model
def test_every_view_on_real_jobs(own_redis_url: str, engine_url: str) -> None:
    redis_url = own_redis_url  # a serve with a worker: no other test's queued jobs ahead of these
    from playwright.sync_api import expect, sync_playwright

    tag = uuid.uuid4().hex[:6]
    none, session = f"real-none-{tag}", f"real-session-{tag}"
    # Episode 4 of a synthetic job states its product before a python call; it shows the confirmatory
    # pattern when its final answer is that product (drawn per job id, ~70%): take an id where it is.
    synthetic = next(
        f"patterns-{tag}-{k}" for k in range(100) if synthetic_trajectory(f"patterns-{tag}-{k}", 4).correct
    )

    async def store() -> None:
        async with JobStore(redis_url) as s:
            await store_synthetic_job(s, synthetic, 8)

    asyncio.run(store())
    proc, url = start_serve("--redis-url", redis_url, "--backend", engine_url)
    spec = {"suite": "arith", "n": 2, "concurrency": 2, "actors": 1, "max_turns": 2, "max_new_tokens": 24}
    try:
        for job_id, retention in ((none, "none"), (session, "session")):
            r = httpx.post(f"{url}/v1/jobs", json={**spec, "job_id": job_id, "retention": retention})
            assert r.status_code == 201, r.text
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # Jobs list, then the first job: it finishes while the page is open (live, no reload).
            page.goto(f"{url}/#/")
            expect(page.locator("tr.job", has_text=none)).to_be_visible(timeout=15_000)
            fits(page, 1280)
            page.locator("tr.job", has_text=none).locator("a").click()
            expect(page.locator("#jobhead .st")).to_have_text("succeeded", timeout=420_000)
            expect(page.locator("#episodes tr.ep")).to_have_count(2, timeout=15_000)
            expect(page.locator("#summary")).to_contain_text("cache hit rate")
            # Events are escaped once: the JSON reads as JSON, never as &quot;.
            expect(page.locator("#events")).to_contain_text('{"attempt":1')
            assert "&quot;" not in page.locator("#events").inner_text()
            expect(page.locator("#episodes tr.ep").first.locator(".seg")).not_to_have_count(0)
            expect(page.locator("#episodes tr.ep").first.locator(".tok span")).not_to_have_count(0)
            fits(page, 1280)
            shot(page, "job")

            # Sorting and filtering go through the URL.
            page.locator("th.sort[data-k=pte]").click()
            expect(page).to_have_url(f"{url}/#/job/{none}?sort=pte&order=desc&page=0")
            page.locator("button.filter[data-f=incorrect]").click()
            expect(page.locator("button.filter.on")).to_have_text("incorrect")

            # An episode by URL: its tool call's result as the store has it.
            traj = next(t for t in httpx.get(f"{url}/v1/jobs/{none}/trajectories").json() if t["episode"] == 0)
            call = traj["turns"][0]["tool_calls"][0]  # the tir agent must call a tool before answering
            page.goto(f"{url}/#/job/{none}/episode/0")
            first = page.locator(f"#call-{call['id']}")
            expect(first.locator("b").first).to_have_text(call["name"])
            assert first.locator("pre.result").inner_text() == call["result"]
            expect(page.locator("#turn-0 .strip.cost")).to_contain_text("cached")
            expect(page.locator("#turn-0 .strip.cost")).to_contain_text("TTFT")
            expect(page.locator("#expected")).to_have_text(traj["expected"])
            fits(page, 1280)
            shot(page, "episode")

            # A known pattern's evidence, highlighted in the text with the rule's name.
            page.goto(f"{url}/#/job/{synthetic}/episode/4")
            mark = page.locator("#turn-0 .text mark.pat")
            expect(mark).to_have_attribute("data-rule", "confirmatory_tool_usage")
            expect(page.locator("#turn-0 .text sup.rule")).to_have_text("confirmatory_tool_usage")
            # Tool output with markup is shown as text (escaped once), not rendered.
            page.goto(f"{url}/#/job/{synthetic}/episode/1")
            expect(page.locator("#turn-1 pre.result")).to_contain_text("<b>&amp;</b> add 0")
            page.goto(f"{url}/#/job/{synthetic}/episode/4")
            shot(page, "patterns")

            # Servers: the engine served every call; its budget is known (it answers /server_info).
            wait_until(
                lambda: httpx.get(f"{url}/v1/jobs/{session}").json()["status"],
                until=lambda s: s in ("succeeded", "failed", "cancelled"),
                message=f"job {session} to end",
                timeout_s=420,
                interval_s=1,
            )
            page.goto(f"{url}/#/job/{session}/servers")
            row = page.locator("#servertable tbody tr")
            expect(row).to_have_count(1, timeout=15_000)
            expect(row.locator("td").first).to_have_text(engine_url)
            assert row.locator("td").nth(5).inner_text() != "not known"
            expect(page.locator(".serverchart canvas")).to_have_count(1)
            fits(page, 1280)
            shot(page, "servers")

            # Compare the two jobs: one table, three charts.
            page.goto(f"{url}/#/compare?jobs={none},{session}")
            table = page.locator("#cmptable")
            expect(table.locator("thead th")).to_have_count(3, timeout=15_000)
            expect(table).to_contain_text("mean PTE (measured)")
            expect(table.locator("tr", has_text="retention")).to_contain_text("session")
            expect(page.locator("#c-acc canvas")).to_have_count(1)
            expect(page.locator("#c-jct canvas")).to_have_count(1)
            expect(page.locator("#c-rec .hbar")).to_have_count(2)
            fits(page, 1280)
            shot(page, "compare")
            page.goto(f"{url}/#/")
            expect(page.locator("tr.job", has_text=session)).to_be_visible()
            shot(page, "jobs")
            assert not errors, errors
            browser.close()
    finally:
        stop_process(proc, 60)


def test_ten_thousand_episode_job_first_page(redis_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    job = f"big-{uuid.uuid4().hex[:6]}"

    async def store() -> None:
        async with JobStore(redis_url) as s:
            await store_synthetic_job(s, job, 10_000, turns=10)

    asyncio.run(store())
    proc, url = start_serve("--no-worker", "--redis-url", redis_url, "--backend", "http://127.0.0.1:9")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/#/")  # page and script loaded; the job view is what is timed
            expect(page.locator("tr.job", has_text=job)).to_be_visible(timeout=15_000)
            start = time.monotonic()
            page.goto(f"{url}/#/job/{job}")
            expect(page.locator("#episodes tr.ep")).to_have_count(50, timeout=30_000)
            elapsed = time.monotonic() - start
            expect(page.locator("#range")).to_have_text("1–50 of 10,000")
            assert elapsed < 2.0, f"first page of a 10,000-episode job took {elapsed:.2f} s"
            # Sorting needs the index: answered over the part indexed so far, then complete.
            page.locator("th.sort[data-k=recomputed]").click()
            expect(page.locator("#episodes tr.ep")).to_have_count(50, timeout=30_000)
            expect(page.locator("#indexing")).to_have_text("", timeout=180_000)
            # The page refreshes once indexing is done: on a loaded 2-core box that took over 5 s.
            expect(page.locator("#range")).to_have_text("1–50 of 10,000", timeout=60_000)
            browser.close()
    finally:
        stop_process(proc, 60)
