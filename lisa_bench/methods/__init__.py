"""Fine-tuning methods. Every module in this package registers one method class on import, and so
can a module outside it: a file or module named by an experiment's ``method_module`` key (or
``--method-module``), or a package that declares an entry point in the group ``lisa_bench.methods``.
Adding a baseline is one method file plus one experiment file."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from pathlib import Path

from ..errors import BadInput, choices_error
from .base import METHODS, Method, OptimConfig, register  # noqa: F401

ENTRY_POINT_GROUP = "lisa_bench.methods"
_loaded_files: dict[Path, str] = {}


def load_all() -> None:
    """Import the package's methods and those of installed plugins (entry points)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def load_method_module(spec: str, relative_to: Path | None = None) -> None:
    """Import a module that registers methods: a ``.py`` file (relative paths against ``relative_to``,
    then the working directory) or an importable module name. Loading the same file twice is a no-op."""
    if spec.endswith(".py"):
        candidates = [Path(spec)] if Path(spec).is_absolute() else (
            ([relative_to / spec] if relative_to else []) + [Path(spec)])
        path = next((p.resolve() for p in candidates if p.is_file()), None)
        if path is None:
            raise BadInput(f"method module {spec!r} does not exist (looked in "
                           f"{', '.join(str(p.parent.resolve()) for p in candidates)})")
        if path in _loaded_files:
            return
        name = f"lisa_bench_plugin_{path.stem}_{abs(hash(str(path))) & 0xFFFFFF:06x}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BadInput:
            raise
        except Exception as exc:
            del sys.modules[name]
            raise BadInput(f"method module {str(path)!r} failed to import ({type(exc).__name__}: {exc})") from None
        _loaded_files[path] = name
        return
    try:
        importlib.import_module(spec)
    except ImportError as exc:
        raise BadInput(f"method module {spec!r} cannot be imported ({exc}); give a .py file or an importable "
                       f"module name") from None


def get_method(name: str) -> type[Method]:
    load_all()
    if name not in METHODS:
        raise choices_error("method", name, sorted(METHODS))
    return METHODS[name]


def build_method(name: str, options: dict | None, seed: int = 0) -> Method:
    """The registered method ``name`` with its options parsed and checked."""
    cls = get_method(name)
    return cls(cls.parse_options(options), seed=seed)


def family(name: str, options: dict | None) -> str:
    """An experiment's method family (``Method.family``) from its method and options, as a run's metrics record
    them; a method that is not registered here (a plugin this environment lacks) is a family of its own name."""
    load_all()
    if name not in METHODS:
        return name
    try:
        return METHODS[name].family(options)
    except BadInput:
        return name
