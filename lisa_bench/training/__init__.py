"""The one training path every method shares: set-up -> resume -> loop of optimizer steps -> save."""

from .loop import train  # noqa: F401
