"""A training job killed mid-run resumes from its last checkpoint and ends as if never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # subprocesses: real launches and kills

ARGS = ["--model", "tiny-random-llama", "--max-steps", "24", "--batch-size", "4", "--max-length", "96", "--lr",
        "1e-3", "--train-size", "64", "--eval-size", "16", "--device", "cpu", "--no-progress", "--checkpoint-every", "4"]


def _cmd(method, out):
    extra = ["--lisa-interval", "3"] if method.startswith("lisa") else []
    return [sys.executable, "-m", "lisa_bench.cli", "train", "--method", method, *ARGS, *extra, "--output-dir", str(out)]


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "train_log.jsonl").read_text().splitlines()]


# LISA's kill and resume is also tested under DDP and FSDP2 (test_fsdp.py) and by SIGTERM (test_faults.py);
# `make test-all` runs it here too
@pytest.mark.parametrize("method", [pytest.param("lisa", marks=pytest.mark.extended), "lora"])
def test_killed_run_resumes_to_the_same_result(method, tmp_path):
    reference = tmp_path / "reference"
    from lisa_bench.cli import main

    assert main(_cmd(method, reference)[3:]) == 0  # the uninterrupted reference, in this process

    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    proc = subprocess.Popen(_cmd(method, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill it once it is past its second checkpoint
        log = partial / "train_log.jsonl"
        if (partial / "checkpoint" / "state.pt").exists() and log.exists() and len(log.read_text().splitlines()) >= 10:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and (partial / "checkpoint" / "state.pt").exists()

    subprocess.run(_cmd(method, out), check=True, capture_output=True, timeout=300)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] in range(4, 24, 4)
    assert not partial.exists() and not (out / "checkpoint").exists()
    steps = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(24))
    assert _losses(out) == pytest.approx(_losses(reference), rel=1e-5)
    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    a, b = load_file(out / "model" / weights), load_file(reference / "model" / weights)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.extended  # test_faults.py's changed-settings test covers it, in-process and naming the settings
def test_changed_settings_do_not_resume(tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    proc = subprocess.Popen(_cmd("lisa", out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (partial / "checkpoint" / "state.pt").exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cmd = _cmd("lisa", out)
    cmd[cmd.index("1e-3")] = "2e-3"
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] is None
