"""``JobSpec``: what a job runs (suite, agent, scale, backends, retention, budgets), validated at the door;
``JobLimits``: the maxima a service puts on the specs it accepts.

The suite and agent are checked against their registries (``interleaf.agents.SUITES`` and ``AGENTS``)
and the retention policy against ``RetentionPolicyName``, so an unknown name fails here, naming the
field, the value and the choices, and never inside a Ray actor. Unknown fields, booleans or floats
where an integer belongs, NaN and Infinity are refused (a typo must not silently run the defaults).
The ``job_id`` becomes a directory name and part of Redis keys, hence its pattern (``JOB_ID_PATTERN``).
Every field's docstring is its description (``use_attribute_docstrings``): the API's schema and
``interleaf run --help`` show it.

``JobSpec`` itself has no upper bounds on scale (a local run may be as large as its user likes);
``JobLimits.request_model()`` is the ``JobSpec`` a service accepts, with the maxima in its schema.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from interleaf.agents import AGENTS, SUITES
from interleaf.runtime.client import AdmissionMode, RetentionPolicyName

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A job id: a safe file name (no ``/``, no leading dot) and no ``:`` (the Redis key separator)."""

_URL_MAX = 2048


def check_job_id(value: str) -> str:
    """``value`` if it matches ``JOB_ID_PATTERN``, else ValueError naming it and the rule."""
    if not re.fullmatch(JOB_ID_PATTERN, value):
        raise ValueError(
            f"job_id={value!r} is not a valid job id: 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_backend_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host, else ValueError naming it."""
    parts = urlsplit(value) if len(value) <= _URL_MAX else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"backend URL {value[:200]!r} is not an http(s) URL with a host (at most {_URL_MAX} characters), "
            "e.g. http://127.0.0.1:30000"
        )
    try:
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"backend URL {value[:200]!r}: {exc}") from None
    return value


class JobSpec(BaseModel):
    """What to run: suite, agent, scale, backends, retention, budgets. Persisted with the job."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", allow_inf_nan=False)

    suite: str = Field(default="arith", min_length=1, max_length=4096)
    """Task suite: a registered name (``interleaf.agents.register_suite``) or a path to a ``.jsonl`` file."""
    n: int = Field(default=20, ge=1, strict=True)
    """Number of tasks (episodes)."""
    seed: int = Field(default=0, ge=-(2**63), lt=2**63, strict=True)
    """Seed of the suite's generator."""
    agent: str = Field(default="tir", min_length=1, max_length=256)
    """Registered agent name (``interleaf.agents.register_agent``)."""
    concurrency: int = Field(default=8, ge=1, strict=True)
    """Episodes running at once across all actors."""
    actors: int = Field(default=2, ge=1, strict=True)
    """Number of ``EpisodeWorker`` actors."""
    backend_urls: list[str] = Field(default_factory=list, max_length=256)
    """SGLang-protocol servers, http(s) URLs (the router spreads episodes over them)."""
    retention: RetentionPolicyName = RetentionPolicyName.ADAPTIVE
    """Retention policy at tool pauses (``interleaf.runtime.client.retention``)."""
    kv_budget_fraction: float = Field(default=0.5, gt=0, le=1, strict=True)
    """Share of each server's KV capacity that held sessions may use, split over the actors."""
    admission: AdmissionMode = AdmissionMode.DEFER
    """Episode admission control of a session-holding retention: defer (run without a session until admitted;
    on a crowded server only the head of the queue does, the rest wait), strict (always wait: program-level
    FCFS), off."""
    admission_overcommit: float = Field(default=1.0, gt=0, le=100, strict=True)
    """Admitted episodes' projected peak contexts may sum to this many times the KV budget (1: they must fit)."""
    max_turns: int | None = Field(default=None, ge=1, strict=True)
    """Override the agent's turn budget."""
    max_tokens: int | None = Field(default=None, ge=1, le=100_000_000, strict=True)
    """Override the agent's token budget (whole sequence)."""
    max_new_tokens: int | None = Field(default=None, ge=1, strict=True)
    """Override the agent's per-turn generation cap."""
    wall_time_s: float | None = Field(default=None, gt=0, le=30 * 86_400, strict=True)
    """Override the agent's per-episode wall-time budget, seconds (at most 30 days)."""
    temperature: float | None = Field(default=None, ge=0, le=100, strict=True)
    """Override the agent's sampling temperature."""
    max_attempts: int = Field(default=3, ge=1, le=100, strict=True)
    """Attempts per episode across actor deaths and worker errors."""
    job_id: str | None = Field(default=None, pattern=JOB_ID_PATTERN)
    """Job id (letters, digits, ``.``, ``_``, ``-``; at most 128, starting with a letter or digit);
    generated when omitted."""

    @field_validator("suite")
    @classmethod
    def _check_suite(cls, value: str) -> str:
        if value.endswith(".jsonl"):
            if not Path(value).is_file():
                raise ValueError(f"JobSpec.suite={value!r}: no such file; pass an existing .jsonl task file")
        elif value not in SUITES:
            raise ValueError(
                f"JobSpec.suite={value!r} is not a registered suite; choose one of {', '.join(sorted(SUITES))} "
                "(add one with interleaf.agents.register_suite) or pass a path to a .jsonl file"
            )
        return value

    @field_validator("agent")
    @classmethod
    def _check_agent(cls, value: str) -> str:
        if value not in AGENTS:
            raise ValueError(
                f"JobSpec.agent={value!r} is not a registered agent; choose one of {', '.join(sorted(AGENTS))} "
                "(add one with interleaf.agents.register_agent)"
            )
        return value

    @field_validator("backend_urls")
    @classmethod
    def _check_backends(cls, value: list[str]) -> list[str]:
        return [check_backend_url(url) for url in value]


# The JobSpec fields a service bounds; the JobLimits field of the same name holds each bound.
_BOUNDED = ("n", "actors", "concurrency", "max_turns", "max_new_tokens")


class JobLimits(BaseModel):
    """What a service (``interleaf serve``) accepts: maxima of a job's scale and budgets, which backends
    and suites a job may name. ``interleaf run`` and ``JobRunner`` apply none of them. Each field can be
    set with ``INTERLEAF_MAX_<FIELD>`` (``JobLimits.from_env``)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    n: int = Field(default=100_000, ge=1)
    """Most episodes in one job (a job's tasks are built in memory: ~1 KiB each)."""
    actors: int = Field(default=64, ge=1)
    """Most ``EpisodeWorker`` actors of one job."""
    concurrency: int = Field(default=4096, ge=1)
    """Most episodes of one job running at once."""
    max_turns: int = Field(default=1000, ge=1)
    """Largest per-episode turn budget a job may ask for."""
    max_new_tokens: int = Field(default=131_072, ge=1)
    """Largest per-turn generation cap a job may ask for."""
    allowed_backends: tuple[str, ...] = ()
    """URL prefixes a job's ``backend_urls`` must start with (e.g. ``http://gpu-1:30000``); empty: any
    http(s) URL. Jobs reach these servers from the workers, so an exposed service should set it."""
    file_suites: bool = False
    """Whether a job may name a ``.jsonl`` file on the server as its suite (off: registered suites only,
    so a request cannot make the server read its files)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobLimits:
        """Defaults overridden by ``INTERLEAF_MAX_N``, ``INTERLEAF_MAX_ACTORS``, ``..._CONCURRENCY``,
        ``..._MAX_TURNS``, ``..._MAX_NEW_TOKENS``, ``INTERLEAF_ALLOWED_BACKENDS``
        (comma separated) and ``INTERLEAF_FILE_SUITES`` (``1``/``0``); a bad value raises ValueError naming
        the variable."""
        from interleaf.settings import job_limit_overrides

        raw = job_limit_overrides(environ)
        values: dict[str, Any] = {k: v for k, v in raw.items() if k != "allowed_backends"}
        if "allowed_backends" in raw:
            values["allowed_backends"] = tuple(u.strip() for u in raw["allowed_backends"].split(",") if u.strip())
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"INTERLEAF_{'' if e['loc'][0] in ('allowed_backends', 'file_suites') else 'MAX_'}"
                f"{str(e['loc'][0]).upper()}={e['input']!r}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"bad job limit in the environment: {problems}") from None

    def request_model(self) -> type[JobSpec]:
        """``JobSpec`` with these limits: the maxima are in its JSON schema (the API's OpenAPI document)
        and a violation names the field, the value and the limit."""
        fields: dict[str, Any] = {}
        for name in _BOUNDED:
            base = JobSpec.model_fields[name]
            info = copy.deepcopy(base)
            info.metadata = [*info.metadata, annotated_types.Le(getattr(self, name))]
            fields[name] = (base.annotation, info)
        # The names registered now, as the schema's choices (the validators still read the live registries).
        for name, names in (("suite", SUITES), ("agent", AGENTS)):
            info = copy.deepcopy(JobSpec.model_fields[name])
            if name == "agent" or not self.file_suites:
                info.json_schema_extra = {"enum": sorted(names)}
            else:
                info.json_schema_extra = {"examples": sorted(names)}
            fields[name] = (str, info)
        limits = self

        def check_backends(_cls: type, value: list[str]) -> list[str]:
            allowed = limits.allowed_backends
            for url in value:
                if allowed and not any(url == a or url.startswith(a.rstrip("/") + "/") for a in allowed):
                    raise ValueError(
                        f"backend URL {url!r} is not allowed by this server; allowed: {', '.join(allowed)}"
                    )
            return value

        def check_suite(_cls: type, value: object) -> object:
            # Before the registry's check, so a refused path says nothing about the server's files.
            if isinstance(value, str) and value.endswith(".jsonl") and not limits.file_suites:
                raise ValueError(
                    f"suite={value!r}: this server accepts registered suites only ({', '.join(sorted(SUITES))}); "
                    "file suites are enabled with INTERLEAF_FILE_SUITES=1"
                )
            return value

        return create_model(  # type: ignore[call-overload, no-any-return]
            "JobRequest",
            __base__=JobSpec,
            __doc__="A job as the service accepts it: a ``JobSpec`` within the server's ``JobLimits``.",
            __validators__={
                "_allowed_backends": field_validator("backend_urls")(classmethod(check_backends)),
                "_file_suites": field_validator("suite", mode="before")(classmethod(check_suite)),
            },
            **fields,
        )


__all__ = ["JOB_ID_PATTERN", "JobLimits", "JobSpec", "check_backend_url", "check_job_id"]
