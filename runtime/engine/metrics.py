"""Prometheus metrics with SGLang's exact names (``sglang:*``), read from scheduler state at scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from interleaf.runtime.engine.scheduler import Scheduler

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class EngineMetrics:
    def __init__(self, scheduler: Scheduler, model_name: str, simulated: bool):
        self.scheduler = scheduler
        self.labels = {"model_name": model_name, **({"simulated": "true"} if simulated else {})}
        self.registry = CollectorRegistry()
        names = list(self.labels)
        self.hist = {
            "ttft": Histogram("sglang:time_to_first_token_seconds", "Time to first token.", names,
                              registry=self.registry, buckets=_BUCKETS),
            "itl": Histogram("sglang:inter_token_latency_seconds", "Decode step latency.", names,
                             registry=self.registry, buckets=_BUCKETS),
            "queue": Histogram("sglang:queue_time_seconds", "Time waiting before prefill.", names,
                               registry=self.registry, buckets=_BUCKETS),
            "e2e": Histogram("sglang:e2e_request_latency_seconds", "Request latency.", names,
                             registry=self.registry, buckets=_BUCKETS),
        }  # fmt: skip
        for hist in self.hist.values():  # export every histogram from the start, as SGLang does
            hist.labels(**self.labels)
        self.registry.register(_StateCollector(self))
        scheduler.observe = self.observe

    def observe(self, pair: tuple[str, float]) -> None:
        name, value = pair
        self.hist[name].labels(**self.labels).observe(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, metrics: EngineMetrics):
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        s = self.m.scheduler
        st = s.stats
        labels = self.m.labels
        keys, vals = list(labels), list(labels.values())

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=keys)
            g.add_metric(vals, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=keys)
            c.add_metric(vals, value)
            return c

        cache = s.cache
        cap = cache.capacity
        used = cache.used_tokens
        yield counter("sglang:prompt_tokens", "Prompt tokens received.", st.prompt_tokens)
        yield counter("sglang:cached_tokens", "Prompt tokens served from the prefix cache.", st.cached_tokens)
        yield counter("sglang:generation_tokens", "Tokens generated.", st.generation_tokens)
        yield counter("sglang:evicted_tokens", "Tokens evicted from the radix cache.", cache.radix.evicted_tokens_total)
        yield counter("sglang:retracted_requests", "Requests retracted for lack of KV.", st.retractions)
        yield counter("sglang:num_requests", "Requests finished (completed or aborted).", st.requests)
        yield gauge("sglang:cache_hit_rate", "Cached / prompt tokens since start.",
                    st.cached_tokens / st.prompt_tokens if st.prompt_tokens else 0.0)  # fmt: skip
        yield gauge("sglang:max_total_num_tokens", "KV pool size in tokens.", cap)
        yield gauge("sglang:kv_used_tokens", "KV slots in use (running, cached, pinned).", used)
        yield gauge("sglang:kv_available_tokens", "Free KV slots.", cache.pool.available)
        yield gauge("sglang:kv_evictable_tokens", "Cached KV that can be evicted.", cache.radix.evictable_tokens)
        yield gauge("sglang:token_usage", "Fraction of the KV pool in use.", used / cap)
        yield gauge("sglang:num_streaming_sessions", "Open streaming sessions.", cache.sessions.streaming_count)
        yield gauge("sglang:streaming_session_held_tokens", "Tokens pinned by streaming sessions.",
                    cache.sessions.held_tokens)  # fmt: skip
        yield gauge("sglang:num_running_reqs", "Requests prefilling or decoding.", s.num_running)
        yield gauge("sglang:num_queue_reqs", "Requests waiting for admission.", len(s.waiting))
        yield gauge("sglang:gen_throughput", "Tokens/s of the last decode step.", st.last_step_tokens_per_s)
