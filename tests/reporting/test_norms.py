"""The skew ratio and its reading: a run that trains neither embedding nor head has no ratio, not 0."""

import math

import pandas as pd

from lisa_bench.reporting.norms import ends_trained, reading, skew_ratio


def _norms(embedding=None, head=None, blocks=(1.0, 2.0, 3.0)):
    values = {f"layer.{i}": v for i, v in enumerate(blocks)}
    if embedding is not None:
        values["embedding"] = embedding
    if head is not None:
        values["head"] = head
    return pd.Series(values)


def test_ratio_of_the_ends_over_the_median_block():
    assert skew_ratio(_norms(embedding=300.0, head=100.0)) == 200.0  # (300 + 100) / 2
    assert skew_ratio(_norms(embedding=300.0, head=100.0), max) == 150.0
    assert skew_ratio(_norms(head=40.0), max) == 20.0


def test_the_median_is_over_trained_blocks_only():
    # LISA sampled two of five blocks: the others have no trained norm (blank or 0), not a norm of 0 to take
    # the median of
    assert skew_ratio(_norms(embedding=30.0, blocks=(float("nan"), 2.0, 0.0, 4.0, float("nan"))), max) == 10.0
    assert math.isnan(skew_ratio(_norms(embedding=30.0, blocks=(0.0, float("nan")))))


def test_units_training_left_unchanged_have_no_trained_norm():
    from lisa_bench.reporting.norms import trained_only

    mean = pd.Series({"embedding": 700.0, "layer.0": 350.0, "layer.1": 360.0, "head": 40.0})
    update = pd.Series({"embedding": 0.0, "layer.0": 0.5, "layer.1": 0.0, "head": 0.1})
    kept = trained_only(mean, update)
    assert kept["layer.0"] == 350.0 and kept["head"] == 40.0
    assert math.isnan(kept["embedding"]) and math.isnan(kept["layer.1"])


def test_frozen_ends_have_no_ratio():
    frozen = _norms()
    assert not ends_trained(frozen)
    assert math.isnan(skew_ratio(frozen)) and math.isnan(skew_ratio(frozen, max))
    # the norm log writes a frozen unit's trained norm as 0 (LoRA's embedding and head)
    logged = _norms(embedding=0.0, head=0.0)
    assert not ends_trained(logged) and math.isnan(skew_ratio(logged, max))
    # a unit absent from one run but present in another of the same table is NaN, and still not trained
    assert not ends_trained(pd.Series({"layer.0": 1.0, "embedding": float("nan"), "head": float("nan")}))


def test_reading_says_why_a_run_has_no_ratio():
    table = pd.DataFrame([
        {"run": "full (full, seed 0)", "skew_end_over_median": 1.99, "ends_trained": True},
        {"run": "lora (lora-r128, seed 0)", "skew_end_over_median": float("nan"), "ends_trained": False},
        {"run": "lisa (lisa-e-h, seed 0)", "skew_end_over_median": float("nan"), "ends_trained": True},
    ]).set_index("run")
    text = reading(table)
    assert "- full (full, seed 0): 1.99" in text
    assert "- lora (lora-r128, seed 0): no ratio (it trains neither the embedding nor the head" in text
    assert "- lisa (lisa-e-h, seed 0): no ratio (no decoder block was trained)" in text
    assert ": 0\n" not in text


def test_a_lora_run_that_leaves_embedding_and_head_frozen_has_no_ratio(tiny_cfg, tmp_path):
    from lisa_bench.reporting.norms import mean_norms
    from lisa_bench.training import train

    train(tiny_cfg("lora", max_steps=2), tmp_path / "lora", progress=False)
    norms = mean_norms(tmp_path / "lora")
    assert norms["layer.0"] > 0 and not ends_trained(norms) and math.isnan(skew_ratio(norms, max))
    train(tiny_cfg("full", max_steps=2), tmp_path / "full", progress=False)
    assert skew_ratio(mean_norms(tmp_path / "full"), max) > 0


def test_lisa_with_embedding_and_head_frozen_has_no_ratio(tiny_cfg, tmp_path):
    """A unit's own weights have a norm whether trained or not: the analysis reads from the update whether
    the run trained the ends, so LISA with ``always_on: none`` gets no ratio of pretrained weights."""
    from lisa_bench.reporting.norms import analyze
    from lisa_bench.training import train

    for name, always_on in (("frozen", "none"), ("on", "embedding,head")):
        train(tiny_cfg("lisa", max_steps=2, method_options={"gamma": 1, "interval": 1, "always_on": always_on}),
              tmp_path / name, progress=False)
    skew = analyze([tmp_path / "frozen", tmp_path / "on"], tmp_path / "norms")
    frozen, on = skew.iloc[0], skew.iloc[1]
    assert not frozen["ends_trained"] and math.isnan(frozen["skew_end_over_median"])
    assert math.isnan(frozen["skew_mean_norm"])
    assert on["ends_trained"] and on["skew_end_over_median"] > 0
    assert "no ratio (it trains neither the embedding nor the head" in (tmp_path / "norms" / "reading.md").read_text()
