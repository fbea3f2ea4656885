"""What a finished run's ``metrics.json`` holds: one field per metric, its meaning beside it, in the file's order.

A new metric is a field here and its value in `RunMetrics.of`; the tables, the report and the pipeline read the
file by these names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class RunMetrics:
    # the run
    method: str
    model: str
    dataset: str
    steps: int
    epochs: float  # passes over the training split (0 for a method that trains nothing)
    seed: int
    precision: str
    attn_implementation: str
    effective_batch_size: int  # examples per optimizer step, over accumulation and every process
    sharding: str
    total_params: int
    trainable_params_peak: int  # the most parameters trainable at once (LISA: at its largest sampled set)
    # memory, per process (sharded: each process's shards) and the largest of them
    optimizer_state_bytes_peak: int  # counted from the optimizer's state tensors
    optimizer_state_bytes_per_process: list
    gradient_bytes_peak: int
    gradient_bytes_per_process: list
    peak_memory_bytes: int  # CUDA: the allocator's peak; CPU: the process's RSS high-water mark
    peak_memory_bytes_per_process: list
    memory_kind: str  # which of the two peak_memory_bytes is
    # speed (training/throughput.py): the whole run's rate (warm-up included), then its steady state
    tokens_per_second: float | None
    warmup_steps: int
    warmup_seconds: float
    steady_tokens_per_second: float | None
    flops_per_token: float | None
    mfu: float | None
    device_name: str
    device_peak_flops: float | None
    padding_fraction: float | None  # the share of padded positions in the batches trained on
    # quality
    train_loss_first: float | None
    train_loss_last: float | None
    eval_loss: float | None  # the final held-out loss, on every validation conversation
    # forgetting (data/general.py): the change in loss on general text no split contains, from the base model
    general_loss_base: float | None
    general_loss: float | None
    forgetting: float | None  # general_loss - general_loss_base; positive: worse
    general_text: dict | None
    # the share of the intended update the weights of record did not take (training/updates.py), on a fixed
    # sample of trainable elements: at the first step, and over the window since the last held-out-loss point
    lost_update_share_first: float | None
    lost_update_share_last: float | None
    # the run's shape
    train_seconds: float
    train_examples: int
    validation_examples: int
    curve_examples: int  # the held-out conversations the learning curve's points are scored on
    decoder_blocks: int
    num_processes: int
    replicas_in_sync: bool | None  # DDP: every process's weights equal at the end; None where not checked
    resumed_from_step: int | None
    blocks_path: str
    model_source: str
    method_options: dict
    provenance: dict

    @classmethod
    def of(cls, run, record, start: int, in_sync: bool | None, general: float | None, gathered: dict,
           device_name: str, device_peak: float | None, speed: dict) -> "RunMetrics":
        """The metrics of a finished run (training/loop.py's Run and Record); ``gathered``: each per-process
        list (peaks, states, grads), ``speed``: throughput.summary's steady-state figures."""
        from ..provenance import provenance

        cfg, losses = run.cfg, record.losses
        evals = [record.eval_losses[s] for s in sorted(record.eval_losses)]
        lost = [record.lost_updates[s] for s in sorted(record.lost_updates)]
        peaks, states, grads = gathered["peaks"], gathered["states"], gathered["grads"]
        forgetting = general - record.general_loss_base if None not in (general, record.general_loss_base) else None
        return cls(
            method=cfg.method, model=cfg.model, dataset=cfg.dataset, steps=run.steps,
            epochs=run.steps / run.plan.steps_per_epoch if run.method.trains else 0.0, seed=cfg.seed,
            precision=cfg.precision, attn_implementation=cfg.attn_implementation,
            effective_batch_size=run.plan.batch_size * cfg.grad_accum_steps * run.accelerator.num_processes,
            sharding=cfg.sharding, total_params=sum(p.numel() for p in run.model.parameters()),
            trainable_params_peak=record.trainable_peak,
            optimizer_state_bytes_peak=max(states), optimizer_state_bytes_per_process=states,
            gradient_bytes_peak=max(grads), gradient_bytes_per_process=grads,
            peak_memory_bytes=max(peaks), peak_memory_bytes_per_process=peaks, memory_kind=run.meter.kind,
            tokens_per_second=record.tokens / record.seconds if record.seconds else None,
            **speed, device_name=device_name, device_peak_flops=device_peak,
            padding_fraction=1 - record.tokens / record.padded_tokens if record.padded_tokens else None,
            train_loss_first=losses[0] if losses else None, train_loss_last=losses[-1] if losses else None,
            eval_loss=evals[-1] if evals else None,
            general_loss_base=record.general_loss_base, general_loss=general, forgetting=forgetting,
            general_text=run.general_info or None,
            lost_update_share_first=lost[0] if lost else None, lost_update_share_last=lost[-1] if lost else None,
            train_seconds=record.seconds, train_examples=len(run.examples), validation_examples=len(run.validation),
            curve_examples=len(run.curve), decoder_blocks=run.layout.num_blocks,
            num_processes=run.accelerator.num_processes, replicas_in_sync=in_sync, resumed_from_step=start or None,
            blocks_path=run.layout.blocks_path, model_source=run.loaded.source,
            method_options=dataclasses.asdict(run.method.options),
            provenance=provenance(dataclasses.asdict(cfg), run.accelerator.device),
        )

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
