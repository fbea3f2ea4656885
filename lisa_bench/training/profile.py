"""Where a training step's time goes: the loop's own step (``loop._step``: the method's switch, the batch, forward,
backward, clipping, the optimizer with the lost-update meter's hooks, the memory meter, the accounting and the
log line) under torch.profiler, each part named by the loop (``lisa_bench.<part>``), summed over the profiled
steps and divided by their wall time.

What a step does besides forward, backward and the optimizer is the loop's overhead against a bare step; a part
above ``OVERHEAD_LIMIT`` of the step is one to make cheaper. The weight norms (every tenth of the run by default)
and the lost-update meter's window (at each held-out point) do not run at every step: each is profiled once and
shown spread over the steps of the run it would be part of (``run_steps``). The held-out passes are the run's,
not the step's, and are not counted. The step's wall time is taken again without the profiler (whose own
bookkeeping of every operator slows a CPU step), and the loop's step is set against ``train_step`` alone (the
forward, backward, clipping and update that the throughput figures time) on the same steps.

    lisa-bench profile --experiments full,lora-r128,lisa-e-h-2l --model smollm2-135m --set batch_size=4 \\
        --set max_length=128 --output results/cpu-profile/profile.json
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from .. import atomic
from ..config import TrainConfig
from ..errors import BadInput

OVERHEAD_LIMIT = 0.02  # a part of the step outside forward, backward and the optimizer above this is too much
CORE = ("forward", "backward", "optimizer")  # the optimizer's own time: its step less the meter's hooks in it
PARTS = ("forward", "backward", "clip", "optimizer", "lost_updates", "meter", "switch", "data", "accounting", "log")
PER_RUN = ("norms", "lost_updates_take")  # not every step: profiled once, spread over the run's steps


def _phase_seconds(prof) -> dict[str, float]:
    from .loop import PHASE_PREFIX

    out: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith(PHASE_PREFIX):
            out[event.key[len(PHASE_PREFIX):]] = out.get(event.key[len(PHASE_PREFIX):], 0.0) + \
                event.cpu_time_total / 1e6
    return out


def profile_steps(cfg: TrainConfig, steps: int = 4, warmup: int = 2, run_steps: int = 200) -> dict:
    """Profile ``steps`` steps of ``cfg``'s run after ``warmup`` unprofiled ones (the allocator, the method's first
    switch and the optimizer's state settle there), then time as many again without the profiler. ``run_steps``:
    the length of the run the per-run parts are spread over."""
    from torch.profiler import ProfilerActivity, profile

    from .logs import JsonLines
    from .loop import Record, _Logs, _norm_steps, _step, setup
    from .norms import weight_norms
    from .trackers import Trackers
    from .updates import LostUpdates

    if steps < 1 or warmup < 1:
        raise BadInput(f"profile: steps {steps} and warmup {warmup} must be at least 1")
    total = warmup + 2 * steps
    takes = 1 + (run_steps // cfg.eval_every if cfg.eval_every else 1)  # the first step's, each held-out point's
    # no held-out point and no checkpoint among the profiled steps: the run is longer than them
    cfg = dataclasses.replace(cfg, max_steps=total + 1, num_epochs=None, eval_every=None, checkpoint_every=0,
                              report_to="none")
    run = setup(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        logs = _Logs(Trackers(run.accelerator, cfg, out), JsonLines(out / "train_log.jsonl"),
                     JsonLines(out / "weight_norms.jsonl"), set(), False)
        record = Record()
        lost = LostUpdates(run.optimizer, cfg.seed) if run.method.trains else None
        step = 0
        for step in range(warmup):
            _step(run, step, record, lost, logs)
        bare_before = len(record.step_seconds)
        walls = []
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available()
                                                          and run.accelerator.device.type == "cuda" else [])) as prof:
            for step in range(warmup, warmup + steps):
                t0 = time.perf_counter()
                _step(run, step, record, lost, logs)
                walls.append(time.perf_counter() - t0)
        parts = _phase_seconds(prof)
        unprofiled = []
        for step in range(warmup + steps, total):
            t0 = time.perf_counter()
            _step(run, step, record, lost, logs)
            unprofiled.append(time.perf_counter() - t0)
        bare = record.step_seconds[bare_before + steps:]
        # the per-run parts, once each
        t0 = time.perf_counter()
        weight_norms(run.raw_model, run.layout, run.method)
        norms_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        if lost is not None:
            lost.take()
        take_seconds = time.perf_counter() - t0
    wall = sum(walls)
    shares = {p: parts.get(p, 0.0) / wall for p in PARTS}
    shares["optimizer"] = max(0.0, shares["optimizer"] - shares["lost_updates"])  # the hooks run inside the step
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))  # the loop's own lines between the named parts
    norm_calls = len(_norm_steps(cfg, run_steps))
    step_s = statistics.median(unprofiled)
    per_run = {"norms": norms_seconds * norm_calls / run_steps / step_s,
               "lost_updates_take": take_seconds * takes / run_steps / step_s}
    outside = {p: v for p, v in {**shares, **per_run}.items() if p not in CORE}
    return {"method": cfg.method, "model": cfg.model, "precision": cfg.precision, "batch_size": cfg.batch_size,
            "max_length": cfg.max_length, "device": str(run.accelerator.device), "profiled_steps": steps,
            "warmup_steps": warmup, "run_steps": run_steps,
            "step_seconds_profiled": wall / steps, "step_seconds": step_s,
            "train_step_seconds": statistics.median(bare),
            "loop_over_train_step": step_s / statistics.median(bare),
            "shares": shares, "per_run_shares": per_run, "norms_seconds": norms_seconds,
            "norm_calls_per_run": norm_calls, "lost_updates_take_seconds": take_seconds, "takes_per_run": takes,
            "outside_core_share": sum(outside.values()),
            "over_limit": sorted(p for p, v in outside.items() if v > OVERHEAD_LIMIT and p != "other")}


def table(rows: list[dict]) -> str:
    """The shares as a markdown table, one row per experiment."""
    cols = list(PARTS) + ["other"] + list(PER_RUN)
    head = ("| experiment | step s | train_step s | loop / train_step | " + " | ".join(cols) +
            " | outside forward, backward, optimizer |")
    lines = [head, "|" + "---|" * (5 + len(cols))]
    for r in rows:
        values = {**r["shares"], **r["per_run_shares"]}
        lines.append(f"| {r['experiment']} | {r['step_seconds']:.3f} | {r['train_step_seconds']:.3f} | "
                     f"{r['loop_over_train_step']:.3f} | " + " | ".join(f"{100 * values[c]:.1f}%" for c in cols) +
                     f" | {100 * r['outside_core_share']:.1f}% |")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="where a training step's time goes (torch.profiler), per experiment",
                       description="Profiles the loop's own step for each experiment (after warm-up steps) and "
                                   "prints each part's share of the step: forward, backward, the optimizer, and "
                                   "the loop's overhead (the lost-update meter, the memory meter, the method's "
                                   "switch, the batch, the accounting, the log; the weight norms and the meter's "
                                   "window spread over a run of --run-steps), and the step against train_step "
                                   "alone.")
    p.add_argument("--experiments", required=True, help="comma-separated experiment names or YAML files")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=4, help="profiled steps (and as many timed without the profiler)")
    p.add_argument("--warmup", type=int, default=2, help="steps before the profiled ones")
    p.add_argument("--run-steps", type=int, default=200, help="the run the per-run parts are spread over")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="a training setting for every experiment (value parsed as YAML), e.g. --set batch_size=4")
    p.add_argument("--output", help="write the rows as JSON here (and the table beside it, .md)")
    p.set_defaults(func=_cmd_profile)


def _cmd_profile(args) -> int:
    from ..cli import _key_values
    from ..config import build_config, resolve_experiment
    from ..provenance import provenance

    settings = _key_values(args.settings, "--set")
    configs = [(name, build_config(resolve_experiment(name), {"model": args.model}, {}, layers=[settings]))
               for name in [e.strip() for e in args.experiments.split(",") if e.strip()]]
    if not configs:
        raise BadInput("profile: --experiments names no experiment; give e.g. full,lora-r128,lisa-e-h-2l")
    rows = []
    for name, cfg in configs:
        print(f"profile: {name} on {cfg.model} ...", file=sys.stderr, flush=True)
        rows.append({"experiment": name, **profile_steps(cfg, args.steps, args.warmup, args.run_steps)})
    text = table(rows)
    print(text)
    if args.output:
        out = Path(args.output)
        atomic.write_json(out, {"rows": rows, "provenance": provenance(vars(args) | {"func": None},
                                                                     torch.device(rows[0]["device"]))})
        atomic.write_text(out.with_suffix(".md"), text + "\n")
        print(f"profile: wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0
