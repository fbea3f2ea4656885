"""``lisa-bench memory-collect``: merge the outputs of several ``lisa-bench memory`` runs (e.g. one per
model, or one per machine) into one table, trace and set of figures."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadInput

CELL = ["model", "method", "device", "dtype", "batch_size", "seq_len"]  # what makes a table row one cell


def add_parser(sub) -> None:
    p = sub.add_parser("memory-collect", help="merge lisa-bench memory outputs into one table and figures",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("inputs", nargs="+", help="output directories of lisa-bench memory (each with memory.csv)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--no-figures", action="store_true", help="write the CSVs and provenance only")
    p.add_argument("--repredict", action="store_true",
                   help="recompute the predicted columns with this version's memory model (measurements are kept)")
    p.set_defaults(func=_cmd_collect)


def repredict(table):
    """The predicted columns of every cell whose shape is known, from the current memory model."""
    import pandas as pd

    from .memory_bench import CSV_COLUMNS, compare, predicted_columns

    rows = []
    for row in table.to_dict("records"):
        if pd.notna(row.get("batch_size")) and pd.notna(row.get("seq_len")) and pd.notna(row.get("steps")):
            row.update(predicted_columns(row["model"], row["method"], row["device"], row["dtype"],
                                         int(row["batch_size"]), int(row["seq_len"]), int(row["steps"])))
            row["peak_vs_predicted"] = row["flag"] = None
            compare(row)
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)


def collect(inputs: list[Path], out: Path, figures: bool = True, repredict_cells: bool = False):
    import pandas as pd

    from . import atomic
    from .memory_bench import CSV_COLUMNS, TRACE_COLUMNS, finish_table, render
    from .memory_model import PAPER_CELLS
    from .provenance import provenance as current_provenance

    tables, traces, provenance = [], [], {}
    for d in map(Path, inputs):
        csv = d / "memory.csv"
        if not csv.is_file():
            raise BadInput(f"no memory.csv in {str(d)!r}; expected output directories of lisa-bench memory")
        table = pd.read_csv(csv)
        missing = [c for c in ("model", "method", "status") if c not in table.columns]
        if missing:
            raise BadInput(f"{str(csv)!r} is not a lisa-bench memory table (missing columns: {', '.join(missing)})")
        tables.append(table)
        if (d / "memory_trace.csv").is_file():
            trace = pd.read_csv(d / "memory_trace.csv")
            missing = [c for c in CELL if c not in trace.columns]
            if missing:  # traces written before they named their cell: take it from the run's table
                trace = trace.merge(table[["model", "method", *missing]], on=["model", "method"], how="left")
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
    table = finish_table(table.to_dict("records"))  # speed relative to full within the merged table
    trace = (pd.concat(traces, ignore_index=True) if traces else pd.DataFrame()).reindex(columns=TRACE_COLUMNS)
    trace = trace[~trace.duplicated(CELL + ["step"], keep="last")]
    # models in the order they first appear, methods in the paper's column order
    model_rank = {m: i for i, m in enumerate(dict.fromkeys(table["model"]))}
    method_rank = {m: i for i, m in enumerate(PAPER_CELLS)}

    def rank(col):
        return col.map(model_rank if col.name == "model" else lambda m: method_rank.get(m, len(method_rank)))

    table = table.sort_values(["model", "method"], kind="stable", key=rank).reset_index(drop=True)
    trace = trace.sort_values(["model", "method"], kind="stable", key=rank).reset_index(drop=True)
    atomic.write_text(out / "memory.csv", table.to_csv(index=False))
    if len(trace):  # runs from before per-step traces have none
        atomic.write_text(out / "memory_trace.csv", trace.to_csv(index=False))
    atomic.write_json(out / "memory_provenance.json", {"runs": provenance, **notes})
    if figures:
        render(table, trace, out)
    return table


def _cmd_collect(args) -> int:
    table = collect(args.inputs, Path(args.output_dir), figures=not args.no_figures, repredict_cells=args.repredict)
    print(f"{len(table)} cells from {len(args.inputs)} runs -> {args.output_dir}")
    return 0
