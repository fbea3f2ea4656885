"""The plan stage's tables (memory/plan_tables.py): what config/plan.yaml remakes results/plan/ with."""

import pandas as pd
import pytest

from lisa_bench.errors import BadInput
from lisa_bench.memory.plan_tables import check_spec, write_plan_tables

SPEC = {
    "will_it_fit": {"models": ["tiny-random-llama"], "experiments": ["full", "lisa-e-h-2l"], "gpus": ["1MB", "1GB"],
                    "batch_size": 1, "seq_len": 64,
                    "recipes": [{"name": "r", "precision": "bf16", "attn_implementation": "eager",
                                 "gradient_checkpointing": False}]},
    "verdict": {"models": [{"model": "tiny-random-llama", "launcher": "single", "processes": 1,
                            "method": "lisa-e-h-2l"}], "claim": {"baseline": "lora-r128", "reference": "full"},
                "precisions": ["fp32", "bf16"], "batch_size": 1, "seq_len": 64,
                "protocols": [{"name": "p", "attn_implementation": "eager", "gradient_checkpointing": False}]},
}


def test_the_plan_tables_and_their_verdict_lines(tmp_path):
    written = write_plan_tables(SPEC, tmp_path)
    assert sorted(p.name for p in written) == ["verdict.csv", "verdict.md", "will_it_fit.csv", "will_it_fit.md"]
    fit = pd.read_csv(tmp_path / "will_it_fit.csv")
    assert set(fit["gpu"]) == {"1MB", "1GB"} and set(fit["experiment"]) == {"full", "lisa-e-h-2l"}
    tiny = fit.set_index(["gpu", "experiment"])["largest_batch_per_gpu"]
    assert (tiny.loc["1MB"] == 0).all() and (tiny.loc["1GB"] > 0).all()  # nothing fits 1 MB; the tiny model fits 1 GB
    verdict = pd.read_csv(tmp_path / "verdict.csv")
    assert set(verdict["experiment"]) == {"full", "lora-r128", "lisa-e-h-2l"} and len(verdict) == 6
    text = (tmp_path / "verdict.md").read_text()
    assert text.count("the claim holds") + text.count("the claim does not hold") == 2  # one line per precision


@pytest.mark.parametrize("spec, needle", [
    ({"fits": {}}, "unknown plan table 'fits'; valid choices: will_it_fit, verdict"),
    ({"verdict": {**SPEC["verdict"], "precisions": ["fp8"]}}, "unknown precision 'fp8'"),
    ({"will_it_fit": {**SPEC["will_it_fit"], "gpus": ["lots"]}}, "lots"),
    ({}, "config plan: give one or more of will_it_fit, verdict"),
])
def test_bad_plan_spec_is_one_line(spec, needle):
    with pytest.raises(BadInput, match=needle):
        check_spec(spec)
