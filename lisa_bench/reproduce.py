"""``lisa-bench reproduce``: a short training of each experiment on the embedded default and a
summary table. (The full study is the Snakemake pipeline.)"""

from __future__ import annotations

from pathlib import Path

from .errors import BadInput


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="train every experiment briefly on the embedded default and print a table",
                       description="Runs each experiments/*.yaml for --max-steps steps on --model and prints "
                                   "loss, speed and memory per method; writes summary.csv into --output-dir.")
    p.add_argument("--experiments-dir", default="experiments")
    p.add_argument("--experiments", default="base,full,lora-r128,lisa-e-h-2l,lisa-callback-e-h-2l,galore-r128",
                   help="comma-separated experiment names (default: the six methods of the default study)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--output-dir", default="runs/reproduce")
    p.set_defaults(func=_cmd_reproduce)


def summary_table(runs: dict[str, dict]):
    import pandas as pd

    rows = []
    for name, m in runs.items():
        rows.append({
            "experiment": name, "method": m["method"], "steps": m["steps"],
            "trainable_params_peak": m["trainable_params_peak"],
            "optimizer_state_MiB": m["optimizer_state_bytes_peak"] / 2**20,
            "peak_memory_MiB": m["peak_memory_bytes"] / 2**20,
            "tokens_per_second": m["tokens_per_second"],
            "loss_first": m["train_loss_first"], "loss_last": m["train_loss_last"],
        })
    return pd.DataFrame(rows).set_index("experiment")


def _cmd_reproduce(args) -> int:
    import json
    import subprocess
    import sys

    from . import atomic
    from .config import build_config

    exp_dir = Path(args.experiments_dir)
    files = sorted(exp_dir.glob("*.yaml"))
    if args.experiments:
        wanted = args.experiments.split(",")
        known = {f.stem: f for f in files}
        for w in wanted:
            if w not in known:
                raise BadInput(f"unknown experiment {w!r}; valid choices: {', '.join(known)}")
        files = [known[w] for w in wanted]
    if not files:
        raise BadInput(f"no experiment files (*.yaml) in {str(exp_dir)!r}")
    out = Path(args.output_dir)
    runs = {}
    configs = {f: build_config(f, {"model": args.model, "max_steps": args.max_steps}, {}) for f in files}
    for f, cfg in configs.items():
        print(f"[lisa-bench] {f.stem}: {cfg.method} for {cfg.max_steps} steps on {cfg.model}", flush=True)
        # one process per run, so that each peak RSS / allocator peak belongs to that run alone
        cmd = [sys.executable, "-m", "lisa_bench.cli", "train", "--experiment", str(f), "--model", args.model,
               "--max-steps", str(args.max_steps), "--output-dir", str(out / f.stem)]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"lisa-bench: error: experiment {f.stem} failed (command: {' '.join(cmd)})")
        runs[f.stem] = json.loads((out / f.stem / "metrics.json").read_text())
    table = summary_table(runs)
    atomic.write_text(out / "summary.csv", table.to_csv())
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(table)
    return 0
