"""Shared fixtures: real services on 127.0.0.1 (redis-server, the embedded engine)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from interleaf.runtime.child_process import free_port
from interleaf.runtime.engine.process import EngineProcess
from interleaf.runtime.jobs.redis_server import RedisServer
from tests.waiting import wait_healthy

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
_EXIT_STATUS = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server for the test session; tests isolate themselves by key prefix or FLUSHDB."""
    with RedisServer() as server:
        yield server.url


_databases = itertools.count()


def fresh_database(redis_url: str) -> str:
    """``redis_url`` on a numbered database of its own (1-15, in turn), emptied. ``interleaf serve``
    with a worker reads its queue in order: on the shared database it would first run every job other
    tests queued with ``--no-worker`` (the API fuzzer queues hundreds, against a dead backend)."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{1 + next(_databases) % 15}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def own_redis_url(redis_url: str) -> str:
    """The session's redis-server on an emptied database of this test's own (``fresh_database``)."""
    return fresh_database(redis_url)


def start_engine(*extra: str, timeout_s: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Launch the embedded engine on a free loopback port with ``extra`` flags; return (process, base URL)."""
    engine = EngineProcess(*extra, startup_timeout_s=timeout_s)
    return engine.proc, engine.url


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def start_serve(*args: str, timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Launch ``interleaf serve`` on a free loopback port with ``args``; return (process, base URL)
    once ``/healthz`` answers."""
    port = free_port()
    exe = shutil.which("interleaf")
    assert exe, "the interleaf console script is installed by scripts/install.sh"
    proc = subprocess.Popen([exe, "serve", "--port", str(port), *args])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, timeout_s)
    except AssertionError:
        proc.kill()
        raise
    return proc, url


@pytest.fixture(scope="session")
def engine_url() -> Iterator[str]:
    """The embedded engine with the default model (SmolLM2-135M), sessions and metrics on."""
    proc, url = start_engine()
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def sim_engine_no_sessions() -> Iterator[str]:
    """The sim engine on a real clock (episodes take ~1 s), metrics on, streaming sessions off (SGLang's
    defaults): what the served-job tests run against."""
    proc, url = start_engine("--executor", "sim", "--sim-clock", "real", "--sglang-defaults", "--enable-metrics")
    try:
        yield url
    finally:
        stop_process(proc)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Native libraries loaded by the suite (Ray's gRPC threads, torch's OpenMP pool, xgrammar's FFI)
    # occasionally crash during interpreter teardown after every test has passed and the summary is
    # printed (seen once in ~5 full runs: SIGSEGV at exit). Leave with the session's own status first.
    status = config.stash.get(_EXIT_STATUS, None)
    if status is not None and os.environ.get("INTERLEAF_TEST_SOFT_EXIT") != "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
