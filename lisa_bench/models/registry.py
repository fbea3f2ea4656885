"""Resolve a model name to a (model, tokenizer) pair through one registry.

Registered names are built in code or fetched from a package; any other name is treated as a
local directory or a Hugging Face hub id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import BadInput
from .chat_template import CHATML_TEMPLATE


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    tokenizer: object
    source: str


def _tiny(tied: bool) -> Callable[[int, torch.dtype], LoadedModel]:
    def build(seed: int, dtype: torch.dtype) -> LoadedModel:
        from .tiny import tiny_llama

        model, tok = tiny_llama(seed=seed, tied=tied)
        name = "tiny-random-llama" + ("-tied" if tied else "")
        return LoadedModel(name, model.to(dtype), tok, "built in code (random init from the seed)")

    return build


def _smollm2(seed: int, dtype: torch.dtype) -> LoadedModel:
    from .smollm2 import WHEEL_SPEC, ensure_smollm2

    path = ensure_smollm2()
    loaded = _from_pretrained(str(path), dtype)
    return LoadedModel("smollm2-135m", loaded.model, loaded.tokenizer, f"{WHEEL_SPEC} GGUF, cached at {path}")


MODELS: dict[str, Callable[[int, torch.dtype], LoadedModel]] = {
    "tiny-random-llama": _tiny(tied=False),
    "tiny-random-llama-tied": _tiny(tied=True),
    "smollm2-135m": _smollm2,
}


def model_names() -> list[str]:
    return list(MODELS)


def _valid_model_choices() -> str:
    return ", ".join(MODELS) + ", a local model directory, or a Hugging Face hub id"


def _from_pretrained(name: str, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"unknown model {name!r} (could not load it: {first}); valid choices: "
                       f"{_valid_model_choices()}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    return LoadedModel(name, model, tokenizer, "local directory" if Path(name).is_dir() else "hub")


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise BadInput(f"unknown dtype {name!r}; valid choices: {', '.join(DTYPES)}")
    return DTYPES[name]


def load_model(name: str, seed: int = 0, dtype: str = "fp32") -> LoadedModel:
    torch_dtype = resolve_dtype(dtype)
    if name in MODELS:
        return MODELS[name](seed, torch_dtype)
    return _from_pretrained(name, torch_dtype)
