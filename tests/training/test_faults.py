"""Faults around a training run (docs/faults.md): each ends in one line naming the next command, and the
rerun ends with the losses and weights of an uninterrupted run."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from lisa_bench.cli import main
from lisa_bench.training import faults

pytestmark = pytest.mark.slow  # real runs, some of them in subprocesses that are signalled or killed

ARGS = ["train", "--method", "lisa", "--model", "tiny-random-llama", "--max-steps", "12", "--batch-size", "4",
        "--max-length", "96", "--lr", "1e-3", "--train-size", "64", "--eval-size", "16", "--device", "cpu",
        "--no-progress", "--checkpoint-every", "4", "--lisa-interval", "3"]


def _args(out, *extra):
    return [*ARGS, *extra, "--output-dir", str(out)]


def _spawn(out):
    return subprocess.Popen([sys.executable, "-m", "lisa_bench.cli", *_args(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "train_log.jsonl").read_text().splitlines()]


def _weights(run):
    return load_file(run / "model" / "model.safetensors")


def _partial(out):
    return out.parent / f".{out.name}.partial"


def _wait_for_steps(out, n, deadline=240):
    log = _partial(out) / "train_log.jsonl"
    end = time.time() + deadline
    while time.time() < end and not (log.exists() and len(log.read_text().splitlines()) >= n):
        time.sleep(0.05)


def _err_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lisa-bench:")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every faulted one must end equal to."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(_args(out)) == 0
    return out


def _same_as(out, reference):
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == list(range(12))
    assert _losses(out) == pytest.approx(_losses(reference), rel=1e-6)
    a, b = _weights(out), _weights(reference)
    assert max(float((a[k] - b[k]).abs().max()) for k in b) < 1e-6


def _preempt_at(monkeypatch, step, sig=signal.SIGUSR1):
    """Deliver ``sig`` to this process (its real handler runs) during step ``step`` (counted from 1)."""
    calls = {"n": 0}
    requested = faults.Preemption.requested

    def deliver(self, accelerator):
        calls["n"] += 1
        if calls["n"] == step:
            signal.raise_signal(sig)
        return requested(self, accelerator)

    monkeypatch.setattr(faults.Preemption, "requested", deliver)


def _preempted_run(out, monkeypatch, step=10):
    """A run stopped after ``step``: checkpoints of steps 8 (previous.pt) and ``step`` (state.pt) on disk."""
    with monkeypatch.context() as m:
        _preempt_at(m, step)
        with pytest.raises(SystemExit) as stopped:
            main(_args(out))
    assert stopped.value.code == faults.REQUEUE
    return _partial(out) / "checkpoint"


def test_sigterm_checkpoints_at_the_next_step_and_the_rerun_resumes_exactly(reference, tmp_path, capsys):
    out = tmp_path / "run"
    proc = _spawn(out)
    _wait_for_steps(out, 6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == faults.REQUEUE == 75, err
    line = err.strip().splitlines()[-1]
    step = json.loads((_partial(out) / "train_log.jsonl").read_text().splitlines()[-1])["step"] + 1
    assert line == (f"lisa-bench: stopped by SIGTERM after step {step} of 12: checkpoint of step {step} in "
                    f"{_partial(out) / 'checkpoint'}; rerun the same command to resume (exit 75)")
    assert torch.load(_partial(out) / "checkpoint" / "state.pt", weights_only=False)["step"] == step
    assert not faults.claim_path(out).exists()  # a clean stop leaves no claim behind
    assert main(_args(out)) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == step
    _same_as(out, reference)


def test_sigusr1_stops_at_the_next_step(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    ckpt = _preempted_run(out, monkeypatch, step=6)
    assert _err_lines(capsys)[-1].startswith("lisa-bench: stopped by SIGUSR1 after step 6 of 12: checkpoint of step 6")
    assert torch.load(ckpt / "state.pt", weights_only=False)["step"] == 6
    assert torch.load(ckpt / "previous.pt", weights_only=False)["step"] == 4  # kept until the next is complete
    assert main(_args(out)) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 6
    _same_as(out, reference)


def test_unreadable_checkpoint_resumes_from_the_previous_one(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    ckpt = _preempted_run(out, monkeypatch)
    state = ckpt / "state.pt"
    size = state.stat().st_size // 2
    os.truncate(state, size)  # what a full disk or a cut copy leaves
    capsys.readouterr()
    assert main(_args(out)) == 0
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"lisa-bench: checkpoint {state} ({size} bytes) "
                                                   f"cannot be read (")
    assert lines[0].endswith("; resuming from the previous complete one (step 8)")
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 8
    _same_as(out, reference)


def test_no_readable_checkpoint_starts_from_step_0_and_says_so(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    ckpt = _preempted_run(out, monkeypatch)
    for name in ("state.pt", "previous.pt"):
        (ckpt / name).write_bytes((ckpt / name).read_bytes()[:1000])
    capsys.readouterr()
    assert main(_args(out)) == 0
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].endswith("; no earlier complete checkpoint: starting from step 0")
    assert "state.pt (1000 bytes) cannot be read" in lines[0] and "previous.pt (1000 bytes) cannot be read" in lines[0]
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] is None
    _same_as(out, reference)


def test_changed_settings_say_which_and_start_anew(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _preempted_run(out, monkeypatch)
    capsys.readouterr()
    assert main(_args(out, "--seed", "1", "--max-steps", "13")) == 0
    lines = _err_lines(capsys)
    assert lines == [f"lisa-bench: the checkpoint in {_partial(out) / 'checkpoint'} was written with other settings "
                     f"(max_steps 12 -> 13, seed 0 -> 1); starting anew from step 0"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] is None and metrics["steps"] == 13


def _full_disk(monkeypatch, at_save, exc):
    """torch.save of the ``at_save``-th checkpoint writes a few bytes, then fails as a full disk does."""
    calls = {"n": 0}
    save = torch.save

    def fake(obj, path, *a, **kw):
        if str(path).endswith("state.pt.tmp"):
            calls["n"] += 1
            if calls["n"] == at_save:
                open(path, "wb").write(b"PK\x03\x04 cut short")
                raise exc
        return save(obj, path, *a, **kw)

    monkeypatch.setattr(torch, "save", fake)


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"),
                                 RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")],
                         ids=["ENOSPC", "torch-zip-writer"])
def test_full_disk_is_one_line_and_the_last_checkpoint_is_kept(exc, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    ckpt = _partial(out) / "checkpoint"
    with monkeypatch.context() as m:
        _full_disk(m, 2, exc)  # the checkpoint of step 8
        assert main(_args(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"lisa-bench: error: no space left in {ckpt} (needs about ")
    assert err[0].endswith(" free); free space and rerun the same command: it resumes from step 4")
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.pt"]  # the half-written one removed
    assert torch.load(ckpt / "state.pt", weights_only=False)["step"] == 4
    assert main(_args(out)) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 4
    _same_as(out, reference)


def test_full_disk_outside_a_checkpoint_is_one_line_too(reference, tmp_path, monkeypatch, capsys):
    """A log line that finds the disk full (after the checkpoint of step 4) names the run's directory."""
    from lisa_bench.training.logs import JsonLines

    out, write, rows = tmp_path / "run", JsonLines.write, {"n": 0}

    def full(self, obj):
        rows["n"] += 1
        if rows["n"] == 12:  # a norms row and a log row per step: the log row of step 6 (counted from 1)
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, obj)

    with monkeypatch.context() as m:
        m.setattr(JsonLines, "write", full)
        assert main(_args(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lisa-bench: error: no space left in {_partial(out)} (")
    assert err[0].endswith(" free); free space and rerun the same command: it resumes from its last complete checkpoint")
    assert main(_args(out)) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 4
    _same_as(out, reference)


def test_unwritable_output_directory_is_one_line(tmp_path, monkeypatch, capsys):
    """Root ignores permissions, so the refusal is injected where the run first writes: its claim."""
    from lisa_bench import claims

    def refuse(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.path))

    monkeypatch.setattr(claims.Claim, "acquire", refuse)
    assert main(_args(tmp_path / "ro" / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lisa-bench: error: cannot write in {tmp_path / 'ro'} (Permission denied); fix its permissions "
                   f"or give another --output-dir and rerun: nothing was written"]
    assert not any(tmp_path.iterdir())


def test_second_writer_is_refused_and_the_first_finishes_unharmed(reference, tmp_path, capsys):
    out = tmp_path / "run"
    first = _spawn(out)
    _wait_for_steps(out, 2)
    assert main(_args(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lisa-bench: error: output directory {str(out)!r} is being written "
                                               f"by another run, pid {first.pid} on ")
    assert err[0].endswith("(lisa-bench train); wait for it to end (or stop it), then rerun to resume from its checkpoint")
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    _same_as(out, reference)


def test_a_killed_writers_claim_is_taken_over(reference, tmp_path, capsys):
    out = tmp_path / "run"
    proc = _spawn(out)
    _wait_for_steps(out, 6)
    proc.kill()  # SIGKILL: no handler runs, the claim file stays behind
    proc.wait()
    assert faults.claim_path(out).exists()
    assert main(_args(out)) == 0
    lines = _err_lines(capsys)
    assert lines[0].startswith(f"lisa-bench: taking over output directory {str(out)!r} from pid {proc.pid} on ")
    assert lines[0].endswith("(lisa-bench train), which is no longer running")
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] in (4, 8)
    assert not faults.claim_path(out).exists()
    _same_as(out, reference)


MULTI = ["--batch-size", "4", "--max-steps", "12", "--checkpoint-every", "5"]
# FSDP2 under bf16-master: each process's fp32 masters of its shards go into the sharded checkpoint and come back
# exactly (test_fsdp.py's kill test at fp32 and bf16-master, in `make test-all`, checks the same alone)
SHARDED = ["--sharding", "fsdp", "--precision", "bf16-master"]


def _launcher_args(launcher):
    return MULTI + (SHARDED if launcher == "fsdp" else [])


@pytest.fixture(scope="module")
def multi_reference(tmp_path_factory):
    """The uninterrupted two-process run of each launcher, made once for the tests that fault it."""
    from tests.training.test_fsdp import _train

    made = {}

    def get(launcher):
        if launcher not in made:
            out = tmp_path_factory.mktemp(f"reference-{launcher}") / "run"
            _train("lisa", out, 2, _launcher_args(launcher))
            made[launcher] = out
        return made[launcher]

    return get


def _equal_to(out, reference):
    from tests.training.test_fsdp import _log
    from tests.training.test_fsdp import _weights as weights

    assert [r["loss"] for r in _log(out)] == pytest.approx([r["loss"] for r in _log(reference)], rel=1e-6)
    a, b = weights(out, "lisa"), weights(reference, "lisa")
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in b) < 1e-6


def _worker(out, rank: int):
    import psutil

    return next(p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])
                and p.environ().get("RANK") == str(rank))


# DDP's stop is the same all-reduced flag as FSDP2's (faults.Preemption.requested), and FSDP2's is run across two
# nodes by the two-node test below; `make test-all` runs both launchers here
@pytest.mark.parametrize("launcher", [pytest.param("ddp", marks=pytest.mark.extended),
                                      pytest.param("fsdp", marks=pytest.mark.extended)])
def test_a_signal_to_one_process_stops_every_process_at_the_same_step(launcher, tmp_path, multi_reference):
    """SIGTERM to process 1 alone: both processes checkpoint the same step and stop; the rerun is exact."""
    from tests.training.test_fsdp import _log, _train

    extra = _launcher_args(launcher)
    reference = multi_reference(launcher)
    out = tmp_path / "run"
    proc = _train("lisa", out, 2, extra, wait=False)
    _wait_for_steps(out, 3)
    _worker(out, 1).send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0  # torchrun reports its workers' exit 75 as its own failure
    step = len(_log(_partial(out)))
    assert (f"lisa-bench: stopped by SIGTERM after step {step} of 12: checkpoint of step {step} in "
            f"{_partial(out) / 'checkpoint'}; rerun the same command to resume (exit 75)") in err
    assert err.count("lisa-bench: stopped by") == 1  # said once, by process 0
    metrics = _train("lisa", out, 2, extra)
    assert metrics["resumed_from_step"] == step
    _equal_to(out, reference)


# one process's death: the same for both launchers (torchrun's agent stops the others); run under DDP, whose
# checkpoint and resume no other test of `make test` covers (FSDP2's: the two-node test); `make test-all` runs
# FSDP2's too
@pytest.mark.parametrize("launcher", ["ddp", pytest.param("fsdp", marks=pytest.mark.extended)])
def test_one_process_killed_ends_the_whole_run_soon_and_the_rerun_resumes(launcher, tmp_path, multi_reference):
    """SIGKILL to process 1 alone, past the first checkpoint: the launcher stops process 0 (SIGTERM, then SIGKILL
    after its grace period) and exits non-zero within a bounded time, the checkpoint is kept, the rerun resumes
    from it and ends equal to the uninterrupted run."""
    from tests.training.test_fsdp import _train

    extra = _launcher_args(launcher)
    reference = multi_reference(launcher)
    out = tmp_path / "run"
    proc = _train("lisa", out, 2, extra, wait=False)
    _wait_for_steps(out, 7)  # past the checkpoint of step 5
    _worker(out, 1).kill()
    died = time.perf_counter()
    proc.communicate(timeout=300)
    took = time.perf_counter() - died
    print(f"{launcher}: one process killed, the whole run ended {took:.1f} s later (exit {proc.returncode})")
    assert proc.returncode != 0 and took < 60  # torchrun's monitor, then its 30 s grace period at most
    assert (_partial(out) / "checkpoint" / "state.pt").exists()  # the checkpoint of step 5 (or 10) kept
    metrics = _train("lisa", out, 2, extra)
    assert metrics["resumed_from_step"] in (5, 10)
    _equal_to(out, reference)


def _two_nodes(out, extra):
    """Two nodes on loopback (lisa_bench.training.launch --loopback): two torchrun agents, one process each,
    meeting at a c10d rendezvous on 127.0.0.1, as srun starts them on two nodes of a SLURM allocation."""
    from tests.training.test_fsdp import COMMON, ENV, OPTIONS

    args = ["train", "--method", "lisa", *COMMON, *OPTIONS["lisa"], *extra, "--output-dir", str(out)]
    return subprocess.Popen([sys.executable, "-m", "lisa_bench.training.launch", "--nodes", "2", "--nproc-per-node",
                             "1", "--loopback", "--", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)


def test_two_nodes_preempted_refuse_a_second_writer_and_resume_to_the_one_node_run(tmp_path, multi_reference, capsys):
    """FSDP2 (bf16-master) over two nodes (one process each, global ranks 0 and 1 from the rendezvous): a second writer is
    refused while it runs; SIGTERM to one node's process stops both nodes at one step with a checkpoint; the rerun
    resumes and ends with the losses and weights of the two-process run on one node, which test_fsdp.py shows
    equal to one process on the global batch. (On one node the same stop is test_a_signal_to_one_process_...,
    in `make test-all`.)"""
    from tests.training.test_fsdp import _log
    from tests.training.test_fsdp import _weights as weights

    extra = _launcher_args("fsdp")
    reference = multi_reference("fsdp")
    out = tmp_path / "run"
    proc = _two_nodes(out, extra)
    _wait_for_steps(out, 3)
    workers = [_worker(out, rank) for rank in (0, 1)]
    for w in workers:  # held mid-run (its steps take a fraction of a second), so the signal lands before the end
        w.suspend()
    assert main(_args(out)) == 2  # the claim, held by global rank 0 on one of the nodes
    assert "is being written by another run, pid" in _err_lines(capsys)[0]
    # SIGTERM to global rank 1's process alone (pending while it is held): the all-reduced stop flag stops rank 0
    # on the other node at the same step (SLURM's preemption reaches every node: the launch forwards it, as
    # test_launch.py checks)
    workers[1].send_signal(signal.SIGTERM)
    for w in workers:
        w.resume()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and (_partial(out) / "train_log.jsonl").exists(), err[-3000:]
    step = len(_log(_partial(out)))
    assert f"lisa-bench: stopped by SIGTERM after step {step} of 12: checkpoint of step {step}" in err, err[-3000:]
    assert err.count("lisa-bench: stopped by") == 1  # both nodes stopped at that step; global rank 0 said it
    rerun = _two_nodes(out, extra)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["resumed_from_step"] == step
    assert metrics["precision"] == "bf16-master"
    uninterrupted = json.loads((reference / "metrics.json").read_text())
    for key in ("optimizer_state_bytes_per_process", "gradient_bytes_per_process"):  # each process's own, resumed
        assert metrics[key] == uninterrupted[key], key
    a, b = _log(out), _log(reference)
    wa, wb = weights(out, "lisa"), weights(reference, "lisa")
    print(f"two nodes x one process against one node x two: largest loss difference "
          f"{max(abs(x['loss'] - y['loss']) for x, y in zip(a, b)):.2e}, largest weight difference "
          f"{max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wb):.2e} (resumed from step {step})")
    _equal_to(out, reference)
