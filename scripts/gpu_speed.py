"""Where a training step's time goes, on one GPU (issue 31): the loop's own step (`lisa-bench train`'s `train_step`,
with the memory meter and gradient accounting it runs every step), a bare step (forward, backward, clipping,
optimizer: nothing else) and transformers' Trainer step (its `training_step`, clipping, optimizer, scheduler),
on the same model and the same random-token batches of one shape, for TinyLlama-1.1B and LLaMA-2-7B with random
weights (full, LoRA r128, LISA E+H+2L; the paper's pure bf16, bf16-master and bf16-sr). Steady state: the median step after
the warm-up steps `training/throughput.py` defines; MFU against the datasheet peak of the GPU it finds.

Also the loop on the dataset's own batches (synthetic-instruct, about 60 tokens a conversation, padded to the
longest of each batch), the shape a user of the default dataset trains at. `results/gpu-recipe`'s TinyLlama runs
(bf16-mixed, 4 x 512 tokens of a long synthetic dataset, 30 steps) read as about 1% of an H200's peak (1463
tokens/s for full fine-tuning) against the memory bench's 9429 (pure bf16, 1 x 1024): bf16-mixed is among the
cases here, so one call tells the warm-up, the recipe and the loop apart.

This is not a study: it times the loop against two references in one process, which a pipeline job cannot express.

    python scripts/gpu_speed.py --out results/gpu-speed           # on one GPU, about 5 minutes
    python scripts/gpu_speed.py --out /tmp/speed --dry-run        # the same code on the CPU, tiny model, seconds

Writes speed.json (every case, per-step seconds included) and speed.md (the table).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# bf16-sr (stochastic rounding of each update, pure bf16's memory): its per-chunk fp32 update against pure bf16's
# fused step, on TinyLlama for every method and on the 7B model for LISA, the verdict's case
GPU_CASES = [("random:tinyllama-1.1b", e, p) for p in ("bf16", "bf16-master", "bf16-sr", "bf16-mixed")
             for e in ("full", "lora-r128", "lisa-e-h-2l")] + \
            [("random:llama-2-7b", e, p) for p in ("bf16", "bf16-master") for e in ("lora-r128", "lisa-e-h-2l")] + \
            [("random:llama-2-7b", "lisa-e-h-2l", "bf16-sr")] + \
            [("random:llama-2-7b", "full", "bf16")]  # 7B full under bf16-master: 138 GiB, no single GPU (plan)
DRY_CASES = [("tiny-random-llama", "full", "fp32"), ("tiny-random-llama", "lora-r128", "bf16"),
             ("tiny-random-llama", "lisa-e-h-2l", "bf16-master"), ("tiny-random-llama", "lisa-e-h-2l", "bf16-sr")]
TRAINER_METHODS = ("full", "lora")  # methods the Trainer runs as they are (LISA needs the loop's switching)
TRAINER_PRECISIONS = ("fp32", "bf16", "bf16-mixed")  # recipes the Trainer has (fp32 masters or Kahan: DeepSpeed's)


def _config(model: str, experiment: str, precision: str, batch: int, seq: int, steps: int, device: str):
    from lisa_bench.config import build_config, resolve_experiment

    return build_config(resolve_experiment(experiment, ROOT / "experiments"),
                        {"model": model, "precision": precision, "batch_size": batch, "max_length": seq,
                         "max_steps": steps, "device": device, "checkpoint_every": 0, "forgetting_tokens": 0,
                         "train_size": 64, "eval_size": 1, "warmup_steps": 0}, {})


def _batch(run, batch: int, seq: int) -> dict:
    vocab = run.raw_model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _steady(seconds: list[float]) -> float:
    from lisa_bench.training.throughput import warmup_steps

    return statistics.median(seconds[warmup_steps(len(seconds)):])


def loop_steps(run, micro: list[dict], steps: int, start: int = 0) -> list[float]:
    """The loop's own step, as `_step` runs it: the method's switch, the rate, `train_step`."""
    from lisa_bench.training.loop import train_step

    out = []
    for s in range(start, start + steps):
        run.method.on_step_start(s, run.raw_model, run.optimizer)
        for group in run.optimizer.param_groups:
            group["lr"] = run.schedule.lr_at(s)
        out.append(train_step(run, micro)[1]["seconds"])
    return out


def bare_steps(run, batch: dict, steps: int) -> list[float]:
    """Forward, backward, clipping and the optimizer on the same model and batch: nothing else."""
    device = run.accelerator.device
    batch = {k: v.to(device) for k, v in batch.items()}
    trainable = [p for p in run.raw_model.parameters() if p.requires_grad]
    out = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        with run.precision.autocast(device.type):
            loss = run.raw_model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, run.cfg.max_grad_norm or 1.0)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def trainer_steps(run, batch: dict, steps: int, tmp: Path) -> list[float]:
    """transformers' Trainer on a copy of the model (the same weights and dtype), one optimizer step as its inner
    loop runs it: training_step, clipping, optimizer, scheduler, zero_grad."""
    from transformers import Trainer, TrainingArguments

    device = run.accelerator.device
    model = copy.deepcopy(run.raw_model)
    args = TrainingArguments(output_dir=str(tmp), per_device_train_batch_size=batch["input_ids"].shape[0],
                             max_steps=steps, learning_rate=run.cfg.lr, lr_scheduler_type="cosine", warmup_steps=0,
                             optim="adamw_torch", save_strategy="no", report_to=[], use_cpu=device.type == "cpu",
                             remove_unused_columns=False, disable_tqdm=True, max_grad_norm=run.cfg.max_grad_norm or 1.0,
                             # the loop's recipe: autocast over fp32 weights for bf16-mixed, else the model's own dtype
                             # (pure bf16 where it is bf16)
                             bf16=run.cfg.precision == "bf16-mixed")
    trainer = Trainer(model=model, args=args, train_dataset=[{k: v[0] for k, v in batch.items()}])
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    wrapped = trainer.accelerator.prepare_model(model)
    trainer.optimizer = trainer.accelerator.prepare_optimizer(trainer.optimizer)
    batch = {k: v.to(device) for k, v in batch.items()}
    items = torch.tensor(int((batch["labels"][:, 1:] != -100).sum()), device=device)
    out = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        trainer.training_step(wrapped, dict(batch), items)
        trainer._clip_grad_norm(wrapped)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        wrapped.zero_grad()
        _sync(device)
        out.append(time.perf_counter() - t0)
    del trainer, wrapped, model
    return out


def case(model: str, experiment: str, precision: str, batch: int, seq: int, steps: int, device: str,
         tmp: Path) -> dict:
    from lisa_bench.memory.speed import work_per_token
    from lisa_bench.training import throughput
    from lisa_bench.training.loop import _micro_batch, setup

    row = {"model": model, "experiment": experiment, "precision": precision, "batch": batch, "seq_len": seq}
    try:
        run = setup(_config(model, experiment, precision, batch, seq, 4 * steps, device))
    except torch.cuda.OutOfMemoryError:
        return {**row, "status": "oom (model and optimizer)"}
    dev = run.accelerator.device
    tokens = batch * seq
    flops = work_per_token(run.raw_model, run.layout, tokens)[0]
    name, peak = throughput.device_peak(dev, run.precision.weights)
    row.update(device=name, flops_per_token=flops, status="ok")
    shaped = _batch(run, batch, seq)
    try:
        seconds = {"loop": loop_steps(run, [shaped], steps), "bare": bare_steps(run, shaped, steps)}
        if run.cfg.method in TRAINER_METHODS and precision in TRAINER_PRECISIONS and (dev.type == "cpu" or
                                                   torch.cuda.memory_allocated(dev) * 2.2 < torch.cuda.get_device_properties(dev).total_memory):
            seconds["trainer"] = trainer_steps(run, shaped, steps, tmp)
        data = [_micro_batch(run, idx) for idx in run.plan.step(0)]  # the dataset's own batch, padded
        data_tokens = sum(int(b["attention_mask"].sum()) for b in data)
        seconds["loop_dataset"] = loop_steps(run, data, steps, start=steps)
    except torch.cuda.OutOfMemoryError:
        row["status"] = "oom (step)"
        seconds, data_tokens = {}, None
    for key, values in seconds.items():
        n = data_tokens if key == "loop_dataset" else tokens
        rate = n / _steady(values)
        row[f"{key}_tokens_per_second"] = rate
        row[f"{key}_mfu"] = rate * flops / peak if peak else None
        row[f"{key}_seconds"] = values
    row["dataset_tokens_per_step"] = data_tokens
    if "trainer" in seconds:
        row["loop_over_trainer"] = row["loop_tokens_per_second"] / row["trainer_tokens_per_second"]
    if "bare" in seconds:
        row["loop_over_bare"] = row["loop_tokens_per_second"] / row["bare_tokens_per_second"]
    del run
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return row


def table(rows: list[dict]) -> str:
    """A Markdown table without pandas (the lent GPU machine's Python has no tabulate)."""
    cols = ["model", "experiment", "precision", "status", "loop_tokens_per_second", "bare_tokens_per_second",
            "trainer_tokens_per_second", "loop_over_bare", "loop_over_trainer", "loop_mfu",
            "dataset_tokens_per_step", "loop_dataset_tokens_per_second", "loop_dataset_mfu"]
    cols = [c for c in cols if any(c in r for r in rows)]

    def cell(v):
        if isinstance(v, float):
            return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry-run", action="store_true", help="the CPU, the tiny model, 4 steps: the code path only")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of each kind per case (default 20)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    args = ap.parse_args(argv)
    import tempfile

    from lisa_bench.provenance import provenance

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_speed: no CUDA device; use --dry-run for the CPU check", file=sys.stderr)
        return 2
    cases, device = (DRY_CASES, "cpu") if dry else (GPU_CASES, "cuda")
    steps, batch, seq = (4, 2, 96) if dry else (args.steps, args.batch, args.seq_len)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, experiment, precision in cases:
            t0 = time.perf_counter()
            rows.append(case(model, experiment, precision, batch, seq, steps, device, Path(tmp)))
            rows[-1]["case_seconds"] = time.perf_counter() - t0
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()
                   if not k.endswith("_seconds") or k == "case_seconds"}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps({"rows": rows, "provenance": provenance(vars(args), device)}, indent=2,
                                               default=str))
    text = table(rows)
    (out / "speed.md").write_text(f"Steady-state tokens/s per step kind ({'dry run, CPU' if dry else 'GPU'}; "
                                  f"{steps} steps each, batch {batch} x {seq} random tokens)\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
