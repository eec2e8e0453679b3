"""The Backend protocol: what the runtime needs from one inference server, and what a call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from interleaf.runtime.client.server_metrics import ServerMetrics
from interleaf.telemetry.records import CacheFigures


class ServerInfo(BaseModel):
    """What a server told us about itself (``/server_info`` and ``/model_info``), read once at connect."""

    url: str
    """Base URL of the server (``http://host:port``)."""
    model_path: str = ""
    """``/model_info`` model_path: where the server loaded the model from (the tokenizer lives there)."""
    served_model_name: str = ""
    """``/model_info`` served_model_name (falls back to model_path)."""
    max_total_num_tokens: int
    """KV capacity in tokens (``internal_states[0].max_total_num_tokens``): the base of the KV budget."""
    streaming_sessions: bool = False
    """Whether the server accepts streaming sessions (``--enable-streaming-session``)."""
    metrics: bool = False
    """Whether ``/metrics`` is served (``--enable-metrics``)."""
    chunked_prefill_size: int = 8192
    """Prompt tokens the server prefills per scheduler iteration (``--chunked-prefill-size``; SGLang's
    default on large GPUs when the server does not say): a turn whose whole context fits in one chunk is
    recomputed in a single iteration."""
    version: str = ""
    """Server version string."""
    executor: str = ""
    """Embedded engine only: ``model`` or ``sim`` (a simulated GPU; figures are simulated)."""


@dataclass
class GenerateResult:
    """One ``/generate`` call's outcome as the server reported it (plus the client's own clock)."""

    text: str
    """The generated text (detokenised by the server)."""
    output_ids: list[int]
    """Generated ids, including the stop token when one ended generation."""
    finish_reason: str
    """stop | length | abort."""
    request_id: str
    """``meta_info.id``: the rid a later session turn names."""
    server: str
    """Base URL of the server that answered."""
    prompt_tokens: int
    """Full context length the model attended to (session history included)."""
    cached_tokens: int
    """Prompt tokens whose KV was reused (session or radix prefix)."""
    completion_tokens: int
    """Generated tokens (``len(output_ids)``)."""
    e2e_s: float
    """Client-measured wall time of the call, seconds."""
    server_e2e_s: float | None = None
    """``meta_info.e2e_latency``, seconds."""
    queue_s: float | None = None
    """``meta_info.queue_time`` when the server reports it."""
    ttft_s: float | None = None
    """``meta_info.ttft`` (or ``first_token_latency``) when the server reports it."""
    batch_size: float | None = None
    """``meta_info.batch_size``: mean decode batch size during the call, when the server reports it."""
    hidden_states: list | dict[str, Any] | None = None
    """``meta_info.hidden_states`` as the server sent it, when requested: interleaf's engine answers
    ``{"layers", "prompt", "output"}`` (each ``[layer][position][dim]``), a stock SGLang server a list
    (the prompt's last-layer states, then one per generated token)."""
    meta_info: dict[str, Any] = field(default_factory=dict)
    """The raw meta_info, for fields this client does not model."""

    def cache_figures(self, recomputed_tokens: int = 0) -> CacheFigures:
        """The call's cache figures as a trajectory turn records them; ``recomputed_tokens`` is the
        caller's to know (the conversation tells how much of the prompt had been computed before)."""
        return CacheFigures(
            prompt_tokens=self.prompt_tokens,
            cached_tokens=self.cached_tokens,
            recomputed_tokens=recomputed_tokens,
            completion_tokens=self.completion_tokens,
            batch_size=self.batch_size or 1.0,
        )


@dataclass(frozen=True)
class SessionTurn:
    """Which streaming session a request belongs to and which earlier turn it continues."""

    session_id: str
    previous_rid: str | None = None
    """``meta_info.id`` of the session's last finished turn; None for the session's first request."""


@runtime_checkable
class Backend(Protocol):
    """One inference server speaking SGLang's HTTP protocol (see ../shared/SGLANG.md)."""

    url: str
    info: ServerInfo

    async def generate(
        self,
        input_ids: list[int],
        *,
        sampling_params: dict[str, Any],
        rid: str,
        session: SessionTurn | None = None,
        priority: int | None = None,
        return_hidden_states: bool = False,
        hidden_states_layers: list[int] | None = None,
        hidden_states_last_k: int | None = None,
    ) -> GenerateResult:
        """Run one request; with ``session`` the ids are only the new tokens after the previous turn.

        ``priority``: SGLang's request priority (larger first on a server with priority scheduling;
        ignored by one without; None sends none).

        ``return_hidden_states`` asks for activations (``GenerateResult.hidden_states``);
        ``hidden_states_layers`` (decoder layers, 0-based) and ``hidden_states_last_k`` (trailing
        positions) select them on servers with interleaf's extension and need ``return_hidden_states``."""
        ...

    async def open_session(self, *, timeout_s: float) -> str:
        """Open a streaming session that the server reaps after ``timeout_s`` of inactivity."""
        ...

    async def close_session(self, session_id: str) -> None:
        """Close a session and unpin its KV. Idempotent: an unknown id is not an error."""
        ...

    async def abort(self, rid: str) -> None:
        """Abort an in-flight request (best effort)."""
        ...

    async def health(self) -> bool:
        """True when ``/health`` answers 200."""
        ...

    async def metrics(self) -> ServerMetrics | None:
        """The server's Prometheus figures, or None when it serves no ``/metrics``."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        ...


__all__ = ["Backend", "GenerateResult", "ServerInfo", "SessionTurn"]
