"""The request parameters several routes share, declared once so that every route validates them alike
and the OpenAPI document states exactly what is accepted.

- ``JobIdPath``: a job id in a path (``JOB_ID_PATTERN``), so an id that is not a plain name never
  reaches a Redis key (``first-job:events`` would name another key) or a file path;
- ``StreamId``: a position in a job's event stream (``after``), two whole numbers of at most 64 bits
  joined by ``-``, as Redis reads them.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Query

from interleaf.runtime.jobs.spec import JobId, uint_pattern

JobIdPath = Annotated[JobId, Path(description="The job's id (letters, digits, '.', '_', '-'; at most 128).")]
"""A job id in a route's path."""

_PART_MAX = 2**64 - 1  # Redis stream ids are two unsigned 64-bit integers
STREAM_ID_PATTERN = f"^{uint_pattern(_PART_MAX)}-{uint_pattern(_PART_MAX)}$"
"""A Redis stream entry id: ``<ms>-<seq>``, each a whole number 0..2^64-1 in at most 20 ASCII digits."""

StreamId = Annotated[
    str,
    Query(
        description="The stream entry id to read after (``last_id`` of the previous page): two whole numbers "
        "0..2^64-1 joined by '-', e.g. 1712345678901-0.",
        json_schema_extra={"pattern": STREAM_ID_PATTERN},
    ),
]
"""``after``: declared with its exact pattern; ``check_stream_id`` applies it with a readable message."""


def check_stream_id(value: str) -> str | None:
    """None when ``value`` is a stream id, else what is wrong with it (for a 422 naming ``after``)."""
    if re.fullmatch(STREAM_ID_PATTERN, value):
        return None
    if not re.fullmatch(r"[0-9]{1,20}-[0-9]{1,20}", value):
        return "not a stream entry id: two whole numbers in ASCII digits joined by '-', e.g. 1712345678901-0"
    return f"each part of a stream id is at most {_PART_MAX}"


__all__ = ["STREAM_ID_PATTERN", "JobIdPath", "StreamId", "check_stream_id"]
