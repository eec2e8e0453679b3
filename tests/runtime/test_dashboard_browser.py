"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright against
``interleaf serve`` and a real Redis holding a stored job.

Needs /usr/bin/chromium: ``.ci/run`` installs it and sets INTERLEAF_BROWSER=1, which makes this test
required; elsewhere it is skipped when Chromium is missing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from interleaf.runtime.jobs.store import JobEvent, JobRecord, JobStatus, JobStore
from interleaf.telemetry.records import (
    CacheFigures,
    RetentionDecision,
    RetentionRecord,
    TerminationReason,
    Trajectory,
    Turn,
    TurnTimings,
)
from tests.conftest import start_serve, stop_process

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("INTERLEAF_BROWSER") and not Path(CHROMIUM).exists(),
        reason="no /usr/bin/chromium (set INTERLEAF_BROWSER=1 to require it; .ci/run installs it)",
    ),
]


def _trajectory(job_id: str, episode: int) -> Trajectory:
    turns = []
    for i in range(3):
        turns.append(
            Turn(
                index=i,
                delta_ids=[1] * 20,
                completion_ids=[2] * 8,
                timings=TurnTimings(queue_s=0.05, ttft_s=0.2 + 0.1 * i, decode_s=0.4, e2e_s=0.6, pause_s=1.0),
                cache=CacheFigures(
                    prompt_tokens=20 + 28 * i,
                    cached_tokens=28 * i - (5 if i == 2 else 0),
                    recomputed_tokens=5 if i == 2 else 0,
                ),
                retention=RetentionRecord(policy="session", decision=RetentionDecision.HOLD, reason="held"),
                retention_events=[RetentionRecord(policy="session", decision=RetentionDecision.QUEUED, wait_s=0.5)]
                if i == 1
                else [],
            )
        )
    return Trajectory(
        id=f"{job_id}-e{episode}",
        job_id=job_id,
        episode=episode,
        termination=TerminationReason.ANSWERED,
        correct=episode == 0,
        retention_policy="session",
        turns=turns,
    )


async def _store_job(redis_url: str, job_id: str) -> None:
    async with JobStore(redis_url) as store:
        await store.create_job(
            JobRecord(id=job_id, spec={"suite": "arith", "retention": "session"}, n_total=2, n_done=2, n_correct=1)
        )
        await store.update_job(job_id, status=JobStatus.SUCCEEDED, started_at=1.0, finished_at=9.0)
        for episode in range(2):
            await store.put_trajectory(_trajectory(job_id, episode))
            await store.add_event(JobEvent(type="episode_finished", job_id=job_id, episode=episode))


def test_dashboard_lists_jobs_draws_timelines_and_reports_bad_specs(redis_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    asyncio.run(_store_job(redis_url, "browser-job"))
    proc, url = start_serve("--no-worker", "--redis-url", redis_url, "--backend", "http://127.0.0.1:9")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            row = page.locator("tr.job", has_text="browser-job")
            expect(row).to_be_visible(timeout=15_000)
            expect(row.locator(".st")).to_have_text("succeeded")
            row.click()
            expect(page.locator("#episodes .ep")).to_have_count(2, timeout=15_000)
            # 3 turns x (queue, prefill, decode, pause) segments per episode.
            expect(page.locator("#episodes .ep").first.locator(".seg")).to_have_count(12)
            tip = page.locator("#episodes .seg.p").last.get_attribute("title") or ""
            assert "recomputed 5" in tip and "retention hold" in tip
            queued = page.locator("#episodes .ep").first.locator(".seg.q").nth(1).get_attribute("title") or ""
            assert "before: queued" in queued
            expect(page.locator("#summary tr").first).to_be_visible()
            expect(page.locator("#events")).to_contain_text("episode_finished")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            # The form's min=1 stops n=0 in the browser; without it, the API's refusal is shown.
            page.eval_on_selector("input[name=n]", "e => e.removeAttribute('min')")
            page.fill("input[name=n]", "0")
            page.click("#submit button")
            expect(page.locator("#err")).to_contain_text("n=0", timeout=10_000)
            assert not errors, errors
            browser.close()
    finally:
        stop_process(proc, 60)
