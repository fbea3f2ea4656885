#!/usr/bin/env bash
# Both evaluations, offline, for the base SmolLM2-135M and one trained run; timings in OUT/timings.tsv.
# Usage: bash scripts/offline_eval_smollm2.sh RUN_DIR OUT_DIR [LIMIT]
set -euo pipefail
RUN=$1; OUT=$2; LIMIT=${3:-100}
mkdir -p "$OUT"; : > "$OUT/timings.tsv"
timed() { local name=$1; shift; local t0=$(date +%s); "$@"; echo -e "$name\t$(( $(date +%s) - t0 ))" >> "$OUT/timings.tsv"; }
for target in base run; do
  if [ $target = base ]; then T=(--model smollm2-135m); else T=(--run "$RUN"); fi
  timed "lm-eval $target" lisa-bench eval "${T[@]}" --device cpu --limit "$LIMIT" --output-dir "$OUT/$target/lm_eval"
  timed "mt-bench answer $target" lisa-bench mt-bench answer "${T[@]}" --device cpu --max-new-tokens 128 \
      --no-progress --output-dir "$OUT/$target/mt_bench"
  timed "mt-bench judge $target" lisa-bench mt-bench judge --answers "$OUT/$target/mt_bench/answers.jsonl" \
      --judge hf:smollm2-135m --judge-max-new-tokens 128 --device cpu --cache "$OUT/judge_cache.jsonl" \
      --no-progress --output-dir "$OUT/$target/mt_bench/judge-generate"
  timed "mt-bench judge-expected $target" lisa-bench mt-bench judge --answers "$OUT/$target/mt_bench/answers.jsonl" \
      --judge hf:smollm2-135m --expected-rating --device cpu --cache "$OUT/judge_cache_expected.jsonl" \
      --no-progress --output-dir "$OUT/$target/mt_bench/judge-expected"
done
cat "$OUT/timings.tsv"
