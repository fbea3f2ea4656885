"""A study's headline figures, this run against the committed reference (``results/<study>/``).

Each figure has a stated tolerance: exact for optimizer-state bytes (counted from tensors), a few
percent for memory peaks (allocator or resident set), wider for speed (it depends on the machine),
and for losses and scores what floating-point differences between machines can move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Tolerance:
    rel: float = 0.0
    abs: float = 0.0

    def within(self, reference: float, value: float) -> bool:
        if isinstance(reference, float) and math.isnan(reference) and isinstance(value, float) and math.isnan(value):
            return True
        return abs(value - reference) <= max(self.abs, self.rel * abs(reference)) + 1e-12

    def __str__(self) -> str:
        if self.rel == 0 and self.abs == 0:
            return "exact"
        return " or ".join(s for s in ((f"{self.rel:.0%}" if self.rel else ""), (f"±{self.abs:g}" if self.abs else "")) if s)


# table (relative to a study's results directory) -> (row key columns, {column: tolerance})
HEADLINES = {
    "tables/training.csv": (["model", "experiment"], {
        "optimizer_state_MiB": Tolerance(),
        "peak_memory_MiB": Tolerance(rel=0.05),
        "loss_last": Tolerance(rel=0.01),
        "tokens_per_second": Tolerance(rel=0.5),
    }),
    # a cell is its model, experiment, recipe and shape (a study's memory grid varies any of them)
    "memory/memory.csv": (["model", "experiment", "precision", "attn_implementation", "gradient_checkpointing",
                           "batch_size", "seq_len"], {
        "optimizer_bytes": Tolerance(),
        "peak_bytes": Tolerance(rel=0.05),
    }),
    "tables/mt_bench.csv": (["model", "experiment"], {"overall": Tolerance(abs=0.1)}),
    "norms/skew.csv": (["run"], {"skew_mean_norm": Tolerance(rel=0.01)}),
    # the memory model's tables (a plan study): deterministic predictions, equal to the last digit
    "will_it_fit.csv": (["recipe", "gpu", "model", "experiment"], {
        "peak_GiB": Tolerance(rel=1e-9), "largest_batch_per_gpu": Tolerance()}),
    "verdict.csv": (["model", "launcher", "protocol", "precision", "experiment"], {"peak_GiB": Tolerance(rel=1e-9)}),
}
LM_EVAL = "tables/lm_eval.csv"  # one column per task/metric, scores in [0, 1]
LM_EVAL_TOLERANCE = Tolerance(abs=0.05)


def _rows(reference: pd.DataFrame, run: pd.DataFrame, keys: list[str], columns: dict, source: str) -> list[dict]:
    keys = [k for k in keys if k in reference.columns and k in run.columns]
    merged = reference.merge(run, on=keys, how="outer", suffixes=("_ref", "_run"), indicator=True)
    rows = []
    for _, r in merged.iterrows():
        name = " / ".join(str(r[k]) for k in keys)
        for col, tol in columns.items():
            if f"{col}_ref" not in merged.columns:
                continue
            ref, val = r[f"{col}_ref"], r[f"{col}_run"]
            if r["_merge"] != "both":
                within = False
            elif pd.isna(ref) and pd.isna(val):
                continue  # e.g. the speed of the untrained base model
            else:
                within = bool(pd.notna(ref) and pd.notna(val) and tol.within(float(ref), float(val)))
            rows.append({"source": source, "row": name, "figure": col, "reference": ref, "this_run": val,
                         "tolerance": str(tol), "within": within})
    return rows


def compare(reference_dir: str | Path, run_dir: str | Path) -> pd.DataFrame:
    """Headline figures of two results directories of the same study, side by side."""
    reference_dir, run_dir = Path(reference_dir), Path(run_dir)
    rows = []
    for source, (keys, columns) in HEADLINES.items():
        if (reference_dir / source).is_file() and (run_dir / source).is_file():
            rows += _rows(pd.read_csv(reference_dir / source), pd.read_csv(run_dir / source), keys, columns, source)
    if (reference_dir / LM_EVAL).is_file() and (run_dir / LM_EVAL).is_file():
        ref, run = pd.read_csv(reference_dir / LM_EVAL), pd.read_csv(run_dir / LM_EVAL)
        scores = [c for c in ref.columns if "/" in c]
        rows += _rows(ref, run, ["model", "experiment"], {c: LM_EVAL_TOLERANCE for c in scores}, LM_EVAL)
    return pd.DataFrame(rows, columns=["source", "row", "figure", "reference", "this_run", "tolerance", "within"])


def write_comparison(table: pd.DataFrame, path: Path, caption: str) -> None:
    from .tables import write_table

    write_table(table.set_index(["source", "row", "figure"]), path, caption)
