#!/usr/bin/env bash
# The paper's peak-memory table on one GPU (bf16, batch 1, 1024 tokens, eager attention), in one go.
# Usage: OUT=results/gpu-<card> bash scripts/gpu_memory_table.sh
# Needs torch with CUDA, transformers, peft, accelerate, pandas, matplotlib, psutil; galore-torch for
# the GaLore cell (without it that cell is recorded as an error and the rest run on).
set -euo pipefail
OUT=${OUT:-results/gpu}
MODELS=${MODELS:-tinyllama-1.1b,llama-2-7b,mistral-7b}
METHODS=${METHODS:-full,lora-r128,lora-r256,lora-r512,lisa-e-h,lisa-e-h-2l,lisa-e-h-4l,lisa-callback-e-h-2l,galore-r128}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt" || true
PYTHONPATH=${PYTHONPATH:-}:$(pwd) python3 -m lisa_bench.cli memory --models "$MODELS" --methods "$METHODS" \
    --device cuda --dtype bf16 --batch-size 1 --seq-len 1024 --steps ${STEPS:-3} --output-dir "$OUT"
