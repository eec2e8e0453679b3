"""JobSpec validation: suite, agent and retention are checked against their registries at construction,
and the error names the field, the value and the choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from interleaf.agents import AGENTS, SUITES, Agent, register_agent, register_suite
from interleaf.runtime.client import AdmissionMode, RetentionPolicyName
from interleaf.runtime.jobs import JobSpec


def only_error(exc: pytest.ExceptionInfo[ValidationError]) -> tuple[str, object, str]:
    """(field, value, message) of the one error."""
    [err] = exc.value.errors()
    return ".".join(map(str, err["loc"])), err["input"], err["msg"]


def test_unknown_suite_names_field_value_and_registered_suites() -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec(suite="no-such-suite")
    field, value, message = only_error(exc)
    assert (field, value) == ("suite", "no-such-suite")
    assert "JobSpec.suite='no-such-suite'" in message and ".jsonl" in message
    assert all(name in message for name in SUITES)


def test_jsonl_suite_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    with pytest.raises(ValidationError) as exc:
        JobSpec(suite=str(path))
    assert only_error(exc)[:2] == ("suite", str(path))
    path.write_text('{"question": "1+1?", "answer": "2"}\n')
    assert JobSpec(suite=str(path)).suite == str(path)


def test_registered_suite_and_agent_are_accepted() -> None:
    with pytest.raises(ValidationError):
        JobSpec(suite="spec-test-suite", agent="spec-test-agent")
    register_suite("spec-test-suite", SUITES["arith"])
    register_agent("spec-test-agent", lambda: Agent(name="spec-test-agent"))
    try:
        spec = JobSpec(suite="spec-test-suite", agent="spec-test-agent")
        assert (spec.suite, spec.agent) == ("spec-test-suite", "spec-test-agent")
    finally:  # no other test sees these names
        del SUITES["spec-test-suite"], AGENTS["spec-test-agent"]


def test_unknown_agent_names_field_value_and_registered_agents() -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec(agent="nobody")
    field, value, message = only_error(exc)
    assert (field, value) == ("agent", "nobody")
    assert "JobSpec.agent='nobody'" in message and all(name in message for name in AGENTS)


def test_retention_is_a_policy_name() -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec(retention="forever")
    field, value, message = only_error(exc)
    assert (field, value) == ("retention", "forever")
    assert all(f"'{name.value}'" in message for name in RetentionPolicyName)
    spec = JobSpec(retention="ttl")
    assert spec.retention is RetentionPolicyName.TTL
    # Stored and submitted as the plain string, and read back the same.
    assert spec.model_dump(mode="json")["retention"] == "ttl"
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec


def test_admission_is_a_mode_and_overcommit_a_positive_factor() -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec(admission="fcfs")
    field, value, message = only_error(exc)
    assert (field, value) == ("admission", "fcfs") and all(f"'{m.value}'" in message for m in AdmissionMode)
    for bad in (0, -1.5, 101.0, float("inf"), True):
        with pytest.raises(ValidationError) as exc:
            JobSpec(admission_overcommit=bad)
        assert only_error(exc)[0] == "admission_overcommit"
    spec = JobSpec(admission="strict", admission_overcommit=1.5)
    assert (spec.admission, spec.admission_overcommit) == (AdmissionMode.STRICT, 1.5)
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec
    # What each mode asks of the actors' pools.
    assert AdmissionMode.DEFER.pool_options() == {"admission": True, "admission_defer": True}
    assert AdmissionMode.STRICT.pool_options() == {"admission": True, "admission_defer": False}
    assert AdmissionMode.OFF.pool_options() == {"admission": False, "admission_defer": False}


def test_fields_are_documented() -> None:
    # The docstrings are the descriptions: the API schema and `interleaf run --help` show them.
    assert all(field.description for field in JobSpec.model_fields.values())


def errors_of(model: type[JobSpec], body: str) -> dict[str, object]:
    """{field: value} of every problem of a JSON body."""
    with pytest.raises(ValidationError) as exc:
        model.model_validate_json(body)
    return {".".join(map(str, e["loc"])): e["input"] for e in exc.value.errors()}


def test_unknown_fields_booleans_and_non_finite_numbers_are_refused() -> None:
    body = '{"n": true, "actors": 2.0, "temperature": NaN, "wall_time_s": Infinity, "suit": "arith"}'
    problems = errors_of(JobSpec, body)
    assert set(problems) == {"n", "actors", "temperature", "wall_time_s", "suit"}
    assert problems["n"] is True and problems["suit"] == "arith"
    assert JobSpec(temperature=0, kv_budget_fraction=1).temperature == 0  # an int where a float belongs is fine


@pytest.mark.parametrize("job_id", ["../../x/trav", "X:events", ".hidden", "", "a" * 129, "a/b", "a b"])
def test_job_id_is_a_plain_name(job_id: str) -> None:
    assert errors_of(JobSpec, f'{{"job_id": "{job_id}"}}') == {"job_id": job_id}


def test_job_id_pattern_admits_generated_and_documented_ids() -> None:
    from interleaf.runtime.jobs import new_job_id

    for job_id in (new_job_id(), "api-e2e", "a" * 128, "run.2026-01-01_x"):
        assert JobSpec(job_id=job_id).job_id == job_id


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x:70", "http://", "127.0.0.1:30000", "http://h:99999"])
def test_backend_urls_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec(backend_urls=[url])
    field, _value, message = only_error(exc)
    assert field == "backend_urls" and repr(url) in message and ("http(s)" in message or "Port" in message)


def test_output_path_stays_inside_the_runs_dir(tmp_path: Path) -> None:
    from interleaf.runtime.jobs import trajectories_path

    assert trajectories_path("job-1", tmp_path) == tmp_path.resolve() / "job-1" / "trajectories.jsonl"
    with pytest.raises(ValueError, match="not a valid job id"):
        trajectories_path("../../x", tmp_path)
    (tmp_path / "escape").symlink_to(tmp_path.parent)  # a job directory that is a link elsewhere
    (tmp_path.parent / "trajectories.jsonl").write_text("")
    with pytest.raises(ValueError, match="outside the runs directory"):
        trajectories_path("escape", tmp_path)


def test_limits_bound_the_service_model_and_show_in_its_schema() -> None:
    from interleaf.runtime.jobs.spec import JobLimits

    limits = JobLimits(n=100, actors=4, concurrency=8, max_turns=5, max_new_tokens=64)
    model = limits.request_model()
    body = '{"n": 101, "actors": 5, "concurrency": 9, "max_turns": 6, "max_new_tokens": 65}'
    assert errors_of(model, body) == {"n": 101, "actors": 5, "concurrency": 9, "max_turns": 6, "max_new_tokens": 65}
    assert model.model_validate_json('{"n": 100, "max_turns": 5}').n == 100
    schema = model.model_json_schema()["properties"]
    assert schema["n"]["maximum"] == 100 and schema["n"]["description"] == JobSpec.model_fields["n"].description
    assert JobSpec(n=10**6).n == 10**6  # JobSpec itself (interleaf run) is unbounded


def test_limits_refuse_file_suites_and_backends_off_the_allow_list(tmp_path: Path) -> None:
    from interleaf.runtime.jobs.spec import JobLimits

    tasks = tmp_path / "t.jsonl"
    tasks.write_text('{"question": "1+1?", "answer": "2"}\n')
    strict = JobLimits(allowed_backends=("http://gpu-1:30000",)).request_model()
    problems = errors_of(strict, f'{{"suite": "{tasks}", "backend_urls": ["http://gpu-1:30000.evil.org"]}}')
    assert set(problems) == {"suite", "backend_urls"}
    assert strict(backend_urls=["http://gpu-1:30000", "http://gpu-1:30000/"]).backend_urls[0] == "http://gpu-1:30000"
    assert JobLimits(file_suites=True).request_model()(suite=str(tasks)).suite == str(tasks)


def test_limits_from_the_environment_name_the_variable() -> None:
    from interleaf.runtime.jobs.spec import JobLimits

    env = {
        "INTERLEAF_MAX_N": "50",
        "INTERLEAF_ALLOWED_BACKENDS": "http://a:1, http://b:2",
        "INTERLEAF_FILE_SUITES": "1",
    }
    limits = JobLimits.from_env(env)
    assert (limits.n, limits.allowed_backends, limits.file_suites) == (50, ("http://a:1", "http://b:2"), True)
    assert JobLimits.from_env({}) == JobLimits()
    with pytest.raises(ValueError, match="INTERLEAF_MAX_ACTORS='lots'"):
        JobLimits.from_env({"INTERLEAF_MAX_ACTORS": "lots"})
