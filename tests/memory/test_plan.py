"""`lisa-bench plan`: the validated memory model answers "will it fit?" for any model config and GPU."""

import json

import pytest

from lisa_bench.cli import main
from lisa_bench.memory.cells import MemoryCell, Shape
from lisa_bench.memory.plan import plan_row
from lisa_bench.models import model_config
from tests.memory import committed_cells



def test_plan_agrees_with_every_measured_cell():
    """Every cell measured and committed in results/: plan's predicted peak against the measurement."""
    worst, checked = 0.0, 0
    for _, row, cell, shape in committed_cells(device="cuda"):  # plan predicts for a GPU
        got = plan_row(model_config(row["model"]), row["model"], cell, shape, 10**13, steps=shape.steps + 1,
                       whole_run=False)  # the measured steps
        worst = max(worst, abs(row["peak_bytes"] / (got["peak_GiB"] * 2**30) - 1))
        checked += 1
    assert checked >= 19 and worst < 0.02, worst


def test_largest_batch_is_the_largest_that_fits():
    cfg = model_config("llama-2-7b")
    cell = MemoryCell("lisa", "lisa", json.dumps({"gamma": 2, "interval": 20}))
    row = plan_row(cfg, "llama-2-7b", cell, Shape("cuda", "bf16", seq_len=1024, batch_size=1), 48 * 2**30)
    n = row["largest_batch_per_gpu"]
    assert n >= 2
    at = plan_row(cfg, "llama-2-7b", cell, Shape("cuda", "bf16", seq_len=1024, batch_size=n), 48 * 2**30)
    above = plan_row(cfg, "llama-2-7b", cell, Shape("cuda", "bf16", seq_len=1024, batch_size=n + 1), 48 * 2**30)
    assert at["fits"] and not above["fits"]


def test_sharding_divides_the_model_state():
    cfg = model_config("llama-2-70b")
    cell = MemoryCell("lisa-e-h-4l", "lisa", json.dumps({"gamma": 4, "interval": 50}))
    shape = Shape("cuda", "bf16-mixed", "sdpa", True, 8, 512)
    four = plan_row(cfg, "llama-2-70b", cell, shape, 80 * 2**30, "fsdp", 4)
    eight = plan_row(cfg, "llama-2-70b", cell, shape, 80 * 2**30, "fsdp", 8)
    assert eight["weights_GiB"] == pytest.approx(four["weights_GiB"] / 2, rel=1e-3)
    assert not four["fits"] and eight["fits"] and eight["gathered_GiB"] > 0


def test_plan_formats(capsys):
    args = ["plan", "--model", "tinyllama-1.1b", "--gpu-memory", "24GiB", "--experiments", "full,lisa-e-h-2l"]
    assert main(args) == 0 and "| lisa-e-h-2l" in capsys.readouterr().out
    assert main(args + ["--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["experiment"] for r in rows] == ["full", "lisa-e-h-2l"] and all(r["fits"] for r in rows)
    assert main(args + ["--format", "csv", "--num-gpus", "2", "--launcher", "fsdp"]) == 0
    two_gpus = capsys.readouterr().out
    assert "largest_batch_per_gpu" in two_gpus.splitlines()[0]
    # two nodes of one GPU each: FSDP2 shards over the same world of two
    assert main(args + ["--format", "csv", "--num-gpus", "1", "--nodes", "2", "--launcher", "fsdp"]) == 0
    assert capsys.readouterr().out == two_gpus


@pytest.mark.parametrize("extra, needle", [
    (["--gpu-memory", "lots"], "--gpu-memory 'lots' is not a size"),
    (["--model", "no-org/no-such-model"], "unknown model 'no-org/no-such-model'"),
    (["--launcher", "deepspeed"], "--launcher deepspeed is refused: ZeRO-3 partitions the parameters"),
    (["--launcher", "megatron"], "unknown launcher 'megatron'; valid choices: single, ddp, fsdp"),
    (["--num-gpus", "4"], "--num-gpus 4 needs --launcher ddp or fsdp"),
    (["--nodes", "2"], "--nodes 2 needs --launcher ddp or fsdp"),
    (["--nodes", "0", "--launcher", "ddp"], "--nodes must be >= 1, got 0"),
    (["--precision", "fp8"], "unknown precision 'fp8'"),
    (["--model", "gpt2-small", "--attn-implementation", "sdpa"], "the memory model covers"),
    (["--precision", "bf16-kahan", "--experiments", "galore-r128"], "cannot serve method 'galore'"),
])
def test_plan_bad_input(extra, needle, capsys):
    args = {"--model": "llama-2-7b", "--gpu-memory": "24GiB"}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    args.setdefault("--experiments", "full")
    argv = ["plan", *[x for kv in args.items() for x in kv]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_whole_run_peak_of_a_method_that_reaches_block_0_late():
    """BAdam descending trains the top block first; its run peaks when it reaches block 0, which the plan
    answers for: the activations of ascending order's first steps (block 0 first), more than the first steps'."""
    cfg = model_config("llama-2-7b")
    shape = Shape("cuda", "bf16", seq_len=1024, batch_size=1)
    first = plan_row(cfg, "llama-2-7b", MemoryCell("badam", "badam", "{}"), shape, 80 * 2**30, whole_run=False)
    run = plan_row(cfg, "llama-2-7b", MemoryCell("badam", "badam", "{}"), shape, 80 * 2**30)
    bottom = plan_row(cfg, "llama-2-7b", MemoryCell("b", "badam", json.dumps({"order": "ascending"})), shape,
                      80 * 2**30, whole_run=False)
    assert run["activations_GiB"] == pytest.approx(bottom["activations_GiB"], rel=1e-9)
    assert run["activations_GiB"] > 5 * first["activations_GiB"]
    assert run["largest_batch_per_gpu"] < first["largest_batch_per_gpu"]
    lisa = MemoryCell("lisa-e-h-2l", "lisa", json.dumps({"gamma": 2, "interval": 20}))  # E trains: no difference
    assert plan_row(cfg, "llama-2-7b", lisa, shape, 80 * 2**30)["peak_GiB"] == \
        plan_row(cfg, "llama-2-7b", lisa, shape, 80 * 2**30, whole_run=False)["peak_GiB"]


def test_plan_says_where_pure_bf16_loses_updates(capsys):
    """Pure bf16 with trainable bf16 weights (full, LISA) gets a note; LoRA's fp32 adapters and the recipes that keep
    every update do not."""
    args = ["plan", "--model", "tinyllama-1.1b", "--gpu-memory", "80GiB", "--experiments", "full,lora-r128,lisa-e-h-2l"]
    assert main(args + ["--precision", "bf16"]) == 0
    err = capsys.readouterr().err
    assert "under bf16 the bf16 weights that full, lisa-e-h-2l train lose every AdamW step below half" in err
    assert "lora" not in err and "bf16-master, bf16-kahan or bf16-sr keep every update" in err
    for precision in ("bf16-master", "bf16-kahan", "bf16-mixed"):
        assert main(args + ["--precision", precision]) == 0
        assert "lose" not in capsys.readouterr().err
