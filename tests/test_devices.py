"""The one device check."""

import pytest
import torch

from lisa_bench.devices import resolve_device
from lisa_bench.errors import BadInput


def test_auto_and_cpu():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None)
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_devices():
    with pytest.raises(BadInput, match="unknown device 'tpu'; valid choices: auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(BadInput, match="device 'cuda:99' is not available"):
        resolve_device("cuda:99")
