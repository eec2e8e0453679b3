"""The embedded engine sizes its KV pool from the available memory (SGLang's --mem-fraction-static)."""

from __future__ import annotations

import pytest

from interleaf.runtime.engine.__main__ import config_from_args
from interleaf.runtime.engine.kv_sizing import MIN_KV_TOKENS, bytes_per_token, size_kv_pool

GIB = 2**30


def test_pool_is_the_fraction_of_available_memory_over_bytes_per_token() -> None:
    per_token = bytes_per_token(n_layers=30, n_kv_heads=3, head_dim=64, dtype_bytes=4)
    assert per_token == 46080  # SmolLM2-135M in fp32
    sizing = size_kv_pool(per_token, mem_fraction_static=0.1, available_bytes=22 * GIB)
    assert sizing.tokens == int(22 * GIB * 0.1) // per_token and sizing.bound == "memory"
    assert sizing.tokens > 16384  # more than the old fixed default: the README job is not admission-bound
    assert "--mem-fraction-static 0.1 of 22.0 GiB available" in sizing.describe()


def test_pool_is_held_between_floor_and_what_could_ever_be_used() -> None:
    per_token = 46080
    small = size_kv_pool(per_token, mem_fraction_static=0.01, available_bytes=GIB)
    assert (small.tokens, small.bound) == (MIN_KV_TOKENS, "floor")
    big = size_kv_pool(per_token, mem_fraction_static=0.9, available_bytes=100 * GIB, max_tokens_used=64 * 8192)
    assert (big.tokens, big.bound) == (64 * 8192, "ceiling")
    assert "held at the ceiling" in big.describe()


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_bad_fraction_names_the_flag(fraction: float) -> None:
    with pytest.raises(ValueError, match="--mem-fraction-static"):
        size_kv_pool(46080, mem_fraction_static=fraction, available_bytes=GIB)


def test_cli_flag_reaches_the_config() -> None:
    assert config_from_args(["--mem-fraction-static", "0.25"]).mem_fraction_static == 0.25
    assert config_from_args([]).max_total_tokens is None  # sized from memory unless given
