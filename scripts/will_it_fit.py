"""The "will it fit?" table of docs/memory.md: `lisa-bench plan` for LLaMA-2-7B, Mistral-7B and LLaMA-2-70B on GPUs of
24, 48 and 80 GB, under two recipes, in one process (the same `plan_rows` the CLI prints).

    python scripts/will_it_fit.py --out results/plan

Writes will_it_fit.csv (every row: model, recipe, GPU size, experiment, predicted peak and breakdown, fits,
largest batch per GPU) and will_it_fit.md (peak per GPU; per GPU size "largest batch", 0 = does not fit).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

MODELS = ("meta-llama/Llama-2-7b-hf", "mistralai/Mistral-7B-v0.1", "meta-llama/Llama-2-70b-hf")
GPUS = ("24GB", "48GB", "80GB")
EXPERIMENTS = ("full", "lora-r128", "lora-r256", "lisa-e-h-2l", "lisa-e-h-4l", "badam", "galore-r128")
# (name, precision, attention, gradient checkpointing): the paper's memory protocol, and the usual recipe
RECIPES = (("paper protocol: bf16, eager, 1 x 1024", "bf16", "eager", False),
           ("bf16-mixed, sdpa, gradient checkpointing, 1 x 1024", "bf16-mixed", "sdpa", True))


def main() -> None:
    from lisa_bench.memory.bench import MemoryCell, Shape
    from lisa_bench.memory.fit import parse_bytes
    from lisa_bench.memory.plan import plan_rows
    from lisa_bench.models import model_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for model in MODELS:
        config = model_config(model)
        for recipe, precision, attention, checkpointing in RECIPES:
            shape = Shape("cuda", precision, attention, checkpointing, 1, 1024)
            for experiment in EXPERIMENTS:
                sizes = [parse_bytes(gpu, "gpu") for gpu in GPUS]
                for gpu, row in zip(GPUS, plan_rows(config, model, MemoryCell.from_experiment(experiment), shape, sizes)):
                    rows.append({"recipe": recipe, "gpu": gpu, **row})
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "will_it_fit.csv", index=False)
    wide = table.pivot_table(index=["recipe", "model", "experiment"], columns="gpu", values="largest_batch_per_gpu",
                             aggfunc="first", sort=False)
    wide.columns = [f"largest batch on {g}" for g in wide.columns]
    peak = table.groupby(["recipe", "model", "experiment"], sort=False)["peak_GiB"].first().rename("peak GiB (batch 1)")
    shown = pd.concat([peak, wide], axis=1).reset_index()
    shown["model"] = shown["model"].str.split("/").str[-1]
    text = []
    for recipe, part in shown.groupby("recipe", sort=False):
        text += [f"**{recipe}** (one GPU; 0 = does not fit)", "",
                 part.drop(columns="recipe").to_markdown(index=False, floatfmt=".1f"), ""]
    (out / "will_it_fit.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
