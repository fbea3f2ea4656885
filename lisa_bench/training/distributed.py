"""Data parallelism for methods whose trainable set changes during a run (DDP's reducer fixes it)."""

from __future__ import annotations

import os

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


# ---- FSDP2 --------------------------------------------------------------------------------------
# Each decoder block and then the root are wrapped with torch's fully_shard, so a block's parameters are
# gathered only while it runs. No mixed-precision policy: FSDP2 fixes its dtypes from the parameters
# trainable at the first forward (pytorch issue 186998), which LISA changes; parameters are gathered in
# their storage dtype and bf16-mixed uses autocast, as on one device. Gradients are reduce-scattered as a
# sum (divide factor 1, sum reductions, which gloo also supports): each process's loss is already its
# share of the global token mean, so the sum is the gradient of that mean.

def check_fsdp(world: int, device_type: str) -> None:
    from ..errors import BadInput

    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        raise BadInput(f"sharding 'fsdp' needs torch >= 2.6 (FSDP2's fully_shard), found torch "
                       f"{torch.__version__}") from None
    if device_type == "cpu" and world < 2:
        raise BadInput(f"sharding 'fsdp' on the CPU needs at least 2 processes (launched by torchrun or accelerate), "
                       f"got {world}; run single-process training without sharding")


def ensure_process_group(device_type: str) -> None:
    """FSDP2 needs a process group. Under torchrun or accelerate launch (RANK set) the device mesh joins
    theirs; one process started without a launcher (world size 1 on one GPU) gets one of its own, in memory,
    instead of init_process_group's error about RANK missing from the environment."""
    if torch.distributed.is_initialized() or "RANK" in os.environ:
        return
    torch.distributed.init_process_group("nccl" if device_type == "cuda" else "gloo",
                                         store=torch.distributed.HashStore(), rank=0, world_size=1)


def shard_model(model, layout, device: torch.device, world: int):
    """fully_shard each decoder block, then the root, over a 1-D mesh of all processes."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    ensure_process_group(device.type)
    mesh = init_device_mesh(device.type, (world,))
    for block in layout.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            if hasattr(module, "set_force_sum_reduction_for_comms"):  # gloo needs it (no pre/post-divided sum)
                module.set_force_sum_reduction_for_comms(True)
    return model


def load_sharded_weights(model, full_state: dict, device: torch.device) -> None:
    """Give every process its shard of the weights that process 0 loaded (the others built the model on
    the meta device), and process 0's buffers (rotary frequencies and the like)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if torch.distributed.get_rank() != 0:
        model.to_empty(device=device)
    set_model_state_dict(model, full_state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    # The buffers take process 0's dtype and shape before its values. A loader may keep them in another dtype
    # than the meta build does: the tiny test model, cast whole to bf16, holds bf16 rotary frequencies, its meta
    # build fp32 ones (transformers' own loaders keep fp32 on both sides), and a broadcast between the two
    # filled half of the fp32 buffer's bytes and left the rest as to_empty's garbage (step 0's loss off by up
    # to 5e-4 under bf16, and in one CI run NaN).
    layout = [[(name, b.dtype, tuple(b.shape)) for name, b in model.named_buffers()]]
    torch.distributed.broadcast_object_list(layout, src=0)
    for name, dtype, shape in layout[0]:
        owner, _, attr = name.rpartition(".")
        module, buffer = model.get_submodule(owner), model.get_buffer(name)
        if buffer.dtype != dtype or tuple(buffer.shape) != shape:
            setattr(module, attr, torch.empty(shape, dtype=dtype, device=buffer.device))
        torch.distributed.broadcast(model.get_buffer(name).data, src=0)


def full_state_dict(model) -> dict:
    """The whole model's weights on process 0's CPU (a collective: every process calls it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def is_sharded(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


DEEPSPEED_REFUSED = ("ZeRO-3 partitions the parameters with the trainable set fixed at initialisation, and LISA "
                     "changes it every K steps; BAdam works around it only through DeepSpeed's private internals")


def refuse_deepspeed(setting: str, choices) -> None:
    """Every place that takes a launcher or sharding choice refuses DeepSpeed with its reason, not as unknown;
    ``setting`` names the value as the user gave it (``--launcher deepspeed``, ``sharding 'deepspeed'``)."""
    from ..errors import BadInput

    raise BadInput(f"{setting} is refused: {DEEPSPEED_REFUSED}; valid choices: {', '.join(choices)} (FSDP2 shards "
                   f"LISA correctly)")
