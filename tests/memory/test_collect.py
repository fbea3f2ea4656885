"""`lisa-bench memory-collect`: merge runs, drop duplicate cells, re-predict with the current model."""

import json

import pandas as pd

from lisa_bench.cli import main
from lisa_bench.memory.cells import CELL


def _run(out, cells_dir, methods, seq):
    assert main(["memory", "--models", "tiny-random-llama", "--methods", methods, "--experiments-dir", str(cells_dir),
                 "--seq-len", str(seq), "--steps", "1", "--device", "cpu", "--output-dir", str(out),
                 "--no-figures"]) == 0  # the merged table's figures are drawn by memory-collect


def test_memory_collect_merges_dedupes_and_repredicts(tmp_path, cells_dir):
    first, second = tmp_path / "first", tmp_path / "second"
    _run(first, cells_dir, "full,lisa-e-h-2l", 96)
    _run(second, cells_dir, "lisa-e-h,full", 64)
    # an older memory model's prediction is replaced by --repredict; measurements stay
    stale = pd.read_csv(second / "memory.csv")
    stale["predicted_peak_bytes"] = 1
    stale.to_csv(second / "memory.csv", index=False)
    # a trace from before traces named their cell gets it from its run's table
    old_trace = pd.read_csv(second / "memory_trace.csv").drop(columns=["device", "precision", "batch_size", "seq_len"])
    old_trace.to_csv(second / "memory_trace.csv", index=False)
    merged = tmp_path / "merged"
    assert main(["memory-collect", str(first), str(second), "--output-dir", str(merged), "--repredict"]) == 0
    table = pd.read_csv(merged / "memory.csv")
    # seq-len differs, so no cell is a duplicate; rows keep the order experiments first appear in
    assert len(table) == 4
    assert table[table["seq_len"] == 64]["experiment"].tolist() == ["full", "lisa-e-h"]
    assert (table.loc[table["status"] == "ok", "predicted_peak_bytes"] > 1000).all()
    assert (table.loc[table["seq_len"] == 64, "peak_bytes"] == stale.set_index("experiment").loc[
        ["full", "lisa-e-h"], "peak_bytes"].values).all()
    prov = json.loads((merged / "memory_provenance.json").read_text())
    assert set(prov["runs"]) == {str(first), str(second)} and "repredicted_by" in prov
    assert (merged / "memory_trace.png").exists() and (merged / "memory_table.md").exists()
    # merging the merged table with one of its inputs again drops the duplicates
    again = tmp_path / "again"
    assert main(["memory-collect", str(merged), str(second), "--output-dir", str(again), "--no-figures"]) == 0
    assert len(pd.read_csv(again / "memory.csv")) == len(table)
    assert not (again / "memory_breakdown.png").exists()
    trace = pd.read_csv(again / "memory_trace.csv")
    assert not trace.duplicated(CELL + ["step"]).any()
    # the same experiment at two lengths keeps both traces
    assert set(trace[trace["experiment"] == "full"]["seq_len"]) == {64, 96}


def test_tables_from_before_cells_were_experiments_still_merge(tmp_path, cells_dir):
    """Older tables named the cell in `method` and recorded no options: the name becomes the experiment
    and such rows keep their predictions under --repredict."""
    run = tmp_path / "run"
    _run(run, cells_dir, "full", 64)
    old = pd.read_csv(run / "memory.csv").drop(columns=["method", "method_options", "method_module",
                                                        "attn_implementation", "gradient_checkpointing"])
    old = old.rename(columns={"experiment": "method", "precision": "dtype"})
    old.to_csv(run / "memory.csv", index=False)
    out = tmp_path / "out"
    assert main(["memory-collect", str(run), "--output-dir", str(out), "--repredict", "--no-figures"]) == 0
    table = pd.read_csv(out / "memory.csv")
    assert table["experiment"].tolist() == ["full"] and table["method"].isna().all()
    assert table["predicted_peak_bytes"].iloc[0] == old["predicted_peak_bytes"].iloc[0]


def test_memory_collect_bad_input(tmp_path, capsys):
    assert main(["memory-collect", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no memory.csv in" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "memory.csv").write_text("a,b\n1,2\n")
    assert main(["memory-collect", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    assert "missing columns: model, method, status" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
