"""The analytic memory model: exact parameter-dependent parts, activations by formula and by trace, and
the optimizer state that each method says it holds, followed through the method's own switches."""

import pytest

from lisa_bench.memory import model as memory_model
from lisa_bench.memory.model import predict
from lisa_bench.models import load_model, model_config
from tests.memory import committed_cells


def test_llama2_7b_prediction_by_hand():
    """Hand-computed counts for LLaMA-2-7B in bf16 (2 bytes per element)."""
    cfg = model_config("llama-2-7b")
    emb = head = 32000 * 4096
    block = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    outside = emb + head + 4096
    assert outside + 32 * block == 6_738_415_616
    full = predict(cfg, "full", {}, 1, 1024, "bf16", steps=1)
    assert full.weights_bytes == 2 * 6_738_415_616 == full.grads_bytes
    assert full.optimizer_bytes == 4 * 6_738_415_616 + 4 * (3 + 32 * 9)
    lisa = predict(cfg, "lisa", {"gamma": 2, "interval": 1}, 1, 1024, "bf16", steps=1)
    assert lisa.optimizer_bytes == 4 * (outside + 2 * block) + 4 * (3 + 2 * 9)
    lora = predict(cfg, "lora", {"rank": 128}, 1, 1024, "bf16", steps=1)
    adapter = 32 * 128 * (4 * (4096 + 4096) + 2 * (4096 + 11008) + (11008 + 4096))
    assert lora.grads_bytes == 4 * adapter  # peft keeps adapters in fp32 on a bf16 base
    assert lisa.optimizer_bytes < full.optimizer_bytes


def test_lisa_state_at_forward_follows_the_switch():
    """With a switch every step, LISA's block moments are dropped before forward and created at the
    step: during forward only the embedding/head state is alive. The callback keeps what it visited."""
    cfg = model_config("tiny-random-llama")
    every = {"interval": 1}
    e_h = predict(cfg, "lisa", {"gamma": 0, **every}, 1, 64, "fp32", steps=4)
    lisa = predict(cfg, "lisa", {"gamma": 2, **every}, 1, 64, "fp32", steps=4)
    callback = predict(cfg, "lisa-callback", {"gamma": 2, **every}, 1, 64, "fp32", steps=4)
    assert lisa.optimizer_forward_bytes == e_h.optimizer_bytes < lisa.optimizer_bytes
    assert lisa.optimizer_bytes < callback.optimizer_forward_bytes <= callback.optimizer_bytes
    # one warm-up step, one measured: at its forward the callback holds the warm-up's 2 blocks
    one = predict(cfg, "lisa-callback", {"gamma": 2, **every}, 1, 64, "fp32", steps=2)
    assert one.optimizer_forward_bytes == lisa.optimizer_bytes
    full = predict(cfg, "full", {}, 1, 64, "fp32", steps=4)
    assert full.optimizer_forward_bytes == full.optimizer_bytes  # created at the warm-up step, then kept
    # between switches (interval 20) LISA's state stays alive through forward
    steady = predict(cfg, "lisa", {"gamma": 2, "interval": 20}, 1, 64, "fp32", steps=4)
    assert steady.optimizer_forward_bytes == steady.optimizer_bytes == lisa.optimizer_bytes


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method, options", [
    ("full", {}), ("lora", {"rank": 8, "dropout": 0.0}), ("lora", {"rank": 8, "dropout": 0.1}),
    ("lisa", {"gamma": 2, "interval": 1}), ("lisa-callback", {"gamma": 2, "interval": 1})])
def test_llama_formula_equals_the_meta_device_trace(method, options, precision, monkeypatch):
    """Two independent activation models agree on Llama: the closed-form count and the traced
    forward pass on the meta device (the formula rounds a few per-token terms)."""
    cfg = model_config("tiny-random-llama")
    formula = predict(cfg, method, options, 2, 96, precision, steps=3)
    monkeypatch.setattr(memory_model, "LLAMA_STYLE", ())
    traced = predict(cfg, method, options, 2, 96, precision, steps=3)
    assert traced.activations_bytes == pytest.approx(formula.activations_bytes, rel=0.025)


def test_dropout_masks_are_one_byte_on_cuda():
    """CUDA's fused dropout keeps a bool mask; elsewhere the mask is in the adapter's dtype."""
    cfg = model_config("tiny-random-llama")
    opts = {"rank": 8, "dropout": 0.1}
    cpu = predict(cfg, "lora", opts, 1, 64, "fp32", 2, device_type="cpu").activations_bytes
    cuda = predict(cfg, "lora", opts, 1, 64, "fp32", 2, device_type="cuda").activations_bytes
    inputs_per_block = 5 * 64 + 64 + 128  # q, k, v, gate, up read the hidden size; o its heads; down its MLP
    first_block_attention = 3 * 64  # nothing before block 0 trains under LoRA: no masks for its q, k, v
    assert cpu - cuda == (8 * inputs_per_block - first_block_attention) * 64 * 3


def test_committed_measurements_against_the_current_model():
    """Every cell measured and committed under results/ that records its method: the current model's
    prediction is within the flag tolerance (GPU cells within 2%, CPU cells within 1%)."""
    from lisa_bench.memory.cells import predicted_columns

    checked = 0
    for csv, row, cell, shape in committed_cells():
        pred = predicted_columns(row["model"], cell, shape)
        ratio = row["peak_bytes"] / pred["predicted_peak_bytes"]
        assert abs(ratio - 1) < (0.02 if row["device"] == "cuda" else 0.01), (csv, row["experiment"], ratio)
        assert pred["predicted_optimizer_bytes"] == pytest.approx(row["optimizer_bytes"], rel=1e-3)
        checked += 1
    assert checked >= 25


def test_method_owns_its_state_formula():
    """The model asks the method for its state: a method holding one moment per parameter predicts half
    of AdamW's moments."""
    from lisa_bench.methods import METHODS
    from lisa_bench.methods.full import FullFineTuning

    class OneMoment(FullFineTuning):
        def optimizer_state_bytes(self, params):
            return sum(p.numel() * p.element_size() for p in params)

    METHODS["test-one-moment"] = OneMoment
    try:
        cfg = model_config("tiny-random-llama")
        one = predict(cfg, "test-one-moment", {}, 1, 32, "fp32", steps=2)
        adam = predict(cfg, "full", {}, 1, 32, "fp32", steps=2)
        n_tensors = len(list(load_model("tiny-random-llama").model.parameters()))
        assert 2 * one.optimizer_bytes + 4 * n_tensors == adam.optimizer_bytes
    finally:
        del METHODS["test-one-moment"]
