"""One registry of model names: architectures from their published configs, loaders where weights exist."""

import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from lisa_bench.errors import BadInput
from lisa_bench.models import MODELS, load_model, model_config, resolve_dtype


@pytest.mark.parametrize("name, params", [
    ("gpt2-small", 124_439_808), ("tinyllama-1.1b", 1_100_048_384), ("mistral-7b", 7_241_732_096),
    ("llama-2-7b", 6_738_415_616), ("llama-2-70b", 68_976_648_192), ("smollm2-135m", 134_515_008),
])
def test_paper_architectures_have_their_published_sizes(name, params):
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config(name))
    assert sum(p.numel() for p in model.parameters()) == params


def test_every_name_has_a_config_and_loadable_ones_load():
    assert {"tiny-random-llama", "smollm2-135m", "llama-2-7b"} <= set(MODELS)
    for name in MODELS:
        assert model_config(name).num_hidden_layers > 0, name
    loaded = load_model("tiny-random-llama", seed=1)
    assert loaded.model.config.num_hidden_layers == model_config("tiny-random-llama").num_hidden_layers == 8


@pytest.mark.parametrize("call, needle", [
    (lambda: load_model("llama-2-7b"), "architecture only"),
    (lambda: model_config("no-such-model"), "unknown model 'no-such-model'; valid choices: tiny-random-llama"),
    (lambda: resolve_dtype("int3"), "unknown dtype 'int3'; valid choices: fp32, bf16, fp16"),
])
def test_bad_names(call, needle):
    with pytest.raises(BadInput, match=needle.replace("(", r"\(")):
        call()


def _no_hub(monkeypatch):
    """Any call of transformers' from_pretrained fails the test: the name must be refused before the hub."""
    import transformers

    def asked(name, *a, **k):
        raise AssertionError(f"the hub was asked for {name!r}")

    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(cls, "from_pretrained", asked)


@pytest.mark.parametrize("call", [lambda: load_model("smolm2-135m"), lambda: model_config("smolm2-135m"),
                                  lambda: load_model("smolm2-135m", weights=False)])
def test_a_mistyped_name_is_refused_without_asking_the_hub(call, monkeypatch):
    """A name without '/' that is neither registered, nor a local directory, nor in the hub cache cannot be a hub
    id: refused at once, with the choices and the closest registered name (the hub's retries took ~50 s)."""
    _no_hub(monkeypatch)
    with pytest.raises(BadInput, match=r"unknown model 'smolm2-135m'; valid choices: .*did you mean 'smollm2-135m'"):
        call()


def test_a_cached_hub_id_without_org_still_loads(tmp_path, monkeypatch):
    """Legacy hub ids without an org (``distilgpt2``) are taken when the local hub cache holds them."""
    import huggingface_hub.constants

    from tests.pipeline_support import hub_cache

    hub_cache(tmp_path, "legacy-tiny")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert model_config("legacy-tiny").num_hidden_layers == 8


def test_random_weights_of_a_registered_architecture_train_with_the_byte_tokenizer():
    """random:<architecture> builds the architecture's config with seeded random weights (here the tiny one,
    so that the test stays small; random:tinyllama-1.1b is the same path at paper scale)."""
    a, b = load_model("random:tiny-random-llama", seed=3), load_model("random:tiny-random-llama", seed=3)
    assert a.model.config.num_hidden_layers == model_config("random:tiny-random-llama").num_hidden_layers == 8
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert not torch.equal(next(a.model.parameters()), next(load_model("random:tiny-random-llama", seed=4).model.parameters()))
    assert "random weights" in a.source and len(a.tokenizer) <= a.model.config.vocab_size
    assert model_config("random:meta-llama/Llama-2-7b-hf").hidden_size == 4096  # hub ids of registered architectures
    with pytest.raises(BadInput, match="unknown model 'random:nope'; valid choices: random:tiny-random-llama"):
        load_model("random:nope")


def test_weights_off_a_64_byte_boundary_are_copied_into_aligned_memory():
    """from_pretrained leaves CPU weights at their offsets in the mapped safetensors file; the loader copies
    them so that they start on a 64-byte boundary, values and weight tying kept."""
    from lisa_bench.models.registry import ALIGNMENT, own_aligned_memory

    model = load_model("tiny-random-llama-tied").model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():  # put each weight 40 bytes past a boundary, as SmolLM2's file does
        buf = torch.empty(p.numel() + 16, dtype=p.dtype)
        p.data = buf[10:10 + p.numel()].view_as(p).copy_(p.data)
    assert all(p.data_ptr() % ALIGNMENT == 40 for p in model.parameters())
    assert own_aligned_memory(model) == len(list(model.parameters()))
    assert all(p.data_ptr() % ALIGNMENT == 0 for p in model.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert own_aligned_memory(model) == 0  # nothing left to move


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_PAGEOUT) is Linux's")
def test_page_out_hands_back_a_mapped_files_pages_and_keeps_their_data(tmp_path):
    """own_aligned_memory hands back the file pages each copied weight leaves behind, so loading does not
    hold the whole file resident next to the copies (SmolLM2: a 1409 MiB peak against 900)."""
    import ctypes
    import mmap
    import os

    import psutil

    from lisa_bench.models.registry import _page_out

    mounts = sorted((m for m in psutil.disk_partitions(all=True) if str(tmp_path).startswith(m.mountpoint)),
                    key=lambda m: len(m.mountpoint))
    if mounts and mounts[-1].fstype == "tmpfs":
        pytest.skip("tmp_path is on tmpfs, whose pages the kernel reclaims only into swap")
    path = tmp_path / "weights.bin"
    data = bytes(range(256)) * (64 * mmap.PAGESIZE // 256)
    with open(path, "wb") as f:  # written back to disk: the kernel reclaims clean pages, not dirty ones
        f.write(data)
        f.flush()
        os.fsync(f.fileno())

    def resident() -> int:
        return sum(m.rss for m in psutil.Process().memory_maps(grouped=False) if m.path == str(path))

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        assert mapped[:] == data  # every page read, so resident
        before = resident()
        assert before >= len(data) // 2
        view = ctypes.c_char.from_buffer(mapped)
        address = ctypes.addressof(view)
        del view  # the mapping can close after the test
        _page_out(address + 100, len(data) - 100)  # all but the first, partly covered page
        after = resident()
        assert after <= mmap.PAGESIZE and mapped[:] == data  # handed back, and read again from the file intact


def test_only_models_with_weights_from_outside_are_fetched(tmp_path):
    """The pipeline's fetch job runs for a hub id (also one of a registered architecture) and the embedded SmolLM2;
    a local directory, a model built in code and random weights have nothing to fetch."""
    from lisa_bench.models.registry import fetches

    assert fetches("org/name") and fetches("meta-llama/Llama-2-7b-hf") and fetches("smollm2-135m")
    assert not any(fetches(n) for n in (str(tmp_path), "tiny-random-llama", "random:llama-2-7b"))
