"""The trajectory file: JSON Lines, one ``Trajectory`` record per line (``.gz`` compressed is fine).

The one serialised form of a trajectory, wherever it is kept: a job's ``trajectories.jsonl`` export,
the Redis trajectory hash, the string a Ray ``EpisodeWorker`` returns. ``interleaf report`` and the
SDK's ``interleaf.load_trajectories`` read it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from interleaf.telemetry.records import Trajectory


def dump_trajectory(traj: Trajectory) -> str:
    """One-line JSON. Compact by construction: turns hold only their token deltas, so a record is
    O(total tokens), never O(turns²). Every field is written (readers of the JSONL need no defaults)."""
    return traj.model_dump_json()


def load_trajectory(raw: str | bytes) -> Trajectory:
    """One ``dump_trajectory`` line back as a ``Trajectory`` (validated; a bad record raises ``ValueError``)."""
    return Trajectory.model_validate_json(raw)


def load_trajectories(source: str | Path) -> list[Trajectory]:
    """Trajectories from a JSONL file (one ``Trajectory`` per line, blank lines skipped; ``.gz``
    compressed is fine), or a job id looked up as ``<runs_dir>/<job-id>/trajectories.jsonl``.

    Raises ``FileNotFoundError`` when ``source`` is neither, and ``ValueError`` naming the file and line
    of a record that does not validate.
    """
    path = Path(source)
    if not path.exists():
        # Imported here: the settings module belongs to the SDK face, and only a job id needs it.
        from interleaf.settings import runs_dir

        candidate = runs_dir() / str(source) / "trajectories.jsonl"
        if not candidate.exists():
            raise FileNotFoundError(
                f"source={str(source)!r} is neither a JSONL file nor a job id with {candidate}; "
                "pass a trajectories.jsonl path or set INTERLEAF_RUNS_DIR"
            )
        path = candidate
    out = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(load_trajectory(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno} is not a Trajectory record: {exc}") from exc
    return out


__all__ = ["dump_trajectory", "load_trajectories", "load_trajectory"]
