"""Schemathesis against ``/openapi.json`` of a real ``interleaf serve`` (loopback, real Redis): hostile
and valid requests generated from the schema, a bounded number per operation, with every check
Schemathesis has. Every answer must be documented (status code, media type, body schema, headers), none
may be a 5xx, data the schema refuses must be refused, an undeclared method must be a 405 with ``Allow``.

One exception (``CONFIG``): ``positive_data_acceptance`` is off for ``POST /v1/jobs``. JSON Schema's
``integer`` admits ``2.0``, which ``JobSpec`` refuses on purpose (``"actors": 2.0`` is a typo's sign), and
the generator's bounds past 2**53 are floats (it sends a ``seed`` over the declared maximum)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fresh_database, start_serve, stop_process

pytestmark = pytest.mark.slow

EXAMPLES = 25  # per operation and phase: ~1,000 requests over the jobs routes in ~30 s on 2 cores
CONFIG = """
[[operations]]
include-path = "/v1/jobs"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
"""


@pytest.fixture(scope="module")
def served(redis_url: str) -> Iterator[str]:
    # A token on, so the fuzzer also meets the front door; it sends the token like any client.
    proc, url = start_serve(
        "--no-worker", "--redis-url", fresh_database(redis_url), "--backend", "http://127.0.0.1:9", "--token", TOKEN
    )
    try:
        yield url
    finally:
        stop_process(proc, 60)


TOKEN = "fuzz-token-0123456789abcdef"


def fuzz(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Every check (the default), but ``CONFIG``'s exception: a ``--checks`` option would override it."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/openapi.json",
        "--max-examples", str(EXAMPLES), "--seed", "15",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--generation-database", "none", "--request-timeout", "30",
        "--report", "junit", "--report-dir", str(tmp_path),
        *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)


def test_jobs_api_has_no_server_errors_and_answers_as_documented(served: str, tmp_path: Path) -> None:
    proc = fuzz(served, tmp_path, "--include-path-regex", r"^/(v1/jobs.*|healthz)?$")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "No issues found" in proc.stdout or " passed" in proc.stdout, proc.stdout[-2000:]


def test_whole_api_has_no_server_errors_and_answers_as_documented(served: str, tmp_path: Path) -> None:
    """Every route of the document, the dashboard's data routes included."""
    proc = fuzz(served, tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
