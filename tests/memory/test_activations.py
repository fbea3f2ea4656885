"""The activation formula against what autograd really saves: a forward pass on the CPU under saved-tensor
hooks, for every method kind, precision and attention implementation."""

import itertools

import pytest
import torch
from transformers import AutoModelForCausalLM

from lisa_bench.memory.accounting import SavedTensorCounter
from lisa_bench.memory.model import predict
from lisa_bench.methods import OptimConfig, build_method
from lisa_bench.models import model_config
from lisa_bench.precision import resolve_precision

CASES = [("full", {}), ("lisa", {"gamma": 2, "interval": 1}), ("lora", {"rank": 8, "dropout": 0.0}),
         ("lora", {"rank": 8, "dropout": 0.1})]


def saved_on_cpu(method, options, precision, attention, batch=2, seq=48):
    prec = resolve_precision(precision)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config("tiny-random-llama"), attn_implementation=attention,
                                             dtype=prec.weights)
    m = build_method(method, options)
    model = m.prepare_model(model).train()
    m.on_step_start(0, model, m.build_optimizer(model, OptimConfig(lr=1e-3)))
    counter = SavedTensorCounter(model.parameters())
    ids = torch.randint(0, 200, (batch, seq))
    with counter.hooks(), prec.autocast("cpu"):
        model(input_ids=ids, labels=ids)
    return counter.bytes


@pytest.mark.parametrize("case, precision, attention",
                         list(itertools.product(CASES, ["fp32", "bf16", "bf16-mixed"], ["eager", "sdpa"])))
def test_formula_counts_what_autograd_saves(case, precision, attention):
    method, options = case
    measured = saved_on_cpu(method, options, precision, attention)
    predicted = predict(model_config("tiny-random-llama"), method, options, 2, 48, precision, 2,
                        attention=attention).activations_bytes
    assert predicted == pytest.approx(measured, rel=0.005)


def test_checkpointing_keeps_block_inputs_and_one_block():
    cfg = model_config("tiny-random-llama")
    plain = predict(cfg, "full", {}, 1, 256, "fp32", 2)
    ckpt = predict(cfg, "full", {}, 1, 256, "fp32", 2, checkpointing=True)
    assert ckpt.activations_bytes < plain.activations_bytes / 3
    assert ckpt.weights_bytes == plain.weights_bytes and ckpt.optimizer_bytes == plain.optimizer_bytes


def test_formula_limits_are_named():
    from lisa_bench.errors import BadInput

    with pytest.raises(BadInput, match="covers bf16-mixed, eager attention for model types llama, mistral"):
        predict(model_config("gpt2-small"), "full", {}, 1, 64, "bf16-mixed", 2)
