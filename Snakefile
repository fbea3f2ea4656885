# lisa-bench pipeline: `snakemake --cores all` runs config/default.yaml (the embedded offline default).
# Stages so far: train each experiment -> collect a summary table.

configfile: "config/default.yaml"

NAME = config["name"]
RUNS = f"runs/{NAME}"


rule all:
    input:
        f"results/{NAME}/summary.csv",


rule train:
    input:
        "experiments/{exp}.yaml",
    output:
        directory(f"{RUNS}/train/{{exp}}"),
    log:
        f"{RUNS}/logs/train/{{exp}}.log",
    benchmark:
        f"{RUNS}/benchmarks/train/{{exp}}.tsv"
    threads: workflow.cores
    params:
        model=config["model"],
        steps=config["max_steps"],
    shell:
        "OMP_NUM_THREADS={threads} lisa-bench train --experiment {input} --model {params.model} "
        "--max-steps {params.steps} --output-dir {output} --no-progress > {log} 2>&1"


rule collect:
    input:
        expand(f"{RUNS}/train/{{exp}}", exp=config["experiments"]),
    output:
        f"results/{NAME}/summary.csv",
    shell:
        "lisa-bench collect --runs {input} --output {output}"
