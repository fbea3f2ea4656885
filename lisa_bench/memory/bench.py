"""``lisa-bench memory``: peak memory and speed per (model, experiment) cell, each in its own process.

A cell is an experiment (a file in experiments/, or a path) on a model: its method and method
options are those the experiment trains with, so the memory table and the training table describe
the same configuration under the same name. Protocol (the paper's): random token sequences of
``seq_len`` tokens, batch size 1, no gradient checkpointing, no offloading, eager attention (no
flash attention). Weights are random: memory and speed do not depend on their values.

Measured breakdown:
- CUDA: from the allocator (``memory_allocated`` differences, ``max_memory_allocated`` peak);
- CPU: by counting tensors (parameters, ``.grad``, optimizer state, and the unique storages that
  autograd saves for backward), peak as the rise of the resident set's high-water mark (VmHWM)
  over the process before the model was built.
Every row carries the analytic prediction of ``memory.model`` next to the measurement.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import yaml_io
from ..errors import BadInput
from .accounting import SavedTensorCounter, tensor_bytes
from .meter import reset_rss_high_water_mark, rss_high_water_mark, rss_now

# what makes a table row one cell
CELL = ["model", "experiment", "device", "precision", "attn_implementation", "gradient_checkpointing", "batch_size",
        "seq_len"]
CSV_COLUMNS = CELL[:2] + ["method", "method_options", "method_module"] + CELL[2:] + [
    "steps", "status", "peak_bytes", "weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes",
    "predicted_peak_bytes", "predicted_weights_bytes", "predicted_grads_bytes", "predicted_optimizer_bytes",
    "predicted_activations_bytes", "predicted_transient_bytes", "predicted_step_bytes",
    "predicted_optimizer_forward_bytes", "peak_vs_predicted", "flag", "seconds_per_iter", "tokens_per_second",
    "speed_vs_full", "flops_per_token", "step_traffic_per_token", "flop_rate", "bandwidth", "speed_bound_vs_full",
    "protocol"]
PROTOCOL = "random tokens, no offloading"
TOLERANCE = 0.15
PAPER_EXPERIMENTS = ("full", "lora-r128", "lisa-e-h", "lisa-e-h-2l", "lisa-e-h-4l", "lisa-callback-e-h-2l",
                     "galore-r128")
# per step of each cell (step 0 is the warm-up); CUDA: allocator stats, CPU: resident set
TRACE_COLUMNS = CELL + ["step", "seconds", "optimizer_bytes", "grads_bytes", "activations_bytes", "step_peak_bytes",
                        "allocated_bytes", "reserved_peak_bytes", "active_peak_bytes", "rss_bytes", "rss_hwm_bytes"]


@dataclass(frozen=True)
class Shape:
    """How every cell of a memory run is measured (the paper's protocol: eager attention, no
    checkpointing, batch 1, 1024 tokens)."""

    device: str = "cpu"
    precision: str = "fp32"
    attn_implementation: str = "eager"
    gradient_checkpointing: bool = False
    batch_size: int = 1
    seq_len: int = 1024
    steps: int = 3  # measured steps, after one warm-up step

    @classmethod
    def from_row(cls, row: dict) -> "Shape":
        return cls(row["device"], row["precision"], row.get("attn_implementation") or "eager",
                   bool(row.get("gradient_checkpointing") or False), int(row["batch_size"]), int(row["seq_len"]),
                   int(row["steps"]))

    def columns(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MemoryCell:
    """One column of the memory table: an experiment's method and options, under the experiment's name."""

    experiment: str
    method: str
    options: str = "{}"  # the method options as canonical JSON (hashable, and what memory.csv records)
    module: str | None = None  # a plugin module that registers the method

    @classmethod
    def from_experiment(cls, name: str, experiments_dir: str | Path = "experiments",
                        overrides: dict | None = None) -> "MemoryCell":
        """An experiment's method, options and plugin module (its other settings do not make the cell:
        the memory protocol fixes batch, length and precision), with a study's overrides of them."""
        from ..config import TrainConfig, read_experiment, resolve_experiment
        from ..methods import build_method, load_method_module

        path = resolve_experiment(name, experiments_dir)
        values, extra = read_experiment(path), dict(overrides or {})
        options = {**(values.get("method_options") or {}), **(extra.get("method_options") or {})}
        method = extra.get("method", values.get("method", TrainConfig.method))
        module = extra.get("method_module", values.get("method_module"))
        if module:
            load_method_module(module)
        build_method(method, options)  # checks the method and its options
        return cls(path.stem, method, json.dumps(options, sort_keys=True), module)

    @classmethod
    def from_row(cls, row: dict) -> "MemoryCell | None":
        """The cell a memory.csv row was measured with (None for tables that did not record it)."""
        if not isinstance(row.get("method_options"), str) or not isinstance(row.get("method"), str):
            return None
        module = row.get("method_module")
        return cls(row["experiment"], row["method"], row["method_options"], module if isinstance(module, str) else None)

    def load(self) -> None:
        if self.module:
            from ..methods import load_method_module

            load_method_module(self.module)

    def build(self):
        from ..methods import build_method

        self.load()
        return build_method(self.method, json.loads(self.options), seed=0)

    def columns(self) -> dict:
        return {"experiment": self.experiment, "method": self.method, "method_options": self.options,
                "method_module": self.module}


# ---------------------------------------------------------------------------------------------
# one cell, in a child process
# ---------------------------------------------------------------------------------------------
def measure_cell(model_name: str, cell: MemoryCell, shape: Shape) -> dict:
    from transformers import AutoModelForCausalLM

    from ..methods import OptimConfig
    from ..models import model_config
    from ..precision import prepare_optimizer, resolve_precision

    precision = resolve_precision(shape.precision)
    batch, seq, steps = shape.batch_size, shape.seq_len, shape.steps
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
    gen = torch.Generator().manual_seed(0)
    grads = acts = opt_bytes = step_peak = 0
    times, trace = [], []
    for step in range(steps + 1):  # step 0 warms up (lazy library loading, allocator pools), not measured
        if step == 1 and not cuda:
            # the working set above what is resident now, plus the tensors resident now
            reset_rss_high_water_mark()
            start = rss_now() - (weights + method.optimizer_bytes(optimizer))
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)  # a peak per step; the cell's peak is their maximum
        method.on_step_start(step, model, optimizer)
        ids = torch.randint(0, config.vocab_size, (batch, seq), generator=gen).to(dev)
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        before = torch.cuda.memory_allocated(dev) if cuda else 0
        counter = SavedTensorCounter(model.parameters())
        with counter.hooks(), precision.autocast(dev.type):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss  # as training runs
        step_acts = (torch.cuda.memory_allocated(dev) - before) if cuda else counter.bytes
        loss.backward()
        del loss  # gone before the optimizer step, as in training (training/loop.py: _forward_backward)
        step_grads = sum(tensor_bytes(p.grad) for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        state = method.optimizer_bytes(optimizer)
        point = {"step": step, "seconds": seconds, "optimizer_bytes": state, "grads_bytes": step_grads,
                 "activations_bytes": step_acts}
        if cuda:
            stats = torch.cuda.memory_stats(dev)
            point.update(step_peak_bytes=torch.cuda.max_memory_allocated(dev) - baseline,
                         allocated_bytes=torch.cuda.memory_allocated(dev) - baseline,
                         reserved_peak_bytes=torch.cuda.max_memory_reserved(dev),
                         active_peak_bytes=stats.get("active_bytes.all.peak", 0))
        else:
            point.update(rss_bytes=rss_now(), rss_hwm_bytes=rss_high_water_mark())
        trace.append(point)
        if step == 0:
            continue
        times.append(seconds)
        grads, acts, opt_bytes = max(grads, step_grads), max(acts, step_acts), max(opt_bytes, state)
        if cuda:
            step_peak = max(step_peak, point["step_peak_bytes"])
    peak = step_peak if cuda else (rss_high_water_mark() - start)
    sec = statistics.median(times)
    return {"status": "ok", "peak_bytes": peak, "weights_bytes": weights, "grads_bytes": grads,
            "optimizer_bytes": opt_bytes, "activations_bytes": acts, "seconds_per_iter": sec,
            "tokens_per_second": batch * seq / sec, "trace": trace}


def _child_main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    spec["cell"], spec["shape"] = MemoryCell(**spec["cell"]), Shape(**spec["shape"])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
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


def run_cell(model: str, cell: MemoryCell, shape: Shape, timeout: float | None = None) -> tuple[dict, list[dict]]:
    """One table row and the cell's per-step trace (empty unless the cell ran)."""
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
        proc = subprocess.run([sys.executable, "-m", "lisa_bench.memory.bench", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        row["status"] = f"error: timed out after {timeout:g} s (--cell-timeout)"
        return row, []
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("LISA_BENCH_CELL ")]
    trace = []
    if proc.returncode == 0 and lines:
        result = json.loads(lines[-1][len("LISA_BENCH_CELL "):])
        trace = [{**{k: row[k] for k in CELL}, **point} for point in result.pop("trace", [])]
        row.update(result)
    elif proc.returncode in (-9, 137):
        row["status"] = "oom (process killed)"
    else:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        row["status"] = f"error: {err[:300]}"
    return compare(row), trace


def predicted_columns(model: str, cell: MemoryCell, shape: Shape) -> dict:
    """The analytic model's parts and peak for one cell (``steps`` measured steps after one warm-up)."""
    from ..models import model_config
    from .model import predict

    cell.load()
    pred = predict(model_config(model), cell.method, json.loads(cell.options), shape.batch_size, shape.seq_len,
                   shape.precision, shape.steps + 1, device_type=shape.device, attention=shape.attn_implementation,
                   checkpointing=shape.gradient_checkpointing)
    return dict(predicted_peak_bytes=pred.peak_bytes, predicted_weights_bytes=pred.weights_bytes,
                predicted_grads_bytes=pred.grads_bytes, predicted_optimizer_bytes=pred.optimizer_bytes,
                predicted_activations_bytes=pred.activations_bytes, predicted_transient_bytes=pred.transient_bytes,
                predicted_step_bytes=pred.step_bytes, predicted_optimizer_forward_bytes=pred.optimizer_forward_bytes,
                flops_per_token=pred.flops_per_token, step_traffic_per_token=pred.step_traffic_per_token)


def compare(row: dict) -> dict:
    """Measured peak over predicted, flagged beyond the tolerance (measured cells only)."""
    if row.get("status") == "ok":
        ratio = row["peak_bytes"] / row["predicted_peak_bytes"]
        row["peak_vs_predicted"] = ratio
        row["flag"] = "" if abs(ratio - 1) <= TOLERANCE else f"measured/predicted = {ratio:.2f}"
    return row


def add_parser(sub) -> None:
    p = sub.add_parser("memory", help="measure peak memory and speed per model and experiment",
                       description=__doc__.split("\n\n")[0] + " " + PROTOCOL + ".")
    p.add_argument("--models", required=True, help="comma-separated: gpt2-small, tinyllama-1.1b, mistral-7b, "
                                                    "llama-2-7b, llama-2-70b, smollm2-135m, tiny-random-llama, "
                                                    "or hub ids / local dirs (config only)")
    p.add_argument("--methods", "--experiments", dest="methods", default=",".join(PAPER_EXPERIMENTS),
                   help="comma-separated experiments: names of files in --experiments-dir, or experiment file "
                        "paths (default: %(default)s)")
    p.add_argument("--experiments-dir", default="experiments")
    p.add_argument("--experiment-overrides", default=None, metavar="YAML",
                   help="per-experiment settings over the files, as a study's experiment_overrides "
                        "(e.g. '{lisa-e-h-2l: {method_options: {interval: 1}}}')")
    p.add_argument("--speed-baseline", default="full",
                   help="the experiment the speed column is relative to (default: full)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3, help="measured steps per cell, after one warm-up step")
    p.add_argument("--precision", "--dtype", dest="precision", default=None,
                   help="fp32, bf16 (pure), bf16-mixed, bf16-master, bf16-kahan or bf16-sr (default: bf16 on cuda, fp32 on cpu)")
    p.add_argument("--attn-implementation", default="eager",
                   help="eager (the paper's protocol, default), sdpa, flash_attention_2")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="measure with each block's activations recomputed in backward (default: off, the paper's protocol)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--no-figures", action="store_true",
                   help="write the tables and trace only (a pipeline's cell, whose figures the collect job draws)")
    p.add_argument("--cell-timeout", type=float, default=None,
                   help="seconds one cell may run before it is recorded as an error (default: no limit)")
    p.set_defaults(func=_cmd_memory)


def finish_table(rows: list[dict], baseline: str = "full"):
    """The CSV table: fixed columns, and speed relative to the baseline experiment on the same model."""
    import pandas as pd

    from .speed import bound_vs

    table = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    keys = [c for c in CELL if c != "experiment"]
    ref = table[(table["experiment"] == baseline) & (table["status"] == "ok")].drop_duplicates(keys, keep="last")
    cols = ["tokens_per_second", "flops_per_token", "step_traffic_per_token"]
    ref = table[keys].merge(ref[keys + cols], on=keys, how="left")
    table["speed_vs_full"] = table["tokens_per_second"] / ref["tokens_per_second"].to_numpy()
    # the speed a perfect implementation would reach against the baseline, at the rates measured on the device
    table["speed_bound_vs_full"] = [
        bound_vs(f, t, rf, rt, (fr, bw)) if all(pd.notna(v) and v for v in (f, rf, fr, bw)) else None
        for f, t, rf, rt, fr, bw in zip(table["flops_per_token"], table["step_traffic_per_token"],
                                        ref["flops_per_token"], ref["step_traffic_per_token"], table["flop_rate"],
                                        table["bandwidth"])]
    return table


def render(table, trace, out: Path) -> None:
    """Tables (CSV/Markdown/LaTeX) and figures from a measured ``memory.csv`` and ``memory_trace.csv``."""
    import pandas as pd

    from ..reporting.figures import memory_breakdown, memory_trace, speed_bars
    from ..reporting.tables import write_table

    varying = [c for c in CELL[2:] if table[c].nunique() > 1]
    index = ["model", "experiment"] + varying
    shown = table.set_index(index)[["status", "peak_bytes", "predicted_peak_bytes", "weights_bytes",
                                    "grads_bytes", "optimizer_bytes", "activations_bytes",
                                    "tokens_per_second", "speed_vs_full", "speed_bound_vs_full", "flag"]]
    shown = shown.rename(columns=lambda c: c.replace("_bytes", "_GiB"))
    for col in [c for c in shown.columns if c.endswith("_GiB")]:
        shown[col] = shown[col] / 2**30
    measured = table.dropna(subset=["batch_size", "seq_len"])
    first = (measured if len(measured) else table).iloc[0]
    write_table(shown, out / "memory_table",
                f"Peak memory ({first['device']}, {first['precision']}, {first['attn_implementation']} attention, "
                f"{'gradient checkpointing' if _flag(first['gradient_checkpointing']) else 'no gradient checkpointing'}, "
                f"batch {first['batch_size']:g}, {first['seq_len']:g} tokens; {PROTOCOL})")
    memory_breakdown(table, out / "memory_breakdown")
    speed_bars(table, out / "speed")
    memory_trace(pd.DataFrame(trace).reindex(columns=TRACE_COLUMNS), out / "memory_trace")


def _flag(value) -> bool:
    """A boolean column read back from CSV (True/False, or empty for a cell that never ran)."""
    return str(value).strip().lower() in ("true", "1", "1.0")


def _parse_overrides(text: str | None) -> dict:
    import yaml

    if not text:
        return {}
    try:
        data = yaml_io.load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"--experiment-overrides: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise BadInput("--experiment-overrides must map experiment names to settings, e.g. "
                       "'{lisa-e-h-2l: {method_options: {interval: 1}}}'")
    return data


def _check_overrides(overrides: dict, names: list[str], experiments_dir) -> None:
    """Overrides name experiments of this table and are valid training settings of theirs (a study passes its
    experiment_overrides, learning rates included; only the method settings shape a memory cell)."""
    from ..config import build_config, resolve_experiment
    from ..errors import choices_error

    for exp, settings in overrides.items():
        if exp not in names:
            raise choices_error("experiment", exp, names, where="--experiment-overrides")
        try:  # max_steps stands in for the run length, which the memory protocol sets itself
            build_config(resolve_experiment(exp, experiments_dir), {}, {}, layers=[{"max_steps": 1}, settings])
        except BadInput as exc:
            raise BadInput(f"--experiment-overrides[{exp}]: {exc}") from None


def _cmd_memory(args) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from .. import atomic
    from ..config import ATTENTION
    from ..devices import resolve_device
    from ..errors import check_choice
    from ..models import check_attention, model_config
    from ..precision import resolve_precision
    from ..provenance import provenance

    device = resolve_device(args.device).type
    precision = args.precision or ("bf16" if device == "cuda" else "fp32")
    resolve_precision(precision)
    check_attention(check_choice("attn_implementation", args.attn_implementation, ATTENTION))
    for name, value in (("batch-size", args.batch_size), ("seq-len", args.seq_len), ("steps", args.steps)):
        if value < 1:
            raise BadInput(f"--{name} must be >= 1, got {value}")
    if args.cell_timeout is not None and args.cell_timeout <= 0:
        raise BadInput(f"--cell-timeout must be > 0 seconds, got {args.cell_timeout:g}")
    shape = Shape(device, precision, args.attn_implementation, args.gradient_checkpointing, args.batch_size,
                  args.seq_len, args.steps)
    from .speed import device_rates

    rates = dict(zip(("flop_rate", "bandwidth"), device_rates(device, resolve_precision(precision).weights)))
    models = [m for m in args.models.split(",") if m]
    for m in models:
        model_config(m)
    overrides = _parse_overrides(args.experiment_overrides)
    names = [e for e in args.methods.split(",") if e]
    _check_overrides(overrides, names, args.experiments_dir)
    cells = [MemoryCell.from_experiment(e, args.experiments_dir, overrides.get(e)) for e in names]
    from ..precision import check_method

    for cell in cells:  # a recipe that cannot serve a method is bad input, before anything is written
        try:
            check_method(resolve_precision(precision), cell.build())
        except BadInput as exc:
            raise BadInput(f"--methods {cell.experiment}: {exc}") from None
    out = Path(args.output_dir)
    atomic.write_json(out / "memory_provenance.json", provenance(vars(args) | shape.columns(), torch.device(device)))
    rows, trace = [], []
    for model in models:
        for cell in tqdm(cells, desc=f"memory {model}", dynamic_ncols=True):
            try:
                row, points = run_cell(model, cell, shape, timeout=args.cell_timeout)
            except BadInput as exc:  # e.g. more LISA layers than this model has: this cell cannot exist
                row, points = {"model": model, **cell.columns(), **shape.columns(), "status": f"skipped: {exc}"}, []
            except Exception as exc:  # one broken cell is recorded, the rest run on
                row, points = {"model": model, **cell.columns(), **shape.columns(),
                               "status": f"error: {type(exc).__name__}: {exc}"[:300]}, []
            rows.append({**row, **rates})
            trace += points
            # rewritten after every cell, so an interrupted study keeps the cells it finished
            atomic.write_text(out / "memory.csv", finish_table(rows, args.speed_baseline).to_csv(index=False))
            atomic.write_text(out / "memory_trace.csv", pd.DataFrame(trace, columns=TRACE_COLUMNS).to_csv(index=False))
    table = finish_table(rows, args.speed_baseline)
    if not args.no_figures:
        render(table, trace, out)
    show = table[["model", "experiment", "status", "peak_bytes", "predicted_peak_bytes", "optimizer_bytes",
                  "tokens_per_second", "speed_vs_full", "speed_bound_vs_full", "flag"]].copy()
    for col in ("peak_bytes", "predicted_peak_bytes", "optimizer_bytes"):
        show[col] = show[col] / 2**20
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.1f}".format):
        print(show.rename(columns=lambda c: c.replace("_bytes", "_MiB")).to_string(index=False))
    return 0


if __name__ == "__main__":
    _child_main(sys.argv[1:])
