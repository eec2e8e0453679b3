"""``python -m interleaf.runtime.engine``: serve the embedded engine (SGLang's flag names accepted)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from pydantic import ValidationError

from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.executor import executor_names


class _Parser(argparse.ArgumentParser):
    """A bad flag or value is one line on stderr and exit status 2, as every other interleaf command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="interleaf engine serve",
        description="Serve an SGLang-compatible engine on CPU (a real model) or a simulated GPU (--executor sim).",
    )
    d = EngineConfig()
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--model-path", default=None, help="HF model dir or .gguf (default: SmolLM2-135M-Instruct)")
    p.add_argument("--lora-path", "--lora-paths", dest="lora_path", default=None,
                   help="PEFT LoRA adapter dir, merged into the weights at load (needs peft)")  # fmt: skip
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=d.dtype)
    p.add_argument("--executor", choices=executor_names(), default=d.executor,
                   help="registered executor: model (the real model on CPU) or sim (a simulated GPU)")  # fmt: skip
    p.add_argument("--sim-gpu", default=d.sim_gpu, help="hardware profile for --executor sim (e.g. 'H100 PCIe')")
    p.add_argument("--sim-model", default=d.sim_model, help="model profile for --executor sim")
    p.add_argument("--sim-clock", choices=["real", "virtual"], default=d.sim_clock)
    p.add_argument("--max-total-tokens", type=int, default=d.max_total_tokens)
    p.add_argument("--mem-fraction-static", type=float, default=d.mem_fraction_static,
                   help="share of the available memory for the KV pool when --max-total-tokens is unset")  # fmt: skip
    p.add_argument("--chunked-prefill-size", type=int, default=d.chunked_prefill_size)
    p.add_argument("--max-running-requests", type=int, default=d.max_running_requests)
    p.add_argument("--session-timeout", type=float, default=None, help="default timeout of sessions opened without one")
    p.add_argument("--radix-eviction-policy", choices=["lru"], default="lru")
    p.add_argument("--disable-radix-cache", action="store_true")
    p.add_argument("--tool-call-parser", default="hermes", choices=["hermes", "qwen25"])
    p.add_argument("--sglang-defaults", action="store_true",
                   help="start from SGLang's defaults (sessions, session radix cache, metrics, cache report, priority "
                        "scheduling off); "
                        "the --enable-* flags below then turn features on one by one")  # fmt: skip
    for flag in ("streaming-session", "session-radix-cache", "metrics", "cache-report", "priority-scheduling"):
        p.add_argument(f"--enable-{flag}", action="store_true")
    return p


_FLAGS = {"session_timeout_default": "session-timeout"}
"""``EngineConfig`` fields whose flag is not the field's name with dashes."""


def config_from_args(argv: list[str] | None = None) -> EngineConfig:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return _config(a)
    except ValidationError as exc:  # a value argparse let through (e.g. --mem-fraction-static 2)
        flag = {field: _FLAGS.get(field, field.replace("_", "-")) for field in EngineConfig.model_fields}
        problems = [f"--{flag.get(e['loc'][0], e['loc'][0])} {e['input']!r}: {e['msg']}" for e in exc.errors()]
        parser.error("; ".join(problems))


def _config(a: argparse.Namespace) -> EngineConfig:
    on = not a.sglang_defaults
    return EngineConfig(
        host=a.host, port=a.port, model_path=a.model_path, served_model_name=a.served_model_name, dtype=a.dtype,
        lora_path=a.lora_path,
        executor=a.executor, sim_gpu=a.sim_gpu, sim_model=a.sim_model, sim_clock=a.sim_clock,
        max_total_tokens=a.max_total_tokens, mem_fraction_static=a.mem_fraction_static,
        chunked_prefill_size=a.chunked_prefill_size,
        max_running_requests=a.max_running_requests, session_timeout_default=a.session_timeout,
        disable_radix_cache=a.disable_radix_cache, tool_call_parser=a.tool_call_parser,
        enable_streaming_session=on or a.enable_streaming_session,
        enable_session_radix_cache=on or a.enable_session_radix_cache,
        enable_metrics=on or a.enable_metrics, enable_cache_report=on or a.enable_cache_report,
        enable_priority_scheduling=on or a.enable_priority_scheduling,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from interleaf.runtime.engine.server import serve_engine

    serve_engine(config_from_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
