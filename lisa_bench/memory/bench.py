"""``lisa-bench memory``: peak memory and speed per (model, experiment) cell, each in its own process.

A cell is an experiment (a file in experiments/, or a path) on a model: its method and method
options are those the experiment trains with, so the memory table and the training table describe
the same configuration under the same name. Protocol (the paper's): random token sequences of
``seq_len`` tokens, batch size 1, no gradient checkpointing, no offloading, eager attention (no
flash attention). Weights are random: memory and speed do not depend on their values. Each cell is
the training loop's own step, measured in a process of its own (``measure.py``, which says how each
part is taken); every row carries the analytic prediction of ``memory.model`` next to the measurement.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import yaml_io
from ..errors import BadInput
from .cells import PAPER_EXPERIMENTS, PROTOCOL, TRACE_COLUMNS, MemoryCell, Shape
from .measure import run_cell
from .tables import finish_table, render


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
    p.add_argument("--skip-refused", action="store_true",
                   help="record a cell whose precision recipe cannot serve its method as a skipped row, with the "
                        "reason (a study's memory grid does), instead of stopping with exit 2 before any cell")
    p.add_argument("--cell-timeout", type=float, default=None,
                   help="seconds one cell may run before it is recorded as an error (default: no limit)")
    p.set_defaults(func=_cmd_memory)


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

    refused = {}
    for cell in cells:  # a recipe that cannot serve a method is bad input, before anything is written
        try:
            check_method(resolve_precision(precision), cell.build())
        except BadInput as exc:
            if not args.skip_refused:
                raise BadInput(f"--methods {cell.experiment}: {exc}") from None
            refused[cell] = str(exc)
    out = Path(args.output_dir)
    atomic.write_json(out / "memory_provenance.json", provenance(vars(args) | shape.columns(), torch.device(device)))
    rows, trace = [], []
    for model in models:
        for cell in tqdm(cells, desc=f"memory {model}", dynamic_ncols=True):
            try:
                if cell in refused:
                    raise BadInput(refused[cell])
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
