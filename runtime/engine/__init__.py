"""interleaf.runtime.engine: an SGLang-compatible inference engine for CPU (and a simulated GPU).

Parts: executors behind one protocol and a registry (executor.py: ``model`` = llama.py over a paged
KV pool, kv_pool.py, with long-context decode attention in attention.py; ``sim`` = sim.py), KV
accounting (cache_manager.py) over the radix prefix cache (radix_cache.py) and streaming sessions
(session.py), the continuous-batching scheduler (scheduler.py, stop_conditions.py), sampling and
xgrammar-constrained decoding (sampler.py, grammar.py), the engine facade (engine.py), the HTTP
server (server.py) with SGLang's protocol and Prometheus metrics (metrics.py), model store
(model_store.py).

Importing this package does not import torch: the executors load when an engine is built.
"""

from interleaf.runtime.engine.config import EngineConfig
from interleaf.runtime.engine.executor import (
    Executor,
    ExecutorFactory,
    ForwardBatch,
    ForwardOutput,
    UnknownExecutor,
    executor_names,
    register_executor,
)
from interleaf.runtime.engine.model_store import DEFAULT_MODEL, ModelNotFound, load_tokenizer, resolve_model

__all__ = [
    "DEFAULT_MODEL",
    "EngineConfig",
    "Executor",
    "ExecutorFactory",
    "ForwardBatch",
    "ForwardOutput",
    "ModelNotFound",
    "UnknownExecutor",
    "executor_names",
    "load_tokenizer",
    "register_executor",
    "resolve_model",
]
