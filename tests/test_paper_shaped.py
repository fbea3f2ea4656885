"""A study shaped like the paper's configs, end to end on the CPU: its models named as a hub id (``org/name``,
served offline from a hub cache the way a user's HF_HOME holds it) and as a local directory path, through every
stage: training, lm-eval, MT-Bench answers and judging, weight norms, memory, tables, figures, comparisons."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline_support import hub_cache, save_tiny

HUB_ID = "tiny-org/tiny-llama"

STUDY = """name: paper-shaped
device: cpu
models: [{hub_id}, {local}]
dataset: synthetic-instruct
seeds: [0]
training: {{max_steps: 2, train_size: 32, eval_size: 8}}
experiments: [full, lisa-e-h-2l]
launcher: {{type: single}}
lm_eval: {{tasks: [synthetic_mc], limit: 2}}
mt_bench: {{questions: offline, max_new_tokens: 2, limit: 1, judge: "hf:{hub_id}", expected_rating: true}}
memory: {{models: [{hub_id}], methods: [lisa-e-h-2l], seq_len: 64, steps: 1}}
"""


@pytest.mark.slow
@pytest.mark.pipeline
def test_hub_id_and_local_path_models_through_every_stage(workdir, tmp_path):
    hf_home = tmp_path / "hf-home"
    hub_cache(hf_home, HUB_ID)
    local = save_tiny(tmp_path / "checkpoints" / "my model", seed=1)  # a space in the path, as users have
    (workdir / "config" / "paper-shaped.yaml").write_text(STUDY.format(hub_id=HUB_ID, local=json.dumps(str(local))))
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "lisa_bench.cli", "reproduce", "--directory", str(workdir),
                           "--configfile", "config/paper-shaped.yaml", "--cores", "2"], capture_output=True,
                          text=True, env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    runs = workdir / "runs" / "paper-shaped"
    from lisa_bench.runs import model_dir_name

    local_dir = model_dir_name(str(local))
    assert local_dir.startswith("my-model-") and "/" not in local_dir
    assert {p.name for p in (runs / "train").iterdir()} == {"tiny-org--tiny-llama", local_dir}
    results = runs / "results"
    training = pd.read_csv(results / "tables" / "training.csv")
    # every run in the tables, under the model's own name
    assert set(zip(training["model"], training["experiment"])) == {
        (m, e) for m in (HUB_ID, str(local)) for e in ("full", "lisa-e-h-2l")}
    lm_eval = pd.read_csv(results / "tables" / "lm_eval.csv")
    assert set(lm_eval["model"]) == {HUB_ID, str(local)}
    mt_bench = pd.read_csv(results / "tables" / "mt_bench.csv")
    assert len(mt_bench) == 4 and set(mt_bench["model"]) == {HUB_ID, str(local)}
    comparisons = pd.read_csv(results / "tables" / "comparisons.csv")
    assert set(comparisons["baseline"]) == {"full"} and set(comparisons["model"]) == {HUB_ID, str(local)}
    assert len(pd.read_csv(results / "norms" / "skew.csv")) > 0
    memory = pd.read_csv(results / "memory" / "memory.csv")
    assert list(memory["status"]) == ["ok"] and list(memory["model"]) == [HUB_ID]
    for fig in ("loss_curves", "score_vs_memory", "mt_bench_categories"):
        assert (results / "figures" / f"{fig}.png").stat().st_size > 0
    # the two models are different weights: their trained runs differ
    assert training.groupby("model")["loss_last"].mean().nunique() == 2
    identity = json.loads((runs / "eval" / "tiny-org--tiny-llama" / "full" / "seed0" / "run.json").read_text())
    assert identity["model"] == HUB_ID and identity["experiment"] == "full" and identity["seed"] == 0
