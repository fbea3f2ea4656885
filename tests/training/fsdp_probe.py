"""Run under torchrun with 2 processes (tests/training/test_fsdp.py): LISA on FSDP2-sharded parameters,
checking after every switch that the optimizer holds state for exactly the always-on and active
parameters, that the moments of the blocks switched away from are freed (a weak reference to a local
shard dies), and that every process trained the same blocks. Writes a JSON report from process 0."""

import json
import sys
import weakref

import torch
import torch.distributed as dist

from lisa_bench.methods import OptimConfig, build_method
from lisa_bench.models import load_model
from lisa_bench.training.distributed import load_sharded_weights, shard_model

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
loaded = load_model("tiny-random-llama", weights=rank == 0)
method = build_method("lisa", {"gamma": 1, "interval": 2}, seed=5)
model = method.prepare_model(loaded.model)
layout = method.find_blocks(model)
full = model.state_dict() if rank == 0 else {}
model = shard_model(model, layout, torch.device("cpu"), world)
load_sharded_weights(model, full, torch.device("cpu"))
optimizer = method.build_optimizer(model, OptimConfig(lr=1e-3))
outside = {n for n, _ in model.named_parameters() if n not in layout.block_of}
ids = torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(rank))
report = {"exact_state": True, "alive_before_switch": [], "freed": [], "active": []}
previous = []
for step in range(8):
    if step % 2 == 0 and step:
        report["alive_before_switch"].append(bool(previous) and all(ref() is not None for ref in previous))
    method.on_step_start(step, model, optimizer)
    if step % 2 == 0 and step:
        report["freed"].append(all(ref() is None for ref in previous))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    active = set(method.active_blocks())
    held = {n for n, p in model.named_parameters() if p in optimizer.state}
    expected = outside | {n for n, b in layout.block_of.items() if b in active}
    report["exact_state"] &= held == expected
    report["active"].append(sorted(active))
    # weak references to the local shards of this interval's block moments, to be dead after the next switch
    previous = [weakref.ref(optimizer.state[p][moment]._local_tensor) for n, p in model.named_parameters()
                if n in expected - outside for moment in ("exp_avg", "exp_avg_sq")]
schedules = [None] * world
dist.all_gather_object(schedules, report["active"])
report["same_blocks_on_every_process"] = all(s == schedules[0] for s in schedules)
if rank == 0:
    with open(sys.argv[1], "w") as fh:
        json.dump(report, fh)
dist.destroy_process_group()
