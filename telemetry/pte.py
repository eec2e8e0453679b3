"""PTE — Prefill Token Equivalents (arXiv 2604.05404, ../shared/PAPERS.md §A).

    PTE = Σ_i ( D_prefill_i + γ · L_seq_i · D_decode_i )

with ``γ = kv_bytes_per_token · HOI / (2 · N_active)``, which for fp16 GQA models is the paper's
``2 · n_layers · d_model · HOI / N_active · H_kv/H_q``. Variants (always named in outputs):

- ``evict_all`` [paper]: ``D_prefill_i`` = the whole context at turn i (everything evicted at each pause).
- ``measured`` [ours]: ``D_prefill_i`` = tokens the engine actually prefilled (``prompt - cached``).
- ``perfect_reuse`` [ours]: ``D_prefill_i`` = only the tokens new at turn i.
- ``pte_plus`` [ours]: ``evict_all`` plus the weight reads of each decode step, ``b·HOI/(2·B_i)`` per
  decoded token (B_i = the batch the engine decoded at turn i), which the paper's decode term omits.
- ``measured_plus`` [ours]: ``measured`` plus the same weight-read term (the fairest latency model for
  an engine with a prefix cache).

Everything is vectorised with numpy over flat per-turn arrays (``TurnArrays``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel

from interleaf.telemetry.hardware_profile import HardwareProfile
from interleaf.telemetry.model_profile import ModelProfile
from interleaf.telemetry.records import MAX_TOKENS, CacheFigures, Trajectory


class PTEVariant(StrEnum):
    """Which prefill accounting (and whether weight reads) a PTE figure uses."""

    EVICT_ALL = "evict_all"
    """The paper's PTE: full context re-prefilled every turn."""
    MEASURED = "measured"
    """Prefill = tokens the engine recomputed (``prompt_tokens - cached_tokens``)."""
    PERFECT_REUSE = "perfect_reuse"
    """Prefill = only the tokens appended since the previous turn."""
    PTE_PLUS = "pte_plus"
    """``evict_all`` + per-step weight reads amortised over the measured batch size."""
    MEASURED_PLUS = "measured_plus"
    """``measured`` + per-step weight reads amortised over the measured batch size."""


def served_model(model: ModelProfile, hw: HardwareProfile) -> ModelProfile:
    """``model`` as ``hw`` runs it: the one place that decides the bytes per weight and KV element.

    A profile measured on this machine (``measure_cpu_profile``; ``hw.measured``) timed its matmuls at
    ``hw.dtype``, and the engine there runs the model at that precision, so its elements take
    ``hw.dtype_bytes`` (fp32: 4) whatever the model profile says (the shipped ones: 2, as served on
    GPUs). A datasheet profile keeps the model's ``dtype_bytes``. ``gamma`` and ``step_weight_pte`` go
    through it, so ``interleaf report --hardware cpu`` and ``interleaf study pte-latency`` price alike.
    """
    if not hw.measured or model.dtype_bytes == hw.dtype_bytes:
        return model
    return model.model_copy(update={"dtype_bytes": hw.dtype_bytes})


def gamma(model: ModelProfile, hw: HardwareProfile, *, formula: str = "paper") -> float:
    """γ = cost of one decoded token per context token, in prefill-token equivalents.

    ``S_KV · HOI / (2 · N_active)``: decoding reads ``S_KV`` bytes of KV per context token
    (``ModelProfile.kv_bytes_per_token`` of ``served_model(model, hw)``), worth ``S_KV · HOI`` FLOPs at
    the roofline ridge, against ``2 · N_active`` FLOPs to prefill one token. ``formula``: ``paper``
    (d_model · H_kv/H_q) or ``exact`` (n_kv_heads · head_dim); MLA models use their latent width either way.
    """
    served = served_model(model, hw)
    return served.kv_bytes_per_token(formula=formula) * hw.hoi / (2.0 * served.n_active_params)


def step_weight_pte(model: ModelProfile, hw: HardwareProfile) -> float:
    """Prefill-token equivalents of reading all weights once (one decode step): ``b · HOI / 2``, with
    ``b`` the bytes per weight of ``served_model(model, hw)``."""
    return served_model(model, hw).dtype_bytes * hw.hoi / 2.0


@dataclass
class TurnArrays:
    """Per-turn token figures of many trajectories as flat arrays (one entry per turn).

    ``trajectory[j]`` is the 0-based index of turn j's trajectory; turns of one trajectory are
    contiguous and in order.
    """

    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    cached_tokens: np.ndarray
    new_tokens: np.ndarray
    batch_size: np.ndarray
    trajectory: np.ndarray
    reported: np.ndarray | None = None
    """True where the engine reported the turn's cache figures (``cache.prompt_tokens > 0``); None = all.
    Where False, ``cached_tokens`` is unknown rather than 0, and no recompute is inferred."""

    def __post_init__(self) -> None:
        if self.reported is None:
            self.reported = np.ones(len(self.prompt_tokens), dtype=bool)
        n = len(self.prompt_tokens)
        for field in ("completion_tokens", "cached_tokens", "new_tokens", "batch_size", "trajectory", "reported"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"TurnArrays.{field} has {len(getattr(self, field))} entries, expected {n}")

    @classmethod
    def random(cls, n: int, *, seed: int = 0, turns_per_trajectory: int = 10) -> TurnArrays:
        """``n`` synthetic turns with plausible ranges (benchmarks and tests): prompts of 100–30k tokens,
        1–2k completion tokens, a random cached share, batch sizes 1–63."""
        rng = np.random.default_rng(seed)
        prompt = rng.integers(100, 30_000, n)
        return cls(
            prompt_tokens=prompt,
            completion_tokens=rng.integers(1, 2_000, n),
            cached_tokens=(prompt * rng.random(n)).astype(np.int64),
            new_tokens=rng.integers(1, 100, n),
            batch_size=rng.integers(1, 64, n).astype(np.float64),
            trajectory=np.repeat(np.arange(-(-n // turns_per_trajectory)), turns_per_trajectory)[:n],
        )

    @property
    def n_trajectories(self) -> int:
        """Number of trajectories (max index + 1)."""
        return int(self.trajectory.max()) + 1 if len(self.trajectory) else 0

    @classmethod
    def from_trajectories(cls, trajectories: Sequence[Trajectory]) -> TurnArrays:
        """Flatten trajectories' turns. Engine-reported counts win; ids fill in what is missing.

        Raises ``ValueError`` naming the trajectory, turn and field of a figure a validated record
        cannot hold (``CacheFigures``' bounds; reachable only by assigning to a record's fields), rather
        than clamping it into a plausible but wrong PTE."""
        prompt: list[int] = []
        completion: list[int] = []
        cached: list[int] = []
        new: list[int] = []
        batch: list[float] = []
        index: list[int] = []
        reported: list[bool] = []
        for k, traj in enumerate(trajectories):
            context = 0
            for turn in traj.turns:
                _check_figures(traj, turn.index, turn.cache)
                delta = len(turn.delta_ids)
                p = turn.cache.prompt_tokens or context + delta
                c = turn.cache.completion_tokens or len(turn.completion_ids)
                prompt.append(p)
                completion.append(c)
                cached.append(turn.cache.cached_tokens)
                new.append(delta if delta else max(p - context, 0))
                batch.append(turn.cache.batch_size)
                index.append(k)
                reported.append(turn.cache.prompt_tokens > 0)
                context = p + c
        return cls(
            prompt_tokens=np.asarray(prompt, dtype=np.int64),
            completion_tokens=np.asarray(completion, dtype=np.int64),
            cached_tokens=np.asarray(cached, dtype=np.int64),
            new_tokens=np.asarray(new, dtype=np.int64),
            batch_size=np.asarray(batch, dtype=np.float64),
            trajectory=np.asarray(index, dtype=np.int64),
            reported=np.asarray(reported, dtype=bool),
        )

    def recomputed_tokens(self) -> np.ndarray:
        """Per turn: context tokens prefilled again although an earlier call had computed their KV.

        The previous turn's last sampled token was never run through the model (its KV does not exist
        yet), so an engine that kept everything reports ``cached = prompt - new - 1`` (SGLang's session
        invariant allows exactly that); recompute is what exceeds it. 0 on each trajectory's first turn
        and where the engine reported no figures.
        """
        first = np.ones(len(self.trajectory), dtype=bool)
        first[1:] = self.trajectory[1:] != self.trajectory[:-1]
        prev_completion = np.zeros(len(self.trajectory), dtype=np.int64)
        prev_completion[1:] = self.completion_tokens[:-1]
        uncomputed = (prev_completion > 0).astype(np.int64)
        derived = np.maximum(self.prompt_tokens - self.new_tokens - uncomputed - self.cached_tokens, 0)
        return np.where(first | ~self.reported, 0, derived)


def _check_figures(traj: Trajectory, turn: int, cache: CacheFigures) -> None:
    """The bounds ``CacheFigures`` validates, for figures assigned after validation."""
    where = f"trajectory {traj.id!r} turn {turn}: cache"
    for field in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        value = getattr(cache, field)
        if not 0 <= value <= MAX_TOKENS:
            raise ValueError(f"{where}.{field}={value} is outside [0, {MAX_TOKENS}]; the record is corrupt")
    if cache.cached_tokens > cache.prompt_tokens:
        raise ValueError(
            f"{where}.cached_tokens={cache.cached_tokens} exceeds prompt_tokens={cache.prompt_tokens}; "
            "the record is corrupt"
        )
    if not (math.isfinite(cache.batch_size) and cache.batch_size >= 1.0):
        raise ValueError(f"{where}.batch_size={cache.batch_size} is not a finite number >= 1; the record is corrupt")


def turn_pte(
    turns: TurnArrays,
    gamma_value: float,
    variant: PTEVariant | str = PTEVariant.EVICT_ALL,
    *,
    step_weight: float = 0.0,
) -> np.ndarray:
    """PTE of each turn (float64 array). ``step_weight`` (``step_weight_pte``) is needed by the
    ``*_plus`` variants and ignored by the others."""
    variant = PTEVariant(variant)
    prompt = turns.prompt_tokens.astype(np.float64)
    decode = turns.completion_tokens.astype(np.float64)
    if variant in (PTEVariant.EVICT_ALL, PTEVariant.PTE_PLUS):
        prefill = prompt
    elif variant in (PTEVariant.MEASURED, PTEVariant.MEASURED_PLUS):
        prefill = np.maximum(prompt - turns.cached_tokens, 0.0)
    else:
        prefill = turns.new_tokens.astype(np.float64)
    out = prefill + gamma_value * prompt * decode
    if variant in (PTEVariant.PTE_PLUS, PTEVariant.MEASURED_PLUS):
        if step_weight <= 0:
            raise ValueError(f"variant={variant.value} needs step_weight > 0 (use step_weight_pte(model, hw))")
        out += step_weight * decode / turns.batch_size
    return out


def pte(
    turns: TurnArrays,
    model: ModelProfile,
    hw: HardwareProfile,
    variant: PTEVariant | str = PTEVariant.EVICT_ALL,
    *,
    per: str = "trajectory",
    formula: str = "paper",
) -> np.ndarray:
    """PTE per ``turn`` or per ``trajectory`` (summed with ``np.bincount``) for one variant."""
    values = turn_pte(turns, gamma(model, hw, formula=formula), variant, step_weight=step_weight_pte(model, hw))
    if per == "turn":
        return values
    if per == "trajectory":
        return np.bincount(turns.trajectory, weights=values, minlength=turns.n_trajectories)
    raise ValueError(f"per={per!r} is not known; use 'turn' or 'trajectory'")


class PTEBreakdown(BaseModel):
    """A trajectory's (or a job's total) PTE under every variant, with the constants used."""

    model: str
    """Model profile name."""
    hardware: str
    """Hardware profile name."""
    gamma: float
    """γ used (prefill-token equivalents per decoded token per context token)."""
    evict_all: float
    """The paper's PTE (full re-prefill each turn)."""
    measured: float
    """PTE with prefill = tokens the engine recomputed."""
    perfect_reuse: float
    """PTE with prefill = new tokens only."""
    pte_plus: float
    """``evict_all`` + decode weight reads amortised over the batch (ours)."""
    measured_plus: float
    """``measured`` + decode weight reads amortised over the batch (ours)."""

    @property
    def retention_saving(self) -> float:
        """``evict_all - measured``: what keeping the KV across pauses saved."""
        return self.evict_all - self.measured

    @property
    def left_on_table(self) -> float:
        """``measured - perfect_reuse``: recompute that perfect reuse would still have avoided."""
        return self.measured - self.perfect_reuse


def pte_table(
    trajectories: Sequence[Trajectory] | TurnArrays, model: ModelProfile, hw: HardwareProfile
) -> dict[PTEVariant, np.ndarray]:
    """Per-trajectory PTE arrays for every variant."""
    turns = trajectories if isinstance(trajectories, TurnArrays) else TurnArrays.from_trajectories(trajectories)
    g, w = gamma(model, hw), step_weight_pte(model, hw)
    n = turns.n_trajectories if isinstance(trajectories, TurnArrays) else len(trajectories)
    return {
        v: np.bincount(turns.trajectory, weights=turn_pte(turns, g, v, step_weight=w), minlength=n) for v in PTEVariant
    }


def trajectory_pte(
    traj: Trajectory,
    model: ModelProfile,
    hw: HardwareProfile,
    variant: PTEVariant | str = PTEVariant.EVICT_ALL,
) -> float:
    """PTE of one trajectory for one variant."""
    return float(pte_table([traj], model, hw)[PTEVariant(variant)][0])


def pte_breakdown(
    trajectories: Trajectory | Iterable[Trajectory], model: ModelProfile, hw: HardwareProfile
) -> PTEBreakdown:
    """Every variant for one trajectory, or summed over several (a job)."""
    trajs = [trajectories] if isinstance(trajectories, Trajectory) else list(trajectories)
    table = pte_table(trajs, model, hw)
    return PTEBreakdown(
        model=model.name,
        hardware=hw.name,
        gamma=gamma(model, hw),
        **{v.value: float(table[v].sum()) for v in PTEVariant},
    )


__all__ = [
    "PTEBreakdown",
    "PTEVariant",
    "TurnArrays",
    "gamma",
    "pte",
    "pte_breakdown",
    "pte_table",
    "served_model",
    "step_weight_pte",
    "trajectory_pte",
    "turn_pte",
]
