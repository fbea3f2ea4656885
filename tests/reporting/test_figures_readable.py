"""Every figure is readable at a page's width: its texts at least MIN_POINTS once scaled to COLUMN_INCHES, the
labels of the quality-against-memory figure placed at that size and not overlapping."""

import numpy as np
import pandas as pd
import pytest

from lisa_bench.reporting import figures


@pytest.fixture
def drawn(monkeypatch):
    """Each saved figure's width and its texts' sizes, and which texts ``save`` had to enlarge."""
    from matplotlib.text import Text

    seen = []
    original = figures._make_readable

    def record(fig):
        before = {id(t): t.get_fontsize() for t in fig.findobj(Text)}
        original(fig)
        fig.canvas.draw()
        texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
        renderer = fig.canvas.get_renderer()
        labels = [t for t in texts if hasattr(t, "xyann")]  # point labels (annotations)
        boxes = [[t.get_window_extent(renderer) for t in labels if t.axes is ax] for ax in fig.axes]
        seen.append({"width": fig.get_size_inches()[0], "labels": {id(t) for t in labels}, "boxes": boxes,
                     "sizes": [t.get_fontsize() for t in texts],
                     "enlarged": {id(t) for t in texts if t.get_fontsize() > before[id(t)] + 1e-9}})

    monkeypatch.setattr(figures, "_make_readable", record)
    return seen


def _runs():
    rng = np.random.default_rng(0)
    rows = []
    for exp, family, state, peak in [("full", "full", 1000, 3300), ("lora-r16", "lora", 40, 2500),
                                     ("lora-r32", "lora", 80, 2520), ("lora-r128", "lora", 300, 3200),
                                     ("lora-r16-eh", "lora (also_train=embedding+head)", 260, 2440),
                                     ("lisa-e-h", "lisa", 220, 2300), ("lisa-e-h-1l", "lisa", 245, 2310),
                                     ("lisa-e-h-2l", "lisa", 270, 2450)]:
        for seed in range(2):
            rows.append({"model": "m", "experiment": exp, "family": family, "seed": seed,
                         "peak_memory_MiB": peak + rng.normal() * 5, "optimizer_state_MiB": state,
                         "eval_loss": 0.8 + rng.normal() * 0.005})
    return pd.DataFrame(rows)


def test_every_text_is_readable_at_a_pages_width(drawn, tmp_path):
    runs = _runs()
    figures.score_vs_memory(runs, tmp_path / "svm", "eval_loss", "held-out loss")
    cats = pd.DataFrame({"writing": [4, 5], "math": [2, 3]}, index=["full", "lisa-e-h-2l"])
    figures.mt_bench_categories(cats, tmp_path / "mt", {"full": "full", "lisa-e-h-2l": "lisa"})
    points = pd.DataFrame([{"model": "m", "experiment": e, "seed": s, "step": t, "seconds": t * 2.0,
                            "eval_loss": 1 - t / 100, "eval_examples": 10}
                           for e in ("full", "lisa-e-h-2l") for s in (0, 1) for t in (10, 20, 30)])
    figures.learning_curves(points, tmp_path / "lc", "2-core CPU", {"full": "full", "lisa-e-h-2l": "lisa"})
    units = ["embedding"] + [f"layer.{i}" for i in range(30)] + ["head"]
    norms = pd.DataFrame([np.linspace(1, 2, len(units))] * 3, columns=units,
                         index=["full (seed 0)", "lisa-e-h-2l (seed 0)", "lora-r128 (seed 0)"])
    figures.weight_norms(norms, norms, tmp_path / "norms")
    memory = pd.DataFrame([{"model": m, "experiment": e, "status": "ok", "device": "cpu", "precision": "fp32",
                            "seq_len": 512, "weights_bytes": 1e9, "grads_bytes": 1e9, "optimizer_bytes": 2e9,
                            "activations_bytes": 1e9, "peak_bytes": 4.5e9, "predicted_peak_bytes": 4.6e9,
                            "speed_vs_full": 1.2, "speed_bound_vs_full": 1.5}
                           for m in ("a", "b", "c") for e in ("full", "lora-r128", "lisa-e-h-2l")])
    figures.memory_breakdown(memory, tmp_path / "mem")
    figures.speed_bars(memory, tmp_path / "speed")
    assert len(drawn) == 6
    for figure in drawn:
        scale = min(1.0, figures.COLUMN_INCHES / figure["width"])
        assert min(figure["sizes"]) * scale >= figures.MIN_POINTS - 1e-6, figure["width"]
    # the quality-against-memory labels were placed at their final size (none enlarged after) and do not overlap
    first = drawn[0]
    assert len(first["labels"]) == 16 and not first["enlarged"] & first["labels"]
    for boxes in first["boxes"]:
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_frontier_figure_joins_each_family_and_keeps_its_legend_clear(monkeypatch, tmp_path):
    """One line per method family (LoRA that also trains the embedding and head is not joined to LoRA's ranks),
    the legend outside both panels, overlapping no point label."""
    kept = {}

    def keep(fig, path, caption=None):
        fig.canvas.draw()
        kept["fig"] = fig
        return []

    monkeypatch.setattr(figures, "save", keep)
    figures.score_vs_memory(_runs(), tmp_path / "svm", "eval_loss", "held-out loss")
    fig = kept["fig"]
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["full", "lisa", "lora", "lora (also_train=embedding+head)"]
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        lines = {ln.get_label(): len(ln.get_xdata()) for ln in ax.get_lines()}
        assert lines == {"full": 1, "lisa": 3, "lora": 3, "lora (also_train=embedding+head)": 1}
        assert not box.overlaps(ax.get_window_extent(renderer))
        assert not any(box.overlaps(t.get_window_extent(renderer)) for t in ax.texts)


def test_memory_cells_are_named_by_what_varies_across_the_table():
    """A study's memory grid measures an experiment under several recipes or shapes: each bar is named by its
    experiment and what varies, never by the experiment alone (two bars called "full")."""
    table = pd.DataFrame([{"experiment": e, "precision": p, "seq_len": 1024, "batch_size": b,
                           "gradient_checkpointing": False}
                          for e in ("full", "lisa-e-h-2l") for p in ("bf16-master", "bf16-kahan") for b in (1, 4)])
    labels = figures.cell_labels(table).tolist()
    assert labels[:2] == ["full, bf16-master, batch 1", "full, bf16-master, batch 4"]
    assert len(set(labels)) == len(labels)
    assert figures.cell_labels(table[table["precision"] == "bf16-kahan"].head(1)).tolist() == ["full"]
