"""This run against the committed reference: each headline figure within its stated tolerance."""

import pandas as pd

from lisa_bench.reporting.compare import Tolerance, compare


def _write(root, training, memory, lm_eval):
    (root / "tables").mkdir(parents=True)
    (root / "memory").mkdir()
    pd.DataFrame(training).to_csv(root / "tables" / "training.csv", index=False)
    pd.DataFrame(memory).to_csv(root / "memory" / "memory.csv", index=False)
    pd.DataFrame(lm_eval).to_csv(root / "tables" / "lm_eval.csv", index=False)


def test_tolerances():
    assert Tolerance().within(270.0, 270.0) and not Tolerance().within(270.0, 270.0001)
    assert Tolerance(rel=0.05).within(100.0, 104.9) and not Tolerance(rel=0.05).within(100.0, 105.5)
    assert Tolerance(abs=0.05).within(0.2, 0.24) and not Tolerance(abs=0.05).within(0.2, 0.3)
    assert str(Tolerance()) == "exact" and str(Tolerance(rel=0.05)) == "5%"


def test_compare_flags_what_moved(tmp_path):
    base = dict(model=["m", "m"], experiment=["base", "lisa"])
    _write(tmp_path / "ref", {**base, "optimizer_state_MiB": [0.0, 270.0], "peak_memory_MiB": [1000, 2300],
                              "loss_last": [float("nan"), 2.43], "tokens_per_second": [float("nan"), 175.0]},
           {"model": ["m"], "experiment": ["lisa"], "seq_len": [512], "optimizer_bytes": [10], "peak_bytes": [100]},
           {**base, "synthetic_qa/exact_match": [0.0, 0.02]})
    _write(tmp_path / "run", {**base, "optimizer_state_MiB": [0.0, 270.5], "peak_memory_MiB": [1010, 2310],
                              "loss_last": [float("nan"), 2.43], "tokens_per_second": [float("nan"), 80.0]},
           {"model": ["m"], "experiment": ["lisa"], "seq_len": [512], "optimizer_bytes": [10], "peak_bytes": [103]},
           {**base, "synthetic_qa/exact_match": [0.0, 0.04]})
    table = compare(tmp_path / "ref", tmp_path / "run").set_index(["row", "figure"])
    assert not table.loc[("m / lisa", "optimizer_state_MiB"), "within"]  # exact: 0.5 MiB off
    assert table.loc[("m / lisa", "peak_memory_MiB"), "within"]
    assert not table.loc[("m / lisa", "tokens_per_second"), "within"]  # under half the speed
    assert ("m / base", "tokens_per_second") not in table.index  # missing on both sides: not a figure
    assert table.loc[("m / lisa / 512", "peak_bytes"), "within"]
    assert table.loc[("m / lisa", "synthetic_qa/exact_match"), "within"]
    assert len(table) == 10
