"""Decoder blocks are found without a per-architecture table."""

import pytest
import torch
from torch import nn
from transformers import (AutoModelForCausalLM, GemmaConfig, GPT2Config, LlamaConfig, MistralConfig,
                          PhiConfig, Qwen2Config)

from lisa_bench.errors import BadInput
from lisa_bench.layers import find_blocks, layer_units

SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2)
CONFIGS = {
    "llama": (LlamaConfig(**SMALL), "model.layers"),
    "mistral": (MistralConfig(**SMALL), "model.layers"),
    "qwen2": (Qwen2Config(**SMALL), "model.layers"),
    "gemma": (GemmaConfig(**SMALL, head_dim=8), "model.layers"),
    "phi": (PhiConfig(**SMALL), "model.layers"),
    "gpt2": (GPT2Config(vocab_size=128, n_embd=32, n_layer=3, n_head=4), "transformer.h"),
}


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_blocks_found(arch):
    config, path = CONFIGS[arch]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    layout = find_blocks(model)
    assert layout.blocks_path == path and layout.num_blocks == 3
    inside = sum(p.numel() for p in layout.block_params(model, range(3)))
    outside = sum(p.numel() for p in layout.outside_params(model))
    assert inside + outside == sum(p.numel() for p in model.parameters())
    assert any(p is model.get_input_embeddings().weight for p in layout.outside_params(model))
    units = layer_units(model, layout)
    assert list(units)[0] == "embedding" and "layer.2" in units


def test_layers_attribute_override_and_errors():
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SMALL))
    assert find_blocks(model, "model.layers").num_blocks == 3
    with pytest.raises(BadInput, match="layers_attribute 'model.blocks'"):
        find_blocks(model, "model.blocks")


def test_model_without_blocks_names_layers_attribute():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    with pytest.raises(BadInput, match="layers_attribute"):
        find_blocks(model)
