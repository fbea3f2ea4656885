# The learning-rate sweep (config key sweep): every grid point of an experiment trains `steps` steps, the
# final runs of that experiment (all seeds) use the rate of the lowest held-out loss.

SWEEP = config.get("sweep") or {}
GRID = SWEEP.get("lr") or {}


def lr_label(lr):
    return f"{float(lr):g}"


def rates(exp):
    """The rates an experiment (or grid point) sweeps: its own entry, else its experiment's."""
    return GRID.get(exp) or GRID.get(POINTS[exp][0]) or []


def grid_runs(model, exp):
    return [f"{RUNS}/sweep/{model}/{exp}/lr{lr_label(lr)}/seed{seed}" for lr in rates(exp)
            for seed in SWEEP.get("seeds", [0])]


RATE_FROM = SWEEP.get("rate_from") or {}


def swept_by(exp):
    """The experiment whose sweep chooses this one's rate: itself where it has a grid, else the one sweep.rate_from
    names for it (or for its experiment, if it is a grid point); None: it keeps the rate of its file."""
    if rates(exp):
        return exp
    return RATE_FROM.get(exp) or RATE_FROM.get(POINTS[exp][0])


def sweep_best_file(wildcards):
    """The chosen learning rate of an experiment that has a grid, or takes another's (a settings file for its
    final runs)."""
    source = swept_by(wildcards.exp)
    return [f"{RUNS}/sweep/{wildcards.model}/{source}/best.yaml"] if source else []


rule sweep_train:
    input:
        experiment=experiment_file,
        defaults="experiments/_defaults.yaml",
        model=fetched,
    output:
        directory(f"{RUNS}/sweep/{{model}}/{{exp}}/lr{{lr}}/seed{{seed}}"),
    log:
        f"{RUNS}/logs/sweep/{{model}}/{{exp}}/lr{{lr}}/seed{{seed}}.log",
    benchmark:
        f"{RUNS}/benchmarks/sweep/{{model}}/{{exp}}/lr{{lr}}/seed{{seed}}.tsv"
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
        steps=SWEEP.get("steps", 50),
        eval_size=f"--set eval_size={SWEEP['eval_size']}" if SWEEP.get("eval_size") else "",
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} train --experiment {input.experiment} --model {params.model} "
        "--dataset {params.dataset} --seed {wildcards.seed} --device {params.device} {params.settings} "
        "--set lr={wildcards.lr} --set max_steps={params.steps} {params.eval_size} --output-dir {output} --no-progress > {log} 2>&1"


rule sweep_best:
    input:
        lambda wc: grid_runs(wc.model, wc.exp),
    output:
        f"{RUNS}/sweep/{{model}}/{{exp}}/best.yaml",
    log:
        f"{RUNS}/logs/sweep/{{model}}/{{exp}}/best.log",
    shell:
        "{LISA_BENCH} sweep-best --runs {input} --output {output} > {log} 2>&1"
