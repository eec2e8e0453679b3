"""A probe study end to end: grids → agent trajectories with hidden states → metrics → probes → report.

This is the one part of ``interleaf.probes`` that talks to an engine, through the runtime client's
``SGLangBackend``, at ``StudyConfig.engine_url`` (``interleaf probe run`` starts the embedded engine on a
free loopback port when none is given).
"""

from __future__ import annotations

import asyncio
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from interleaf.probes.agent import GridAgent, HiddenStates
from interleaf.probes.dataset import Activations
from interleaf.probes.generator import key_grid, plain_grid
from interleaf.probes.gridworld import Grid, GridState, Variant, step_cap
from interleaf.probes.metrics import Episode, GridMetrics, PairedTest, grid_metrics, paired_test
from interleaf.probes.policy import OptimalPolicy
from interleaf.probes.probing import run_probes
from interleaf.probes.records import (
    GridRecord,
    StepRecord,
    StudyConfig,
    StudyReport,
    TrajectoryRecord,
    read_json,
    read_jsonl,
)
from interleaf.probes.report import write_report
from interleaf.probes.transforms import Transform, apply_transform
from interleaf.runtime.client import SGLangBackend, Transport

PAIRED_METRICS = ("action_accuracy", "success", "spl", "mean_entropy", "mean_jsd", "ece")


def build_grids(config: StudyConfig) -> list[tuple[GridRecord, Grid]]:
    """The study's grids: plain base grids, their transforms, and key-variant grids."""
    rng = np.random.default_rng(config.seed)
    out: list[tuple[GridRecord, Grid]] = []

    def add(grid: Grid, grid_id: str, base_id: str, transform: str) -> None:
        length = OptimalPolicy.solve(grid).optimal_length
        rec = GridRecord.of(
            grid, grid_id=grid_id, base_id=base_id, transform=transform, optimal_length=length, cap=step_cap(length)
        )
        out.append((rec, grid))

    for t in config.transforms:
        Transform(t)  # validate early, before any engine time is spent
    for size in config.sizes:
        for density in config.densities:
            for i in range(config.grids):
                base = plain_grid(size, density, rng)
                base_id = f"s{size}-d{density:g}-g{i}"
                add(base, base_id, base_id, "base")
                for t in config.transforms:
                    add(apply_transform(base, t), f"{base_id}/{t}", base_id, t)
        mid = sorted(config.densities)[len(config.densities) // 2] if config.densities else 0.4
        for v in config.variants:
            variant = Variant(v)
            for i in range(config.grids):
                grid = key_grid(size, mid, variant, rng)
                # A random symmetry so the door/loop is not always on the same side.
                for _ in range(int(rng.integers(4))):
                    grid = apply_transform(grid, Transform.ROTATE)
                if rng.random() < 0.5:
                    grid = apply_transform(grid, Transform.REFLECT)
                grid.meta["transforms"] = []
                gid = f"s{size}-{variant.value}-g{i}"
                add(grid, gid, gid, "base")
    return out


def _sampling_seed(seed: int, grid_index: int, trajectory: int, step: int) -> int:
    return (seed * 1_000_003 + grid_index * 10_007 + trajectory * 101 + step) % (2**31 - 1)


class _Collector:
    """Steps and activations as they arrive from concurrent trajectories."""

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []
        self.pre: list[np.ndarray] = []
        self.post: list[np.ndarray] = []
        self.layers: list[int] | None = None
        self.source = "none"
        self.trajectories: list[TrajectoryRecord] = []
        self.model = "unknown"
        """The engine's served model name (``/model_info``)."""

    def add_hidden(self, h: HiddenStates | None) -> None:
        if h is None:
            return
        self.layers = h.layers
        self.source = h.source
        self.pre.append(h.pre.astype(np.float16))
        self.post.append(h.post.astype(np.float16))


async def run_trajectories(
    config: StudyConfig,
    base_url: str,
    grids: list[tuple[GridRecord, Grid]],
    progress=None,
    transport: Transport | None = None,
) -> _Collector:
    """Run ``config.trajectories`` sampled trajectories on every grid, ``config.concurrency`` at once.

    ``transport`` replaces the network (tests of the study's logic against a scripted engine)."""
    if config.concurrency < 1:  # a model_copy/model_construct skips validation; Semaphore(0) would wait forever
        raise ValueError(f"concurrency: {config.concurrency}; run at least 1 trajectory at once")
    col = _Collector()
    sem = asyncio.Semaphore(config.concurrency)
    backend = await SGLangBackend.connect(base_url, request_timeout_s=config.timeout_s, transport=transport)
    col.model = backend.info.served_model_name or "unknown"
    try:
        agent = GridAgent(
            backend,
            layers=config.layers,
            last_k=config.last_k,
            temperature=config.temperature,
            reasoning_chars=config.reasoning_chars,
            coordinates=config.coordinates,
        )

        async def one(gi: int, rec: GridRecord, grid: Grid, policy: OptimalPolicy, traj: int) -> None:
            async with sem:
                state = grid.initial_state()
                invalid = 0
                n = 0
                for t in range(rec.step_cap):
                    seed = _sampling_seed(config.seed, gi, traj, t)
                    res = await agent.act(grid, state, seed)
                    col.add_hidden(res.hidden)
                    col.steps.append(
                        StepRecord(
                            row=len(col.steps),
                            grid_id=rec.grid_id,
                            trajectory=traj,
                            step=t,
                            x=state.x,
                            y=state.y,
                            has_key=state.has_key,
                            door_open=state.door_open,
                            action=res.action.value if res.action else "NONE",
                            optimal=sorted(a.value for a in policy.optimal_actions(state)),
                            distance=policy.dist(state),
                            text=res.text,
                            prompt_tokens=res.prompt_tokens,
                            completion_tokens=res.completion_tokens,
                            cached_tokens=res.cached_tokens,
                            latency_s=res.latency_s,
                        )
                    )
                    n += 1
                    if res.action is None:
                        invalid += 1
                    else:
                        state = grid.step(state, res.action)
                    if grid.is_goal(state):
                        break
                col.trajectories.append(
                    TrajectoryRecord(
                        grid_id=rec.grid_id,
                        trajectory=traj,
                        success=grid.is_goal(state),
                        length=n,
                        final=(state.x, state.y, state.has_key, state.door_open),
                        invalid_answers=invalid,
                    )
                )
                if progress is not None:
                    progress(len(col.trajectories))

        jobs = []
        for gi, (rec, grid) in enumerate(grids):
            policy = OptimalPolicy.solve(grid)
            jobs += [one(gi, rec, grid, policy, k) for k in range(config.trajectories)]
        await asyncio.gather(*jobs)
    finally:
        await backend.aclose()
    # Rows were appended as answers arrived; order them by (grid, trajectory, step) for readability.
    order = sorted(
        range(len(col.steps)), key=lambda i: (col.steps[i].grid_id, col.steps[i].trajectory, col.steps[i].step)
    )
    col.steps = [col.steps[i].model_copy(update={"row": r}) for r, i in enumerate(order)]
    if col.pre:
        col.pre = [col.pre[i] for i in order]
        col.post = [col.post[i] for i in order]
    col.trajectories.sort(key=lambda t: (t.grid_id, t.trajectory))
    return col


def behaviour(
    grids: list[tuple[GridRecord, Grid]], steps: list[StepRecord], trajectories: list[TrajectoryRecord]
) -> tuple[list[GridMetrics], list[PairedTest]]:
    """Behavioural metrics per grid and Wilcoxon tests of each transform against its base grids."""
    by_traj: dict[tuple[str, int], list[StepRecord]] = {}
    for s in steps:
        if s.action != "NONE":
            by_traj.setdefault((s.grid_id, s.trajectory), []).append(s)
    metrics: dict[str, GridMetrics] = {}
    for rec, grid in grids:
        eps = []
        for tr in trajectories:
            if tr.grid_id != rec.grid_id:
                continue
            ss = sorted(by_traj.get((rec.grid_id, tr.trajectory), []), key=lambda s: s.step)
            eps.append(
                Episode(
                    [s.state for s in ss],
                    [s.action for s in ss],
                    tr.success,  # type: ignore[misc]
                    final_state=GridState(*tr.final),
                )
            )
        if eps:
            metrics[rec.grid_id] = grid_metrics(
                eps, OptimalPolicy.solve(grid), grid_id=rec.grid_id, transform=rec.transform
            )
    tests: list[PairedTest] = []
    transforms = sorted({r.transform for r, _ in grids} - {"base"})
    for t in transforms:
        pairs = [
            (metrics[r.base_id], metrics[r.grid_id])
            for r, _ in grids
            if r.transform == t and r.base_id in metrics and r.grid_id in metrics
        ]
        for m in PAIRED_METRICS:
            tests.append(
                paired_test([getattr(b, m) for b, _ in pairs], [getattr(x, m) for _, x in pairs], metric=m, transform=t)
            )
    return list(metrics.values()), tests


def save_run(out: Path, grids, col: _Collector) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "grids.jsonl").write_text("".join(r.model_dump_json() + "\n" for r, _ in grids))
    (out / "steps.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in col.steps))
    (out / "trajectories.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in col.trajectories))
    if col.pre:
        np.savez_compressed(
            out / "hidden.npz",
            pre=np.stack(col.pre),
            post=np.stack(col.post),
            layers=np.array(col.layers),
            source=np.array(col.source),
        )


STUDY_FILES = (
    "config.json",
    "grids.jsonl",
    "steps.jsonl",
    "trajectories.jsonl",
    "hidden.npz",
    "report.json",
    "report.md",
    "plots/probes.png",
    "plots/behaviour.png",
    "comparison.md",
)
"""The artefacts of a study folder (``comparison.md``: ``probe run --navigator``'s, beside its two arms);
a folder holding any of them holds a study."""


def existing_study_file(out: Path) -> Path | None:
    """The first artefact of a study already in ``out`` (None: ``out`` is free for a new study).

    ``ValueError`` when ``out`` is a file."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; pass a folder for the study")
    return next((out / name for name in STUDY_FILES if (out / name).exists()), None)


def check_out_folder(out: Path, *, overwrite: bool = False) -> None:
    """``ValueError`` naming the folder and the file found when ``out`` already holds a study (unless
    ``overwrite``) or is a file: a new study must not silently replace one that cost engine time."""
    found = existing_study_file(out)
    if found is not None and not overwrite:
        raise ValueError(
            f"{out} already holds a study ({found} exists); pass a new folder, or --overwrite to replace it"
        )


def _clear_study(out: Path) -> None:
    # Only our own artefacts: a stale report.json or hidden.npz beside new steps would mix two studies.
    for name in STUDY_FILES:
        (out / name).unlink(missing_ok=True)


def run_study(
    config: StudyConfig,
    out: Path,
    progress=None,
    *,
    overwrite: bool = False,
    transport: Transport | None = None,
) -> StudyReport:
    """Run a whole study and write its artefacts to ``out``; returns the report.

    ``out`` must not already hold a study (``ValueError`` naming the file found) unless ``overwrite``;
    then the old artefacts are replaced only once the new agent phase has finished, so a study that
    fails before that leaves the folder as it was. ``transport`` replaces the network (tests)."""
    t0 = time.perf_counter()
    if not config.engine_url:
        raise ValueError(
            "StudyConfig.engine_url is required: start an engine (`interleaf probe run` starts the embedded one)"
        )
    check_out_folder(out, overwrite=overwrite)
    url = config.engine_url.rstrip("/")
    grids = build_grids(config)
    col = asyncio.run(run_trajectories(config, url, grids, progress, transport=transport))
    agent_s = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    _clear_study(out)
    (out / "config.json").write_text(config.model_dump_json(indent=2))
    save_run(out, grids, col)
    return analyse(out, config, model=col.model, engine_url=url, agent_s=agent_s, t0=t0)


def load_config(out: Path) -> StudyConfig:
    """The ``config.json`` of a study directory; ``ValueError`` naming the file (and field) when ``out``
    is not a study folder or the file is not a ``StudyConfig``."""
    if not out.is_dir():
        what = "is a file" if out.exists() else "does not exist"
        raise ValueError(f"{out} {what}; pass a study folder written by `interleaf probe run`")
    return read_json(out / "config.json", StudyConfig)


def load_run(out: Path) -> tuple[list[GridRecord], list[StepRecord], list[TrajectoryRecord], Activations | None]:
    """Read the stored artefacts of a study directory. A missing, truncated or invalid artefact raises
    ``ValueError`` naming the file (and the line and field of a bad record)."""
    grids = read_jsonl(out / "grids.jsonl", GridRecord)
    steps = read_jsonl(out / "steps.jsonl", StepRecord)
    trajs = read_jsonl(out / "trajectories.jsonl", TrajectoryRecord)
    acts = _load_hidden(out / "hidden.npz") if (out / "hidden.npz").exists() else None
    if acts is not None and acts.pre.shape[0] != len(steps):
        raise ValueError(
            f"{out / 'hidden.npz'} holds {acts.pre.shape[0]} rows but {out / 'steps.jsonl'} lists {len(steps)} "
            "steps; the two are written together, so one of them is incomplete: rerun `interleaf probe run`"
        )
    return grids, steps, trajs, acts


def _load_hidden(path: Path) -> Activations:
    try:
        with np.load(path) as z:
            return Activations(z["pre"], z["post"], [int(v) for v in z["layers"]])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(
            f"{path}: not a readable hidden-state archive ({type(exc).__name__}: {exc}); it is truncated or "
            "corrupt: rerun `interleaf probe run`, or delete it to analyse behaviour only"
        ) from None


def _hidden_source(path: Path) -> str:
    with np.load(path) as z:
        return str(z["source"]) if "source" in z.files else "unknown"


def analyse(
    out: Path, config: StudyConfig, *, model: str, engine_url: str, agent_s: float = 0.0, t0: float | None = None
) -> StudyReport:
    """Metrics, probes and the report from the artefacts in ``out`` (re-runnable without an engine)."""
    # Re-analysed from stored artefacts (t0 None), the study's wall time is the agent's plus this analysis.
    t0 = time.perf_counter() - agent_s if t0 is None else t0
    grid_recs, steps, trajs, acts = load_run(out)
    if not steps:
        raise ValueError(f"{out / 'steps.jsonl'} holds no steps: the study recorded no agent action to analyse")
    pairs = [(r, r.to_grid()) for r in grid_recs]
    gm, tests = behaviour(pairs, steps, trajs)
    t1 = time.perf_counter()
    notes: list[str] = []
    scores, consistency = [], []
    source = "none"
    if acts is not None:
        source = _hidden_source(out / "hidden.npz")
        if source == "sglang":
            notes.append("hidden states from a stock SGLang server: last layer only; layer sweeps are not possible")
        scores, consistency, notes_p = run_probes(steps, grid_recs, acts, config)
        notes += notes_p
    probe_s = time.perf_counter() - t1
    report = StudyReport(
        config=config,
        model=model,
        engine_url=engine_url,
        hidden_state_source=source,
        n_grids=len(grid_recs),
        n_steps=len(steps),
        wall_s=time.perf_counter() - t0,
        agent_s=agent_s,
        probe_s=probe_s,
        invalid_answers=sum(t.invalid_answers for t in trajs),
        grid_metrics=gm,
        paired_tests=tests,
        probe_scores=scores,
        consistency=consistency,
        notes=notes,
    )
    (out / "report.json").write_text(report.model_dump_json(indent=2))
    write_report(report, out)
    return report
