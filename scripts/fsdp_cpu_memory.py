"""Per-process memory of FSDP2 training on the CPU against the formula and the memory model (issue 11).

Run under torchrun (gloo), one process per shard:

    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=65536 torchrun --standalone --nproc_per_node 2 \
        scripts/fsdp_cpu_memory.py --out results/cpu-recipe/fsdp_memory.json

For each method, every process builds the same random-weight model from the published config, shards it as
`lisa-bench train --sharding fsdp` does (each decoder block, then the root, `fully_shard`-ed), and runs the
memory table's CPU protocol on it: one warm-up step, then the resident set's high-water mark above the
tensors this process holds (its local shards of the weights and of the optimizer state), as
`lisa-bench memory` measures one process. It reports per process:

- the optimizer state counted from its tensors (the local shards of the moments and the step counters);
- the same from the formula: for every parameter in the optimizer's state, 2 moments of its local shard
  (``torch.chunk`` along dim 0, as FSDP2 shards) plus a 4-byte step counter;
- the memory model's per-GPU prediction for ``--launcher fsdp --num-gpus N`` (lisa_bench.memory.model), with
  the measured peak against it.

On the CPU the peak also holds the gloo buffers of the collectives, which the model does not count; the
optimizer-state bytes are exact either way.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time

import torch
import torch.distributed as dist

METHODS = {  # experiment -> (method, options); LISA switches every step so each measured step visits new blocks
    "full": ("full", {}),
    "lora-r128": ("lora", {"rank": 128, "alpha": 256, "dropout": 0.0}),
    "lisa-e-h-2l": ("lisa", {"gamma": 2, "interval": 1}),
}


def local_rows(dim0: int, world: int, rank: int) -> int:
    """Rows of a dim-0 shard on this process (torch.chunk: ceil(d / N) each, the last ones short or empty)."""
    size = -(-dim0 // world)
    return max(0, min(size, dim0 - rank * size))


def formula_state_bytes(model, optimizer, world: int, rank: int) -> int:
    total = 0
    for p in model.parameters():
        if p in optimizer.state:
            full_shape = tuple(p.shape)  # a DTensor's shape is the global one
            per_row = p.element_size() * (int(torch.Size(full_shape[1:]).numel()) if len(full_shape) > 1 else 1)
            total += 2 * local_rows(full_shape[0], world, rank) * per_row + 4
    return total


def measure(model_name: str, experiment: str, batch: int, seq: int, steps: int) -> dict:
    from transformers import AutoModelForCausalLM

    from lisa_bench.memory.accounting import tensor_bytes
    from lisa_bench.memory.meter import reset_rss_high_water_mark, rss_high_water_mark, rss_now
    from lisa_bench.memory.model import predict
    from lisa_bench.methods import OptimConfig, build_method
    from lisa_bench.models import model_config
    from lisa_bench.training.distributed import shard_model

    rank, world = dist.get_rank(), dist.get_world_size()
    name, options = METHODS[experiment]
    config = model_config(model_name)
    method = build_method(name, options, seed=0)
    torch.manual_seed(0)  # the same random weights on every process
    model = method.prepare_model(AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                                  attn_implementation="eager"))
    layout = method.find_blocks(model)
    model = shard_model(model, layout, torch.device("cpu"), world)
    model.train()
    optimizer = method.build_optimizer(model, OptimConfig(lr=1e-5))
    weights = sum(tensor_bytes(t) for t in list(model.parameters()) + list(model.buffers()))
    gen = torch.Generator().manual_seed(rank)
    state = formula = 0
    seconds = []
    for step in range(steps + 1):  # step 0 warms up, as in the memory table
        if step == 1:
            reset_rss_high_water_mark()
            start = rss_now() - (weights + method.optimizer_bytes(optimizer))
        method.on_step_start(step, model, optimizer)
        ids = torch.randint(0, config.vocab_size, (batch, seq), generator=gen)
        t0 = time.perf_counter()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()  # as training runs
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            seconds.append(time.perf_counter() - t0)
            state = max(state, method.optimizer_bytes(optimizer))
            formula = max(formula, formula_state_bytes(model, optimizer, world, rank))
    peak = rss_high_water_mark() - start
    pred = predict(config, name, options, batch, seq, "fp32", steps + 1, device_type="cpu", attention="eager",
                   launcher="fsdp", processes=world)
    return {"experiment": experiment, "rank": rank, "world_size": world, "weights_bytes_local": weights,
            "optimizer_bytes_measured": state, "optimizer_bytes_formula": formula,
            "optimizer_bytes_predicted": pred.optimizer_bytes, "peak_bytes_measured": peak,
            "peak_bytes_predicted": pred.peak_bytes, "peak_vs_predicted": peak / pred.peak_bytes,
            "seconds_per_step": sorted(seconds)[len(seconds) // 2]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--experiments", default=",".join(METHODS))
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    dist.init_process_group("gloo")
    rows = []
    for experiment in args.experiments.split(","):
        row = measure(args.model, experiment, args.batch_size, args.seq_len, args.steps)
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, row)
        rows += gathered
        gc.collect()  # the previous method's model and optimizer go before the next is built
    if dist.get_rank() == 0:
        from lisa_bench.provenance import provenance

        report = {"model": args.model, "batch_size": args.batch_size, "seq_len": args.seq_len, "precision": "fp32",
                  "attn_implementation": "eager", "measured_steps": args.steps, "launcher": "fsdp",
                  "backend": "gloo", "host": platform.node(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                  "rows": rows, "provenance": provenance({"script": "scripts/fsdp_cpu_memory.py", **vars(args)},
                                                          torch.device("cpu"))}
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
        for r in rows:
            print(f"{r['experiment']:>12} rank {r['rank']}: state {r['optimizer_bytes_measured']:,} B measured, "
                  f"{r['optimizer_bytes_formula']:,} formula, {r['optimizer_bytes_predicted']:,} model; peak "
                  f"{r['peak_bytes_measured'] / 2**20:.1f} MiB vs {r['peak_bytes_predicted'] / 2**20:.1f} MiB "
                  f"predicted ({r['peak_vs_predicted']:.4f})")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
