"""Tables are written as CSV (every value), Markdown and LaTeX (missing cells blank, empty columns dropped)."""

import math

import pandas as pd
import pytest

from lisa_bench.reporting.tables import write_table


def test_missing_cells_are_blank_and_empty_columns_dropped(tmp_path):
    df = pd.DataFrame({"method": ["base", "lisa"], "tokens_per_second": [math.nan, 123.456],
                       "loss_std": [math.nan, math.nan]}).set_index("method")
    write_table(df, tmp_path / "t", "caption")
    csv = pd.read_csv(tmp_path / "t.csv")
    assert list(csv.columns) == ["method", "tokens_per_second", "loss_std"]  # the CSV keeps everything
    md = (tmp_path / "t.md").read_text()
    tex = (tmp_path / "t.tex").read_text()
    assert md.startswith("caption\n") and "123.5" in md and "loss_std" not in md
    assert "nan" not in md.lower() and "nan" not in tex.lower()
    base_row = next(line for line in md.splitlines() if line.startswith("| base"))
    assert base_row.replace(" ", "") == "|base||"


def test_two_level_bootstrap_holds_the_run_to_run_spread():
    """Runs that disagree widen the interval beyond the questions' alone; with one run each, or with identical
    runs, the two-level interval is the bootstrap over questions (the difference itself is the plain mean)."""
    import numpy as np

    from lisa_bench.reporting.tables import paired_bootstrap

    rng = np.random.default_rng(1)
    base = rng.random((1, 200))
    noise = rng.normal(0, 0.05, 200)
    one_run = base + 0.1 + noise
    mean, lo, hi = paired_bootstrap(one_run, base, 4000)
    assert mean == pytest.approx(0.1 + noise.mean()) and lo < mean < hi
    # the same run twice: the same interval as one run (up to resampling noise)
    _, lo2, hi2 = paired_bootstrap(np.vstack([one_run, one_run]), base, 4000)
    assert hi2 - lo2 == pytest.approx(hi - lo, rel=0.1)
    # two runs 0.2 apart on every question: the interval spans the run-to-run spread
    spread = np.vstack([one_run - 0.1, one_run + 0.1])
    mean3, lo3, hi3 = paired_bootstrap(spread, base, 4000)
    assert mean3 == pytest.approx(mean) and hi3 - lo3 > 5 * (hi - lo) and lo3 < mean - 0.05 and hi3 > mean + 0.05


def test_comparisons_pair_each_question_and_count_runs():
    from lisa_bench.reporting.tables import comparisons_table

    rows = [{"task": "t", "metric": "m", "doc_id": q, "value": v, "model": "x", "experiment": e, "seed": s}
            for q in range(20) for e, s, v in (("a", 0, 1.0), ("a", 1, 0.0), ("b", 0, float(q % 2)))]
    rows.append({"task": "t", "metric": "m", "doc_id": 99, "value": 1.0, "model": "x", "experiment": "a", "seed": 0})
    table = comparisons_table(pd.DataFrame(rows), ["b"], 500).iloc[0]
    assert (table["experiment"], table["baseline"], table["questions"]) == ("a", "b", 20)  # doc 99: a alone
    assert (table["seeds"], table["seeds_baseline"]) == (2, 1) and table["difference"] == pytest.approx(0.0)
    assert table["ci_low"] <= -0.3 and table["ci_high"] >= 0.3  # the two runs of a disagree on every question
