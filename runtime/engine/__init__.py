"""interleaf.runtime.engine: an SGLang-compatible inference engine for CPU (and a simulated GPU).

Parts: model executor (llama.py) over a paged KV pool (kv_pool.py), radix prefix cache
(radix_cache.py), streaming sessions (session.py), continuous-batching scheduler (scheduler.py),
sampling and xgrammar-constrained decoding (sampler.py, grammar.py), HTTP server (server.py)
with SGLang's protocol and Prometheus metrics (metrics.py), model store (model_store.py).
"""

from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.model_store import DEFAULT_MODEL, ModelNotFound, load_tokenizer, resolve_model

__all__ = ["DEFAULT_MODEL", "EngineConfig", "ModelNotFound", "load_tokenizer", "resolve_model"]
