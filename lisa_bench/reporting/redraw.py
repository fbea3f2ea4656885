"""``lisa-bench redraw DIR``: a committed results directory's figures drawn again by today's figure code from what
the directory keeps: its tables (tables/*.csv, norms/*.csv, memory/*.csv, sweep/grid.csv) and provenance.json
(each run's config, from which its method family is read).

For studies published before ``publish`` kept each run's records (results/<name>/runs/, from which ``lisa-bench
report --runs`` redraws everything): their figures were drawn by older code. A figure whose inputs are not in the
tables (the loss curves, memory per step and blocks trained need each run's train_log.jsonl) is left as it is, and
said so. Nothing is invented: where the tables hold only each experiment's mean over seeds (training.csv), the
figure draws the means and its caption says that the seeds are not drawn. Each figure gets its caption (.txt
beside it) with the study's model, data, steps, seeds and machine as provenance.json records them; the directory's
index.html, where it has one, is written again (``lisa-bench page``).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput

# figures that need what only the runs kept (not the tables): stem -> what
NEEDS_RUNS = {
    "figures/loss_curves": "each run's train_log.jsonl (its loss per step)",
    "figures/memory_over_steps": "each run's train_log.jsonl (its memory per step)",
    "figures/lisa_layers": "each run's train_log.jsonl (the blocks trained at each step)",
}
SEEDS_NOT_DRAWN = ("This study's per-run records were not kept, so seeds are not drawn as points; their spread is in "
                   "tables/training.")


@dataclass
class Study:
    """What a results directory says about its runs: from provenance.json (each training run's config and device)
    and tables/training.csv."""
    root: Path
    name: str
    train: object  # DataFrame: one row per training run (model, experiment, seed, dataset, steps, family)
    machine: str
    families: dict = field(default_factory=dict)  # experiment -> method family
    run_families: dict = field(default_factory=dict)  # (model, experiment, seed) -> method family

    def caption(self, what: str, sources: list[str], runs: str | None = None) -> str:
        """``what`` the figure shows, then the study's model, data, steps, seeds (or ``runs``, what else its runs
        were) and machine, as report's captions say them, and the tables it was redrawn from."""
        from .report import caption

        return (caption(self.name, self.train, self.machine, what, runs)
                + f" Redrawn by lisa-bench redraw from {', '.join(sources)}.")


def read_study(root: Path) -> Study:
    import pandas as pd

    from ..methods import family
    from .report import machine_name

    runs = {}
    if (root / "provenance.json").is_file():
        runs = json.loads((root / "provenance.json").read_text()).get("runs") or {}
    rows, machine = [], "machine not recorded"
    for key, record in runs.items():
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "train" or not isinstance(record, dict):
            continue
        config = record.get("config") or {}
        seed = int(parts[3][len("seed"):]) if parts[3].startswith("seed") else config.get("seed")
        steps = config.get("max_steps")
        rows.append({"model": parts[1], "experiment": parts[2], "seed": seed, "dataset": config.get("dataset"),
                     "steps": steps if steps is not None and steps > 0 else None,
                     "family": family(config["method"], config.get("method_options")) if config.get("method")
                     else None})
        if machine == "machine not recorded" and record.get("device"):
            machine = machine_name(record["device"])
    train = pd.DataFrame(rows, columns=["model", "experiment", "seed", "dataset", "steps", "family"])
    training = _read(root / "tables" / "training.csv")
    if not len(train) and training is not None:  # no provenance: the table's models, nothing else
        train = training[["model", "experiment"]].copy()
    families = {e: sorted(set(f.dropna()))[0] for e, f in train.groupby("experiment")["family"] if f.notna().any()} \
        if "family" in train else {}
    if training is not None:  # experiments provenance does not name: the table's family, else its method
        for _, row in training.iterrows():
            families.setdefault(row["experiment"], row.get("family") if pd.notna(row.get("family")) else
                                row.get("method") if pd.notna(row.get("method")) else row["experiment"])
    run_families = {(r.model, r.experiment, r.seed): r.family for r in train.itertuples() if "family" in train}
    return Study(root, root.name, train, machine, families, run_families)


def _read(path: Path, **kwargs):
    import pandas as pd

    if not path.is_file():
        return None
    table = pd.read_csv(path, **kwargs)
    return table if len(table) else None


def _seed_counts(training) -> str:
    """Each experiment's seeds in words: "2 seeds", or "2 seeds, lora-r128-eh 1"."""
    counts = training.set_index("experiment")["seeds"].dropna().astype(int) if "seeds" in training else []
    if not len(counts):
        return "its seeds"
    common = int(counts.mode().max())
    return f"{common} seed{'s' if common != 1 else ''}" + "".join(f", {e} {n}" for e, n in counts.items()
                                                                   if n != common)


def _judge(root: Path) -> str | None:
    """The MT-Bench judge, as the table's caption names it ("MT-Bench (default; judge hf:smollm2-135m)")."""
    md = root / "tables" / "mt_bench.md"
    found = re.search(r"judge ([^)]+)\)", md.read_text()) if md.is_file() else None
    return found[1] if found else None


# ---------------------------------------------------------------- one function per figure

def score_vs_memory(study: Study, out: Path) -> str | None:
    from . import figures

    training = _read(study.root / "tables" / "training.csv")
    if training is None or not {"peak_memory_MiB", "optimizer_state_MiB"} <= set(training.columns):
        return None
    mt = _read(study.root / "tables" / "mt_bench.csv")
    sources = ["tables/training.csv"]
    runs = training.copy()
    runs["family"] = runs["experiment"].map(study.families)
    runs["seed"] = None
    if mt is not None and "overall" in mt:  # the study's score, as report picks it: MT-Bench where it has one
        runs = runs.merge(mt[["model", "experiment", "overall"]], on=["model", "experiment"])
        column, sources = "overall", sources + ["tables/mt_bench.csv"]
        label = f"MT-Bench overall ({_judge(study.root)})" if _judge(study.root) else "MT-Bench overall"
    elif "eval_loss" in runs and runs["eval_loss"].notna().any():
        column, label = "eval_loss", "final held-out loss"
    else:
        return None
    one = "seeds" in training and (training["seeds"].dropna() == 1).all()
    points = "each experiment's one run (one seed each)" if one else \
        f"each experiment's mean over its seeds ({_seed_counts(training)})"
    figures.score_vs_memory(runs, out, column, label, study.caption(
        f"{label[0].upper()}{label[1:]} against measured peak memory (left) and optimizer state (right): {points} a point, each method "
        f"family's points joined in order of size." + ("" if one else " " + SEEDS_NOT_DRAWN), sources), seeds=False)
    return f"{points}, {label}" + ("" if one else "; seeds not drawn")


def mt_bench_categories(study: Study, out: Path) -> str | None:
    from . import figures

    mt = _read(study.root / "tables" / "mt_bench.csv")
    if mt is None:
        return None
    t = mt.set_index(["model", "experiment"])
    cats = t[[c for c in t.columns if c.startswith("cat_") and not c.endswith(("_std", "_ci95"))]]
    ci = t[[c for c in t.columns if c.startswith("cat_") and c.endswith("_ci95")]]
    if cats.empty:
        return None
    intervals = ci.rename(columns=lambda c: c[4:-5]) if ci.notna().any().any() else None
    judge = _judge(study.root)
    figures.mt_bench_categories(cats.rename(columns=lambda c: c[4:]), out, study.families, study.caption(
        "MT-Bench score per category, mean over seeds, with the 95% interval over seeds where there are several"
        + (f" (judge {judge})." if judge else "."), ["tables/mt_bench.csv"]), intervals)
    return (f"{len(cats.columns)} categories, {len(cats)} experiments"
            + ("" if intervals is not None else "; no interval (one seed each)"))


def learning_curves(study: Study, out: Path) -> str | None:
    from . import figures

    points = _read(study.root / "tables" / "curve_points.csv")
    if points is None:
        return None
    figures.learning_curves(points, out, study.machine, study.families, study.caption(
        "Held-out loss against optimizer steps and against training seconds: each experiment's mean over seeds, "
        "each seed faint.", ["tables/curve_points.csv"]))
    return f"{points.groupby(['model', 'experiment', 'seed']).ngroups} runs' points, each seed drawn"


def _norm_label(label: str) -> tuple[str, str, int | None]:
    """(method, experiment, seed) of a norms table's row: "lora (lora-r128-eh, seed 0)" or "lora (run-dir)"."""
    m = re.match(r"^(.+?) \((.+), seed (\d+)\)$", label) or re.match(r"^(.+?) \((.+)\)$", label)
    if not m:
        return label, label, None
    return m[1], m[2], int(m[3]) if m.lastindex == 3 else None


def weight_norms(study: Study, out: Path) -> str | None:
    from . import figures
    from .norms import unit_order

    mean = _read(study.root / "norms" / "mean_weight_norms.csv", index_col=0)
    update = _read(study.root / "norms" / "update_norms.csv", index_col=0)
    if mean is None or update is None:
        return None
    skew = _read(study.root / "norms" / "skew.csv", index_col=0)
    models = skew["model"].to_dict() if skew is not None and "model" in skew else {}
    several = len(set(models.values())) > 1
    rename, styles, blank = {}, {}, []
    for label in mean.index:
        method, exp, seed = _norm_label(label)
        model = models.get(label, "")
        fam = study.run_families.get((model, exp, seed)) or study.families.get(exp) or method
        shown = figures.run_label(exp, model, seed, several)
        rename[label], styles[shown] = shown, (exp, fam)
        if not (mean.loc[label].fillna(0) > 0).any() and not (update.loc[label].fillna(0) > 0).any():
            blank.append(label)
    mean, update = mean.drop(index=blank), update.drop(index=blank, errors="ignore")
    mean, update = mean[unit_order(mean.columns)], update[unit_order(update.columns)]
    untrained = (f" Not drawn: {', '.join(rename[b] for b in blank)}, which trained no unit (every norm blank or 0)."
                 if blank else "")
    drawn = {fam for label, (_, fam) in styles.items() if label not in {rename[b] for b in blank}}
    colours = figures.colour_note(drawn)
    figures.weight_norms(mean.rename(index=rename), update.rename(index=rename), out, styles, study.caption(
        "Per unit from the embedding to the head, the mean norm of the trained parameters over training (left; "
        "LoRA: its adapters, and the embedding and head where trained) and the norm of the update W_T - W_0 "
        f"(right), one line per run; {colours}." + untrained, ["norms/mean_weight_norms.csv", "norms/update_norms.csv"]))
    return f"{len(mean)} runs" + (f" ({len(blank)} that trained nothing left out)" if blank else "")


def lr_sweep(study: Study, out: Path) -> str | None:
    from . import figures

    grid = _read(study.root / "sweep" / "grid.csv")
    if grid is None or "chosen" not in grid:
        return None
    grid["chosen"] = grid["chosen"].astype(str).str.lower().isin(("true", "1", "1.0"))
    seeds = "/".join(str(int(s)) for s in sorted(grid["seeds"].dropna().unique())) if "seeds" in grid else "?"
    # the grid's own steps are not in the tables: the study's (its final runs') would mislead
    figures.lr_sweep(grid, out, study.families, study.caption(
        "Learning-rate sweep: held-out loss after the sweep's steps against the rate, mean over the grid's seeds; "
        "the rate the final runs use circled.", ["sweep/grid.csv"],
        f"{seeds} seed{'s' if seeds != '1' else ''} per grid point"))
    return f"{grid.groupby(['model', 'experiment']).ngroups} experiments, {len(grid)} grid points"


def _memory_context(root: Path, table) -> str:
    """The memory cells' shape (device, precision, batch, tokens, steps) and machine, for the memory captions."""
    first = table.iloc[0]

    def shown(col, fmt="{}"):
        vals = sorted({fmt.format(v) for v in table[col].dropna()}) if col in table else []
        return "/".join(vals) or "?"

    machine = "machine not recorded"
    if (root / "memory" / "memory_provenance.json").is_file():
        prov = json.loads((root / "memory" / "memory_provenance.json").read_text())
        devices = [prov.get("device")] + [r.get("device") for r in (prov.get("runs") or {}).values()
                                          if isinstance(r, dict)]
        from .report import machine_name

        machine = next((machine_name(d) for d in devices if d), machine)
    protocol = f"; {first['protocol']}" if "protocol" in table and isinstance(first.get("protocol"), str) else ""
    return (f"Model {shown('model')}, {shown('device')}, {shown('precision')}, batch {shown('batch_size', '{:g}')}, "
            f"{shown('seq_len', '{:g}')} tokens, {shown('steps', '{:g}')} measured steps{protocol}; {machine}. "
            f"Redrawn by lisa-bench redraw from memory/memory.csv.")


def _memory_table(root: Path):
    table = _read(root / "memory" / "memory.csv")
    if table is not None and "experiment" not in table:  # tables from before cells were experiments
        table = table.rename(columns={"method": "experiment"})
    return table


def memory_breakdown(study: Study, out: Path) -> str | None:
    from . import figures

    table = _memory_table(study.root)
    if table is None:
        return None
    figures.memory_breakdown(table, out, _memory_context(study.root, table))
    return f"{int((table['status'] == 'ok').sum())} measured cells"


def speed(study: Study, out: Path) -> str | None:
    from . import figures

    table = _memory_table(study.root)
    if table is None or "speed_vs_full" not in table:
        return None
    figures.speed_bars(table, out, _memory_context(study.root, table))
    return f"{int(table['speed_vs_full'].notna().sum())} cells with a full baseline"


def memory_trace(study: Study, out: Path) -> str | None:
    from . import figures

    table, trace = _memory_table(study.root), _read(study.root / "memory" / "memory_trace.csv")
    if table is None or trace is None:
        return None
    if "experiment" not in trace:
        trace = trace.rename(columns={"method": "experiment"})
    context = _memory_context(study.root, table).replace("memory/memory.csv", "memory/memory_trace.csv")
    figures.memory_trace(trace, out, "Memory at each step of each `lisa-bench memory` cell (top: the peak allocated "
                                     "per step on CUDA, the process's resident set on the CPU) and the optimizer "
                                     f"state held (bottom); step 0 is the warm-up. {context}")
    return f"{trace.groupby(['model', 'experiment']).ngroups} cells"


# stem (under the directory) -> its drawing, in the order they are drawn
FIGURES = {
    "figures/score_vs_memory": score_vs_memory,
    "figures/mt_bench_categories": mt_bench_categories,
    "figures/learning_curves": learning_curves,
    "norms/weight_norms": weight_norms,
    "sweep/lr_sweep": lr_sweep,
    "memory/memory_breakdown": memory_breakdown,
    "memory/speed": speed,
    "memory/memory_trace": memory_trace,
}
# the files each figure is drawn from
INPUTS = {
    "figures/score_vs_memory": ("tables/training.csv",),
    "figures/mt_bench_categories": ("tables/mt_bench.csv",),
    "figures/learning_curves": ("tables/curve_points.csv",),
    "norms/weight_norms": ("norms/mean_weight_norms.csv", "norms/update_norms.csv"),
    "sweep/lr_sweep": ("sweep/grid.csv",),
    "memory/memory_breakdown": ("memory/memory.csv",),
    "memory/speed": ("memory/memory.csv",),
    "memory/memory_trace": ("memory/memory.csv", "memory/memory_trace.csv"),
}


def redraw(root: str | Path) -> list[str]:
    """Draw again every figure of ``root`` whose inputs are in its tables; one line per figure, redrawn or left
    (and why). Nothing to redraw (no such table): BadInput before anything is written."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"redraw: {str(root)!r} is not a directory; valid: a results directory with tables "
                       f"(results/<name>, a study's runs/<name>/results)")
    todo = [stem for stem in FIGURES if all((root / name).is_file() for name in INPUTS[stem])]
    if not todo:
        raise BadInput(f"redraw: nothing to redraw under {str(root)!r}: none of "
                       f"{', '.join(dict.fromkeys(n for names in INPUTS.values() for n in names))} is there; valid: a "
                       f"results directory `lisa-bench report` or a study wrote")
    study = read_study(root)
    lines, done = [], set()
    for stem in todo:
        what = FIGURES[stem](study, root / stem)
        if what is None:
            names = " and ".join(INPUTS[stem])
            lines.append(f"redraw: skipped {stem}.png: {names} lack{'s' if len(INPUTS[stem]) == 1 else ''} the "
                         f"columns or rows it needs")
            continue
        done.add(stem)
        lines.append(f"redraw: redrew {stem}.png (and .pdf, .txt caption): {what}")
    drawn = sorted(p.with_suffix("").relative_to(root).as_posix() for p in root.rglob("*.png")
                   if p.with_suffix(".pdf").is_file())
    for stem in drawn:
        if stem in done:
            continue
        if stem in NEEDS_RUNS:
            why = f"it needs {NEEDS_RUNS[stem]}, which this directory does not keep"
        elif stem in FIGURES:
            why = f"{' and '.join(INPUTS[stem])} {'is' if len(INPUTS[stem]) == 1 else 'are'} not here"
        else:
            why = "no drawing of it from tables is known"
        lines.append(f"redraw: left {stem}.png as it was: {why}")
    if (root / "index.html").is_file() and done:
        from .page import write_page

        lines.append(f"page: {write_page(root)} (written again, with the new captions)")
    return lines


def add_parser(sub) -> None:
    p = sub.add_parser("redraw", help="redraw a results directory's figures from its committed tables",
                       description="Draw again, with the current figure code, every figure of DIR whose inputs are "
                                   "in its tables (tables/, norms/, memory/, sweep/) and provenance.json, each with "
                                   "its caption; figures that need the runs' own records are left as they are. One "
                                   "line per figure. DIR/index.html, where there is one, is written again.")
    p.add_argument("directory", help="a results directory (results/<name>, runs/<study>/results)")
    p.set_defaults(func=_cmd_redraw)


def _cmd_redraw(args: argparse.Namespace) -> int:
    for line in redraw(args.directory):
        print(line)
    return 0
