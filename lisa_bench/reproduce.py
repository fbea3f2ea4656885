"""``lisa-bench reproduce``: run a study's Snakemake pipeline (``make reproduce`` runs this on the default
study) and print its tables."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .errors import BadInput


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="run a study's pipeline (default: config/default.yaml) and print its tables",
                       description="Runs `snakemake --cores CORES [--configfile CONFIG]` in the project directory "
                                   "(where the Snakefile is), then prints the study's Markdown tables. Extra "
                                   "arguments after -- go to snakemake.")
    p.add_argument("--configfile", default=None,
                   help="a study's config, relative to --directory (default: config/default.yaml)")
    p.add_argument("--cores", default="all")
    p.add_argument("--directory", default=".", help="the project directory holding the Snakefile (default: .)")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="further snakemake arguments, after --")
    p.set_defaults(func=_cmd_reproduce)


def study_name(configfile: Path) -> str:
    import yaml

    return yaml.safe_load(configfile.read_text())["name"]


def _cmd_reproduce(args) -> int:
    root = Path(args.directory)
    if not (root / "Snakefile").is_file():
        raise BadInput(f"no Snakefile in {str(root.resolve())!r}; run from the lisa-bench project directory "
                       f"or give --directory")
    given = Path(args.configfile or "config/default.yaml")
    configfile = given if given.is_absolute() else root / given  # relative to the project directory
    if not configfile.is_file():
        studies = sorted(p.name for p in (root / "config").glob("*.yaml") if p.name != "schema.yaml")
        raise BadInput(f"unknown study {str(given)!r}; valid choices: " + ", ".join(f"config/{s}" for s in studies))
    extra = [a for a in args.snakemake_args if a != "--"]
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile", str(configfile.resolve()), *extra]
    # the pipeline's shell commands call `lisa-bench`: the one installed next to this interpreter
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    print("[lisa-bench] " + " ".join(cmd[2:]), flush=True)
    code = subprocess.run(cmd, cwd=root, env=env).returncode
    if code != 0:
        print(f"lisa-bench: error: the pipeline failed (snakemake exit {code}); see the logs under runs/",
              file=sys.stderr)
        return code
    tables = root / "results" / study_name(configfile) / "tables"
    for table in sorted(tables.glob("*.md")):
        print(f"\n{table.read_text()}")
    return 0
