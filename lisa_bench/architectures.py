"""Model architectures by name, as transformers configs (random weights suffice for memory and speed).

The paper's memory table covers GPT2-Small, TinyLlama-1.1B, Mistral-7B, LLaMA-2-7B and
LLaMA-2-70B; their published configs are written out here so that no download is needed.
"""

from __future__ import annotations

from typing import Callable

from transformers import GPT2Config, LlamaConfig, MistralConfig, PretrainedConfig

from .errors import BadInput


def _llama(layers, hidden, inter, heads, kv, vocab=32000, tied=False, max_pos=4096) -> LlamaConfig:
    return LlamaConfig(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=inter,
                       num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                       tie_word_embeddings=tied, max_position_embeddings=max_pos)


ARCHITECTURES: dict[str, Callable[[], PretrainedConfig]] = {
    "gpt2-small": lambda: GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
    "tinyllama-1.1b": lambda: _llama(22, 2048, 5632, 32, 4, max_pos=2048),
    "mistral-7b": lambda: MistralConfig(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336,
                                        num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                                        tie_word_embeddings=False, max_position_embeddings=32768),
    "llama-2-7b": lambda: _llama(32, 4096, 11008, 32, 32),
    "llama-2-70b": lambda: _llama(80, 8192, 28672, 64, 8),
    "smollm2-135m": lambda: _llama(30, 576, 1536, 9, 3, vocab=49152, tied=True, max_pos=8192),
    "tiny-random-llama": lambda: _tiny_config(),
}


def _tiny_config() -> PretrainedConfig:
    from .models.tiny import tiny_llama

    return tiny_llama()[0].config


def architecture_config(name: str) -> PretrainedConfig:
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]()
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        raise BadInput(f"unknown model {name!r}; valid choices: {', '.join(ARCHITECTURES)}, a local model "
                       f"directory or a Hugging Face hub id") from None
