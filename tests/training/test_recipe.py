"""The training recipe: precisions, epochs, warm-up, held-out loss, length-grouped batches, trackers."""

import json
import math

import pytest
import torch

from lisa_bench.config import TrainConfig
from lisa_bench.methods import METHODS, load_all
from lisa_bench.training import train

load_all()


def _log(run):
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", sorted(m for m, cls in METHODS.items() if cls.trains))
def test_every_method_trains_in_bf16_mixed(method, tiny_cfg, tmp_path):
    """fp32 master weights and optimizer state, bf16 autocast: LISA's switch and LoRA included."""
    cfg = tiny_cfg(method, max_steps=12, precision="bf16-mixed", **METHODS[method].quick_test)
    metrics = train(cfg, tmp_path / "run", progress=False)
    log = _log(tmp_path / "run")
    assert metrics["precision"] == "bf16-mixed" and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert sum(r["loss"] for r in log[-3:]) < sum(r["loss"] for r in log[:3])
    # the state stays in fp32: the same bytes as an fp32 run's
    fp32 = train(tiny_cfg(method, max_steps=2, **METHODS[method].quick_test), tmp_path / "fp32", progress=False)
    if method != "lisa-callback":  # its state grows with the blocks it visits, which differ over 2 and 12 steps
        assert metrics["optimizer_state_bytes_peak"] == fp32["optimizer_state_bytes_peak"]


def test_pure_bf16_keeps_bf16_weights(tiny_cfg, tmp_path):
    metrics = train(tiny_cfg("full", max_steps=2, precision="bf16"), tmp_path / "run", progress=False)
    n = metrics["total_params"]
    assert metrics["optimizer_state_bytes_peak"] == 4 * n + 4 * len(list(
        __import__("lisa_bench.models", fromlist=["x"]).load_model("tiny-random-llama").model.parameters()))


def test_epochs_warmup_ratio_and_held_out_loss(tiny_cfg, tmp_path):
    cfg = tiny_cfg("lisa", max_steps=None, num_epochs=1.5, train_size=40, batch_size=4, grad_accum_steps=2,
                   warmup_ratio=0.25, scheduler="cosine", eval_every=3, eval_size=16,
                   method_options={"gamma": 1, "interval": 2})
    metrics = train(cfg, tmp_path / "run", progress=False)
    log = _log(tmp_path / "run")
    # n examples in micro-batches of 4, 2 of them per optimizer step; 1.5 epochs of those steps
    per_epoch = math.ceil(math.ceil(metrics["train_examples"] / 4) / 2)
    steps = math.ceil(1.5 * per_epoch)
    assert metrics["steps"] == len(log) == steps and metrics["epochs"] == pytest.approx(steps / per_epoch)
    warmup = round(0.25 * steps)
    assert [r["lr"] for r in log[:warmup]] == pytest.approx([cfg.lr * (s + 1) / warmup for s in range(warmup)])
    assert log[warmup]["lr"] == pytest.approx(cfg.lr)
    evaluated = [r["step"] for r in log if "eval_loss" in r]
    assert evaluated == sorted({s for s in range(steps) if (s + 1) % 3 == 0} | {steps - 1})
    assert metrics["eval_loss"] == log[-1]["eval_loss"] and 0 < metrics["validation_examples"] <= 16
    assert metrics["effective_batch_size"] == 8


def test_held_out_loss_is_the_token_mean_on_the_validation_split(tiny_cfg, tmp_path):
    """The base (untrained) model's eval_loss equals a direct token-weighted loss on the held-out split."""
    from lisa_bench.data.registry import load_conversations
    from lisa_bench.data.tokenize import PadCollator, encode_all
    from lisa_bench.models import load_model

    metrics = train(tiny_cfg("base", eval_size=10), tmp_path / "base", progress=False)
    loaded = load_model("tiny-random-llama")
    examples = encode_all(load_conversations("synthetic-instruct", "validation", size=10), loaded.tokenizer, 96)
    total = tokens = 0.0
    with torch.no_grad():
        for e in examples:
            batch = PadCollator(loaded.tokenizer.pad_token_id)([e])
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(loaded.model(**batch).loss) * n
            tokens += n
    assert metrics["eval_loss"] == pytest.approx(total / tokens, rel=1e-5)


def test_group_by_length_pads_less(tiny_cfg, tmp_path):
    plain = train(tiny_cfg("full", max_steps=6, batch_size=8), tmp_path / "plain", progress=False)
    grouped = train(tiny_cfg("full", max_steps=6, batch_size=8, group_by_length=True), tmp_path / "g", progress=False)
    assert 0 < grouped["padding_fraction"] < plain["padding_fraction"]


def test_tensorboard_tracker_writes_offline(tiny_cfg, tmp_path):
    train(tiny_cfg("lisa", max_steps=3, report_to="tensorboard"), tmp_path / "run", progress=False)
    events = list((tmp_path / "run" / "trackers").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert len(acc.Scalars("loss")) == 3


def test_resumed_run_continues_mid_epoch(tiny_cfg, tmp_path):
    """A run stopped after a checkpoint in the middle of an epoch resumes with the data an uninterrupted
    run sees (the plan is a function of the step)."""
    from tests.training import interrupted_at_step

    cfg = tiny_cfg("full", max_steps=9, train_size=24, batch_size=4, checkpoint_every=4)  # 6 steps an epoch
    train(cfg, tmp_path / "whole", progress=False)
    with interrupted_at_step(7):
        train(cfg, tmp_path / "cut", progress=False)
    metrics = train(cfg, tmp_path / "cut", progress=False)
    assert metrics["resumed_from_step"] == 4
    assert [r["loss"] for r in _log(tmp_path / "cut")] == pytest.approx([r["loss"] for r in _log(tmp_path / "whole")],
                                                                       rel=1e-6)


@pytest.mark.parametrize("values, needle", [
    (dict(precision="fp8"), "unknown precision 'fp8'; valid choices: fp32, bf16, bf16-mixed"),
    (dict(attn_implementation="xformers"), "unknown attn_implementation 'xformers'; valid choices: sdpa, eager"),
    (dict(grad_accum_steps=0), "grad_accum_steps must be an integer >= 1, got 0"),
    (dict(num_epochs=2), "give exactly one of max_steps and num_epochs (got both"),
    (dict(max_steps=None), "give exactly one of max_steps and num_epochs (got neither)"),
    (dict(warmup_steps=2, warmup_ratio=0.1), "at most one of warmup_steps and warmup_ratio"),
    (dict(eval_every=0), "eval_every must be an integer >= 1, got 0"),
    (dict(report_to="mlflow"), "unknown report_to 'mlflow'; valid choices: none, tensorboard, wandb"),
    (dict(num_epochs=-1, max_steps=None), "num_epochs must be > 0, got -1"),
    (dict(num_epochs=2), "(got both: max_steps 5, num_epochs 2)"),
    # text where a number or a switch belongs: one line, not a TypeError in the run
    (dict(lr="fast"), "lr must be a finite number, got 'fast'"),
    (dict(num_epochs=float("inf"), max_steps=None), "num_epochs must be a finite number or null, got inf"),
    (dict(num_epochs=True, max_steps=None), "num_epochs must be a finite number or null, got True"),
    (dict(seed="abc"), "seed must be an integer, got 'abc'"),
    (dict(warmup_ratio="abc"), "warmup_ratio must be a finite number or null, got 'abc'"),
    (dict(gradient_checkpointing="maybe"), "gradient_checkpointing must be true or false, got 'maybe'"),
    (dict(method_options=5), "method_options must be a mapping of options, got 5"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
    (dict(max_grad_norm=-1.0), "max_grad_norm must be >= 0 (0 or null: no clipping), got -1.0"),
])
def test_bad_settings(values, needle):
    from lisa_bench.errors import BadInput

    cfg = TrainConfig(**{**dict(max_steps=5), **values})
    with pytest.raises(BadInput) as err:
        cfg.validate()
    assert needle in str(err.value)


def test_a_number_as_yaml_1_1_reads_it_is_the_number():
    """Snakemake loads a study file as YAML 1.1, where `1e-5` is text: the setting is still the number."""
    cfg = TrainConfig(max_steps=5, lr="1e-5", warmup_ratio="5e-2")
    cfg.validate()
    assert cfg.lr == 1e-5 and cfg.warmup_ratio == 0.05
