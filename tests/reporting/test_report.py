"""A study's report from its run tree: learning curves where eval_every was set, the quality-against-memory
figure's score, and a score the study does not have refused before anything is written."""

import json

import pandas as pd
import pytest

from lisa_bench.cli import main
from lisa_bench.reporting.report import collect

# two experiments x two seeds; held-out loss every 2 of 4 steps (the last on the curve's conversations)
CURVES = {"fast": [1.5, 1.1], "slow": [1.8, 1.3]}


def _tree(root, with_scores=True):
    for exp, (mid, end) in CURVES.items():
        for seed in (0, 1):
            run = root / "train" / "m" / exp / f"seed{seed}"
            run.mkdir(parents=True)
            rows = [{"step": s, "loss": 2.0 - 0.1 * s, "step_seconds": 0.5 if exp == "fast" else 1.0,
                     "memory_bytes": 2**20, "optimizer_state_bytes": 2**20} for s in range(4)]
            for row, value in ((rows[1], mid + 0.1 * seed), (rows[3], end + 0.1 * seed)):
                row.update(eval_loss=value, eval_examples=5)
            (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (run / "metrics.json").write_text(json.dumps({
                "method": "full", "trainable_params_peak": 10, "optimizer_state_bytes_peak": (3 if exp == "fast" else 1) * 2**20,
                "peak_memory_bytes": 100 * 2**20, "memory_kind": "rss", "tokens_per_second": 1.0,
                "train_loss_first": 2.0, "train_loss_last": 1.7, "eval_loss": end + 0.05 + 0.1 * seed,
                "decoder_blocks": 2, "provenance": {"device": {"device": "cpu", "cpu_count": 2}}}))
            if with_scores:
                ev = root / "eval" / "m" / exp / f"seed{seed}"
                ev.mkdir(parents=True)
                (ev / "scores.json").write_text(json.dumps([{"task": "synthetic_qa", "metric": "exact_match",
                                                             "value": 0.3 if exp == "fast" else 0.2,
                                                             "num_fewshot": 0, "apply_chat_template": True}]))


def test_learning_curves_table_and_figures(tmp_path, capsys):
    _tree(tmp_path / "runs")
    tables = collect(tmp_path / "runs", tmp_path / "out", "t")
    # neither default baseline (lora-r128, full) was run: the empty comparisons table is said, with the choices
    assert "comparisons table is empty; name baselines with --baselines" in capsys.readouterr().err
    assert tables["comparisons"].empty
    curves = pd.read_csv(tmp_path / "out" / "tables" / "curves.csv").set_index("experiment")
    assert curves.loc["fast", "step 2"] == pytest.approx(1.55) and curves.loc["slow", "step 4"] == pytest.approx(1.35)
    assert list(curves["seeds"]) == [2, 2]
    points = pd.read_csv(tmp_path / "out" / "tables" / "curve_points.csv")
    # training seconds to each point: the job's own step times summed (0.5 s a step for 'fast')
    fast = points[(points["experiment"] == "fast") & (points["seed"] == 0)]
    assert list(fast["step"]) == [2, 4] and list(fast["seconds"]) == [1.0, 2.0]
    for fig in ("learning_curves", "score_vs_memory"):
        assert (tmp_path / "out" / "figures" / f"{fig}.png").stat().st_size > 0
    assert "curves" in tables
    same = pd.read_csv(tmp_path / "out" / "tables" / "equal_seconds.csv").set_index("experiment")
    # the quickest whole run took 2 s (fast); slow (1 s a step) is at step 2 then, its first point: 1.85 mean
    assert (same["seconds"] == 2.0).all() and same.loc["slow", "eval_loss_at_seconds"] == pytest.approx(1.85)
    assert same.loc["fast", "eval_loss_at_seconds"] == pytest.approx(1.15) and same.loc["slow", "final_seconds"] == 4.0
    training = pd.read_csv(tmp_path / "out" / "tables" / "training.csv")
    assert training["blocks_never_trained"].isna().all()  # no run logged its active blocks


def test_no_curve_without_eval_every(tmp_path):
    _tree(tmp_path / "runs")
    for log in (tmp_path / "runs").rglob("train_log.jsonl"):  # only the final point, as without eval_every
        rows = [json.loads(x) for x in log.read_text().splitlines()]
        rows[1].pop("eval_loss")
        log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "curves" not in collect(tmp_path / "runs", tmp_path / "out", "t")
    assert not (tmp_path / "out" / "tables" / "curves.csv").exists()


def test_figure_score_named_by_the_study(tmp_path):
    _tree(tmp_path / "runs")
    collect(tmp_path / "runs", tmp_path / "out", "t", score="synthetic_qa/exact_match")
    assert (tmp_path / "out" / "figures" / "score_vs_memory.png").exists()


def test_figure_score_the_study_lacks_is_refused_before_writing(tmp_path, capsys):
    _tree(tmp_path / "runs", with_scores=False)
    code = main(["report", "--runs-dir", str(tmp_path / "runs"), "--output-dir", str(tmp_path / "out"),
                 "--score", "synthetic_qa/exact_match"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "unknown figure score 'synthetic_qa/exact_match'; valid choices: eval_loss" in err[0]
    assert not (tmp_path / "out").exists()


def test_blocks_never_trained_from_the_log(tmp_path):
    from lisa_bench.reporting.tables import blocks_never_trained

    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "active_layers": a}) + "\n" for s, a in enumerate([[0, 3], [0, 3], [5, 1]])))
    assert blocks_never_trained(log, 8) == 4  # 0, 1, 3, 5 trained of 8
    log.write_text(json.dumps({"step": 0, "loss": 1.0}) + "\n")
    assert blocks_never_trained(log, 8) is None  # a method that trains every block throughout logs none


def test_step_axes_tick_whole_steps_only():
    import matplotlib.pyplot as plt

    from lisa_bench.reporting.figures import integer_steps

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2, 3], [1.0, 0.9, 0.8, 0.7])
    integer_steps(ax)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)
