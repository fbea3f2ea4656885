"""Print the summary tables a study's README starts from, from its published tables (results/<study>/tables).

One row per experiment: optimizer state, peak RSS, training seconds, the learning curve at one step, the final
held-out loss, exact match and multiple choice (each mean +- 95% interval over seeds where there are 2 or more),
blocks never trained; then the paired differences against each baseline (`tables/comparisons.csv`). The
README's prose is written by hand from these; this keeps its tables from being typed.

    .venv/bin/python scripts/study_summary.py results/cpu-budget --curve-step 100 \
        --metric synthetic_qa/exact_match --metric synthetic_mc/acc
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

EM = "synthetic_qa/exact_match (0-shot, chat)"
MC = "synthetic_mc/acc (0-shot, chat)"


def cell(value, ci=None, digits: int = 3) -> str:
    if pd.isna(value):
        return ""
    text = f"{value:.{digits}f}"
    return text if ci is None or pd.isna(ci) else f"{text} ± {ci:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a published study directory (results/<study>)")
    parser.add_argument("--curve-step", type=int, default=None,
                        help="also show the learning curve's held-out loss at this step (tables/curves.csv)")
    parser.add_argument("--metric", action="append", default=None,
                        help="paired comparisons of this task/metric only (repeatable; default: all)")
    args = parser.parse_args(argv)
    tables = args.results / "tables"
    if not (tables / "training.csv").is_file():
        print(f"study_summary: {tables / 'training.csv'} not found (not a published study directory)", file=sys.stderr)
        return 2
    train = pd.read_csv(tables / "training.csv")
    lm = pd.read_csv(tables / "lm_eval.csv") if (tables / "lm_eval.csv").is_file() else pd.DataFrame()
    curves = pd.read_csv(tables / "curves.csv") if (tables / "curves.csv").is_file() else pd.DataFrame()
    column = f"step {args.curve_step}"
    if args.curve_step is not None and column not in curves.columns:
        steps = [c for c in curves.columns if c.startswith("step ")]
        print(f"study_summary: --curve-step {args.curve_step} not logged; valid: {', '.join(s[5:] for s in steps)}",
              file=sys.stderr)
        return 2
    comp = pd.read_csv(tables / "comparisons.csv") if (tables / "comparisons.csv").is_file() else None
    unknown = sorted(set(args.metric or []) - set(comp["task_metric"] if comp is not None else []))
    if unknown:
        valid = ", ".join(sorted(set(comp["task_metric"]))) if comp is not None else "none (no tables/comparisons.csv)"
        print(f"study_summary: --metric {unknown[0]} not compared; valid: {valid}", file=sys.stderr)
        return 2
    head = ["experiment", "seeds", "optimizer state MiB", "peak RSS MiB", "train s"]
    head += [f"held-out loss @{args.curve_step} (curve)"] if args.curve_step is not None else []
    head += ["final held-out loss", "exact match", "mc acc", "blocks never trained"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for _, r in train.iterrows():
        score = lm[(lm["model"] == r["model"]) & (lm["experiment"] == r["experiment"])] if not lm.empty else lm
        s = score.iloc[0] if len(score) else None
        row = [r["experiment"], str(int(r["seeds"])), f"{r['optimizer_state_MiB']:.1f}", f"{r['peak_memory_MiB']:.0f}",
               f"{r['train_seconds']:.0f}"]
        if args.curve_step is not None:
            point = curves[(curves["model"] == r["model"]) & (curves["experiment"] == r["experiment"])]
            row.append(cell(point.iloc[0][column]) if len(point) else "")
        row.append(cell(r["eval_loss"], r.get("eval_loss_ci95")))
        for metric in (EM, MC):
            row.append(cell(s[metric], s.get(f"{metric} ci95")) if s is not None and metric in s else "")
        never = r.get("blocks_never_trained")
        row.append("" if pd.isna(never) else f"{never:.1f}".removesuffix(".0"))
        print("| " + " | ".join(row) + " |")
    if comp is not None:
        comp = comp[comp["task_metric"].isin(args.metric)] if args.metric else comp
        print("\n| experiment - baseline | seeds | metric | difference [95% CI] |\n|---|---|---|---|")
        for _, c in comp.sort_values(["baseline", "experiment", "task_metric"]).iterrows():
            print(f"| {c['experiment']} - {c['baseline']} | {c['seeds']} vs {c['seeds_baseline']} | {c['task_metric']} | "
                  f"{c['difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
