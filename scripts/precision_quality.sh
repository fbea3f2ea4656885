#!/usr/bin/env bash
# Quality at CPU scale per precision recipe (issue 20 item 6, cut to fit): SmolLM2-135M on synthetic-instruct in
# the cpu-claims set-up (batch 4 x 128, cosine with 5 warm-up steps, LISA interval 10), full, lora-r128 and
# lisa-e-h-2l under fp32, pure bf16, bf16-master and bf16-kahan, at the authors' rates (2e-5; LoRA 2e-4) and at
# cpu-claims' tuned rates (full 3e-5, LoRA 3e-4, LISA 3e-4): the held-out loss (first EVAL_SIZE conversations),
# synthetic_qa exact match (chat template, first QA_LIMIT questions) and the share of the update lost to rounding.
# Cut from the issue's 100 steps x seeds 0 and 1 to STEPS steps x SEEDS to fit the time on 2 cores.
#
#   bash scripts/precision_quality.sh results/cpu-precision/quality     # quality.csv, quality.md
#   (rows already in OUT/quality.csv stay unless rerun: a later sitting adds its rates or seeds to them)
set -euo pipefail
OUT=${1:?usage: scripts/precision_quality.sh OUT_DIR}
STEPS=${STEPS:-50} SEEDS=${SEEDS:-0} RATES=${RATES:-authors tuned} EVAL_SIZE=${EVAL_SIZE:-100} QA_LIMIT=${QA_LIMIT:-50}
WORK=${WORK:-runs/precision-quality}
# each step's output goes to $WORK/last.log; a step that fails prints the end of that log and stops the script
quiet() { "$@" > "$WORK/last.log" 2>&1 || { local status=$?; echo "failed ($status): $*" >&2; tail -n 40 "$WORK/last.log" >&2; exit "$status"; }; }
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT" "$WORK"
rate() {  # rates, method -> lr
    case "$1/$2" in
        authors/lora-r128) echo 2e-4 ;; authors/*) echo 2e-5 ;;
        tuned/full) echo 3e-5 ;; tuned/*) echo 3e-4 ;;
    esac
}
for seed in $SEEDS; do
  for rates in $RATES; do
    for precision in fp32 bf16 bf16-master bf16-kahan; do
      for exp in full lora-r128 lisa-e-h-2l; do
        run="$WORK/$rates/$precision/$exp-seed$seed"
        extra=(); [[ "$exp" == lisa-* ]] && extra=(--lisa-interval 10)
        if [[ ! -f "$run/metrics.json" ]]; then  # resumes where it stopped
            quiet "$PY" -m lisa_bench.cli train --experiment "$exp" --model smollm2-135m --max-steps "$STEPS" \
                --lr "$(rate "$rates" "$exp")" --precision "$precision" --seed "$seed" --batch-size 4 --max-length 128 \
                --warmup-steps 5 --eval-every 25 --eval-size "$EVAL_SIZE" --checkpoint-every 0 --no-progress \
                "${extra[@]}" --output-dir "$run"
        fi
        if [[ ! -f "$run/eval/scores.json" ]]; then
            quiet "$PY" -m lisa_bench.cli eval --run "$run" --task-specs '[{name: synthetic_qa, apply_chat_template: true}]' \
                --limit "$QA_LIMIT" --batch-size 32 --device cpu --output-dir "$run/eval"
        fi
        echo "$(date +%T) $rates $precision $exp seed $seed done"
      done
    done
  done
done
"$PY" - "$WORK" "$OUT" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
rows = []
for m in sorted(Path(sys.argv[1]).glob("*/*/*/metrics.json")):
    run = m.parent
    metrics = json.loads(m.read_text())
    scores = json.loads((run / "eval" / "scores.json").read_text()) if (run / "eval" / "scores.json").exists() else []
    qa = next((s["value"] for s in scores if s["task"] == "synthetic_qa" and s["metric"] == "exact_match"), None)
    rows.append({"rates": run.parent.parent.name, "precision": run.parent.name, "experiment": run.name.rsplit("-seed", 1)[0],
                 "seed": metrics["seed"], "lr": metrics["provenance"]["config"]["lr"], "steps": metrics["steps"],
                 "eval_loss": metrics["eval_loss"], "train_loss_last": metrics["train_loss_last"],
                 "exact_match": qa,
                 "lost_update_first": metrics["lost_update_share_first"], "lost_update_last": metrics["lost_update_share_last"],
                 "train_seconds": metrics["train_seconds"]})
table = pd.DataFrame(rows)
out = Path(sys.argv[2])
key = ["rates", "precision", "experiment", "seed"]
if (out / "quality.csv").exists():  # rows of another sitting (runs/ need not survive it) stay unless rerun here
    kept = pd.read_csv(out / "quality.csv")
    kept = kept[~kept.set_index(key).index.isin(table.set_index(key).index)] if len(table) else kept
    table = pd.concat([kept, table], ignore_index=True)
table.to_csv(out / "quality.csv", index=False)
text = []
for rates, part in table.groupby("rates", sort=False):
    for value in ("eval_loss", "exact_match", "lost_update_last"):
        wide = part.pivot_table(index="experiment", columns="precision", values=value, aggfunc="mean")
        wide = wide[[c for c in ("fp32", "bf16", "bf16-master", "bf16-kahan") if c in wide.columns]]
        text += [f"**{value}, {rates} rates** (mean over seeds)", "", wide.to_markdown(floatfmt=".4g"), ""]
(out / "quality.md").write_text("\n".join(text))
print("\n".join(text))
PY
