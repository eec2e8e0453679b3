"""Embedded engine benchmark: prefill/decode speed, 2nd-turn TTFT (cold vs session vs radix),
the memory-bandwidth decode ceiling, batched decode scaling vs a plain transformers loop,
constrained-decoding overhead, and the sim executor's scheduler overhead at 1,000 sessions.

    python bench/engine.py                 # everything (~5-8 min on 2 cores)
    python bench/engine.py --only scaling  # one section: speed | turn2 | scaling | grammar | sim

Figures are printed side by side with ratios; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import time

import httpx
import numpy as np
import torch

from interleaf.runtime.engine.process import EngineProcess

CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def post(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/generate", json=body, timeout=600)
    r.raise_for_status()
    return r.json()


def measure_read_bandwidth(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes/s of a streaming read (sum over a 1 GiB float32 array), best of ``repeats``."""
    a = np.ones(n_bytes // 4, dtype=np.float32)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        best = max(best, n_bytes / (time.perf_counter() - t0))
    return best


def section_speed(url: str) -> None:
    print("\n== prefill / decode speed (batch 1) ==")
    prompt = list(range(1000, 1512))
    post(url, {"input_ids": [5, 6, 7], "sampling_params": {"max_new_tokens": 2}})  # warm
    ttfts = []
    for i in range(3):
        ids = [p + i for p in prompt]  # distinct prompts: no prefix hits
        m = post(url, {"input_ids": ids, "sampling_params": {"max_new_tokens": 1}})["meta_info"]
        ttfts.append(m["ttft"])
    prefill = len(prompt) / statistics.median(ttfts)
    m = post(url, {"input_ids": [1, 2, 3, 4], "sampling_params": {"max_new_tokens": 64, "ignore_eos": True}})[
        "meta_info"
    ]
    decode = (m["completion_tokens"] - 1) / (m["e2e_latency"] - m["ttft"])
    bw = measure_read_bandwidth()
    weights = 134.5e6 * 4  # fp32 bytes read per decode step at batch 1 (KV is negligible at this length)
    ceiling = bw / weights
    print(f"prefill   {prefill:8.0f} tok/s  (512-token prompts)")
    print(f"decode    {decode:8.1f} tok/s  (batch 1, fp32)")
    print(
        f"read bandwidth {bw / 1e9:.1f} GB/s -> decode ceiling {ceiling:.1f} tok/s; "
        f"achieved/ceiling = {decode / ceiling:.2f}"
    )


def section_turn2(url: str, tokenizer) -> None:
    print("\n== 2nd-turn TTFT: cold vs streaming session vs radix match ==")
    sys_prompt = "You are a careful assistant. " * 40
    rows = {"cold": [], "session": [], "radix": []}
    for i in range(3):
        t1_text = CHAT.format(q=f"[{i}] {sys_prompt} Summarise the rules.")
        t1_ids = tokenizer.encode(t1_text, add_special_tokens=False)
        delta_ids = tokenizer.encode("\n" + CHAT.format(q="Now give one example."), add_special_tokens=False)
        sid = httpx.post(f"{url}/open_session", json={"streaming": True, "timeout": 60}).json()
        a = post(
            url,
            {
                "input_ids": t1_ids,
                "session_params": {"id": sid},
                "sampling_params": {"max_new_tokens": 16, "temperature": 0},
            },
        )
        full = t1_ids + a["output_ids"] + delta_ids
        b = post(url, {"input_ids": delta_ids, "session_params": {"id": sid}, "sampling_params": {"max_new_tokens": 1}})
        rows["session"].append(b["meta_info"]["ttft"])
        httpx.post(f"{url}/close_session", json={"session_id": sid})
        c = post(url, {"input_ids": full, "sampling_params": {"max_new_tokens": 1}})  # radix: prefix still cached
        rows["radix"].append(c["meta_info"]["ttft"])
        cold = [7 + i, *full[1:]]  # first token changed: no shared prefix at all
        d = post(url, {"input_ids": cold, "sampling_params": {"max_new_tokens": 1}})
        rows["cold"].append(d["meta_info"]["ttft"])
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"context {len(full)} tokens; turn-2 delta {len(delta_ids)} tokens")
    for k, v in med.items():
        print(f"{k:8s} TTFT {v * 1000:8.1f} ms   cold/this = {med['cold'] / v:5.1f}x")


async def _concurrent_decode(url: str, n: int, new_tokens: int, extra: dict | None = None) -> float:
    async with httpx.AsyncClient(timeout=900) as c:

        async def one(i: int) -> dict:
            body = {
                "input_ids": [100 + i, 200 + i, 300 + i, 400 + i],
                "sampling_params": {
                    "max_new_tokens": new_tokens,
                    "ignore_eos": True,
                    "temperature": 0,
                    **(extra or {}),
                },
            }
            r = await c.post(f"{url}/generate", json=body)
            return r.json()

        t0 = time.perf_counter()
        out = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    return sum(o["meta_info"]["completion_tokens"] for o in out) / wall


def plain_transformers_decode(model, batch: int, new_tokens: int) -> float:
    """Reference: a left-padded transformers decode loop with a DynamicCache (what ENVIRONMENT.md measured)."""
    from transformers import DynamicCache

    ids = torch.tensor([[100 + i, 200 + i, 300 + i, 400 + i] for i in range(batch)])
    mask = torch.ones_like(ids)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            pos = mask.sum(1, keepdim=True) - 1
            out = model(
                input_ids=nxt,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        return batch * new_tokens / (time.perf_counter() - t0)


def section_scaling(url: str) -> None:
    print("\n== batched decode: aggregate tok/s vs concurrent clients ==")
    from transformers import AutoModelForCausalLM

    from interleaf.runtime.engine import resolve_model

    new_tokens = 48
    engine = {b: asyncio.run(_concurrent_decode(url, b, new_tokens)) for b in (1, 4, 8, 16)}
    model = AutoModelForCausalLM.from_pretrained(resolve_model().path)
    plain = {b: plain_transformers_decode(model, b, new_tokens) for b in (1, 8, 16)}
    print(
        f"{'batch':>5} {'engine tok/s':>13} {'x batch-1':>9} {'plain loop':>11} {'x batch-1':>9} {'engine/plain':>12}"
    )
    for b in (1, 4, 8, 16):
        p = plain.get(b)
        pr = f"{p:11.1f} {p / plain[1]:9.1f}" if p else f"{'':11} {'':9}"
        rel = f"{(engine[b] / engine[1]) / (p / plain[1]):12.2f}" if p else ""
        print(f"{b:5d} {engine[b]:13.1f} {engine[b] / engine[1]:9.1f} {pr} {rel}")
    print("targets: 8 clients >= 5x batch-1, 16 clients >= 8x; engine speed-up >= 0.8 of the plain loop's")


def section_grammar(url: str) -> None:
    print("\n== constrained vs unconstrained decode (8 concurrent, 48 tokens) ==")
    free = asyncio.run(_concurrent_decode(url, 8, 48))
    # >= 40 one-digit items need > 48 tokens: every constrained request decodes exactly 48 tokens, like the
    # unconstrained ones (a grammar that completes early would shrink the batch and confound the ratio).
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 40}
    constrained = asyncio.run(_concurrent_decode(url, 8, 48, {"json_schema": json.dumps(schema)}))
    print(
        f"unconstrained {free:7.1f} tok/s   json_schema {constrained:7.1f} tok/s   "
        f"overhead {100 * (free / constrained - 1):5.1f}%"
    )


def section_sim(n_sessions: int = 1000) -> None:
    print(f"\n== sim executor: {n_sessions} concurrent sessions (virtual clock: wall time = scheduler overhead) ==")
    with EngineProcess(
        "--executor", "sim", "--sim-gpu", "H100", "--sim-clock", "virtual", "--max-running-requests", str(n_sessions)
    ) as eng:
        url = eng.url

        async def run() -> tuple[float, list[dict]]:
            limits = httpx.Limits(max_connections=n_sessions)
            async with httpx.AsyncClient(timeout=900, limits=limits) as c:
                sids = await asyncio.gather(
                    *(c.post(f"{url}/open_session", json={"streaming": True}) for _ in range(n_sessions))
                )

                async def turn(i: int, sid: str) -> dict:
                    body = {
                        "input_ids": [1 + (i + k) % 250 for k in range(600)],
                        "session_params": {"id": sid},
                        "sampling_params": {"max_new_tokens": 32, "ignore_eos": True},
                    }
                    return (await c.post(f"{url}/generate", json=body)).json()

                t0 = time.perf_counter()
                out = await asyncio.gather(*(turn(i, s.json()) for i, s in enumerate(sids)))
                return time.perf_counter() - t0, out

        wall, out = asyncio.run(run())
        info = httpx.get(f"{url}/server_info").json()["internal_states"][0]
        metrics = httpx.get(f"{url}/metrics").text
        rss = _proc_rss_mb(eng.proc.pid)
    steps = int(
        float(
            next(
                line.rsplit(" ", 1)[1]
                for line in metrics.splitlines()
                if line.startswith("sglang:inter_token_latency_seconds_count")
            )
        )
    )
    print(f"sessions {n_sessions}, held tokens {info['session_held_tokens']}, KV pool {info['max_total_num_tokens']}")
    print(
        f"wall {wall:.1f} s for {steps} decode steps + prefills; simulated GPU time {info['simulated_seconds']:.1f} s"
    )
    print(f"scheduler+HTTP overhead ~{1000 * wall / max(1, steps):.1f} ms per decode step; engine RSS {rss:.0f} MiB")
    print(f"all finished: {all(o['meta_info']['completion_tokens'] == 32 for o in out)}")


def _proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["speed", "turn2", "scaling", "grammar", "sim"], action="append")
    ap.add_argument("--sim-sessions", type=int, default=1000)
    args = ap.parse_args()
    todo = args.only or ["speed", "turn2", "scaling", "grammar", "sim"]
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"peak RSS here {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if set(todo) - {"sim"}:
        from interleaf.runtime.engine import load_tokenizer

        with EngineProcess() as eng:
            if "speed" in todo:
                section_speed(eng.url)
            if "turn2" in todo:
                section_turn2(eng.url, load_tokenizer())
            if "scaling" in todo:
                section_scaling(eng.url)
            if "grammar" in todo:
                section_grammar(eng.url)
    if "sim" in todo:
        section_sim(args.sim_sessions)


if __name__ == "__main__":
    main()
