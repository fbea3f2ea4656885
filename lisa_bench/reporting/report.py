"""``lisa-bench report``: a study's outputs as tables (CSV, Markdown, LaTeX) and figures (PNG, PDF).

Reads the pipeline's run tree: ``RUNS/train/<model>/<experiment>/seed<k>/`` (metrics.json,
train_log.jsonl), ``RUNS/eval/...`` (scores.json), ``RUNS/mt_bench/.../judge/mt_bench.json``.
Methods are rows, as in the paper; numbers are means over seeds with the standard deviation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import atomic
from ..errors import choices_error
from . import figures
from .tables import (comparisons_table, curves_table, equal_seconds_table, lm_eval_table, mean_std, mt_bench_table,
                     runs, samples_table, training_table, write_table)


def _write_provenance(root: Path, out: Path, name: str) -> None:
    """The provenance of every run behind the tables: versions, git commit, config, seed, device."""
    import torch

    from ..provenance import provenance

    found = {}
    for stage, filename in (("train", "metrics.json"), ("eval", "lm_eval.json"), ("mt_bench", "judge/mt_bench.json")):
        for model, exp, seed, path in runs(root, stage, filename):
            found[f"{stage}/{model}/{exp}/seed{seed}"] = json.loads(path.read_text()).get("provenance")
    report = provenance({"study": name, "runs_dir": str(root)}, torch.device("cpu"))
    atomic.write_json(out / "provenance.json", {"report": report, "runs": found})


def _machine(root: Path) -> str:
    """The machine the study's jobs trained on, as the runs' provenance records it (for the seconds axis)."""
    for *_, path in runs(root, "train", "metrics.json"):
        device = (json.loads(path.read_text()).get("provenance") or {}).get("device") or {}
        if device:
            cores = f", {device['cpu_count']} CPU cores" if device.get("cpu_count") else ""
            return f"{device.get('device', '?')}{cores}"
    return "machine not recorded"


def _score_columns(ev: pd.DataFrame, mt: pd.DataFrame) -> dict[str, str]:
    """The scores a study's quality-against-memory figure can plot: name -> column of its table."""
    columns = {"eval_loss": "eval_loss"}
    if len(mt):
        columns["mt_bench"] = "overall"
    for column in (ev["task_metric"].unique() if len(ev) else []):
        columns.setdefault(column.split(" (")[0], column)  # synthetic_qa/exact_match (0-shot, chat)
    return columns


def collect(runs_dir: str | Path, out_dir: str | Path, name: str, baselines: tuple[str, ...] = ("lora-r128", "full"),
            resamples: int = 2000, score: str | None = None) -> dict[str, pd.DataFrame]:
    """``score``: what the quality-against-memory figure plots (eval_loss, mt_bench or a task/metric of the
    study's lm-eval scores); default MT-Bench's overall score where the study has one, else the held-out loss."""
    root, out = Path(runs_dir), Path(out_dir)
    tables = {}
    train, ev, mt = training_table(root), lm_eval_table(root), mt_bench_table(root)
    scores = _score_columns(ev, mt)
    if score is not None and score not in scores:  # before anything is written
        raise choices_error("figure score", score, list(scores), where="report",
                            more=" (the held-out loss, MT-Bench's overall score, the study's lm-eval metrics)")
    score = score or ("mt_bench" if "mt_bench" in scores else "eval_loss")
    _write_provenance(root, out, name)
    if len(train):
        t = mean_std(train, ["model", "experiment", "method"],
                     ["optimizer_state_MiB", "peak_memory_MiB", "tokens_per_second", "loss_last", "eval_loss",
                      "train_seconds", "blocks_never_trained"])
        keep = ("optimizer_state_MiB", "train_seconds", "blocks_never_trained")  # no spread shown for these
        t = t[[c for c in t.columns if not any(c.startswith(k) and c != k for k in keep)]]
        write_table(t, out / "tables" / "training",
                    f"Training ({name}): memory, speed, final training loss and held-out loss per method")
        tables["training"] = t
        logs = list(runs(root, "train", "train_log.jsonl"))
        figures.loss_curves(logs, out / "figures" / "loss_curves")
        figures.memory_over_steps([p.parent for *_, p in logs], out / "figures" / "memory_over_steps")
        figures.blocks_heatmap(logs, out / "figures" / "lisa_layers")
    curves = curves_table(root)
    if len(curves) and curves.groupby(["model", "experiment", "seed"]).size().max() > 1:  # eval_every was set
        wide = curves.groupby(["model", "experiment", "step"])["eval_loss"].mean().unstack("step")
        wide.columns = [f"step {c}" for c in wide.columns]
        wide["seeds"] = curves.groupby(["model", "experiment"])["seed"].nunique()
        sizes = "/".join(str(int(n)) for n in sorted(curves["eval_examples"].dropna().unique()))
        write_table(wide, out / "tables" / "curves",
                    f"Learning curves ({name}): held-out loss after each logged optimizer step, mean over seeds"
                    f"{f' ({sizes} held-out examples)' if sizes else ''}; each run's points, with its training "
                    f"seconds, in curve_points.csv")
        atomic.write_text(out / "tables" / "curve_points.csv", curves.to_csv(index=False))
        machine = _machine(root)
        figures.learning_curves(curves, out / "figures" / "learning_curves", machine)
        tables["curves"] = wide
        same = equal_seconds_table(curves)
        write_table(same.set_index(["model", "experiment"]), out / "tables" / "equal_seconds",
                    f"Equal training time ({name}): each experiment's held-out loss on its curve (mean over seeds, "
                    f"linear between logged points) at the seconds the quickest experiment's whole run took, next to "
                    f"its own last point ({machine})")
        tables["equal_seconds"] = same
    if len(ev):
        stats = mean_std(ev, ["model", "experiment", "task_metric"], ["value"]).reset_index()
        t = stats.pivot_table(index=["model", "experiment"], columns="task_metric", values="value", aggfunc="first")
        ci = stats.pivot_table(index=["model", "experiment"], columns="task_metric", values="value_ci95",
                               aggfunc="first", dropna=False)
        t = t.join(ci.rename(columns=lambda c: f"{c} ci95"))
        t["seeds"] = stats.groupby(["model", "experiment"])["seeds"].max()
        write_table(t, out / "tables" / "lm_eval", f"lm-evaluation-harness ({name}): mean over seeds, with the "
                                                   f"half-width of its 95% interval where there are several")
        tables["lm_eval"] = t
    comparisons = comparisons_table(samples_table(root), list(baselines), resamples)
    write_table(comparisons.set_index(["model", "task_metric", "experiment", "baseline"]),
                out / "tables" / "comparisons",
                f"Paired comparisons ({name}): score minus the baseline's on the same questions (each averaged over "
                f"seeds), with a 95% bootstrap interval over questions ({resamples} resamples)")
    tables["comparisons"] = comparisons
    grid = sweep_grid(root)
    if len(grid):
        write_table(grid.set_index(["model", "experiment", "lr"]), out / "sweep" / "grid",
                    f"Learning-rate sweep ({name}): held-out loss of each grid point, mean over the sweep's seeds")
        figures.lr_sweep(grid, out / "sweep" / "lr_sweep")
        tables["sweep"] = grid
    if len(mt):
        values = [c for c in mt.columns if c.startswith("cat_") or c.startswith("turn_")] + ["overall", "failure_rate"]
        t = mean_std(mt, ["model", "experiment"], values)
        write_table(t, out / "tables" / "mt_bench", f"MT-Bench ({name}; judge {mt['judge'].iloc[0]})")
        tables["mt_bench"] = t
        cats = t[[c for c in t.columns if c.startswith("cat_") and not c.endswith("_std")]]
        figures.mt_bench_categories(cats.rename(columns=lambda c: c[4:]), out / "figures" / "mt_bench_categories")
    if "training" in tables:
        column, pareto = scores[score], tables["training"].reset_index()
        if score == "eval_loss":
            label = "final held-out loss"
        else:
            if score == "mt_bench":
                frame, label = tables["mt_bench"], f"MT-Bench overall ({mt['judge'].iloc[0]})"
            else:
                frame, label = tables["lm_eval"].rename(columns={f"{column} ci95": f"{column}_ci95"}), column
            frame = frame.reset_index()
            pareto = pareto.merge(frame[["model", "experiment", column] + [c for c in (f"{column}_ci95",)
                                                                            if c in frame]], on=["model", "experiment"])
        figures.score_vs_memory(pareto, out / "figures" / "score_vs_memory", column, label)
    return tables


def sweep_grid(root: Path) -> pd.DataFrame:
    from .sweep import grid_table

    grid = grid_table(root)
    if grid.empty:
        return grid
    out = mean_std(grid, ["model", "experiment", "lr"], ["eval_loss"]).reset_index()
    best = out.loc[out.groupby(["model", "experiment"])["eval_loss"].idxmin()]
    out["chosen"] = out.index.isin(best.index)
    return out

