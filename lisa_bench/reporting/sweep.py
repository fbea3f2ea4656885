"""The learning-rate sweep: each grid point trains a few steps and is scored by its held-out loss; each
experiment then trains with the rate of its lowest loss (mean over the sweep's seeds).

``lisa-bench sweep-best`` writes the chosen rate of one experiment (a settings file the final runs read);
the report draws the grid (held-out loss against learning rate, one line per experiment).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import atomic
from ..errors import BadInput


def grid_table(sources: list[Path]) -> pd.DataFrame:
    """One row per grid run under ``sources`` (grid run directories, or directories holding them at any depth)."""
    from ..runs import recorded_identity

    rows = []
    for path in sorted({p for s in map(Path, sources) for p in s.rglob("metrics.json")}):
        m = json.loads(path.read_text())
        # written before run.json: .../<model>/<experiment>/lr<rate>/seed<k>/
        identity = recorded_identity(path.parent) or {"model": path.parents[3].name, "experiment": path.parents[2].name}
        model, exp = identity["model"], identity["experiment"]
        rows.append({"model": model, "experiment": exp,
                     "lr": float(m["provenance"]["config"]["lr"]), "seed": m["seed"], "steps": m["steps"],
                     "eval_loss": m["eval_loss"], "train_loss_last": m["train_loss_last"]})
    return pd.DataFrame(rows)


def best_lr(runs: list[Path]) -> dict:
    """The grid point with the lowest mean held-out loss over seeds."""
    rows = []
    for run in map(Path, runs):
        m = json.loads((run / "metrics.json").read_text())
        if m.get("eval_loss") is None:
            raise BadInput(f"sweep run {str(run)!r} has no held-out loss: the dataset needs a validation split")
        rows.append({"lr": float(m["provenance"]["config"]["lr"]), "eval_loss": m["eval_loss"]})
    means = pd.DataFrame(rows).groupby("lr")["eval_loss"].mean()
    return {"lr": float(means.idxmin()), "eval_loss": float(means.min()),
            "grid": {f"{lr:g}": float(v) for lr, v in means.items()}}


def cmd_best(args) -> int:
    import yaml

    best = best_lr(args.runs)
    grid = ", ".join(f"{lr}: {loss:.4f}" for lr, loss in best["grid"].items())
    atomic.write_text(args.output, yaml.safe_dump({"lr": best["lr"]}) + f"# held-out loss by lr: {grid}\n")
    print(f"best lr {best['lr']:g} (held-out loss {best['eval_loss']:.4f}) of {len(best['grid'])} grid points")
    return 0
