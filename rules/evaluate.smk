# lm-evaluation-harness and MT-Bench on every trained run.

LM = config["lm_eval"]
MT = config.get("mt_bench") or {}  # optional: a study may score with lm-eval alone


rule lm_eval:
    input:
        f"{RUNS}/train/{{model}}/{{exp}}/seed{{seed}}",
    output:
        f"{RUNS}/eval/{{model}}/{{exp}}/seed{{seed}}/scores.json",
    log:
        f"{RUNS}/logs/eval/{{model}}/{{exp}}/seed{{seed}}.log",
    benchmark:
        f"{RUNS}/benchmarks/lm_eval/{{model}}/{{exp}}/seed{{seed}}.tsv"
    threads: EVAL_THREADS
    resources:
        gpu=res("lm_eval", "gpu", GPU_DEFAULT),
        mem_mb=res("lm_eval", "mem_mb", 16000),
        runtime=res("lm_eval", "runtime", 240),
    params:
        specs=shlex.quote(json.dumps(LM["tasks"])),
        limit=f"--limit {LM['limit']}" if LM.get("limit") else "",
        batch=LM.get("batch_size", 8),
        engine=LM.get("engine", "hf"),
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} {LISA_BENCH} eval --run {input} --task-specs {params.specs} {params.limit} "
        "--batch-size {params.batch} --engine {params.engine} --device {params.device} "
        "--output-dir $(dirname {output}) > {log} 2>&1"


rule mt_bench_answer:
    input:
        f"{RUNS}/train/{{model}}/{{exp}}/seed{{seed}}",
    output:
        f"{RUNS}/mt_bench/{{model}}/{{exp}}/seed{{seed}}/answers.jsonl",
    log:
        f"{RUNS}/logs/mt_bench_answer/{{model}}/{{exp}}/seed{{seed}}.log",
    benchmark:
        f"{RUNS}/benchmarks/mt_bench_answer/{{model}}/{{exp}}/seed{{seed}}.tsv"
    threads: EVAL_THREADS
    resources:
        gpu=res("mt_bench_answer", "gpu", GPU_DEFAULT),
        mem_mb=res("mt_bench_answer", "mem_mb", 16000),
        runtime=res("mt_bench_answer", "runtime", 240),
    params:
        questions=MT.get("questions"),
        tokens=MT.get("max_new_tokens", 1024),
        limit=f"--limit {MT['limit']}" if MT.get("limit") else "",
        batch=MT.get("batch_size", 8),
        engine=MT.get("engine", "hf"),
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} {LISA_BENCH} mt-bench answer --run {input} --questions {params.questions} "
        "--max-new-tokens {params.tokens} {params.limit} --seed {wildcards.seed} --device {params.device} "
        "--batch-size {params.batch} --engine {params.engine} "
        "--model-id {wildcards.model}/{wildcards.exp}/seed{wildcards.seed} --no-progress "
        "--output-dir $(dirname {output}) > {log} 2>&1"


rule mt_bench_judge:
    input:
        f"{RUNS}/mt_bench/{{model}}/{{exp}}/seed{{seed}}/answers.jsonl",
    output:
        f"{RUNS}/mt_bench/{{model}}/{{exp}}/seed{{seed}}/judge/mt_bench.json",
    log:
        f"{RUNS}/logs/mt_bench_judge/{{model}}/{{exp}}/seed{{seed}}.log",
    benchmark:
        f"{RUNS}/benchmarks/mt_bench_judge/{{model}}/{{exp}}/seed{{seed}}.tsv"
    threads: EVAL_THREADS
    resources:
        gpu=res("mt_bench_judge", "gpu", 0),
        mem_mb=res("mt_bench_judge", "mem_mb", 8000),
        runtime=res("mt_bench_judge", "runtime", 240),
    params:
        questions=MT.get("questions"),
        judge=MT.get("judge"),
        url=f"--judge-base-url {MT['judge_base_url']}" if MT.get("judge_base_url") else "",
        expected="--expected-rating" if MT.get("expected_rating") else "",
        parallel=MT.get("parallel", 4),
        device=config["device"],
        cache=f"{RUNS}/mt_bench/judgments_cache.jsonl",
    shell:
        "OMP_NUM_THREADS={threads} {LISA_BENCH} mt-bench judge --answers {input} --questions {params.questions} "
        "--judge {params.judge} {params.url} {params.expected} --parallel {params.parallel} --device {params.device} "
        "--cache {params.cache} --no-progress --output-dir $(dirname {output}) > {log} 2>&1"
