"""``interleaf study pte-latency``: how well PTE (and naive proxies) track measured generation latency."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import typer

app = typer.Typer(help="Studies that measure interleaf's cost models against real runs.", no_args_is_help=True)


@app.command("pte-latency")
def pte_latency(
    engine_url: str | None = typer.Option(
        None, "--engine-url", help="SGLang-compatible engine to drive; default: start the embedded engine."
    ),
    trajectories: int = typer.Option(24, "--trajectories", "-n", help="Synthetic trajectories to run."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", help="Trajectories in flight at once."),
    max_turns: int | None = typer.Option(
        None, "--max-turns", help="Max LLM calls per trajectory (min 2); default: the shape's."
    ),
    shape: str = typer.Option(
        "short",
        "--shape",
        help="Conversation shape: short (32-384 token prompts, 4-32 output tokens) or decode (768-6144 token "
        "prompts, 200-1000 output tokens, contexts up to 8192: where PTE's decode term matters).",
    ),
    hardware: str = typer.Option("cpu", "--hardware", help="Hardware profile: cpu (measured here) or a built-in name."),
    dtype: str = typer.Option(
        "fp32",
        "--dtype",
        help="Engine precision (fp32 or bf16): sets the CPU FLOP/s measured and the bytes per weight/KV element.",
    ),
    model_profile: str | None = typer.Option(
        None, "--model-profile", help="Model profile name; default: the served model's shipped profile."
    ),
    seed: int = typer.Option(0, "--seed"),
    time_budget_min: float | None = typer.Option(
        None, "--time-budget-min", min=0.1, help="Start no trajectory after this many minutes (those in flight finish)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Folder for trajectories.jsonl and result.json."),
) -> None:
    """Run synthetic multi-turn trajectories and print Pearson/Spearman r of latency with each proxy."""
    from interleaf.pte_study import SHAPES, StudyConfig, run_study
    from interleaf.settings import runs_dir
    from interleaf.telemetry import (
        DTYPE_BYTES,
        MODEL_PROFILES,
        find_hardware_profile,
        find_model_profile,
        measure_cpu_profile,
    )
    from interleaf.telemetry.study import pte_latency_study

    if shape not in SHAPES:
        raise typer.BadParameter(f"--shape {shape!r} is not known; use one of {sorted(SHAPES)}")
    if dtype not in ("fp32", "bf16"):
        raise typer.BadParameter(f"--dtype {dtype!r} is not supported; use fp32 or bf16")
    hw = measure_cpu_profile(dtype=dtype) if hardware == "cpu" else find_hardware_profile(hardware)
    typer.echo(
        f"hardware {hw.name}: {hw.peak_flops / 1e9:.1f} GFLOP/s, {hw.mem_bw_bytes_per_s / 1e9:.1f} GB/s, "
        f"HOI {hw.hoi:.2f}",
        err=True,
    )
    engine = None
    if engine_url is None:
        typer.echo("starting the embedded engine ...", err=True)
        from interleaf.runtime.engine.process import EngineProcess

        engine = EngineProcess()
        engine_url = engine.url
    try:
        cfg = StudyConfig(
            engine_url=engine_url,
            trajectories=trajectories,
            concurrency=concurrency,
            **{**SHAPES[shape], **({"turns": (2, max(2, max_turns))} if max_turns else {})},
            seed=seed,
            time_budget_s=time_budget_min * 60 if time_budget_min else None,
        )
        trajs = asyncio.run(run_study(cfg))
    finally:
        if engine is not None:
            engine.stop()
    served = trajs[0].model if trajs else ""
    profile = MODEL_PROFILES.get(model_profile or "") or find_model_profile(model_profile or served)
    if profile is None:
        raise typer.BadParameter(f"no model profile for {model_profile or served!r}; pass --model-profile")
    if not hw.measured:  # a measured profile prices at its own dtype (interleaf.telemetry.served_model)
        profile = profile.model_copy(update={"dtype_bytes": DTYPE_BYTES[dtype]})
    result = pte_latency_study(trajs, profile, hw)
    folder = out or runs_dir() / f"study-pte-latency-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trajectories.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in trajs))
    (folder / "result.json").write_text(result.model_dump_json(indent=2))  # non-finite figures as null
    typer.echo(result.table(), nl=False)
    typer.echo(f"wrote {folder}", err=True)
