"""Layerwise weight-norm skew, the paper's motivating observation (``lisa-bench analyze-norms``).

For each run: the mean over training of each unit's norm, (1/T) sum_t ||theta_t^(l)||_2, from the
embedding through every block to the head, over what the method trains there (the weights
themselves; LoRA: its adapters, plus embedding/head when trained), the norm of the update
||W_T - W_0|| per unit for every method (one scale to compare methods on), and the skew ratio:
embedding+head over the median trained block. A unit training left as it was (update 0: LISA's blocks never
sampled, embedding and head under ``always_on: none``) has no trained norm: blank, not its initial weights'.
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
    """The embedding's and the head's norm; 0 where a unit has none (logged as 0, or absent from this run)."""
    return [float(norms[u]) if pd.notna(norms.get(u)) else 0.0 for u in ("embedding", "head")]


def ends_trained(norms: pd.Series) -> bool:
    """Whether the run trained the embedding or the head: a norm of theirs above 0 (LoRA logs its frozen ones
    as 0; ``analyze`` blanks every unit that training left as it was)."""
    return any(v > 0 for v in _ends(norms))


def skew_ratio(norms: pd.Series, combine=sum) -> float:
    """Embedding and head (summed, or the larger with ``combine=max``) over the median trained decoder block
    (norm above 0); NaN where the run trained neither end (a ratio of 0 would read as "no skew") or no block."""
    if not ends_trained(norms):
        return float("nan")
    blocks = norms[[u for u in norms.index if u.startswith("layer.")]]
    blocks = blocks[blocks > 0]  # a block LISA never sampled has no update, and no trained norm
    return float(combine(_ends(norms)) / blocks.median()) if len(blocks) else float("nan")


def trained_only(mean: pd.Series, update: pd.Series) -> pd.Series:
    """The mean norms of the units training changed (update norm above 0); the rest NaN. A unit's own weights
    have a norm whether or not they were trained, and the paper's figure is of trained parameters: without this
    LISA with ``always_on: none`` (or BAdam, which leaves embedding and head frozen) would show the pretrained
    embedding's norm as its trained one."""
    return mean.where(update.reindex(mean.index).fillna(0) > 0)


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
            lines.append(f"- {run}: no ratio (it trains neither the embedding nor the head: training left them as "
                         f"they were, and the paper's reading is of trained ones)")
        else:
            lines.append(f"- {run}: no ratio (no decoder block was trained)")
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
    from ..methods import family
    from ..runs import read_identity

    mean_rows, update_rows, skew, styles = [], [], [], {}
    identities = [read_identity(run) or {} for run in map(Path, runs)]
    several = len({i.get("model") for i in identities}) > 1
    for run, identity in zip(map(Path, runs), identities):
        metrics = json.loads((run / "metrics.json").read_text())
        # the tables' label of a run (skew.csv's key, as committed references hold it), and its figure label
        # as in every figure: its experiment, the model where there are several, its seed
        label = (f"{metrics['method']} ({run.parent.name}, {run.name.replace('seed', 'seed ')})"
                 if run.name.startswith("seed") else f"{metrics['method']} ({run.name})")
        exp = identity.get("experiment") or metrics["method"]
        shown = figures.run_label(exp, identity.get("model", metrics["model"]), identity.get("seed"), several)
        styles[label] = (shown, exp, family(metrics["method"], metrics.get("method_options")))
        u = update_norms(run)
        m = trained_only(mean_norms(run), u)
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
    rename = {label: shown for label, (shown, _, _) in styles.items()}
    figures.weight_norms(mean_df.rename(index=rename), update_df.rename(index=rename), out_dir / "weight_norms",
                         {shown: (exp, fam) for shown, exp, fam in styles.values()},
                         "Per unit from the embedding to the head, the mean norm of the trained parameters over "
                         "training (left; LoRA: its adapters, and the embedding and head where trained) and the norm of "
                         f"the update W_T - W_0 (right); {figures.colour_note(f for _, _, f in styles.values())}.")
    return skew_df
