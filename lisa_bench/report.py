"""Collect a study's outputs into tables (CSV, Markdown, LaTeX) and figures (PNG, PDF).

Reads the pipeline's run tree: ``RUNS/train/<model>/<experiment>/seed<k>/`` (metrics.json,
train_log.jsonl), ``RUNS/eval/...`` (scores.json), ``RUNS/mt_bench/.../judge/mt_bench.json``.
Methods are rows, as in the paper; numbers are means over seeds with the standard deviation.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import atomic  # noqa: E402


def _runs(root: Path, stage: str, filename: str):
    depth = len(Path(filename).parts)
    for path in sorted((root / stage).glob(f"*/*/seed*/{filename}")):
        seed_dir = path.parents[depth - 1]
        yield seed_dir.parent.parent.name, seed_dir.parent.name, int(seed_dir.name[4:]), path


def write_table(df: pd.DataFrame, path: Path, caption: str) -> None:
    """CSV keeps every column; Markdown and LaTeX drop empty ones (e.g. the spread of a single seed)
    and leave missing cells blank (e.g. the speed of the untrained base model)."""
    flat = df.reset_index()
    atomic.write_text(path.with_suffix(".csv"), flat.to_csv(index=False))
    shown = flat.dropna(axis=1, how="all")
    markdown = shown.astype(object).where(shown.notna(), None).to_markdown(index=False, floatfmt=".4g",
                                                                           missingval="")
    atomic.write_text(path.with_suffix(".md"), f"{caption}\n\n{markdown}\n")
    atomic.write_text(path.with_suffix(".tex"), shown.to_latex(index=False, float_format="%.4g", caption=caption,
                                                               na_rep=""))


def _mean_std(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    g = df.groupby(keys)[values]
    mean, std, n = g.mean(), g.std(), g.size()
    out = mean.copy()
    for v in values:
        out[f"{v}_std"] = std[v]
    out["seeds"] = n
    return out


def training_table(root: Path) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in _runs(root, "train", "metrics.json"):
        m = json.loads(path.read_text())
        rows.append({"model": model, "experiment": exp, "method": m["method"], "seed": seed,
                     "trainable_params": m["trainable_params_peak"],
                     "optimizer_state_MiB": m["optimizer_state_bytes_peak"] / 2**20,
                     "peak_memory_MiB": m["peak_memory_bytes"] / 2**20, "memory_kind": m["memory_kind"],
                     "tokens_per_second": m["tokens_per_second"], "loss_first": m["train_loss_first"],
                     "loss_last": m["train_loss_last"]})
    return pd.DataFrame(rows)


def lm_eval_table(root: Path) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in _runs(root, "eval", "scores.json"):
        for s in json.loads(path.read_text()):
            rows.append({"model": model, "experiment": exp, "seed": seed, "task_metric": f"{s['task']}/{s['metric']}",
                         "value": s["value"]})
    return pd.DataFrame(rows)


def mt_bench_table(root: Path) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in _runs(root, "mt_bench", "judge/mt_bench.json"):
        r = json.loads(path.read_text())
        row = {"model": model, "experiment": exp, "seed": seed, "overall": r["overall"],
               "failure_rate": r["failure_rate"], "judge": r["judge"]}
        row.update({f"cat_{k}": v for k, v in r["per_category"].items()})
        row.update(r["per_turn"])
        rows.append(row)
    return pd.DataFrame(rows)


def _figure(path: Path):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    return fig, ax


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    for suffix in (".png", ".pdf"):
        fig.savefig(path.with_suffix(suffix), dpi=130)
    plt.close(fig)


def loss_curves(root: Path, out: Path) -> None:
    fig, ax = _figure(out)
    for model, exp, seed, path in _runs(root, "train", "train_log.jsonl"):
        log = pd.read_json(path, lines=True)
        if len(log):
            ax.plot(log["step"], log["loss"], label=f"{exp} ({model}, seed {seed})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=6)
    _save(fig, out)


def lisa_heatmap(root: Path, out: Path) -> None:
    """Which decoder blocks LISA trained at each step (first LISA run found)."""
    for model, exp, seed, path in _runs(root, "train", "train_log.jsonl"):
        m = json.loads((path.parent / "metrics.json").read_text())
        if m["method"] not in ("lisa", "lisa-callback"):
            continue
        log = pd.read_json(path, lines=True)
        grid = [[1 if b in active else 0 for b in range(m["decoder_blocks"])] for active in log["active_layers"]]
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.imshow(pd.DataFrame(grid).T.values, aspect="auto", cmap="Greys", interpolation="nearest")
        ax.set_xlabel("step")
        ax.set_ylabel("decoder block")
        ax.set_title(f"blocks trained by {exp} ({model}, seed {seed})")
        _save(fig, out)
        return


def _write_provenance(root: Path, out: Path, name: str) -> None:
    """The provenance of every run behind the tables: versions, git commit, config, seed, device."""
    import torch

    from .provenance import provenance

    runs = {}
    for stage, filename in (("train", "metrics.json"), ("eval", "lm_eval.json"), ("mt_bench", "judge/mt_bench.json")):
        for model, exp, seed, path in _runs(root, stage, filename):
            runs[f"{stage}/{model}/{exp}/seed{seed}"] = json.loads(path.read_text()).get("provenance")
    report = provenance({"study": name, "runs_dir": str(root)}, torch.device("cpu"))
    atomic.write_json(out / "provenance.json", {"report": report, "runs": runs})


def collect(runs_dir: str | Path, out_dir: str | Path, name: str) -> dict[str, pd.DataFrame]:
    from .plots import memory_over_steps

    root, out = Path(runs_dir), Path(out_dir)
    tables = {}
    _write_provenance(root, out, name)
    train = training_table(root)
    if len(train):
        t = _mean_std(train, ["model", "experiment", "method"],
                      ["optimizer_state_MiB", "peak_memory_MiB", "tokens_per_second", "loss_last"])
        write_table(t, out / "tables" / "training", f"Training ({name}): memory, speed and final loss per method")
        tables["training"] = t
        loss_curves(root, out / "figures" / "loss_curves")
        memory_over_steps([p.parent for *_, p in _runs(root, "train", "train_log.jsonl")],
                          out / "figures" / "memory_over_steps")
        lisa_heatmap(root, out / "figures" / "lisa_layers")
    ev = lm_eval_table(root)
    if len(ev):
        t = ev.pivot_table(index=["model", "experiment"], columns="task_metric", values="value", aggfunc="mean")
        write_table(t, out / "tables" / "lm_eval", f"lm-evaluation-harness ({name}), mean over seeds")
        tables["lm_eval"] = t
    mt = mt_bench_table(root)
    if len(mt):
        values = [c for c in mt.columns if c.startswith("cat_") or c.startswith("turn_")] + ["overall", "failure_rate"]
        t = _mean_std(mt, ["model", "experiment"], values)
        write_table(t, out / "tables" / "mt_bench", f"MT-Bench ({name}; judge {mt['judge'].iloc[0]})")
        tables["mt_bench"] = t
        cats = t[[c for c in t.columns if c.startswith("cat_") and not c.endswith("_std")]]
        fig, ax = _figure(out)
        cats.rename(columns=lambda c: c[4:]).T.plot.bar(ax=ax)
        ax.set_ylabel("MT-Bench score (1-10)")
        ax.legend(fontsize=6)
        _save(fig, out / "figures" / "mt_bench_categories")
        if "training" in tables:
            pareto = tables["training"].reset_index().merge(t.reset_index(), on=["model", "experiment"])
            fig, ax = _figure(out)
            ax.scatter(pareto["peak_memory_MiB"], pareto["overall"])
            for _, r in pareto.iterrows():
                ax.annotate(r["experiment"], (r["peak_memory_MiB"], r["overall"]), fontsize=7)
            ax.set_xlabel("peak training memory (MiB)")
            ax.set_ylabel("MT-Bench overall")
            _save(fig, out / "figures" / "score_vs_memory")
    return tables


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and figures of a pipeline run tree",
                       description="Collects RUNS/{train,eval,mt_bench} into OUT/tables/*.{csv,md,tex} and "
                                   "OUT/figures/*.{png,pdf}.")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--name", default="study")
    p.set_defaults(func=lambda a: (collect(a.runs_dir, a.output_dir, a.name), 0)[1])
