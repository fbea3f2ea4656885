"""The one exception type for bad user input: the CLI prints it as one line and exits 2."""


class BadInput(ValueError):
    """A value given by the user is invalid; the message names the value and the valid choices."""


def choices_error(kind: str, value, choices) -> BadInput:
    valid = ", ".join(str(c) for c in choices)
    return BadInput(f"unknown {kind} {value!r}; valid choices: {valid}")
