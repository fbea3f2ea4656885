"""Every registered method trains through the one shared path with its own quick-test settings and
lowers the loss; methods own what the rest of the suite asks of them."""

import json

import pytest
import torch

from lisa_bench.memory.accounting import optimizer_state_bytes
from lisa_bench.methods import METHODS, OptimConfig, build_method, family, get_method, load_all
from lisa_bench.models import load_model
from lisa_bench.training import train

load_all()
TRAINING = sorted(name for name, cls in METHODS.items() if cls.trains)


def test_registry_has_the_required_methods():
    get_method("full")
    assert {"base", "full", "lora", "lisa", "lisa-callback", "galore"} <= set(METHODS)


@pytest.mark.parametrize("method", TRAINING)
def test_method_lowers_training_loss(method, tiny_cfg, tmp_path):
    cfg = tiny_cfg(method, max_steps=25, **METHODS[method].quick_test)
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


@pytest.mark.parametrize("method", TRAINING)
def test_state_formula_equals_the_optimizer_state(method):
    """Each method's own analytic state (``optimizer_state_bytes``) equals the bytes its optimizer holds
    after real steps, on the parameters that hold state."""
    loaded = load_model("tiny-random-llama")
    cls = METHODS[method]
    m = build_method(method, cls.quick_test.get("method_options"))
    model = m.prepare_model(loaded.model)
    opt = m.build_optimizer(model, OptimConfig(lr=1e-3))
    ids = torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    for step in range(3):
        m.on_step_start(step, model, opt)
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        held = [p for p in model.parameters() if p in opt.state]
        assert optimizer_state_bytes(opt) == m.optimizer_state_bytes(held), step


def test_full_state_is_two_moments_of_every_parameter(tiny_cfg, tmp_path):
    metrics = train(tiny_cfg("full", max_steps=2), tmp_path / "full", progress=False)
    model = load_model("tiny-random-llama").model
    params = list(model.parameters())
    assert metrics["optimizer_state_bytes_peak"] == sum(8 * p.numel() + 4 for p in params)
    assert metrics["trainable_params_peak"] == metrics["total_params"] == sum(p.numel() for p in params)


def test_base_method_trains_nothing(tiny_cfg, tmp_path):
    metrics = train(tiny_cfg("base"), tmp_path / "base", progress=False)
    assert metrics["steps"] == 0 and metrics["optimizer_state_bytes_peak"] == 0
    assert (tmp_path / "base" / "train_log.jsonl").read_text() == ""
    assert json.loads((tmp_path / "base" / "weight_norms.jsonl").read_text().splitlines()[0])["step"] == 0
    assert not (tmp_path / "base" / "model").exists()


def test_family_names_the_options_that_set_a_frontier_apart():
    """Sizes stay one family (LoRA's ranks, LISA's gamma, K); options a method declares as families do not, with
    only their non-default values named; an unknown method or bad options fall back to the method's name."""
    assert family("lora", {"rank": 16, "alpha": 32}) == family("lora", {"rank": 128}) == "lora"
    assert family("lora", {"rank": 16, "also_train": ["embedding", "head", "norms"]}) == \
        "lora (also_train=embedding+head+norms)"
    assert family("lisa", {"gamma": 0, "interval": 10}) == family("lisa", {"gamma": 8}) == "lisa"
    assert family("lisa", {"gamma": 2, "always_on": "embedding"}) == "lisa (always_on=embedding)"
    assert family("lisa-callback", {"gamma": 2}) == "lisa-callback"
    assert family("apollo", {"rank": 1, "scale_type": "tensor"}) == "apollo (scale_type=tensor)"
    assert family("no-such-method", {}) == "no-such-method"
    assert family("lora", {"no_such_option": 1}) == "lora"
    for name, cls in METHODS.items():  # every declared family option is an option of the method
        fields = {f.name for f in __import__("dataclasses").fields(cls.Options)}
        assert set(cls.family_options) <= fields, name
