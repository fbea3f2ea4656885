"""Every method trains through the one shared path and lowers the loss; LoRA touches only its adapter."""

import json

import pytest
import torch

from lisa_bench.methods import METHODS, get_method
from lisa_bench.models import load_model
from lisa_bench.train import train

LRS = {"full": 2e-3, "lora": 5e-3, "lisa": 2e-3, "lisa-callback": 2e-3, "galore": 2e-3}
OPTIONS = {"lora": {"rank": 8}, "galore": {"rank": 16, "update_proj_gap": 10},
           "lisa": {"gamma": 2, "interval": 5}, "lisa-callback": {"gamma": 2, "interval": 5}}


def test_registry_has_the_required_methods():
    get_method("full")
    assert {"base", "full", "lora", "lisa", "lisa-callback", "galore"} <= set(METHODS)


@pytest.mark.parametrize("method", ["full", "lora", "lisa", "lisa-callback", "galore"])
def test_method_lowers_training_loss(method, tiny_cfg, tmp_path):
    cfg = tiny_cfg(method, max_steps=25, lr=LRS[method], method_options=OPTIONS.get(method, {}))
    metrics = train(cfg, tmp_path / method, progress=False)
    rows = [json.loads(x) for x in (tmp_path / method / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 25
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < first - 0.05, (first, last)
    for key in ("method", "model", "dataset", "steps", "seed", "total_params", "trainable_params_peak",
                "optimizer_state_bytes_peak", "peak_memory_bytes", "memory_kind", "tokens_per_second",
                "train_loss_first", "train_loss_last", "train_seconds", "provenance"):
        assert key in metrics
    assert metrics["memory_kind"] == "cpu_rss" and metrics["peak_memory_bytes"] > 0
    assert metrics["optimizer_state_bytes_peak"] > 0
    prov = metrics["provenance"]
    assert prov["packages"]["torch"] and prov["config"]["method"] == method and prov["device"]["device"] == "cpu"
    norms = [json.loads(x) for x in (tmp_path / method / "weight_norms.jsonl").read_text().splitlines()]
    assert norms[0]["step"] == 0 and norms[-1]["step"] == 25
    assert set(norms[0]["weights"]) >= {"embedding", "layer.0", "layer.7", "head"}
    on_disk = json.loads((tmp_path / method / "metrics.json").read_text())
    assert on_disk["train_loss_last"] == metrics["train_loss_last"]


def test_full_state_is_two_moments_of_every_parameter(tiny_cfg, tmp_path):
    metrics = train(tiny_cfg("full", max_steps=2), tmp_path / "full", progress=False)
    model = load_model("tiny-random-llama").model
    params = list(model.parameters())
    assert metrics["optimizer_state_bytes_peak"] == sum(8 * p.numel() + 4 for p in params)
    assert metrics["trainable_params_peak"] == metrics["total_params"] == sum(p.numel() for p in params)


def test_lora_changes_only_the_adapter_and_reloads(tiny_cfg, tmp_path):
    from peft import PeftModel

    train(tiny_cfg("lora", max_steps=6, lr=5e-3, method_options={"rank": 4, "dropout": 0.0}), tmp_path / "lora",
          progress=False)
    adapter_dir = tmp_path / "lora" / "model"
    assert (adapter_dir / "adapter_config.json").exists()
    assert not (adapter_dir / "model.safetensors").exists()
    base = load_model("tiny-random-llama").model
    reference = {n: p.detach().clone() for n, p in base.named_parameters()}
    peft_model = PeftModel.from_pretrained(base, adapter_dir)
    changed_lora = 0
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            changed_lora += 1
            continue
        base_name = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(p, reference[base_name]), name
    assert changed_lora > 0
    # the adapter is not a no-op: lora_B moved away from its zero init
    assert any(p.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)
    # reloading twice gives the same outputs
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    again = PeftModel.from_pretrained(load_model("tiny-random-llama").model, adapter_dir)
    peft_model.eval(), again.eval()
    with torch.no_grad():
        assert torch.allclose(peft_model(ids).logits, again(ids).logits)
        assert not torch.allclose(peft_model(ids).logits, load_model("tiny-random-llama").model(ids).logits)


def test_full_model_saves_and_reloads(tiny_cfg, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train(tiny_cfg("lisa", max_steps=3), tmp_path / "run", progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert tok.chat_template and model.config.num_hidden_layers == 8


def test_base_method_trains_nothing(tiny_cfg, tmp_path):
    metrics = train(tiny_cfg("base"), tmp_path / "base", progress=False)
    assert metrics["steps"] == 0 and metrics["optimizer_state_bytes_peak"] == 0
    assert (tmp_path / "base" / "train_log.jsonl").read_text() == ""
    assert json.loads((tmp_path / "base" / "weight_norms.jsonl").read_text().splitlines()[0])["step"] == 0
