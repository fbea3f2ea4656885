"""Exact accounting from tensors: the one bytes helper, optimizer state, and the one counter of the
tensors autograd saves for backward."""

from __future__ import annotations

import torch


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes this process holds of a tensor: all of it, or its local shard of a sharded (DTensor) one."""
    if hasattr(t, "to_local") and hasattr(t, "placements"):
        t = t.to_local()
    return t.numel() * t.element_size()


def _state_tensors(value):
    """Tensors held in one optimizer-state entry: tensors themselves, and tensor attributes of helper
    objects kept there (e.g. GaLore's projector and its orthogonal matrix)."""
    if torch.is_tensor(value):
        yield value
    elif hasattr(value, "__dict__"):
        yield from (v for v in vars(value).values() if torch.is_tensor(v))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor held in the optimizer's state (moments, step counters, projections)."""
    return sum(tensor_bytes(t) for state in optimizer.state.values() for value in state.values()
               for t in _state_tensors(value))


def trainable_param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class SavedTensorCounter:
    """Counts the unique storages autograd saves for backward, parameters excluded. Use its ``hooks()``
    around a forward pass; works on real devices and on the meta device (storages are told apart by
    their identity, not their address)."""

    def __init__(self, params):
        self.param_storages = {p.untyped_storage()._cdata for p in params}
        self.seen: dict[int, int] = {}

    def pack(self, t):
        storage = t.untyped_storage()
        if storage._cdata not in self.param_storages:
            self.seen[storage._cdata] = storage.nbytes()
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())
