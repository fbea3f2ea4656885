"""The one exception type for bad user input (the CLI prints it as one line and exits 2), and the one
helper that words an unknown value with its valid choices."""

from __future__ import annotations

from collections.abc import Iterable


class BadInput(ValueError):
    """A value given by the user is invalid; the message names the value and the valid choices."""


def choices_error(kind: str, value, choices: Iterable, where: str = "", more: str = "") -> BadInput:
    """``{where}: unknown {kind} {value!r}; valid choices: a, b, c{more}``."""
    valid = ", ".join(str(c) for c in choices)
    prefix = f"{where}: " if where else ""
    return BadInput(f"{prefix}unknown {kind} {value!r}; valid choices: {valid}{more}")


def check_choice(kind: str, value, choices: Iterable, where: str = "", more: str = ""):
    """Return ``value`` if it is one of ``choices``, else raise ``choices_error``."""
    choices = list(choices)
    if value not in choices:
        raise choices_error(kind, value, choices, where, more)
    return value
