"""training/profile.py: the loop's own step under torch.profiler, each named part's share of it, and the weight
norms it led to make cheaper (each parameter's square taken once, still exact)."""

import json

import pytest

from lisa_bench.cli import main
from lisa_bench.training.profile import CORE, PARTS


def test_profile_names_the_parts_of_a_step(tmp_path, capsys):
    out = tmp_path / "p.json"
    # LoRA: the quickest step on the tiny model (its vocabulary makes full fine-tuning's update the slow part)
    assert main(["profile", "--experiments", "lora-r128", "--model", "tiny-random-llama", "--steps", "2", "--warmup",
                 "1", "--set", "batch_size=2", "--set", "max_length=96", "--set", "train_size=32",
                 "--output", str(out)]) == 0
    [row] = json.loads(out.read_text())["rows"]
    assert row["experiment"] == "lora-r128" and row["method"] == "lora"
    shares = row["shares"]
    assert set(shares) == set(PARTS) | {"other"}
    assert all(shares[p] > 0 for p in CORE)  # forward, backward and the optimizer ran inside the profiled steps
    assert shares["lost_updates"] > 0  # the meter's hooks ran inside the optimizer step, and are not its own time
    assert abs(sum(shares.values()) - 1) < 1e-6 and shares["other"] >= 0
    assert row["per_run_shares"]["norms"] > 0 and row["norm_calls_per_run"] == 11  # steps 0, 20, ..., 200
    assert row["outside_core_share"] == pytest.approx(
        sum(v for k, v in {**shares, **row["per_run_shares"]}.items() if k not in CORE))
    # the loop's step holds train_step (the part the throughput figures time) and a little more
    assert row["loop_over_train_step"] >= 1.0 and row["train_step_seconds"] > 0
    assert "| lora-r128 |" in out.with_suffix(".md").read_text() and "| lora-r128 |" in capsys.readouterr().out
    assert main(["profile", "--experiments", "no-such-experiment", "--model", "tiny-random-llama"]) == 2
    assert "no-such-experiment" in capsys.readouterr().err


def test_weight_norms_are_exact_and_share_each_parameters_square(tiny_cfg):
    from lisa_bench.methods import build_method
    from lisa_bench.models import load_model
    from lisa_bench.layers import layer_units
    from lisa_bench.training import norms

    loaded = load_model("tiny-random-llama")
    model = getattr(loaded, "model", loaded)
    method = build_method("full", {})
    layout = method.find_blocks(model)
    calls = []
    original = norms._square
    norms._square = lambda p: calls.append(p) or original(p)
    try:
        out = norms.weight_norms(model, layout, method)
    finally:
        norms._square = original
    assert len(calls) == len({id(p) for p in model.parameters()})  # trained = weights: each square once
    for unit, named in layer_units(model, layout).items():
        ref = float(sum(p.detach().double().pow(2).sum() for _, p in named) ** 0.5)
        assert out["weights"][unit] == pytest.approx(ref, rel=1e-6) and out["trained"][unit] == out["weights"][unit]
