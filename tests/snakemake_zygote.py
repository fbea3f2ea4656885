"""A warm Snakemake for the tests: one process per pytest worker imports what every Snakemake run of the suite
imports (Snakemake, torch, transformers and the suite: the study check builds each experiment on a meta-device
model) once, then forks a child for each run, which calls ``snakemake.cli.main`` as ``python -m snakemake`` does,
in the run's directory, with the run's environment, its output in files. A run then costs its own work, not the
4-5 s of imports (of a dry run's 7 on a 2-core machine); a fork leaves nothing of one run behind for the next.

The server never computes (no thread pool is started before a fork), so forking it is safe. Used by
``tests.pipeline_support.snakemake``; ``LISA_BENCH_TEST_COLD_SNAKEMAKE=1`` runs a fresh ``python -m snakemake``
instead, to rule the zygote out when a test fails."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

SERVER = r"""
import json, os, sys, traceback
import snakemake.cli
import torch, transformers.modeling_utils, yaml, jsonschema
from transformers import AutoModelForCausalLM
import lisa_bench.study, lisa_bench.runs, lisa_bench.config, lisa_bench.precision
import lisa_bench.models.tiny, lisa_bench.training.launch, lisa_bench.evaluation.lm_eval_runner
print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)  # its own group: a timeout stops it and every job it started
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, req["out"], os.O_WRONLY | os.O_TRUNC),
                                    (2, req["err"], os.O_WRONLY | os.O_TRUNC)):
                os.dup2(os.open(path, flags), fd)
            sys.argv = ["snakemake", *req["args"]]
            sys.path[0] = req["cwd"]  # as `python -m` puts the working directory first
            try:
                snakemake.cli.main(req["args"])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Zygote:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=tempfile.gettempdir())
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.lock = threading.Lock()
        self._next(timeout=300)  # ready

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def _next(self, timeout):
        reply = self.lines.get(timeout=timeout)
        if reply is None:
            raise RuntimeError(f"the Snakemake zygote ended (exit {self.proc.wait()})")
        return reply

    def run(self, args, cwd, env, timeout) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            out.touch()
            err.touch()
            self.proc.stdin.write(json.dumps({"args": [str(a) for a in args], "cwd": str(cwd), "env": dict(env),
                                              "out": str(out), "err": str(err)}) + "\n")
            self.proc.stdin.flush()
            pid = self._next(timeout=60)["pid"]
            try:
                code = self._next(timeout=timeout)["returncode"]
            except queue.Empty:
                os.killpg(pid, signal.SIGKILL)
                self._next(timeout=60)
                raise subprocess.TimeoutExpired(["snakemake", *args], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess(["snakemake", *args], code, out.read_text(), err.read_text())


_zygote: Zygote | None = None


def run(args, cwd, env, timeout) -> subprocess.CompletedProcess:
    global _zygote
    if os.environ.get("LISA_BENCH_TEST_COLD_SNAKEMAKE") == "1":
        return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                              env=env, timeout=timeout)
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = Zygote()
    return _zygote.run(args, cwd, env, timeout)
