"""Memory and optimizer state per step of several runs (e.g. lisa vs lisa-callback): a CSV and a figure.

    python scripts/optimizer_state_trace.py --runs runs/lisa runs/lisa-callback --out results/x/state
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from lisa_bench.reporting.figures import memory_over_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run directories (each with train_log.jsonl)")
    ap.add_argument("--out", required=True, help="output path prefix: writes PREFIX.csv, PREFIX.png, PREFIX.pdf")
    args = ap.parse_args()
    frames = []
    for run in map(Path, args.runs):
        log = pd.read_json(run / "train_log.jsonl", lines=True)
        log["run"] = json.loads((run / "metrics.json").read_text())["method"]
        frames.append(log[["run", "step", "optimizer_state_bytes", "memory_bytes", "loss", "active_layers"]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_csv(out.with_suffix(".csv"), index=False)
    memory_over_steps(args.runs, out)


if __name__ == "__main__":
    main()
