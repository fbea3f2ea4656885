"""Tables: one writer for CSV, Markdown and LaTeX, and the study's tables read from its run tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic


def runs(sources: list[Path], filename: str):
    """(model, experiment, seed, path) of every run's ``filename`` under ``sources`` (run directories, or
    directories holding runs at any depth), by the identity each run records (lisa_bench/runs.py)."""
    from ..runs import find_runs

    return find_runs(sources, filename)


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
    """Mean over seeds, with the standard deviation and the half-width of a 95% interval (Student's t)."""
    from scipy import stats

    g = df.groupby(keys)[values]
    mean, std, n = g.mean(), g.std(), g.size()
    out = mean.copy()
    half = stats.t.ppf(0.975, (n - 1).clip(lower=1)) / n.pow(0.5)
    for v in values:
        out[f"{v}_std"] = std[v]
        out[f"{v}_ci95"] = (std[v] * half).where(n > 1)
    out["seeds"] = n
    return out


def samples_table(sources: list[Path]) -> pd.DataFrame:
    """Each question's score of every run (exact match and accuracy), from the runs' samples.jsonl."""
    frames = []
    for model, exp, seed, path in runs(sources, "samples.jsonl"):
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        if rows:
            frame = pd.DataFrame(rows)
            frame["model"], frame["experiment"], frame["seed"] = model, exp, seed
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["task", "doc_id", "metric", "value", "model", "experiment", "seed"])


def paired_bootstrap(a, b, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The mean difference of two experiments' scores on the same questions and its 95% percentile interval, by a
    two-level bootstrap: each resample draws the questions, and each experiment's runs (seeds), with replacement,
    so the interval holds the run-to-run spread as well as the questions'. ``a``, ``b``: scores as (runs, questions)
    arrays, the questions in the same order. With one run each it is the bootstrap over questions."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    rng = np.random.default_rng(seed)
    questions = rng.integers(0, a.shape[1], size=(resamples, a.shape[1]))

    def drawn(scores):  # (resamples, questions): each resample's mean over its drawn runs, at its drawn questions
        runs = rng.integers(0, len(scores), size=(resamples, len(scores)))
        return np.take_along_axis(scores[runs].mean(axis=1), questions, axis=1)

    means = (drawn(a) - drawn(b)).mean(axis=1)
    return float(a.mean() - b.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def comparisons_table(samples: pd.DataFrame, baselines: list[str], resamples: int = 2000) -> pd.DataFrame:
    """Each experiment against each baseline on the questions both were scored on: the mean difference of their
    scores (each averaged over its runs) and a 95% interval from a two-level bootstrap over runs and questions."""
    cols = ["model", "task_metric", "experiment", "baseline", "questions", "seeds", "seeds_baseline",
            "difference", "ci_low", "ci_high"]
    if samples.empty:
        return pd.DataFrame(columns=cols)
    samples = samples.assign(task_metric=samples["task"] + "/" + samples["metric"])
    # (runs, questions) per experiment: a question a run was not scored on is missing (NaN)
    grids = {key: group.pivot_table(index="seed", columns="doc_id", values="value", aggfunc="mean")
             for key, group in samples.groupby(["model", "task_metric", "experiment"])}
    rows = []
    for (model, tm, base), grid_b in grids.items():
        if base not in baselines:
            continue
        for (m, t, exp), grid_a in grids.items():
            if (m, t) != (model, tm) or exp == base:
                continue
            shared = [q for q in grid_a.columns if q in grid_b.columns
                      and grid_a[q].notna().all() and grid_b[q].notna().all()]
            if not shared:
                continue
            mean, lo, hi = paired_bootstrap(grid_a[shared].to_numpy(), grid_b[shared].to_numpy(), resamples)
            rows.append({"model": model, "task_metric": tm, "experiment": exp, "baseline": base,
                         "questions": len(shared), "seeds": len(grid_a), "seeds_baseline": len(grid_b),
                         "difference": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=cols)


MATCHED_BY = {"optimizer_state": "optimizer_state_MiB", "peak_memory": "peak_memory_MiB"}


def matched_table(train: pd.DataFrame, samples: pd.DataFrame, family: str, resamples: int = 2000) -> pd.DataFrame:
    """Each experiment of another method family against the experiment of ``family`` nearest to it in optimizer
    state, and again in peak memory (the smallest ratio either way, means over seeds): the difference (experiment
    minus its match) in the held-out loss and forgetting (over runs) and in each lm-eval metric (over runs and
    questions), with 95% intervals from the two-level bootstrap of ``paired_bootstrap``. Which method reaches the
    better model at the same memory, along the whole of each family's size axis."""
    cols = ["model", "matched_by", "experiment", "MiB", "matched", "matched_MiB", "metric", "seeds",
            "seeds_matched", "questions", "difference", "ci_low", "ci_high"]
    if train.empty or family not in set(train["family"]):
        return pd.DataFrame(columns=cols)
    if len(samples):
        samples = samples.assign(task_metric=samples["task"] + "/" + samples["metric"])
    rows = []
    for model, runs_m in train.groupby("model"):
        means = runs_m.groupby(["experiment", "family"])[list(MATCHED_BY.values())].mean().reset_index()
        pool = means[means["family"] == family]
        if pool.empty:
            continue
        for by, column in MATCHED_BY.items():
            for _, row in means[means["family"] != family].iterrows():
                ratio = np.abs(np.log(pool[column].clip(lower=1e-9) / max(row[column], 1e-9)))
                match = pool.loc[ratio.idxmin()]
                a = runs_m[runs_m["experiment"] == row["experiment"]].sort_values("seed")
                b = runs_m[runs_m["experiment"] == match["experiment"]].sort_values("seed")
                base = {"model": model, "matched_by": by, "experiment": row["experiment"], "MiB": row[column],
                        "matched": match["experiment"], "matched_MiB": match[column]}
                for metric in ("eval_loss", "forgetting"):
                    x, y = a[metric].dropna().to_numpy(), b[metric].dropna().to_numpy() if metric in b else []
                    if len(x) and len(y):
                        mean, lo, hi = paired_bootstrap(x[:, None], np.asarray(y)[:, None], resamples)
                        rows.append({**base, "metric": metric, "seeds": len(x), "seeds_matched": len(y),
                                     "questions": None, "difference": mean, "ci_low": lo, "ci_high": hi})
                if samples.empty:
                    continue
                for tm, group in samples[samples["model"] == model].groupby("task_metric"):
                    grid = {e: g.pivot_table(index="seed", columns="doc_id", values="value", aggfunc="mean")
                            for e, g in group.groupby("experiment") if e in (row["experiment"], match["experiment"])}
                    if len(grid) < 2:
                        continue
                    ga, gb = grid[row["experiment"]], grid[match["experiment"]]
                    shared = [q for q in ga.columns if q in gb.columns and ga[q].notna().all() and gb[q].notna().all()]
                    if shared:
                        mean, lo, hi = paired_bootstrap(ga[shared].to_numpy(), gb[shared].to_numpy(), resamples)
                        rows.append({**base, "metric": tm, "seeds": len(ga), "seeds_matched": len(gb),
                                     "questions": len(shared), "difference": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=cols)


def blocks_never_trained(log_path: Path, blocks: int) -> int | None:
    """Decoder blocks no step trained, from the run's log of the blocks each step trained (``active_layers``);
    None for a method that does not log them (it trains every block, or none, throughout)."""
    if not log_path.is_file():
        return None
    trained, logged = set(), False
    for line in log_path.read_text().splitlines():
        active = json.loads(line).get("active_layers") if line.strip() else None
        if active is not None:
            logged = True
            trained.update(active)
    return blocks - len(trained) if logged else None


def training_table(sources: list[Path]) -> pd.DataFrame:
    """One row per training run; ``family``: its method family (``Method.family``: LoRA that also trains the
    embedding and head is a family apart from LoRA's ranks), the unit of the frontier figures and matched tables."""
    from ..methods import family

    rows = []
    for model, exp, seed, path in runs(sources, "metrics.json"):
        m = json.loads(path.read_text())
        never = blocks_never_trained(path.parent / "train_log.jsonl", m.get("decoder_blocks", 0))
        rows.append({"model": model, "experiment": exp, "method": m["method"],
                     "family": family(m["method"], m.get("method_options")), "seed": seed,
                     "dataset": m.get("dataset"), "steps": m.get("steps"),
                     "trainable_params": m["trainable_params_peak"],
                     "optimizer_state_MiB": m["optimizer_state_bytes_peak"] / 2**20,
                     "peak_memory_MiB": m["peak_memory_bytes"] / 2**20, "memory_kind": m["memory_kind"],
                     # steady state (warm-up apart) where the run recorded it (training/throughput.py)
                     "tokens_per_second": m.get("steady_tokens_per_second") or m["tokens_per_second"],
                     "mfu": m.get("mfu"), "loss_first": m["train_loss_first"],
                     "loss_last": m["train_loss_last"], "eval_loss": m.get("eval_loss"),
                     "forgetting": m.get("forgetting"),  # change in loss on general text (data/general.py)
                     "precision": m.get("precision"), "padding_fraction": m.get("padding_fraction"),
                     "train_seconds": m.get("train_seconds"), "blocks_never_trained": never})
    return pd.DataFrame(rows)


def equal_seconds_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Each experiment's held-out loss (mean over seeds) at the training seconds the quickest experiment took for
    its whole run, read off its learning curve by linear interpolation between logged points; next to its own
    final point and seconds. Which method is ahead for the same training time (an experiment whose first logged
    point comes after that time has none)."""
    mean = curves.groupby(["model", "experiment", "step"])[["seconds", "eval_loss"]].mean().reset_index()
    ends = mean.loc[mean.groupby(["model", "experiment"])["step"].idxmax()].set_index(["model", "experiment"])
    rows = []
    for model, sub_model in mean.groupby("model"):
        budget = float(ends.loc[model, "seconds"].min())
        for exp, sub in sub_model.groupby("experiment"):
            sub = sub.sort_values("seconds")
            reached = sub["seconds"].iloc[0] <= budget
            rows.append({"model": model, "experiment": exp, "seconds": budget,
                         "eval_loss_at_seconds": float(np.interp(budget, sub["seconds"], sub["eval_loss"]))
                         if reached else None,
                         "step_at_seconds": float(np.interp(budget, sub["seconds"], sub["step"])) if reached else None,
                         "final_seconds": float(ends.loc[(model, exp), "seconds"]),
                         "final_step": int(ends.loc[(model, exp), "step"]),
                         "final_curve_loss": float(ends.loc[(model, exp), "eval_loss"])})
    return pd.DataFrame(rows)


def curves_table(sources: list[Path]) -> pd.DataFrame:
    """Every held-out-loss point of every run's learning curve (a study's ``training.eval_every``): the optimizer
    steps done, the training seconds to that point (the job's own step times, held-out passes excluded) and the
    loss on the curve's held-out conversations."""
    rows = []
    for model, exp, seed, path in runs(sources, "train_log.jsonl"):
        log = pd.read_json(path, lines=True)
        if not len(log) or "eval_loss" not in log:
            continue
        log["seconds"] = log["step_seconds"].cumsum()
        for _, r in log[log["eval_loss"].notna()].iterrows():
            rows.append({"model": model, "experiment": exp, "seed": seed, "step": int(r["step"]) + 1,
                         "seconds": float(r["seconds"]), "eval_loss": float(r["eval_loss"]),
                         "eval_examples": r.get("eval_examples")})
    return pd.DataFrame(rows, columns=["model", "experiment", "seed", "step", "seconds", "eval_loss", "eval_examples"])


def lm_eval_table(sources: list[Path]) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in runs(sources, "scores.json"):
        for s in json.loads(path.read_text()):
            shots = s.get("num_fewshot")
            setting = f"{shots}-shot" if shots is not None else "default shots"
            setting += ", chat" if s.get("apply_chat_template") else ""
            rows.append({"model": model, "experiment": exp, "seed": seed,
                         "task_metric": f"{s['task']}/{s['metric']} ({setting})", "value": s["value"]})
    return pd.DataFrame(rows)


def mt_bench_table(sources: list[Path]) -> pd.DataFrame:
    rows = []
    for model, exp, seed, path in runs(sources, "judge/mt_bench.json"):
        r = json.loads(path.read_text())
        row = {"model": model, "experiment": exp, "seed": seed, "overall": r["overall"],
               "failure_rate": r["failure_rate"], "judge": r["judge"]}
        row.update({f"cat_{k}": v for k, v in r["per_category"].items()})
        row.update(r["per_turn"])
        rows.append(row)
    return pd.DataFrame(rows)
