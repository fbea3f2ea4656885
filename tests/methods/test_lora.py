"""LoRA through peft: only the adapter changes, it reloads, and its norms are the adapter's."""

import torch

from lisa_bench.layers import find_blocks, layer_units
from lisa_bench.methods import build_method
from lisa_bench.models import load_model
from lisa_bench.training import train


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


def test_norm_parameters_are_the_adapters():
    method = build_method("lora", {"rank": 4})
    model = method.prepare_model(load_model("tiny-random-llama").model)
    units = layer_units(model, method.find_blocks(model))
    block = method.norm_parameters(units["layer.0"])
    assert block and all("lora_" in n for n, _ in block)
    assert method.norm_parameters(units["embedding"]) == []  # frozen: nothing the method trains there
    assert method.is_adapter("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")
    full = build_method("full", {})
    plain = load_model("tiny-random-llama").model
    assert full.norm_parameters(layer_units(plain, find_blocks(plain))["layer.0"])  # its own weights
