#!/usr/bin/env bash
# The training recipe and FSDP2 at paper scale on one GPU, in one go (random weights from the published
# configs, the byte-level tokenizer, sequences of exactly MAX_LENGTH tokens so that the prediction's shape is
# the trained one):
#  1. TinyLlama-1.1B, STEPS steps of full, lora-r128 and lisa-e-h-2l under bf16-mixed, sdpa, batch 4 x 512:
#     tokens/s and the measured peak (CUDA allocator, max over steps) against `lisa-bench plan`;
#  2. LLaMA-2-7B under FSDP2 with world size 1 (torchrun), pure bf16, lisa-e-h-2l, FSDP_STEPS steps: the same;
#  3. TinyLlama-1.1B, the same three experiments under the recipes that keep every update, bf16-master (fp32
#     masters of what trains) and bf16-kahan (torch-optimi's Kahan-summed AdamW): peak against the model, and the
#     share of the update lost to rounding at lr 2e-5.
# Runs 2 and 3 share the GPU, all at once (7 processes, about 80 GB together): the allocator's peak is each
# process's own, so the memory checks hold; their tokens/s are marked `concurrent` and are no speed figures.
#
#   OUT=results/gpu-recipe bash scripts/gpu_recipe.sh          # at most 3 x RUN_LIMIT + FSDP_LIMIT seconds
#
# Each run has its own time limit; a run cut short is recorded as such and the rest go on. The summary,
# `recipe.csv` (+ .md), is written after every run. Needs torch with CUDA, transformers, peft, accelerate,
# pandas, tabulate and torch-optimi (carried to the device as a wheel: results/gpu-recipe/README.md). DEVICE=cpu TINY=tiny-random-llama BIG=tiny-random-llama STEPS=3 FSDP_STEPS=2 is a dry run on a CPU
# (FSDP2 then needs NPROC=2 gloo processes; on a CPU the peak is the process's resident set, so the dry run
# checks the script, not the memory model: the CPU's own check is `lisa-bench memory`).
# `bash scripts/device_dry_run.sh` runs that dry run with the device's package versions and absences.
set -uo pipefail
OUT=${OUT:-results/gpu-recipe}
WORK=${WORK:-$(mktemp -d)}
STEPS=${STEPS:-30} FSDP_STEPS=${FSDP_STEPS:-10}
RUN_LIMIT=${RUN_LIMIT:-100} FSDP_LIMIT=${FSDP_LIMIT:-300}
DEVICE=${DEVICE:-cuda} TINY=${TINY:-tinyllama-1.1b} BIG=${BIG:-llama-2-7b} NPROC=${NPROC:-1}
BATCH=${BATCH:-4} MAX_LENGTH=${MAX_LENGTH:-512} FSDP_BATCH=${FSDP_BATCH:-2}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd) PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT" "$WORK/train"
if [[ "$DEVICE" == cuda ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
# long responses: every example fills MAX_LENGTH byte tokens, so every micro-batch is BATCH x MAX_LENGTH
python3 - "$WORK/long.jsonl" <<'PY'
import json, random, sys
rng = random.Random(0)
words = "the of memory layer sampled gradient optimizer state token batch weight norm frozen update".split()
with open(sys.argv[1], "w") as f:
    for i in range(400):
        f.write(json.dumps({"instruction": f"Write about topic {i}.",
                            "output": " ".join(rng.choice(words) for _ in range(150))}) + "\n")
PY
COMMON=(--dataset "$WORK/long.jsonl" --max-length "$MAX_LENGTH" --warmup-steps 0 --checkpoint-every 0 --eval-size 8
        --attn-implementation sdpa --device "$DEVICE" --no-progress)
summarise() {
    python3 - "$WORK/train" "$OUT" <<'PY'
import json, subprocess, sys
from pathlib import Path
import pandas as pd
rows = []
for spec_file in sorted(Path(sys.argv[1]).glob("*/*.spec.json")):
    run, spec = spec_file.parent / spec_file.name.removesuffix(".spec.json"), json.loads(spec_file.read_text())
    row = {"model": spec["model"], "experiment": run.name, "launcher": spec["launcher"], "precision": spec["precision"],
           "batch": spec["batch"], "seq_len": spec["seq_len"], "steps": spec["steps"],
           "concurrent": spec.get("concurrent", False)}
    if (run / "metrics.json").exists():
        m = json.loads((run / "metrics.json").read_text())
        plan = subprocess.run([sys.executable, "-m", "lisa_bench.cli", "plan", "--model", spec["model"],
                               "--gpu-memory", "1000GiB", "--experiments", run.name, "--seq-len", str(spec["seq_len"]),
                               "--batch-size", str(spec["batch"]), "--precision", spec["precision"],
                               "--attn-implementation", "sdpa", "--launcher", spec["launcher"], "--num-gpus",
                               str(m["num_processes"]), "--format", "json"], capture_output=True, text=True, check=True)
        pred = json.loads(plan.stdout)["rows"][0]["peak_GiB"]
        row.update(status="ok", peak_GiB=m["peak_memory_bytes"] / 2**30, predicted_GiB=pred,
                   measured_over_predicted=m["peak_memory_bytes"] / 2**30 / pred,
                   optimizer_state_GiB=m["optimizer_state_bytes_peak"] / 2**30, tokens_per_second=m["tokens_per_second"],
                   train_loss_first=m["train_loss_first"], train_loss_last=m["train_loss_last"], eval_loss=m["eval_loss"],
                   train_seconds=m["train_seconds"], memory_kind=m["memory_kind"],
                   lost_update_first=m.get("lost_update_share_first"), lost_update_last=m.get("lost_update_share_last"))
    else:
        row["status"] = "no metrics.json (cut by its time limit or failed; see its log)"
    rows.append(row)
table = pd.DataFrame(rows)
base = table.query("launcher == 'single' and experiment == 'full' and status == 'ok' and not concurrent")
if len(base):  # speed only where the run had the GPU to itself
    table["speed_vs_full"] = (table["tokens_per_second"] / float(base["tokens_per_second"].iloc[0])).where(~table["concurrent"])
table.to_csv(Path(sys.argv[2]) / "recipe.csv", index=False)
(Path(sys.argv[2]) / "recipe.md").write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
print(table.to_string(index=False))
PY
}
spec() {  # what the summary needs to predict a run: model, launcher, precision, shape, whether it shared the GPU
    printf '{"model": "%s", "launcher": "%s", "precision": "%s", "batch": %s, "seq_len": %s, "steps": %s, "concurrent": %s}' \
        "$1" "$2" "$3" "$4" "$MAX_LENGTH" "$5" "${7:-false}" > "$WORK/train/$6.spec.json"
}
mkdir -p "$WORK/train/recipe" "$WORK/train/fsdp" "$WORK/train/bf16-master" "$WORK/train/bf16-kahan"
for exp in full lora-r128 lisa-e-h-2l; do
    spec "$TINY" single bf16-mixed "$BATCH" "$STEPS" "recipe/$exp"
    timeout "$RUN_LIMIT" python3 -m lisa_bench.cli train --experiment "$exp" --model "random:$TINY" \
        --max-steps "$STEPS" --precision bf16-mixed --batch-size "$BATCH" "${COMMON[@]}" \
        --output-dir "$WORK/train/recipe/$exp" 2>&1 | tail -n 5 | tee "$OUT/$exp.log"
    rm -rf "$WORK/train/recipe/$exp/model"  # random weights: nothing worth keeping, and 4 GB to write
    summarise
done
spec "$BIG" fsdp bf16 "$FSDP_BATCH" "$FSDP_STEPS" "fsdp/lisa-e-h-2l" true
(timeout "$FSDP_LIMIT" python3 -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m lisa_bench.cli train \
    --experiment lisa-e-h-2l --model "random:$BIG" --max-steps "$FSDP_STEPS" --precision bf16 \
    --batch-size "$FSDP_BATCH" --sharding fsdp "${COMMON[@]}" --output-dir "$WORK/train/fsdp/lisa-e-h-2l" 2>&1 \
    | tail -n 5 > "$WORK/fsdp-lisa-e-h-2l.log"; rm -rf "$WORK/train/fsdp/lisa-e-h-2l/model") &
# the recipes that keep every update, at the authors' rates (2e-5; LoRA 2e-4): alongside the FSDP2 run
for precision in bf16-master bf16-kahan; do
    for exp in full lora-r128 lisa-e-h-2l; do
        lr=2e-5; [[ "$exp" == lora-* ]] && lr=2e-4
        spec "$TINY" single "$precision" "$BATCH" "$STEPS" "$precision/$exp" true
        (timeout "$FSDP_LIMIT" python3 -m lisa_bench.cli train --experiment "$exp" --model "random:$TINY" \
            --max-steps "$STEPS" --precision "$precision" --lr "$lr" --batch-size "$BATCH" "${COMMON[@]}" \
            --output-dir "$WORK/train/$precision/$exp" 2>&1 | tail -n 5 > "$WORK/$precision-$exp.log"
         rm -rf "$WORK/train/$precision/$exp/model") &
    done
done
wait
tail -n +1 "$WORK"/*.log > "$OUT/concurrent.log"  # each with its name
summarise
for run in "$WORK"/train/*/*/; do  # provenance of every run, without the weights
    name=$(basename "$(dirname "$run")")-$(basename "$run")
    [[ -f "$run/metrics.json" ]] && cp "$run/metrics.json" "$WORK/$name.metrics.json"
done
# the device returns at most 8 files: every run's metrics in one
python3 - "$WORK" "$OUT/metrics.json" <<'PY'
import json, sys
from pathlib import Path
runs = {p.name.removesuffix(".metrics.json"): json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*.metrics.json"))}
Path(sys.argv[2]).write_text(json.dumps(runs, indent=1) + "\n")
PY
