"""One memory cell measured in a process of its own: the training loop's own step (``training.loop.train_step``) on
random tokens, with the parts of the peak taken around it.

Measured breakdown:
- CUDA: from the allocator (``memory_allocated`` differences, ``max_memory_allocated`` peak, as the loop's meter
  reads them per step);
- CPU: by counting tensors (parameters, ``.grad``, optimizer state, and the unique storages that autograd saves for
  backward), peak as the rise of the resident set's high-water mark (VmHWM) over the process before the model was
  built.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys

import torch

from .accounting import SavedTensorCounter, tensor_bytes
from .cells import CELL, PROTOCOL, MemoryCell, Shape, compare, predicted_columns
from .meter import MemoryMeter, reset_rss_high_water_mark, rss_high_water_mark, rss_now

MARK = "LISA_BENCH_CELL "  # the line of the child's stdout that carries its result


class ActivationProbe:
    """The activations of a forward pass: on CUDA the allocator's growth across it; on the CPU the unique storages
    autograd saves (counted on both, so that both devices run the forward with the same hooks)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device, self.cuda = model, device, device.type == "cuda"
        self.bytes = 0  # the largest forward since the last reset

    @contextlib.contextmanager
    def forward(self):
        before = torch.cuda.memory_allocated(self.device) if self.cuda else 0
        counter = SavedTensorCounter(self.model.parameters())
        with counter.hooks():
            yield
        grown = (torch.cuda.memory_allocated(self.device) - before) if self.cuda else counter.bytes
        self.bytes = max(self.bytes, grown)


def _accelerator(dev: torch.device):
    from accelerate import Accelerator

    return Accelerator(cpu=dev.type == "cpu")


def measure_cell(model_name: str, cell: MemoryCell, shape: Shape) -> dict:
    """``shape.steps`` measured steps after one warm-up step (lazy library loading, allocator pools), each the
    loop's ``train_step`` on one micro-batch of random tokens, without gradient clipping (the paper's protocol)."""
    from transformers import AutoModelForCausalLM

    from ..methods import OptimConfig
    from ..models import model_config
    from ..precision import prepare_optimizer, resolve_precision
    from ..training.loop import StepParts, train_step

    precision = resolve_precision(shape.precision)
    dev = torch.device(shape.device)
    cuda = dev.type == "cuda"
    config = model_config(model_name)
    method = cell.build()
    torch.manual_seed(0)
    baseline = torch.cuda.memory_allocated(dev) if cuda else rss_now()
    with dev:
        model = AutoModelForCausalLM.from_config(config, dtype=precision.weights,
                                                 attn_implementation=shape.attn_implementation)
    model = method.prepare_model(model).to(dev)
    if shape.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    weights = (torch.cuda.memory_allocated(dev) - baseline) if cuda else sum(
        tensor_bytes(t) for t in list(model.parameters()) + list(model.buffers()))
    optimizer = prepare_optimizer(precision, method,
                                  method.build_optimizer(model, OptimConfig(
                                      lr=1e-5, kahan=precision.kahan,
                                      rounding_seed=0 if precision.stochastic else None)))
    # after the optimizer, as the loop builds it: transformers' GaLore set-up resets accelerate's global state
    accelerator = _accelerator(dev)
    probe = ActivationProbe(model, dev)
    parts = StepParts(model, optimizer, accelerator, precision, MemoryMeter(dev), probe=probe)
    gen = torch.Generator().manual_seed(0)
    grads = acts = opt_bytes = step_peak = 0
    times, trace = [], []
    for step in range(shape.steps + 1):  # step 0 warms up, not measured
        if step == 1 and not cuda:
            # the working set above what is resident now, plus the tensors resident now
            reset_rss_high_water_mark()
            start = rss_now() - (weights + method.optimizer_bytes(optimizer))
        method.on_step_start(step, model, optimizer)
        ids = torch.randint(0, config.vocab_size, (shape.batch_size, shape.seq_len), generator=gen).to(dev)
        probe.bytes = 0
        _, stats = train_step(parts, [{"input_ids": ids, "labels": ids}])
        del ids
        state = method.optimizer_bytes(optimizer)
        point = {"step": step, "seconds": stats["seconds"], "optimizer_bytes": state,
                 "grads_bytes": stats["gradient_bytes"], "activations_bytes": probe.bytes}
        if cuda:
            point.update(step_peak_bytes=stats["memory_bytes"] - baseline,
                         allocated_bytes=stats["cuda_allocated_bytes"] - baseline,
                         reserved_peak_bytes=stats["cuda_reserved_peak_bytes"],
                         active_peak_bytes=stats["cuda_active_peak_bytes"])
        else:
            point.update(rss_bytes=rss_now(), rss_hwm_bytes=rss_high_water_mark())
        trace.append(point)
        if step == 0:
            continue
        times.append(point["seconds"])
        grads, acts = max(grads, point["grads_bytes"]), max(acts, point["activations_bytes"])
        opt_bytes = max(opt_bytes, state)
        if cuda:
            step_peak = max(step_peak, point["step_peak_bytes"])
    peak = step_peak if cuda else (rss_high_water_mark() - start)
    sec = statistics.median(times)
    return {"status": "ok", "peak_bytes": peak, "weights_bytes": weights, "grads_bytes": grads,
            "optimizer_bytes": opt_bytes, "activations_bytes": acts, "seconds_per_iter": sec,
            "tokens_per_second": shape.batch_size * shape.seq_len / sec, "trace": trace}


def _child_main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    spec["cell"], spec["shape"] = MemoryCell(**spec["cell"]), Shape(**spec["shape"])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    try:
        row = measure_cell(**spec)
    except (torch.cuda.OutOfMemoryError, MemoryError):
        row = {"status": "oom"}
    print(MARK + json.dumps(row), flush=True)


def _available_bytes(device: str) -> int:
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free
    import psutil

    return psutil.virtual_memory().available


def run_cell(model: str, cell: MemoryCell, shape: Shape, timeout: float | None = None) -> tuple[dict, list[dict]]:
    """One table row and the cell's per-step trace (empty unless the cell ran); the cell runs in a child process,
    so that each starts from an empty allocator and resident set, and an out-of-memory cell costs only itself."""
    row = {"model": model, **cell.columns(), **shape.columns(), "protocol": PROTOCOL}
    row.update(predicted_columns(model, cell, shape))
    available = _available_bytes(shape.device)
    if row["predicted_peak_bytes"] > 0.9 * available:
        row["status"] = (f"skipped: predicted {row['predicted_peak_bytes'] / 2**30:.1f} GiB exceeds the "
                         f"{available / 2**30:.1f} GiB available (analytic prediction only)")
        return row, []
    spec = dict(model_name=model, cell=vars(cell), shape=vars(shape))
    # glibc: serve every allocation above 64 KiB by mmap, so that freed tensors leave the resident set
    # at once and the high-water mark follows live tensor memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    try:
        proc = subprocess.run([sys.executable, "-m", "lisa_bench.memory.measure", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        row["status"] = f"error: timed out after {timeout:g} s (--cell-timeout)"
        return row, []
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    trace = []
    if proc.returncode == 0 and lines:
        result = json.loads(lines[-1][len(MARK):])
        trace = [{**{k: row[k] for k in CELL}, **point} for point in result.pop("trace", [])]
        row.update(result)
    elif proc.returncode in (-9, 137):
        row["status"] = "oom (process killed)"
    else:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        row["status"] = f"error: {err[:300]}"
    return compare(row), trace


if __name__ == "__main__":
    _child_main(sys.argv[1:])
