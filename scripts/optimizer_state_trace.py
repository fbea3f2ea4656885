"""Optimizer-state bytes per step for several runs (e.g. lisa vs lisa-callback): a CSV and a figure.

    python scripts/optimizer_state_trace.py --runs runs/lisa runs/lisa-callback --out results/x/state
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run directories (each with train_log.jsonl)")
    ap.add_argument("--out", required=True, help="output path prefix: writes PREFIX.csv and PREFIX.png")
    args = ap.parse_args()
    frames = []
    for run in map(Path, args.runs):
        metrics = json.loads((run / "metrics.json").read_text())
        log = pd.read_json(run / "train_log.jsonl", lines=True)
        log["run"] = metrics["method"] if run.name == metrics["method"] else f"{metrics['method']} ({run.name})"
        frames.append(log[["run", "step", "optimizer_state_bytes", "memory_bytes", "loss", "active_layers"]])
    table = pd.concat(frames)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, g in table.groupby("run"):
        ax.plot(g["step"], g["optimizer_state_bytes"] / 2**20, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("optimizer state (MiB)")
    ax.set_title("AdamW state over training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
