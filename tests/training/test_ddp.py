"""Data-parallel training with two CPU processes (gloo): LISA changes its trainable set, so it
syncs gradients itself instead of going through DDP's reducer; all replicas must agree."""

import json
import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # subprocesses: real launches and kills


@pytest.mark.parametrize("method", ["lisa", "full"])
def test_two_process_training_keeps_replicas_in_sync(method, tmp_path):
    out = tmp_path / method
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lisa_bench.cli", "train", "--method", method, "--model", "tiny-random-llama", "--max-steps", "6",
           "--batch-size", "4", "--max-length", "96", "--lr", "1e-3", "--train-size", "64", "--eval-size", "16", "--device", "cpu",
           "--no-progress", "--output-dir", str(out)]
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
    assert metrics["num_processes"] == 2
    assert metrics["replicas_in_sync"] is True
    assert stdout.count("method=") == 1
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 6
