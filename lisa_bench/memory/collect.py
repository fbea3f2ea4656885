"""``lisa-bench memory-collect``: merge the outputs of several ``lisa-bench memory`` runs (e.g. one per
model, or one per machine) into one table, trace and set of figures."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BadInput
from .cells import CELL, CSV_COLUMNS, TRACE_COLUMNS, MemoryCell, Shape, compare, predicted_columns
from .tables import finish_table, render


def add_parser(sub) -> None:
    p = sub.add_parser("memory-collect", help="merge lisa-bench memory outputs into one table and figures",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("inputs", nargs="+", help="output directories of lisa-bench memory (each with memory.csv)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--no-figures", action="store_true", help="write the CSVs and provenance only")
    p.add_argument("--repredict", action="store_true",
                   help="recompute the predicted columns with this version's memory model (measurements are kept)")
    p.add_argument("--speed-baseline", default="full", help="the experiment the speed column is relative to")
    p.set_defaults(func=_cmd_collect)


def _legacy(table):
    """Tables written before cells were experiments name the cell in ``method`` and record no options:
    the name becomes the experiment; such rows keep their predictions (they cannot be repredicted).
    Tables from before precisions name the weights' ``dtype``, measured with eager attention and no
    gradient checkpointing."""
    if "experiment" not in table.columns:
        table = table.rename(columns={"method": "experiment"})
    if "dtype" in table.columns and "precision" not in table.columns:
        table = table.rename(columns={"dtype": "precision"})
        table["attn_implementation"] = "eager"
        table["gradient_checkpointing"] = False
    return table


def repredict(table):
    """The predicted columns of every cell whose method and shape are recorded, from the current model."""
    import pandas as pd

    rows = []
    for row in table.to_dict("records"):
        cell = MemoryCell.from_row(row)
        shaped = all(pd.notna(row.get(k)) for k in ("batch_size", "seq_len", "steps"))
        if cell is not None and shaped:
            row.update(predicted_columns(row["model"], cell, Shape.from_row(row)))
            row["peak_vs_predicted"] = row["flag"] = None
            compare(row)
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)


def collect(inputs: list[Path], out: Path, figures: bool = True, repredict_cells: bool = False,
            baseline: str = "full"):
    import pandas as pd

    from .. import atomic
    from ..provenance import provenance as current_provenance

    tables, traces, provenance = [], [], {}
    for d in map(Path, inputs):
        csv = d / "memory.csv"
        if not csv.is_file():
            raise BadInput(f"no memory.csv in {str(d)!r}; expected output directories of lisa-bench memory")
        table = pd.read_csv(csv)
        missing = [c for c in ("model", "method", "status") if c not in table.columns]
        if missing:
            raise BadInput(f"{str(csv)!r} is not a lisa-bench memory table (missing columns: {', '.join(missing)})")
        table = _legacy(table)
        tables.append(table)
        if (d / "memory_trace.csv").is_file():
            trace = _legacy(pd.read_csv(d / "memory_trace.csv"))
            missing = [c for c in CELL if c not in trace.columns]
            if missing:  # traces written before they named their cell: take it from the run's table
                trace = trace.merge(table[["model", "experiment", *missing]], on=["model", "experiment"], how="left")
            traces.append(trace)
        if (d / "memory_provenance.json").is_file():
            prov = json.loads((d / "memory_provenance.json").read_text())
            # a merged table's provenance is already a dict of runs
            provenance.update(prov["runs"] if "runs" in prov else {str(d): prov})
    table = pd.concat(tables, ignore_index=True).reindex(columns=CSV_COLUMNS)
    table = table[~table.duplicated(CELL, keep="last")].reset_index(drop=True)
    notes = {}
    if repredict_cells:
        table = repredict(table)
        notes["repredicted_by"] = current_provenance({"repredict": True}, "cpu")
    table = finish_table(table.to_dict("records"), baseline)  # speed relative to the baseline in the merged table
    trace = (pd.concat(traces, ignore_index=True) if traces else pd.DataFrame()).reindex(columns=TRACE_COLUMNS)
    trace = trace[~trace.duplicated(CELL + ["step"], keep="last")]
    # models, then experiments, in the order they first appear
    order = {col: {v: i for i, v in enumerate(dict.fromkeys(table[col]))} for col in ("model", "experiment")}
    table = table.sort_values(["model", "experiment"], kind="stable", key=lambda c: c.map(order[c.name]))
    trace = trace.sort_values(["model", "experiment"], kind="stable", key=lambda c: c.map(order[c.name]))
    table, trace = table.reset_index(drop=True), trace.reset_index(drop=True)
    atomic.write_text(out / "memory.csv", table.to_csv(index=False))
    if len(trace):  # runs from before per-step traces have none
        atomic.write_text(out / "memory_trace.csv", trace.to_csv(index=False))
    atomic.write_json(out / "memory_provenance.json", {"runs": provenance, **notes})
    if figures:
        render(table, trace, out)
    return table


def _cmd_collect(args) -> int:
    table = collect(args.inputs, Path(args.output_dir), figures=not args.no_figures, repredict_cells=args.repredict,
                    baseline=args.speed_baseline)
    print(f"{len(table)} cells from {len(args.inputs)} runs -> {args.output_dir}")
    return 0
