# Weight-norm skew, the memory table, then tables and figures.

rule weight_norms:
    input:
        trained_runs(),
    output:
        report(f"{RESULTS}/norms/skew.csv", category="Weight-norm skew", caption="../report/skew.rst"),
        report(f"{RESULTS}/norms/weight_norms.png", category="Weight-norm skew", caption="../report/norms.rst"),
    log:
        f"{RUNS}/logs/weight_norms.log",
    benchmark:
        f"{RUNS}/benchmarks/weight_norms.tsv"
    threads: EVAL_THREADS
    shell:
        "OMP_NUM_THREADS={threads} {LISA_BENCH} analyze-norms --runs {input} --output-dir $(dirname {output[0]}) "
        "> {log} 2>&1"


rule memory_cell:
    input:
        memory_cell_files,
    output:
        f"{RUNS}/memory/cells/{{mmodel}}/{{mcell}}/memory.csv",
    log:
        f"{RUNS}/logs/memory/{{mmodel}}/{{mcell}}.log",
    benchmark:
        f"{RUNS}/benchmarks/memory/{{mmodel}}/{{mcell}}.tsv"
    threads: workflow.cores
    resources:
        gpu=res("memory_table", "gpu", GPU_DEFAULT),
        mem_mb=res("memory_table", "mem_mb", 16000),
        runtime=res("memory_table", "runtime", 120),
    params:
        model=lambda wc: shlex.quote(MEMORY_MODEL[wc.mmodel]),
        method=lambda wc: shlex.quote(MEMORY_CELL[wc.mcell]),
        overrides=memory_overrides,
        seq=memory_setting("seq_len", 1024),
        batch=memory_setting("batch_size", 1),
        steps=MEMORY.get("steps", 3),
        dtype=memory_setting("dtype", "bf16" if config["device"] == "cuda" else "fp32"),
        attn=memory_setting("attn_implementation", "eager"),
        checkpointing=lambda wc: "--gradient-checkpointing" if memory_setting("gradient_checkpointing", False)(wc)
        else "",
        timeout=f"--cell-timeout {MEMORY['cell_timeout']}" if MEMORY.get("cell_timeout") else "",
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} {LISA_BENCH} memory --models {params.model} --methods {params.method} "
        "{params.overrides} --seq-len {params.seq} --batch-size {params.batch} --steps {params.steps} "
        "--dtype {params.dtype} --attn-implementation {params.attn} {params.checkpointing} --device {params.device} "
        "{params.timeout} --skip-refused --no-figures --output-dir $(dirname {output}) > {log} 2>&1"


rule memory_table:
    input:
        memory_cells(),
    output:
        report(f"{RESULTS}/memory/memory.csv", category="Memory", caption="../report/memory.rst"),
        report(f"{RESULTS}/memory/memory_breakdown.png", category="Memory", caption="../report/memory.rst"),
        report(f"{RESULTS}/memory/memory_trace.png", category="Memory", caption="../report/memory_trace.rst"),
    log:
        f"{RUNS}/logs/memory.log",
    benchmark:
        f"{RUNS}/benchmarks/memory_table.tsv"
    params:
        cells=lambda wc, input: " ".join(shlex.quote(str(Path(p).parent)) for p in input),
    shell:
        "{LISA_BENCH} memory-collect {params.cells} --output-dir $(dirname {output[0]}) > {log} 2>&1"


def table_outputs():
    """The report's tables and figures: MT-Bench's where the study has it, the sweep's where it sweeps."""
    tables = [report(f"{RESULTS}/tables/{t}.csv", category="Tables", caption=f"../report/{t}.rst")
              for t in ("training", "lm_eval", "comparisons")]
    figures = [report(f"{RESULTS}/figures/{f}.png", category="Figures", caption=f"../report/{c}.rst")
               for f, c in (("loss_curves", "loss"), ("memory_over_steps", "memory_steps"),
                            ("score_vs_memory", "pareto"))]
    if (config.get("training") or {}).get("eval_every"):  # a held-out point every N steps: learning curves
        tables.append(report(f"{RESULTS}/tables/curves.csv", category="Tables", caption="../report/curves.rst"))
        figures.append(report(f"{RESULTS}/figures/learning_curves.png", category="Figures",
                              caption="../report/curves.rst"))
    if (config.get("comparisons") or {}).get("matched"):
        tables.append(report(f"{RESULTS}/tables/matched.csv", category="Tables", caption="../report/matched.rst"))
    if MT:
        tables.append(report(f"{RESULTS}/tables/mt_bench.csv", category="Tables", caption="../report/mt_bench.rst"))
        figures.append(report(f"{RESULTS}/figures/mt_bench_categories.png", category="Figures",
                              caption="../report/mt_bench.rst"))
    if GRID:
        tables.append(report(f"{RESULTS}/sweep/grid.csv", category="Sweep", caption="../report/sweep.rst"))
        figures.append(report(f"{RESULTS}/sweep/lr_sweep.png", category="Sweep", caption="../report/sweep.rst"))
    return tables + figures


def report_runs(wildcards, input):
    """Every run the report reads, as directories: this job's inputs, so no directory is searched for more."""
    dirs = [*input.train, *(Path(p).parent for p in input.eval), *(Path(p).parent.parent for p in input.mt_bench)]
    return " ".join(shlex.quote(str(d)) for d in dirs)


rule tables_and_figures:
    input:
        train=trained_runs(),
        eval=run_outputs("eval", "scores.json"),
        mt_bench=run_outputs("mt_bench", "judge/mt_bench.json") if MT else [],
        sweep=[run for model in MODEL_DIRS for exp in EXPERIMENTS for run in grid_runs(model, exp)],
    output:
        table_outputs(),
    log:
        f"{RUNS}/logs/tables_and_figures.log",
    benchmark:
        f"{RUNS}/benchmarks/tables_and_figures.tsv"
    params:
        runs=report_runs,
        sweep=lambda wc, input: " ".join(["--sweep-runs", *map(shlex.quote, input.sweep)]),
        # the study's baselines, else the report's default (those of lora-r128 and full the study has)
        baselines=f"--baselines={','.join(config['comparisons']['baselines'])}"
        if (config.get("comparisons") or {}).get("baselines") else "",
        bootstrap=(config.get("comparisons") or {}).get("bootstrap", 2000),
        matched=f"--matched {config['comparisons']['matched']}" if (config.get("comparisons") or {}).get("matched") else "",
        score=f"--score {(config.get('figures') or {})['score']}" if (config.get("figures") or {}).get("score") else "",
    shell:
        "{LISA_BENCH} report --runs {params.runs} {params.sweep} --output-dir {RESULTS} --name {NAME} "
        "{params.baselines} --bootstrap {params.bootstrap} {params.matched} {params.score} > {log} 2>&1"


rule paper_table:
    input:
        reference=config.get("paper", []),
        tables=([f"{RESULTS}/tables/training.csv"] if "train" in STAGES else [])
        + ([f"{RESULTS}/memory/memory.csv"] if "memory" in STAGES else []),
    output:
        report(f"{RESULTS}/paper/paper.csv", category="The paper beside ours", caption="../report/paper.rst"),
        report(f"{RESULTS}/paper/paper_settings.csv", category="The paper beside ours", caption="../report/paper.rst"),
    log:
        f"{RUNS}/logs/paper_table.log",
    params:
        config=shlex.quote(json.dumps(config)),
    shell:
        "{LISA_BENCH} paper --reference {input.reference} --results {RESULTS} --config-json {params.config} "
        "--output-dir $(dirname {output[0]}) --quiet > {log} 2>&1"


rule plan_tables:
    output:
        report(f"{RESULTS}/{{table}}.csv", category="The memory model", caption="../report/plan.rst"),
        f"{RESULTS}/{{table}}.md",
    wildcard_constraints:
        table="will_it_fit|verdict",
    log:
        f"{RUNS}/logs/plan/{{table}}.log",
    benchmark:
        f"{RUNS}/benchmarks/plan/{{table}}.tsv"
    params:
        spec=lambda wc: shlex.quote(json.dumps({wc.table: config["plan"][wc.table]})),
    shell:
        "{LISA_BENCH} plan-tables --spec-json {params.spec} --output-dir {RESULTS} > {log} 2>&1"
