"""What the pipeline tests share: the project's root, a Snakemake runner, a tiny study and a project copy."""

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir, *args, timeout=900, env=None):
    """`python -m snakemake ARGS` in ``workdir``, its output captured (a CompletedProcess), run by the worker's warm
    Snakemake (tests/snakemake_zygote.py)."""
    from tests import snakemake_zygote

    if env is None:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return snakemake_zygote.run(args, workdir, env, timeout)


def copy_project(tmp_path):
    """The files a study needs, in a scratch directory: Snakefile, rules, configs, experiments, report."""
    for item in ("experiments", "config", "rules", "report", "paper"):
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


def hub_cache(hf_home, repo_id: str, seed: int = 0):
    """The tiny random Llama as the hub cache holds a downloaded model (``HF_HOME/hub/models--org--name``, a
    snapshot and ``refs/main``), so that ``repo_id`` loads offline the way a user's cached hub model does."""
    repo = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    save_tiny(repo / "snapshots" / commit, seed)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo


def save_tiny(directory, seed: int = 0):
    """The tiny random Llama and its tokenizer saved as a local model directory."""
    from lisa_bench.models.tiny import tiny_llama

    model, tokenizer = tiny_llama(seed=seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
