"""Multi-process and multi-node launches: one torchrun agent per node, each starting its node's processes.

    python -m lisa_bench.training.launch --nodes 1 --nproc-per-node 2 -- train ...   # torchrun --standalone
    python -m lisa_bench.training.launch --nodes 2 --nproc-per-node 4 -- train ...   # in a SLURM allocation
    python -m lisa_bench.training.launch --nodes 2 --nproc-per-node 1 --loopback -- train ...   # one machine

On one node it is ``torchrun --standalone``. On several, inside a SLURM allocation, ``srun`` starts one agent per
node (``--ntasks-per-node 1``) and the agents meet at a c10d rendezvous on the allocation's first node (torchrun's
elastic rendezvous: the port is ``LISA_BENCH_RDZV_PORT``, default 29400, the id the SLURM job id), so the global
ranks span the nodes and FSDP2 shards, or DDP replicates, over all of them. ``--loopback`` starts the agents on
this machine instead, meeting on 127.0.0.1 (a free port): the same rendezvous and ranks as on a cluster, which is
how the tests run the multi-node path on a CPU.

Faults, as on one node (docs/faults.md): ``srun --kill-on-bad-exit`` (and, under ``--loopback``, this process)
ends every agent once one fails, so one node's death ends the run; SIGTERM and SIGUSR1 reach every agent (srun
forwards them; ``--loopback`` forwards them) and every process checkpoints at the same step boundary; the exit
status is the first failing agent's. The run's one-writer claim is taken by global rank 0 with an ``flock`` that
NFSv4 and Lustre pass between nodes (lisa_bench/claims.py), and checkpoints go to the shared output directory.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

from ..errors import BadInput

DEFAULT_PORT = 29400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent(nodes: int, nproc: int, endpoint: str, run_id: str, args: list[str]) -> list[str]:
    """One node's torchrun agent (the c10d rendezvous gives each its node rank)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc-per-node", str(nproc),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
            "-m", "lisa_bench.cli", *args]


def slurm_first_host(nodelist: str) -> str:
    """The allocation's first node (the rendezvous host), from ``scontrol show hostnames``."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def commands(nodes: int, nproc: int, args: list[str], loopback: bool = False,
             environ: dict | None = None) -> list[list[str]]:
    """The processes this launch starts: one torchrun (one node), one srun (SLURM), or one agent per node
    (loopback)."""
    env = os.environ if environ is None else environ
    if nodes < 1 or nproc < 1:
        raise BadInput(f"launch: --nodes {nodes} and --nproc-per-node {nproc} must each be at least 1")
    if nodes == 1:
        return [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                 "-m", "lisa_bench.cli", *args]]
    if loopback:
        endpoint, run_id = f"127.0.0.1:{_free_port()}", f"loopback-{os.getpid()}"
        return [_agent(nodes, nproc, endpoint, run_id, args) for _ in range(nodes)]
    if "SLURM_JOB_NODELIST" not in env:
        raise BadInput(f"launcher.nodes {nodes}: a run over {nodes} nodes starts one agent on each node of a SLURM "
                       f"allocation (snakemake --profile profiles/slurm), and no SLURM allocation is here "
                       f"(SLURM_JOB_NODELIST unset); valid: nodes 1 on one machine, or --loopback to try the "
                       f"multi-node path on this one")
    allocated = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", nodes)))
    if allocated < nodes:
        raise BadInput(f"launcher.nodes {nodes}: the SLURM allocation has {allocated} nodes; valid: at most {allocated}, "
                       f"or ask for {nodes} (the train rule's `nodes` resource)")
    if shutil.which("srun") is None:
        raise BadInput("launcher.nodes > 1 under SLURM needs `srun` on PATH (it starts one agent per node)")
    endpoint = f"{slurm_first_host(env['SLURM_JOB_NODELIST'])}:{env.get('LISA_BENCH_RDZV_PORT', DEFAULT_PORT)}"
    return [["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
             *_agent(nodes, nproc, endpoint, env.get("SLURM_JOB_ID", "lisa-bench"), args)]]


def run(cmds: list[list[str]], grace: float = 30.0) -> int:
    """Start every command; forward SIGTERM, SIGUSR1 and SIGINT to each; once one fails, stop the others
    (SIGTERM, then SIGKILL after ``grace`` seconds). The exit status: the first failure's, else 0."""
    procs = [subprocess.Popen(c, start_new_session=len(cmds) > 1) for c in cmds]

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        failed, deadline = None, None
        while any(p.poll() is None for p in procs):
            if failed is None:
                failed = next((p for p in procs if p.poll() not in (None, 0)), None)
                if failed is not None:  # one agent (a node) failed: the others cannot finish without it
                    print(f"lisa-bench: launch: node {procs.index(failed)}'s agent exited {failed.returncode}; "
                          f"stopping the other nodes", file=sys.stderr, flush=True)
                    forward(signal.SIGTERM, None)
                    deadline = time.monotonic() + grace
            elif time.monotonic() > deadline:
                forward(signal.SIGKILL, None)
            time.sleep(0.1)
        codes = [p.returncode for p in procs]
        first = failed.returncode if failed is not None else next((c for c in codes if c != 0), 0)
        return 1 if first < 0 else first  # killed by a signal: a failure, as torchrun reports it
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def command_line(nodes: int, nproc: int, loopback: bool = False) -> str:
    """The launch prefix a study's train job runs (the rules append ``train ...``)."""
    flag = " --loopback" if loopback else ""
    return f"{shlex.quote(sys.executable)} -m lisa_bench.training.launch --nodes {nodes} --nproc-per-node {nproc}{flag} --"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lisa_bench.training.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1, help="nodes, one torchrun agent each (default 1)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="processes on each node (one per GPU)")
    parser.add_argument("--loopback", action="store_true",
                        help="start every node's agent on this machine (a c10d rendezvous on 127.0.0.1)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then lisa-bench's arguments (train ...)")
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if not args:
        parser.error("nothing to launch: give -- train ... after the options")
    try:
        cmds = commands(ns.nodes, ns.nproc_per_node, args, loopback=ns.loopback)
    except BadInput as exc:
        print(f"lisa-bench: error: {exc}", file=sys.stderr)
        return 2
    return run(cmds)


if __name__ == "__main__":
    sys.exit(main())
