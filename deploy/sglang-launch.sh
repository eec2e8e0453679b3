#!/usr/bin/env bash
# Launch one SGLang server the way interleaf expects it. Usage: deploy/sglang-launch.sh MODEL [PORT] [HOST]
#   --enable-streaming-session  KV pinned across tool pauses (interleaf bounds it; SGLang does not)
#   --enable-metrics            sglang:* Prometheus metrics (interleaf's router and budget read them)
#   --enable-cache-report       cached_tokens on the OpenAI route
#   --tool-call-parser hermes   <tool_call>{json}</tool_call> parsing on /v1/chat/completions
#   --enable-priority-scheduling  turns inside sessions (priority 1) go before stateless ones when KV is short
#   --radix-eviction-policy lru   the eviction order --retention adaptive's cost model assumes
#   --mem-fraction-static 0.85    GPU memory for weights + KV pool (sets max_total_num_tokens)
# HOST defaults to 127.0.0.1: SGLang answers whoever reaches it (interleaf sends no API key), so listen
# on another address only on a network nothing but interleaf can reach (docs/deploy.md).
set -euo pipefail
MODEL=${1:?model path or HF id}
PORT=${2:-30000}
HOST=${3:-127.0.0.1}
exec python -m sglang.launch_server --model-path "$MODEL" --host "$HOST" --port "$PORT" \
  --enable-streaming-session --enable-metrics --enable-cache-report --tool-call-parser hermes \
  --enable-priority-scheduling --radix-eviction-policy lru --mem-fraction-static 0.85
