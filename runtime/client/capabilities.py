"""Capability detection that speaks: what a job asks of a server that the server does not offer.

A retention policy that holds KV across tool pauses (``session``, ``ttl``, ``adaptive``) needs
streaming sessions, which SGLang serves only when started with ``--enable-streaming-session`` (off
by default). Without them every turn runs stateless (``none``). That fallback is never silent:
:func:`retention_gaps` names the server, the capability and the flag that enables it; ``interleaf
run`` prints one line per such server, the turns record it (a retention record with decision
``unsupported``), and ``Trajectory.retention_effective`` / ``JobSummary.retention_effective`` show
what the KV really got next to what was requested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel

from interleaf.runtime.client.backend import ServerInfo
from interleaf.runtime.client.errors import BackendError
from interleaf.runtime.client.retention import RetentionPolicyName, make_policy
from interleaf.runtime.client.sglang import SGLangBackend, Transport

STREAMING_SESSIONS = "streaming sessions"
"""The capability session-holding retention policies need."""
STREAMING_SESSION_FLAG = "--enable-streaming-session"
"""The SGLang server flag (``ServerArgs.enable_streaming_session``) that turns streaming sessions on;
interleaf's embedded engine has them on unless started with ``--sglang-defaults``."""


class CapabilityGap(BaseModel):
    """A capability a job requested that one server does not offer, and what runs instead."""

    server: str
    """Base URL of the server."""
    capability: str
    """What is missing, in words (``streaming sessions``)."""
    server_flag: str
    """The server flag that enables it (``--enable-streaming-session``)."""
    requested: str
    """What the job asked for, as its option reads (``retention session``)."""
    effective: str
    """What runs instead on that server (``retention none``)."""

    def message(self) -> str:
        """One line for a terminal or a log: server, capability, the flag that enables it, the fallback."""
        return (
            f"{self.server} does not serve {self.capability} (needed by {self.requested}): "
            f"start it with {self.server_flag}; this job runs {self.effective} there"
        )


def effective_retention(requested: RetentionPolicyName | str, info: ServerInfo) -> RetentionPolicyName:
    """The retention policy that really applies on a server: ``requested``, or ``none`` when the policy
    holds KV in sessions and the server serves none."""
    policy = make_policy(requested)
    if policy.uses_sessions and not info.streaming_sessions:
        return RetentionPolicyName.NONE
    return policy.name


def retention_gaps(requested: RetentionPolicyName | str, info: ServerInfo) -> list[CapabilityGap]:
    """What ``info``'s server lacks for ``requested`` (empty when it offers everything)."""
    name = make_policy(requested).name
    effective = effective_retention(name, info)
    if effective == name:
        return []
    return [
        CapabilityGap(
            server=info.url,
            capability=STREAMING_SESSIONS,
            server_flag=STREAMING_SESSION_FLAG,
            requested=f"retention {name.value}",
            effective=f"retention {effective.value}",
        )
    ]


async def probe_retention_gaps(
    urls: Sequence[str], requested: RetentionPolicyName | str, *, transport: Transport | None = None
) -> list[CapabilityGap]:
    """Connect to each server (``/server_info``), list what it lacks for ``requested``, disconnect.

    A server that does not answer is skipped: whether it can run the job is the pool's to report
    (it names the server when it cannot connect)."""
    make_policy(requested)  # a bad name fails before the network

    async def one(url: str) -> list[CapabilityGap]:
        try:
            backend = await SGLangBackend.connect(url, transport=transport)
        except BackendError:
            return []
        await backend.aclose()
        return retention_gaps(requested, backend.info)

    found = await asyncio.gather(*(one(u) for u in urls))
    return [gap for gaps in found for gap in gaps]


__all__ = [
    "STREAMING_SESSIONS",
    "STREAMING_SESSION_FLAG",
    "CapabilityGap",
    "effective_retention",
    "probe_retention_gaps",
    "retention_gaps",
]
