"""The training loop every method shares: set-up, resume, then one optimizer step after another.

A step is ``grad_accum_steps`` micro-batches whose loss is the mean over all their response tokens
(token-weighted, as transformers computes it since 4.46); ``max_steps``, the learning-rate schedule,
LISA's interval, logging and checkpoints all count optimizer steps. Writes, into the output directory
(staged in a hidden sibling and renamed at the end): ``metrics.json``, ``train_log.jsonl`` (one line per
step, with ``eval_loss`` where the held-out loss was measured), ``weight_norms.jsonl`` and ``model/``
(full weights, or the peft adapter for LoRA).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import atomic
from ..config import TrainConfig
from ..data.batching import StepPlan
from ..data.registry import load_conversations
from ..data.general import general_blocks
from ..data.tokenize import IGNORE_INDEX, PadCollator, encode_all
from ..devices import resolve_device
from ..errors import BadInput
from ..memory.accounting import tensor_bytes, trainable_param_count
from ..memory.meter import MemoryMeter
from ..methods import OptimConfig
from ..models import load_model
from ..precision import Precision, prepare_optimizer, resolve_precision
from ..runs import write_identity
from ..memory.speed import work_per_token
from . import faults, throughput
from .metrics import RunMetrics
from .checkpoint import Checkpoint
from .distributed import (DEEPSPEED_REFUSED, check_fsdp, full_state_dict, load_sharded_weights, replicas_in_sync,
                          shard_model, sync_gradients)
from .logs import JsonLines
from .norms import weight_norms
from .schedule import Schedule
from .trackers import Trackers
from .updates import LostUpdates
from .updates import warning as lost_warning

LOST_WARNING = 0.25  # a first step that loses more of its update than this warns, naming the sound precisions


@dataclass
class Run:
    """Everything the loop needs, built by ``setup``."""

    cfg: TrainConfig
    method: object
    model: torch.nn.Module  # what forward runs on (DDP-wrapped where the method allows)
    raw_model: torch.nn.Module  # norms, counts and the method's switches work on the unwrapped module
    optimizer: torch.optim.Optimizer | None
    accelerator: object
    precision: Precision
    examples: list[dict]
    validation: list[dict]
    curve: list[dict]  # the held-out examples of the eval_every points (the first curve_size conversations')
    plan: StepPlan
    steps: int  # optimizer steps of the whole run
    schedule: Schedule
    collate: PadCollator
    layout: object
    tokenizer: object
    loaded: object
    meter: MemoryMeter
    sharded: bool  # FSDP2: parameters, gradients and optimizer state in shards
    manual_sync: bool  # average gradients ourselves (methods DDP cannot wrap)
    general: list = field(default_factory=list)  # blocks of general text, for forgetting (data/general.py)
    general_info: dict = field(default_factory=dict)  # what they are: source, SHA-256, tokens
    probe: object = None  # see StepParts

    @property
    def max_grad_norm(self) -> float | None:
        return self.cfg.max_grad_norm


@dataclass
class StepParts:
    """What ``train_step`` uses of a Run, for a caller that measures the loop's step without a whole run (the
    memory bench, memory/measure.py). ``probe``, if set, has a ``forward()`` context manager entered around each
    micro-batch's forward pass (the bench counts the activations there)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    accelerator: object
    precision: Precision
    meter: MemoryMeter
    max_grad_norm: float | None = None
    sharded: bool = False
    manual_sync: bool = False
    probe: object = None


@dataclass
class Record:
    """What the run has done so far; part of every checkpoint."""

    losses: list = field(default_factory=list)
    eval_losses: dict = field(default_factory=dict)  # step -> held-out loss on all the held-out conversations
    tokens: int = 0
    padded_tokens: int = 0  # token slots of the micro-batches, padding included
    seconds: float = 0.0
    trainable_peak: int = 0
    lost_updates: dict = field(default_factory=dict)  # step -> share of the intended update lost to rounding
    opt_peak: int = 0  # this process's (sharded: its shards'); saved per process in a checkpoint
    grad_peak: int = 0  # bytes of this process's gradients at the optimizer step (sharded: its shards)
    step_seconds: list = field(default_factory=list)  # per step, for the steady-state throughput (throughput.py)
    step_tokens: list = field(default_factory=list)
    step_flops: list = field(default_factory=list)  # matrix FLOPs per token of each step's trained set
    general_loss_base: float | None = None  # the untrained model's loss on the general text (forgetting)


def setup(cfg: TrainConfig) -> Run:
    """Resolve every input (nothing is written before this succeeds), then build model, method,
    optimizer, accelerator and the plan of which examples each step trains on."""
    cfg.validate()
    method, precision = cfg.build_method(), resolve_precision(cfg.precision)
    device, world, rank = _setup_device(cfg, method)
    batch_size = cfg.process_batch_size(world)
    torch.manual_seed(cfg.seed)
    # sharded: process 0 loads the weights, the others build the model on the meta device
    loaded = load_model(cfg.model, seed=cfg.seed, dtype=precision.weights_name,
                        attn_implementation=cfg.attn_implementation, weights=cfg.sharding != "fsdp" or rank == 0)
    examples, validation, curve = _setup_data(cfg, loaded.tokenizer)
    model, layout = _setup_model(cfg, method, loaded.model, device, world, rank)
    # The optimizer is built before the Accelerator: transformers' GaLore set-up goes through
    # TrainingArguments, which resets accelerate's global state.
    optimizer = method.build_optimizer(model, OptimConfig(
        lr=cfg.lr, weight_decay=cfg.weight_decay, kahan=precision.kahan,
        rounding_seed=cfg.seed if precision.stochastic else None)) if method.trains else None
    optimizer = prepare_optimizer(precision, method, optimizer)  # fp32 masters under bf16-master
    accelerator = _setup_accelerator(cfg, device)
    plan, steps = _setup_plan(cfg, method, examples, batch_size, accelerator)
    sharded = cfg.sharding == "fsdp"
    raw_model = model
    if method.ddp_wrappable and not sharded:
        model = accelerator.prepare_model(model)
    general, general_info = general_blocks(loaded.tokenizer, cfg.forgetting_tokens, cfg.max_length) \
        if cfg.forgetting_tokens else ([], {})
    return Run(cfg, method, model, raw_model, optimizer, accelerator, precision, examples, validation, curve, plan, steps,
               Schedule.of(cfg, steps), PadCollator(loaded.tokenizer.pad_token_id), layout, loaded.tokenizer, loaded,
               MemoryMeter(accelerator.device), sharded=sharded,
               manual_sync=accelerator.num_processes > 1 and not method.ddp_wrappable and not sharded,
               general=general, general_info=general_info)


def _setup_device(cfg: TrainConfig, method) -> tuple[torch.device, int, int]:
    """This process's device, the world size and rank (torchrun's), with what sharding needs checked."""
    from accelerate import PartialState

    device = resolve_device(cfg.device)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if cfg.sharding == "fsdp":
        if method.not_shardable:
            raise BadInput(f"method {cfg.method!r} cannot train on FSDP2-sharded parameters: {method.not_shardable}; "
                           f"valid launchers for it: single, ddp")
        check_fsdp(world, device.type)
    if cfg.memory_snapshot and device.type != "cuda":
        raise BadInput("memory_snapshot needs a CUDA device (torch.cuda.memory._record_memory_history)")
    if world > 1:  # launched by torchrun or accelerate: one device per process, the process group up
        device = PartialState(cpu=device.type == "cpu").device
    return device, world, rank


def _setup_data(cfg: TrainConfig, tokenizer) -> tuple[list[dict], list[dict], list[dict]]:
    """The encoded training, held-out and learning-curve examples."""
    convs = load_conversations(cfg.dataset, "train", seed=cfg.seed, size=cfg.train_size)
    examples = encode_all(convs, tokenizer, cfg.max_length)
    if not examples:
        raise BadInput(f"dataset {cfg.dataset!r} has no example with response tokens within max_length={cfg.max_length}")
    held_out = load_conversations(cfg.dataset, "validation", seed=cfg.seed, size=cfg.eval_size, allow_empty=True)
    validation = encode_all(held_out, tokenizer, cfg.max_length)
    # encode_all keeps the conversations' order, so the curve's examples are a prefix of the held-out ones
    curve = validation if cfg.curve_size is None else \
        validation[:len(encode_all(held_out[:cfg.curve_size], tokenizer, cfg.max_length))]
    return examples, validation, curve


def _setup_model(cfg: TrainConfig, method, model: torch.nn.Module, device, world: int, rank: int):
    """The method's model on the device (FSDP2: sharded, process 0's weights sent to every process)."""
    model = method.prepare_model(model)
    layout = method.find_blocks(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.sharding == "fsdp":
        full = model.state_dict() if rank == 0 else {}
        model = shard_model(model, layout, device, world)
        load_sharded_weights(model, full, device)
        del full
    else:
        model = model.to(device)
    if method.trains:
        model.train()
    return model, layout


def _setup_accelerator(cfg: TrainConfig, device: torch.device):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    # trackers log into the run's directory, set once it exists (accelerate wants one up front)
    accelerator = Accelerator(cpu=device.type == "cpu", log_with=Trackers.accelerate_name(cfg.report_to),
                              project_dir=tempfile.gettempdir())
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise BadInput(f"accelerate's {accelerator.distributed_type.value} plugin is not used by lisa-bench: launch "
                       f"with plain torchrun/accelerate (no FSDP or DeepSpeed config) and --set sharding=fsdp for "
                       f"FSDP2; DeepSpeed is refused ({DEEPSPEED_REFUSED})")
    return accelerator


def _setup_plan(cfg: TrainConfig, method, examples: list[dict], batch_size: int, accelerator) -> tuple[StepPlan, int]:
    """Which examples each step of each process trains on, and the run's optimizer steps."""
    plan = StepPlan([len(e["input_ids"]) for e in examples], batch_size, cfg.grad_accum_steps, cfg.seed,
                    accelerator.num_processes, accelerator.process_index, cfg.group_by_length)
    if not plan.steps_per_epoch:
        raise BadInput(f"batch_size={batch_size} x {accelerator.num_processes} processes is more than the "
                       f"{len(examples)} training examples")
    steps = (cfg.max_steps if cfg.max_steps is not None else plan.steps_for_epochs(cfg.num_epochs)) \
        if method.trains else 0
    if method.trains and cfg.eval_every is not None and cfg.eval_every > steps:
        raise BadInput(f"eval_every {cfg.eval_every} is larger than the run ({steps} steps): it would log no "
                       f"held-out point before the end; valid: 1 to {steps}, or none")
    return plan, steps


def _micro_batch(run: Run, indices: list[int]) -> dict:
    """The examples of one micro-batch; an empty share (the end of an epoch on several processes) becomes one
    row with every label masked, which adds nothing to the loss or the gradients."""
    if indices:
        return run.collate([run.examples[i] for i in indices])
    batch = run.collate(run.examples[:1])
    batch["labels"].fill_(IGNORE_INDEX)
    return batch


def _targets(batch: dict) -> int:
    """Tokens that carry loss: labels after the shift, padding and prompts excluded."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def train_step(run: Run | StepParts, micro_batches: list[dict]) -> tuple[float, dict]:
    """One optimizer step: forward and backward over the micro-batches (the loss of each divided by the
    response tokens of all of them, on all processes), gradient sync and clipping, update. Forward runs
    without a KV cache, as transformers' Trainer does (it sets use_cache=False): a cache would copy every
    block's keys and values, and backpropagate through the copies, for nothing."""
    acc, device = run.accelerator, run.accelerator.device
    if device.type == "cuda":
        torch.cuda.synchronize()
    with _phase("meter"):
        run.meter.start_step()
    t0 = time.perf_counter()
    targets = torch.tensor(sum(_targets(b) for b in micro_batches), device=device)
    if acc.num_processes > 1:  # token-weighted over every process
        targets = acc.reduce(targets, reduction="sum")
    # each process's loss is its share of the global mean: FSDP2 sums the shares' gradients; DDP (and our own
    # sync) average them, hence x processes
    scale = 1 if run.sharded else acc.num_processes
    loss = torch.zeros((), device=device)
    for i, batch in enumerate(micro_batches):
        loss += _forward_backward(run, batch, targets, scale, sync=i == len(micro_batches) - 1)
    with _phase("clip"):
        trainable = [p for p in run.model.parameters() if p.requires_grad]
        if run.manual_sync:
            sync_gradients(trainable, acc)
        grad_bytes = sum(tensor_bytes(p.grad) for p in trainable if p.grad is not None)
        grad_norm = None  # before clipping: AdamW and clipping hide a constant factor on the gradients, this does not
        if run.max_grad_norm:
            norm = acc.clip_grad_norm_(trainable, run.max_grad_norm)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    with _phase("optimizer"):
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if acc.num_processes > 1:
        loss = acc.reduce(loss, reduction="sum")  # each process holds its share of the global mean
    with _phase("meter"):
        memory = run.meter.end_step()
    return float(loss), {"seconds": dt, "grad_norm": grad_norm, "gradient_bytes": grad_bytes, **memory}


def _forward_backward(run: Run | StepParts, batch: dict, targets: torch.Tensor, scale: int, sync: bool) -> torch.Tensor:
    """Forward and backward of one micro-batch; returns its loss, detached. A function of its own so that
    nothing refers to the loss's autograd graph once it returns, as in transformers' Trainer.training_step:
    a graph kept alive until after the optimizer step (a local variable of the step) keeps its thousands of
    small nodes allocated among the activations' freed memory, and on the CPU AdamW's per-parameter
    temporaries then page-faulted fresh memory instead of reusing it (SmolLM2-135M, batch 4 x 256: 158,050
    minor faults in the optimizer step against 55,298, and the step 5% slower than the Trainer's)."""
    acc = run.accelerator
    batch = {k: v.to(acc.device) for k, v in batch.items()}
    with _phase("forward"), run.probe.forward() if run.probe else _nothing(), \
            _nothing() if sync else acc.no_sync(run.model), run.precision.autocast(acc.device.type):
        part = run.model(**batch, use_cache=False, num_items_in_batch=targets).loss
    with _phase("backward"):
        acc.backward(part * scale)
    return part.detach()


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _phase(name: str):
    """A part of the step as torch.profiler names it (``lisa_bench.<name>``; training/profile.py adds them up); a
    few microseconds where no profiler runs."""
    return torch.profiler.record_function(PHASE_PREFIX + name)


PHASE_PREFIX = "lisa_bench."


@torch.no_grad()
def validation_loss(run: Run, examples: list[dict] | None = None, progress: bool = False,
                    batch_size: int | None = None, desc: str = "held-out loss") -> float | None:
    """Mean loss over every response token of the held-out split, or of ``examples`` (each process takes its
    share), in batches of ``batch_size`` (default eval_batch_size); ``progress``: a bar over the batches (the
    final pass over all held-out conversations takes minutes)."""
    examples = run.validation if examples is None else examples
    if not examples:
        return None
    acc, device = run.accelerator, run.accelerator.device
    size = batch_size or run.cfg.eval_batch_size or run.plan.batch_size
    mine = examples[acc.process_index::acc.num_processes]
    # every process runs the same number of batches (a sharded model gathers its weights in each forward
    # on all of them together); a process short of examples repeats one and does not count it
    batches = -(-len(examples) // acc.num_processes // size) if run.sharded else -(-len(mine) // size)
    total = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, tokens
    run.raw_model.eval()
    for i in tqdm(range(0, batches * size, size), desc=desc, disable=not progress, leave=False,
                  dynamic_ncols=True):
        rows, counted = (mine[i:i + size], True) if mine[i:i + size] else (examples[:1], False)
        batch = {k: v.to(device) for k, v in run.collate(rows).items()}
        with run.precision.autocast(device.type):
            summed = run.raw_model(**batch, use_cache=False, num_items_in_batch=1).loss  # reduction to a sum
        if counted:
            total += torch.tensor([float(summed), _targets(batch)], dtype=torch.float64, device=device)
    run.raw_model.train()
    if acc.num_processes > 1:
        total = acc.reduce(total, reduction="sum")
    return float(total[0] / total[1])


def general_loss(run: Run, progress: bool = False) -> float | None:
    """The loss on the general text (forgetting), at the training micro-batch size: a forward pass of a training
    batch's shape without gradients, so it adds nothing to the run's memory peak."""
    return validation_loss(run, run.general, progress=progress, batch_size=run.plan.batch_size,
                           desc="general-text loss")


def _norm_steps(cfg: TrainConfig, steps: int) -> set[int]:
    every = cfg.norm_every or max(1, steps // 10)
    return set(range(0, steps + 1, every)) | {steps}


def _resume(run: Run, ckpt: Checkpoint, record: Record) -> int:
    """Load the checkpoint, if any; return the step to start from."""
    state = ckpt.load(run.raw_model, run.optimizer, run.method)
    if state is None:
        return 0
    record.__dict__.update(state["record"])  # what every process shares: process 0's
    record.eval_losses = {int(k): v for k, v in record.eval_losses.items()}
    record.lost_updates = {int(k): v for k, v in record.lost_updates.items()}
    mine = {key: values[run.accelerator.process_index] for key, values in state["per_process"].items()}
    run.meter.peak = mine.pop("memory_peak")  # each process's own peaks, not process 0's
    for key, value in mine.items():
        setattr(record, key, value)
    return state["step"]


def _gather(value) -> list:
    """One value from every process, in process order."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return [value]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def train(cfg: TrainConfig, output_dir: str | Path, progress: bool = True, experiment: str | None = None) -> dict:
    """``experiment``: the name the run is reported under (run.json; default the method's name). The output
    directory is claimed for this run alone; a full or unwritable disk ends in one line, SIGTERM or SIGUSR1 in
    a checkpoint at the next step (faults.py, docs/faults.md)."""
    with faults.one_writer(output_dir), faults.storage_errors(output_dir), \
            faults.Preemption() as stop:
        return _train(cfg, output_dir, progress, experiment, stop)


def _train(cfg: TrainConfig, output_dir: str | Path, progress: bool, experiment: str | None,
           stop: faults.Preemption) -> dict:
    run = setup(cfg)
    method, optimizer, steps = run.method, run.optimizer, run.steps
    is_main = run.accelerator.is_main_process
    if cfg.memory_snapshot:
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    # Only the main process writes results, into a hidden sibling of output_dir that survives a
    # crash with its checkpoint; the others write into a scratch directory.
    checkpointing = cfg.checkpoint_every > 0 and method.trains
    staging = atomic.resumable_dir(output_dir) if is_main else tempfile.TemporaryDirectory()
    with staging as out:
        out = Path(out)
        record = Record()
        # every process reads and writes the main process's checkpoint directory
        ckpt = Checkpoint(atomic.partial_dir(output_dir) / "checkpoint", dataclasses.asdict(cfg), run.sharded)
        start = _resume(run, ckpt, record) if checkpointing else 0
        if start == 0:  # the base model's loss on the general text, before any update
            record.general_loss_base = general_loss(run)
        logs = _Logs(Trackers(run.accelerator, cfg, out), JsonLines(out / "train_log.jsonl", keep_before=start),
                     JsonLines(out / "weight_norms.jsonl", keep_before=start), _norm_steps(cfg, steps),
                     progress and is_main)
        lost = LostUpdates(optimizer, cfg.seed) if method.trains else None
        bar = tqdm(total=steps, initial=start, desc=f"{cfg.method} on {run.loaded.name}",
                   disable=not (progress and is_main), dynamic_ncols=True)
        for step in range(start, steps):
            row = _step(run, step, record, lost, logs)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_second'] or 0:.0f}")
            if checkpointing and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
                _save(run, ckpt, record, step + 1)
            if step + 1 < steps and (signal := stop.requested(run.accelerator)):
                _preempted(run, ckpt, record, step + 1, signal, checkpointing)
        bar.close()
        if checkpointing:
            ckpt.remove()
        metrics = _finish(run, record, logs, out, start)
        write_identity(out, cfg.model, experiment or cfg.method, cfg.seed)
    return metrics


@dataclass
class _Logs:
    trackers: Trackers
    steps: JsonLines  # train_log.jsonl
    norms: JsonLines  # weight_norms.jsonl
    norm_steps: set[int]
    progress: bool  # bars for the long passes (the final held-out loss)
    flops: dict = field(default_factory=dict)  # the trained blocks -> matrix FLOPs per token (throughput.py)


def _step(run: Run, step: int, record: Record, lost: LostUpdates, logs: _Logs) -> dict:
    """One optimizer step with what is measured around it; returns its row of train_log.jsonl."""
    cfg, method, model, optimizer = run.cfg, run.method, run.raw_model, run.optimizer
    with _phase("switch"):
        method.on_step_start(step, model, optimizer)
    if step in logs.norm_steps:
        with _phase("norms"):
            logs.norms.write({"step": step, **weight_norms(model, run.layout, method)})
    lr = run.schedule.lr_at(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    active = method.active_blocks()  # the blocks this step trains (a method may switch inside its step)
    with _phase("data"):
        shares = run.plan.step(step)
        micro = [_micro_batch(run, idx) for idx in shares]
    evaluates = (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or step + 1 == run.steps
    loss, stats = train_step(run, micro)
    if step == 0 or evaluates:  # updates lost to rounding: the first step, then each window to a held-out point
        with _phase("lost_updates_take"):
            window = lost.take()
        stats.update(window)
        share = record.lost_updates[step] = window["lost_update_share"]
        # the warning is for a recipe that drops updates (pure bf16); under bf16-sr a step keeps its update in
        # expectation, and one step's share on the sample scatters with the rounding draws
        if step == 0 and run.accelerator.is_main_process and share is not None and share > LOST_WARNING \
                and not run.precision.keeps_updates:
            print(lost_warning(share, cfg.precision, cfg.lr, LOST_WARNING), file=sys.stderr)
    dt = stats.pop("seconds")
    n_tokens = sum(len(run.examples[i]["input_ids"]) for idx in shares for i in idx)
    record.padded_tokens += sum(b["attention_mask"].numel() for b, idx in zip(micro, shares) if idx)
    with _phase("accounting"):
        opt_bytes, n_trainable = method.optimizer_bytes(optimizer), trainable_param_count(model)
        key = tuple(active) if active is not None else None  # the trained set changes only when the method switches
        if key not in logs.flops:
            logs.flops[key] = work_per_token(model, run.layout, max(1, n_tokens))[0]
    record.losses.append(loss)
    record.tokens += n_tokens
    record.seconds += dt
    record.step_seconds.append(dt)
    record.step_tokens.append(n_tokens)
    record.step_flops.append(logs.flops[key])
    record.trainable_peak = max(record.trainable_peak, n_trainable)
    record.opt_peak = max(record.opt_peak, opt_bytes)
    record.grad_peak = max(record.grad_peak, stats["gradient_bytes"])
    row = {"step": step, "loss": loss, "lr": lr, "active_layers": active,
           "trainable_params": n_trainable, "optimizer_state_bytes": opt_bytes, **stats,
           "tokens": n_tokens, "step_seconds": dt, "tokens_per_second": n_tokens / dt if dt > 0 else None}
    if evaluates:  # the curve's points all on the same conversations; the final score on all of them
        last = step + 1 == run.steps
        row["eval_loss"] = validation_loss(run, run.curve, progress=logs.progress and last)
        row["eval_examples"] = len(run.curve)
        if run.curve is run.validation:
            record.eval_losses[step] = row["eval_loss"]
        elif last:
            record.eval_losses[step] = validation_loss(run, progress=logs.progress)
    with _phase("log"):
        logs.steps.write(row)
        logs.trackers.log(row, step)
    return row


def _finish(run: Run, record: Record, logs: _Logs, out: Path, start: int) -> dict:
    """After the last step: the untrained model's score, the last norms, the model and metrics.json."""
    cfg, method, model = run.cfg, run.method, run.raw_model
    logs.trackers.finish()
    if not method.trains:  # the untrained model's held-out loss, for the tables
        record.eval_losses[0] = validation_loss(run, progress=logs.progress)
    general = general_loss(run, progress=logs.progress) if method.trains else record.general_loss_base
    if run.steps in logs.norm_steps or not method.trains:
        logs.norms.write({"step": run.steps, **weight_norms(model, run.layout, method)})
    logs.steps.close()
    logs.norms.close()
    if cfg.memory_snapshot:  # open at https://pytorch.org/memory_viz
        torch.cuda.memory._dump_snapshot(str(out / "memory_snapshot.pickle"))
        torch.cuda.memory._record_memory_history(enabled=None)
    replicated = run.accelerator.num_processes > 1 and not run.sharded
    in_sync = replicas_in_sync(run.model, run.accelerator) if replicated else None
    whole = full_state_dict(model) if run.sharded else None  # a collective: every process takes part
    if run.accelerator.is_main_process:
        method.save(model, run.tokenizer, out / "model", state_dict=whole)
    del whole
    metrics = _metrics(run, record, start, in_sync, general)
    atomic.write_json(out / "metrics.json", metrics)
    return metrics


def _save(run: Run, ckpt: Checkpoint, record: Record, step: int) -> None:
    ckpt.save(step, run.raw_model, run.optimizer, run.method,
              {"record": dataclasses.asdict(record),
               "per_process": {"memory_peak": _gather(run.meter.peak),
                               **{k: _gather(getattr(record, k)) for k in ("opt_peak", "grad_peak")}}})


def _preempted(run: Run, ckpt: Checkpoint, record: Record, step: int, signal: str, checkpointing: bool):
    """Stop at this step boundary, every process together: checkpoint (unless one was just written) and
    exit faults.REQUEUE, for the scheduler to start the same command again."""
    if checkpointing and ckpt.step != step:
        _save(run, ckpt, record, step)
    kept = f"checkpoint of step {step} in {ckpt.dir}" if checkpointing else "no checkpoint (checkpoint_every 0)"
    faults.say(f"stopped by {signal} after step {step} of {run.steps}: {kept}; rerun the same command to "
               f"{'resume' if checkpointing else 'start again'} (exit {faults.REQUEUE})")
    raise faults.Preempted()


def _metrics(run: Run, record: Record, start: int, in_sync: bool | None, general: float | None = None) -> dict:
    """metrics.json (training/metrics.py); every process takes part (each gathers its own peaks)."""
    gathered = {"peaks": _gather(run.meter.peak_bytes()), "states": _gather(record.opt_peak),
                "grads": _gather(record.grad_peak)}
    device_name, peak = throughput.device_peak(run.accelerator.device, run.precision.weights)
    speed = throughput.summary(record.step_seconds, record.step_tokens, record.step_flops, peak)
    return RunMetrics.of(run, record, start, in_sync, general, gathered, device_name, peak, speed).to_dict()
