"""``lisa-bench plan``: will it fit? The validated memory model (the one ``lisa-bench memory`` measures
against) applied to a model and a GPU: per experiment, the predicted peak per GPU with its breakdown,
whether it fits, and the largest batch that fits. Models by hub id (their config only, no weights), a
local config directory, or the built-in architectures; nothing is downloaded or allocated.
"""

from __future__ import annotations

import json
import sys

from ..errors import BadInput
from .cells import PAPER_EXPERIMENTS, MemoryCell, Shape
from .fit import parse_bytes

LAUNCHERS = ("single", "ddp", "fsdp")
PARTS = ("weights", "grads", "optimizer", "activations", "transient", "step", "gathered", "buckets")


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="will it fit? predicted peak memory per GPU of each experiment",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--model", required=True, help="a hub id (config only), a local model directory, or a built-in "
                                                   "architecture (llama-2-7b, mistral-7b, llama-2-70b, ...)")
    p.add_argument("--gpu-memory", required=True, help="memory of one GPU: 24GiB, 80GB, 24e9 ...")
    p.add_argument("--experiments", default=",".join(PAPER_EXPERIMENTS),
                   help="comma-separated experiments (names in experiments/ or paths; default: %(default)s)")
    p.add_argument("--experiments-dir", default="experiments")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=1, help="sequences per GPU")
    p.add_argument("--precision", default="bf16", help="fp32, bf16 (default), bf16-mixed, bf16-master, bf16-kahan, bf16-sr")
    p.add_argument("--attn-implementation", default="eager", help="eager (default, the paper's protocol), sdpa, "
                                                                  "flash_attention_2")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="plan with each block's activations recomputed in backward (default: off)")
    p.add_argument("--num-gpus", type=int, default=1, help="GPUs on each node (default 1)")
    p.add_argument("--nodes", type=int, default=1,
                   help="nodes (default 1): ddp and fsdp span --num-gpus x --nodes GPUs (a study's launcher.nodes)")
    p.add_argument("--launcher", default="single", help="single, ddp (a replica per GPU) or fsdp (FSDP2 shards)")
    p.add_argument("--format", default="table", help="table (default), csv or json")
    p.set_defaults(func=_cmd_plan)


def plan_row(config, model: str, cell: MemoryCell, shape: Shape, gpu_memory: int, launcher: str = "single",
             gpus: int = 1, steps: int = 3, whole_run: bool = True) -> dict:
    """One experiment: the prediction at the given batch, whether it fits, and the largest batch that fits
    (activations and the backward's transient buffers grow linearly with the batch; the rest does not).
    ``steps``: how many steps the optimizer state is followed for (3 reach LISA's steady state; the callback
    form's state keeps growing with every block it visits)."""
    return plan_rows(config, model, cell, shape, [gpu_memory], launcher, gpus, steps, whole_run)[0]


def plan_rows(config, model: str, cell: MemoryCell, shape: Shape, gpu_memories: list[int], launcher: str = "single",
              gpus: int = 1, steps: int = 3, whole_run: bool = True) -> list[dict]:
    """``plan_row`` for several GPU sizes from one set of predictions. ``whole_run``: the peak of a whole run
    (a method that reaches block 0 late, such as BAdam descending, peaks then); False: of the first steps,
    as ``lisa-bench memory`` measures them."""
    from .model import predict

    cell.load()

    def at(batch: int):
        return predict(config, cell.method, json.loads(cell.options), batch, shape.seq_len, shape.precision,
                       steps, device_type="cuda", attention=shape.attn_implementation,
                       checkpointing=shape.gradient_checkpointing, launcher=launcher, processes=gpus,
                       whole_run=whole_run)

    one, two = at(1), at(2)
    here = {1: one, 2: two}.get(shape.batch_size) or at(shape.batch_size)
    per_sequence = (two.activations_bytes + two.transient_bytes) - (one.activations_bytes + one.transient_bytes)
    fixed_forward = one.peak_bytes if per_sequence <= 0 else (
        one.weights_bytes + one.optimizer_forward_bytes + one.gathered_bytes
        + one.activations_bytes + one.transient_bytes - per_sequence)
    step_phase = one.weights_bytes + one.optimizer_bytes + one.grads_bytes + one.step_bytes + one.buckets_bytes
    rows = []
    for gpu_memory in gpu_memories:
        if step_phase > gpu_memory or fixed_forward + per_sequence > gpu_memory:
            largest = 0
        else:
            largest = int((gpu_memory - fixed_forward) // per_sequence) if per_sequence > 0 else None
        row = {"model": model, "experiment": cell.experiment, "method": cell.method, "launcher": launcher,
               "gpus": gpus, "gpu_memory_GiB": gpu_memory / 2**30, "batch_per_gpu": shape.batch_size,
               "seq_len": shape.seq_len, "precision": shape.precision, "attention": shape.attn_implementation,
               "checkpointing": shape.gradient_checkpointing, "peak_GiB": here.peak_bytes / 2**30,
               "fits": here.peak_bytes <= gpu_memory, "largest_batch_per_gpu": largest,
               "loses_updates": here.loses_updates}
        for part in PARTS:
            row[f"{part}_GiB"] = getattr(here, f"{part}_bytes") / 2**30
        rows.append(row)
    return rows


def _cmd_plan(args) -> int:
    import pandas as pd

    from ..config import ATTENTION
    from ..errors import check_choice
    from ..models import check_attention, model_config
    from ..precision import resolve_precision

    gpu_memory = parse_bytes(args.gpu_memory, "--gpu-memory")
    if args.launcher == "deepspeed":
        from ..training.distributed import refuse_deepspeed

        refuse_deepspeed("--launcher deepspeed", LAUNCHERS)
    check_choice("launcher", args.launcher, LAUNCHERS)
    check_choice("format", args.format, ("table", "csv", "json"))
    resolve_precision(args.precision)
    check_attention(check_choice("attn_implementation", args.attn_implementation, ATTENTION))
    for flag, value in (("--seq-len", args.seq_len), ("--batch-size", args.batch_size), ("--num-gpus", args.num_gpus),
                        ("--nodes", args.nodes)):
        if value < 1:
            raise BadInput(f"{flag} must be >= 1, got {value}")
    if args.launcher == "single" and args.num_gpus * args.nodes > 1:
        flag = f"--num-gpus {args.num_gpus}" if args.num_gpus > 1 else f"--nodes {args.nodes}"
        raise BadInput(f"{flag} needs --launcher ddp or fsdp; valid choices: single, ddp, fsdp")
    config = model_config(args.model)
    shape = Shape("cuda", args.precision, args.attn_implementation, args.gradient_checkpointing, args.batch_size,
                  args.seq_len)
    cells = [MemoryCell.from_experiment(e, args.experiments_dir) for e in args.experiments.split(",") if e]
    gpus = args.num_gpus * args.nodes if args.launcher != "single" else 1  # the world, over every node
    rows = [plan_row(config, args.model, c, shape, gpu_memory, args.launcher, gpus) for c in cells]
    table = pd.DataFrame(rows)
    if args.format == "json":
        print(json.dumps({"gpu_memory_bytes": gpu_memory, "rows": rows}, indent=2, default=str))
    elif args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    else:
        shown = table[["experiment", "peak_GiB", "fits", "largest_batch_per_gpu", "weights_GiB", "grads_GiB",
                       "optimizer_GiB", "activations_GiB", "gathered_GiB"]]
        print(f"{args.model} on {gpus} GPU(s) of {gpu_memory / 2**30:.1f} GiB ({args.launcher}), "
              f"{args.batch_size} x {args.seq_len} tokens per GPU, {args.precision}, {args.attn_implementation} "
              f"attention, gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}:")
        print(shown.to_markdown(index=False, floatfmt=".1f"))
    lossy = [r["experiment"] for r in rows if r["loses_updates"]]
    if lossy:
        print(lost_updates_note(args.precision, lossy), file=sys.stderr)
    return 0


def lost_updates_note(precision: str, experiments: list[str]) -> str:
    from ..training.updates import SMOLLM2_LOST_AT_2E5

    return (f"lisa-bench: note: under {precision} the bf16 weights that {', '.join(experiments)} train"
            f"{'s' if len(experiments) == 1 else ''} lose every AdamW step below half their spacing (on SmolLM2-135M "
            f"{SMOLLM2_LOST_AT_2E5} of the weights at lr 2e-5); bf16-master, bf16-kahan or bf16-sr keep every update")
