"""`lisa-bench reproduce` runs a study's pipeline (what `make reproduce` runs); the real run is exercised by
test_pipeline.py::test_tiny_pipeline_end_to_end. Here: its bad input."""

from pathlib import Path

import pytest

from lisa_bench.cli import main


def test_reproduce_needs_the_project_directory(tmp_path, capsys):
    assert main(["reproduce", "--directory", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no Snakefile in" in err and len(err.strip().splitlines()) == 1


def test_reproduce_rejects_unknown_study(tmp_path, capsys):
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "default.yaml").write_text("name: default\n")
    assert main(["reproduce", "--directory", str(tmp_path), "--configfile", "config/nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'config/nope.yaml'; valid choices: config/default.yaml" in err


@pytest.mark.parametrize("edit, needle", [
    ({"lm_eval": {"tasks": []}}, "config lm_eval.tasks: [] should be non-empty"),
    ({"gpu_memory": 0}, "config gpu_memory 0 must be positive"),
    ({"gpu_memory": 80}, "config gpu_memory 80 is 80 bytes, less than 1 MiB: give a unit, e.g. 80GiB"),
    ({"training": {"lr": "fast"}}, "config experiments[base]: lr must be a finite number, got 'fast'"),
    # a baseline not in the study: refused before any job (it once ran to the end with no comparison against it)
    ({"comparisons": {"baselines": ["lora-r64"]}}, "config comparisons.baselines: unknown experiment 'lora-r64'; "
                                                   "valid choices: base, full, lora-r128, lisa-e-h-2l"),
    ({"experiment_overrides": {"lisa-e-h-2l": {"method_options": {"interval": "5x"}}}},
     "config experiments[lisa-e-h-2l]: method 'lisa': option 'interval' must be an integer, got '5x'"),
    ({"experiment_overrides": {"lisa-e-h-2l": {"method_options": {"sampling": "round-robin"}}}},
     "config experiments[lisa-e-h-2l]: unknown lisa sampling 'round-robin'; valid choices: uniform, weighted, cover"),
    ({"training": {"max_steps": 10, "eval_every": 25}},
     "config experiments[base]: eval_every 25 is larger than the run (max_steps 10)"),
    # a figure asked for a score the study has no task for (the default study runs synthetic_qa and _mc)
    ({"figures": {"score": "mmlu/acc"}}, "config figures.score: unknown figure score 'mmlu/acc'; valid choices: "
                                         "eval_loss, mt_bench, synthetic_qa/<metric>, synthetic_mc/<metric>"),
    ({"figures": {"score": "synthetic_mc"}}, "config figures.score: unknown figure score 'synthetic_mc'"),
])
def test_reproduce_checks_study_settings_before_snakemake(edit, needle, tmp_path, capsys):
    _bad_study_is_one_line(tmp_path, capsys, edit, needle)


@pytest.mark.parametrize("launcher, needle", [
    ("{type: fsdp, num_processes: 1}", "config launcher: sharding 'fsdp' on the CPU needs at least 2 processes"),
    ("{type: deepspeed, num_processes: 2}", "config launcher.type: 'deepspeed' is refused: ZeRO-3 partitions"),
    ("{type: megatron}", "config launcher.type: 'megatron' is not one of ['single', 'ddp', 'fsdp'"),
    ("{type: ddp, num_processes: two}", "config launcher.num_processes: 'two' is not of type 'integer'"),
    ("{type: ddp, num_processes: 0}", "config launcher.num_processes: 0 is less than the minimum of 1"),
    ("{type: ddp, num_processes: 2, hosts: 2}", "('hosts' was unexpected); valid keys: nodes, num_processes, type"),
    ("{type: single, nodes: 2}", "config launcher.nodes: 2 with type 'single', which runs on one node"),
    ("{type: single, num_processes: 2}", "config launcher.num_processes: 2 with type 'single', which runs one"),
])
def test_reproduce_checks_the_study_before_snakemake(launcher, needle, tmp_path, capsys):
    import yaml

    _bad_study_is_one_line(tmp_path, capsys, {"launcher": yaml.safe_load(launcher)}, needle)


def _bad_study_is_one_line(tmp_path, capsys, edit, needle):
    """Bad input in a study file: one line and exit 2 from `lisa-bench reproduce`, not Snakemake's traceback or
    its multi-line schema dump, and nothing run or written."""
    import shutil

    import yaml

    root = Path(__file__).resolve().parents[1]
    for name in ("Snakefile", "config/schema.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, tmp_path / name)
    shutil.copytree(root / "experiments", tmp_path / "experiments")
    study = yaml.safe_load((root / "config" / "default.yaml").read_text())
    study.update(edit)
    (tmp_path / "config" / "bad.yaml").write_text(yaml.safe_dump(study))
    assert main(["reproduce", "--directory", str(tmp_path), "--configfile", "config/bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".snakemake").exists()


def test_fresh_clone_runs_the_main_job(tmp_path):
    """The committed reference (results/default/) is not the pipeline's target: on a fresh clone the
    default study trains, evaluates and measures for real."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    # what a clone would hold: the files git tracks (and new ones it does not ignore), as they are now
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for rel in listed.stdout.splitlines():
            if (root / rel).is_file():
                (clone / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, clone / rel)
    else:  # an exported tree without git
        shutil.copytree(root, clone, ignore=shutil.ignore_patterns(".venv", "runs", ".snakemake"))
    assert (clone / "results" / "default" / "tables" / "training.csv").exists()  # the reference is there
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2"], cwd=clone, capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nothing to be done" not in proc.stdout + proc.stderr
    for rule in ("fetch_model", "train", "lm_eval", "mt_bench_answer", "mt_bench_judge", "weight_norms",
                 "memory_table", "tables_and_figures"):  # every stage of the default study
        assert rule in proc.stdout, rule


def test_publish_needs_a_finished_run(tmp_path, capsys):
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "default.yaml").write_text("name: default\n")
    assert main(["publish", "--directory", str(tmp_path)]) == 2
    assert "has no finished run" in capsys.readouterr().err
    tables = tmp_path / "runs" / "default" / "results" / "tables"
    tables.mkdir(parents=True)
    (tables / "training.csv").write_text("model,experiment\n")
    (tmp_path / "results" / "default").mkdir(parents=True)
    (tmp_path / "results" / "default" / "stale.txt").write_text("old")
    (tmp_path / "results" / "default" / "README.md").write_text("what the reference shows")
    assert main(["publish", "--directory", str(tmp_path)]) == 0
    assert (tmp_path / "results" / "default" / "tables" / "training.csv").exists()
    assert not (tmp_path / "results" / "default" / "stale.txt").exists()
    # the notes written about a reference stay with it (the run's own files replace everything else)
    assert (tmp_path / "results" / "default" / "README.md").read_text() == "what the reference shows"
    # so do the run records earlier sittings published (`publish --records-only`), such as a sweep's job timings,
    # which a tree resumed from them (`reproduce --resume-from`) does not hold
    earlier = tmp_path / "results" / "default" / "runs" / "benchmarks" / "sweep" / "m" / "full" / "lr0.1" / "seed0.tsv"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("s\n12.5\n")
    assert main(["publish", "--directory", str(tmp_path)]) == 0
    assert earlier.read_text() == "s\n12.5\n"


def test_stage_times_sum_the_benchmark_files_per_stage(tmp_path):
    from lisa_bench.reproduce import stage_times, write_stage_times

    header = "s\th:m:s\tmax_rss\n"
    for rel, seconds in (("train/m/full/seed0.tsv", 30.0), ("train/m/lora/seed0.tsv", 20.0),
                         ("lm_eval/m/full/seed0.tsv", 5.5), ("memory_table.tsv", 12.0)):
        (tmp_path / "benchmarks" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "benchmarks" / rel).write_text(header + f"{seconds}\t0:00:{int(seconds):02d}\t100\n")
    table = stage_times(tmp_path)
    assert table.to_dict("records") == [
        {"stage": "train", "jobs": 2, "job_seconds": 50.0, "slowest_job_seconds": 30.0},
        {"stage": "memory_table", "jobs": 1, "job_seconds": 12.0, "slowest_job_seconds": 12.0},
        {"stage": "lm_eval", "jobs": 1, "job_seconds": 5.5, "slowest_job_seconds": 5.5}]
    write_stage_times(table, tmp_path / "out", wall=90.0)
    assert "1.5 min" in (tmp_path / "out" / "stage_times.md").read_text()
    assert stage_times(tmp_path / "nothing").empty


def test_snakemake_arguments_after_the_double_dash_come_before_the_config_file(monkeypatch, capsys):
    """Targets after `--` reach Snakemake as targets: after --configfile (which takes several files) Snakemake
    read them as config files and failed."""
    import subprocess

    import lisa_bench.reproduce as reproduce

    seen = []
    monkeypatch.setattr(reproduce.subprocess, "run",
                        lambda cmd, **kw: seen.append(cmd) or subprocess.CompletedProcess(cmd, 1))
    root = Path(__file__).resolve().parents[1]
    target = "runs/default/eval/smollm2-135m/full/seed0/scores.json"
    assert main(["reproduce", "--directory", str(root), "--", "-n", target]) == 1
    cmd = seen[0]
    assert cmd[cmd.index("snakemake") + 1:cmd.index("--cores")] == ["-n", target]
    assert cmd[-2:] == ["--configfile", str((root / "config" / "default.yaml").resolve())]


def test_a_sitting_that_ran_only_a_sweep_is_restored(tmp_path, capsys):
    """A long study's first sitting may publish only its sweep (grid runs and the choice): `--resume-from` puts
    them back, the choice after its grid runs and the model's fetch marker before both, so Snakemake reruns
    neither; records with neither train/ nor sweep/ are refused in one line."""
    import os

    from lisa_bench.errors import BadInput
    from lisa_bench.reproduce import restore_records

    records, runs = tmp_path / "records", tmp_path / "runs"
    point = records / "sweep" / "m" / "full" / "lr0.001" / "seed0"
    point.mkdir(parents=True)
    (point / "metrics.json").write_text("{}")
    (records / "sweep" / "m" / "full" / "best.yaml").write_text("lr: 0.001\n")
    assert restore_records(records, runs) == 0  # no training runs, but the sweep is back
    grid, best = runs / "sweep" / "m" / "full" / "lr0.001" / "seed0", runs / "sweep" / "m" / "full" / "best.yaml"
    marker = runs / "models" / "m.fetched"
    assert (grid / "metrics.json").exists() and best.read_text() == "lr: 0.001\n"
    assert os.path.getmtime(marker) < os.path.getmtime(grid) < os.path.getmtime(best)
    with pytest.raises(BadInput, match="no published runs there \\(a train/ or sweep/ directory"):
        restore_records(tmp_path / "empty", runs)


def test_a_choice_among_fewer_rates_than_the_study_sweeps_now_is_not_restored(tmp_path, capsys):
    """A grid grown after its sitting (a rate added at its edge): the published choice is left out, so the new point
    trains and the choice is made again among all; a choice whose grid is whole is restored."""
    from lisa_bench.reproduce import restore_records

    records, runs = tmp_path / "records", tmp_path / "runs"
    for exp, rates in (("full", ("0.0001", "0.001")), ("lora", ("0.001",))):
        for lr in rates:
            point = records / "sweep" / "m" / exp / f"lr{lr}" / "seed0"
            point.mkdir(parents=True)
            (point / "metrics.json").write_text("{}")
        (records / "sweep" / "m" / exp / "best.yaml").write_text(f"lr: {rates[-1]}\n")
    restore_records(records, runs, {"lr": {"full": [1e-4, 1e-3], "lora": [1e-3, 1e-2]}, "seeds": [0]})
    assert (runs / "sweep" / "m" / "full" / "best.yaml").exists()
    assert not (runs / "sweep" / "m" / "lora" / "best.yaml").exists()
    assert (runs / "sweep" / "m" / "lora" / "lr0.001" / "seed0" / "metrics.json").exists()
    assert "not restored: sweep/m/lora/best.yaml, chosen among fewer rates" in capsys.readouterr().out
