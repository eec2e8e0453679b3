"""Embedded defaults: what ``interleaf run`` brings up when no servers are given.

No backend URL: start the embedded engine as a child process (``EngineProcess``, loopback, free
port). No Redis URL: start a private ``redis-server`` (``RedisServer``; durable in ``redis_dir`` when one
is given, as ``interleaf serve`` does). Both stop with the context.
Given URLs are used as they are and never stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interleaf.runtime.jobs.redis_server import RedisServer


class EmbeddedServices:
    """Engine and Redis for one run: ``with EmbeddedServices(urls, redis_url) as svc: svc.backend_urls``."""

    def __init__(
        self,
        backend_urls: Sequence[str] = (),
        redis_url: str | None = None,
        *,
        engine_args: Sequence[str] = (),
        start_redis: bool = True,
        start_engine: bool = True,
        startup_timeout_s: float = 300.0,
        redis_dir: Path | None = None,
    ) -> None:
        self._given_urls = list(backend_urls)
        self._given_redis = redis_url
        self.engine_args = list(engine_args)
        self.start_redis = start_redis
        self.start_engine = start_engine
        self.startup_timeout_s = startup_timeout_s
        self.redis_dir = redis_dir
        self.engine: Any = None
        self.redis: RedisServer | None = None

    @property
    def backend_urls(self) -> list[str]:
        if self._given_urls:
            return list(self._given_urls)
        return [self.engine.url] if self.engine is not None else []

    @property
    def redis_url(self) -> str | None:
        if self._given_redis:
            return self._given_redis
        return self.redis.url if self.redis is not None else None

    @property
    def engine_started(self) -> bool:
        """True when this context started the engine (no backend URL was given)."""
        return self.engine is not None

    def start(self) -> EmbeddedServices:
        try:
            if not self._given_urls and self.start_engine:
                from interleaf.runtime.engine.process import EngineProcess

                self.engine = EngineProcess(*self.engine_args, startup_timeout_s=self.startup_timeout_s)
            if not self._given_redis and self.start_redis:
                self.redis = RedisServer(data_dir=self.redis_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    def __enter__(self) -> EmbeddedServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["EmbeddedServices"]
