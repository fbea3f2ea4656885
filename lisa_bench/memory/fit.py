"""Will it fit? The analytic memory model applied to a training configuration, and byte sizes as people
write them (``80GiB``, ``24GB``, ``24e9``)."""

from __future__ import annotations

import re

from ..errors import BadInput

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text, what: str = "memory") -> int:
    """``80GiB`` (binary), ``24GB`` (decimal), ``24e9`` or a number of bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m[2].lower() not in UNITS:
            raise BadInput(f"{what} {text!r} is not a size; write it like 80GiB, 24GB or 24e9 (units: "
                           f"{', '.join(u for u in ('B', 'KB', 'MB', 'GB', 'TB', 'KiB', 'MiB', 'GiB', 'TiB'))})")
        value, unit = float(m[1]), m[2].lower()
    if value <= 0:
        raise BadInput(f"{what} {text!r} must be positive")
    if not unit and value < 2**20:  # `gpu_memory: 80` is 80 bytes: surely a unit left out
        raise BadInput(f"{what} {text!r} is {value:g} bytes, less than 1 MiB: give a unit, e.g. {value:g}GiB or "
                       f"{value:g}GB")
    return int(value * UNITS[unit])


def training_prediction(cfg, model: str, launcher: str = "single", processes: int = 1, device_type: str = "cuda"):
    """The memory model's prediction per GPU for a training configuration: a micro-batch of full
    ``max_length`` sequences on each process (the worst case), its precision, attention implementation
    and gradient checkpointing, under its launcher, over enough steps to reach the steady state, with the
    activations of the step where the whole run peaks."""
    from ..models import model_config
    from .model import predict

    cfg.build_method()  # loads a plugin method module, checks the options
    world = processes if launcher != "single" else 1
    return predict(model_config(model), cfg.method, cfg.method_options, cfg.process_batch_size(world), cfg.max_length,
                   cfg.precision, 3, device_type=device_type, attention=cfg.attn_implementation,
                   checkpointing=cfg.gradient_checkpointing, launcher=launcher, processes=world, whole_run=True)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_fit(cfg, model: str, gpu_memory: int, where: str, launcher: str = "single", processes: int = 1) -> int | None:
    """Refuse a training job whose predicted peak exceeds one GPU's memory; the prediction in bytes, or
    None where the model's config cannot be read offline."""
    try:
        pred = training_prediction(cfg, model, launcher, processes)
    except BadInput as exc:
        if "unknown model" in str(exc):
            return None
        raise
    peak = pred.peak_bytes
    if peak > gpu_memory:
        state = pred.weights_bytes + pred.grads_bytes + pred.optimizer_bytes  # what no batch setting shrinks
        if state > gpu_memory:
            remedies = [f"weights, gradients and optimizer state alone take {_size(state)}, so no batch, "
                        f"length or checkpointing setting fits: a lighter precision or method, or FSDP2 "
                        f"(launcher fsdp) over more GPUs"]
        else:
            remedies = ["lower batch_size or max_length"]
            if not cfg.gradient_checkpointing:
                remedies.append("turn on gradient_checkpointing")
            if launcher == "fsdp":
                remedies.append(f"shard over more GPUs than {processes} (launcher.num_processes x launcher.nodes; `lisa-bench plan "
                                f"--launcher fsdp --num-gpus N` finds how many)")
        raise BadInput(f"{where} on {model}: the memory model predicts {_size(peak)} per GPU, more than "
                       f"gpu_memory {_size(gpu_memory)} (batch_size {cfg.batch_size} x {cfg.max_length} "
                       f"tokens, {cfg.precision}, {cfg.attn_implementation}, gradient checkpointing "
                       f"{'on' if cfg.gradient_checkpointing else 'off'}"
                       f"{f', FSDP2 over {processes} GPUs' if launcher == 'fsdp' else ''}); "
                       + ", or ".join(remedies))
    return peak
