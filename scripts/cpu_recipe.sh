#!/usr/bin/env bash
# The training recipe's measurements on the CPU with the embedded SmolLM2-135M (results/cpu-recipe/):
#  1. bf16-mixed against fp32: LISA E+H+2L and full fine-tuning, 50 steps each, training and held-out loss;
#  2. the memory model under bf16-mixed and under gradient checkpointing against measured peaks;
#  3. the shared loop against transformers' Trainer: equivalence and tokens/s side by side.
#   OUT=results/cpu-recipe bash scripts/cpu_recipe.sh
set -euo pipefail
OUT=${OUT:-results/cpu-recipe}
WORK=${WORK:-runs/cpu-recipe}
STEPS=${STEPS:-50}
mkdir -p "$OUT" "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for precision in fp32 bf16-mixed; do
  for exp in full lisa-e-h-2l; do
    lisa-bench train --experiment "$exp" --model smollm2-135m --max-steps "$STEPS" --precision "$precision" \
      --eval-every 25 --checkpoint-every 0 --no-progress --output-dir "$WORK/train/$precision/$exp"
  done
done
python - "$WORK/train" "$OUT/precision.csv" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
rows = []
for run in sorted(Path(sys.argv[1]).glob("*/*")):
    m = json.loads((run / "metrics.json").read_text())
    rows.append({"experiment": run.name, "precision": m["precision"], "steps": m["steps"], "train_loss_first": m["train_loss_first"],
                 "train_loss_last": m["train_loss_last"], "eval_loss": m["eval_loss"],
                 "optimizer_state_MiB": m["optimizer_state_bytes_peak"] / 2**20,
                 "peak_rss_MiB": m["peak_memory_bytes"] / 2**20, "tokens_per_second": m["tokens_per_second"]})
table = pd.DataFrame(rows)
table.to_csv(sys.argv[2], index=False)
print(table.to_string(index=False))
PY
for extra in "--precision bf16-mixed" "--gradient-checkpointing"; do
  name=$(echo "$extra" | tr -d '-' | tr ' ' '_')
  lisa-bench memory --models smollm2-135m --methods full,lora-r128,lisa-e-h-2l --device cpu --seq-len 1024 \
    --steps 2 $extra --output-dir "$WORK/memory/$name"
done
lisa-bench memory-collect "$WORK"/memory/* --output-dir "$OUT/memory"
python scripts/trainer_vs_loop.py --out "$OUT/trainer_vs_loop.json" --rounds 10 --interleaved-steps 81
