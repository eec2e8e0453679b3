"""Retention policies: at a tool pause, keep the conversation's KV pinned on the server or let it go.

=========  =====================================================================================
policy     at each pause
=========  =====================================================================================
none       stateless: no session is ever opened; the radix cache keeps or evicts the prefix
session    hold until the episode ends (subject to the KV budget)
ttl        hold for the predicted tool time (per-tool running estimate, after Continuum), then release
adaptive   hold iff the expected recompute cost exceeds the cost of holding, in PTE (after InferCept)
=========  =====================================================================================

Adaptive's cost model (documented approximation; all figures are prefill-token equivalents, the
prefill side of PAPERS.md §A's PTE, since a recompute is pure prefill):

* release: the context's ``C`` tokens become the most-recently-used unpinned KV; the server writes
  ``R`` new tokens per second into its ``E`` reclaimable tokens (free + evictable), so under LRU the
  context survives a pause of ``T`` seconds with probability ≈ ``exp(-T·R/E)``; expected recompute
  = ``C · (1 - exp(-T·R/E))``.
* hold: pinning ``C`` tokens for ``T`` seconds takes them from every other request. A token-second of
  KV is priced at what the server could have done with it: ``u · R / M`` PTE, where ``M`` is the KV
  capacity and ``u`` the fraction of it in use (KV pressure: an idle cache makes holding free);
  hold cost = ``C · T · u · R / M`` (InferCept's memory × time waste, in PTE).

So an idle server releases (nothing will evict the prefix), short pauses on a busy server are held,
and long pauses under high pressure are released. ``R``, ``E``, ``u`` come from the server's
``/metrics`` (client-side figures when metrics are off). The hard bound on held tokens is the KV
budget's job (``interleaf.runtime.client.kv_budget``), not the policy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class RetentionPolicyName(StrEnum):
    """The retention policies a pool can run."""

    NONE = "none"
    SESSION = "session"
    TTL = "ttl"
    ADAPTIVE = "adaptive"


@dataclass
class _LogStats:
    """Running mean/variance of log-durations (Welford)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def var(self) -> float | None:
        return self.m2 / (self.n - 1) if self.n >= 2 else None


@dataclass
class ToolDurationEstimator:
    """Per-tool running estimate of pause length, as a log-normal (tool times are heavy-tailed).

    A tool never seen uses the pooled estimate of all tools, then the prior. A pause spanning
    several tools predicts the sum (an agent runs a turn's calls one after the other).
    """

    prior_median_s: float = 2.0
    """Median assumed before any observation."""
    prior_sigma: float = 1.0
    """Log-space spread assumed before two observations."""
    ttl_z: float = 1.0
    """TTL = exp(mu + z·sigma): z = 1 covers ~84% of pauses of a log-normal tool."""
    _per_tool: dict[str, _LogStats] = field(default_factory=dict)
    _pooled: _LogStats = field(default_factory=_LogStats)

    def __post_init__(self) -> None:
        checks = (
            ("prior_median_s", self.prior_median_s, lambda v: v > 0, "> 0"),
            ("prior_sigma", self.prior_sigma, lambda v: v >= 0, ">= 0"),
            ("ttl_z", self.ttl_z, lambda v: True, ""),
        )
        for name, value, ok, bound in checks:
            if not (isinstance(value, int | float) and math.isfinite(value) and ok(value)):
                raise ValueError(f"ToolDurationEstimator.{name}={value!r} must be a finite number {bound}".rstrip())

    def observe(self, tools: list[str], seconds: float) -> None:
        """Record a measured pause over ``tools`` (split evenly between them)."""
        if not tools or seconds <= 0:
            return
        share = math.log(max(seconds / len(tools), 1e-3))
        for name in tools:
            self._per_tool.setdefault(name, _LogStats()).add(share)
            self._pooled.add(share)

    def _params(self, tool: str) -> tuple[float, float]:
        stats = self._per_tool.get(tool)
        pooled_mu = self._pooled.mean if self._pooled.n else math.log(self.prior_median_s)
        pooled_var = self._pooled.var
        pooled_sigma = math.sqrt(pooled_var) if pooled_var is not None else self.prior_sigma
        if stats is None or stats.n == 0:
            return pooled_mu, pooled_sigma
        var = stats.var
        return stats.mean, (math.sqrt(var) if var is not None else pooled_sigma)

    def expected_s(self, tools: list[str]) -> float:
        """Expected pause (log-normal mean), seconds."""
        total = 0.0
        for tool in tools or ["?"]:
            mu, sigma = self._params(tool)
            total += math.exp(mu + sigma * sigma / 2)
        return total

    def ttl_s(self, tools: list[str]) -> float:
        """How long a TTL hold should last, seconds (upper quantile of the pause)."""
        total = 0.0
        for tool in tools or ["?"]:
            mu, sigma = self._params(tool)
            total += math.exp(mu + self.ttl_z * sigma)
        return total

    def observations(self, tool: str) -> int:
        stats = self._per_tool.get(tool)
        return stats.n if stats else 0


@dataclass(frozen=True)
class ServerPressure:
    """What adaptive needs to know about a server's KV right now."""

    capacity_tokens: int
    """M: the server's KV capacity (max_total_num_tokens)."""
    used_fraction: float
    """u in [0, 1]: share of the KV that is not free."""
    reclaimable_tokens: float
    """E: free + evictable tokens (what new KV can take without touching pinned or running KV)."""
    ingest_tokens_per_s: float
    """R: tokens the server writes into its KV per second (uncached prompt + generated)."""


@dataclass(frozen=True)
class PauseContext:
    """One pause to decide on."""

    context_tokens: int
    """C: tokens the conversation holds (what a release may have to recompute)."""
    tools: tuple[str, ...]
    expected_pause_s: float
    """T: expected pause length."""
    ttl_s: float
    """TTL-policy hold length."""
    pressure: ServerPressure


@dataclass(frozen=True)
class Decision:
    """A policy's verdict for one pause."""

    hold: bool
    reason: str
    ttl_s: float | None = None
    """Release after this many seconds when the pause lasts longer (None: hold until resumed)."""
    value: float = 0.0
    """Net saving of the hold in PTE: the budget releases the lowest-valued hold first."""


def recompute_cost_pte(ctx: PauseContext) -> float:
    """Expected tokens to prefill again if the KV is released for the pause."""
    p = ctx.pressure
    if p.ingest_tokens_per_s <= 0:
        return 0.0
    churn = ctx.expected_pause_s * p.ingest_tokens_per_s / max(p.reclaimable_tokens, 1.0)
    return ctx.context_tokens * -math.expm1(-churn)


def hold_cost_pte(ctx: PauseContext) -> float:
    """PTE the server loses by keeping the context's KV pinned through the pause."""
    p = ctx.pressure
    price = p.used_fraction * p.ingest_tokens_per_s / max(p.capacity_tokens, 1)
    return ctx.context_tokens * ctx.expected_pause_s * price


class RetentionPolicy:
    """Base: a named policy deciding per pause."""

    name: RetentionPolicyName
    uses_sessions: bool = True
    """Whether turns run inside streaming sessions (needed to hold anything)."""
    preempts: bool = False
    """Whether a turn needing budget may release other episodes' paused holds (lowest value first)."""

    def decide(self, ctx: PauseContext) -> Decision:
        raise NotImplementedError


class NoRetention(RetentionPolicy):
    name = RetentionPolicyName.NONE
    uses_sessions = False

    def decide(self, ctx: PauseContext) -> Decision:
        return Decision(False, "stateless: nothing pinned; the radix cache may keep or evict the prefix")


class SessionRetention(RetentionPolicy):
    name = RetentionPolicyName.SESSION

    def decide(self, ctx: PauseContext) -> Decision:
        return Decision(True, "session: pinned until the episode ends", value=float(ctx.context_tokens))


class TTLRetention(RetentionPolicy):
    name = RetentionPolicyName.TTL

    def decide(self, ctx: PauseContext) -> Decision:
        tools = ",".join(ctx.tools) or "?"
        return Decision(
            True,
            f"ttl: pinned for {ctx.ttl_s:.2f} s, the predicted time of {tools}",
            ttl_s=ctx.ttl_s,
            value=float(ctx.context_tokens),
        )


class AdaptiveRetention(RetentionPolicy):
    name = RetentionPolicyName.ADAPTIVE
    preempts = True

    def decide(self, ctx: PauseContext) -> Decision:
        recompute = recompute_cost_pte(ctx)
        hold = hold_cost_pte(ctx)
        figures = f"recompute {recompute:.0f} PTE vs hold {hold:.0f} PTE over {ctx.expected_pause_s:.2f} s"
        if recompute > hold:
            # Past the TTL quantile the pause is longer than predicted: stop paying for it.
            return Decision(True, f"adaptive: {figures}", ttl_s=ctx.ttl_s, value=recompute - hold)
        return Decision(False, f"adaptive: {figures}", value=recompute - hold)


_POLICIES: dict[str, type[RetentionPolicy]] = {
    RetentionPolicyName.NONE: NoRetention,
    RetentionPolicyName.SESSION: SessionRetention,
    RetentionPolicyName.TTL: TTLRetention,
    RetentionPolicyName.ADAPTIVE: AdaptiveRetention,
}


def make_policy(name: str) -> RetentionPolicy:
    """The policy called ``name`` (case-insensitive); raises ValueError listing the valid names, also for a
    ``name`` that is not a string (``None`` is not ``"none"``: pass the policy's name)."""
    if not isinstance(name, str):
        raise ValueError(f"retention={name!r} is not a policy name: use one of {', '.join(_POLICIES)}")
    cls = _POLICIES.get(name.lower())
    if cls is None:
        raise ValueError(f"retention={name!r} is not a policy: use one of {', '.join(_POLICIES)}")
    return cls()


__all__ = [
    "AdaptiveRetention",
    "Decision",
    "NoRetention",
    "PauseContext",
    "RetentionPolicy",
    "RetentionPolicyName",
    "ServerPressure",
    "SessionRetention",
    "TTLRetention",
    "ToolDurationEstimator",
    "hold_cost_pte",
    "make_policy",
    "recompute_cost_pte",
]
