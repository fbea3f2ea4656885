"""Every committed study (config/*.yaml) passes its checks and plans its jobs (a Snakemake dry run) with its
real model names: one training job per model, experiment (each point of a grid) and seed, each under one safe
directory of its model, and the tables job reading every one of them."""

import re

import pytest
import yaml

from lisa_bench.runs import model_dir_name
from lisa_bench.study import experiment_seeds, grid_points, memory_cells
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
    stages = study.get("stages", ["train", "memory"])
    if "plan" in stages:  # the memory model's tables, one job each
        assert counts["plan_tables"] == len(study["plan"])
    if "memory" in stages:  # one job per cell, memory.method_models giving a method fewer models
        assert counts["memory_cell"] == len(memory_cells(study)) and counts["memory_table"] == 1
    if "train" not in stages:
        assert "train" not in counts and counts.get("memory_table", 0) == ("memory" in stages)
        return
    runs = [f"runs/{study['name']}/train/{model_dir_name(m)}/{e}/seed{s}"
            for m in study["models"] for e in grid_points(study) for s in experiment_seeds(study, e)]
    assert counts["train"] == len(runs) and counts["tables_and_figures"] == 1
    tables_job = proc.stdout.split("rule tables_and_figures:")[1].split("output:")[0]
    assert all(run in tables_job for run in runs)  # the report's inputs: every run, no directory searched


STUDIES_PAGE = ROOT / "docs" / "studies.md"


def _schema_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, sub in (node.get("properties") or {}).items():
        keys.append(prefix + key)
        keys += _schema_keys(sub, f"{prefix}{key}.")
    return keys


def test_the_study_page_names_every_schema_key():
    """docs/studies.md goes through every key of config/schema.yaml, nested ones included (`launcher.type` as
    `type`): a key added to the schema without a word on the page fails here."""
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    text = STUDIES_PAGE.read_text()
    missing = [k for k in _schema_keys(schema) if f"`{k.split('.')[-1]}`" not in text and
               not re.search(rf"[{{ ,]{re.escape(k.split('.')[-1])}[:,}} ]", text)]
    assert not missing, f"docs/studies.md does not name {missing}"


def test_the_worked_example_plans(workdir):
    """The worked example of docs/studies.md, as the page prints it, passes the study check and plans the jobs
    the page counts."""
    block = re.search(r"```yaml\n# config/my-study.yaml\n(.*?)```", STUDIES_PAGE.read_text(), re.S).group(1)
    (workdir / "config" / "my-study.yaml").write_text(block)
    proc = snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/my-study.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = _job_counts(proc.stdout)
    assert (counts["train"], counts["sweep_train"], counts["memory_cell"]) == (7, 6, 3), counts
    assert counts["lm_eval"] == counts["mt_bench_answer"] == counts["mt_bench_judge"] == 7


def test_a_method_measured_on_some_memory_models_only():
    """`memory.method_models` gives a method fewer models (config/gpu-h200.yaml: Mistral-7B's three cells)."""
    study = yaml.safe_load((ROOT / "config" / "gpu-h200.yaml").read_text())
    cells = memory_cells(study)
    assert len(cells) == 19 and [e for m, e in cells if m == "mistral-7b"] == ["full", "lora-r128", "lisa-e-h-2l"]
    assert len([c for c in cells if c[0] == "llama-2-7b"]) == 8


def test_the_schema_offers_every_precision():
    """A memory cell's precision in a study (`memory.dtype`) may be any recipe the suite trains with: the schema's
    list is the precision module's (bf16-sr was missing from it)."""
    from lisa_bench.precision import PRECISIONS

    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    assert schema["properties"]["memory"]["properties"]["dtype"]["enum"] == list(PRECISIONS)
