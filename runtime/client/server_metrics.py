"""A server's Prometheus figures (``GET /metrics``), the few that retention and the router read."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum each metric's samples over their label sets: ``{"sglang:kv_used_tokens": 1234.0, ...}``.

    Histograms keep their ``_sum``/``_count``/``_bucket`` series as separate names. Non-finite samples
    (``NaN``, ``+Inf``, ``-Inf``) are dropped: a metric with only those reads as absent.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        # NaN and ±Inf are valid Prometheus but no count of tokens: one would poison every rate read from it.
        if math.isfinite(value):
            out[match.group(1)] = out.get(match.group(1), 0.0) + value
    return out


@dataclass
class ServerMetrics:
    """One scrape of ``/metrics``; absent gauges read None."""

    values: dict[str, float]
    at: float = field(default_factory=time.monotonic)
    """Monotonic time of the scrape."""

    def get(self, name: str) -> float | None:
        return self.values.get(name if ":" in name else f"sglang:{name}")

    @property
    def kv_used_tokens(self) -> float | None:
        return self.get("kv_used_tokens")

    @property
    def kv_available_tokens(self) -> float | None:
        return self.get("kv_available_tokens")

    @property
    def kv_evictable_tokens(self) -> float | None:
        return self.get("kv_evictable_tokens")

    @property
    def num_streaming_sessions(self) -> float | None:
        return self.get("num_streaming_sessions")

    @property
    def streaming_session_held_tokens(self) -> float | None:
        return self.get("streaming_session_held_tokens")

    @property
    def ingested_tokens_total(self) -> float | None:
        """Tokens the server has written into its KV so far: prompt − cached + generated."""
        prompt = self.get("prompt_tokens_total")
        cached = self.get("cached_tokens_total")
        generated = self.get("generation_tokens_total")
        if prompt is None or generated is None:
            return None
        return prompt - (cached or 0.0) + generated


__all__ = ["ServerMetrics", "parse_prometheus"]
