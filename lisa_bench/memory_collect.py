"""``lisa-bench memory-collect``: merge the outputs of several ``lisa-bench memory`` runs (e.g. one per
model, or one per machine) into one table, trace and set of figures."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadInput


def add_parser(sub) -> None:
    p = sub.add_parser("memory-collect", help="merge lisa-bench memory outputs into one table and figures",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("inputs", nargs="+", help="output directories of lisa-bench memory (each with memory.csv)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--no-figures", action="store_true", help="write the CSVs and provenance only")
    p.set_defaults(func=_cmd_collect)


def collect(inputs: list[Path], out: Path, figures: bool = True):
    import pandas as pd

    from . import atomic
    from .memory_bench import CSV_COLUMNS, TRACE_COLUMNS, render

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
            traces.append(pd.read_csv(d / "memory_trace.csv"))
        if (d / "memory_provenance.json").is_file():
            prov = json.loads((d / "memory_provenance.json").read_text())
            # a merged table's provenance is already a dict of runs
            provenance.update(prov["runs"] if "runs" in prov else {str(d): prov})
    table = pd.concat(tables, ignore_index=True).reindex(columns=CSV_COLUMNS)
    dup = table.duplicated(["model", "method", "device", "dtype", "batch_size", "seq_len"], keep="last")
    table = table[~dup].reset_index(drop=True)
    trace = (pd.concat(traces, ignore_index=True) if traces else pd.DataFrame()).reindex(columns=TRACE_COLUMNS)
    trace = trace[~trace.duplicated(["model", "method", "step"], keep="last")].reset_index(drop=True)
    atomic.write_text(out / "memory.csv", table.to_csv(index=False))
    atomic.write_text(out / "memory_trace.csv", trace.to_csv(index=False))
    atomic.write_json(out / "memory_provenance.json", {"runs": provenance})
    if figures:
        render(table, trace, out)
    return table


def _cmd_collect(args) -> int:
    table = collect(args.inputs, Path(args.output_dir), figures=not args.no_figures)
    print(f"{len(table)} cells from {len(args.inputs)} runs -> {args.output_dir}")
    return 0
