"""Schemathesis against ``/openapi.json`` of a real ``interleaf serve`` (loopback, real Redis): hostile
and valid requests generated from the schema, a bounded number per operation. Every answer must be
documented (status code, media type, body schema) and none may be a 5xx."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fresh_database, start_serve, stop_process

pytestmark = pytest.mark.slow

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES = 25  # per operation and phase: ~1,000 requests over the jobs routes in ~30 s on 2 cores


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
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", CHECKS, "--max-examples", str(EXAMPLES), "--seed", "15",
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
