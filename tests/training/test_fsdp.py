"""FSDP2 on the CPU: two gloo processes under torchrun, each decoder block and the root fully_shard-ed.
LISA, full fine-tuning and LoRA give the losses and weights of one process on the same global batch;
LISA's switch frees the moments of the blocks it leaves on every process; a run killed with SIGKILL
resumes to the same result under FSDP2 and under DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # real multi-process launches

COMMON = ["--model", "tiny-random-llama", "--max-length", "96", "--lr", "1e-3", "--train-size", "64", "--eval-size", "16",
          "--device", "cpu", "--no-progress"]
OPTIONS = {"lisa": ["--lisa-layers", "1", "--lisa-interval", "2"], "full": [], "lora": ["--lora-rank", "4", "--option",
                                                                                     "dropout=0.0"]}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(method, out, processes, extra=(), wait=True):
    args = ["train", "--method", method, *COMMON, *OPTIONS[method], *extra, "--output-dir", str(out)]
    if processes == 1 and wait:  # the single-process reference: in this process (no start-up to pay)
        from lisa_bench.cli import main

        assert main(args) == 0
        return json.loads((Path(out) / "metrics.json").read_text())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
           "-m", "lisa_bench.cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    if not wait:
        return proc
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        _kill_all(proc, out)
        pytest.fail(f"{' '.join(cmd)} did not finish in 300 s")
    assert proc.returncode == 0, err[-3000:]
    return json.loads((Path(out) / "metrics.json").read_text())


def _kill_all(proc, out):
    """SIGKILL the launcher and its workers (torchrun starts them in sessions of their own)."""
    import psutil

    workers = [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    os.killpg(proc.pid, signal.SIGKILL)
    for p in workers:
        p.kill()
    proc.wait()
    psutil.wait_procs(workers, timeout=30)


def _log(run):
    return [json.loads(x) for x in (Path(run) / "train_log.jsonl").read_text().splitlines()]


def _weights(run, method):
    return load_file(Path(run) / "model" / ("adapter_model.safetensors" if method == "lora" else "model.safetensors"))


# every parameter trainable (full) is the sharding's plain case, LISA's and LoRA's the special ones; `make test-all`
# runs full too
@pytest.mark.parametrize("method", ["lisa", pytest.param("full", marks=pytest.mark.extended), "lora"])
def test_fsdp2_equals_one_process_on_the_global_batch(method, tmp_path):
    sharded = _train(method, tmp_path / "fsdp", 2, ["--batch-size", "4", "--max-steps", "8", "--sharding", "fsdp",
                                                     "--checkpoint-every", "0"])
    single = _train(method, tmp_path / "single", 1, ["--batch-size", "8", "--max-steps", "8", "--checkpoint-every", "0"])
    assert sharded["num_processes"] == 2 and sharded["sharding"] == "fsdp" and sharded["effective_batch_size"] == 8
    a, b = _log(tmp_path / "fsdp"), _log(tmp_path / "single")
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-5
    # the gradient before clipping: the losses and weights alone would not catch gradients N times too large or
    # small (clipping and AdamW's normalisation absorb a constant factor; checked: doubling FSDP2's gradients
    # left both within 2e-6)
    assert all(x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-5) for x, y in zip(a, b))
    wa, wb = _weights(tmp_path / "fsdp", method), _weights(tmp_path / "single", method)
    assert set(wa) == set(wb) and max(float((wa[k] - wb[k]).abs().max()) for k in wb) < 1e-5
    assert sharded["eval_loss"] == pytest.approx(single["eval_loss"], abs=1e-5)
    # each process holds its shards of the state: together the single process's, and one step counter each
    per_process = sharded["optimizer_state_bytes_per_process"]
    assert len(per_process) == 2 and max(per_process) < single["optimizer_state_bytes_peak"] * 0.6
    grads = sharded["gradient_bytes_per_process"]  # the gradients likewise, in shards
    assert len(grads) == 2 and 0 < max(grads) < single["gradient_bytes_peak"] * 0.6 <= sum(grads) * 0.6
    assert sharded["gradient_bytes_peak"] == max(grads)
    if method == "lisa":
        assert [r["active_layers"] for r in a] == [r["active_layers"] for r in b]
        from lisa_bench.models import load_model

        initial = load_model("tiny-random-llama").model.state_dict()
        visited = {i for r in a for i in r["active_layers"]}
        frozen = [k for k in wa if k.startswith("model.layers.") and int(k.split(".")[2]) not in visited]
        assert frozen and all(torch.equal(wa[k], initial[k]) for k in frozen)  # untouched blocks: bit-identical


def test_lisa_switch_frees_shards_on_every_process(tmp_path):
    probe = Path(__file__).with_name("fsdp_probe.py")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(probe), str(tmp_path / "report.json")], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["exact_state"] and report["same_blocks_on_every_process"]
    assert report["alive_before_switch"] == report["freed"] == [True, True, True]


# FSDP2's sharded checkpoint under bf16-master (fp32 masters included) is resumed exactly in test_faults.py's
# two-node test, DDP's in its one-process-killed test; `make test-all` runs these three as well
@pytest.mark.parametrize("launcher, precision", [pytest.param("fsdp", "fp32", marks=pytest.mark.extended),
                                                 pytest.param("ddp", "fp32", marks=pytest.mark.extended),
                                                 pytest.param("fsdp", "bf16-master", marks=pytest.mark.extended)])
def test_killed_run_resumes_to_the_same_result(launcher, precision, tmp_path):
    """bf16-master: each process's fp32 masters of its shards are in the checkpoint (DCP), loaded back in fp32."""
    extra = ["--batch-size", "4", "--max-steps", "12", "--checkpoint-every", "3", "--precision", precision]
    extra += ["--sharding", "fsdp"] if launcher == "fsdp" else []
    _train("lisa", tmp_path / "reference", 2, extra)
    out, partial = tmp_path / "run", tmp_path / ".run.partial"
    proc = _train("lisa", out, 2, extra, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill every process once the run is past its second checkpoint
        log = partial / "train_log.jsonl"
        if (partial / "checkpoint" / "state.pt").exists() and log.exists() and len(log.read_text().splitlines()) >= 7:
            break
        time.sleep(0.05)
    _kill_all(proc, out)
    assert not out.exists() and (partial / "checkpoint" / "state.pt").exists()
    metrics = _train("lisa", out, 2, extra)
    assert metrics["resumed_from_step"] in (3, 6, 9)
    assert [r["step"] for r in _log(out)] == list(range(12))
    # bf16-master included: the resumed run is the uninterrupted one (fp32 masters and moments come back exactly)
    rel, atol = 1e-6, 1e-6
    assert [r["loss"] for r in _log(out)] == pytest.approx([r["loss"] for r in _log(tmp_path / "reference")], rel=rel)
    wa, wb = _weights(out, "lisa"), _weights(tmp_path / "reference", "lisa")
    assert max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wb) < atol
    reference = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    for key in ("optimizer_state_bytes_per_process", "gradient_bytes_per_process"):  # each process's own, resumed
        assert metrics[key] == reference[key], key


@pytest.mark.parametrize("args, needle", [
    (["--sharding", "fsdp"], "sharding 'fsdp' on the CPU needs at least 2 processes"),
    (["--global-batch-size", "6", "--grad-accum-steps", "4"], "global_batch_size 6 does not divide into 1 processes x 4"),
    (["--method", "galore", "--sharding", "fsdp"], "cannot train on FSDP2-sharded parameters"),
    (["--sharding", "deepspeed"], "sharding 'deepspeed' is refused: ZeRO-3 partitions the parameters"),
    (["--sharding", "zero3"], "unknown sharding 'zero3'; valid choices: none, fsdp"),
])
def test_bad_sharding_input(args, needle, tmp_path, capsys):
    from lisa_bench.cli import main

    method = [] if "--method" in args else ["--method", "lisa"]
    assert main(["train", *method, *COMMON, "--max-steps", "2", *args, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_one_process_without_a_launcher_gets_a_process_group_of_its_own(tmp_path):
    """`lisa-bench train --sharding fsdp` on one GPU without torchrun: FSDP2 needs a process group, and
    init_device_mesh alone would fail for want of RANK in the environment. Run here on the CPU (gloo), in a
    process of its own with no launcher's variables."""
    script = (
        "import torch\n"
        "from lisa_bench.layers import find_blocks\n"
        "from lisa_bench.models import load_model\n"
        "from lisa_bench.training.distributed import shard_model\n"
        "model = load_model('tiny-random-llama').model\n"
        "model = shard_model(model, find_blocks(model), torch.device('cpu'), 1)\n"
        "ids = torch.randint(0, 100, (2, 8))\n"
        "model(input_ids=ids, labels=ids).loss.backward()\n"
        "assert torch.distributed.get_world_size() == 1\n"
        "assert all(p.grad is not None for p in model.parameters())\n"
        "print('ok')\n")
    env = {k: v for k, v in ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


# bf16-kahan on FSDP2 passes too (checked by hand, 2026-12-04), left out to keep `make test` short; bf16-sr (each
# process rounds its own shard) in `make test-all`
@pytest.mark.parametrize("precision", ["bf16-master", pytest.param("bf16-sr", marks=pytest.mark.extended)])
def test_fsdp2_under_the_recipes_that_keep_every_update(precision, tmp_path):
    """bf16 weights sharded, with fp32 masters of each process's shards in the optimizer's state: the run follows
    one process's on the global batch (to bf16's precision) and each process holds its share of the state."""
    extra = ["--max-steps", "6", "--checkpoint-every", "0", "--precision", precision, "--lisa-interval", "3"]
    sharded = _train("lisa", tmp_path / "fsdp", 2, ["--batch-size", "4", "--sharding", "fsdp", *extra])
    single = _train("lisa", tmp_path / "single", 1, ["--batch-size", "8", *extra])
    a, b = _log(tmp_path / "fsdp"), _log(tmp_path / "single")
    assert [r["active_layers"] for r in a] == [r["active_layers"] for r in b]
    # step 0 is the same weights on the same batch: equal to the sum's order (a rotary-frequency buffer of
    # process 1's that was half garbage put it 1e-4 to 5e-4 off, and now and then NaN); after it the bf16
    # gradients are summed in another order (measured: at most 6.8e-4 apart over the six steps)
    assert abs(a[0]["loss"] - b[0]["loss"]) < 1e-5
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 5e-3
    assert a[-1]["loss"] < a[0]["loss"] - 0.1
    per_process = sharded["optimizer_state_bytes_per_process"]
    assert max(per_process) < 0.6 * single["optimizer_state_bytes_peak"] <= 0.6 * sum(per_process) + 1000
    assert abs(sharded["lost_update_share_last"]) < 0.05 and abs(single["lost_update_share_last"]) < 0.05
