"""``lisa-bench report``: a study's outputs as tables (CSV, Markdown, LaTeX) and figures (PNG, PDF).

Reads runs wherever they are: each training run (metrics.json, train_log.jsonl), evaluation (scores.json) and
MT-Bench judgment (judge/mt_bench.json) is found by the identity it records (lisa_bench/runs.py), at any depth
under the directories it is given.
Methods are rows, as in the paper; numbers are means over seeds with the standard deviation.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from .. import atomic
from ..errors import BadInput, choices_error
from . import figures
from .tables import (comparisons_table, curves_table, equal_seconds_table, lm_eval_table, matched_table, mean_std,
                     mt_bench_table,
                     runs, samples_table, training_table, write_table)


def _write_provenance(sources: list[Path], out: Path, name: str) -> None:
    """The provenance of every run behind the tables: versions, git commit, config, seed, device."""
    import torch

    from ..provenance import provenance

    found = {}
    for stage, filename in (("train", "metrics.json"), ("eval", "lm_eval.json"), ("mt_bench", "judge/mt_bench.json")):
        for model, exp, seed, path in runs(sources, filename):
            found[f"{stage}/{model}/{exp}/seed{seed}"] = json.loads(path.read_text()).get("provenance")
    report = provenance({"study": name, "runs": [str(s) for s in sources]}, torch.device("cpu"))
    atomic.write_json(out / "provenance.json", {"report": report, "runs": found})


def machine_name(device: dict) -> str:
    """A run's machine in captions, from its provenance's ``device`` record."""
    if not device:
        return "machine not recorded"
    cores = f", {device['cpu_count']} CPU cores" if device.get("cpu_count") else ""
    return f"{device.get('device', '?')}{cores}"


def _machine(sources: list[Path]) -> str:
    """The machine the study's jobs trained on, as the runs' provenance records it (for the seconds axis)."""
    for *_, path in runs(sources, "metrics.json"):
        device = (json.loads(path.read_text()).get("provenance") or {}).get("device") or {}
        if device:
            return machine_name(device)
    return "machine not recorded"


def caption(name: str, train: pd.DataFrame, machine: str, what: str, runs_said: str | None = None) -> str:
    """A figure's caption: what it shows, then the model, data, steps, seeds (or ``runs_said``: what else its runs
    were) and machine behind it."""
    def listed(column):
        values = sorted({str(v) for v in train[column].dropna()}) if column in train else []
        return ", ".join(values) or "not recorded"

    steps = "/".join(str(int(s)) for s in sorted(set(train["steps"].dropna()))) if "steps" in train else ""
    runs_said = runs_said or f"{steps or '?'} steps, seeds {listed('seed')}"
    return f"{what} Study {name}: {listed('model')} on {listed('dataset')}, {runs_said}; {machine}."




def _score_columns(ev: pd.DataFrame, mt: pd.DataFrame, train: pd.DataFrame | None = None) -> dict[str, str]:
    """The scores a study's quality-against-memory figure can plot: name -> column of its table."""
    columns = {"eval_loss": "eval_loss"}
    if train is not None and "forgetting" in train and train["forgetting"].notna().any():
        columns["forgetting"] = "forgetting"
    if len(mt):
        columns["mt_bench"] = "overall"
    for column in (ev["task_metric"].unique() if len(ev) else []):
        columns.setdefault(column.split(" (")[0], column)  # synthetic_qa/exact_match (0-shot, chat)
    return columns


DEFAULT_BASELINES = ("lora-r128", "full")


def _check_sources(root: list[Path]) -> None:
    for source in root:
        if not source.exists():
            raise BadInput(f"report: runs directory {str(source)!r} does not exist; valid: a run directory or a "
                           f"directory holding runs (lisa-bench train --output-dir, a study's runs/<name>)")


def _baselines(baselines: tuple[str, ...] | None, experiments: set[str]) -> list[str]:
    """The comparisons' baselines: those asked for, each of which must have runs; by default those of
    DEFAULT_BASELINES that have runs."""
    if baselines is None:
        return [b for b in DEFAULT_BASELINES if b in experiments]
    for base in baselines:
        if base not in experiments:
            raise choices_error("baseline", base, sorted(experiments), where="report --baselines",
                                more=" (the experiments that have runs)")
    return list(baselines)


def collect(sources: str | Path | list, out_dir: str | Path, name: str, baselines: tuple[str, ...] | None = None,
            resamples: int = 2000, score: str | None = None, sweep: list | None = None,
            matched: str | None = None) -> dict[str, pd.DataFrame]:
    """``sources``: run directories or directories holding runs; ``sweep``: a sweep's grid runs (default: a
    sweep/ directory inside each source). ``score``: what the quality-against-memory figure plots (eval_loss,
    mt_bench or a task/metric of the study's lm-eval scores); default MT-Bench's overall score where the study
    has one, else the held-out loss. ``matched``: a method whose experiments every other method's are compared with
    at the nearest optimizer state and peak memory (tables/matched). No runs, an unknown baseline or score: BadInput before anything is written."""
    root = [Path(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    _check_sources(root)
    out, tables = Path(out_dir), {}
    train, ev, mt = training_table(root), lm_eval_table(root), mt_bench_table(root)
    if not (len(train) or len(ev) or len(mt)):
        raise BadInput(f"report: no runs found under {', '.join(repr(str(s)) for s in root)}: a run is a directory "
                       f"with metrics.json (lisa-bench train), scores.json (lisa-bench eval) or judge/mt_bench.json")
    experiments = set().union(*(set(t["experiment"]) for t in (train, ev, mt) if len(t)))
    baselines = _baselines(baselines, experiments)
    scores = _score_columns(ev, mt, train)
    if matched is not None and (not len(train) or matched not in set(train["family"])):
        raise choices_error("matched method family", matched, sorted(set(train["family"])) if len(train) else [],
                            where="report", more=" (a method family of the runs, whose experiments span a size axis)")
    if score is not None and score not in scores:  # before anything is written
        raise choices_error("figure score", score, list(scores), where="report",
                            more=" (the held-out loss, MT-Bench's overall score, the study's lm-eval metrics)")
    score = score or ("mt_bench" if "mt_bench" in scores else "eval_loss")
    if not baselines and experiments:  # after every check: bad input stays one line
        print(f"report: no run of {' or '.join(DEFAULT_BASELINES)}, the default baselines: the comparisons table is "
              f"empty; name baselines with --baselines (a study's comparisons.baselines), one of "
              f"{', '.join(sorted(experiments))}", file=sys.stderr)
    _write_provenance(root, out, name)
    methods = dict(zip(train["experiment"], train["family"])) if len(train) else {}
    if len(train):
        t = mean_std(train, ["model", "experiment", "family"],
                     ["optimizer_state_MiB", "peak_memory_MiB", "tokens_per_second", "mfu", "loss_last", "eval_loss",
                      "forgetting", "train_seconds", "blocks_never_trained"])
        keep = ("optimizer_state_MiB", "train_seconds", "blocks_never_trained", "mfu")  # no spread shown for these
        t = t[[c for c in t.columns if not any(c.startswith(k) and c != k for k in keep)]]
        write_table(t, out / "tables" / "training",
                    f"Training ({name}): memory, steady-state speed (tokens/s after the warm-up steps; model FLOPs "
                    f"utilisation where the GPU's peak is known), final training loss, held-out loss and forgetting (the change in loss on general text no split contains, "
                    f"from the base model) per method")
        tables["training"] = t
        logs = list(runs(root, "train_log.jsonl"))
        figures.loss_curves(logs, out / "figures" / "loss_curves",
                            caption(name, train, _machine(root), "Training loss per step of every run (lines) and "
                                     "held-out loss where measured (markers); one colour per method family, one "
                                     "marker and line style per experiment."))
        figures.memory_over_steps([p.parent for *_, p in logs], out / "figures" / "memory_over_steps",
                                  caption(name, train, _machine(root), "Memory at each step (left: the process's "
                                           "peak as its kind says, CUDA allocated or RSS) and the optimizer state "
                                           "held (right), per run: LISA's stays flat as its blocks change, a "
                                           "callback that keeps the moments grows."))
        figures.blocks_heatmap(logs, out / "figures" / "lisa_layers",
                               caption(name, train, _machine(root), "The decoder blocks trained at each step (dark) "
                                        "by the first run whose trainable set changes during the run."))
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
        figures.learning_curves(curves, out / "figures" / "learning_curves", machine, methods,
                                caption(name, train, machine, "Held-out loss against optimizer steps and against "
                                         "training seconds: each experiment's mean over seeds, each seed faint."))
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
    comparisons = comparisons_table(samples_table(root), baselines, resamples)
    write_table(comparisons.set_index(["model", "task_metric", "experiment", "baseline"]),
                out / "tables" / "comparisons",
                f"Paired comparisons ({name}): score minus the baseline's on the same questions (each averaged over "
                f"its runs), with a 95% interval from a two-level bootstrap that resamples the runs (seeds) and the "
                f"questions together ({resamples} resamples)")
    tables["comparisons"] = comparisons
    if matched is not None:
        m = matched_table(train, samples_table(root), matched, resamples)
        write_table(m.set_index(["model", "matched_by", "experiment", "metric"]), out / "tables" / "matched",
                    f"At matched memory ({name}): each experiment minus the {matched} experiment nearest to it in "
                    f"optimizer state and in peak memory (means over seeds), in held-out loss, forgetting and each "
                    f"lm-eval metric, with a 95% interval from a two-level bootstrap over runs and questions "
                    f"({resamples} resamples); lower is better for the losses and forgetting, higher for the scores")
        tables["matched"] = m
    grid = sweep_grid([Path(s) for s in sweep] if sweep is not None else [s / "sweep" for s in root])
    if len(grid):
        write_table(grid.set_index(["model", "experiment", "lr"]), out / "sweep" / "grid",
                    f"Learning-rate sweep ({name}): held-out loss of each grid point, mean over the sweep's seeds")
        figures.lr_sweep(grid, out / "sweep" / "lr_sweep", methods,
                         caption(name, train, _machine(root), "Learning-rate sweep: held-out loss after the "
                                  "sweep's steps against the rate; the rate the final runs use circled.")
                         if len(train) else None)
        tables["sweep"] = grid
    if len(mt):
        values = [c for c in mt.columns if c.startswith("cat_") or c.startswith("turn_")] + ["overall", "failure_rate"]
        t = mean_std(mt, ["model", "experiment"], values)
        write_table(t, out / "tables" / "mt_bench", f"MT-Bench ({name}; judge {mt['judge'].iloc[0]})")
        tables["mt_bench"] = t
        cats = t[[c for c in t.columns if c.startswith("cat_") and not c.endswith(("_std", "_ci95"))]]
        ci = t[[c for c in t.columns if c.startswith("cat_") and c.endswith("_ci95")]]
        figures.mt_bench_categories(cats.rename(columns=lambda c: c[4:]), out / "figures" / "mt_bench_categories",
                                    methods, caption(name, train, _machine(root), "MT-Bench score per category, "
                                                      "mean over seeds, with the 95% interval over seeds where there "
                                                      "are several.") if len(train) else None,
                                    ci.rename(columns=lambda c: c[4:-5]) if ci.notna().any().any() else None)
    if "training" in tables:  # the study's score as score_vs_memory, every other as score_vs_memory-<name>
        for each in [score] + [k for k in scores if k != score]:
            column = scores[each]
            per_run = _score_per_run(train, ev, mt, column, each)
            if per_run[column].isna().all():
                continue
            label = {"eval_loss": "final held-out loss",
                     "forgetting": "forgetting (change in general-text loss)"}.get(each) or (
                f"MT-Bench overall ({mt['judge'].iloc[0]})" if each == "mt_bench" else column)
            stem = "score_vs_memory" if each == score else "score_vs_memory-" + re.sub(r"[^\w.-]+", "_", each)
            figures.score_vs_memory(per_run, out / "figures" / stem, column, label,
                                    caption(name, train, _machine(root), f"{label} against measured peak memory "
                                             f"(left) and optimizer state (right): every seed a small point, each "
                                             f"experiment's mean a large one, each method family's means joined in "
                                             f"order of size."))
    return tables


def _score_per_run(train: pd.DataFrame, ev: pd.DataFrame, mt: pd.DataFrame, column: str, score: str):
    """Each training run's memory next to its own score (its held-out loss, MT-Bench overall, or an lm-eval
    metric of the same run)."""
    runs = train[["model", "experiment", "family", "seed", "peak_memory_MiB", "optimizer_state_MiB", "eval_loss"]
                 + (["forgetting"] if score == "forgetting" else [])]
    keys = ["model", "experiment", "seed"]
    if score == "mt_bench":
        runs = runs.merge(mt[keys + ["overall"]], on=keys)
    elif score not in ("eval_loss", "forgetting"):
        scored = ev[ev["task_metric"] == column].rename(columns={"value": column})
        runs = runs.merge(scored[keys + [column]], on=keys)
    return runs


def summary(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> str:
    """What a report wrote, and its headline: each experiment's memory and held-out loss (mean over seeds)."""
    out = Path(out_dir)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix in (".csv", ".png"))
    lines = [f"report: wrote {len(written)} tables and figures (CSV, PNG; Markdown, LaTeX and PDF beside them) "
             f"under {out}/: {', '.join(written)}"]
    if "training" in tables:
        head = tables["training"].reset_index()
        cols = [c for c in ("model", "experiment", "optimizer_state_MiB", "peak_memory_MiB", "eval_loss", "seeds")
                if c in head and head[c].notna().any()]
        lines += ["", head[cols].to_markdown(index=False, floatfmt=".4g")]
    return "\n".join(lines)


def sweep_grid(sources: list[Path]) -> pd.DataFrame:
    from .sweep import grid_table

    grid = grid_table(sources)
    if grid.empty:
        return grid
    out = mean_std(grid, ["model", "experiment", "lr"], ["eval_loss"]).reset_index()
    best = out.loc[out.groupby(["model", "experiment"])["eval_loss"].idxmin()]
    out["chosen"] = out.index.isin(best.index)
    return out

