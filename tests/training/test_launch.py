"""The multi-node launch (lisa_bench/training/launch.py): the commands it starts on one node, in a SLURM allocation
and on loopback, its one-line refusals, and that one node's failure ends every node. The launch itself, two nodes
on loopback training under FSDP2, is run in test_faults.py."""

import sys
import time

import pytest

from lisa_bench.errors import BadInput
from lisa_bench.training import launch

ARGS = ["train", "--method", "lisa"]


def test_one_node_is_torchrun_standalone():
    (cmd,) = launch.commands(1, 4, ARGS, environ={})
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4"]
    assert cmd[-5:] == ["-m", "lisa_bench.cli", *ARGS]


def test_nodes_in_a_slurm_allocation_start_one_agent_each_with_a_c10d_rendezvous(monkeypatch):
    monkeypatch.setattr(launch, "slurm_first_host", lambda nodelist: {"gpu[07-08]": "gpu07"}[nodelist])
    monkeypatch.setattr(launch.shutil, "which", lambda name: f"/usr/bin/{name}")
    env = {"SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "4242"}
    (cmd,) = launch.commands(2, 8, ARGS, environ=env)
    assert cmd[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    agent = " ".join(cmd[5:])
    assert ("-m torch.distributed.run --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint gpu07:29400 "
            "--rdzv-id 4242 -m lisa_bench.cli train --method lisa") in agent
    (cmd,) = launch.commands(2, 8, ARGS, environ={**env, "LISA_BENCH_RDZV_PORT": "31000"})
    assert "gpu07:31000" in cmd


@pytest.mark.parametrize("nodes, env, needle", [
    (2, {}, "launcher.nodes 2: a run over 2 nodes starts one agent on each node of a SLURM allocation"),
    (4, {"SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_NUM_NODES": "2"},
     "launcher.nodes 4: the SLURM allocation has 2 nodes; valid: at most 2"),
    (0, {}, "launch: --nodes 0 and --nproc-per-node 1 must each be at least 1"),
])
def test_refused_in_one_line(nodes, env, needle, monkeypatch):
    monkeypatch.setattr(launch.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(BadInput) as err:
        launch.commands(nodes, 1, ARGS, environ=env)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_main_outside_slurm_is_exit_2_and_one_line(monkeypatch, capsys):
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    assert launch.main(["--nodes", "2", "--nproc-per-node", "1", "--", *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lisa-bench: error: launcher.nodes 2:")


def test_loopback_starts_one_agent_per_node_at_one_rendezvous():
    cmds = launch.commands(3, 2, ARGS, loopback=True, environ={})
    assert len(cmds) == 3 and len({" ".join(c) for c in cmds}) == 1  # the same agent, c10d numbers the nodes
    endpoint = cmds[0][cmds[0].index("--rdzv-endpoint") + 1]
    assert endpoint.startswith("127.0.0.1:") and cmds[0][cmds[0].index("--nnodes") + 1] == "3"


def test_one_node_failing_ends_the_others_and_its_status_is_the_launchs(capsys):
    """A node's agent exits 3 (its processes failed, or the node died): the other node, which would wait for it
    in a collective, is stopped at once, and the launch exits with the failure's status."""
    started = time.monotonic()
    code = launch.run([[sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"],
                       [sys.executable, "-c", "import time; time.sleep(120)"]])
    assert code == 3 and time.monotonic() - started < 30
    assert "lisa-bench: launch: node 0's agent exited 3; stopping the other nodes" in capsys.readouterr().err


def test_sigterm_to_the_launch_reaches_every_node(tmp_path):
    """SLURM's preemption signal (srun forwards it on a cluster): the launch passes SIGTERM to every agent, and its
    exit status is theirs (75: checkpointed, requeue)."""
    import signal
    import subprocess

    node = ("import pathlib, signal, sys, time\n"
            "def stop(*_):\n"
            "    pathlib.Path(sys.argv[1]).write_text('stopped'); sys.exit(75)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "pathlib.Path(sys.argv[1] + '.up').write_text('up')\n"
            "time.sleep(60)\n")
    marks = [tmp_path / f"node{i}" for i in range(2)]
    script = ("import sys\nfrom lisa_bench.training.launch import run\n"
              f"sys.exit(run([[sys.executable, '-c', {node!r}, m] for m in {[str(m) for m in marks]!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not all(m.with_name(m.name + ".up").exists() for m in marks) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert [m.read_text() for m in marks] == ["stopped", "stopped"], err
    assert proc.returncode == 75
