#!/usr/bin/env bash
# Dry run of scripts/gpu_recipe.sh on this CPU machine in an environment shaped like the lent GPU machine's
# Python (/work/.library/device/KINDS.md: transformers 5.17.0, huggingface_hub 1.33.0, tokenizers 0.23.2, no
# datasets, platformdirs, lm-eval, gguf, galore-torch, badam, apollo-torch, bitsandbytes, snakemake, openai), so
# that a missing package or an older API fails here, not in the GPU's few minutes. Torch stays this machine's
# (the device has 2.11 with CUDA; no CPU wheel of it is at hand).
#
#   bash scripts/device_dry_run.sh            # about 2 minutes after the wheels are fetched (once, into $SIM)
set -euo pipefail
SIM=${SIM:-/tmp/lisa-bench-devsim}
PY=${PY:-$(pwd)/.venv/bin/python}
mkdir -p "$SIM/wheels" "$SIM/site" "$SIM/block"
if [[ ! -d "$SIM/site/transformers" || ! -d "$SIM/site/optimi" ]]; then
    "$PY" -m pip download -q --no-deps -d "$SIM/wheels" transformers==5.17.0 huggingface_hub==1.33.0 tokenizers==0.23.2 \
        httpx httpcore h11 anyio idna certifi torch-optimi==0.3.3
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SIM/site" "$SIM/wheels"/*.whl
fi
# absent packages: the path finder does not see them, so find_spec answers None and an import fails as it would
cat > "$SIM/block/sitecustomize.py" <<'PY'
import importlib.machinery as _m
ABSENT = {"datasets", "platformdirs", "lm_eval", "gguf", "galore_torch", "badam", "apollo_torch", "bitsandbytes",
          "snakemake", "openai", "vllm"}
_find = _m.PathFinder.find_spec.__func__
_m.PathFinder.find_spec = classmethod(lambda cls, name, path=None, target=None:
                                      None if name.split(".")[0] in ABSENT else _find(cls, name, path, target))
PY
export PATH="$(dirname "$PY"):$PATH" PYTHONPATH="$SIM/block:$SIM/site"
python3 -c "import transformers, importlib.util as u; assert transformers.__version__ == '5.17.0'; assert u.find_spec('datasets') is None"
rm -rf "$SIM/out" "$SIM/work"
OUT="$SIM/out" WORK="$SIM/work" RUN_LIMIT=900 DEVICE=cpu TINY=tiny-random-llama BIG=tiny-random-llama STEPS=3 FSDP_STEPS=2 NPROC=2 \
    MAX_LENGTH=64 bash scripts/gpu_recipe.sh > "$SIM/log.txt" 2>&1 || true
cat "$SIM/out/recipe.md"
if grep -q "no metrics.json" "$SIM/out/recipe.csv" || [[ $(grep -c ",ok," "$SIM/out/recipe.csv") -ne 10 ]]; then
    echo "dry run: a run failed; see $SIM/log.txt and $SIM/out/*.log" >&2
    exit 1
fi
echo "dry run: all 10 runs ok in the device-shaped environment (log: $SIM/log.txt)"
