"""The shared loop's pieces: the learning-rate schedule, the per-unit norm log, gradient checkpointing."""

import dataclasses
import json

import pytest
import torch

from lisa_bench.config import TrainConfig
from lisa_bench.layers import find_blocks
from lisa_bench.methods import build_method
from lisa_bench.models import load_model
from lisa_bench.training import train
from lisa_bench.training.norms import weight_norms
from lisa_bench.training.schedule import Schedule


def test_lr_schedule_warmup_then_decay():
    cosine = Schedule.of(TrainConfig(lr=1.0, warmup_steps=4, max_steps=14, scheduler="cosine"), 14)
    assert [cosine.lr_at(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine.lr_at(4) == 1.0 and cosine.lr_at(9) == pytest.approx(0.5) and cosine.lr_at(14) == pytest.approx(0.0)
    assert Schedule.of(TrainConfig(lr=1.0, scheduler="linear"), 10).lr_at(5) == pytest.approx(0.5)
    assert Schedule.of(TrainConfig(lr=3.0, scheduler="constant"), 10).lr_at(7) == 3.0
    ratio = Schedule.of(TrainConfig(lr=1.0, warmup_ratio=0.1), 50)
    assert ratio.warmup == 5 and ratio.lr_at(4) == 1.0 and ratio.lr_at(3) == 0.8


def test_norm_log_has_weights_and_what_the_method_trains():
    model = load_model("tiny-random-llama").model
    full = build_method("full", {})
    rows = weight_norms(model, find_blocks(model), full)
    assert rows["weights"] == rows["trained"] and rows["weights"]["layer.3"] > 0
    lora = build_method("lora", {"rank": 4})
    adapted = lora.prepare_model(load_model("tiny-random-llama").model)
    rows = weight_norms(adapted, lora.find_blocks(adapted), lora)
    assert rows["weights"]["layer.3"] == pytest.approx(weight_norms(model, find_blocks(model), full)["weights"]["layer.3"])
    assert 0 < rows["trained"]["layer.3"] < rows["weights"]["layer.3"]  # the adapter (lora_B starts at zero)
    assert rows["trained"]["embedding"] == 0.0  # frozen under LoRA


def test_gradient_checkpointing(tiny_cfg, tmp_path):
    cfg = tiny_cfg("lisa", max_steps=6, gradient_checkpointing=True, method_options={"gamma": 2, "interval": 3})
    metrics = train(cfg, tmp_path / "gc", progress=False)
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "gc" / "model")
    assert trained.config.use_cache  # training went without a cache; generation from the saved model keeps one
    base = load_model("tiny-random-llama").model
    rows = [json.loads(x) for x in (tmp_path / "gc" / "train_log.jsonl").read_text().splitlines()]
    visited = {i for r in rows for i in r["active_layers"]}
    for i, (a, b) in enumerate(zip(trained.model.layers, base.model.layers)):
        same = all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
        assert same == (i not in visited)


def test_full_model_saves_and_reloads(tiny_cfg, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics = train(tiny_cfg("lisa", max_steps=3), tmp_path / "run", progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert tok.chat_template and model.config.num_hidden_layers == 8
    # metrics.json: the fields of RunMetrics, in their order (a new metric is a field there)
    from lisa_bench.training.metrics import RunMetrics

    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(written) == list(metrics) == [f.name for f in dataclasses.fields(RunMetrics)]
    assert written["trainable_params_peak"] > 0 and written["steps"] == 3 and written["memory_kind"]


def test_no_loss_graph_is_alive_at_the_optimizer_step(tiny_cfg, tmp_path, monkeypatch):
    """As in transformers' Trainer, each micro-batch's loss (and so its autograd graph) is gone before AdamW steps:
    a graph kept until after the step left its nodes among the activations' freed memory, and on the CPU the
    optimizer's temporaries page-faulted fresh memory (a SmolLM2 step 5% slower than the Trainer's)."""
    import weakref

    from lisa_bench.training import loop

    losses, alive = [], []
    real_setup = loop.setup

    def setup(cfg):
        run = real_setup(cfg)
        run.raw_model.register_forward_hook(lambda module, args, out: losses.append(weakref.ref(out.loss)))
        step = run.optimizer.step

        def checked(*args, **kwargs):
            alive.append(sum(ref() is not None for ref in losses))
            return step(*args, **kwargs)

        run.optimizer.step = checked
        return run

    monkeypatch.setattr(loop, "setup", setup)
    train(tiny_cfg("full", max_steps=3, batch_size=4, grad_accum_steps=2), tmp_path / "run", progress=False)
    assert len(losses) >= 6 and alive == [0, 0, 0]


def test_training_and_validation_forwards_build_no_kv_cache(tiny_cfg, tmp_path, monkeypatch):
    """As transformers' Trainer (use_cache=False): a cache would copy every block's keys and values."""
    from transformers import cache_utils

    made = []
    init = cache_utils.DynamicCache.__init__
    monkeypatch.setattr(cache_utils.DynamicCache, "__init__", lambda self, *a, **k: (made.append(1), init(self, *a, **k))[1])
    metrics = train(tiny_cfg("full", max_steps=2, eval_every=1), tmp_path / "run", progress=False)
    assert metrics["eval_loss"] is not None and made == []
    model = load_model("tiny-random-llama").model  # the check itself can fail: a plain forward builds one
    model(input_ids=torch.tensor([[1, 2, 3]]))
    assert made


def test_learning_curve_on_the_first_held_out_conversations_and_final_score_on_all(tiny_cfg, tmp_path):
    cfg = tiny_cfg("full", max_steps=4, eval_every=2, eval_size=16, curve_size=6)
    metrics = train(cfg, tmp_path / "curve", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "curve" / "train_log.jsonl").read_text().splitlines()]
    points = [r for r in rows if "eval_loss" in r]
    # (a conversation with no response token within max_length is no example: 16 conversations give fewer)
    assert [r["step"] for r in points] == [1, 3] and {r["eval_examples"] for r in points} == {metrics["curve_examples"]}
    assert 0 < metrics["curve_examples"] <= 6 < metrics["validation_examples"] <= 16
    # the final score is on all 16 conversations, so it differs from the curve's last point on the first 6
    assert metrics["eval_loss"] != pytest.approx(points[-1]["eval_loss"])
    whole = train(tiny_cfg("full", max_steps=4, eval_every=2, eval_size=16), tmp_path / "whole", progress=False)
    assert whole["eval_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-6)  # the same run, the same score
    assert whole["curve_examples"] == whole["validation_examples"] == metrics["validation_examples"]


@pytest.mark.parametrize("kw, message", [
    (dict(max_steps=4, eval_every=5), "eval_every 5 is larger than the run (max_steps 4)"),
    (dict(eval_size=8, curve_size=9), "curve_size 9 is more than eval_size 8"),
    (dict(curve_size=0), "curve_size must be an integer >= 1, got 0"),
])
def test_learning_curve_settings_refused(tiny_cfg, kw, message):
    from lisa_bench.errors import BadInput

    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_cfg("full", **kw).validate()


def test_eval_every_beyond_an_epoch_run_is_refused(tiny_cfg, tmp_path):
    from lisa_bench.errors import BadInput

    with pytest.raises(BadInput, match="eval_every 1000 is larger than the run"):
        train(tiny_cfg("full", max_steps=None, num_epochs=1, eval_every=1000), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
