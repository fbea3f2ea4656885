import contextlib

import pytest


@contextlib.contextmanager
def interrupted_at_step(n: int):
    """Within it, a training run stops with KeyboardInterrupt at its n-th optimizer step (a stand-in for a kill that
    leaves the last checkpoint behind, in the same process)."""
    from lisa_bench.training import loop

    real, calls = loop.train_step, {"n": 0}

    def stops(run, micro):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(run, micro)

    loop.train_step = stops
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        loop.train_step = real
