#!/usr/bin/env bash
# LISA under bf16 weights: does writing a leaving block's exact value back by stochastic rounding at each switch
# (lisa option switch_rounding: stochastic, the default) recover what nearest rounding drops? The set-up of
# results/cpu-precision section 3 (SmolLM2-135M, synthetic-instruct, 50 steps, batch 4 x 128, cosine with 5 warm-up
# steps, interval 10, the authors' rate 2e-5, seed 0): lisa-e-h-2l under bf16-master and bf16-kahan with each
# rounding, side by side; held-out loss on the first 100 held-out conversations, synthetic_qa exact match on 50.
#
#   bash scripts/lisa_switch_rounding.sh results/cpu-precision/switch     # switch.csv, switch.md
set -euo pipefail
OUT=${1:?usage: scripts/lisa_switch_rounding.sh OUT_DIR}
STEPS=${STEPS:-50} SEED=${SEED:-0} LR=${LR:-2e-5}
WORK=${WORK:-runs/lisa-switch}
# each step's output goes to $WORK/last.log; a step that fails prints the end of that log and stops the script
quiet() { "$@" > "$WORK/last.log" 2>&1 || { local status=$?; echo "failed ($status): $*" >&2; tail -n 40 "$WORK/last.log" >&2; exit "$status"; }; }
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT" "$WORK"
for precision in bf16-master bf16-kahan; do
  for rounding in nearest stochastic; do
    run="$WORK/$precision-$rounding"
    if [[ ! -f "$run/metrics.json" ]]; then  # resumes where it stopped
        quiet "$PY" -m lisa_bench.cli train --experiment lisa-e-h-2l --model smollm2-135m --max-steps "$STEPS" --lr "$LR" \
            --precision "$precision" --seed "$SEED" --batch-size 4 --max-length 128 --warmup-steps 5 --eval-every 25 \
            --eval-size 100 --checkpoint-every 0 --no-progress --lisa-interval 10 --option "switch_rounding=$rounding" \
            --output-dir "$run"
    fi
    if [[ ! -f "$run/eval/scores.json" ]]; then
        quiet "$PY" -m lisa_bench.cli eval --run "$run" --task-specs '[{name: synthetic_qa, apply_chat_template: true}]' \
            --limit 50 --batch-size 32 --device cpu --output-dir "$run/eval"
    fi
    echo "$(date +%T) $precision $rounding done"
  done
done
"$PY" - "$WORK" "$OUT" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
rows = []
for m in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    metrics = json.loads(m.read_text())
    scores = json.loads((m.parent / "eval" / "scores.json").read_text())
    qa = next(s["value"] for s in scores if s["task"] == "synthetic_qa" and s["metric"] == "exact_match")
    rows.append({"precision": metrics["precision"], "switch_rounding": metrics["method_options"]["switch_rounding"],
                 "lr": metrics["provenance"]["config"]["lr"], "steps": metrics["steps"], "seed": metrics["seed"],
                 "eval_loss": metrics["eval_loss"], "exact_match": qa, "git_commit": metrics["provenance"]["git_commit"]})
table = pd.DataFrame(rows)
table.to_csv(Path(sys.argv[2]) / "switch.csv", index=False)
text = table.to_markdown(index=False, floatfmt=".4g")
(Path(sys.argv[2]) / "switch.md").write_text(text + "\n")
print(text)
PY
