"""What the pipeline tests share: the project's root, a Snakemake runner, a tiny study and a project copy."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir, *args, timeout=900):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          env=env, timeout=timeout)


def copy_project(tmp_path):
    """The files a study needs, in a scratch directory: Snakefile, rules, configs, experiments, report."""
    for item in ("experiments", "config", "rules", "report"):
        shutil.copytree(ROOT / item, tmp_path / item)
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    return tmp_path


def files(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# a tiny study on the tiny random Llama: every stage, in seconds per job
TINY = """name: tiny
device: cpu
models: [tiny-random-llama]
dataset: synthetic-instruct
seeds: [0]
training: {max_steps: 3, train_size: 64, eval_size: 16}
experiments: [base, lisa-e-h-2l]
launcher: {type: single}
lm_eval: {tasks: [synthetic_mc], limit: 4}
mt_bench: {questions: offline, max_new_tokens: 4, limit: 2, judge: "hf:tiny-random-llama", expected_rating: true}
memory: {models: [tiny-random-llama], methods: [lisa-e-h-2l], seq_len: 64, steps: 1}
"""
