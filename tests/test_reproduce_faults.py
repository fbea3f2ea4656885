"""`lisa-bench reproduce` after a kill: the same command continues (Snakemake's stale lock cleared, with a
line), and a second reproduce of a study that is running is refused with the first one's pid."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lisa_bench.claims import Claim
from lisa_bench.cli import main
from lisa_bench.reproduce import claims_dir
from tests.pipeline_support import TINY


@pytest.fixture
def tiny_project(workdir):
    (workdir / "config" / "tiny.yaml").write_text(TINY)
    return workdir


def _reproduce(root, *extra):
    return ["reproduce", "--directory", str(root), "--configfile", "config/tiny.yaml", "--cores", "1", *extra]


def test_a_running_study_is_refused_with_its_pid(tiny_project, capsys):
    held = Claim(claims_dir(tiny_project) / "tiny.claim", "lisa-bench reproduce tiny")
    held.acquire()
    try:
        assert main(_reproduce(tiny_project)) == 2
    finally:
        held.release()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lisa-bench: error: study 'tiny' is already running in "
                                               f"{str(tiny_project.resolve())!r}: pid {os.getpid()} on ")
    assert err[0].endswith(f"(lisa-bench reproduce tiny); wait for it to end or stop it (kill {os.getpid()}), then rerun")
    assert not (tiny_project / ".snakemake" / "locks").exists()  # Snakemake never started


@pytest.mark.slow  # a real pipeline started and killed
def test_a_killed_reproduce_continues_with_the_same_command(tiny_project, capsys):
    proc = subprocess.Popen([sys.executable, "-m", "lisa_bench.cli", *_reproduce(tiny_project)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    locks = tiny_project / ".snakemake" / "locks"
    deadline = time.time() + 240
    while time.time() < deadline and not (locks.is_dir() and any(locks.iterdir())):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # reproduce, Snakemake and its jobs, as a scheduler or power loss would
    proc.wait()
    assert any(locks.iterdir())  # what made every rerun stop at "Directory cannot be locked"
    capsys.readouterr()
    # a dry run shows the rerun's plan: past the lock, with the cut-short jobs to run again
    assert main(_reproduce(tiny_project, "--", "--dry-run")) == 0
    out = capsys.readouterr().out
    cleared = [ln for ln in out.splitlines() if "cleared the Snakemake lock" in ln]
    assert len(cleared) == 1 and cleared[0].startswith(f"[lisa-bench] cleared the Snakemake lock left by pid {proc.pid} on ")
    assert cleared[0].endswith("(lisa-bench reproduce tiny), which is no longer running")
    assert "--rerun-incomplete" in out
    assert not (locks.is_dir() and any(locks.iterdir()))
    assert not any(claims_dir(tiny_project).iterdir())  # this run's claim released, the dead one's taken over


def test_a_cuda_study_on_a_machine_without_one_is_refused_before_any_job(tmp_path, capsys, monkeypatch):
    """device: cuda on a machine without a CUDA GPU: one line and exit 2 (every job would fail in its log);
    a dry run or a cluster submission is let through to Snakemake."""
    import torch

    from lisa_bench.cli import main
    from tests.pipeline_support import copy_project

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    copy_project(tmp_path)
    calls = []
    monkeypatch.setattr("subprocess.run", lambda cmd, **kw: calls.append(cmd) or type("P", (), {"returncode": 0})())
    assert main(["reproduce", "--directory", str(tmp_path), "--configfile", "config/paper-ablations.yaml"]) == 2
    err = capsys.readouterr().err
    assert "config device: 'cuda', but this machine has no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not calls and not (tmp_path / "runs").exists()
    main(["reproduce", "--directory", str(tmp_path), "--configfile", "config/paper-ablations.yaml", "--", "-n"])
    assert "config device" not in capsys.readouterr().err
    assert any("snakemake" in " ".join(map(str, c)) and "-n" in c for c in calls)  # the dry run reached Snakemake
