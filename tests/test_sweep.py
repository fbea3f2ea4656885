"""The learning-rate sweep stage: a tiny study with a grid and two seeds, and the sweep's config errors."""

import json

import pandas as pd
import pytest

from tests.pipeline_support import ROOT, TINY, snakemake

SWEEP = """name: tinysweep
device: cpu
models: [tiny-random-llama]
dataset: synthetic-instruct
seeds: [0, 1]
training: {max_steps: 3, max_length: 96, train_size: 64, eval_size: 16, eval_every: 2, curve_size: 8}
experiments: [full, lisa-e-h-2l]
launcher: {type: single}
stages: [train]
sweep: {steps: 2, seeds: [0], lr: {lisa-e-h-2l: [1.0e-4, 1.0e-2]}, rate_from: {full: lisa-e-h-2l}}
comparisons: {baselines: [full], matched: full, bootstrap: 200}
lm_eval: {tasks: [synthetic_mc], limit: 12}
figures: {score: synthetic_mc/acc}
"""


@pytest.mark.slow
@pytest.mark.pipeline
def test_sweep_seeds_and_intervals(workdir):
    """A study with a learning-rate sweep and two seeds, without MT-Bench: the final runs use the chosen rate,
    every table has its 95% intervals over seeds, and the comparisons pair the same questions; with eval_every,
    its learning curves (on curve_size held-out conversations), and the score figure on the study's score."""
    (workdir / "config" / "tinysweep.yaml").write_text(SWEEP)
    proc = snakemake(workdir, "--cores", "2", "--configfile", "config/tinysweep.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs, results = workdir / "runs" / "tinysweep", workdir / "runs" / "tinysweep" / "results"
    grid = pd.read_csv(results / "sweep" / "grid.csv")
    assert set(grid["lr"]) == {1e-4, 1e-2} and grid["chosen"].sum() == 1
    assert (results / "sweep" / "lr_sweep.png").exists() and not (runs / "mt_bench").exists()
    best = float(grid.loc[grid["chosen"], "lr"].iloc[0])
    for exp in ("lisa-e-h-2l", "full"):  # full takes the rate lisa-e-h-2l's grid chose (sweep.rate_from)
        for seed in (0, 1):
            config = json.loads((runs / "train" / "tiny-random-llama" / exp / f"seed{seed}" /
                                 "metrics.json").read_text())["provenance"]["config"]
            assert config["lr"] == best and config["max_steps"] == 3
    training = pd.read_csv(results / "tables" / "training.csv")
    assert (training["seeds"] == 2).all() and training["loss_last_ci95"].notna().all()
    lm_eval = pd.read_csv(results / "tables" / "lm_eval.csv")
    assert any(c.endswith("ci95") for c in lm_eval.columns)
    comparisons = pd.read_csv(results / "tables" / "comparisons.csv")
    assert set(comparisons["experiment"]) == {"lisa-e-h-2l"} and set(comparisons["baseline"]) == {"full"}
    assert (comparisons["questions"] == 12).all() and (comparisons["ci_low"] <= comparisons["ci_high"]).all()
    matched = pd.read_csv(results / "tables" / "matched.csv")  # LISA against the nearest (the only) full run
    assert set(matched["matched_by"]) == {"optimizer_state", "peak_memory"} and set(matched["matched"]) == {"full"}
    assert {"eval_loss", "forgetting", "synthetic_mc/acc"} <= set(matched["metric"])
    assert (matched["seeds"] == 2).all() and (matched["ci_low"] <= matched["ci_high"]).all()
    assert (results / "figures" / "score_vs_memory.png").exists()
    curves = pd.read_csv(results / "tables" / "curves.csv")
    assert list(curves.filter(like="step ").columns) == ["step 2", "step 3"] and (curves["seeds"] == 2).all()
    points = pd.read_csv(results / "tables" / "curve_points.csv")
    assert (points["eval_examples"] <= 8).all()  # the examples of the first 8 held-out conversations ...
    metrics = json.loads((runs / "train" / "tiny-random-llama" / "full" / "seed0" / "metrics.json").read_text())
    assert metrics["curve_examples"] <= 8 < metrics["validation_examples"]  # ... the final score on all 16
    assert (results / "figures" / "learning_curves.png").exists()


@pytest.mark.parametrize("edit, needle", [
    ("sweep: {steps: 2, lr: {lora-r128: [1.0e-4]}}", "config sweep.lr: unknown experiment 'lora-r128'"),
    ("sweep: {steps: 2, lr: {lisa-e-h-2l: []}}", "config sweep.lr[lisa-e-h-2l]: an empty grid"),
    ("sweep: {steps: 2, lr: {lisa-e-h-2l: [0.001, -1]}}", "learning rate -1 must be a number > 0"),
    ("sweep: {steps: 2, lr: {lisa-e-h-2l: [0.001]}}\nexperiment_overrides: {lisa-e-h-2l: {lr: 0.1}}",
     "also sets lr in experiment_overrides"),
    ("experiment_overrides: {lisa-e-h-2l: {method_options: {always_on: tail}}}", "unknown lisa always_on unit 'tail'"),
    ("sweep: {lr: {lisa-e-h-2l: [0.001]}, rate_from: {base: full}}",
     "config sweep.rate_from[base]: unknown swept experiment 'full'; valid choices: lisa-e-h-2l"),
    ("sweep: {lr: {lisa-e-h-2l: [0.001]}, rate_from: {lora-r16: lisa-e-h-2l}}",
     "config sweep.rate_from: unknown experiment 'lora-r16'"),
    ("sweep: {lr: {lisa-e-h-2l: [0.001]}, rate_from: {lisa-e-h-2l: lisa-e-h-2l}}", "has a grid of its own"),
    ("comparisons: {matched: lora}",
     "config comparisons.matched: unknown method family 'lora'; valid choices: base, lisa"),
    ("comparisons: {matched: lisa}\nexperiment_overrides: {lisa-e-h-2l: {method_options: {always_on: embedding}}}",
     "unknown method family 'lisa'; valid choices: base, lisa (always_on=embedding)"),
])
def test_sweep_config_errors(edit, needle, monkeypatch, tmp_path):
    import yaml

    from lisa_bench.errors import BadInput
    from lisa_bench.study import check_study

    monkeypatch.chdir(ROOT)
    config = yaml.safe_load(TINY)
    config.update(yaml.safe_load(edit))
    with pytest.raises(BadInput) as err:
        check_study(config)
    assert needle in str(err.value)


def test_sweep_needs_a_validation_split(monkeypatch, tmp_path):
    import yaml

    from lisa_bench.errors import BadInput
    from lisa_bench.study import check_study

    monkeypatch.chdir(ROOT)
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"instruction": "hi", "output": "yo"}) + "\n")
    config = yaml.safe_load(TINY)
    config.update(dataset=str(data), sweep={"steps": 2, "lr": {"lisa-e-h-2l": [1e-3]}})
    with pytest.raises(BadInput, match="has no held-out validation split"):
        check_study(config)
