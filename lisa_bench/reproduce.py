"""``lisa-bench reproduce``: run a study's Snakemake pipeline (``make reproduce`` runs the default study),
print its tables and compare its headline figures with the study's committed reference; and
``lisa-bench publish``: make a finished run the committed reference.

The pipeline writes under ``runs/<study>/`` (its tables and figures in ``runs/<study>/results/``); the
committed reference of a study is ``results/<study>/``. The two live apart, so a fresh clone's run
always trains, evaluates and measures for real, and reruns stay incremental.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import yaml_io
from .claims import Busy, Claim, holder_of, recorded
from .errors import BadInput


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="run a study's pipeline (default: config/default.yaml), print its tables "
                                         "and compare them with the committed reference",
                       description="Runs `snakemake --cores CORES --configfile CONFIG` in the project directory "
                                   "(where the Snakefile is), prints the study's Markdown tables, then compares its "
                                   "headline figures with results/<study>/ (the committed reference) and writes "
                                   "runs/<study>/results/comparison.{csv,md,tex}. Extra arguments after -- go to "
                                   "snakemake.")
    p.add_argument("--configfile", default=None,
                   help="a study's config, relative to --directory (default: config/default.yaml)")
    p.add_argument("--cores", default="all")
    p.add_argument("--directory", default=".", help="the project directory holding the Snakefile (default: .)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a figure is outside its tolerance")
    p.add_argument("--resume-from", metavar="DIR", default=None,
                   help="first restore the finished runs whose records a sitting published (`publish --records-only`; "
                        "e.g. results/<study>/runs), so that this run does only what they lack (docs/pipeline.md)")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="further snakemake arguments, after --")
    p.set_defaults(func=_cmd_reproduce)
    q = sub.add_parser("publish", help="copy a finished study's results into results/<study>/ (the reference)",
                       description="Replaces results/<study>/ with runs/<study>/results/ in one rename, after "
                                   "checking that the run finished (its tables exist).")
    q.add_argument("--configfile", default=None, help="the study's config (default: config/default.yaml)")
    q.add_argument("--directory", default=".")
    q.add_argument("--records-only", action="store_true",
                   help="a sitting of a long study: copy each finished run's records (and the job timings) into "
                        "results/<study>/runs without tables, for `report --runs` and `reproduce --resume-from`")
    q.set_defaults(func=_cmd_publish)


def _study(args, check=None) -> tuple[Path, Path, str]:
    """The project directory, the study's config file and its name (``check``: a function that checks the
    config first and returns it)."""
    import yaml

    root = Path(args.directory)
    if not (root / "Snakefile").is_file():
        raise BadInput(f"no Snakefile in {str(root.resolve())!r}; run from the lisa-bench project directory "
                       f"or give --directory")
    given = Path(args.configfile or "config/default.yaml")
    configfile = given if given.is_absolute() else root / given  # relative to the project directory
    if not configfile.is_file():
        studies = sorted(p.name for p in (root / "config").glob("*.yaml") if p.name != "schema.yaml")
        raise BadInput(f"unknown study {str(given)!r}; valid choices: " + ", ".join(f"config/{s}" for s in studies))
    config = yaml.safe_load(configfile.read_text()) if check is None else check(configfile, root)
    if not isinstance(config, dict) or not config.get("name"):
        raise BadInput(f"config {str(given)!r} names no study (its `name:` is missing)")
    return root, configfile, config["name"]


# Snakemake arguments that send the jobs elsewhere or run none: a study may then ask for a device this machine lacks
ELSEWHERE = ("--profile", "--executor", "-e", "--dry-run", "--dryrun", "-n", "--workflow-profile")


def _check_device(root: Path, configfile: Path, extra: list[str]) -> None:
    """A study that trains on CUDA, run here, on a machine without a CUDA GPU: refused before any job (else every
    job fails in its log). Submitting to a cluster (--profile, --executor) or a dry run is allowed."""
    import yaml

    device = (yaml.safe_load(configfile.read_text()) or {}).get("device")
    if device != "cuda" or any(a.split("=")[0] in ELSEWHERE for a in extra):
        return
    import torch

    if not torch.cuda.is_available():
        raise BadInput(f"config device: 'cuda', but this machine has no CUDA GPU; valid: run it on one, submit it "
                       f"to a cluster (lisa-bench reproduce --configfile {configfile.relative_to(root)} -- --profile "
                       f"profiles/slurm), plan its jobs (-- --dry-run), or a study with device: cpu")


def run_dir(root: Path, name: str) -> Path:
    return root / "runs" / name / "results"


def reference_dir(root: Path, name: str) -> Path:
    return root / "results" / name


def _cmd_reproduce(args) -> int:
    from .reporting.compare import compare, write_comparison
    from .study import check_study_file

    root, configfile, name = _study(args, check=check_study_file)  # bad input: one line, before Snakemake
    extra = [a for a in args.snakemake_args if a != "--"]
    _check_device(root, configfile, extra)
    # the extra arguments first: targets after --configfile (which takes several files) would be read as config
    # files, and our options after them end any list option the user left open; a job a kill cut short is
    # rerun, never taken as done
    rerun = [] if {"--rerun-incomplete", "--ri"} & set(extra) else ["--rerun-incomplete"]
    cmd = [sys.executable, "-m", "snakemake", *extra, "--cores", str(args.cores), *rerun, "--configfile",
           str(configfile.resolve())]
    # the rules run the suite with Snakemake's own interpreter; tools installed next to it come first on PATH too
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    claim = _claim_study(root, name)
    try:
        _clear_stale_lock(root, configfile, claim, env)
        if args.resume_from:
            restored = restore_records(Path(args.resume_from), root / "runs" / name,
                                       (yaml_io.load(Path(configfile).read_text()).get("sweep") or {}))
            print(f"[lisa-bench] restored {restored} finished runs' records from {args.resume_from}", flush=True)
        print("[lisa-bench] snakemake " + " ".join(cmd[3:]), flush=True)
        start = time.perf_counter()
        # Snakemake inherits the claim: a reproduce killed while its Snakemake lives still holds the study
        code = subprocess.run(cmd, cwd=root, env=env, pass_fds=(claim.fd,)).returncode
        wall = time.perf_counter() - start
    finally:
        claim.release()
    if code != 0:
        logs = f"; see the logs under runs/{name}/logs" if (root / "runs" / name / "logs").is_dir() else ""
        print(f"lisa-bench: error: the pipeline failed (snakemake exit {code}){logs}", file=sys.stderr)
        return code
    out, ref = run_dir(root, name), reference_dir(root, name)
    for table in sorted((out / "tables").glob("*.md")) + sorted((out / "paper").glob("*.md")):
        print(f"\n{table.read_text()}")  # the study's tables; the paper's numbers beside ours, where it has them
    times = stage_times(root / "runs" / name)
    if len(times):
        write_stage_times(times, out, wall)
        print(f"\n{(out / 'stage_times.md').read_text()}")
    if not ref.is_dir():
        print(f"\n[lisa-bench] no committed reference for study {name!r} (results/{name}/); "
              f"`lisa-bench publish` makes this run the reference")
        return 0
    table = compare(ref, out)
    caption = f"Study {name}: this run (runs/{name}/results) against the committed reference (results/{name})"
    write_comparison(table, out / "comparison", caption)
    print(f"\n{(out / 'comparison.md').read_text()}")
    outside = table[~table["within"]]
    print(f"[lisa-bench] {len(table) - len(outside)} of {len(table)} headline figures within their tolerance"
          + (f"; outside: {', '.join(outside['row'] + ' ' + outside['figure'])}" if len(outside) else ""))
    return 1 if args.strict and len(outside) else 0


def claims_dir(root: Path) -> Path:
    """Where each study's `lisa-bench reproduce` records itself while it runs (claims.py)."""
    return root / ".snakemake" / "lisa-bench"


def _claim_study(root: Path, name: str) -> Claim:
    """One reproduce per study and project directory; a second is refused with the first one's pid."""
    claim = Claim(claims_dir(root) / f"{name}.claim", f"lisa-bench reproduce {name}")
    try:
        claim.stale = claim.acquire()
    except Busy as exc:
        raise BadInput(f"study {name!r} is already running in {str(root.resolve())!r}: {exc.holder}; wait for it "
                       f"to end or stop it (kill {exc.holder.pid}), then rerun") from None
    return claim


def _clear_stale_lock(root: Path, configfile: Path, claim: Claim, env: dict) -> None:
    """Snakemake's lock (.snakemake/locks/) records no process, so a kill leaves it and every later run
    stops at it. A reproduce that left one left its claim too: when such a dead claim is there and no live
    reproduce shares the directory, the lock is the dead one's and goes (`snakemake --unlock` clears every
    lock of the directory, so never while another study runs). A lock without a claim (a plain `snakemake`,
    alive or not) is left to Snakemake, which names --unlock."""
    locks = root / ".snakemake" / "locks"
    if not (locks.is_dir() and any(locks.iterdir())):
        return
    others = [p for p in claims_dir(root).glob("*.claim") if p != claim.path]
    if any(holder_of(p) for p in others):
        return
    dead = claim.stale or next((h for p in others if (h := recorded(p))), None)
    if dead is None:
        return
    done = subprocess.run([sys.executable, "-m", "snakemake", "--unlock", "--cores", "1", "--configfile",
                           str(configfile.resolve())], cwd=root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise BadInput(f"`snakemake --unlock` failed in {str(root.resolve())!r}: "
                       f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}")
    print(f"[lisa-bench] cleared the Snakemake lock left by {dead}, which is no longer running", flush=True)


def stage_times(runs: Path):
    """Seconds per pipeline stage from Snakemake's benchmark files (runs/<study>/benchmarks/<stage>/...): jobs,
    their summed wall time and the slowest job. A job that was not rerun keeps the time of its last run."""
    import pandas as pd

    rows = []
    for tsv in sorted((runs / "benchmarks").rglob("*.tsv")):
        stage = tsv.relative_to(runs / "benchmarks").parts[0].removesuffix(".tsv")
        rows.append({"stage": stage, "s": float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])})
    if not rows:
        return pd.DataFrame(columns=["stage", "jobs", "job_seconds", "slowest_job_seconds"])
    table = pd.DataFrame(rows).groupby("stage", sort=False)["s"].agg(["size", "sum", "max"]).reset_index()
    table.columns = ["stage", "jobs", "job_seconds", "slowest_job_seconds"]
    return table.sort_values("job_seconds", ascending=False)


def write_stage_times(table, out: Path, wall: float) -> None:
    """stage_times.{csv,md}: the jobs' seconds per stage (jobs may run side by side, so they can add up to more
    than the pipeline's wall time, which this invocation measured and the Markdown states)."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "stage_times.csv", index=False)
    (out / "stage_times.md").write_text(
        f"Pipeline stages (Snakemake benchmark files; wall time of this `lisa-bench reproduce`: {wall / 60:.1f} min; "
        f"jobs may run side by side):\n\n{table.to_markdown(index=False, floatfmt='.1f')}\n")


# what a run records about itself (no weights, no checkpoints): enough for `lisa-bench report --runs` to redraw
# every table and figure of a published study, and for a later sitting to resume a study from them
RUN_RECORDS = ("run.json", "metrics.json", "train_log.jsonl", "weight_norms.jsonl", "scores.json", "samples.jsonl",
               "mt_bench.json", "answers.jsonl", "best.yaml")


def copy_run_records(runs: Path, dest: Path) -> int:
    """Copy each run's records (RUN_RECORDS) of a study's run tree into ``dest``, in the same layout; unfinished
    runs (hidden .partial directories) are left out. Returns the number of files copied."""
    copied = 0
    for stage in ("train", "eval", "mt_bench", "sweep"):
        for path in sorted((runs / stage).rglob("*")) if (runs / stage).is_dir() else []:
            rel = path.relative_to(runs)
            if path.name in RUN_RECORDS and path.is_file() and not any(p.startswith(".") for p in rel.parts):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / rel)
                copied += 1
    for path in sorted((runs / "benchmarks").rglob("*.tsv")) if (runs / "benchmarks").is_dir() else []:
        (dest / path.relative_to(runs)).parent.mkdir(parents=True, exist_ok=True)  # each job's time, for sittings
        shutil.copy2(path, dest / path.relative_to(runs))
    return copied


def _stale_choices(records: Path, sweep: dict) -> set[Path]:
    """The published choices (sweep/<model>/<exp>/best.yaml) whose grid the study has since grown: a choice among
    fewer rates than the study sweeps now is not restored, so Snakemake trains the new points and chooses again
    (and retrains the runs that took the old choice)."""
    grid, seeds = sweep.get("lr") or {}, sweep.get("seeds", [0])
    stale = set()
    for best in (records / "sweep").rglob("best.yaml") if (records / "sweep").is_dir() else []:
        exp = best.parent.name
        rates = grid.get(exp) or grid.get(exp.split("+")[0]) or []  # a grid point sweeps its experiment's rates
        wanted = {f"lr{float(lr):g}/seed{s}" for lr in rates for s in seeds}
        if not wanted <= {f"{p.parent.name}/{p.name}" for p in best.parent.glob("lr*/seed*")}:
            stale.add(best)
    return stale


def restore_records(records: Path, runs: Path, sweep: dict | None = None) -> int:
    """Put the runs a sitting published (``publish --records-only``) back into a study's run tree, so that
    Snakemake finds them done: a training run only with its evaluations (its weights are not published, so one
    whose lm-eval or MT-Bench answers are missing is left to rerun), each restored output given a time after its
    inputs' in the pipeline's order (models, sweep, its choice, training, evaluation); ``sweep``: the study's
    sweep settings, whose grown grids make a published choice stale. Returns how many training runs were
    restored; a run already in the tree is left as it is."""
    if not (records / "train").is_dir() and not (records / "sweep").is_dir():  # a sitting may have run only a sweep
        raise BadInput(f"--resume-from {str(records)!r}: no published runs there (a train/ or sweep/ directory of "
                       f"records); `lisa-bench publish --records-only` writes them")
    evaluated = {p.parent.relative_to(records / "eval") for p in (records / "eval").rglob("scores.json")} \
        if (records / "eval").is_dir() else set()
    answered = {p.parent.parent.relative_to(records / "mt_bench") for p in (records / "mt_bench").rglob("mt_bench.json")}\
        if (records / "mt_bench").is_dir() else None
    now, order = time.time(), []
    for point in sorted((records / "sweep").rglob("metrics.json")) if (records / "sweep").is_dir() else []:
        order.append((0, point.parent))
    stale = _stale_choices(records, sweep or {})
    for best in sorted((records / "sweep").rglob("best.yaml")) if (records / "sweep").is_dir() else []:
        if best in stale:
            print(f"[lisa-bench] not restored: {best.relative_to(records)}, chosen among fewer rates than the study "
                  f"sweeps now; its new points train and it is chosen again", flush=True)
            continue
        order.append((1, best))
    restored = 0
    for metrics in sorted((records / "train").rglob("metrics.json")) if (records / "train").is_dir() else []:
        run = metrics.parent.relative_to(records / "train")
        if run not in evaluated or (answered is not None and run not in answered) or (runs / "train" / run).exists():
            continue
        order.append((2, metrics.parent))
        order.append((3, records / "eval" / run))
        if answered is not None:
            order.append((3, records / "mt_bench" / run))
        restored += 1
    for rank, source in order:
        dest = runs / source.relative_to(records)
        if dest.exists() and rank != 3:
            continue
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
            for path in [p for p in dest.rglob("*")] + [dest]:
                os.utime(path, (now - 10 + rank, now - 10 + rank))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            os.utime(dest, (now - 10 + rank, now - 10 + rank))
    models = runs / "models"  # the fetch markers the training and grid runs depend on: older than all of them
    for model in sorted(d for part in ("train", "sweep") if (runs / part).is_dir() for d in (runs / part).iterdir()):
        marker = models / f"{model.name}.fetched"
        if not marker.exists():
            models.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{model.name} (restored with its published runs)\n")
            os.utime(marker, (now - 11, now - 11))
    return restored


def _cmd_publish(args) -> int:
    from . import atomic

    root, _, name = _study(args)
    out, ref = run_dir(root, name), reference_dir(root, name)
    if args.records_only:  # a sitting: the finished runs' records, next to whatever earlier sittings published
        copied = copy_run_records(out.parent, ref / "runs")
        print(f"[lisa-bench] published the records of runs/{name}'s finished runs -> results/{name}/runs ({copied} "
              f"files; `lisa-bench report --runs results/{name}/runs` draws what is done, `lisa-bench reproduce "
              f"--resume-from results/{name}/runs` continues from them)")
        return 0
    if not (out / "tables").is_dir() and not (out / "memory").is_dir() and not list(out.glob("*.csv")):
        raise BadInput(f"study {name!r} has no finished run in {str(out)!r}; run `lisa-bench reproduce` first")
    notes = ref / "README.md"  # what a person wrote about the reference stays with it
    kept = notes.read_text() if notes.is_file() and not (out / "README.md").exists() else None
    with atomic.staged_dir(ref) as staging:
        shutil.copytree(out, staging, dirs_exist_ok=True)
        if (ref / "runs").is_dir():  # what earlier sittings published (job timings a resumed run does not restore)
            shutil.copytree(ref / "runs", Path(staging) / "runs", dirs_exist_ok=True)
        copy_run_records(out.parent, Path(staging) / "runs")
        if kept is not None:
            (Path(staging) / "README.md").write_text(kept)
    print(f"[lisa-bench] published runs/{name}/results -> results/{name} (each run's records in results/{name}/runs: "
          f"`lisa-bench report --runs results/{name}/runs` redraws the tables and figures)"
          + (" (its README.md kept)" if kept is not None else ""))
    return 0
