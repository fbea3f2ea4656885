#!/usr/bin/env bash
# Updates lost to rounding on the embedded SmolLM2-135M (the cpu-claims set-up: synthetic-instruct, batch 4 x 128,
# cosine with 5 warm-up steps) for full fine-tuning and LISA E+H+2L at the authors' rate 2e-5, and LoRA r128 at
# 2e-4, under pure bf16, bf16-master and bf16-kahan (and fp32 as the reference): STEPS steps, the held-out loss
# every EVAL steps, so that the share is measured after the first step and over each window of EVAL steps.
#
#   bash scripts/lost_updates.sh results/cpu-precision      # writes lost_updates.csv (about 15 minutes on 2 cores)
set -euo pipefail
OUT=${1:?usage: scripts/lost_updates.sh OUT_DIR}
STEPS=${STEPS:-20} EVAL=${EVAL:-10}
WORK=${WORK:-$(mktemp -d)}
# each step's output goes to $WORK/last.log; a step that fails prints the end of that log and stops the script
quiet() { "$@" > "$WORK/last.log" 2>&1 || { local status=$?; echo "failed ($status): $*" >&2; tail -n 40 "$WORK/last.log" >&2; exit "$status"; }; }
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT"
for precision in fp32 bf16 bf16-master bf16-kahan; do
    for exp in full lisa-e-h-2l lora-r128; do
        lr=2e-5; [[ "$exp" == lora-* ]] && lr=2e-4
        quiet "$PY" -m lisa_bench.cli train --experiment "$exp" --model smollm2-135m --max-steps "$STEPS" --lr "$lr" \
            --precision "$precision" --batch-size 4 --max-length 128 --warmup-steps 5 --eval-every "$EVAL" \
            --eval-size 50 --checkpoint-every 0 --no-progress --output-dir "$WORK/$precision/$exp"
    done
done
"$PY" - "$WORK" "$OUT/lost_updates.csv" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
rows = []
for log in sorted(Path(sys.argv[1]).glob("*/*/train_log.jsonl")):
    run = log.parent
    metrics = json.loads((run / "metrics.json").read_text())
    for r in map(json.loads, log.read_text().splitlines()):
        if "lost_update_share" in r:
            rows.append({"precision": run.parent.name, "experiment": run.name, "lr": metrics["provenance"]["config"]["lr"],
                         "step": r["step"], "window_steps": r["lost_update_steps"], "sampled": r["lost_update_sampled"],
                         "lost_update_share": r["lost_update_share"], "eval_loss": r.get("eval_loss")})
table = pd.DataFrame(rows)
table.to_csv(sys.argv[2], index=False)
print(table.pivot_table(index=["experiment", "precision"], columns="step", values="lost_update_share").round(4).to_string())
PY
