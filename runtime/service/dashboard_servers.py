"""The dashboard's servers view: per backend, the KV it held through tool pauses and the KV of the job's
calls in flight over the job's time (rebuilt from the per-turn records of the episode index), the
engine's sampled KV in use, the budget, hit rate, admission waits and failovers."""

from __future__ import annotations

from interleaf.runtime.service.dashboard_charts import SERIES_POINTS, peak_series, sampled_series
from interleaf.runtime.service.dashboard_index import DashboardData
from interleaf.runtime.service.dashboard_models import ServerSeries, ServersView

_APPROXIMATIONS = (
    "held and in-flight KV are rebuilt from each turn's timings (start = episode start + earlier calls "
    "and pauses); the engine's own KV in use (all clients, radix cache) is sampled every few seconds "
    "while the job runs (servers_sampled events) and drawn as steps",
    "a hold lasts the whole tool pause; one released during it (TTL) ends at its predicted pause",
    "in-flight KV counts a call's full context + generated tokens from its start to its end",
)
"""What the series approximate, as ``ServersView.approximations`` says it to the reader."""


async def servers_view(data: DashboardData, job_id: str) -> ServersView:
    """One ``ServerSeries`` per backend that served a call of the job, over the job's indexed episodes."""
    record = await data.job(job_id)
    index, total = await data.advance(record)
    traces = index.servers
    starts = [a for s in traces.values() for a, _, _ in s.in_flight]
    ends = [b for s in traces.values() for _, b, _ in s.in_flight + s.held]
    t0, t1 = (min(starts), max(ends)) if starts else (0.0, 0.0)
    fraction = float(record.spec.get("kv_budget_fraction") or 0.5)
    samples = await data.kv_samples(job_id)
    out = []
    for url, s in sorted(traces.items()):
        capacity = await data.server_capacity(url) if url in record.spec.get("backend_urls", []) else None
        held = peak_series(s.held, t0, t1)
        used = sampled_series(samples.get(url, []), t0, t1)
        out.append(
            ServerSeries(
                url=url,
                t=[(t1 - t0) * b / SERIES_POINTS for b in range(SERIES_POINTS)],
                held=held,
                in_flight=peak_series(s.in_flight, t0, t1),
                budget_tokens=fraction * capacity if capacity else None,
                max_total_num_tokens=capacity,
                engine_kv_used=used,
                turns=s.turns,
                hit_rate=s.cached_reported / s.prompt_reported if s.prompt_reported else None,
                recomputed_tokens=s.recomputed,
                admission_waits=s.admission_waits,
                admission_wait_s=s.admission_wait_s,
                denied=s.denied,
                suspended=s.suspended,
                failovers_from=s.failovers_from,
                peak_held=max(held, default=0.0),
            )
        )
    return ServersView(
        total=total, indexed=len(index.rows), span_s=t1 - t0, servers=out, approximations=list(_APPROXIMATIONS)
    )


__all__ = ["servers_view"]
