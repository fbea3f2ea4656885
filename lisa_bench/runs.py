"""Where a run lives and what it is.

A pipeline's run directory is named by ``model_dir_name`` (a model name of any form becomes one safe path
component), and every stage writes ``run.json`` beside its outputs: the run's model (as the user named it),
experiment and seed. Reports find runs by these files, at any depth, never by the shape of their paths.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from . import atomic
from .errors import BadInput

IDENTITY = "run.json"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def _is_path(name: str) -> bool:
    return bool(name.strip()) and (name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().is_dir())


def model_dir_name(name: str) -> str:
    """One path component for a model: a registered name as it is; a hub id ``org/name`` as ``org--name`` (the
    hub cache's own convention); ``random:<arch>`` as ``random--<arch>``; a local directory as its last component
    and a short hash of its absolute path (two checkpoints both called ``final`` stay apart). Anything else
    (``..``, spaces, shell characters) is refused."""
    if _SAFE.fullmatch(name) and ".." not in name:
        return name
    if name.startswith("random:") and _SAFE.fullmatch(name[7:]):
        return "random--" + name[7:]
    if _is_path(name):
        path = Path(name).expanduser().resolve()
        stem = re.sub(r"[^A-Za-z0-9._-]", "-", path.name).strip(".-") or "model"
        return f"{stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if _HUB_ID.fullmatch(name) and ".." not in name:
        return name.replace("/", "--")
    raise BadInput(f"model {name!r} cannot name a run directory; valid choices: a registered name, a hub id "
                   f"org/name (letters, digits, '.', '_', '-'), random:<architecture>, or an existing local directory")


def model_dirs(models: list[str], where: str = "config models") -> dict[str, str]:
    """{directory name: model name} of a study's models; two models that would share a directory are refused."""
    dirs: dict[str, str] = {}
    for model in models:
        try:
            key = model_dir_name(model)
        except BadInput as exc:
            raise BadInput(f"{where}: {exc}") from None
        if key in dirs and dirs[key] != model:
            raise BadInput(f"{where}: models {dirs[key]!r} and {model!r} would share the run directory {key!r}; "
                           f"valid: models with distinct names")
        dirs[key] = model
    return dirs


def write_identity(out: str | Path, model: str, experiment: str, seed: int, **extra) -> None:
    atomic.write_json(Path(out) / IDENTITY, {"model": model, "experiment": experiment, "seed": int(seed), **extra})


def recorded_identity(run_dir: str | Path) -> dict | None:
    """The identity a run wrote (run.json), or None."""
    path = Path(run_dir) / IDENTITY
    return json.loads(path.read_text()) if path.is_file() else None


def _path_identity(run_dir: Path) -> dict | None:
    """Pipeline runs written before run.json existed: ``.../<model>/<experiment>/seed<k>``."""
    if run_dir.name.startswith("seed") and run_dir.name[4:].isdigit():
        return {"model": run_dir.parent.parent.name, "experiment": run_dir.parent.name, "seed": int(run_dir.name[4:])}
    return None


def read_identity(run_dir: str | Path) -> dict | None:
    """A run's (model, experiment, seed): its run.json; else, for a pipeline run from before run.json, its path;
    else its metrics.json (a run trained through the Python API: the method stands for the experiment); else None."""
    run_dir = Path(run_dir)
    identity = recorded_identity(run_dir) or _path_identity(run_dir)
    if identity is None and (run_dir / "metrics.json").is_file():
        m = json.loads((run_dir / "metrics.json").read_text())
        identity = {"model": m["model"], "experiment": m.get("experiment") or m["method"], "seed": m["seed"]}
    return identity


def copy_identity(run: str | Path | None, out: str | Path) -> None:
    """An evaluation of a trained run carries that run's identity into its own output directory."""
    identity = read_identity(run) if run else None
    if identity is not None:
        write_identity(out, **{**identity, "run": str(run)})


def find_runs(sources: list[str | Path], filename: str, skip: tuple[str, ...] = ("sweep",)):
    """(model, experiment, seed, path) of every ``filename`` under ``sources`` (each a run directory or a directory
    holding runs at any depth), by the identity each run records. Directories named in ``skip`` directly under a
    source (a sweep's grid runs) are left out. The same run found twice (one identity in two directories) is
    refused: averaging them as one seed would be wrong."""
    depth = len(Path(filename).parts)
    seen: dict[tuple, Path] = {}
    for source in map(Path, sources):
        paths = [source / filename] if (source / filename).is_file() else sorted(source.rglob(filename))
        for path in paths:
            parts = path.relative_to(source).parts
            if parts[:1] in [(s,) for s in skip] or any(p.startswith(".") for p in parts):
                continue  # a sweep's grid runs; an unfinished run's hidden working directory
            run_dir = path.parents[depth - 1]
            identity = read_identity(run_dir)
            if identity is None:
                continue
            key = (identity["model"], identity["experiment"], int(identity["seed"]))
            if key in seen and seen[key] != path:
                raise BadInput(f"two runs of model {key[0]!r}, experiment {key[1]!r}, seed {key[2]}: "
                               f"{str(seen[key].parents[depth - 1])!r} and {str(run_dir)!r}; valid: one run per "
                               f"model, experiment and seed (give the report one of them)")
            seen[key] = path
    for (model, exp, seed), path in sorted(seen.items()):
        yield model, exp, seed, path
