#!/usr/bin/env bash
# The paper's peak-memory table on one GPU (bf16, batch 1, 1024 tokens, eager attention), in one go.
#
#   OUT=results/gpu-<card> bash scripts/gpu_memory_table.sh
#
# Runs one `lisa-bench memory` per model group, each under a time limit, and merges what finished into
# $OUT after every group (memory.csv, memory_trace.csv, memory_provenance.json), so a run cut short
# keeps the groups it finished. Then checks the CUDA allocator snapshot of `lisa-bench train`.
# Figures and tables: `lisa-bench memory-collect $OUT --output-dir $OUT` (here, or on any machine).
# MODELS=a,b METHODS=x,y runs a single group instead of the default ones. Cells are experiments (files in
# experiments/); OVERRIDES (a study's experiment_overrides, as YAML) changes them for this run: by default
# the callback form switches every step, so its growing optimizer state shows within the measured steps.
# Needs torch with CUDA, transformers, peft, accelerate, pandas, matplotlib, psutil; galore-torch for the
# GaLore cells (without it those cells are recorded as errors and the rest run on).
set -uo pipefail
OUT=${OUT:-results/gpu}
WORK=${WORK:-$(mktemp -d)}
STEPS=${STEPS:-5}
CELL_TIMEOUT=${CELL_TIMEOUT:-150}
DEVICE=${DEVICE:-cuda} DTYPE=${DTYPE:-bf16} SEQ_LEN=${SEQ_LEN:-1024}  # overridable for a dry run on a CPU
PAPER="full,lora-r128,lora-r256,lora-r512,lisa-e-h,lisa-e-h-2l,lisa-e-h-4l,lisa-callback-e-h-2l"
OVERRIDES=${OVERRIDES:-"{lisa-callback-e-h-2l: {method_options: {interval: 1}}}"}
if [[ -n "${MODELS:-}" ]]; then
    RUNS=("${MODELS}|${METHODS:-$PAPER}|${GROUP_LIMIT:-3000}")
else
    # model | cells | seconds the group may take (a cell took about 22 s on an H200, mostly process
    # start and model construction). GaLore's first step runs one SVD per weight matrix (224 on a 7B
    # model), so it is measured on TinyLlama only. results/gpu-h200 ran with TINY_LIMIT=170
    # LLAMA_LIMIT=200 MISTRAL_LIMIT=80 to fit 15 minutes of device time.
    RUNS=("tinyllama-1.1b|$PAPER,galore-r128|${TINY_LIMIT:-600}"
          "llama-2-7b|$PAPER|${LLAMA_LIMIT:-600}"
          "mistral-7b|${MISTRAL_METHODS:-$PAPER}|${MISTRAL_LIMIT:-600}")
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd) PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"
done_dirs=()
for run in "${RUNS[@]}"; do
    IFS='|' read -r models methods limit <<<"$run"
    dir="$WORK/${models//,/_}"
    echo "== $models: $methods (limit ${limit}s) $(date +%T)"
    timeout "$limit" python3 -m lisa_bench.cli memory --models "$models" --methods "$methods" --device "$DEVICE" \
        --dtype "$DTYPE" --batch-size 1 --seq-len "$SEQ_LEN" --steps "$STEPS" --cell-timeout "$CELL_TIMEOUT" \
        --experiment-overrides "$OVERRIDES" \
        --output-dir "$dir" || echo "== $models: exit $? (cells finished before it are kept)"
    [[ -f "$dir/memory.csv" ]] && done_dirs+=("$dir")
    if ((${#done_dirs[@]})); then
        python3 -m lisa_bench.cli memory-collect "${done_dirs[@]}" --output-dir "$OUT" --no-figures
    fi
done
[[ "$DEVICE" == cuda ]] || { echo "== done (no allocator snapshot off CUDA)"; exit 0; }
echo "== allocator snapshot of a training run $(date +%T)"
timeout 120 python3 -m lisa_bench.cli train --model tiny-random-llama --method lisa --max-steps 6 --batch-size 2 \
    --max-length 128 --device cuda --memory-snapshot --checkpoint-every 0 --no-progress --output-dir "$WORK/snap" \
    && python3 - "$WORK/snap" "$OUT/snapshot_check.json" <<'PY'
import json, pickle, sys
from pathlib import Path
run, out = Path(sys.argv[1]), Path(sys.argv[2])
snap = pickle.loads((run / "memory_snapshot.pickle").read_bytes())
log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
check = {"snapshot_bytes": (run / "memory_snapshot.pickle").stat().st_size, "snapshot_keys": sorted(snap),
         "segments": len(snap.get("segments", [])),
         "trace_entries": sum(len(t) for t in snap.get("device_traces", [])),
         "train_log_memory_keys": sorted(k for k in log[-1] if "bytes" in k), "last_step": log[-1]}
out.write_text(json.dumps(check, indent=2))
print(json.dumps(check)[:600])
PY
echo "== done $(date +%T)"
