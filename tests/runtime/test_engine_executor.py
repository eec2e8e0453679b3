"""The engine's executors: the registry by name, the limits each declares, and how the engine enforces them.

No real model here: a tiny random Llama (built in a temporary directory) stands in for the ``model``
executor, and the ``sim`` executor runs in process behind the FastAPI app.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from interleaf.runtime.engine import EngineConfig, Executor, UnknownExecutor, executor_names, register_executor
from interleaf.runtime.engine.executor import create_executor, executor_factory


def assert_implements_executor(executor: object) -> None:
    """Every member the ``Executor`` protocol declares is there (no type checker runs on this project)."""
    members = [*Executor.__annotations__, "simulated_seconds", "forward"]
    assert [m for m in members if not hasattr(executor, m)] == [], type(executor).__name__


def test_unknown_executor_is_rejected_naming_the_choices() -> None:
    with pytest.raises(ValidationError) as info:
        EngineConfig(executor="gpu")
    assert "executor='gpu' is not a registered executor; choose one of ['model', 'sim']" in str(info.value)
    with pytest.raises(UnknownExecutor, match=r"executor='gpu'.*\['model', 'sim'\].*@register_executor"):
        executor_factory("gpu")


def test_a_registered_name_cannot_be_taken_by_another_factory() -> None:
    sim = executor_factory("sim")
    taken = r"'sim' is already registered by interleaf\.runtime\.engine\.sim\.sim_executor"
    with pytest.raises(ValueError, match=taken):
        register_executor("sim")(lambda config: sim(config))
    assert executor_factory("sim") is sim


def test_listing_executors_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys; import interleaf.runtime.engine as e; from interleaf.runtime.engine.__main__ import build_parser;"
        "build_parser(); print(e.executor_names(), 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['model', 'sim'] False False"
    assert executor_names() == ["model", "sim"]


def _tiny_llama(path: Path, max_position_embeddings: int) -> Path:
    """A 2-layer random Llama with a 32-word tokenizer: enough for the ``model`` executor to load."""
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, **{f"w{i}": i for i in range(2, 32)}}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), unk_token="<unk>", eos_token="</s>"
    )
    cfg = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=max_position_embeddings, eos_token_id=1,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_model_context_length_comes_from_its_config(tmp_path: Path) -> None:
    from interleaf.runtime.engine.scheduler import Scheduler

    model_dir = _tiny_llama(tmp_path / "tiny", max_position_embeddings=1234)
    executor = create_executor(EngineConfig(model_path=str(model_dir), max_total_tokens=4096))
    assert_implements_executor(executor)
    assert (executor.context_length, executor.kv_capacity, executor.vocab_size) == (1234, 4096, 32)
    assert executor.model_name == "tiny" and executor.eos_token_ids == [1] and executor.simulated_seconds is None
    assert Scheduler(executor).max_seq_len == 1234
    small_pool = create_executor(EngineConfig(model_path=str(model_dir), max_total_tokens=256))
    assert Scheduler(small_pool).max_seq_len == 256  # a sequence longer than the pool could never be resident

    config = json.loads((model_dir / "config.json").read_text())
    del config["max_position_embeddings"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json: max_position_embeddings=None"):
        create_executor(EngineConfig(model_path=str(model_dir), max_total_tokens=256))


@pytest.fixture
def sim_client() -> Iterator[TestClient]:
    """The sim executor (virtual clock, a 2,048-token KV pool) behind the HTTP app, in this process."""
    from interleaf.runtime.engine.engine import Engine
    from interleaf.runtime.engine.server import create_app

    engine = Engine(EngineConfig(executor="sim", sim_clock="virtual", max_total_tokens=2048))
    loop = threading.Thread(target=engine.scheduler.run_forever, daemon=True)
    loop.start()
    try:
        with TestClient(create_app(engine)) as client:
            yield client
    finally:
        engine.scheduler.stop()
        loop.join(10)


def test_sim_engine_reports_and_enforces_its_limits(sim_client: TestClient) -> None:
    from interleaf.runtime.engine.sim import SIM_CONTEXT_LENGTH

    assert_implements_executor(create_executor(EngineConfig(executor="sim")))
    info = sim_client.get("/server_info").json()
    assert info["context_length"] == SIM_CONTEXT_LENGTH == sim_client.get("/model_info").json()["context_length"]
    assert info["max_total_tokens"] == info["internal_states"][0]["max_total_num_tokens"] == 2048
    assert info["max_req_input_len"] == 2047  # the pool, not the 131072-token context, is the binding limit
    assert info["internal_states"][0]["simulated_seconds"] == 0.0

    short = {"text": "hello", "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}}
    out = sim_client.post("/generate", json=short).json()
    assert out["meta_info"]["completion_tokens"] == 4 and out["meta_info"]["simulated"] is True
    assert sim_client.get("/get_server_info").json()["internal_states"][0]["simulated_seconds"] > 0

    # Generation stops where the sequence fills the pool ("length"), instead of running out of KV.
    body = {"input_ids": [97] * 2000, "sampling_params": {"max_new_tokens": 100, "ignore_eos": True}}
    meta = sim_client.post("/generate", json=body).json()["meta_info"]
    assert meta["finish_reason"] == {"type": "length", "length": 48}, meta

    too_long = sim_client.post("/generate", json={"input_ids": [97] * 2048})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["param"] == "input_ids"
    assert "max_total_num_tokens=2048" in too_long.json()["error"]["message"]

    hidden = sim_client.post("/generate", json={"text": "hi", "return_hidden_states": True})
    assert hidden.status_code == 400 and hidden.json()["error"]["param"] == "return_hidden_states"
    constrained = sim_client.post("/generate", json={"text": "hi", "sampling_params": {"regex": "a+"}})
    assert constrained.status_code == 400 and "sim executor" in constrained.json()["error"]["message"]


def test_a_request_the_sampler_cannot_serve_fails_alone() -> None:
    """A sampling failure (here forced past the up-front checks) aborts its own request; the batch goes on."""
    import asyncio

    from interleaf.runtime.engine.engine import Engine
    from interleaf.runtime.engine.protocol import GenerateIn, SamplingParamsIn

    engine = Engine(EngineConfig(executor="sim", sim_clock="virtual", max_total_tokens=2048))
    loop = threading.Thread(target=engine.scheduler.run_forever, daemon=True)
    loop.start()
    body = GenerateIn(sampling_params=SamplingParamsIn(max_new_tokens=6, ignore_eos=True, temperature=1.0))

    async def both() -> list[dict]:
        good, bad = engine.build_request(body, None, [1, 2, 3]), engine.build_request(body, None, [4, 5, 6])
        bad.params.min_p = 5.0  # no token survives: the sampler's multinomial raises for this row only
        for req in (good, bad):
            await engine.run(req)
        return list(await asyncio.gather(engine.wait(good), engine.wait(bad)))

    try:
        good, bad = asyncio.run(both())
    finally:
        engine.scheduler.stop()
        loop.join(10)
    assert good["meta_info"]["finish_reason"] == {"type": "length", "length": 6}
    assert bad["meta_info"]["finish_reason"]["type"] == "abort"
    assert "sampling failed" in bad["meta_info"]["finish_reason"]["message"]
