"""Settings checked against the kind their dataclass field declares: one helper for the recipe's settings
(``TrainConfig``) and every method's options, so that text where a number belongs (or ``maybe`` for a switch)
is one line naming it, not a TypeError deep in the run. A number written as YAML 1.1 reads it, as text
(``1e-5`` in a study file, which Snakemake loads), is taken as the number where the field wants one."""

from __future__ import annotations

import builtins
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable

import yaml

from . import yaml_io
from .errors import BadInput

_BAD = object()  # what ``_coerce`` returns for a value not of the kind
_NONE = type(None)
_WORDS = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", dict: "a mapping"}
_PLURAL = {int: "integers", float: "numbers", bool: "true/false values", str: "strings", dict: "mappings"}


def field_kinds(cls) -> dict[str, object]:
    """Each field of dataclass ``cls`` with its annotation resolved; a field whose annotation cannot be resolved
    (a plugin's name that is not importable) is left out, and not checked."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # resolve field by field
        pass
    module = sys.modules.get(cls.__module__)
    namespace = {**vars(builtins), **(vars(module) if module else {})}
    kinds = {}
    for f in dataclasses.fields(cls):
        try:
            kinds[f.name] = eval(f.type, namespace) if isinstance(f.type, str) else f.type  # noqa: S307
        except Exception:
            continue
    return kinds


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce(value, kind, convert: bool):
    """``value`` (converted where ``convert`` allows: YAML 1.1 number text to a float) if it is of ``kind``,
    else ``_BAD``. A kind this check does not know (a class of a plugin's own) takes any value."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        for conv in (False, True) if convert else (False,):  # an exact match before a converted one
            for member in args:
                got = _coerce(value, member, conv)
                if got is not _BAD:
                    return got
        return _BAD
    if kind is typing.Any:
        return value
    if kind is None or kind is _NONE:
        return value if value is None else _BAD
    if kind is bool:
        return value if isinstance(value, bool) else _BAD
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if kind is float:
        if convert and isinstance(value, str):
            try:
                parsed = yaml_io.load(value)
            except yaml.YAMLError:
                parsed = None
            if _number(parsed):
                value = float(parsed)
        return value if _number(value) and math.isfinite(value) else _BAD
    if kind is str:
        return value if isinstance(value, str) else _BAD
    if kind is dict or origin is dict:
        return value if isinstance(value, dict) else _BAD
    if kind is list or origin is list:
        if not isinstance(value, list):
            return _BAD
        items = [_coerce(v, args[0], True) for v in value] if args else value
        return _BAD if any(v is _BAD for v in items) else list(items)
    if kind is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _BAD
        if not args:
            return tuple(value)
        each = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(each) != len(value):
            return _BAD
        items = [_coerce(v, k, True) for v, k in zip(value, each)]
        return _BAD if any(v is _BAD for v in items) else tuple(items)
    if origin is typing.Literal:
        return value if value in args else _BAD
    return value


def describe(kind, mapping: str = "a mapping") -> str:
    """The kind in words: ``an integer``, ``a list of numbers or null``, ..."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        words = [describe(m, mapping) for m in args if m is not _NONE]
        return " or ".join(words + (["null"] if _NONE in args else []))
    if kind is None or kind is _NONE:
        return "null"
    if kind is dict or origin is dict:
        return mapping
    if kind in _WORDS:
        return _WORDS[kind]
    if kind is list or origin is list or kind is tuple or origin is tuple:
        if not args:
            return "a list"
        members = typing.get_args(args[0]) if typing.get_origin(args[0]) in (typing.Union, types.UnionType) else (args[0],)
        if (kind is tuple or origin is tuple) and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} " + " or ".join(_PLURAL.get(m, describe(m)) for m in dict.fromkeys(args))
        return "a list of " + " or ".join(_PLURAL.get(m, describe(m)) for m in members)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return getattr(kind, "__name__", str(kind))


def checked(cls, values: dict, error: Callable[[str, object, str], str], mapping: str = "a mapping") -> dict:
    """``values`` (field name -> value) with each checked against its field of dataclass ``cls`` (YAML 1.1
    number text where a number belongs taken as the number); the first that is not of its field's kind raises
    ``BadInput(error(name, value, kind in words))``. Names that are not fields pass through unchecked."""
    kinds = field_kinds(cls)
    out = dict(values)
    for name, value in values.items():
        if name not in kinds:
            continue
        got = _coerce(value, kinds[name], True)
        if got is _BAD:
            raise BadInput(error(name, value, describe(kinds[name], mapping)))
        out[name] = got
    return out
