"""interleaf.runtime.backends: the SGLang client, its pool of servers, and the episode's model handle.

pool = await BackendPool.connect(["http://127.0.0.1:30000"], retention="adaptive")
async with pool.episode("ep-1") as model:          # an interleaf.agents.model.AgentModel
    out = await model.generate(prompt_text, max_new_tokens=64)
    record = await model.pause(["search"])         # retention decision for the tool pause
await pool.aclose()
"""

from __future__ import annotations

from interleaf.runtime.backends.backend import Backend, GenerateResult, ServerInfo, SessionTurn
from interleaf.runtime.backends.conversation import Conversation
from interleaf.runtime.backends.errors import (
    BackendError,
    BackendUnavailable,
    NoHealthyServer,
    RequestAborted,
    SessionRejected,
)
from interleaf.runtime.backends.pool import BackendPool
from interleaf.runtime.backends.server_metrics import ServerMetrics, parse_prometheus
from interleaf.runtime.backends.sglang import SGLangBackend
from interleaf.runtime.episode_model import EpisodeCompletion, EpisodeModel

__all__ = [
    "Backend",
    "BackendError",
    "BackendPool",
    "BackendUnavailable",
    "Conversation",
    "EpisodeCompletion",
    "EpisodeModel",
    "GenerateResult",
    "NoHealthyServer",
    "RequestAborted",
    "SGLangBackend",
    "ServerInfo",
    "ServerMetrics",
    "SessionRejected",
    "SessionTurn",
    "parse_prometheus",
]
