"""interleaf.runtime.client: the SGLang HTTP client and everything that decides about KV on the
client side — token-exact conversations, the pool of servers, retention policies at tool pauses, the
per-server KV budget, episode admission control, session-affine routing and failover.

pool = await BackendPool.connect(["http://127.0.0.1:30000"], retention="adaptive")
async with pool.episode("ep-1") as model:          # an interleaf.agents.AgentModel
    out = await model.generate(prompt_text, max_new_tokens=64)
    record = await model.pause(["search"])         # retention decision for the tool pause
await pool.aclose()

Modules import downward only (errors, settings, server_metrics → backend → sglang, conversation → retention,
capabilities, kv_budget, admission, router → session_hold → failover → episode_model → pool), so any of them can be
imported first.
"""

from __future__ import annotations

from interleaf.runtime.client.admission import AdmissionAbandoned, AdmissionMode, EpisodeAdmission, GrowthEstimate
from interleaf.runtime.client.backend import Backend, GenerateResult, ServerInfo, SessionTurn
from interleaf.runtime.client.capabilities import CapabilityGap, effective_retention, probe_retention_gaps
from interleaf.runtime.client.conversation import Conversation
from interleaf.runtime.client.episode_model import EpisodeCompletion, EpisodeModel
from interleaf.runtime.client.errors import (
    BackendError,
    BackendUnavailable,
    NoHealthyServer,
    PoolClosed,
    RequestAborted,
    ServerDown,
    SessionRejected,
)
from interleaf.runtime.client.kv_budget import HoldState, KVBudget
from interleaf.runtime.client.pool import BackendPool
from interleaf.runtime.client.retention import (
    RetentionPolicy,
    RetentionPolicyName,
    ToolDurationEstimator,
    make_policy,
)
from interleaf.runtime.client.router import Router
from interleaf.runtime.client.server_metrics import ServerMetrics, parse_prometheus
from interleaf.runtime.client.settings import PoolSettings
from interleaf.runtime.client.sglang import SGLangBackend, Transport

__all__ = [
    "AdmissionAbandoned",
    "AdmissionMode",
    "Backend",
    "BackendError",
    "BackendPool",
    "BackendUnavailable",
    "CapabilityGap",
    "Conversation",
    "EpisodeAdmission",
    "EpisodeCompletion",
    "EpisodeModel",
    "GenerateResult",
    "GrowthEstimate",
    "HoldState",
    "KVBudget",
    "NoHealthyServer",
    "PoolClosed",
    "PoolSettings",
    "RequestAborted",
    "RetentionPolicy",
    "RetentionPolicyName",
    "Router",
    "SGLangBackend",
    "ServerDown",
    "ServerInfo",
    "ServerMetrics",
    "SessionRejected",
    "SessionTurn",
    "ToolDurationEstimator",
    "Transport",
    "effective_retention",
    "make_policy",
    "parse_prometheus",
    "probe_retention_gaps",
]
