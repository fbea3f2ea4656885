"""Tables are written as CSV (every value), Markdown and LaTeX (missing cells blank, empty columns dropped)."""

import math

import pandas as pd

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
