"""The private redis-server: ephemeral by default; durable in a directory (append-only file, a password
kept there with mode 0600, one server per directory)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import redis

from interleaf.runtime.jobs.redis_server import PASSWORD_FILE, RedisServer, RedisUnavailable, lock_data_dir


def test_a_durable_server_keeps_its_data_and_password_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    first = RedisServer(data_dir=data)
    try:
        client = redis.Redis.from_url(first.url)
        client.xadd("stream", {"job_id": "j1"})
        client.hset("hash", "0", "x")
        password = first.password
        assert stat.S_IMODE((data / PASSWORD_FILE).stat().st_mode) == 0o600
        with pytest.raises(RedisUnavailable, match="another process runs the Redis of"):
            lock_data_dir(data, wait_s=0)  # what a second server on the same files would do
        client.close()
    finally:
        first._proc.kill()  # as a crash would: no shutdown, no final rewrite
        first._proc.wait(10)
        first.stop()
    with RedisServer(data_dir=data) as second:
        assert second.password == password and second.port != 0
        client = redis.Redis.from_url(second.url, decode_responses=True)
        assert client.xlen("stream") == 1 and client.hget("hash", "0") == "x"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        client.close()


def test_an_ephemeral_server_leaves_nothing(tmp_path: Path) -> None:
    with RedisServer() as server:
        directory = Path(server._dir)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
    assert not directory.exists()
