"""The memory table and its figures from measured rows: speed against a baseline experiment, the Markdown/LaTeX
table, the breakdown, speed and trace figures (``lisa-bench memory`` and ``memory-collect`` both end here)."""

from __future__ import annotations

from pathlib import Path

from .cells import CELL, CSV_COLUMNS, PROTOCOL, TRACE_COLUMNS


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

