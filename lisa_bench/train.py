"""The one training path every method shares: data -> model -> method -> AdamW-style loop -> results.

Writes, into the output directory (staged in a temporary sibling and renamed at the end):
``metrics.json``, ``train_log.jsonl`` (one line per step), ``weight_norms.jsonl`` and ``model/``
(full weights, or the peft adapter for LoRA).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import atomic
from .config import TrainConfig
from .data.registry import load_conversations
from .data.tokenize import PadCollator, encode_all
from .errors import BadInput
from .layers import find_blocks
from .memory import MemoryMeter, optimizer_state_bytes, trainable_param_count
from .methods import OptimConfig, get_method
from .models import load_model
from .norms import weight_norms
from .provenance import provenance


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Global learning-rate schedule: linear warm-up, then constant, linear or cosine decay to 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.scheduler == "constant":
        return cfg.lr
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.scheduler == "linear":
        return cfg.lr * (1.0 - progress)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("device 'cuda' is not available on this machine; valid choices: auto, cpu")
    return torch.device(name)


def _batches(loader):
    while True:
        yield from loader


def _norm_steps(cfg: TrainConfig) -> set[int]:
    every = cfg.norm_every or max(1, cfg.max_steps // 10)
    return set(range(0, cfg.max_steps + 1, every)) | {cfg.max_steps}


class _JsonLines:
    """A JSON-lines log; on resume it keeps the rows of the steps before the checkpoint."""

    def __init__(self, path: Path, keep_before: int = 0):
        kept = []
        if keep_before and path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] < keep_before]
        self.fh = open(path, "w")
        for line in kept:
            self.fh.write(line + "\n")

    def write(self, obj: dict) -> None:
        self.fh.write(json.dumps(obj) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class _Checkpoint:
    """Everything needed to resume a run exactly: weights, optimizer, method state, RNG, progress.
    Used only when the run's configuration is the same as the one that wrote it."""

    def __init__(self, directory: Path, config: dict):
        self.dir = directory
        self.path = directory / "state.pt"
        self.config = config

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        return state if state.get("config") == self.config else None

    def save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({**state, "config": self.config}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def _sync_gradients(params, accelerator) -> None:
    """Average gradients across processes for methods that cannot be wrapped in DDP (LISA)."""
    world = accelerator.num_processes
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
            p.grad.div_(world)


def _replicas_in_sync(model, accelerator) -> bool:
    """After data-parallel training every process must hold the same weights."""
    with torch.no_grad():
        local = torch.stack([sum(p.detach().double().sum() for p in model.parameters()),
                             sum(p.detach().double().abs().sum() for p in model.parameters())]).to(accelerator.device)
    gathered = accelerator.gather(local[None]).reshape(-1, 2)
    return bool(torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=1e-9, atol=0))


def train(cfg: TrainConfig, output_dir: str | Path, progress: bool = True) -> dict:
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType

    cfg.validate()
    output_dir = Path(output_dir)
    # --- resolve every input before anything is written ---
    method_cls = get_method(cfg.method)
    options = method_cls.parse_options(cfg.method_options)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    convs = load_conversations(cfg.dataset, "train", seed=cfg.seed, size=cfg.train_size)
    loaded = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype)
    tokenizer = loaded.tokenizer
    examples = encode_all(convs, tokenizer, cfg.max_length)
    if not examples:
        raise BadInput(f"dataset {cfg.dataset!r} has no example with response tokens within max_length={cfg.max_length}")
    method = method_cls(options, seed=cfg.seed)
    model = method.prepare_model(loaded.model)
    layout = find_blocks(model, getattr(options, "layers_attribute", None))

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by accelerate/torchrun: one device per process
        device = PartialState(cpu=device.type == "cpu").device
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if method.trains:
        model.train()
    model = model.to(device)
    # The optimizer is built before the Accelerator: transformers' GaLore set-up goes through
    # TrainingArguments, which resets accelerate's global state.
    optim_cfg = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay)
    optimizer = method.build_optimizer(model, optim_cfg) if method.trains else None

    accelerator = Accelerator(cpu=device.type == "cpu")
    dist = accelerator.distributed_type
    if dist in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        why = ("it changes the trainable parameter set during the run, which sharded (flattened) "
               "parameters fix at wrap time" if not method_cls.ddp_wrappable else
               "the shared training loop builds the optimizer on unsharded parameters")
        raise BadInput(f"method {cfg.method!r} is unsupported under {dist.value}: {why}; launch with "
                       f"DDP (accelerate's MULTI_GPU) or a single process")
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(examples, batch_size=cfg.batch_size, shuffle=True,
                                         generator=generator, collate_fn=PadCollator(tokenizer.pad_token_id))
    manual_sync = accelerator.num_processes > 1 and not method_cls.ddp_wrappable
    raw_model = model  # norms, counts and the method's switches work on the unwrapped module
    if method_cls.ddp_wrappable:
        model = accelerator.prepare_model(model)
    loader = accelerator.prepare_data_loader(loader)

    meter = MemoryMeter(accelerator.device)
    snapshot = cfg.memory_snapshot and accelerator.device.type == "cuda"
    if cfg.memory_snapshot and not snapshot:
        raise BadInput("memory_snapshot needs a CUDA device (torch.cuda.memory._record_memory_history)")
    if snapshot:
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    total_params = sum(p.numel() for p in model.parameters())
    norm_steps = _norm_steps(cfg)
    record = {"losses": [], "tokens": 0, "seconds": 0.0, "trainable_peak": 0, "opt_peak": 0}
    is_main = accelerator.is_main_process

    # only the main process writes results; the others write into a scratch directory. The main
    # process works in a hidden sibling of output_dir that survives a crash with its checkpoint.
    checkpointing = cfg.checkpoint_every > 0 and accelerator.num_processes == 1 and method.trains
    staging = atomic.resumable_dir(output_dir) if is_main else tempfile.TemporaryDirectory()
    with staging as out:
        out = Path(out)
        ckpt = _Checkpoint(out / "checkpoint", dataclasses.asdict(cfg))
        start_step = 0
        state = ckpt.load() if checkpointing else None
        if state is not None:
            start_step = state["step"]
            raw_model.load_state_dict(state["model"])
            method.load_state_dict(state["method"], raw_model, optimizer)
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            record = state["record"]
            meter.peak = state["memory_peak"]
        log = _JsonLines(out / "train_log.jsonl", keep_before=start_step)
        norms_log = _JsonLines(out / "weight_norms.jsonl", keep_before=start_step)
        bar = tqdm(total=cfg.max_steps, initial=start_step, desc=f"{cfg.method} on {loaded.name}",
                   disable=not (progress and is_main), dynamic_ncols=True)
        batches = _batches(loader)
        for _ in range(start_step):  # the same data order as an uninterrupted run
            next(batches)
        for step in range(start_step, cfg.max_steps if method.trains else 0):
            method.on_step_start(step, raw_model, optimizer)
            if step in norm_steps:
                norms_log.write({"step": step, **weight_norms(raw_model, layout)})
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = next(batches)
            n_tokens = int(batch["attention_mask"].sum())
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            meter.start_step()
            t0 = time.perf_counter()
            loss = model(**batch).loss
            accelerator.backward(loss)
            trainable = [p for p in model.parameters() if p.requires_grad]
            if manual_sync:
                _sync_gradients(trainable, accelerator)
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            mem = meter.end_step()
            opt_bytes = optimizer_state_bytes(optimizer)
            n_trainable = trainable_param_count(raw_model)
            record["losses"].append(float(loss.detach()))
            record["tokens"] += n_tokens
            record["seconds"] += dt
            record["trainable_peak"] = max(record["trainable_peak"], n_trainable)
            record["opt_peak"] = max(record["opt_peak"], opt_bytes)
            row = {"step": step, "loss": record["losses"][-1], "lr": lr, "active_layers": method.active_layers(),
                   "trainable_params": n_trainable, "optimizer_state_bytes": opt_bytes, **mem,
                   "tokens": n_tokens, "step_seconds": dt, "tokens_per_second": n_tokens / dt if dt > 0 else None}
            log.write(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_second']:.0f}")
            if checkpointing and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.max_steps:
                ckpt.save({"step": step + 1, "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                           "method": method.state_dict(), "rng": torch.get_rng_state(), "record": record,
                           "memory_peak": meter.peak})
        bar.close()
        ckpt.remove()
        steps_done = cfg.max_steps if method.trains else 0
        if steps_done in norm_steps or not method.trains:
            norms_log.write({"step": steps_done, **weight_norms(raw_model, layout)})
        log.close()
        norms_log.close()
        if snapshot:
            # open at https://pytorch.org/memory_viz
            torch.cuda.memory._dump_snapshot(str(out / "memory_snapshot.pickle"))
            torch.cuda.memory._record_memory_history(enabled=None)
        replicas_in_sync = _replicas_in_sync(model, accelerator) if accelerator.num_processes > 1 else None
        if is_main:
            method.save(raw_model, tokenizer, out / "model")
        losses = record["losses"]
        metrics = {
            "method": cfg.method,
            "model": cfg.model,
            "dataset": cfg.dataset,
            "steps": steps_done,
            "seed": cfg.seed,
            "total_params": total_params,
            "trainable_params_peak": record["trainable_peak"],
            "optimizer_state_bytes_peak": record["opt_peak"],
            "peak_memory_bytes": meter.peak_bytes(),
            "memory_kind": meter.kind,
            "tokens_per_second": record["tokens"] / record["seconds"] if record["seconds"] else None,
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "train_seconds": record["seconds"],
            "train_examples": len(examples),
            "decoder_blocks": layout.num_blocks,
            "num_processes": accelerator.num_processes,
            "replicas_in_sync": replicas_in_sync,
            "resumed_from_step": start_step or None,
            "blocks_path": layout.blocks_path,
            "model_source": loaded.source,
            "method_options": dataclasses.asdict(options),
            "provenance": provenance(dataclasses.asdict(cfg), accelerator.device),
        }
        atomic.write_json(out / "metrics.json", metrics)
    return metrics
