# Fetching models and training every (model, experiment, seed).

rule fetch_model:
    output:
        f"{RUNS}/models/{{model}}.fetched",
    log:
        f"{RUNS}/logs/fetch/{{model}}.log",
    benchmark:
        f"{RUNS}/benchmarks/fetch_model/{{model}}.tsv"
    resources:
        mem_mb=res("fetch_model", "mem_mb", 4000),
        runtime=res("fetch_model", "runtime", 30),
    params:
        model=model_name,
    shell:
        "{LISA_BENCH} fetch --model {params.model} --marker {output} > {log} 2>&1"


rule train:
    input:
        experiment=experiment_file,
        defaults="experiments/_defaults.yaml",
        model=fetched,
        best=sweep_best_file,
    output:
        directory(f"{RUNS}/train/{{model}}/{{exp}}/seed{{seed}}"),
    log:
        f"{RUNS}/logs/train/{{model}}/{{exp}}/seed{{seed}}.log",
    benchmark:
        f"{RUNS}/benchmarks/train/{{model}}/{{exp}}/seed{{seed}}.tsv"
    threads: workflow.cores
    resources:
        gpu=res("train", "gpu", GPU_DEFAULT),
        mem_mb=res("train", "mem_mb", 16000),
        runtime=res("train", "runtime", 120),
        **NODE_RESOURCES,
    params:
        model=model_name,
        launch=LAUNCH,
        device=config["device"],
        dataset=config["dataset"],
        settings=training_flags,
        best=lambda wc, input: f"--settings-file {input.best}" if input.best else "",
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} train --experiment {input.experiment} --model {params.model} "
        "--dataset {params.dataset} --seed {wildcards.seed} --device {params.device} {params.settings} "
        "{params.best} --output-dir {output} --no-progress > {log} 2>&1"
