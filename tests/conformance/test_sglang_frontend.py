"""SGLang's own frontend (``sgl.RuntimeEndpoint``: gen, batch, stream, select, fork, regex) against the
embedded engine. SGLang's wheel cannot live in the project's environment (it pins other transformers and
xgrammar versions), so the frontend runs in its own venv, as .ci/run builds it (INTERLEAF_SGLANG_VENV):
``python -m venv --system-site-packages``, ``pip install --no-deps sglang==0.5.23 triton`` and
``pip install msgspec pybase64 pyzmq``. Opt-in with INTERLEAF_SGLANG_FRONTEND=1."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(os.environ.get("INTERLEAF_SGLANG_FRONTEND") != "1",
                       reason="opt-in: INTERLEAF_SGLANG_FRONTEND=1 and INTERLEAF_SGLANG_VENV (.ci/run sets both)"),
]  # fmt: skip

PROGRAM = Path(__file__).with_name("sglang_frontend_program.py")


@pytest.fixture(scope="module")
def frontend(engine_url: str) -> dict:
    venv = Path(os.environ.get("INTERLEAF_SGLANG_VENV", ".ci-sglang-venv"))
    python = venv / "bin" / "python"
    assert python.exists(), f"INTERLEAF_SGLANG_VENV={venv} has no bin/python; .ci/run builds it"
    done = subprocess.run([str(python), str(PROGRAM), engine_url], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gen_batch_and_stream(frontend: dict) -> None:
    assert frontend["answer"] and frontend["answer_meta"]["prompt_tokens"] > 0
    assert len(frontend["batch"]) == 2 and all(frontend["batch"])
    assert "".join(frontend["stream_chunks"]) == frontend["answer"]  # greedy: the same text, streamed


def test_select_reads_prompt_logprobs(frontend: dict) -> None:
    meta = frontend["choice_meta"]
    scores = meta["normalized_prompt_logprobs"]
    assert len(scores) == 3 and all(math.isfinite(x) and x < 0 for x in scores)
    assert frontend["choice"] == ["yes", "no", "purple"][scores.index(max(scores))]
    for choice, logprobs in zip(["yes", "no", "purple"], meta["input_token_logprobs"], strict=True):
        assert logprobs[0][0] is None  # SGLang's shape: the first prompt position has no logprob
        assert "".join(text for _, _, text in logprobs).endswith(choice)


def test_fork_and_regex(frontend: dict) -> None:
    assert re.search(r"Colours: .+ / .+", frontend["fork_text"])
    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", frontend["phone"])
