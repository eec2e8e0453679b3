"""JobSpec validation: suite, agent and retention are checked against their registries at construction,
and the error names the field, the value and the choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from interleaf.agents import AGENTS, SUITES, Agent, register_agent, register_suite
from interleaf.runtime.client import RetentionPolicyName
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


def test_fields_are_documented() -> None:
    # The docstrings are the descriptions: the API schema and `interleaf run --help` show them.
    assert all(field.description for field in JobSpec.model_fields.values())
