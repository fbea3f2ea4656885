"""`lisa-bench redraw DIR` (lisa_bench/reporting/redraw.py): a results directory published before its runs' records
were kept has its figures drawn again from its tables and provenance.json, in the committed shape (results/cpu-budget
is the model of the fake one here): every figure whose inputs are in the tables, each with its caption; the rest left
as they were, and said so."""

import json
import shutil

import pandas as pd
import pytest

from lisa_bench.cli import main
from lisa_bench.reporting import figures
from tests.pipeline_support import ROOT

# experiment -> (method, its options, seeds, optimizer state MiB, peak MiB, held-out loss)
EXPERIMENTS = {
    "full": ("full", {}, 2, 1026.0, 4368.0, 0.61),
    "lora-r16": ("lora", {"rank": 16, "alpha": 32}, 2, 40.0, 3500.0, 0.66),
    "lora-r128": ("lora", {"rank": 128, "alpha": 256}, 2, 298.0, 3792.0, 0.58),
    "lora-r128-eh": ("lora", {"rank": 128, "alpha": 256, "also_train": ["embedding", "head", "norms"]}, 1, 514.0,
                     4165.0, 0.62),
    "lisa-e-h-2l": ("lisa", {"gamma": 2, "interval": 10}, 2, 270.0, 3327.0, 0.73),
}
UNITS = ["embedding", "layer.0", "layer.1", "other"]


def _results(root):
    """A results directory as the studies before per-run records published them: tables, norms, provenance.json,
    and an old figure that only the runs' train_log.jsonl could redraw."""
    (root / "tables").mkdir(parents=True)
    training, mt, points, runs, norms = [], [], [], {}, {}
    for exp, (method, options, seeds, state, peak, loss) in EXPERIMENTS.items():
        training.append({"model": "m", "experiment": exp, "method": method, "optimizer_state_MiB": state,
                         "peak_memory_MiB": peak, "eval_loss": loss, "eval_loss_std": 0.05 if seeds > 1 else None,
                         "eval_loss_ci95": 0.4 if seeds > 1 else None, "seeds": seeds})
        mt.append({"model": "m", "experiment": exp, "cat_coding": 4.0, "cat_writing": 5.0, "overall": 4.5,
                   "cat_coding_std": 0.1, "cat_coding_ci95": 0.9, "cat_writing_std": 0.1, "cat_writing_ci95": 0.9,
                   "overall_std": 0.1, "overall_ci95": 0.9, "seeds": seeds})
        for seed in range(seeds):
            runs[f"train/m/{exp}/seed{seed}"] = {
                "config": {"method": method, "method_options": options, "model": "m", "dataset": "synthetic-instruct",
                           "max_steps": 300, "seed": seed},
                "device": {"device": "cpu", "cpu_count": 2}}
            runs[f"eval/m/{exp}/seed{seed}"] = {"config": {}}
            points += [{"model": "m", "experiment": exp, "seed": seed, "step": step, "seconds": 2.0 * step,
                        "eval_loss": loss + 1 / step + 0.01 * seed, "eval_examples": 100} for step in (25, 50, 75)]
            norms[f"{method} ({exp}, seed {seed})"] = [700.0, 0.0 if method == "lora" else 370.0, 360.0, 44.0]
    norms["base (base, seed 0)"] = [0.0] * len(UNITS)  # trained nothing: no line to draw
    pd.DataFrame(training).to_csv(root / "tables" / "training.csv", index=False)
    pd.DataFrame(mt).to_csv(root / "tables" / "mt_bench.csv", index=False)
    (root / "tables" / "mt_bench.md").write_text("MT-Bench (tiny; judge hf:judge)\n\n| ... |\n")
    pd.DataFrame(points).to_csv(root / "tables" / "curve_points.csv", index=False)
    (root / "norms").mkdir()
    frame = pd.DataFrame(norms, index=UNITS).T
    frame.where(frame > 0).to_csv(root / "norms" / "mean_weight_norms.csv")
    (frame / 100).to_csv(root / "norms" / "update_norms.csv")
    pd.DataFrame({"run": list(norms), "model": "m"}).to_csv(root / "norms" / "skew.csv", index=False)
    (root / "provenance.json").write_text(json.dumps({"report": {"config": {"study": "tiny"}}, "runs": runs}))
    (root / "figures").mkdir()
    for suffix in (".png", ".pdf"):
        shutil.copy(ROOT / "results" / "default" / "figures" / f"loss_curves{suffix}", root / "figures")
    (root / "index.html").write_text("<html>an old page</html>")
    return root


@pytest.fixture
def drawn(monkeypatch):
    """Each figure redraw saves: its file name -> its legend texts, each panel's tick labels, lines and scatters."""
    seen = {}
    original = figures.save

    def record(fig, path, caption=None):
        legends = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        legends += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        seen[path.name] = {"legend": legends,
                           "ticks": [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes],
                           "lines": [[line.get_label() for line in ax.get_lines()] for ax in fig.axes],
                           "scatters": [len(ax.collections) for ax in fig.axes]}
        return original(fig, path, caption)

    monkeypatch.setattr(figures, "save", record)
    return seen


def test_redraw_draws_every_figure_its_tables_hold_with_captions(tmp_path, capsys, drawn):
    root = _results(tmp_path / "tiny")
    old = (root / "figures" / "loss_curves.png").read_bytes()
    assert main(["redraw", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    for stem in ("figures/score_vs_memory", "figures/mt_bench_categories", "figures/learning_curves",
                 "norms/weight_norms"):
        assert any(line.startswith(f"redraw: redrew {stem}.png") for line in out), (stem, out)
        for suffix in (".png", ".pdf", ".txt"):
            assert (root / f"{stem}{suffix}").is_file()
        caption = (root / f"{stem}.txt").read_text()
        assert "Study tiny: m on synthetic-instruct, 300 steps, seeds 0, 1; cpu, 2 CPU cores." in caption, caption
    # a figure the tables cannot redraw is left as it was, and the line says why
    assert (root / "figures" / "loss_curves.png").read_bytes() == old
    assert any(line.startswith("redraw: left figures/loss_curves.png as it was: it needs each run's train_log.jsonl")
               for line in out)
    # the page, where there is one, is written again with the new captions
    page = (root / "index.html").read_text()
    assert out[-1].startswith("page: ") and "Redrawn by lisa-bench redraw" in page

    # MT-Bench: the categories only; their ci95 (and std) columns are intervals, not categories
    mt = drawn["mt_bench_categories"]
    assert mt["ticks"][0] == ["coding", "writing"]
    assert sorted(mt["legend"]) == sorted(EXPERIMENTS)  # each experiment by its name, not "(m, full)"

    # quality against memory: one line per method family, LoRA with also_train a family of its own; the tables hold
    # each experiment's mean only, so no seed is drawn as a point, and the caption says so
    svm = drawn["score_vs_memory"]
    families = {"full", "lora", "lora (also_train=embedding+head+norms)", "lisa"}
    assert set(svm["lines"][0]) == families and set(svm["legend"]) == families
    assert svm["scatters"] == [0, 0]
    caption = (root / "figures" / "score_vs_memory.txt").read_text()
    assert "MT-Bench overall (hf:judge)" in caption and "seeds are not drawn as points" in caption
    assert "2 seeds, lora-r128-eh 1" in caption

    # the weight norms: one line per run that trained something (the base model trained nothing: said, not drawn)
    norms = drawn["weight_norms"]
    runs = sum(seeds for _, _, seeds, *_ in EXPERIMENTS.values())
    assert len(norms["lines"][0]) == len(norms["legend"]) == runs and "base (seed 0)" not in norms["legend"]
    assert "Not drawn: base (seed 0)" in (root / "norms" / "weight_norms.txt").read_text()


def test_nothing_to_redraw_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty" / "figures").mkdir(parents=True)
    assert main(["redraw", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to redraw" in err[0] and "tables/training.csv" in err[0]
    assert main(["redraw", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a directory" in err[0]
