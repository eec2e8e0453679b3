"""Embedded engine benchmark: prefill/decode speed, 2nd-turn TTFT (cold vs session vs radix),
the memory-bandwidth decode ceiling, batched decode scaling vs a plain transformers loop,
constrained-decoding overhead, the sim executor's scheduler overhead at 1,000 sessions, and
aggregate decode at long context (8 requests x 2k/4k/8k) against the bandwidth ceiling.

    python bench/engine.py                 # everything (~15-20 min on 2 cores)
    python bench/engine.py --only scaling  # one section: speed | turn2 | scaling | grammar | sim | long
    python bench/engine.py --only long --long-sizes 2048,4096 --dtype bfloat16

Progress and an ETA go to stderr (bench/progress.py); figures to stdout.

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
from options import BenchParser, comma_list, int_at_least
from progress import Progress

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
    progress = Progress("speed", total=5, unit="steps")  # 3 prefills, a decode, the bandwidth read (~20 s)
    prompt = list(range(1000, 1512))
    post(url, {"input_ids": [5, 6, 7], "sampling_params": {"max_new_tokens": 2}})  # warm
    ttfts = []
    for i in range(3):
        ids = [p + i for p in prompt]  # distinct prompts: no prefix hits
        m = post(url, {"input_ids": ids, "sampling_params": {"max_new_tokens": 1}})["meta_info"]
        ttfts.append(m["ttft"])
        progress.advance(note="prefill")
    prefill = len(prompt) / statistics.median(ttfts)
    m = post(url, {"input_ids": [1, 2, 3, 4], "sampling_params": {"max_new_tokens": 64, "ignore_eos": True}})[
        "meta_info"
    ]
    decode = (m["completion_tokens"] - 1) / (m["e2e_latency"] - m["ttft"])
    progress.advance(note="decode")
    bw = measure_read_bandwidth()
    progress.advance(note="read bandwidth")
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
    progress = Progress("turn2", total=3, unit="rounds")
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
        progress.advance()
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
    progress = Progress("scaling", total=7, unit="runs")
    engine = {}
    for b in (1, 4, 8, 16):
        engine[b] = asyncio.run(_concurrent_decode(url, b, new_tokens))
        progress.advance(note=f"engine batch {b}")
    model = AutoModelForCausalLM.from_pretrained(resolve_model().path)
    plain = {}
    for b in (1, 8, 16):
        plain[b] = plain_transformers_decode(model, b, new_tokens)
        progress.advance(note=f"plain loop batch {b}")
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
    progress = Progress("grammar", total=2, unit="runs")
    free = asyncio.run(_concurrent_decode(url, 8, 48))
    progress.advance()
    # >= 40 one-digit items need > 48 tokens: every constrained request decodes exactly 48 tokens, like the
    # unconstrained ones (a grammar that completes early would shrink the batch and confound the ratio).
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 40}
    constrained = asyncio.run(_concurrent_decode(url, 8, 48, {"json_schema": json.dumps(schema)}))
    progress.advance()
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

                progress = Progress("sim", total=n_sessions, unit="sessions", every_s=2.0)

                async def counted(i: int, sid: str) -> dict:
                    out = await turn(i, sid)
                    progress.advance()
                    return out

                t0 = time.perf_counter()
                out = await asyncio.gather(*(counted(i, s.json()) for i, s in enumerate(sids)))
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
    # A real-clock sim engine sleeps every step's GPU time: its wall time is at least the simulated time.
    print(f"simulated GPU time / wall = {info['simulated_seconds'] / wall:.1f}x (the virtual clock; a real-clock "
          "sim engine's best is 1.0x: wall = simulated time)")  # fmt: skip
    print(f"all finished: {all(o['meta_info']['completion_tokens'] == 32 for o in out)}")


LONG_BATCH = 8
LONG_NEW_TOKENS = 32


def _load() -> str:
    """The 1-minute load average: the machine is shared, so every timing says how busy it was."""
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()}"


def _step_bytes(config: dict, dtype: str, batch: int, context: int) -> tuple[float, float]:
    """(weight bytes, KV bytes) one decode step reads: every parameter once (the tied embedding is read
    whole as lm_head), and each sequence's keys and values at every layer."""
    elem = 2 if dtype == "bfloat16" else 4
    d, n_layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    head_dim = config.get("head_dim") or d // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    per_layer = 2 * d * q + 2 * d * kv + 3 * d * config["intermediate_size"] + 2 * d
    params = vocab * d * (1 if config.get("tie_word_embeddings", True) else 2) + n_layers * per_layer + d
    return params * elem, batch * context * n_layers * 2 * kv * elem


def _prompt_len(size: int, context_length: int) -> int:
    """The prompt of a ``size`` row: ``size`` tokens, or as many as leave room for the decoded tokens in the
    model's context (an 8,192 row on SmolLM2 prefills 8,159 tokens and decodes to 8,191)."""
    return min(size, context_length - LONG_NEW_TOKENS - 1)


def _long_prompts(sizes: list[int]) -> list[list[int]]:
    """LONG_BATCH distinct seeded token sequences as long as the largest size (smaller sizes are prefixes)."""
    rng = np.random.default_rng(0)
    return [rng.integers(100, 40000, size=max(sizes)).tolist() for _ in range(LONG_BATCH)]


async def _long_decode(url: str, prompts: list[list[int]]) -> tuple[float, float, int]:
    """All prompts decoding together: (aggregate decode tok/s, mean batch size, min cached tokens)."""
    async with httpx.AsyncClient(timeout=1800) as c:

        async def one(ids: list[int]) -> dict:
            body = {"input_ids": ids, "sampling_params": {"max_new_tokens": LONG_NEW_TOKENS, "ignore_eos": True,
                    "temperature": 0}}  # fmt: skip
            r = await c.post(f"{url}/generate", json=body)
            r.raise_for_status()
            return r.json()["meta_info"]

        metas = await asyncio.gather(*(one(p) for p in prompts))
    # Prompts are cached (warmed first): all requests start decoding in the same round and run in lockstep,
    # so per-request decode rates add up to the aggregate.
    rate = sum((m["completion_tokens"] - 1) / (m["e2e_latency"] - m["ttft"]) for m in metas)
    return rate, statistics.mean(m["batch_size"] for m in metas), min(m["cached_tokens"] for m in metas)


def section_long(sizes: list[int], dtype: str) -> None:
    """Aggregate decode of 8 long-context requests through the engine vs the bandwidth ceiling, then the
    old (padded) and new (per-sequence) attention A/B on the executor in this process, same machine and run."""
    from interleaf.runtime.engine.model_store import read_config, resolve_model

    print(f"\n== long context: aggregate decode, {LONG_BATCH} requests x {sizes} tokens, {dtype} ==")
    config = read_config(resolve_model())
    lengths = [_prompt_len(size, config["max_position_embeddings"]) for size in sizes]
    bw = measure_read_bandwidth()
    print(f"read bandwidth {bw / 1e9:.1f} GB/s (1 GiB numpy sum, one thread, best of 5); {_load()}")
    prompts = _long_prompts(lengths)
    capacity = LONG_BATCH * (max(lengths) + 2 * LONG_NEW_TOKENS + 8) + 64
    rows = []
    with EngineProcess("--max-total-tokens", str(capacity), "--dtype", dtype) as eng:
        warm = Progress("long: prefill", total=LONG_BATCH * max(lengths), unit="prompt tokens", every_s=15.0)
        done = 0
        for size in lengths:
            for ids in prompts:  # warm the radix cache: each size extends the previous one's prompts
                post(eng.url, {"input_ids": ids[:size], "sampling_params": {"max_new_tokens": 1}})
                warm.advance(size - done)
            done = size
            load_before = _load()
            rate, batch, cached = asyncio.run(_long_decode(eng.url, [ids[:size] for ids in prompts]))
            w, kv = _step_bytes(config, dtype, LONG_BATCH, size + LONG_NEW_TOKENS // 2)
            ceiling = LONG_BATCH * bw / (w + kv)
            rows.append((size, rate, batch, cached, w, kv, ceiling, f"{load_before} -> {_load()}"))
    print(f"{'context':>7} {'cached':>6} {'engine tok/s':>12} {'batch':>5} {'weights GB':>10} {'KV GB':>6} "
          f"{'ceiling':>8} {'of ceiling':>10}  load")  # fmt: skip
    for size, rate, batch, cached, w, kv, ceiling, load in rows:
        print(f"{size:7d} {cached:6d} {rate:12.1f} {batch:5.1f} {w / 1e9:10.2f} {kv / 1e9:6.2f} {ceiling:8.1f} "
              f"{rate / ceiling:10.0%}  {load}")  # fmt: skip
    print("ceiling = batch x read bandwidth / (weights + KV read per step); target >= 40% of it")
    _long_ab(lengths, dtype, prompts, config, bw)


def _long_ab(sizes: list[int], dtype: str, prompts: list[list[int]], config: dict, bw: float, reps: int = 5) -> None:
    """One decode step's forward on each attention path, alternated in this process: ``padded`` (the old
    one, gathering every context), ``per-sequence`` (torch, runs read in place) and ``native`` (the C
    kernel, fp32 only), each against the bandwidth ceiling of this process's thread count.

    The pool holds random keys and values (a step's time does not depend on them) in the engine's layout:
    each prompt's slots contiguous, as a fresh prefill allocates them.
    """
    from interleaf.runtime.engine.executor import ForwardBatch
    from interleaf.runtime.engine.llama import LlamaExecutor
    from interleaf.runtime.engine.model_store import resolve_model

    B = LONG_BATCH
    ex = LlamaExecutor(resolve_model(), B * (max(sizes) + 1) + 16, dtype)
    used = B * (max(sizes) + 1) + 1
    ex.k_pool[:, :, :used].normal_()
    ex.v_pool[:, :, :used].normal_()
    paths = ["padded", "per-sequence", *(["native"] if ex.decode_attention == "native" else [])]
    progress = Progress("long: A/B", total=len(sizes) * reps * len(paths), unit="forwards")
    print(f"\nA/B, one decode step of {B} sequences on the executor, {torch.get_num_threads()} threads "
          f"(median of {reps}, alternated); tok/s and share of the ceiling:")  # fmt: skip
    print(f"{'context':>7} {'ceiling':>8} " + " ".join(f"{p:>19}" for p in paths) + f" {'speed-up':>8}  load")
    for size in sizes:
        base = [1 + b * (max(sizes) + 1) for b in range(B)]
        kv_slots = torch.stack([torch.arange(s, s + size) for s in base])
        batch = ForwardBatch(
            tokens=torch.tensor([[p[size - 1]] for p in prompts]), positions=torch.full((B, 1), size - 1),
            write_slots=kv_slots[:, -1:].clone(), kv_slots=kv_slots, kv_len=torch.full((B,), size),
            logit_index=torch.zeros(B, dtype=torch.int64))  # fmt: skip
        times: dict[str, list[float]] = {p: [] for p in paths}
        load_before = _load()
        for _ in range(reps):
            for path in paths:
                ex.decode_attention = path  # type: ignore[assignment]
                t0 = time.perf_counter()
                ex.forward(batch)
                times[path].append(time.perf_counter() - t0)
                progress.advance()
        w, kv = _step_bytes(config, dtype, B, size)
        ceiling = B * bw / (w + kv)
        rate = {p: B / statistics.median(t) for p, t in times.items()}
        cells = " ".join(f"{rate[p]:7.1f} tok/s ({rate[p] / ceiling:3.0%})" for p in paths)
        print(f"{size:7d} {ceiling:8.1f} {cells} {rate[paths[-1]] / rate['padded']:7.2f}x  {load_before} -> {_load()}")
    print(f"speed-up: {paths[-1]} over padded; ceiling: batch x {bw / 1e9:.1f} GB/s / (weights + KV of the step)")
    del ex


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
    ap = BenchParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["speed", "turn2", "scaling", "grammar", "sim", "long"], action="append")
    ap.add_argument("--sim-sessions", type=int_at_least(1), default=1000)
    ap.add_argument("--long-sizes", type=comma_list(int_at_least(1, 8192)), default=[2048, 4096, 8192],
                    help="long section's contexts, 1 to 8192 (SmolLM2's; 8192 prefills 8159 tokens)")  # fmt: skip
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="for the long section")
    args = ap.parse_args()
    long_sizes = sorted(set(args.long_sizes))
    todo = args.only or ["speed", "turn2", "scaling", "grammar", "sim", "long"]
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"peak RSS here {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if set(todo) - {"sim", "long"}:
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
    if "long" in todo:
        section_long(long_sizes, args.dtype)


if __name__ == "__main__":
    main()
