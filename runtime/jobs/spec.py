"""``JobSpec``: what a job runs (suite, agent, scale, backends, retention, budgets), validated at the door;
``JobLimits``: the maxima a service puts on the specs it accepts.

The suite and agent are checked against their registries (``interleaf.agents.SUITES`` and ``AGENTS``)
and the retention policy against ``RetentionPolicyName``, so an unknown name fails here, naming the
field, the value and the choices, and never inside a Ray actor. Unknown fields, booleans or floats
where an integer belongs, NaN and Infinity are refused (a typo must not silently run the defaults), and
so is any text holding a lone UTF-16 surrogate (``check_text``): JSON can carry ``"\\ud800"``, but no
store, log or backend can take it.
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
from typing import Annotated, Any
from urllib.parse import urlsplit

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)

from interleaf.agents import AGENTS, SUITES
from interleaf.runtime.client import AdmissionMode, RetentionPolicyName
from interleaf.text import surrogate_problem

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A job id: a safe file name (no ``/``, no leading dot) and no ``:`` (the Redis key separator)."""

JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
"""A job id as every interface takes it (``JobSpec.job_id``, the API's and the dashboard's paths)."""

_URL_MAX = 2048


def uint_pattern(limit: int) -> str:
    """A regular expression (no anchors) of the whole numbers 0..``limit`` written in at most as many
    digits as ``limit`` (leading zeros allowed within that width)."""
    digits = str(limit)
    alternatives = [
        digits[:i]
        + (f"[0-{int(d) - 1}]" if int(d) > 1 else "0")
        + (f"[0-9]{{{len(digits) - i - 1}}}" if i + 1 < len(digits) else "")
        for i, d in enumerate(digits)
        if int(d) > 0
    ]
    if len(digits) > 1:
        alternatives.append(f"[0-9]{{1,{len(digits) - 1}}}")
    return f"(?:{'|'.join([*alternatives, digits])})"


_H16 = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    [
        f"(?:{_H16}:){{7}}{_H16}",
        f"(?:{_H16}:){{1,7}}:",
        *(f"(?:{_H16}:){{1,{6 - k}}}(?::{_H16}){{1,{k + 1}}}" for k in range(6)),
        f":(?:(?::{_H16}){{1,7}}|:)",
    ]
)
BACKEND_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"  # http or https, any case
    r"(?:[A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"  # user:password@
    rf"(?:[A-Za-z0-9._~%!$&'()*+,;=-]+|\[(?:{_IPV6})\])"  # a host name or address, or [an IPv6 address]
    rf"(?::(?:0*{uint_pattern(65535)})?)?"  # :port (urllib takes any leading zeros)
    r"(?:[/?#][!-~]*)?$"  # path, query, fragment: printable ASCII
)
"""A backend URL as a service accepts it (``check_backend_url``): http(s), a host, a port up to 65535,
printable ASCII only (a host name in IDNA form, ``xn--...``)."""


def check_job_id(value: str) -> str:
    """``value`` if it matches ``JOB_ID_PATTERN``, else ValueError naming it and the rule."""
    if not re.fullmatch(JOB_ID_PATTERN, value):
        raise ValueError(
            f"job_id={value!r} is not a valid job id: 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_backend_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host (``BACKEND_URL_PATTERN``), else ValueError naming it."""
    if len(value) > _URL_MAX or not re.fullmatch(BACKEND_URL_PATTERN, value):
        raise ValueError(
            f"backend URL {value[:200]!r} is not an http(s) URL with a host and a port up to 65535, in printable "
            f"ASCII (at most {_URL_MAX} characters), e.g. http://127.0.0.1:30000"
        )
    try:  # the pattern has said it all; urllib is the one that has to agree
        _ = urlsplit(value).port
    except ValueError as exc:
        raise ValueError(f"backend URL {value[:200]!r}: {exc}") from None
    return value


BackendUrl = Annotated[str, Field(json_schema_extra={"pattern": BACKEND_URL_PATTERN, "maxLength": _URL_MAX})]
"""One ``JobSpec.backend_urls`` item. Its schema states the rule ``check_backend_url`` applies (the
list's validator, so a problem names ``backend_urls``, the URL and the rule in words)."""


def check_text(field: str, value: object) -> object:
    """``value`` unless it is text (or a list of texts) holding a lone UTF-16 surrogate (``"\\ud800"``,
    which JSON can carry but UTF-8 cannot): such a value cannot be stored, logged or sent to a
    backend, and would fail there, far from the request. ValueError naming the field and the place."""
    texts = [(f"{field}.{i}", v) for i, v in enumerate(value)] if isinstance(value, list) else [(field, value)]
    for name, text in texts:
        problem = surrogate_problem(text) if isinstance(text, str) else None
        if problem is not None:
            raise ValueError(
                f"{name}={text[:200]!r} is not valid Unicode: {problem}; send UTF-8 text (in JSON, a "
                "\\ud800-\\udfff escape must pair)"
            )
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
    backend_urls: list[BackendUrl] = Field(default_factory=list, max_length=256)
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
    job_id: JobId | None = None
    """Job id (letters, digits, ``.``, ``_``, ``-``; at most 128, starting with a letter or digit);
    generated when omitted."""

    @field_validator("*", mode="before")
    @classmethod
    def _check_text(cls, value: object, info: ValidationInfo) -> object:
        return check_text(info.field_name or "(field)", value)

    @field_validator("backend_urls")
    @classmethod
    def _check_backends(cls, value: list[str]) -> list[str]:
        return [check_backend_url(url) for url in value]

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


__all__ = [
    "BACKEND_URL_PATTERN",
    "JOB_ID_PATTERN",
    "BackendUrl",
    "JobId",
    "JobLimits",
    "JobSpec",
    "check_backend_url",
    "check_job_id",
    "check_text",
    "uint_pattern",
]
