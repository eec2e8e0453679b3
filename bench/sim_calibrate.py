"""Calibrate the `sim` executor against a real accelerator.

Times prefill and batched decode steps of a *randomly initialised* model with a real config (timing
needs no trained weights) using transformers, and prints them beside the sim's roofline prediction
for the same shapes, plus the efficiencies (mfu, mbu) that would make the prediction match.

    python bench/sim_calibrate.py --gpu H100 --model Llama-3.1-8B-Instruct     # on a GPU machine
    python bench/sim_calibrate.py --device cpu --tiny                          # smoke run here

Prints measured and simulated time per shape and their ratio (sim/meas: 1.00 is a perfect prediction);
progress and an ETA over the shapes go to stderr. ``--gpu`` and ``--device`` are checked before any
model is built. Paste the printed table into docs/engine.md (and set RooflineCost efficiencies) when a
GPU run exists.
"""

from __future__ import annotations

import argparse
import time

import torch
from options import BenchParser, gpu_profile
from progress import Progress

from interleaf.runtime.engine.sim import RooflineCost
from interleaf.telemetry import find_hardware_profile, find_model_profile

LLAMA_CONFIGS = {
    "Llama-3.1-8B-Instruct": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                  num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
    "Qwen2.5-7B-Instruct": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
}  # fmt: skip


def build(model_name: str, tiny: bool, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    kw = dict(LLAMA_CONFIGS[model_name])
    if tiny:
        kw.update(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1024)  # fmt: skip
    cfg = LlamaConfig(**kw, max_position_embeddings=16384)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    return model, cfg


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def time_prefill(model, n: int, device: str, repeats: int = 3) -> float:
    ids = torch.randint(0, model.config.vocab_size, (1, n), device=device)
    model(ids)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(ids)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.inference_mode()
def time_decode(model, batch: int, context: int, device: str, steps: int = 8) -> float:
    from transformers import DynamicCache

    ids = torch.randint(0, model.config.vocab_size, (batch, context), device=device)
    cache = DynamicCache(config=model.config)
    out = model(ids, past_key_values=cache, use_cache=True)
    nxt = out.logits[:, -1:].argmax(-1)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        out = model(nxt, past_key_values=out.past_key_values, use_cache=True)
        nxt = out.logits[:, -1:].argmax(-1)
    sync(device)
    return (time.perf_counter() - t0) / steps


def device(text: str) -> str:
    """A torch device this machine has (``cpu``, ``cuda``, ``cuda:1``)."""
    try:
        dev = torch.device(text)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device timed here; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA device on this machine; use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return text


def shapes(tiny: bool) -> list[tuple[str, int, int]]:
    """(kind, batch or tokens, context) of every timed shape: prefills, then decodes."""
    out = [("prefill", n, n) for n in ((128, 512, 2048) if tiny else (512, 2048, 8192))]
    for b in (1, 8, 32, 128):
        for ctx in (1024, 4096):
            if not (tiny and b * ctx > 32768):
                out.append(("decode", b, ctx))
    return out


def main() -> None:
    ap = BenchParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", type=gpu_profile, default="H100", help="hardware profile the sim predicts for")
    ap.add_argument("--model", default="Llama-3.1-8B-Instruct", choices=sorted(LLAMA_CONFIGS))
    ap.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model of the same family (smoke test)")
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model, cfg = build(args.model, args.tiny, args.device, dtype)
    hw = find_hardware_profile(args.gpu)
    prof = find_model_profile(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    dtype_bytes = 2 if dtype == torch.bfloat16 else 4
    kv_bytes = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * dtype_bytes
    cost = RooflineCost(n_active_params=n_params, n_layers=cfg.num_hidden_layers, n_heads=cfg.num_attention_heads,
                        head_dim=head_dim, kv_bytes_per_token=kv_bytes, weight_bytes=n_params * dtype_bytes,
                        flops_per_s=hw.dense_flops * 0.6, bytes_per_s=hw.mem_bw_bytes_per_s * 0.8)  # fmt: skip
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"device {name}; model {args.model}{' (tiny)' if args.tiny else ''} {n_params / 1e9:.2f}B params; "
        f"profile {hw.name}, shipped model profile: {prof.name if prof else 'none'}"
    )
    print(f"{'shape':28s} {'measured ms':>12} {'sim ms':>9} {'sim/meas':>9}")
    rows = []
    todo = shapes(args.tiny)
    progress = Progress("sim_calibrate", total=len(todo), unit="shapes")
    for kind, n, ctx in todo:
        if kind == "prefill":
            name, m, p = f"prefill {n}", time_prefill(model, n, args.device), cost.step_time([n], [n])
        else:
            name, m = f"decode b={n} ctx={ctx}", time_decode(model, n, ctx, args.device)
            p = cost.step_time([1] * n, [ctx] * n)
        rows.append((kind, m, p))
        print(f"{name:28s} {m * 1e3:12.2f} {p * 1e3:9.2f} {p / m:9.2f}", flush=True)
        progress.advance(note=name)
    pre = [p / m for k, m, p in rows if k == "prefill"]
    dec = [p / m for k, m, p in rows if k == "decode"]
    print(
        f"median sim/measured: prefill {sorted(pre)[len(pre) // 2]:.2f}, decode {sorted(dec)[len(dec) // 2]:.2f} "
        "(scale mfu resp. mbu by these to calibrate)"
    )


if __name__ == "__main__":
    main()
