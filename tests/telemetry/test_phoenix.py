"""Opt-in: spans exported over OTLP/HTTP to a real Arize Phoenix server and read back via its REST API.

Needs ``INTERLEAF_PHOENIX=1`` and Phoenix installed in its own venv (default ``/work/phoenix-venv``,
override with ``INTERLEAF_PHOENIX_VENV``): ``python -m venv V && V/bin/pip install arize-phoenix``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from interleaf.runtime.child_process import free_port
from interleaf.telemetry import EpisodeTracer, configure_tracing
from tests.telemetry.telemetry_fixtures import run_episode
from tests.waiting import wait_until

VENV = Path(os.environ.get("INTERLEAF_PHOENIX_VENV", "/work/phoenix-venv"))
PHOENIX = VENV / "bin" / "phoenix"

pytestmark = [
    pytest.mark.phoenix,
    pytest.mark.skipif(
        os.environ.get("INTERLEAF_PHOENIX") != "1" or not PHOENIX.exists(),
        reason="opt-in: set INTERLEAF_PHOENIX=1 and install arize-phoenix in INTERLEAF_PHOENIX_VENV",
    ),
]


@pytest.fixture
def phoenix(tmp_path):
    port, grpc = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_WORKING_DIR": str(tmp_path),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    log = (tmp_path / "phoenix.log").open("wb")
    proc = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def projects() -> int:
        if proc.poll() is not None:
            pytest.fail(f"phoenix exited with {proc.returncode}: {(tmp_path / 'phoenix.log').read_text()[-2000:]}")
        return httpx.get(f"{url}/v1/projects", timeout=1).status_code

    try:
        wait_until(
            projects,
            until=lambda code: code == 200,
            message=f"phoenix to answer {url}/v1/projects",
            timeout_s=120,
            interval_s=0.5,
            ignore=(httpx.HTTPError,),
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_phoenix_receives_genai_spans(phoenix, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")  # Phoenix takes traces only
    monkeypatch.setenv("OTEL_SERVICE_NAME", "interleaf-phoenix-test")
    setup = configure_tracing(set_global=False)
    agent = run_episode(EpisodeTracer(setup.tracer_provider, setup.meter_provider, capture_content=False))
    setup.shutdown()

    def received() -> dict[str, dict]:
        data = httpx.get(f"{phoenix}/v1/projects/default/spans", params={"limit": 50}).json()["data"]
        return {s["name"]: s for s in data}

    spans = wait_until(  # ingestion is asynchronous; poll, do not time
        received,
        until=lambda by_name: len(by_name) == 3,
        message="phoenix to have ingested the episode's 3 spans (spans by name)",
        timeout_s=30,
        interval_s=0.5,
    )
    assert set(spans) == {"invoke_agent arith-agent", "text_completion SmolLM2-135M-Instruct", "execute_tool python"}
    a, llm, tool = (
        spans[n] for n in ("invoke_agent arith-agent", "text_completion SmolLM2-135M-Instruct", "execute_tool python")
    )
    assert llm["context"]["trace_id"] == agent.trace_id
    assert llm["parent_id"] == a["context"]["span_id"] == tool["parent_id"]
    assert a["attributes"]["gen_ai.agent.name"] == "arith-agent"
    assert a["attributes"]["gen_ai.conversation.id"] == "traj-1"
    assert a["attributes"]["interleaf.retention.policy"] == "session"
    la = llm["attributes"]
    assert la["gen_ai.provider.name"] == "sglang"
    assert la["gen_ai.operation.name"] == "text_completion"
    assert la["gen_ai.usage.input_tokens"] == 30 and la["gen_ai.usage.output_tokens"] == 7
    assert la["gen_ai.response.finish_reasons"] == ["stop"]
    assert la["interleaf.pte"] == 31.5
    # Phoenix maps the GenAI conventions onto its own schema: proof it understood them.
    assert llm["span_kind"] == "LLM" and tool["span_kind"] == "TOOL"
    assert la["llm.token_count.prompt"] == 30
    assert tool["attributes"]["gen_ai.tool.call.id"] == "call_0_0"
