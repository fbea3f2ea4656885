"""``lisa-bench memory``: peak memory and speed per (model, method) cell, each in its own process.

Protocol (the paper's): random token sequences of ``seq_len`` tokens, batch size 1, no gradient
checkpointing, no offloading, eager attention (no flash attention), AdamW. Weights are random:
memory and speed do not depend on their values.

Measured breakdown:
- CUDA: from the allocator (``memory_allocated`` differences, ``max_memory_allocated`` peak);
- CPU: by counting tensors (parameters, ``.grad``, optimizer state, and the unique storages that
  autograd saves for backward), peak as the rise of the resident set's high-water mark (VmHWM)
  over the process before the model was built.
Every row carries the analytic prediction of ``memory_model`` next to the measurement.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .errors import BadInput

CSV_COLUMNS = ["model", "method", "device", "dtype", "batch_size", "seq_len", "steps", "status", "peak_bytes",
               "weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "predicted_peak_bytes",
               "predicted_weights_bytes", "predicted_grads_bytes", "predicted_optimizer_bytes",
               "predicted_activations_bytes", "predicted_transient_bytes", "predicted_step_bytes",
               "predicted_optimizer_forward_bytes", "peak_vs_predicted",
               "flag", "seconds_per_iter", "tokens_per_second", "speed_vs_full", "protocol"]
PROTOCOL = "random tokens, no gradient checkpointing, no offloading, eager attention, AdamW"
TOLERANCE = 0.15
# per step of each cell (step 0 is the warm-up); CUDA: allocator stats, CPU: resident set
TRACE_COLUMNS = ["model", "method", "device", "dtype", "batch_size", "seq_len", "step", "seconds", "optimizer_bytes", "grads_bytes", "activations_bytes",
                 "step_peak_bytes", "allocated_bytes", "reserved_peak_bytes", "active_peak_bytes", "rss_bytes",
                 "rss_hwm_bytes"]


# ---------------------------------------------------------------------------------------------
# one cell, in a child process
# ---------------------------------------------------------------------------------------------
def _rss_now() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())[1]) * 1024


def _rss_hwm() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())[1]) * 1024


def _reset_hwm() -> None:
    """Return freed heap pages to the OS, then restart the resident high-water mark."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    Path("/proc/self/clear_refs").write_text("5")


class SavedTensorCounter:
    """Counts the unique storages autograd saves for backward, parameters excluded."""

    def __init__(self, params):
        self.param_ptrs = {p.untyped_storage().data_ptr() for p in params}
        self.seen: dict[int, int] = {}

    def pack(self, t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.param_ptrs:
            self.seen[ptr] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())


def measure_cell(model_name: str, label: str, device: str, dtype_name: str, batch: int, seq: int, steps: int) -> dict:
    from transformers import AutoModelForCausalLM

    from .architectures import architecture_config
    from .memory import optimizer_state_bytes
    from .memory_model import parse_cell
    from .methods import OptimConfig, get_method
    from .models.registry import resolve_dtype

    dtype = resolve_dtype(dtype_name)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    cell = parse_cell(label)
    config = architecture_config(model_name)
    torch.manual_seed(0)
    baseline = torch.cuda.memory_allocated(dev) if cuda else _rss_now()
    with dev:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
    cls = get_method(cell.method)
    method = cls(cls.parse_options(cell.options), seed=0)
    model = method.prepare_model(model).to(dev)
    model.train()
    weights = (torch.cuda.memory_allocated(dev) - baseline) if cuda else sum(
        t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    optimizer = method.build_optimizer(model, OptimConfig(lr=1e-5))
    gen = torch.Generator().manual_seed(0)
    vocab = config.vocab_size
    grads = acts = opt_bytes = 0
    times = []
    trace = []
    step_peak = 0
    for step in range(steps + 1):  # step 0 warms up (lazy library loading, allocator pools), not measured
        if step == 1 and not cuda:
            # the working set above what is resident now, plus the tensors resident now
            _reset_hwm()
            start = _rss_now() - (weights + optimizer_state_bytes(optimizer))
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)  # a peak per step; the cell's peak is their maximum
        method.on_step_start(step, model, optimizer)
        ids = torch.randint(0, vocab, (batch, seq), generator=gen).to(dev)
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        before = torch.cuda.memory_allocated(dev) if cuda else 0
        counter = SavedTensorCounter(model.parameters())
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            loss = model(input_ids=ids, labels=ids).loss
        step_acts = (torch.cuda.memory_allocated(dev) - before) if cuda else counter.bytes
        loss.backward()
        step_grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        del loss
        state = optimizer_state_bytes(optimizer)
        point = {"step": step, "seconds": seconds, "optimizer_bytes": state, "grads_bytes": step_grads,
                 "activations_bytes": step_acts}
        if cuda:
            stats = torch.cuda.memory_stats(dev)
            point.update(step_peak_bytes=torch.cuda.max_memory_allocated(dev) - baseline,
                         allocated_bytes=torch.cuda.memory_allocated(dev) - baseline,
                         reserved_peak_bytes=torch.cuda.max_memory_reserved(dev),
                         active_peak_bytes=stats.get("active_bytes.all.peak", 0))
        else:
            point.update(rss_bytes=_rss_now(), rss_hwm_bytes=_rss_hwm())
        trace.append(point)
        if step == 0:
            continue
        times.append(seconds)
        grads, acts, opt_bytes = max(grads, step_grads), max(acts, step_acts), max(opt_bytes, state)
        if cuda:
            step_peak = max(step_peak, point["step_peak_bytes"])
    peak = step_peak if cuda else (_rss_hwm() - start)
    sec = statistics.median(times)
    return {"status": "ok", "peak_bytes": peak, "weights_bytes": weights, "grads_bytes": grads,
            "optimizer_bytes": opt_bytes, "activations_bytes": acts, "seconds_per_iter": sec,
            "tokens_per_second": batch * seq / sec, "trace": trace}


def _child_main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        row = measure_cell(**spec)
    except (torch.cuda.OutOfMemoryError, MemoryError):
        row = {"status": "oom"}
    print("LISA_BENCH_CELL " + json.dumps(row), flush=True)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def _available_bytes(device: str) -> int:
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free
    import psutil

    return psutil.virtual_memory().available


def run_cell(model: str, label: str, device: str, dtype: str, batch: int, seq: int, steps: int,
             timeout: float | None = None) -> tuple[dict, list[dict]]:
    """One table row and the cell's per-step trace (empty unless the cell ran)."""
    row = {"model": model, "method": label, "device": device, "dtype": dtype, "batch_size": batch,
           "seq_len": seq, "steps": steps, "protocol": PROTOCOL}
    row.update(predicted_columns(model, label, device, dtype, batch, seq, steps))
    available = _available_bytes(device)
    if row["predicted_peak_bytes"] > 0.9 * available:
        row["status"] = (f"skipped: predicted {row['predicted_peak_bytes'] / 2**30:.1f} GiB exceeds the "
                         f"{available / 2**30:.1f} GiB available (analytic prediction only)")
        return row, []
    spec = dict(model_name=model, label=label, device=device, dtype_name=dtype, batch=batch, seq=seq, steps=steps)
    # glibc: serve every allocation above 64 KiB by mmap, so that freed tensors leave the resident set
    # at once and the high-water mark follows live tensor memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    try:
        proc = subprocess.run([sys.executable, "-m", "lisa_bench.memory_bench", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        row["status"] = f"error: timed out after {timeout:g} s (--cell-timeout)"
        return row, []
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("LISA_BENCH_CELL ")]
    trace = []
    if proc.returncode == 0 and lines:
        result = json.loads(lines[-1][len("LISA_BENCH_CELL "):])
        cell = {k: row[k] for k in ("model", "method", "device", "dtype", "batch_size", "seq_len")}
        trace = [{**cell, **point} for point in result.pop("trace", [])]
        row.update(result)
    elif proc.returncode in (-9, 137):
        row["status"] = "oom (process killed)"
    else:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        row["status"] = f"error: {err[:300]}"
    return compare(row), trace


def predicted_columns(model: str, label: str, device: str, dtype: str, batch: int, seq: int, steps: int) -> dict:
    """The analytic model's parts and peak for one cell (``steps`` measured steps after one warm-up)."""
    from .architectures import architecture_config
    from .memory_model import parse_cell, predict
    from .models.registry import resolve_dtype

    pred = predict(architecture_config(model), parse_cell(label), batch, seq, resolve_dtype(dtype), steps + 1,
                   device_type=device)
    return dict(predicted_peak_bytes=pred.peak_bytes, predicted_weights_bytes=pred.weights_bytes,
                predicted_grads_bytes=pred.grads_bytes, predicted_optimizer_bytes=pred.optimizer_bytes,
                predicted_activations_bytes=pred.activations_bytes, predicted_transient_bytes=pred.transient_bytes,
                predicted_step_bytes=pred.step_bytes, predicted_optimizer_forward_bytes=pred.optimizer_forward_bytes)


def compare(row: dict) -> dict:
    """Measured peak over predicted, flagged beyond the tolerance (measured cells only)."""
    if row.get("status") == "ok":
        ratio = row["peak_bytes"] / row["predicted_peak_bytes"]
        row["peak_vs_predicted"] = ratio
        row["flag"] = "" if abs(ratio - 1) <= TOLERANCE else f"measured/predicted = {ratio:.2f}"
    return row


def add_parser(sub) -> None:
    p = sub.add_parser("memory", help="measure peak memory and speed per model and method",
                       description=__doc__.split("\n\n")[0] + " " + PROTOCOL + ".")
    p.add_argument("--models", required=True, help="comma-separated: gpt2-small, tinyllama-1.1b, mistral-7b, "
                                                    "llama-2-7b, llama-2-70b, smollm2-135m, tiny-random-llama, "
                                                    "or hub ids / local dirs")
    p.add_argument("--methods", default=",".join(("full", "lora-r128", "lisa-e-h", "lisa-e-h-2l", "lisa-e-h-4l",
                                                  "lisa-callback-e-h-2l", "galore-r128")),
                   help="comma-separated cells: full, lora-r<rank>, lisa-e-h, lisa-e-h-<n>l, "
                        "lisa-callback-e-h-<n>l, galore-r<rank>")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3, help="measured steps per cell, after one warm-up step")
    p.add_argument("--dtype", default=None, help="bf16 or fp32 (default: bf16 on cuda, fp32 on cpu)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--cell-timeout", type=float, default=None,
                   help="seconds one cell may run before it is recorded as an error (default: no limit)")
    p.set_defaults(func=_cmd_memory)


def finish_table(rows: list[dict]):
    """The CSV table: fixed columns, and speed relative to full fine-tuning of the same model."""
    import pandas as pd

    table = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    keys = ["model", "device", "dtype", "batch_size", "seq_len"]
    full = table[(table["method"] == "full") & (table["status"] == "ok")].drop_duplicates(keys, keep="last")
    full_speed = table[keys].merge(full[keys + ["tokens_per_second"]], on=keys, how="left")["tokens_per_second"]
    table["speed_vs_full"] = table["tokens_per_second"] / full_speed.to_numpy()
    return table


def render(table, trace, out: Path) -> None:
    """Tables (CSV/Markdown/LaTeX) and figures from a measured ``memory.csv`` and ``memory_trace.csv``."""
    import pandas as pd

    from .plots import memory_breakdown, memory_trace, speed_bars
    from .report import write_table

    index = ["model", "method"] + [c for c in ("dtype", "seq_len") if table[c].nunique() > 1]
    shown = table.set_index(index)[["status", "peak_bytes", "predicted_peak_bytes", "weights_bytes",
                                                  "grads_bytes", "optimizer_bytes", "activations_bytes",
                                                  "tokens_per_second", "speed_vs_full", "flag"]]
    shown = shown.rename(columns=lambda c: c.replace("_bytes", "_GiB"))
    for col in [c for c in shown.columns if c.endswith("_GiB")]:
        shown[col] = shown[col] / 2**30
    measured = table.dropna(subset=["batch_size", "seq_len"])
    first = (measured if len(measured) else table).iloc[0]
    write_table(shown, out / "memory_table", f"Peak memory ({first['device']}, {first['dtype']}, batch "
                                             f"{first['batch_size']:g}, {first['seq_len']:g} tokens; {PROTOCOL})")
    memory_breakdown(table, out / "memory_breakdown")
    speed_bars(table, out / "speed")
    memory_trace(pd.DataFrame(trace).reindex(columns=TRACE_COLUMNS), out / "memory_trace")


def _cmd_memory(args) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from . import atomic
    from .architectures import architecture_config
    from .memory_model import parse_cell
    from .models.registry import resolve_dtype
    from .provenance import provenance

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cuda", "cpu"):
        raise BadInput(f"unknown device {device!r}; valid choices: cuda, cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput("device 'cuda' is not available on this machine; valid choices: cpu")
    dtype = args.dtype or ("bf16" if device == "cuda" else "fp32")
    resolve_dtype(dtype)
    for name, value in (("batch-size", args.batch_size), ("seq-len", args.seq_len), ("steps", args.steps)):
        if value < 1:
            raise BadInput(f"--{name} must be >= 1, got {value}")
    if args.cell_timeout is not None and args.cell_timeout <= 0:
        raise BadInput(f"--cell-timeout must be > 0 seconds, got {args.cell_timeout:g}")
    models = [m for m in args.models.split(",") if m]
    cells = [c for c in args.methods.split(",") if c]
    for m in models:
        architecture_config(m)
    for c in cells:
        parse_cell(c)
    out = Path(args.output_dir)
    atomic.write_json(out / "memory_provenance.json", provenance(vars(args) | {"device": device, "dtype": dtype},
                                                                 torch.device(device)))
    rows, trace = [], []
    for model in models:
        for label in tqdm(cells, desc=f"memory {model}", dynamic_ncols=True):
            try:
                row, points = run_cell(model, label, device, dtype, args.batch_size, args.seq_len, args.steps,
                                       timeout=args.cell_timeout)
            except BadInput as exc:  # e.g. more LISA layers than this model has: this cell cannot exist
                row, points = {"model": model, "method": label, "device": device, "dtype": dtype,
                               "status": f"skipped: {exc}"}, []
            except Exception as exc:  # one broken cell is recorded, the rest run on
                row, points = {"model": model, "method": label, "device": device, "dtype": dtype,
                               "status": f"error: {type(exc).__name__}: {exc}"[:300]}, []
            rows.append(row)
            trace += points
            # rewritten after every cell, so an interrupted study keeps the cells it finished
            atomic.write_text(out / "memory.csv", finish_table(rows).to_csv(index=False))
            atomic.write_text(out / "memory_trace.csv", pd.DataFrame(trace, columns=TRACE_COLUMNS).to_csv(index=False))
    table = finish_table(rows)
    render(table, trace, out)
    show = table[["model", "method", "status", "peak_bytes", "predicted_peak_bytes", "optimizer_bytes",
                  "tokens_per_second", "speed_vs_full", "flag"]].copy()
    for col in ("peak_bytes", "predicted_peak_bytes", "optimizer_bytes"):
        show[col] = show[col] / 2**20
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.1f}".format):
        print(show.rename(columns=lambda c: c.replace("_bytes", "_MiB")).to_string(index=False))
    return 0


if __name__ == "__main__":
    _child_main(sys.argv[1:])
