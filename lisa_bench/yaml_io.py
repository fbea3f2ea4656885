"""YAML as users write it: PyYAML follows YAML 1.1, where ``1e-5`` (no dot) is a string, not a float, so a
learning rate written that way (or a sweep's ``--set lr=3e-05``) would reach the config as text. Every
YAML the suite reads from a user goes through ``load``, which reads such numbers as floats (YAML 1.2)."""

from __future__ import annotations

import re

import yaml


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load(text):
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-5``, ``3E+2``)."""
    return yaml.load(text, Loader=_Loader)
