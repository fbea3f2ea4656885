# Weight-norm skew, the memory table, then tables and figures.

TRAINED = expand(f"{RUNS}/train/{{model}}/{{exp}}/seed{{seed}}", model=MODELS, exp=EXPERIMENTS, seed=SEEDS)


rule weight_norms:
    input:
        TRAINED,
    output:
        report(f"{RESULTS}/norms/skew.csv", category="Weight-norm skew", caption="../report/skew.rst"),
        report(f"{RESULTS}/norms/weight_norms.png", category="Weight-norm skew", caption="../report/norms.rst"),
    log:
        f"{RUNS}/logs/weight_norms.log",
    threads: workflow.cores
    shell:
        "OMP_NUM_THREADS={threads} lisa-bench analyze-norms --runs {input} --output-dir $(dirname {output[0]}) "
        "> {log} 2>&1"


rule memory_table:
    output:
        report(f"{RESULTS}/memory/memory.csv", category="Memory", caption="../report/memory.rst"),
        report(f"{RESULTS}/memory/memory_breakdown.png", category="Memory", caption="../report/memory.rst"),
        report(f"{RESULTS}/memory/memory_trace.png", category="Memory", caption="../report/memory_trace.rst"),
    log:
        f"{RUNS}/logs/memory.log",
    threads: workflow.cores
    resources:
        gpu=res("memory_table", "gpu", 0 if config["device"] == "cpu" else 1),
        mem_mb=res("memory_table", "mem_mb", 16000),
        runtime=res("memory_table", "runtime", 120),
    params:
        models=",".join(config.get("memory", {}).get("models", MODELS)),
        methods=",".join(config.get("memory", {}).get("methods", ["full", "lora-r128", "lisa-e-h-2l"])),
        seq=config.get("memory", {}).get("seq_len", 1024),
        batch=config.get("memory", {}).get("batch_size", 1),
        steps=config.get("memory", {}).get("steps", 3),
        dtype=config.get("memory", {}).get("dtype", "bf16" if config["device"] == "cuda" else "fp32"),
        timeout=(f"--cell-timeout {config['memory']['cell_timeout']}"
                 if config.get("memory", {}).get("cell_timeout") else ""),
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} lisa-bench memory --models {params.models} --methods {params.methods} "
        "--seq-len {params.seq} --batch-size {params.batch} --steps {params.steps} --dtype {params.dtype} "
        "--device {params.device} {params.timeout} --output-dir $(dirname {output[0]}) > {log} 2>&1"


rule tables_and_figures:
    input:
        TRAINED,
        expand(f"{RUNS}/eval/{{model}}/{{exp}}/seed{{seed}}/scores.json", model=MODELS, exp=EXPERIMENTS, seed=SEEDS),
        expand(f"{RUNS}/mt_bench/{{model}}/{{exp}}/seed{{seed}}/judge/mt_bench.json", model=MODELS, exp=EXPERIMENTS,
               seed=SEEDS),
    output:
        report(f"{RESULTS}/tables/training.csv", category="Tables", caption="../report/training.rst"),
        report(f"{RESULTS}/tables/lm_eval.csv", category="Tables", caption="../report/lm_eval.rst"),
        report(f"{RESULTS}/tables/mt_bench.csv", category="Tables", caption="../report/mt_bench.rst"),
        report(f"{RESULTS}/figures/loss_curves.png", category="Figures", caption="../report/loss.rst"),
        report(f"{RESULTS}/figures/memory_over_steps.png", category="Figures", caption="../report/memory_steps.rst"),
        report(f"{RESULTS}/figures/mt_bench_categories.png", category="Figures", caption="../report/mt_bench.rst"),
        report(f"{RESULTS}/figures/score_vs_memory.png", category="Figures", caption="../report/pareto.rst"),
    log:
        f"{RUNS}/logs/tables_and_figures.log",
    shell:
        "lisa-bench report --runs-dir {RUNS} --output-dir {RESULTS} --name {NAME} > {log} 2>&1"
