"""The precision verdict table: the memory model's peak per GPU of full fine-tuning, LoRA r128 and LISA E+H+2L
(E+H+4L for 70B) under every precision recipe, in the paper's memory protocol (eager attention, no gradient
checkpointing, 1 x 1024) and a practical one (sdpa, gradient checkpointing, 1 x 1024); LLaMA-2-7B and Mistral-7B
on one GPU, LLaMA-2-70B under FSDP2 over 8 GPUs. One line per recipe and protocol says whether LISA's memory
claim (below LoRA) holds there, and which updates the recipe keeps.

    python scripts/precision_verdict.py --out results/plan      # about a minute: meta-device models only

Writes verdict.csv (every cell with its parts) and verdict.md (peak GiB per GPU, and the verdict lines).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

MODELS = (("meta-llama/Llama-2-7b-hf", "single", 1, "lisa-e-h-2l"),
          ("mistralai/Mistral-7B-v0.1", "single", 1, "lisa-e-h-2l"),
          ("meta-llama/Llama-2-70b-hf", "fsdp", 8, "lisa-e-h-4l"))
PRECISIONS = ("fp32", "bf16", "bf16-mixed", "bf16-master", "bf16-kahan")
PROTOCOLS = (("paper: eager, no checkpointing, 1 x 1024", "eager", False),
             ("practical: sdpa, gradient checkpointing, 1 x 1024", "sdpa", True))
KEEPS = {
    "fp32": "keeps every update (fp32 weights and state)",
    "bf16": "loses updates below half a weight's bf16 spacing for full and LISA (LoRA's fp32 adapters keep theirs)",
    "bf16-mixed": "keeps every update, at 4 bytes per frozen weight",
    "bf16-master": "keeps every update (fp32 masters of what trains)",
    "bf16-kahan": "keeps every update up to the bf16 compensation's own rounding (Kahan sums)",
}


def main() -> None:
    from lisa_bench.memory.bench import MemoryCell
    from lisa_bench.memory.model import predict
    from lisa_bench.models import model_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for model, launcher, gpus, lisa in MODELS:
        config = model_config(model)
        for protocol, attention, checkpointing in PROTOCOLS:
            for precision in PRECISIONS:
                for experiment in ("full", "lora-r128", lisa):
                    cell = MemoryCell.from_experiment(experiment)
                    import json

                    p = predict(config, cell.method, json.loads(cell.options), 1, 1024, precision, 3, device_type="cuda",
                                attention=attention, checkpointing=checkpointing, launcher=launcher, processes=gpus,
                                whole_run=True)
                    rows.append({"model": model.split("/")[-1], "launcher": f"{launcher} x {gpus}", "protocol": protocol,
                                 "precision": precision, "experiment": experiment, "peak_GiB": p.peak_bytes / 2**30,
                                 "weights_GiB": p.weights_bytes / 2**30, "grads_GiB": p.grads_bytes / 2**30,
                                 "optimizer_GiB": p.optimizer_bytes / 2**30,
                                 "activations_GiB": p.activations_bytes / 2**30})
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "verdict.csv", index=False)
    text = ["# LISA against LoRA under each precision recipe (the memory model, GiB per GPU)", "",
            "`python scripts/precision_verdict.py --out results/plan`; every cell is `lisa-bench plan`'s prediction "
            "(whole-run peak, batch 1 x 1024). A recipe's memory claim holds where LISA is below LoRA r128.", ""]
    for (model, launcher, protocol), part in table.groupby(["model", "launcher", "protocol"], sort=False):
        wide = part.pivot(index="precision", columns="experiment", values="peak_GiB").reindex(PRECISIONS)
        lisa = [c for c in wide.columns if c.startswith("lisa")][0]
        wide = wide[["full", "lora-r128", lisa]]
        text += [f"## {model} ({launcher} GPU{'s' if not launcher.endswith(' 1') else ''}), {protocol}", "",
                 wide.reset_index().to_markdown(index=False, floatfmt=".1f"), ""]
        for precision, r in wide.iterrows():
            holds = r[lisa] < r["lora-r128"]
            text.append(f"- **{precision}**: LISA {r[lisa]:.1f} against LoRA {r['lora-r128']:.1f} GiB: the claim "
                        f"{'holds' if holds else 'does not hold'}; {KEEPS[precision]}.")
        text.append("")
    (out / "verdict.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
