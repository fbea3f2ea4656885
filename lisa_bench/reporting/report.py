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
from . import figures
from .tables import lm_eval_table, mean_std, mt_bench_table, runs, training_table, write_table


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


def collect(runs_dir: str | Path, out_dir: str | Path, name: str) -> dict[str, pd.DataFrame]:
    root, out = Path(runs_dir), Path(out_dir)
    tables = {}
    _write_provenance(root, out, name)
    train = training_table(root)
    if len(train):
        t = mean_std(train, ["model", "experiment", "method"],
                     ["optimizer_state_MiB", "peak_memory_MiB", "tokens_per_second", "loss_last", "eval_loss"])
        write_table(t, out / "tables" / "training",
                    f"Training ({name}): memory, speed, final training loss and held-out loss per method")
        tables["training"] = t
        logs = list(runs(root, "train", "train_log.jsonl"))
        figures.loss_curves(logs, out / "figures" / "loss_curves")
        figures.memory_over_steps([p.parent for *_, p in logs], out / "figures" / "memory_over_steps")
        figures.blocks_heatmap(logs, out / "figures" / "lisa_layers")
    ev = lm_eval_table(root)
    if len(ev):
        t = ev.pivot_table(index=["model", "experiment"], columns="task_metric", values="value", aggfunc="mean")
        write_table(t, out / "tables" / "lm_eval", f"lm-evaluation-harness ({name}), mean over seeds")
        tables["lm_eval"] = t
    mt = mt_bench_table(root)
    if len(mt):
        values = [c for c in mt.columns if c.startswith("cat_") or c.startswith("turn_")] + ["overall", "failure_rate"]
        t = mean_std(mt, ["model", "experiment"], values)
        write_table(t, out / "tables" / "mt_bench", f"MT-Bench ({name}; judge {mt['judge'].iloc[0]})")
        tables["mt_bench"] = t
        cats = t[[c for c in t.columns if c.startswith("cat_") and not c.endswith("_std")]]
        figures.mt_bench_categories(cats.rename(columns=lambda c: c[4:]), out / "figures" / "mt_bench_categories")
        if "training" in tables:
            pareto = tables["training"].reset_index().merge(t.reset_index(), on=["model", "experiment"])
            figures.score_vs_memory(pareto, out / "figures" / "score_vs_memory")
    return tables


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and figures of a pipeline run tree",
                       description="Collects RUNS/{train,eval,mt_bench} into OUT/tables/*.{csv,md,tex} and "
                                   "OUT/figures/*.{png,pdf}.")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--name", default="study")
    p.set_defaults(func=lambda a: (collect(a.runs_dir, a.output_dir, a.name), 0)[1])
