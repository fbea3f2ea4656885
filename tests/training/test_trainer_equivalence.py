"""The shared loop against transformers' Trainer, the library users would otherwise pick: on the same data
order, AdamW, no dropout, the same cosine schedule, fp32, the per-step losses and the final weights agree,
with and without gradient accumulation (both weight the loss by response tokens across micro-batches)."""

import pytest
import torch
from torch.utils.data import Dataset

from lisa_bench.config import TrainConfig
from lisa_bench.data.batching import StepPlan
from lisa_bench.data.registry import load_conversations
from lisa_bench.data.tokenize import PadCollator, encode_all
from lisa_bench.methods import build_method
from lisa_bench.models import load_model
from lisa_bench.training import train

STEPS, LR, SEED = 10, 1e-3, 3
OPTIONS = {"full": {}, "lora": {"rank": 4, "dropout": 0.0}}


class _Examples(Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def _trainer_run(method, batch, accum, tmp_path):
    """transformers.Trainer on the examples our plan orders, read sequentially; the loss of every optimizer
    step recorded from its micro-batches."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(SEED)  # as our set-up does before building the model (LoRA's initialisation draws from it)
    loaded = load_model("tiny-random-llama", seed=SEED)
    examples = encode_all(load_conversations("synthetic-instruct", "train", seed=SEED, size=64), loaded.tokenizer, 96)
    plan = StepPlan([len(e["input_ids"]) for e in examples], batch, accum, SEED)
    ordered = [examples[i] for s in range(STEPS) for micro in plan.step(s) for i in micro]
    model = build_method(method, OPTIONS[method], seed=SEED).prepare_model(loaded.model)
    losses = []

    class Recording(Trainer):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            losses.append(float(loss))
            return loss

    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accum, max_steps=STEPS, learning_rate=LR,
                             lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                             optim="adamw_torch", train_sampling_strategy="sequential", save_strategy="no",
                             report_to=[], use_cpu=True, logging_steps=1, remove_unused_columns=False,
                             dataloader_num_workers=0, seed=SEED, disable_tqdm=True)
    trainer = Recording(model=model, args=args, train_dataset=_Examples(ordered),
                        data_collator=PadCollator(loaded.tokenizer.pad_token_id))
    trainer.train()
    per_step = [sum(losses[i:i + accum]) for i in range(0, len(losses), accum)]
    grad_norms = [float(e["grad_norm"]) for e in trainer.state.log_history if "grad_norm" in e]  # before clipping
    return per_step, model, grad_norms


def _our_model(method, out):
    from transformers import AutoModelForCausalLM

    if method == "lora":
        from peft import PeftModel

        return PeftModel.from_pretrained(load_model("tiny-random-llama", seed=SEED).model, out / "model")
    return AutoModelForCausalLM.from_pretrained(out / "model")


@pytest.mark.parametrize("method, batch, accum", [("full", 4, 1), ("lora", 4, 1), ("full", 2, 2), ("lora", 2, 2)])
def test_same_losses_and_weights_as_transformers_trainer(method, batch, accum, tmp_path):
    cfg = TrainConfig(method=method, model="tiny-random-llama", dataset="synthetic-instruct", max_steps=STEPS,
                      seed=SEED, lr=LR, scheduler="cosine", warmup_steps=0, batch_size=batch, grad_accum_steps=accum,
                      max_length=96, train_size=64, device="cpu", checkpoint_every=0, method_options=OPTIONS[method])
    train(cfg, tmp_path / "ours", progress=False)
    log = [__import__("json").loads(x) for x in (tmp_path / "ours" / "train_log.jsonl").read_text().splitlines()]
    ours = [r["loss"] for r in log]
    theirs, model, their_norms = _trainer_run(method, batch, accum, tmp_path)
    assert len(ours) == len(theirs) == STEPS
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-5, (ours, theirs)
    # the gradient itself, before clipping (clipping and AdamW would hide a constant factor in the weights)
    assert len(their_norms) == STEPS
    assert all(r["grad_norm"] == pytest.approx(t, rel=1e-5) for r, t in zip(log, their_norms)), (log, their_norms)
    mine = dict(_our_model(method, tmp_path / "ours").named_parameters())
    diffs = {n: float((p.detach() - mine[n].detach()).abs().max()) for n, p in model.named_parameters()}
    assert max(diffs.values()) < 1e-5, max(diffs.items(), key=lambda kv: kv[1])
    assert ours[-1] < ours[0]


def test_accumulation_equals_the_larger_batch(tmp_path):
    """4 micro-batches of 2 are one batch of 8: the same examples, the loss weighted by their tokens."""
    runs = {}
    for name, batch, accum in (("b8", 8, 1), ("b2x4", 2, 4)):
        cfg = TrainConfig(method="full", model="tiny-random-llama", max_steps=4, seed=1, lr=1e-3, warmup_steps=0,
                          batch_size=batch, grad_accum_steps=accum, max_length=96, train_size=64, device="cpu",
                          checkpoint_every=0)
        runs[name] = train(cfg, tmp_path / name, progress=False)
        runs[name]["log"] = [__import__("json").loads(x) for x in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    for a, b in zip(runs["b8"]["log"], runs["b2x4"]["log"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5) and a["lr"] == b["lr"]
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)  # the gradient, not only what AdamW made of it
    from safetensors.torch import load_file

    w8, w2 = load_file(tmp_path / "b8" / "model" / "model.safetensors"), load_file(tmp_path / "b2x4" / "model" / "model.safetensors")
    assert max(float((w8[k] - w2[k]).abs().max()) for k in w8) < 1e-5
    assert runs["b2x4"]["effective_batch_size"] == runs["b8"]["effective_batch_size"] == 8
