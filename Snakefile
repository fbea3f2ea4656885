# lisa-bench: `snakemake --cores all` reproduces config/default.yaml, the embedded offline default.
# Other studies: `snakemake --cores all --configfile config/paper-moderate.yaml` (GPUs and internet),
# on SLURM: `snakemake --profile profiles/slurm --configfile ...`.
#
# fetch model -> train (model x experiment x seed) -> lm-eval -> MT-Bench answer -> MT-Bench judge
#   -> weight-norm analysis -> memory table -> tables and figures (runs/<name>/results/) -> report
# `lisa-bench reproduce` runs this and compares the study with its committed reference, results/<name>/.

from snakemake.utils import min_version, validate

min_version("8.0")

if not config:  # no --configfile given: the embedded default (another study is never merged over it)
    configfile: "config/default.yaml"
# a schema violation as one line naming the key (Snakemake's own message prints the whole schema after it)
from lisa_bench.study import schema_error
import yaml as _yaml

_problem = schema_error(config, _yaml.safe_load(open(workflow.source_path("config/schema.yaml"))))
if _problem:
    raise WorkflowError(f"lisa-bench: {_problem}")
validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/sweep.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/analyze.smk"


# cheap jobs that read many files, and the one that needs the internet: on a cluster they run where
# Snakemake runs, not in a partition's queue
localrules:
    all,
    fetch_model,
    memory_table,
    page,
    paper_table,
    plan_tables,
    sweep_best,
    tables_and_figures,


# every result of the study's stages; the page (RESULTS/index.html) shows them all, so it comes after them
FINAL = ([f"{RESULTS}/tables/training.csv", f"{RESULTS}/norms/skew.csv"] if "train" in STAGES else []) + \
    ([f"{RESULTS}/memory/memory.csv"] if "memory" in STAGES else []) + \
    ([f"{RESULTS}/paper/paper.csv"] if config.get("paper") else []) + \
    ([f"{RESULTS}/{table}.csv" for table in config.get("plan", {})] if "plan" in STAGES else [])


rule all:
    input:
        f"{RESULTS}/index.html",


# one HTML page of every table, figure and caption (lisa_bench/reporting/page.py); Snakemake's --report beside it
rule page:
    input:
        FINAL,
    output:
        f"{RESULTS}/index.html",
    log:
        f"{RUNS}/logs/page.log",
    shell:
        "{LISA_BENCH} page {RESULTS} --name {NAME} > {log} 2>&1"
