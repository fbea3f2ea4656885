"""The shared training loop against transformers' Trainer, side by side in one process.

1. Equivalence on tiny-random-llama (the test suite's check, with the numbers printed): per-step losses and
   final weights of full fine-tuning and LoRA, with and without gradient accumulation.
2. Speed on the embedded SmolLM2-135M (CPU), two ways:
   a. whole runs: tokens/s of `lisa-bench train`'s loop and of `Trainer.train()` on the same data order and
      settings, alternating A B, B A so that neither always runs in the warmer process;
   b. step by step: the loop's `train_step` and the Trainer's step (its `training_step`, then the clipping,
      optimizer, scheduler and zero_grad calls of its inner loop) on two copies of one model, interleaved
      within each step on the same batch, who goes first alternating. Run-to-run drift of a shared machine
      (whole runs differ by 10-20% here) cancels in the per-step ratio; the two losses must stay equal.

    python scripts/trainer_vs_loop.py --out results/cpu-recipe/trainer_vs_loop.json [--steps 8] [--rounds 2]
        [--interleaved-steps 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def equivalence(tmp: Path) -> list[dict]:
    from training.test_trainer_equivalence import OPTIONS, SEED, STEPS, LR, _our_model, _trainer_run

    from lisa_bench.config import TrainConfig
    from lisa_bench.training import train

    rows = []
    for method, batch, accum in (("full", 4, 1), ("lora", 4, 1), ("full", 2, 2), ("lora", 2, 2)):
        out = tmp / f"{method}-{batch}x{accum}"
        cfg = TrainConfig(method=method, model="tiny-random-llama", max_steps=STEPS, seed=SEED, lr=LR, warmup_steps=0,
                          batch_size=batch, grad_accum_steps=accum, max_length=96, train_size=64, device="cpu",
                          checkpoint_every=0, method_options=OPTIONS[method])
        train(cfg, out / "ours", progress=False)
        ours = [json.loads(x)["loss"] for x in (out / "ours" / "train_log.jsonl").read_text().splitlines()]
        theirs, model, _ = _trainer_run(method, batch, accum, out)
        mine = dict(_our_model(method, out / "ours").named_parameters())
        weight = max(float((p.detach() - mine[n].detach()).abs().max()) for n, p in model.named_parameters())
        rows.append({"method": method, "batch": batch, "grad_accum_steps": accum, "steps": STEPS,
                     "max_loss_diff": max(abs(a - b) for a, b in zip(ours, theirs)), "max_weight_diff": weight})
        print(rows[-1], flush=True)
    return rows


# the speed recipe of both measurements: SmolLM2-135M, full fine-tuning, batch 4 x 256 tokens, fp32, AdamW, cosine
LOOP = dict(method="full", model="smollm2-135m", lr=2e-5, warmup_steps=0, batch_size=4, max_length=256, device="cpu",
            checkpoint_every=0)


def _trainer_args(output_dir: Path, max_steps: int, **extra):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(output_dir), per_device_train_batch_size=LOOP["batch_size"],
                             max_steps=max_steps, learning_rate=LOOP["lr"], lr_scheduler_type="cosine",
                             warmup_steps=0, optim="adamw_torch", save_strategy="no", report_to=[], use_cpu=True,
                             remove_unused_columns=False, disable_tqdm=True, **extra)


def speed(tmp: Path, steps: int, rounds: int) -> dict:
    """Tokens/s of both on SmolLM2-135M, full fine-tuning, batch 4 x 256 tokens, fp32."""
    from transformers import Trainer, TrainerCallback

    from lisa_bench.config import TrainConfig
    from lisa_bench.data.batching import StepPlan
    from lisa_bench.data.registry import load_conversations
    from lisa_bench.data.tokenize import PadCollator, encode_all
    from lisa_bench.models import load_model
    from lisa_bench.training import train

    loop_rates, trainer_rates = [], []

    def loop(r: int) -> None:
        cfg = TrainConfig(**LOOP, max_steps=steps + 1, norm_every=steps + 1)
        train(cfg, tmp / f"loop{r}", progress=False)
        log = [json.loads(x) for x in (tmp / f"loop{r}" / "train_log.jsonl").read_text().splitlines()][1:]  # warm-up
        loop_rates.append(sum(x["tokens"] for x in log) / sum(x["step_seconds"] for x in log))

    def trainer(r: int) -> None:
        loaded = load_model("smollm2-135m")
        examples = encode_all(load_conversations("synthetic-instruct", "train"), loaded.tokenizer, 256)
        plan = StepPlan([len(e["input_ids"]) for e in examples], 4, 1, 0)
        ordered = [examples[i] for s in range(steps + 1) for micro in plan.step(s) for i in micro]
        stamps, ends = [], []

        class Timed(Trainer):
            def training_step(self, model, inputs, *args, **kwargs):
                t0 = time.perf_counter()
                loss = super().training_step(model, inputs, *args, **kwargs)
                stamps.append((int(inputs["attention_mask"].sum()), t0))
                return loss

        class End(TrainerCallback):  # the step's end: after the optimizer and scheduler stepped
            def on_step_end(self, args, state, control, **kw):
                ends.append(time.perf_counter())

        args = _trainer_args(tmp / f"trainer{r}", steps + 1, train_sampling_strategy="sequential", logging_steps=1000,
                             dataloader_num_workers=0)
        Timed(model=loaded.model, args=args, train_dataset=ordered, data_collator=PadCollator(loaded.tokenizer.pad_token_id),
              callbacks=[End()]).train()
        tokens = sum(n for n, _ in stamps[1:])
        seconds = sum(end - start for (_, start), end in zip(stamps[1:], ends[1:]))
        trainer_rates.append(tokens / seconds)

    for r in range(rounds):  # A B, then B A: whichever runs second in a round has a warmer process
        for run in (loop, trainer) if r % 2 == 0 else (trainer, loop):
            run(r)
        print({"round": r, "first": "loop" if r % 2 == 0 else "trainer", "loop_tok_s": loop_rates[-1],
               "trainer_tok_s": trainer_rates[-1]}, flush=True)
    return {"model": "smollm2-135m", "method": "full", "batch": 4, "max_length": 256, "steps_timed": steps,
            "rounds": rounds, "order": "loop first in even rounds, Trainer first in odd ones", "loop_tokens_per_second": loop_rates, "trainer_tokens_per_second": trainer_rates,
            "loop_over_trainer": sum(loop_rates) / sum(trainer_rates)}


def interleaved(tmp: Path, steps: int) -> dict:
    """Per-step seconds of the loop's step and the Trainer's step on the same batches, in one process."""
    import copy
    import statistics

    from transformers import Trainer

    from lisa_bench.config import TrainConfig
    from lisa_bench.training.loop import _micro_batch, setup, train_step

    run = setup(TrainConfig(**LOOP, max_steps=steps))
    theirs = copy.deepcopy(run.raw_model)
    trainer = Trainer(model=theirs, args=_trainer_args(tmp / "interleaved", steps), train_dataset=run.examples[:4],
                      data_collator=run.collate)
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)  # as Trainer.train() sets itself up
    wrapped = trainer.accelerator.prepare_model(theirs)
    trainer.optimizer = trainer.accelerator.prepare_optimizer(trainer.optimizer)

    def ours(micro, step):
        for group in run.optimizer.param_groups:  # as train() does before each step
            group["lr"] = run.schedule.lr_at(step)
        loss, stats = train_step(run, micro)
        return loss, stats["seconds"]

    def trainers(micro, step):  # one optimizer step of Trainer._inner_training_loop, accumulation 1
        t0 = time.perf_counter()
        items = torch.tensor(sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro))
        loss = sum(float(trainer.training_step(wrapped, dict(b), items)) for b in micro)
        trainer._clip_grad_norm(wrapped)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        wrapped.zero_grad()
        return loss, time.perf_counter() - t0

    rows = []
    for step in range(steps):
        micro = [_micro_batch(run, idx) for idx in run.plan.step(step)]
        tokens = sum(int(b["attention_mask"].sum()) for b in micro)
        order = (("loop", ours), ("trainer", trainers)) if step % 2 == 0 else (("trainer", trainers), ("loop", ours))
        row = {"step": step, "tokens": tokens, "first": order[0][0]}
        for name, fn in order:
            row[f"{name}_loss"], row[f"{name}_seconds"] = fn(micro, step)
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    timed = rows[1:]  # step 0 warms both up
    ratios = [r["trainer_seconds"] / r["loop_seconds"] for r in timed]  # > 1: the loop is faster
    tokens = sum(r["tokens"] for r in timed)
    return {"model": "smollm2-135m", "method": "full", "batch": 4, "max_length": 256, "steps_timed": len(timed),
            "order": "loop first in even steps, Trainer first in odd ones",
            "loop_tokens_per_second": tokens / sum(r["loop_seconds"] for r in timed),
            "trainer_tokens_per_second": tokens / sum(r["trainer_seconds"] for r in timed),
            "loop_over_trainer_total": sum(r["trainer_seconds"] for r in timed) / sum(r["loop_seconds"] for r in timed),
            "loop_over_trainer_median_step": statistics.median(ratios),
            "loop_over_trainer_step_quartiles": statistics.quantiles(ratios, n=4),
            "max_loss_diff": max(abs(r["loop_loss"] - r["trainer_loss"]) for r in rows), "steps": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--interleaved-steps", type=int, default=40, help="steps of the step-by-step comparison (0: none)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"equivalence": equivalence(Path(tmp)), "speed": speed(Path(tmp), args.steps, args.rounds)}
        if args.interleaved_steps:
            result["interleaved"] = interleaved(Path(tmp), args.interleaved_steps)
    from lisa_bench.provenance import provenance

    result["provenance"] = provenance(vars(args), "cpu")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["speed"], indent=2))
    if "interleaved" in result:
        print(json.dumps({k: v for k, v in result["interleaved"].items() if k != "steps"}, indent=2))


if __name__ == "__main__":
    main()
