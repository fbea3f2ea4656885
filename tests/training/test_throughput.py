"""Steady-state throughput: warm-up steps apart, the median of the rest, MFU where the device's peak is known."""

import pytest
import torch

from lisa_bench.training import throughput


def test_warmup_is_a_tenth_of_the_run_between_1_and_10_steps():
    assert [throughput.warmup_steps(n) for n in (1, 5, 20, 95, 300)] == [1, 1, 2, 9, 10]


def test_steady_rate_leaves_out_the_warm_up_and_a_stray_step():
    # 20 steps of 1000 tokens: 2 slow warm-up steps, 17 at 0.1 s, one stray slow step
    seconds = [2.0, 1.0] + [0.1] * 17 + [0.5]
    out = throughput.summary(seconds, [1000] * 20, [6e6] * 20, peak=1e12)
    assert out["warmup_steps"] == 2 and out["warmup_seconds"] == pytest.approx(3.0)
    assert out["steady_tokens_per_second"] == pytest.approx(10_000)  # the median ignores the stray step
    assert out["flops_per_token"] == pytest.approx(6e6)
    assert out["mfu"] == pytest.approx(10_000 * 6e6 / 1e12)
    whole = sum(1000 for _ in seconds) / sum(seconds)
    assert whole < out["steady_tokens_per_second"] / 2  # what the warm-up did to the old figure


def test_no_mfu_without_a_known_peak():
    assert throughput.device_peak(torch.device("cpu"), torch.float32) == ("cpu", None)
    assert throughput.summary([0.1, 0.1], [10, 10], [1.0, 1.0], peak=None)["mfu"] is None
    assert throughput.summary([], [], [], peak=1e12)["steady_tokens_per_second"] is None  # a run of no steps


def test_a_run_records_its_steady_throughput(tiny_cfg, tmp_path):
    import json

    from lisa_bench.training import train

    train(tiny_cfg("lisa", max_steps=12, method_options={"gamma": 2, "interval": 4}), tmp_path / "run",
          progress=False)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    log = [json.loads(ln) for ln in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    rates = sorted(r["tokens"] / r["step_seconds"] for r in log[m["warmup_steps"]:])
    assert m["warmup_steps"] == 1 and m["steady_tokens_per_second"] == pytest.approx(rates[len(rates) // 2])
    # LISA's backward reaches its embedding: every block passes gradients down, 2 of them train
    assert m["flops_per_token"] > 0 and m["mfu"] is None and m["device_name"] == "cpu"
