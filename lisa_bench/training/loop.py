"""The training loop every method shares: set-up, resume, then one optimizer step after another.

Writes, into the output directory (staged in a hidden sibling and renamed at the end):
``metrics.json``, ``train_log.jsonl`` (one line per step), ``weight_norms.jsonl`` and ``model/``
(full weights, or the peft adapter for LoRA).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import atomic
from ..config import TrainConfig
from ..data.registry import load_conversations
from ..data.tokenize import PadCollator, encode_all
from ..devices import resolve_device
from ..errors import BadInput
from ..memory.accounting import optimizer_state_bytes, trainable_param_count
from ..memory.meter import MemoryMeter
from ..methods import OptimConfig
from ..models import load_model
from ..provenance import provenance
from .checkpoint import Checkpoint
from .distributed import replicas_in_sync, sync_gradients
from .logs import JsonLines
from .norms import weight_norms
from .schedule import lr_at


@dataclass
class Run:
    """Everything the loop needs, built by ``setup``."""

    cfg: TrainConfig
    method: object
    model: torch.nn.Module  # what forward runs on (DDP-wrapped where the method allows)
    raw_model: torch.nn.Module  # norms, counts and the method's switches work on the unwrapped module
    optimizer: torch.optim.Optimizer | None
    accelerator: object
    loader: object
    layout: object
    tokenizer: object
    loaded: object
    num_examples: int
    meter: MemoryMeter
    manual_sync: bool  # average gradients ourselves (methods DDP cannot wrap)


@dataclass
class Record:
    """What the run has done so far; part of every checkpoint."""

    losses: list = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    trainable_peak: int = 0
    opt_peak: int = 0


def setup(cfg: TrainConfig) -> Run:
    """Resolve every input (nothing is written before this succeeds), then build model, method,
    optimizer, accelerator and data loader."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType

    cfg.validate()
    method = cfg.build_method()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    convs = load_conversations(cfg.dataset, "train", seed=cfg.seed, size=cfg.train_size)
    loaded = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype)
    examples = encode_all(convs, loaded.tokenizer, cfg.max_length)
    if not examples:
        raise BadInput(f"dataset {cfg.dataset!r} has no example with response tokens within max_length={cfg.max_length}")
    model = method.prepare_model(loaded.model)
    layout = method.find_blocks(model)
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
    optimizer = method.build_optimizer(model, OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay)) \
        if method.trains else None
    accelerator = Accelerator(cpu=device.type == "cpu")
    dist = accelerator.distributed_type
    if dist in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        why = ("it changes the trainable parameter set during the run, which sharded (flattened) "
               "parameters fix at wrap time" if not method.ddp_wrappable else
               "the shared training loop builds the optimizer on unsharded parameters")
        raise BadInput(f"method {cfg.method!r} is unsupported under {dist.value}: {why}; launch with "
                       f"DDP (accelerate's MULTI_GPU) or a single process")
    loader = torch.utils.data.DataLoader(examples, batch_size=cfg.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(cfg.seed),
                                         collate_fn=PadCollator(loaded.tokenizer.pad_token_id))
    raw_model = model
    if method.ddp_wrappable:
        model = accelerator.prepare_model(model)
    loader = accelerator.prepare_data_loader(loader)
    if cfg.memory_snapshot and accelerator.device.type != "cuda":
        raise BadInput("memory_snapshot needs a CUDA device (torch.cuda.memory._record_memory_history)")
    return Run(cfg, method, model, raw_model, optimizer, accelerator, loader, layout, loaded.tokenizer, loaded,
               len(examples), MemoryMeter(accelerator.device),
               manual_sync=accelerator.num_processes > 1 and not method.ddp_wrappable)


def train_step(run: Run, batch: dict) -> tuple[float, dict]:
    """One optimizer step on one batch: forward, backward, gradient sync and clipping, update."""
    cuda = run.accelerator.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    run.meter.start_step()
    t0 = time.perf_counter()
    loss = run.model(**batch).loss
    run.accelerator.backward(loss)
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    if run.manual_sync:
        sync_gradients(trainable, run.accelerator)
    if run.cfg.max_grad_norm:
        run.accelerator.clip_grad_norm_(trainable, run.cfg.max_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return float(loss.detach()), {"seconds": dt, **run.meter.end_step()}


def _batches(loader):
    while True:
        yield from loader


def _norm_steps(cfg: TrainConfig) -> set[int]:
    every = cfg.norm_every or max(1, cfg.max_steps // 10)
    return set(range(0, cfg.max_steps + 1, every)) | {cfg.max_steps}


def _resume(run: Run, ckpt: Checkpoint, record: Record) -> int:
    """Load the checkpoint, if any; return the step to start from."""
    state = ckpt.load()
    if state is None:
        return 0
    run.raw_model.load_state_dict(state["model"])
    run.method.load_state_dict(state["method"], run.raw_model, run.optimizer)
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    record.__dict__.update(state["record"])
    run.meter.peak = state["memory_peak"]
    return state["step"]


def train(cfg: TrainConfig, output_dir: str | Path, progress: bool = True) -> dict:
    run = setup(cfg)
    method, model, optimizer = run.method, run.raw_model, run.optimizer
    steps = cfg.max_steps if method.trains else 0
    is_main = run.accelerator.is_main_process
    snapshot = cfg.memory_snapshot
    if snapshot:
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    # Only the main process writes results, into a hidden sibling of output_dir that survives a
    # crash with its checkpoint; the others write into a scratch directory.
    checkpointing = cfg.checkpoint_every > 0 and run.accelerator.num_processes == 1 and method.trains
    staging = atomic.resumable_dir(output_dir) if is_main else tempfile.TemporaryDirectory()
    with staging as out:
        out = Path(out)
        record = Record()
        ckpt = Checkpoint(out / "checkpoint", dataclasses.asdict(cfg))
        start = _resume(run, ckpt, record) if checkpointing else 0
        log = JsonLines(out / "train_log.jsonl", keep_before=start)
        norms_log = JsonLines(out / "weight_norms.jsonl", keep_before=start)
        norm_steps = _norm_steps(cfg)
        bar = tqdm(total=cfg.max_steps, initial=start, desc=f"{cfg.method} on {run.loaded.name}",
                   disable=not (progress and is_main), dynamic_ncols=True)
        batches = _batches(run.loader)
        for _ in range(start):  # the same data order as an uninterrupted run
            next(batches)

        for step in range(start, steps):
            method.on_step_start(step, model, optimizer)
            if step in norm_steps:
                norms_log.write({"step": step, **weight_norms(model, run.layout, method)})
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = next(batches)
            n_tokens = int(batch["attention_mask"].sum())
            loss, stats = train_step(run, batch)
            dt = stats.pop("seconds")
            opt_bytes, n_trainable = optimizer_state_bytes(optimizer), trainable_param_count(model)
            record.losses.append(loss)
            record.tokens += n_tokens
            record.seconds += dt
            record.trainable_peak = max(record.trainable_peak, n_trainable)
            record.opt_peak = max(record.opt_peak, opt_bytes)
            log.write({"step": step, "loss": loss, "lr": lr, "active_layers": method.active_blocks(),
                       "trainable_params": n_trainable, "optimizer_state_bytes": opt_bytes, **stats,
                       "tokens": n_tokens, "step_seconds": dt, "tokens_per_second": n_tokens / dt if dt > 0 else None})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{n_tokens / dt:.0f}" if dt > 0 else "-")
            if checkpointing and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
                ckpt.save({"step": step + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "method": method.state_dict(), "rng": torch.get_rng_state(),
                           "record": dataclasses.asdict(record), "memory_peak": run.meter.peak})

        bar.close()
        ckpt.remove()
        if steps in norm_steps or not method.trains:
            norms_log.write({"step": steps, **weight_norms(model, run.layout, method)})
        log.close()
        norms_log.close()
        if snapshot:  # open at https://pytorch.org/memory_viz
            torch.cuda.memory._dump_snapshot(str(out / "memory_snapshot.pickle"))
            torch.cuda.memory._record_memory_history(enabled=None)
        in_sync = replicas_in_sync(run.model, run.accelerator) if run.accelerator.num_processes > 1 else None
        if is_main:
            method.save(model, run.tokenizer, out / "model")
        metrics = _metrics(run, record, steps, start, in_sync)
        atomic.write_json(out / "metrics.json", metrics)
    return metrics


def _metrics(run: Run, record: Record, steps: int, start: int, in_sync: bool | None) -> dict:
    cfg, losses = run.cfg, record.losses
    return {
        "method": cfg.method,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "steps": steps,
        "seed": cfg.seed,
        "total_params": sum(p.numel() for p in run.model.parameters()),
        "trainable_params_peak": record.trainable_peak,
        "optimizer_state_bytes_peak": record.opt_peak,
        "peak_memory_bytes": run.meter.peak_bytes(),
        "memory_kind": run.meter.kind,
        "tokens_per_second": record.tokens / record.seconds if record.seconds else None,
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "train_seconds": record.seconds,
        "train_examples": run.num_examples,
        "decoder_blocks": run.layout.num_blocks,
        "num_processes": run.accelerator.num_processes,
        "replicas_in_sync": in_sync,
        "resumed_from_step": start or None,
        "blocks_path": run.layout.blocks_path,
        "model_source": run.loaded.source,
        "method_options": dataclasses.asdict(run.method.options),
        "provenance": provenance(dataclasses.asdict(cfg), run.accelerator.device),
    }
