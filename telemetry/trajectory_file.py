"""The trajectory file: JSON Lines, one ``Trajectory`` record per line (``.gz`` compressed is fine).

The one serialised form of a trajectory, wherever it is kept: a job's ``trajectories.jsonl`` export,
the Redis trajectory hash, the string a Ray ``EpisodeWorker`` returns. ``interleaf report`` and the
SDK's ``interleaf.load_trajectories`` read it.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from interleaf.telemetry.records import Trajectory

TRAJECTORY_FILE = "trajectories.jsonl"
"""The name of a job's trajectory export inside its folder (``<runs_dir>/<job-id>/trajectories.jsonl``)."""

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


def dump_trajectory(traj: Trajectory) -> str:
    """One-line JSON. Compact by construction: turns hold only their token deltas, so a record is
    O(total tokens), never O(turns²). Every field is written (readers of the JSONL need no defaults)."""
    return traj.model_dump_json()


def load_trajectory(raw: str | bytes) -> Trajectory:
    """One ``dump_trajectory`` line back as a ``Trajectory`` (validated; a bad record raises ``ValueError``)."""
    return Trajectory.model_validate_json(raw)


def trajectory_path(source: str | Path) -> Path:
    """The trajectory file ``source`` names: a file; a folder holding ``trajectories.jsonl`` (a job's
    folder, ``runs/<job-id>``); or a job id, looked up as ``<runs_dir>/<job-id>/trajectories.jsonl``.

    Raises ``FileNotFoundError`` when it is none of them.
    """
    path = Path(source)
    if path.is_dir():
        if (path / TRAJECTORY_FILE).is_file():
            return path / TRAJECTORY_FILE
        raise FileNotFoundError(
            f"{path} is a folder without a {TRAJECTORY_FILE}; pass a trajectories JSONL file, a job folder "
            "that holds one, or a job id"
        )
    if path.exists():
        return path
    # Imported here: the settings module belongs to the SDK face, and only a job id needs it.
    from interleaf.settings import runs_dir

    candidate = runs_dir() / str(source) / TRAJECTORY_FILE
    if not candidate.exists():
        raise FileNotFoundError(
            f"source={str(source)!r} is neither a JSONL file nor a job id with {candidate}; "
            "pass a trajectories.jsonl path or set INTERLEAF_RUNS_DIR"
        )
    return candidate


def load_trajectories(source: str | Path, *, empty_ok: bool = True) -> list[Trajectory]:
    """Trajectories from a trajectory file (``trajectory_path``: a file, a job folder or a job id): one
    ``Trajectory`` per line, blank lines skipped, UTF-8 with or without a byte-order mark, gzip-compressed
    or not (told by the content, not the name).

    Raises ``FileNotFoundError`` when ``source`` names no file, and ``ValueError`` naming the file (and
    the line, and the field where there is one) of a file that cannot be read: a corrupt or truncated
    gzip stream, bytes that are not UTF-8, a line that is not JSON or not a valid record (a token count
    out of range, a NaN, a ``schema_version`` newer than this interleaf reads). ``empty_ok=False`` also
    refuses a file without any record.
    """
    path = trajectory_path(source)
    out = []
    with contextlib.closing(_lines(path)) as lines:  # closed at once when a bad line raises
        out = _records(path, lines)
    if not out and not empty_ok:
        raise ValueError(f"no trajectories in {path}: the file holds no record")
    return out


def _records(path: Path, lines: Iterator[tuple[int, bytes]]) -> list[Trajectory]:
    out = []
    for lineno, raw in lines:
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path}:{lineno}: byte {raw[exc.start]:#04x} at column {exc.start + 1} is not UTF-8; "
                "a trajectory file is UTF-8 JSON Lines"
            ) from None
        if not line.strip():
            continue
        try:
            out.append(load_trajectory(line))
        except ValidationError as exc:
            raise ValueError(f"{path}:{lineno} is not a Trajectory record: {describe_errors(exc)}") from None
    return out


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of a plain or gzip-compressed file; unreadable files raise ``ValueError``."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with f, contextlib.ExitStack() as stack:
        compressed = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        if compressed:
            stack.callback(stream.close)
        lineno = 0
        try:
            for lineno, raw in enumerate(stream, 1):
                yield lineno, raw
        except (OSError, EOFError, zlib.error) as exc:
            # EOFError is a truncated gzip stream (the CLI would read it as Ctrl-D and say "aborted").
            what = "truncated" if isinstance(exc, EOFError) else "corrupt"
            raise ValueError(
                f"{path}:{lineno + 1}: the gzip stream is {what} ({exc or type(exc).__name__}); "
                "re-export the file, or decompress what is left with `zcat` and read that"
            ) from None


def describe_errors(exc: ValidationError, *, limit: int = 3) -> str:
    """A validation error in one line: ``field=value: what is wrong`` for the first ``limit`` errors."""
    parts = []
    for err in exc.errors()[:limit]:
        field = _field(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "json_invalid":
            parts.append(msg)
        elif err["type"] == "model_type" and not field:
            parts.append(f"the line is not a JSON object ({type(err['input']).__name__})")
        elif err["type"] == "missing":
            parts.append(f"{field}: required field missing")
        else:
            parts.append(f"{field}={_short(err['input'])}: {msg}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "TRAJECTORY_FILE",
    "describe_errors",
    "dump_trajectory",
    "load_trajectories",
    "load_trajectory",
    "trajectory_path",
]
