"""Fine-tuning methods. Every module in this package registers one method class on import,
so adding a baseline is one new file here plus one experiment file under experiments/."""

import importlib
import pkgutil

from .base import METHODS, Method, OptimConfig, get_method, register  # noqa: F401


def load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
