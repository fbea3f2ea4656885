"""The Snakemake pipeline: a real run of a tiny paper-shaped study (a hub-id model and a local path) with a
baseline added from outside the package, and config errors. Dry runs of every study: test_studies.py (the
default study's stages: test_reproduce.py, in a fresh clone); the sweep: test_sweep.py."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline_support import ROOT, TINY, files as _files, hub_cache, save_tiny, snakemake as _snakemake


BASELINE = ROOT / "examples" / "adding-a-baseline"


HUB_ID = "tiny-org/tiny-llama"


@pytest.mark.slow
@pytest.mark.pipeline
def test_tiny_pipeline_end_to_end(workdir, tmp_path):
    """A study shaped like the paper's configs through `lisa-bench reproduce`: its models named as a hub id
    (``org/name``, served offline from a hub cache the way a user's HF_HOME holds it) and as a local directory path
    with a space in it, through every stage (training, lm-eval, MT-Bench answers and judging, weight norms, memory,
    tables, figures, comparisons); with a baseline added the way the README shows: one method file and one
    experiment file, no other file touched. Then published, redrawn from the published records, rerun (nothing
    to do, equal to its reference) and made into Snakemake's HTML report."""
    hf_home = tmp_path / "hf-home"
    hub_cache(hf_home, HUB_ID)
    local = save_tiny(tmp_path / "checkpoints" / "my model", seed=1)  # a space in the path, as users have
    before = _files(workdir)
    (workdir / "plugins").mkdir()
    shutil.copy(BASELINE / "sgd_full.py", workdir / "plugins" / "sgd_full.py")
    shutil.copy(BASELINE / "sgd-full.yaml", workdir / "experiments" / "sgd-full.yaml")
    study = TINY.replace("experiments: [base, lisa-e-h-2l]", "experiments: [lisa-e-h-2l, sgd-full]")
    # the memory line first: it names the models too
    study = study.replace("memory: {models: [tiny-random-llama], methods: [lisa-e-h-2l], seq_len: 64, steps: 1}",
                          f"memory: {{models: [{HUB_ID}], methods: [sgd-full], seq_len: 512, steps: 2}}")
    study = study.replace("models: [tiny-random-llama]", f"models: [{HUB_ID}, {json.dumps(str(local))}]")
    study = study.replace('judge: "hf:tiny-random-llama"', f'judge: "hf:{HUB_ID}"')
    assert "methods: [sgd-full]" in study and "tiny-random-llama" not in study
    (workdir / "config" / "plugin-study.yaml").write_text(study)
    assert _files(workdir) - before == {"plugins/sgd_full.py", "experiments/sgd-full.yaml", "config/plugin-study.yaml"}
    # and a reference of "the paper's" numbers for it (docs/paper.md): one filled cell, one blank
    (workdir / "paper" / "tiny.yaml").write_text(
        "settings: {Table 1: {memory.seq_len: 512, memory.batch_size: 8}}\ncells:\n"
        f"  - {{table: Table 1, model: {HUB_ID}, experiment: sgd-full, quantity: peak_memory_GiB, value: 0.01, source: t}}\n"
        f"  - {{table: Table 3, model: {HUB_ID}, experiment: sgd-full, quantity: mt_bench, value: null, blank: b}}\n")
    with open(workdir / "config" / "plugin-study.yaml", "a") as f:
        f.write("paper: paper/tiny.yaml\ncomparisons: {baselines: [sgd-full]}\n")  # the default, full, is not run
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "lisa_bench.cli", "reproduce", "--directory", str(workdir),
                           "--configfile", "config/plugin-study.yaml", "--cores", "2"], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert not (workdir / "results").exists()  # the pipeline writes under runs/; results/ holds references
    runs = workdir / "runs" / "tiny"
    results = runs / "results"
    from lisa_bench.runs import model_dir_name

    local_dir = model_dir_name(str(local))  # each model's runs under a directory named for it
    assert local_dir.startswith("my-model-") and "/" not in local_dir
    assert {p.name for p in (runs / "train").iterdir()} == {"tiny-org--tiny-llama", local_dir}
    assert [p.name for p in (runs / "models").iterdir()] == ["tiny-org--tiny-llama.fetched"]  # a directory: no fetch
    for table in ("training", "lm_eval", "mt_bench"):
        for suffix in (".csv", ".md", ".tex"):
            assert (results / "tables" / f"{table}{suffix}").exists(), table + suffix
        assert "sgd-full" in (results / "tables" / f"{table}.md").read_text()
        assert "sgd-full" in proc.stdout  # reproduce prints the tables
        # every run in the tables, under the model's own name
        assert set(pd.read_csv(results / "tables" / f"{table}.csv")["model"]) == {HUB_ID, str(local)}, table
    for fig in ("loss_curves", "memory_over_steps", "mt_bench_categories", "score_vs_memory", "lisa_layers"):
        assert (results / "figures" / f"{fig}.png").exists() and (results / "figures" / f"{fig}.pdf").exists(), fig
    for fig in ("norms/weight_norms", "memory/memory_breakdown", "memory/memory_trace", "memory/speed"):
        assert (results / f"{fig}.png").exists() and (results / f"{fig}.pdf").exists(), fig
    page = (results / "index.html").read_text()  # the page of every table and figure, made last
    assert all(f'src="{p.relative_to(results).as_posix()}"' in page for p in results.rglob("*.png"))
    assert '<h2 id="paper">Paper</h2>' in page and '<h2 id="memory">Memory</h2>' in page
    # train, eval, MT-Bench x 2 experiments x 2 models
    assert len(json.loads((results / "provenance.json").read_text())["runs"]) == 12
    skew = pd.read_csv(results / "norms" / "skew.csv")
    assert set(skew["method"]) == {"lisa", "sgd-full"}
    training = pd.read_csv(results / "tables" / "training.csv")
    assert set(zip(training["model"], training["experiment"])) == {
        (m, e) for m in (HUB_ID, str(local)) for e in ("lisa-e-h-2l", "sgd-full")}
    assert training.groupby("model")["loss_last"].mean().nunique() == 2  # two models, different weights
    assert training["forgetting"].notna().all()
    # the baseline's own state formula: one momentum buffer per parameter, measured from its optimizer
    from lisa_bench.models import load_model

    n_params = sum(p.numel() for p in load_model("tiny-random-llama").model.parameters())  # the same architecture
    sgd_state = training.set_index(["model", "experiment"]).loc[(HUB_ID, "sgd-full"), "optimizer_state_MiB"]
    assert sgd_state * 2**20 == pytest.approx(4 * n_params, rel=1e-9)
    comparisons = pd.read_csv(results / "tables" / "comparisons.csv")
    assert set(comparisons["model"]) == {HUB_ID, str(local)}
    memory = pd.read_csv(results / "memory" / "memory.csv").set_index("experiment")
    assert set(memory["model"]) == {HUB_ID} and (memory["status"] == "ok").all()
    sgd = memory.loc["sgd-full"]
    assert sgd["method"] == "sgd-full"
    assert sgd["optimizer_bytes"] == sgd["predicted_optimizer_bytes"] == 4 * n_params
    assert abs(sgd["peak_bytes"] / sgd["predicted_peak_bytes"] - 1) < 0.05
    assert (runs / "benchmarks" / "train" / "tiny-org--tiny-llama" / "lisa-e-h-2l" / "seed0.tsv").exists()
    paper = pd.read_csv(results / "paper" / "paper.csv").set_index("table")
    assert paper.loc["Table 1", "ours"] == pytest.approx(memory.loc["sgd-full", "peak_bytes"] / 2**30)
    assert paper.loc["Table 1", "difference"] == pytest.approx(paper.loc["Table 1", "ours"] - 0.01)
    assert paper.loc["Table 3", "paper_source"] == "not verified: b" and pd.isna(paper.loc["Table 3", "paper"])
    settings = pd.read_csv(results / "paper" / "paper_settings.csv").set_index("setting")["differs"]
    assert settings.to_dict() == {"memory.seq_len": False, "memory.batch_size": True}
    assert "The paper's numbers beside ours" in proc.stdout  # reproduce prints it
    identity = json.loads((runs / "eval" / "tiny-org--tiny-llama" / "sgd-full" / "seed0" / "run.json").read_text())
    assert identity == {**identity, "model": HUB_ID, "experiment": "sgd-full", "seed": 0}
    # published as the study's reference, a rerun (nothing left to do) compares equal to it
    cli = [sys.executable, "-m", "lisa_bench.cli"]
    assert subprocess.run(cli + ["publish", "--directory", str(workdir), "--configfile", "config/plugin-study.yaml"],
                          env=env).returncode == 0
    assert (workdir / "results" / "tiny" / "tables" / "training.csv").exists()
    # each run's records go with the reference (no weights): the report redraws the tables from them alone
    records = workdir / "results" / "tiny" / "runs"
    assert not list(records.rglob("*.safetensors")) and not list(records.rglob("checkpoint"))
    redraw = subprocess.run(cli + ["report", "--runs", str(records), "--output-dir", str(workdir / "redrawn"),
                                   "--name", "tiny", "--baselines=", "--quiet"], env=env, capture_output=True, text=True)
    assert redraw.returncode == 0, redraw.stderr[-2000:]
    for table in ("training", "lm_eval", "mt_bench"):
        assert pd.read_csv(workdir / "redrawn" / "tables" / f"{table}.csv").equals(
            pd.read_csv(results / "tables" / f"{table}.csv")), table
    rerun = subprocess.run(cli + ["reproduce", "--directory", str(workdir), "--configfile", "config/plugin-study.yaml",
                                  "--strict"], capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert "Nothing to be done" in rerun.stdout + rerun.stderr  # incremental: the finished study is not redone
    counts = [ln for ln in rerun.stdout.splitlines() if "headline figures within their tolerance" in ln][0]
    n = int(counts.split(" of ")[1].split()[0])
    assert n > 10 and f"{n} of {n} headline" in counts
    assert (results / "comparison.md").exists()
    report = _snakemake(workdir, "--cores", "1", "--configfile", "config/plugin-study.yaml", "--report", "report.html",
                        env=env, timeout=600)
    assert report.returncode == 0, report.stderr[-2000:]
    assert (workdir / "report.html").stat().st_size > 10_000
    # a long study's sittings: the finished runs' records published alone, then a fresh tree (no weights, no
    # Snakemake metadata) restored from them has no training or evaluation left to do
    assert subprocess.run(cli + ["publish", "--directory", str(workdir), "--configfile", "config/plugin-study.yaml",
                                 "--records-only"], env=env).returncode == 0
    assert list((records / "benchmarks" / "train").rglob("*.tsv"))  # each job's time goes with them
    shutil.rmtree(runs)
    shutil.rmtree(workdir / ".snakemake")
    from lisa_bench.reproduce import restore_records

    assert restore_records(records, runs) == 4
    plan = _snakemake(workdir, "-n", "--cores", "1", "--configfile", "config/plugin-study.yaml", env=env)
    assert plan.returncode == 0, plan.stderr[-2000:]
    jobs = plan.stdout.split("Job stats:")[1].split("total")[0]
    for rule in ("train", "lm_eval", "mt_bench_answer", "mt_bench_judge", "fetch_model"):
        assert f"\n{rule} " not in jobs, jobs  # done: restored
    assert "tables_and_figures" in jobs  # the tables are redrawn from the restored runs


def test_the_rules_need_no_lisa_bench_on_path(workdir):
    """`.venv/bin/snakemake` (or a plain `snakemake` run by the suite's interpreter) from a shell where .venv is not
    activated: every rule runs the suite with the interpreter Snakemake runs under, never a `lisa-bench` or
    `torchrun` looked up on PATH (it stopped at the first job with `lisa-bench: command not found`)."""
    import shlex

    fake = workdir / "elsewhere"  # on PATH instead of .venv/bin: a lisa-bench and torchrun that are not the suite's
    fake.mkdir()
    for tool in ("lisa-bench", "torchrun"):
        (fake / tool).write_text("#!/bin/sh\necho \"$0 from PATH was called\" >&2\nexit 97\n")
        (fake / tool).chmod(0o755)
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join([str(fake)] + [p for p in os.environ["PATH"].split(os.pathsep) if p.rstrip("/") != venv_bin])
    env = {**os.environ, "PATH": path}
    suite = f"{shlex.quote(sys.executable)} -m lisa_bench.cli "

    def snakemake(study, *args):
        (workdir / "config" / "plain.yaml").write_text(study)
        return _snakemake(workdir, *args, "--cores", "1", "--configfile", "config/plain.yaml", env=env, timeout=600)

    torchrun = f"{shlex.quote(sys.executable)} -m torch.distributed.run --standalone --nproc_per_node 2 -m lisa_bench.cli "
    # every rule at once: the tiny study's (training, lm-eval, MT-Bench, norms, memory, tables) under DDP, with a sweep
    ddp_sweep = TINY.replace("launcher: {type: single}", "launcher: {type: ddp, num_processes: 2}") + \
        "sweep: {lr: {lisa-e-h-2l: [1.0e-3]}, steps: 2}\n"
    dry = snakemake(ddp_sweep, "-n", "-p")  # every job's shell command, printed
    assert dry.returncode == 0, dry.stderr[-2000:]
    commands = [ln.split("Shell command:", 1)[1].strip().removeprefix("OMP_NUM_THREADS=1 ")
                for ln in dry.stdout.splitlines() if "Shell command:" in ln]
    commands = [c for c in commands if c != "None"]
    assert len(commands) >= 12 and "lisa-bench " not in "\n".join(commands), dry.stdout[-3000:]
    assert all(c.startswith((suite, torchrun)) for c in commands), commands
    for rule in (" train ", " eval ", " mt-bench answer ", " analyze-norms ", " memory "):
        assert any(rule in c for c in commands), (rule, commands)
    assert all(c.startswith(torchrun) for c in commands if " train " in c), commands
    # and one job for real, with the fake tools first on PATH
    job = snakemake(TINY, "runs/tiny/models/tiny-random-llama.fetched")
    log = workdir / "runs" / "tiny" / "logs" / "fetch" / "tiny-random-llama.log"
    assert job.returncode == 0, job.stderr[-2000:] + (log.read_text() if log.exists() else "")
    assert (workdir / "runs" / "tiny" / "models" / "tiny-random-llama.fetched").read_text().startswith("tiny-random-llama")


BAD_STUDIES = [
    ("experiments: [base, lisa-e-h-99l]", "unknown experiment 'lisa-e-h-99l'"),
    ("launcher: {type: fsdp}", "sharding 'fsdp' on the CPU needs at least 2 processes"),
    ("launcher: {type: deepspeed}", "launcher.type: 'deepspeed' is refused: ZeRO-3 partitions"),
    ("launcher: {type: fsdp, num_processes: 2}\nexperiments: [base, galore-r128]",
     "config experiments[galore-r128]: method 'galore' cannot train on FSDP2-sharded parameters"),
    ("launcher: {type: ddp, num_processes: 3}\ntraining: {max_steps: 3, global_batch_size: 8}",
     "global_batch_size 8 does not divide into 3 processes x 1 accumulation steps"),
    # nodes x processes per node is the world the batch divides into
    ("launcher: {type: ddp, num_processes: 1, nodes: 3}\ntraining: {max_steps: 3, global_batch_size: 8}",
     "global_batch_size 8 does not divide into 3 processes x 1 accumulation steps"),
    ("launcher: {type: single, nodes: 2}", "config launcher.nodes: 2 with type 'single', which runs on one node; valid: "
     "nodes 1, or type ddp or fsdp over 2 nodes"),
    ("memory: {models: [tiny-random-llama], methods: [lora-r9]}", "config memory.methods: unknown experiment 'lora-r9'"),
    ("experiments: [base, lisa-e-h-2l]\nexperiment_overrides: {lisa-e-h-2l: {method_options: {gamma: 12}}}",
     "config experiments[lisa-e-h-2l] on tiny-random-llama: lisa gamma (--lisa-layers) 12 is larger than the 8 "
     "decoder blocks of this model; valid choices: 0..8"),
    ("training: {max_steps: 0}", "config experiments[base]: max_steps must be an integer >= 1, got 0"),
    ("training: {learning_rate: 0.1}", "unknown training setting 'learning_rate'; valid settings:"),
    ("gpu_memory: 10MiB", "the memory model predicts"),
    # the remedies offered are those that apply: no checkpointing to turn on where it is on; more GPUs under FSDP2
    ("training: {max_steps: 3, train_size: 64, eval_size: 16, gradient_checkpointing: true}\ngpu_memory: 10MiB",
     "gradient checkpointing on); lower batch_size or max_length\n"),
    ("gpu_memory: 2MiB", "predicts 31.2 MiB per GPU, more than gpu_memory 2.0 MiB (batch_size 4 x 256 tokens, fp32, "
                         "sdpa, gradient checkpointing off); weights, gradients and optimizer state alone take 2.5 "
                         "MiB, so no batch, length or checkpointing setting fits"),
    ("launcher: {type: fsdp, num_processes: 2}\ngpu_memory: 10MiB",
     "FSDP2 over 2 GPUs); lower batch_size or max_length, or turn on gradient_checkpointing, or shard over more GPUs "
     "than 2 (launcher.num_processes x launcher.nodes;"),
    ("gpu_memory: lots", "config gpu_memory 'lots' is not a size"),
    ("lm_eval: {tasks: [{name: synthetic_qa, shots: 2}]}", "unknown key 'shots'"),
    ("lm_eval: {tasks: [{name: [synthetic_qa]}]}", "task name ['synthetic_qa'] must be a non-empty string"),
    # every key that names an experiment, a dataset or a question set: refused before any job, with the choices
    ("comparisons: {baselines: [lora-r128]}",
     "config comparisons.baselines: unknown experiment 'lora-r128'; valid choices: base, lisa-e-h-2l (the study's"),
    ("dataset: alpaca-gpt5", "config dataset: unknown dataset 'alpaca-gpt5'; valid choices: synthetic-instruct"),
    ("dataset: data/missing.jsonl", "config dataset: file 'data/missing.jsonl' does not exist"),
    ("mt_bench: {questions: offlne, judge: 'hf:tiny-random-llama'}",
     "config mt_bench.questions: unknown question source 'offlne'; valid choices: offline, upstream, or a directory"),
    ("experiment_seeds: {lora-r128: [0]}",
     "config experiment_seeds: unknown experiment 'lora-r128'; valid choices: base, lisa-e-h-2l"),
    ("experiment_seeds: {lisa-e-h-2l: [1]}",
     "config experiment_seeds[lisa-e-h-2l]: unknown seed 1; valid choices: 0 (the study's seeds)"),
    ("experiment_seeds: {lisa-e-h-2l: []}", "config experiment_seeds[lisa-e-h-2l]: [] is not a non-empty list of seeds"),
    ("experiments: [base, lisa-e-h-2l]\nexperiment_overrides: {lisa-e-h-2l: {method_options: {interval: often}}}",
     "config experiments[lisa-e-h-2l]: method 'lisa': option 'interval' must be an integer, got 'often'"),
    # a grid: each key a setting or an option of the experiment's method, distinct values, no two equal runs
    ("grid: {lora-r128: {rank: [4]}}", "config grid: unknown experiment 'lora-r128'; valid choices: base, lisa-e-h-2l"),
    ("grid: {lisa-e-h-2l: {gama: [1, 2]}}", "config grid[lisa-e-h-2l]: unknown grid key 'gama'; valid choices: "),
    ("grid: {lisa-e-h-2l: {seed: [0, 1]}}", "config grid[lisa-e-h-2l]: unknown grid key 'seed'"),
    ("grid: {lisa-e-h-2l: {gamma: [2, 2]}}", "config grid[lisa-e-h-2l].gamma: value 2 is listed twice"),
    ("grid: {lora-r128: {target_modules: [[q_proj, v_proj]]}}\nexperiments: [base, lora-r128]",
     "config grid[lora-r128].target_modules: value ['q_proj', 'v_proj'] cannot name a run"),
    ("grid: {lisa-e-h-2l: {gamma: [2, two]}}",
     "config grid[lisa-e-h-2l] point lisa-e-h-2l+gamma=two: method 'lisa': option 'gamma' must be an integer"),
    ("grid: {lisa-e-h-2l: {precision: [fp32, fp64]}}",
     "config grid[lisa-e-h-2l] point lisa-e-h-2l+precision=fp64: unknown precision 'fp64'"),
    ("experiments: [base, lisa-e-h-2l, lisa-e-h-4l]\ngrid: {lisa-e-h-4l: {gamma: [2, 4]}}",
     "config grid[lisa-e-h-4l] point lisa-e-h-4l+gamma=2: makes the same run as 'lisa-e-h-2l'"),
    ("comparisons: {baselines: [lisa-e-h-2l]}\ngrid: {lisa-e-h-2l: {gamma: [1, 2]}}",
     "config comparisons.baselines: unknown experiment 'lisa-e-h-2l'; valid choices: base, lisa-e-h-2l+gamma=1"),
    ("models: ['org/name;rm']", "config models: model 'org/name;rm' cannot name a run directory"),
    ("memory: {models: [tiny-random-llama], methods: [full], method_models: {lora-r128: [tiny-random-llama]}}",
     "config memory.method_models: unknown experiment 'lora-r128'; valid choices: full"),
    ("memory: {models: [tiny-random-llama], methods: [full], method_models: {full: [smollm2-135m]}}",
     "config memory.method_models[full]: unknown model 'smollm2-135m'; valid choices: tiny-random-llama (memory.models)"),
    # a memory grid: known shape keys, each set once, distinct values the key accepts
    ("memory: {methods: [full], grid: {rank: [8, 16]}}",
     "config memory.grid: unknown memory grid key 'rank'; valid choices: dtype, seq_len, batch_size"),
    ("memory: {methods: [full], dtype: fp32, grid: {dtype: [fp32, bf16]}}",
     "config memory.grid.dtype: memory.dtype is also set ('fp32')"),
    ("memory: {methods: [full], grid: {dtype: [fp32, fp64]}}",
     "config memory.grid.dtype: unknown dtype 'fp64'; valid choices: fp32, bf16"),
    ("memory: {methods: [full], grid: {seq_len: [512, 512]}}", "config memory.grid.seq_len: value 512 is listed twice"),
    ("memory: {methods: [full], grid: {seq_len: [0]}}", "config memory.grid.seq_len: 0 is not a whole number >= 1"),
]


def test_a_memory_grid_measures_each_cell_at_each_point(workdir):
    """`memory.grid` measures every experiment at each point (a job per model x experiment x point, named as
    training grid points are), with the point's setting over memory:'s; a recipe that cannot serve a method
    (bf16-kahan and GaLore's own optimizer) is said once and becomes a skipped row, not a failed job."""
    study = TINY.replace("mt_bench:", "stages: [memory]\nmt_bench:") + (
        "memory: {models: [tiny-random-llama], methods: [full, galore-r128], seq_len: 64, steps: 1,\n"
        "         grid: {dtype: [fp32, bf16-kahan], batch_size: [1, 2]}}\n")
    (workdir / "config" / "mgrid.yaml").write_text(study)
    proc = _snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/mgrid.yaml", "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cells = sorted(set(re.findall(r"runs/tiny/memory/cells/tiny-random-llama/([^/\s]+)/memory.csv", proc.stdout)))
    assert cells == sorted(f"{e}+dtype={d}+batch_size={b}" for e in ("full", "galore-r128")
                           for d in ("fp32", "bf16-kahan") for b in (1, 2)), cells
    command = [ln for ln in proc.stdout.splitlines()
               if "--output-dir $(dirname runs/tiny/memory/cells/tiny-random-llama/full+dtype=bf16-kahan+batch_size=2/"
               in ln][0]
    assert "--dtype bf16-kahan" in command and "--batch-size 2" in command and "--seq-len 64" in command
    assert "--skip-refused" in command
    refused = [ln for ln in proc.stderr.splitlines() if "will be a skipped row" in ln]
    assert len(refused) == 2 and all("galore-r128+dtype=bf16-kahan" in ln for ln in refused), refused


def test_experiment_seeds_give_an_experiment_fewer_seeds(workdir):
    """`experiment_seeds` trains (and evaluates) only the seeds it lists for an experiment; the others train every
    seed of the study."""
    study = TINY.replace("seeds: [0]", "seeds: [0, 1]").replace("mt_bench:", "stages: [train]\nmt_bench:") + \
        "experiment_seeds: {base: [1]}\n"
    (workdir / "config" / "seeds.yaml").write_text(study)
    proc = _snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/seeds.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained = sorted(set(re.findall(r"runs/tiny/train/tiny-random-llama/([\w-]+/seed\d+)", proc.stdout)))
    assert trained == ["base/seed1", "lisa-e-h-2l/seed0", "lisa-e-h-2l/seed1"], trained
    evaluated = sorted(set(re.findall(r"runs/tiny/eval/tiny-random-llama/([\w-]+/seed\d+)", proc.stdout)))
    assert evaluated == trained, evaluated


def test_a_study_over_two_nodes_launches_one_agent_per_node(workdir):
    """`launcher: {nodes: 2}`: the train job starts lisa_bench.training.launch over 2 nodes (srun, one torchrun agent
    each, a c10d rendezvous: tests/training/test_faults.py runs it on loopback) and asks SLURM for 2 nodes, one task
    each, starting its own srun step (mpi)."""
    study = TINY.replace("launcher: {type: single}", "launcher: {type: fsdp, num_processes: 1, nodes: 2}")
    (workdir / "config" / "nodes.yaml").write_text(study.replace("mt_bench:", "stages: [train]\nmt_bench:"))
    proc = _snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/nodes.yaml", "--printshellcmds",
                      "runs/tiny/train/tiny-random-llama/lisa-e-h-2l/seed0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    command = [ln for ln in proc.stdout.splitlines() if " train --experiment " in ln][0]
    assert "-m lisa_bench.training.launch --nodes 2 --nproc-per-node 1 -- train " in command
    assert "--set sharding=fsdp" in command
    resources = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("resources:")]
    assert resources and "nodes=2" in resources[-1] and "tasks=2" in resources[-1] and "mpi=srun" in resources[-1]


def test_grid_points_train_with_their_settings(workdir):
    """A grid runs each point of its experiment's axes under its own name, with the point's settings and method
    options over the experiment file; experiment_seeds and the sweep may name a point or its experiment."""
    study = TINY.replace("seeds: [0]", "seeds: [0, 1]").replace("mt_bench:", "stages: [train]\nmt_bench:") + (
        "grid: {lisa-e-h-2l: {gamma: [0, 4], precision: [fp32, bf16-master]}}\n"
        "experiment_seeds: {lisa-e-h-2l+gamma=0+precision=fp32: [1], base: [0]}\n"
        "sweep: {lr: {lisa-e-h-2l+gamma=4+precision=fp32: [0.001, 0.01]}, steps: 2}\n")
    (workdir / "config" / "grid.yaml").write_text(study)
    proc = _snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/grid.yaml", "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained = sorted(set(re.findall(r"runs/tiny/train/tiny-random-llama/([^/\s]+/seed\d+)", proc.stdout)))
    assert trained == ["base/seed0", "lisa-e-h-2l+gamma=0+precision=bf16-master/seed0",
                       "lisa-e-h-2l+gamma=0+precision=bf16-master/seed1", "lisa-e-h-2l+gamma=0+precision=fp32/seed1",
                       "lisa-e-h-2l+gamma=4+precision=bf16-master/seed0",
                       "lisa-e-h-2l+gamma=4+precision=bf16-master/seed1",
                       "lisa-e-h-2l+gamma=4+precision=fp32/seed0", "lisa-e-h-2l+gamma=4+precision=fp32/seed1"], trained
    command = [ln for ln in proc.stdout.splitlines() if "--output-dir runs/tiny/train/tiny-random-llama/"
               "lisa-e-h-2l+gamma=0+precision=bf16-master/seed1" in ln][0]
    assert "--experiment experiments/lisa-e-h-2l.yaml" in command and "--option gamma=0" in command
    assert "--set precision=bf16-master" in command
    assert "--experiment-name lisa-e-h-2l+gamma=0+precision=bf16-master" in command
    swept = sorted(set(re.findall(r"runs/tiny/sweep/tiny-random-llama/([^/\s]+)/lr", proc.stdout)))
    assert swept == ["lisa-e-h-2l+gamma=4+precision=fp32"]


def _edited(edit):
    key = edit.split(":")[0]
    lines = [ln for ln in TINY.splitlines() if not ln.startswith(key + ":")]
    return "\n".join(lines) + "\n" + edit + "\n"


@pytest.mark.parametrize("edit, needle", BAD_STUDIES)
def test_config_errors(edit, needle, monkeypatch):
    """Every check a study gets before any job, in process."""
    import yaml

    from lisa_bench.errors import BadInput
    from lisa_bench.study import check_study

    monkeypatch.chdir(ROOT)
    with pytest.raises(BadInput) as err:
        check_study(yaml.safe_load(_edited(edit)))
    assert needle in str(err.value) + "\n"


@pytest.mark.parametrize("edit, needle", [BAD_STUDIES[0], ("launcher: {type: mpi}", "'mpi' is not one of")])
def test_config_errors_stop_the_pipeline_before_any_job(edit, needle, workdir):
    """The checks (and the schema) run inside Snakemake before it starts a job."""
    (workdir / "config" / "bad.yaml").write_text(_edited(edit))
    proc = _snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/bad.yaml")
    assert proc.returncode != 0
    assert needle in proc.stdout + proc.stderr
    assert not (workdir / "runs").exists()


def test_plain_snakemake_with_a_bad_study_says_one_line(workdir):
    """`snakemake --configfile` with a key missing: the key in one line, not the schema after it."""
    study = "\n".join(ln for ln in TINY.split("\n") if not ln.startswith("experiments:"))
    (workdir / "config" / "bad.yaml").write_text(study)
    proc = _snakemake(workdir, "-n", "--cores", "1", "--configfile", "config/bad.yaml")
    out = (proc.stdout + proc.stderr).strip().split("\n")
    assert proc.returncode != 0 and "lisa-bench: config (top level): 'experiments' is a required property" in out[1]
    assert len(out) <= 4, out
