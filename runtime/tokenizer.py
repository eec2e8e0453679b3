"""Tokenizers by a server's ``model_path`` (``/model_info``): a local Hugging Face directory, or
``sim://<model>`` — the sim executor's byte-level vocabulary, which has no model files. The engine and
the client both use this module, so neither imports the other."""

from __future__ import annotations

from typing import Any

SIM_SCHEME = "sim://"
"""``model_path`` prefix the sim executor reports: its tokenizer is ``ByteTokenizer``."""


class ByteTokenizer:
    """Ids 0..255 are bytes; 256 is end-of-sequence. Enough for the HTTP text path of the simulator."""

    eos_token_id = 256
    vocab_size = 257
    chat_template: str | None = None
    """No Jinja template: ``apply_chat_template`` below is fixed (tags around each message)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        data = bytes(i for i in ids if i < 256)
        return data.decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, tokenize: bool = False,
                            **_: Any) -> Any:  # fmt: skip
        text = "".join(f"<{m['role']}>{m.get('content') or ''}</{m['role']}>" for m in messages)
        text += "<assistant>" if add_generation_prompt else ""
        return self.encode(text) if tokenize else text


def load_tokenizer(model_path: str) -> Any:
    """The tokenizer for a server's ``model_path``; raises ``OSError``/``ValueError`` when a Hugging
    Face directory cannot be loaded."""
    if model_path.startswith(SIM_SCHEME):
        return ByteTokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


__all__ = ["SIM_SCHEME", "ByteTokenizer", "load_tokenizer"]
