"""Layerwise weight-norm skew, the paper's motivating observation (``lisa-bench analyze-norms``).

For each run: the mean over training of each unit's norm, (1/T) sum_t ||theta_t^(l)||_2, from the
embedding through every block to the head, over what the method trains there (the weights
themselves; LoRA: its adapters, plus embedding/head when trained), the norm of the update
||W_T - W_0|| per unit for every method (one scale to compare methods on), and the skew ratio:
embedding+head over the median block.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd
import torch

from .. import atomic
from ..layers import find_blocks, layer_units
from . import figures


def mean_norms(run: Path) -> pd.Series:
    """Mean over the recorded steps of each unit's norm, over what the method trains there."""
    rows = [json.loads(x) for x in (run / "weight_norms.jsonl").read_text().splitlines() if x.strip()]
    return pd.DataFrame([r["trained"] for r in rows]).mean()


@functools.lru_cache(maxsize=2)
def _initial_model(name: str, seed: int):
    """The untrained model a study's runs start from: loaded once for all of them (read only)."""
    from ..models import load_model

    return load_model(name, seed=seed).model


def update_norms(run: Path) -> pd.Series:
    """||W_T - W_0|| per unit: the trained weights (LoRA: base + merged adapter) against the initial model."""
    from ..evaluation.lm_eval_runner import load_target

    metrics = json.loads((run / "metrics.json").read_text())
    base = _initial_model(metrics["model"], metrics["seed"])
    trained = load_target(str(run), None, "cpu")[0] if (run / "model").is_dir() else base
    layout = find_blocks(base)
    base_params = dict(base.named_parameters())
    trained_params = dict(trained.named_parameters())
    out = {}
    with torch.no_grad():
        for unit, named in layer_units(base, layout).items():
            sq = sum(float((trained_params[n].float() - base_params[n].float()).pow(2).sum()) for n, _ in named)
            out[unit] = sq ** 0.5
    return pd.Series(out)


def _ends(norms: pd.Series) -> list[float]:
    """The embedding's and the head's trained norm; 0 where the method leaves one frozen (logged as 0, or
    absent from this run's log)."""
    return [float(norms[u]) if pd.notna(norms.get(u)) else 0.0 for u in ("embedding", "head")]


def ends_trained(norms: pd.Series) -> bool:
    """Whether the run trained the embedding or the head."""
    return any(v > 0 for v in _ends(norms))


def skew_ratio(norms: pd.Series, combine=sum) -> float:
    """Embedding and head (summed, or the larger with ``combine=max``) over the median decoder block; NaN
    where the run trained neither (a ratio of 0 would read as "no skew")."""
    if not ends_trained(norms):
        return float("nan")
    blocks = norms[[u for u in norms.index if u.startswith("layer.")]]
    ends = combine(_ends(norms))
    median = float(blocks.median()) if len(blocks) else 0.0
    return float(ends / median) if median > 0 else float("nan")  # e.g. LISA updated fewer than half the blocks


PAPER_READING = ("The paper (Section 3.1, Figure 2): under LoRA the embedding or the LM head has a mean weight norm "
                 "often hundreds of times that of the middle layers; under full fine-tuning there is no such gap.")


def reading(skew: pd.DataFrame) -> str:
    """The paper's reading of the norm figure and what these runs show, one line per run."""
    lines = ["# Layerwise weight-norm skew", "", PAPER_READING, "",
             "This run: the larger of embedding and head over the median decoder block (skew.csv, "
             "`skew_end_over_median`), per run:", ""]
    for run, row in skew.iterrows():
        ratio = row["skew_end_over_median"]
        if pd.notna(ratio):
            lines.append(f"- {run}: {ratio:.3g}")
        elif not row["ends_trained"]:
            lines.append(f"- {run}: no ratio (it trains neither the embedding nor the head, so they have no trained "
                         f"norm; the authors' LoRA runs trained both, and an experiment that does gives the paper's "
                         f"curve)")
        else:
            lines.append(f"- {run}: no ratio (the median block was not trained: fewer than half the blocks were)")
    lines += ["", "A ratio near 1 is no gap; the paper's LoRA reading needs ratios in the hundreds."]
    return "\n".join(lines) + "\n"


def unit_order(units) -> list[str]:
    def key(u):
        if u == "embedding":
            return (0, 0)
        if u.startswith("layer."):
            return (1, int(u.split(".")[1]))
        return (2, 0) if u == "other" else (3, 0)

    return sorted(units, key=key)


def analyze(runs: list[Path], out_dir: Path) -> pd.DataFrame:
    mean_rows, update_rows, skew = [], [], []
    for run in map(Path, runs):
        metrics = json.loads((run / "metrics.json").read_text())
        # one label per run: the experiment's name, and its seed where the study trains several
        label = (f"{metrics['method']} ({run.parent.name}, {run.name.replace('seed', 'seed ')})"
                 if run.name.startswith("seed") else f"{metrics['method']} ({run.name})")
        m = mean_norms(run)
        u = update_norms(run)
        mean_rows.append(m.rename(label))
        update_rows.append(u.rename(label))
        skew.append({"run": label, "method": metrics["method"], "model": metrics["model"],
                     "skew_mean_norm": skew_ratio(m), "skew_update_norm": skew_ratio(u),
                     "skew_end_over_median": skew_ratio(m, max), "ends_trained": ends_trained(m)})
    mean_df = pd.DataFrame(mean_rows)
    update_df = pd.DataFrame(update_rows)
    mean_df = mean_df[unit_order(mean_df.columns)]
    update_df = update_df[unit_order(update_df.columns)]
    out_dir = Path(out_dir)
    atomic.write_text(out_dir / "mean_weight_norms.csv", mean_df.to_csv())
    atomic.write_text(out_dir / "update_norms.csv", update_df.to_csv())
    skew_df = pd.DataFrame(skew).set_index("run")
    atomic.write_text(out_dir / "skew.csv", skew_df.to_csv())
    atomic.write_text(out_dir / "reading.md", reading(skew_df))
    figures.weight_norms(mean_df, update_df, out_dir / "weight_norms")
    return skew_df
