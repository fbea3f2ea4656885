"""`lisa-bench memory`: measured breakdown next to the analytic model."""

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from lisa_bench import memory_bench
from lisa_bench.architectures import architecture_config
from lisa_bench.cli import main
from lisa_bench.errors import BadInput
from lisa_bench.memory_model import parse_cell, peak_from_parts, predict


@pytest.mark.parametrize("name, params", [
    ("gpt2-small", 124_439_808), ("tinyllama-1.1b", 1_100_048_384), ("mistral-7b", 7_241_732_096),
    ("llama-2-7b", 6_738_415_616), ("llama-2-70b", 68_976_648_192), ("smollm2-135m", 134_515_008),
])
def test_paper_architectures_have_their_published_sizes(name, params):
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(architecture_config(name))
    assert sum(p.numel() for p in model.parameters()) == params


def test_llama2_7b_prediction_by_hand():
    """Hand-computed counts for LLaMA-2-7B in bf16 (2 bytes per element)."""
    cfg = architecture_config("llama-2-7b")
    emb = head = 32000 * 4096
    block = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    outside = emb + head + 4096
    assert outside + 32 * block == 6_738_415_616
    full = predict(cfg, parse_cell("full"), 1, 1024, torch.bfloat16, steps=1)
    assert full.weights_bytes == 2 * 6_738_415_616 == full.grads_bytes
    assert full.optimizer_bytes == 4 * 6_738_415_616 + 4 * (3 + 32 * 9)
    lisa = predict(cfg, parse_cell("lisa-e-h-2l"), 1, 1024, torch.bfloat16, steps=1)
    assert lisa.optimizer_bytes == 4 * (outside + 2 * block) + 4 * (3 + 2 * 9)
    lora = predict(cfg, parse_cell("lora-r128"), 1, 1024, torch.bfloat16, steps=1)
    adapter = 32 * 128 * (4 * (4096 + 4096) + 2 * (4096 + 11008) + (11008 + 4096))
    assert lora.grads_bytes == 4 * adapter  # peft keeps adapters in fp32 on a bf16 base
    assert lisa.optimizer_bytes < full.optimizer_bytes


def test_cell_names():
    assert parse_cell("lisa-e-h").options["gamma"] == 0
    assert parse_cell("lisa-e-h-4l").options["gamma"] == 4
    assert parse_cell("lora-r256").options["rank"] == 256
    assert parse_cell("lisa-callback-e-h-2l").method == "lisa-callback"
    with pytest.raises(BadInput, match="unknown method 'lora'"):
        parse_cell("lora")


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("mem")
    code = main(["memory", "--models", "tiny-random-llama", "--methods",
                 "full,lora-r8,lisa-e-h-2l,lisa-callback-e-h-2l,lisa-e-h-9l", "--seq-len", "512", "--steps", "2",
                 "--device", "cpu", "--output-dir", str(out)])
    assert code == 0
    assert (out / "memory_provenance.json").exists()
    assert (out / "memory_breakdown.png").exists() and (out / "speed.pdf").exists()
    assert (out / "memory_table.md").exists() and (out / "memory_table.tex").exists()
    table = pd.read_csv(out / "memory.csv").set_index("method")
    table.attrs["out"] = out
    return table


def test_memory_csv(tiny_table):
    assert sorted(tiny_table.reset_index().columns) == sorted(memory_bench.CSV_COLUMNS)
    ok = tiny_table[tiny_table["status"] == "ok"]
    assert set(ok.index) == {"full", "lora-r8", "lisa-e-h-2l", "lisa-callback-e-h-2l"}
    assert tiny_table.loc["lisa-e-h-9l", "status"].startswith("skipped: lisa gamma")
    for method, row in ok.iterrows():
        # each measured part equals its analytic prediction (activations within 2%)
        assert row["weights_bytes"] == pytest.approx(row["predicted_weights_bytes"], rel=1e-3)
        assert row["grads_bytes"] == row["predicted_grads_bytes"]
        assert row["optimizer_bytes"] == row["predicted_optimizer_bytes"]
        assert row["activations_bytes"] == pytest.approx(row["predicted_activations_bytes"], rel=0.02)
        # the measured parts, combined as the memory model combines them, explain the measured peak
        parts = peak_from_parts(row["weights_bytes"], row["grads_bytes"], row["optimizer_bytes"],
                                row["activations_bytes"], row["predicted_transient_bytes"], row["predicted_step_bytes"],
                                row["predicted_optimizer_forward_bytes"])
        assert parts == pytest.approx(row["peak_bytes"], rel=memory_bench.TOLERANCE), method
        assert row["peak_vs_predicted"] == pytest.approx(1.0, abs=memory_bench.TOLERANCE) and pd.isna(row["flag"])
        assert row["tokens_per_second"] > 0 and row["seconds_per_iter"] > 0


def test_lisa_state_is_the_formula_and_callback_grows(tiny_table):
    from lisa_bench.models import load_model

    model = load_model("tiny-random-llama").model
    outside = [p for n, p in model.named_parameters() if not n.startswith("model.layers.")]
    block = list(model.model.layers[0].parameters())
    expected = sum(8 * p.numel() + 4 for p in outside + 2 * block)
    assert tiny_table.loc["lisa-e-h-2l", "optimizer_bytes"] == expected
    assert tiny_table.loc["lisa-callback-e-h-2l", "optimizer_bytes"] > expected
    assert tiny_table.loc["lisa-e-h-2l", "optimizer_bytes"] < tiny_table.loc["full", "optimizer_bytes"]


@pytest.mark.parametrize("args, needle", [
    (["--models", "gpt5"], "unknown model 'gpt5'"),
    (["--models", "tiny-random-llama", "--methods", "sgd"], "unknown method 'sgd'"),
    (["--models", "tiny-random-llama", "--seq-len", "0"], "--seq-len must be >= 1"),
    (["--models", "tiny-random-llama", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["--models", "tiny-random-llama", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input(args, needle, tmp_path, capsys):
    assert main(["memory", *args, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_unavailable(tmp_path, capsys):
    assert main(["memory", "--models", "tiny-random-llama", "--device", "cuda", "--output-dir", str(tmp_path)]) == 2
    assert "device 'cuda' is not available" in capsys.readouterr().err


def test_crashing_cell_is_recorded_and_the_rest_run_on(monkeypatch, tmp_path):
    real = memory_bench.run_cell

    def flaky(model, label, *args, **kwargs):
        if label == "full":
            raise RuntimeError("simulated crash")
        return real(model, label, *args, **kwargs)

    monkeypatch.setattr(memory_bench, "run_cell", flaky)
    code = main(["memory", "--models", "tiny-random-llama", "--methods", "full,lisa-e-h", "--seq-len", "64",
                 "--steps", "1", "--device", "cpu", "--output-dir", str(tmp_path)])
    table = pd.read_csv(tmp_path / "memory.csv").set_index("method")
    assert code == 0
    assert table.loc["full", "status"] == "error: RuntimeError: simulated crash"
    assert table.loc["lisa-e-h", "status"] == "ok"


def test_cell_too_big_for_the_machine_keeps_its_prediction():
    row, trace = memory_bench.run_cell("llama-2-70b", "lisa-e-h-2l", "cpu", "bf16", 1, 1024, 1)
    assert trace == []
    assert row["status"].startswith("skipped: predicted") and "analytic prediction only" in row["status"]
    assert row["predicted_weights_bytes"] == 2 * 68_976_648_192
    assert row["predicted_peak_bytes"] > row["predicted_weights_bytes"]


def test_cell_timeout_is_recorded():
    row, trace = memory_bench.run_cell("tiny-random-llama", "full", "cpu", "fp32", 1, 64, 1, timeout=0.01)
    assert row["status"] == "error: timed out after 0.01 s (--cell-timeout)" and trace == []
    assert row["predicted_peak_bytes"] > 0


def test_trace_per_step(tiny_table, tmp_path_factory):
    out = tiny_table.attrs["out"]
    trace = pd.read_csv(out / "memory_trace.csv")
    assert list(trace.columns) == memory_bench.TRACE_COLUMNS
    assert (out / "memory_trace.png").exists()
    for method, sub in trace.groupby("method"):
        assert sub["step"].tolist() == [0, 1, 2]  # warm-up, then --steps 2
        row = tiny_table.loc[method]
        # the table's parts are the maxima over the measured steps of the trace
        measured = sub[sub["step"] > 0]
        assert measured["optimizer_bytes"].max() == row["optimizer_bytes"]
        assert measured["grads_bytes"].max() == row["grads_bytes"]
        assert (sub["rss_bytes"] > 0).all() and sub["step_peak_bytes"].isna().all()
    lisa = trace[trace["method"] == "lisa-e-h-2l"]["optimizer_bytes"]
    callback = trace[trace["method"] == "lisa-callback-e-h-2l"]["optimizer_bytes"].tolist()
    assert lisa.nunique() == 1  # flat: state of the active blocks only
    assert callback == sorted(callback) and callback[-1] > callback[0]  # grows as blocks are visited


def test_lisa_state_at_forward_follows_the_switch():
    """With a switch every step, LISA's block moments are dropped before forward and created at the
    step: during forward only the embedding/head state is alive. The callback keeps what it visited."""
    cfg = architecture_config("tiny-random-llama")
    e_h = predict(cfg, parse_cell("lisa-e-h"), 1, 64, torch.float32, steps=4)
    lisa = predict(cfg, parse_cell("lisa-e-h-2l"), 1, 64, torch.float32, steps=4)
    callback = predict(cfg, parse_cell("lisa-callback-e-h-2l"), 1, 64, torch.float32, steps=4)
    assert lisa.optimizer_forward_bytes == e_h.optimizer_bytes < lisa.optimizer_bytes
    assert lisa.optimizer_bytes < callback.optimizer_forward_bytes <= callback.optimizer_bytes
    # one warm-up step, one measured: at its forward the callback holds the warm-up's 2 blocks
    one = predict(cfg, parse_cell("lisa-callback-e-h-2l"), 1, 64, torch.float32, steps=2)
    assert one.optimizer_forward_bytes == lisa.optimizer_bytes
    full = predict(cfg, parse_cell("full"), 1, 64, torch.float32, steps=4)
    assert full.optimizer_forward_bytes == full.optimizer_bytes  # created at the warm-up step, then kept


def test_bf16_lora_activations_follow_peft_fp32_adapters():
    """peft keeps LoRA adapters in fp32 on a bf16 base; each adapted linear saves its own fp32 copy of
    its input. Measured on the CPU in bf16, the activations match that count."""
    row, _ = memory_bench.run_cell("tiny-random-llama", "lora-r8", "cpu", "bf16", 1, 128, 1)
    assert row["status"] == "ok"
    assert row["activations_bytes"] == pytest.approx(row["predicted_activations_bytes"], rel=0.02)
    shared = predict(architecture_config("tiny-random-llama"), parse_cell("lora-r8"), 1, 128, torch.float32, 2)
    assert shared.activations_bytes < 2 * row["predicted_activations_bytes"]  # fp32 base: one shared input


def test_memory_collect_merges_dedupes_and_repredicts(tiny_table, tmp_path, capsys):
    first = tiny_table.attrs["out"]
    second = tmp_path / "second"
    assert main(["memory", "--models", "tiny-random-llama", "--methods", "lisa-e-h,full", "--seq-len", "64",
                 "--steps", "1", "--device", "cpu", "--output-dir", str(second)]) == 0
    # an older memory model's prediction is replaced by --repredict; measurements stay
    stale = pd.read_csv(second / "memory.csv")
    stale["predicted_peak_bytes"] = 1
    stale.to_csv(second / "memory.csv", index=False)
    # a trace from before traces named their cell gets it from its run's table
    old_trace = pd.read_csv(second / "memory_trace.csv").drop(columns=["device", "dtype", "batch_size", "seq_len"])
    old_trace.to_csv(second / "memory_trace.csv", index=False)
    merged = tmp_path / "merged"
    assert main(["memory-collect", str(first), str(second), "--output-dir", str(merged), "--repredict"]) == 0
    table = pd.read_csv(merged / "memory.csv")
    # seq-len differs, so no cell is a duplicate; rows keep the paper's method order within a model
    assert len(table) == len(tiny_table) + 2
    assert table[table["seq_len"] == 64]["method"].tolist() == ["full", "lisa-e-h"]
    assert (table.loc[table["status"] == "ok", "predicted_peak_bytes"] > 1000).all()
    assert (table.loc[table["seq_len"] == 64, "peak_bytes"] == stale.set_index("method").loc[
        ["full", "lisa-e-h"], "peak_bytes"].values).all()
    prov = __import__("json").loads((merged / "memory_provenance.json").read_text())
    assert set(prov["runs"]) == {str(first), str(second)} and "repredicted_by" in prov
    assert (merged / "memory_trace.png").exists() and (merged / "memory_table.md").exists()
    # merging the merged table with one of its inputs again drops the duplicates
    again = tmp_path / "again"
    assert main(["memory-collect", str(merged), str(second), "--output-dir", str(again), "--no-figures"]) == 0
    assert len(pd.read_csv(again / "memory.csv")) == len(table)
    assert not (again / "memory_breakdown.png").exists()
    trace = pd.read_csv(again / "memory_trace.csv")
    cell = ["model", "method", "device", "dtype", "batch_size", "seq_len"]
    assert not trace.duplicated(cell + ["step"]).any()
    # the same method at two lengths keeps both traces
    assert set(trace[trace["method"] == "full"]["seq_len"]) == {64, 512}


def test_memory_collect_bad_input(tmp_path, capsys):
    assert main(["memory-collect", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no memory.csv in" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "memory.csv").write_text("a,b\n1,2\n")
    assert main(["memory-collect", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    assert "missing columns: model, method, status" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cell", ["full", "lora-r8", "lisa-e-h-2l", "lisa-callback-e-h-2l"])
def test_llama_formula_equals_the_meta_device_trace(cell, dtype, monkeypatch):
    """Two independent activation models agree on Llama: the closed-form count and the traced
    forward pass on the meta device (the formula rounds a few per-token terms)."""
    from lisa_bench import memory_model

    cfg = architecture_config("tiny-random-llama")
    formula = predict(cfg, parse_cell(cell), 2, 96, dtype, steps=3)
    monkeypatch.setattr(memory_model, "LLAMA_STYLE", ())
    traced = predict(cfg, parse_cell(cell), 2, 96, dtype, steps=3)
    assert traced.activations_bytes == pytest.approx(formula.activations_bytes, rel=0.02)


def test_gpt2_small_is_predicted_by_trace_and_measured_on_cpu():
    """GPT-2 (Conv1D, learned positions, dropout, tied head) has no closed-form model here: its
    activations come from the meta-device trace and equal what the CPU measures."""
    for cell in ("full", "lisa-e-h-2l", "lora-r8"):
        row, _ = memory_bench.run_cell("gpt2-small", cell, "cpu", "fp32", 1, 48, 1)
        assert row["status"] == "ok", row["status"]
        assert row["activations_bytes"] == row["predicted_activations_bytes"], cell
        assert row["grads_bytes"] == row["predicted_grads_bytes"]
        assert row["optimizer_bytes"] == row["predicted_optimizer_bytes"]
        assert row["peak_vs_predicted"] == pytest.approx(1.0, abs=0.03), cell
