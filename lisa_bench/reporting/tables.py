"""Tables: one writer for CSV, Markdown and LaTeX, and the study's tables read from its run tree."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import atomic


def runs(root: Path, stage: str, filename: str):
    """(model, experiment, seed, path) of every ``root/stage/<model>/<experiment>/seed<k>/filename``."""
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


def mean_std(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    g = df.groupby(keys)[values]
    mean, std, n = g.mean(), g.std(), g.size()
    out = mean.copy()
    for v in values:
        out[f"{v}_std"] = std[v]
    out["seeds"] = n
    return out


def training_table(root: Path) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in runs(root, "train", "metrics.json"):
        m = json.loads(path.read_text())
        rows.append({"model": model, "experiment": exp, "method": m["method"], "seed": seed,
                     "trainable_params": m["trainable_params_peak"],
                     "optimizer_state_MiB": m["optimizer_state_bytes_peak"] / 2**20,
                     "peak_memory_MiB": m["peak_memory_bytes"] / 2**20, "memory_kind": m["memory_kind"],
                     "tokens_per_second": m["tokens_per_second"], "loss_first": m["train_loss_first"],
                     "loss_last": m["train_loss_last"], "eval_loss": m.get("eval_loss"),
                     "precision": m.get("precision"), "padding_fraction": m.get("padding_fraction")})
    return pd.DataFrame(rows)


def lm_eval_table(root: Path) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in runs(root, "eval", "scores.json"):
        for s in json.loads(path.read_text()):
            shots = s.get("num_fewshot")
            setting = f"{shots}-shot" if shots is not None else "default shots"
            setting += ", chat" if s.get("apply_chat_template") else ""
            rows.append({"model": model, "experiment": exp, "seed": seed,
                         "task_metric": f"{s['task']}/{s['metric']} ({setting})", "value": s["value"]})
    return pd.DataFrame(rows)


def mt_bench_table(root: Path) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in runs(root, "mt_bench", "judge/mt_bench.json"):
        r = json.loads(path.read_text())
        row = {"model": model, "experiment": exp, "seed": seed, "overall": r["overall"],
               "failure_rate": r["failure_rate"], "judge": r["judge"]}
        row.update({f"cat_{k}": v for k, v in r["per_category"].items()})
        row.update(r["per_turn"])
        rows.append(row)
    return pd.DataFrame(rows)
