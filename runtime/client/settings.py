"""PoolSettings: the numeric and boolean knobs of a :class:`~interleaf.runtime.client.pool.BackendPool`.

Checked once, at construction (and by ``BackendPool.connect`` before it touches the network): a NaN
retry count used to retry forever, a NaN backoff hung in ``asyncio.sleep``, a zero request timeout
marked every server down with a misleading ``WriteTimeout``. Strict types: ``"0.5"`` is not a
fraction and ``2.0`` is not a retry count. A refused value raises ``ValueError`` naming the argument,
the value and what it must be.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PoolSettings(BaseModel):
    """What a pool is told about budgets, admission, retries and timeouts (all finite)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", allow_inf_nan=False)

    kv_budget_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of each server's ``max_total_num_tokens`` this pool may pin in sessions, in [0, 1]
    (N pools on one server: fraction / N)."""
    kv_share: float = Field(1.0, gt=0.0, le=1.0)
    """Share of each server's KV this pool's episodes run in, in (0, 1] (N pools on one server: 1 / N)."""
    admission_wait_s: float = Field(1.0, ge=0.0)
    """Seconds a turn waits for room in the KV budget before it runs without a session (>= 0)."""
    session_timeout_s: float = Field(300.0, gt=0.0)
    """Inactivity after which the server reaps a streaming session, seconds (> 0)."""
    retries: int = Field(2, ge=0)
    """Retries of a transient failure on the same server before it is marked down (an int >= 0)."""
    backoff_s: float = Field(0.25, ge=0.0)
    """First retry's backoff, seconds; doubled per retry, at most 4 s (>= 0)."""
    admission: bool = True
    """Episode admission control on (False: every episode may try to hold)."""
    admission_overcommit: float = Field(1.0, gt=0.0)
    """Factor by which the admitted episodes' projected peaks may exceed the budget (> 0; 1: must fit)."""
    admission_defer: bool = True
    """A turn not admitted yet runs without a session (False: it always waits)."""
    health_interval_s: float = Field(1.0, gt=0.0)
    """Seconds between ``/health`` polls of every server (> 0; ``connect`` only)."""
    request_timeout_s: float = Field(600.0, gt=0.0)
    """Read/write timeout of one HTTP request, seconds (> 0; ``connect`` only)."""

    @classmethod
    def check(cls, **values: Any) -> PoolSettings:
        """The settings, or ``ValueError`` naming each refused argument, its value and what it must be."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                name = str(error["loc"][0]) if error["loc"] else "?"
                if error["type"] == "extra_forbidden":
                    problems.append(f"{name}={error['input']!r}: unknown option (known: {', '.join(cls.model_fields)})")
                    continue
                what = _MEANING.get(name, "")
                problems.append(f"{name}={error['input']!r}: {error['msg'].lower()}" + (f" ({what})" if what else ""))
            raise ValueError("; ".join(problems)) from None


_MEANING = {
    "kv_budget_fraction": "the share of each server's max_total_num_tokens this pool may pin: N pools on one "
    "server pass fraction/N",
    "kv_share": "the share of each server's KV this pool's episodes run in: N pools on one server pass 1/N",
    "admission_wait_s": "seconds a turn waits for KV-budget room, a finite number >= 0",
    "session_timeout_s": "seconds of inactivity before the server reaps a session, a finite number > 0",
    "retries": "retries on the same server before it is marked down, an int >= 0",
    "backoff_s": "first retry's backoff in seconds, a finite number >= 0",
    "admission": "a bool",
    "admission_overcommit": "how far admitted projections may exceed the budget, a finite factor > 0; 1: they must fit",
    "admission_defer": "a bool",
    "health_interval_s": "seconds between /health polls, a finite number > 0",
    "request_timeout_s": "seconds one HTTP request may take, a finite number > 0",
}
"""What each setting means and must be, for error messages."""


__all__ = ["PoolSettings"]
