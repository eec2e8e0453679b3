"""The job summary's recomputed tokens: the client's per-turn figure and telemetry's inference from the
token counts agree on the client's records, so neither can inflate the other."""

from __future__ import annotations

import random

import pytest

from interleaf.runtime.client import Conversation
from interleaf.telemetry import summarize_job
from interleaf.telemetry.records import CacheFigures, TerminationReason, Trajectory, Turn


def client_trajectory(seed: int) -> tuple[Trajectory, int]:
    """Turns recorded the way ``EpisodeModel`` records them, with random cache hits (full, partial,
    none); returns the trajectory and the client's total recomputed tokens."""
    rng = random.Random(seed)
    conv = Conversation()
    turns, total = [], 0
    for i in range(rng.randint(1, 8)):
        delta = [7] * rng.randint(1, 50)
        output = [8] * rng.randint(1, 30)
        prompt = len(conv.ids) + len(delta)
        cached = rng.choice([0, max(conv.computed, 0), rng.randint(0, prompt - 1)])
        recomputed = conv.recomputed(prompt, cached)
        total += recomputed
        conv.commit(delta, output, f"r{i}")
        cache = CacheFigures(
            prompt_tokens=prompt, cached_tokens=cached, recomputed_tokens=recomputed, completion_tokens=len(output)
        )
        turns.append(Turn(index=i, delta_ids=delta, completion_ids=output, cache=cache))
    traj = Trajectory(id=f"t{seed}", turns=turns, termination=TerminationReason.ANSWERED)
    return traj, total


@pytest.mark.parametrize("seed", range(20))
def test_recorded_and_inferred_recompute_agree(seed: int) -> None:
    traj, total = client_trajectory(seed)
    assert summarize_job([traj]).recomputed_tokens == total
    for turn in traj.turns:  # the same record written without the client's figure
        turn.cache.recomputed_tokens = 0
    assert summarize_job([traj]).recomputed_tokens == total
