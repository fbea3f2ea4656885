"""tables/matched: each experiment against the matched method family's experiment nearest in memory."""

import numpy as np
import pandas as pd
import pytest

from lisa_bench.reporting.tables import matched_table


def _train():
    rows = []
    # LoRA along its ranks (state 10, 40, 160 MiB), LISA at two sizes (35 and 150 MiB), two seeds each
    for exp, method, state, peak, loss in [("r8", "lora", 10, 500, 2.0), ("r32", "lora", 40, 520, 1.9),
                                           ("r128", "lora", 160, 600, 1.8), ("g1", "lisa", 35, 700, 1.7),
                                           ("g4", "lisa", 150, 760, 1.95)]:
        for seed in (0, 1):
            rows.append({"model": "m", "experiment": exp, "family": method, "seed": seed,
                         "optimizer_state_MiB": state, "peak_memory_MiB": peak, "eval_loss": loss + 0.01 * seed,
                         "forgetting": 0.1 * seed})
    return pd.DataFrame(rows)


def _samples(train):
    rng = np.random.default_rng(0)
    rows = [{"model": "m", "experiment": e, "seed": s, "task": "qa", "metric": "em", "doc_id": q,
             "value": float(rng.random() < (0.8 if e == "g1" else 0.4))}
            for e, s in train[["experiment", "seed"]].drop_duplicates().itertuples(index=False) for q in range(60)]
    return pd.DataFrame(rows)


def test_each_experiment_meets_the_nearest_of_the_matched_method_in_state_and_in_peak():
    train = _train()
    table = matched_table(train, _samples(train), "lora", resamples=500)
    pairs = table.drop_duplicates(["matched_by", "experiment"]).set_index(["matched_by", "experiment"])["matched"]
    assert pairs.to_dict() == {("optimizer_state", "g1"): "r32", ("optimizer_state", "g4"): "r128",
                               ("peak_memory", "g1"): "r128", ("peak_memory", "g4"): "r128"}
    assert set(table["experiment"]) == {"g1", "g4"}  # the matched method's own experiments are not rows
    loss = table[(table["matched_by"] == "optimizer_state") & (table["experiment"] == "g1")
                 & (table["metric"] == "eval_loss")].iloc[0]
    assert loss["difference"] == pytest.approx(-0.2) and loss["seeds"] == loss["seeds_matched"] == 2
    assert loss["ci_low"] <= -0.2 <= loss["ci_high"] and np.isnan(loss["questions"])
    em = table[(table["matched_by"] == "optimizer_state") & (table["experiment"] == "g1")
               & (table["metric"] == "qa/em")].iloc[0]
    assert em["questions"] == 60 and em["ci_low"] > 0  # 0.8 against 0.4 on 60 questions: a supported difference
    assert set(table["metric"]) == {"eval_loss", "forgetting", "qa/em"}


def test_no_runs_of_the_matched_method_is_an_empty_table():
    train = _train()
    assert matched_table(train[train["family"] == "lisa"], _samples(train), "lora").empty
