"""Data-parallel training with two CPU processes (gloo): LISA changes its trainable set, so it
syncs gradients itself instead of going through DDP's reducer; all replicas must agree."""

import json
import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # subprocesses: real launches and kills


# (full, fp32): DDP's reducer at fp32 is test_ddp_equals_one_process's lora case; bf16-sr (every replica draws
# alike); `make test-all` runs them too
@pytest.mark.parametrize("method, precision", [("lisa", "fp32"), pytest.param("full", "fp32", marks=pytest.mark.extended),
                                               ("full", "bf16-master"),
                                               ("lisa", "bf16-kahan"),
                                               pytest.param("lisa", "bf16-sr", marks=pytest.mark.extended)])
def test_two_process_training_keeps_replicas_in_sync(method, precision, tmp_path):
    """Under the recipes that keep every update too: each replica's fp32 masters (or Kahan buffers) take the same
    averaged gradients, so the bf16 weights stay equal."""
    out = tmp_path / method
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lisa_bench.cli", "train", "--method", method, "--model", "tiny-random-llama", "--max-steps", "6",
           "--batch-size", "4", "--max-length", "96", "--lr", "1e-3", "--train-size", "64", "--eval-size", "16", "--device", "cpu",
           "--no-progress", "--precision", precision, "--output-dir", str(out)]
    if method == "lisa":
        cmd += ["--lisa-interval", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers
        stdout, stderr = proc.communicate()
        pytest.fail(f"two-process training did not finish in 240 s: {stderr[-2000:]}")
    assert proc.returncode == 0, stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["precision"] == precision
    assert metrics["replicas_in_sync"] is True
    assert stdout.count("lisa-bench train: finished") == 1 and "2 processes" in stdout  # process 0 alone
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 6


# full and LoRA both go through DDP's reducer: LoRA's case covers it (`make test-all` runs full too)
@pytest.mark.parametrize("method", ["lisa", pytest.param("full", marks=pytest.mark.extended), "lora"])
def test_ddp_equals_one_process_on_the_global_batch(method, tmp_path):
    """Two replicas at batch 4 each against one process at batch 8: the same losses, the same gradient norm
    before clipping at every step (a factor-of-N error in the averaging would show there, not in the losses or
    the weights: clipping and AdamW absorb it), the same final weights. LISA averages its gradients itself,
    full fine-tuning and LoRA go through DDP's reducer."""
    import torch

    from tests.training.test_fsdp import _log, _train, _weights

    ddp = _train(method, tmp_path / "ddp", 2, ["--batch-size", "4", "--max-steps", "6", "--checkpoint-every", "0"])
    single = _train(method, tmp_path / "single", 1, ["--batch-size", "8", "--max-steps", "6", "--checkpoint-every", "0"])
    assert ddp["num_processes"] == 2 and ddp["effective_batch_size"] == 8 and ddp["replicas_in_sync"] is True
    a, b = _log(tmp_path / "ddp"), _log(tmp_path / "single")
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-5
    assert all(x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-5) for x, y in zip(a, b))
    wa, wb = _weights(tmp_path / "ddp", method), _weights(tmp_path / "single", method)
    assert set(wa) == set(wb) and max(float((wa[k] - wb[k]).abs().max()) for k in wb) < 1e-5
    # replicas: every process holds all of the gradients and of the state
    assert ddp["gradient_bytes_per_process"] == [single["gradient_bytes_peak"]] * 2
    assert torch.tensor(ddp["optimizer_state_bytes_per_process"]).eq(single["optimizer_state_bytes_peak"]).all()
