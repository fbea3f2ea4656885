"""Every committed study (config/*.yaml) passes its checks and plans its jobs (a Snakemake dry run) with its
real model names: one training job per model, experiment and seed, each under one safe directory of its model,
and the tables job reading every one of them."""

import re

import pytest
import yaml

from lisa_bench.runs import model_dir_name
from lisa_bench.study import experiment_seeds
from tests.pipeline_support import ROOT, snakemake

# the default study is dry-run in a fresh clone, with every stage checked, by test_reproduce.py
CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name not in ("schema.yaml", "default.yaml"))


def _job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("config", CONFIGS)
def test_dry_run(config, workdir):
    proc = snakemake(workdir, "-n", "--cores", "2", "--configfile", f"config/{config}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = yaml.safe_load((ROOT / "config" / config).read_text())
    counts = _job_counts(proc.stdout)
    if "train" not in study.get("stages", ["train", "memory"]):
        assert "train" not in counts and counts["memory_table"] == 1
        return
    runs = [f"runs/{study['name']}/train/{model_dir_name(m)}/{e}/seed{s}"
            for m in study["models"] for e in study["experiments"] for s in experiment_seeds(study, e)]
    assert counts["train"] == len(runs) and counts["tables_and_figures"] == 1
    tables_job = proc.stdout.split("rule tables_and_figures:")[1].split("output:")[0]
    assert all(run in tables_job for run in runs)  # the report's inputs: every run, no directory searched
