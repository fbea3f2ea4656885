"""The Snakemake pipeline: a dry run of the default config, and a real run of a tiny one."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _snakemake(workdir, *args):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          env=env, timeout=600)


def _workdir(tmp_path):
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    return tmp_path


def test_default_dry_run(tmp_path):
    proc = _snakemake(_workdir(tmp_path), "-n", "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train" in proc.stdout and "collect" in proc.stdout


def test_tiny_pipeline_runs_end_to_end(tmp_path):
    work = _workdir(tmp_path)
    (work / "config" / "tiny.yaml").write_text(
        "name: tiny\nmodel: tiny-random-llama\nmax_steps: 3\nexperiments: [base, lisa-e-h-2l, lora-r128]\n")
    proc = _snakemake(work, "--cores", "2", "--configfile", "config/tiny.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(work / "results" / "tiny" / "summary.csv", index_col=0)
    assert list(table.index) == ["base", "lisa-e-h-2l", "lora-r128"]
    assert (work / "runs" / "tiny" / "benchmarks" / "train" / "lisa-e-h-2l.tsv").exists()
    again = _snakemake(work, "-n", "--cores", "2", "--configfile", "config/tiny.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr
