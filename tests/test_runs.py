"""Run directories and identities: a model name of any form makes one safe directory name, every stage records
its run's model, experiment and seed, and the report finds runs by them at any depth (issue 28 item 1, 6;
issue 32 item 1)."""

import json

import pytest

from lisa_bench.cli import main
from lisa_bench.errors import BadInput
from lisa_bench.runs import find_runs, model_dir_name, model_dirs


def test_model_dir_names(tmp_path):
    assert model_dir_name("smollm2-135m") == "smollm2-135m"
    assert model_dir_name("meta-llama/Llama-2-7b-hf") == "meta-llama--Llama-2-7b-hf"
    assert model_dir_name("random:tinyllama-1.1b") == "random--tinyllama-1.1b"
    a, b = tmp_path / "a" / "final", tmp_path / "b" / "final"
    a.mkdir(parents=True), b.mkdir(parents=True)
    # two local checkpoints with one last component stay apart; the name is stable for one path
    assert model_dir_name(str(a)).startswith("final-") and model_dir_name(str(a)) != model_dir_name(str(b))
    assert model_dir_name(str(a)) == model_dir_name(str(a) + "/")


@pytest.mark.parametrize("name", ["org/../../etc", "a b", "org/name/extra", "$(rm -rf x)", "org/name;ls", ""])
def test_unsafe_model_names_are_refused(name):
    with pytest.raises(BadInput, match="cannot name a run directory"):
        model_dir_name(name)


def test_models_sharing_a_directory_are_refused(tmp_path):
    (tmp_path / "org--name").mkdir()
    with pytest.raises(BadInput, match="would share the run directory"):
        model_dirs(["org/name", "org--name"])


def _train(out, seed=0, experiment="lisa-e-h-2l"):
    assert main(["train", "--experiment", experiment, "--model", "tiny-random-llama", "--max-steps", "2",
                 "--set", "train_size=16", "--set", "eval_size=4", "--seed", str(seed), "--output-dir", str(out),
                 "--no-progress"]) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three lisa-bench train runs at different depths (trained once for this file's tests)."""
    runs = tmp_path_factory.mktemp("trained") / "runs"
    _train(runs / "first", experiment="full")
    _train(runs / "nested" / "deeper" / "second")
    _train(runs / "nested" / "third", seed=1)
    return runs


def test_report_finds_train_runs_at_any_depth_and_says_what_it_wrote(trained, tmp_path, capsys):
    assert json.loads((trained / "first" / "run.json").read_text()) == {
        "model": "tiny-random-llama", "experiment": "full", "seed": 0}
    capsys.readouterr()
    assert main(["report", "--runs-dir", str(trained), "--output-dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "tables/training.csv" in printed and "figures/loss_curves.png" in printed
    assert "lisa-e-h-2l" in printed and "full" in printed  # the headline table
    import pandas as pd

    training = pd.read_csv(tmp_path / "out" / "tables" / "training.csv").set_index("experiment")
    assert training.loc["lisa-e-h-2l", "seeds"] == 2 and training.loc["full", "seeds"] == 1


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("empty", "no runs found"),
    ("baseline", "unknown baseline 'lora-r128'"),
    ("twice", "two runs of model"),
])
def test_report_never_silently_does_nothing(case, needle, trained, tmp_path, capsys):
    import shutil

    runs = tmp_path / "runs"
    runs.mkdir()
    args = ["report", "--runs-dir", str(runs if case != "missing" else tmp_path / "nope"),
            "--output-dir", str(tmp_path / "out")]
    if case in ("baseline", "twice"):
        shutil.copytree(trained / "first", runs / "a")
    if case == "twice":
        shutil.copytree(trained / "first", runs / "b")
    if case == "baseline":
        args += ["--baselines", "lora-r128"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_find_runs_skips_a_sweep_and_unfinished_runs(tmp_path):
    for rel in ("train/m/e/seed0", "sweep/m/e/lr0.1/seed0", "train/m/e/.seed1.partial"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "metrics.json").write_text(json.dumps({"model": "m", "method": "e", "seed": 0}))
    assert [r[:3] for r in find_runs([tmp_path], "metrics.json")] == [("m", "e", 0)]
