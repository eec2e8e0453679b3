"""The run's files as tar streams: the code and (bwrap mode) the working directory go in on stdin, and
the working directory comes back on bwrap mode's report pipe, so the host's scratch dir is never
mounted into the sandbox and nothing that comes back can link out of it."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from interleaf.tools import sandbox_boot

_STAGING_PREFIX = ".interleaf-incoming-"
"""Where a run's working directory is unpacked inside the host's scratch dir before it replaces it."""


def pack_input(code: str, scratch: Path | None) -> IO[bytes]:
    """The tar stream boot's ``run`` step reads from stdin: the code, and the working directory."""
    out = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (returned open, the caller closes it)
    with tarfile.open(fileobj=out, mode="w|") as tar:
        data = code.encode()
        info = tarfile.TarInfo(sandbox_boot.CODE_MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        if scratch is not None:
            for child in sorted(scratch.iterdir()):
                if not child.name.startswith(_STAGING_PREFIX):
                    tar.add(child, arcname=f"{sandbox_boot.WORK_MEMBER}/{child.name}")
    out.seek(0)
    return out


def unpack_report(report: IO[bytes], scratch: Path, budget: int) -> tuple[int, str]:
    """Read bwrap mode's report and replace ``scratch``'s contents with the working directory it
    carries, at most ``budget`` bytes of files at their apparent size (the sandbox's ``/tmp``, which
    they must fit into again next call); returns (processes killed, a note for stderr)."""
    report.seek(0)
    header = json.loads(report.readline() or b"null")
    if not isinstance(header, dict):
        return 0, "Note: the sandbox sent no working directory back; files written in this call were not kept."
    skipped: list[str] = [str(item) for item in header.get("skipped", [])]
    used = 0

    def keep(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        nonlocal used
        shown = member.name.removeprefix(f"{sandbox_boot.WORK_MEMBER}/")
        try:
            member = tarfile.data_filter(member, path)
        except tarfile.FilterError as exc:
            skipped.append(f"{shown} ({exc})")
            return None
        if member.isfile():
            size = sandbox_boot.page_rounded(member.size)
            if used + size > budget:
                skipped.append(f"{shown} ({member.size} bytes: past the {budget >> 20} MiB /tmp quota)")
                return None
            used += size
        return member

    # Staged inside scratch (the one directory we may be sure to own), then swapped in entry by entry.
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=scratch))
    try:
        try:
            with tarfile.open(fileobj=report, mode="r|") as tar:
                tar.extractall(staging, filter=keep)
        except (tarfile.TarError, OSError) as exc:
            return int(header["killed"]), f"Note: files written in this call were not kept: {exc}"
        fresh = staging / sandbox_boot.WORK_MEMBER
        fresh.mkdir(exist_ok=True)
        for old in scratch.iterdir():
            if old == staging:
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        for new in fresh.iterdir():
            os.rename(new, scratch / new.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    note = ""
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        note = f"Note: not kept in the working directory: {', '.join(skipped[:5])}{more}"
    return int(header["killed"]), note


__all__ = ["pack_input", "unpack_report"]
