"""Data parallelism for methods whose trainable set changes during a run (DDP's reducer fixes it)."""

from __future__ import annotations

import torch


def sync_gradients(params, accelerator) -> None:
    """Average gradients across processes for methods that cannot be wrapped in DDP (LISA)."""
    world = accelerator.num_processes
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
            p.grad.div_(world)


def replicas_in_sync(model, accelerator) -> bool:
    """After data-parallel training every process must hold the same weights."""
    with torch.no_grad():
        local = torch.stack([sum(p.detach().double().sum() for p in model.parameters()),
                             sum(p.detach().double().abs().sum() for p in model.parameters())]).to(accelerator.device)
    gathered = accelerator.gather(local[None]).reshape(-1, 2)
    return bool(torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=1e-9, atol=0))
