"""`lisa-bench reproduce` trains every experiment file, one process each, and tabulates them."""

import pandas as pd

from lisa_bench.cli import main


def test_reproduce_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["reproduce", "--model", "tiny-random-llama", "--max-steps", "3", "--output-dir", str(out),
                 "--experiments", "full,lisa-e-h-2l,lora-r128"])
    assert code == 0
    table = pd.read_csv(out / "summary.csv", index_col="experiment")
    assert list(table.index) == ["full", "lisa-e-h-2l", "lora-r128"]
    assert (table["steps"] == 3).all()
    # LISA trains fewer parameters than full fine-tuning and keeps less optimizer state
    assert table.loc["lisa-e-h-2l", "optimizer_state_MiB"] < table.loc["full", "optimizer_state_MiB"]
    assert "lisa-e-h-2l" in capsys.readouterr().out


def test_reproduce_rejects_unknown_experiment(tmp_path, capsys):
    assert main(["reproduce", "--experiments", "nope", "--output-dir", str(tmp_path / "o")]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
