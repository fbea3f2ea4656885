"""`lisa-bench memory`: cells are experiments; the measured breakdown stands next to the analytic model."""

import json

import pandas as pd
import pytest
import torch

from lisa_bench.cli import main
from lisa_bench.memory import bench, cells, measure
from lisa_bench.memory.cells import MemoryCell, Shape
from lisa_bench.memory.model import peak_from_parts
from lisa_bench.models import load_model


def cell(name, cells_dir):
    return MemoryCell.from_experiment(name, cells_dir)


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory, cells_dir):
    out = tmp_path_factory.mktemp("mem")
    code = main(["memory", "--models", "tiny-random-llama", "--methods",
                 "full,lora-r8,lisa-e-h-2l,lisa-callback-e-h-2l,lisa-e-h-9l", "--experiments-dir", str(cells_dir),
                 "--seq-len", "512", "--steps", "2", "--device", "cpu", "--output-dir", str(out)])
    assert code == 0
    assert (out / "memory_provenance.json").exists()
    assert (out / "memory_breakdown.png").exists() and (out / "speed.pdf").exists()
    assert (out / "memory_table.md").exists() and (out / "memory_table.tex").exists()
    table = pd.read_csv(out / "memory.csv").set_index("experiment")
    table.attrs["out"] = out
    return table


def test_memory_csv(tiny_table):
    assert sorted(tiny_table.reset_index().columns) == sorted(cells.CSV_COLUMNS)
    ok = tiny_table[tiny_table["status"] == "ok"]
    assert set(ok.index) == {"full", "lora-r8", "lisa-e-h-2l", "lisa-callback-e-h-2l"}
    assert tiny_table.loc["lisa-e-h-9l", "status"].startswith("skipped: lisa gamma")
    # each row records the method and options it was measured with
    assert tiny_table.loc["lora-r8", "method"] == "lora"
    assert json.loads(tiny_table.loc["lora-r8", "method_options"])["rank"] == 8
    for name, row in ok.iterrows():
        # each measured part equals its analytic prediction (activations within 2%)
        assert row["weights_bytes"] == pytest.approx(row["predicted_weights_bytes"], rel=1e-3)
        assert row["grads_bytes"] == row["predicted_grads_bytes"]
        assert row["optimizer_bytes"] == row["predicted_optimizer_bytes"]
        assert row["activations_bytes"] == pytest.approx(row["predicted_activations_bytes"], rel=0.02)
        # the measured parts, combined as the memory model combines them, explain the measured peak
        parts = peak_from_parts(row["weights_bytes"], row["grads_bytes"], row["optimizer_bytes"],
                                row["activations_bytes"], row["predicted_transient_bytes"], row["predicted_step_bytes"],
                                row["predicted_optimizer_forward_bytes"])
        assert parts == pytest.approx(row["peak_bytes"], rel=cells.TOLERANCE), name
        assert row["peak_vs_predicted"] == pytest.approx(1.0, abs=cells.TOLERANCE) and pd.isna(row["flag"])
        assert row["tokens_per_second"] > 0 and row["seconds_per_iter"] > 0


def test_lisa_state_is_the_formula_and_callback_grows(tiny_table):
    model = load_model("tiny-random-llama").model
    outside = [p for n, p in model.named_parameters() if not n.startswith("model.layers.")]
    block = list(model.model.layers[0].parameters())
    expected = sum(8 * p.numel() + 4 for p in outside + 2 * block)
    assert tiny_table.loc["lisa-e-h-2l", "optimizer_bytes"] == expected
    assert tiny_table.loc["lisa-callback-e-h-2l", "optimizer_bytes"] > expected
    assert tiny_table.loc["lisa-e-h-2l", "optimizer_bytes"] < tiny_table.loc["full", "optimizer_bytes"]


def test_trace_per_step(tiny_table):
    out = tiny_table.attrs["out"]
    trace = pd.read_csv(out / "memory_trace.csv")
    assert list(trace.columns) == cells.TRACE_COLUMNS
    assert (out / "memory_trace.png").exists()
    for name, sub in trace.groupby("experiment"):
        assert sub["step"].tolist() == [0, 1, 2]  # warm-up, then --steps 2
        row = tiny_table.loc[name]
        # the table's parts are the maxima over the measured steps of the trace
        measured = sub[sub["step"] > 0]
        assert measured["optimizer_bytes"].max() == row["optimizer_bytes"]
        assert measured["grads_bytes"].max() == row["grads_bytes"]
        assert (sub["rss_bytes"] > 0).all() and sub["step_peak_bytes"].isna().all()
    lisa = trace[trace["experiment"] == "lisa-e-h-2l"]["optimizer_bytes"]
    callback = trace[trace["experiment"] == "lisa-callback-e-h-2l"]["optimizer_bytes"].tolist()
    assert lisa.nunique() == 1  # flat: state of the active blocks only
    assert callback == sorted(callback) and callback[-1] > callback[0]  # grows as blocks are visited


def test_cells_are_the_experiments_the_pipeline_trains(tmp_path):
    """`--methods lora-r128` is experiments/lora-r128.yaml: the options it trains with, overridable the way
    a study overrides them."""
    from lisa_bench.config import read_experiment

    lora = MemoryCell.from_experiment("lora-r128")
    assert lora.method == "lora" and json.loads(lora.options) == read_experiment("experiments/lora-r128.yaml")[
        "method_options"]
    lisa = MemoryCell.from_experiment("lisa-e-h-2l", overrides={"method_options": {"interval": 1}})
    assert json.loads(lisa.options)["interval"] == 1 and json.loads(lisa.options)["gamma"] == 2
    path = tmp_path / "mine.yaml"
    path.write_text("method: lisa\nmethod_options: {gamma: 3}\n")
    assert MemoryCell.from_experiment(str(path)).experiment == "mine"


@pytest.mark.parametrize("args, needle", [
    (["--models", "gpt5"], "unknown model 'gpt5'"),
    (["--models", "tiny-random-llama", "--methods", "sgd"], "unknown experiment 'sgd'; valid choices: apollo-mini"),
    (["--models", "tiny-random-llama", "--seq-len", "0"], "--seq-len must be >= 1"),
    (["--models", "tiny-random-llama", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["--models", "tiny-random-llama", "--device", "tpu"], "unknown device 'tpu'"),
    (["--models", "tiny-random-llama", "--experiment-overrides", "[1, 2]"], "--experiment-overrides must map"),
    # overrides are checked as training settings of experiments in this table, not ignored
    (["--models", "tiny-random-llama", "--methods", "full", "--experiment-overrides", "{bogus: {lr: 1}}"],
     "--experiment-overrides: unknown experiment 'bogus'; valid choices: full"),
    (["--models", "tiny-random-llama", "--methods", "full", "--experiment-overrides", "{full: {precison: bf16}}"],
     "--experiment-overrides[full]: unknown training setting 'precison'"),
    (["--models", "tiny-random-llama", "--methods", "full", "--experiment-overrides", "{full: {lr: abc}}"],
     "--experiment-overrides[full]: lr must be a finite number, got 'abc'"),
    # a recipe that cannot serve a method stops the command before any cell (a study's grid skips the cell instead)
    (["--models", "tiny-random-llama", "--methods", "galore-r128", "--dtype", "bf16-kahan"],
     "--methods galore-r128: precision 'bf16-kahan' cannot serve method 'galore'"),
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


def test_crashing_cell_is_recorded_and_the_rest_run_on(monkeypatch, tmp_path, cells_dir):
    real = measure.run_cell

    def flaky(model, c, *args, **kwargs):
        if c.experiment == "full":
            raise RuntimeError("simulated crash")
        return real(model, c, *args, **kwargs)

    monkeypatch.setattr(bench, "run_cell", flaky)
    code = main(["memory", "--models", "tiny-random-llama", "--methods", "full,lisa-e-h", "--experiments-dir",
                 str(cells_dir), "--seq-len", "64", "--steps", "1", "--device", "cpu", "--output-dir", str(tmp_path)])
    table = pd.read_csv(tmp_path / "memory.csv").set_index("experiment")
    assert code == 0
    assert table.loc["full", "status"] == "error: RuntimeError: simulated crash"
    assert table.loc["lisa-e-h", "status"] == "ok"


def test_cell_too_big_for_the_machine_keeps_its_prediction(cells_dir):
    row, trace = measure.run_cell("llama-2-70b", cell("lisa-e-h-2l", cells_dir), Shape("cpu", "bf16", steps=1))
    assert trace == []
    assert row["status"].startswith("skipped: predicted") and "analytic prediction only" in row["status"]
    assert row["predicted_weights_bytes"] == 2 * 68_976_648_192
    assert row["predicted_peak_bytes"] > row["predicted_weights_bytes"]


def test_cell_timeout_is_recorded(cells_dir):
    row, trace = measure.run_cell("tiny-random-llama", cell("full", cells_dir), Shape(seq_len=64, steps=1), timeout=0.01)
    assert row["status"] == "error: timed out after 0.01 s (--cell-timeout)" and trace == []
    assert row["predicted_peak_bytes"] > 0


@pytest.mark.parametrize("name", ["lora-r8", "lora-r8-dropout"])
def test_bf16_lora_activations_follow_peft_fp32_adapters(name, cells_dir):
    """peft keeps LoRA adapters in fp32 on a bf16 base; each adapted linear saves its own fp32 copy of
    its input (with dropout: the dropout's output and mask). Measured on the CPU in bf16, the
    activations match that count."""
    row, _ = measure.run_cell("tiny-random-llama", cell(name, cells_dir), Shape("cpu", "bf16", seq_len=128, steps=1))
    assert row["status"] == "ok"
    assert row["activations_bytes"] == pytest.approx(row["predicted_activations_bytes"], rel=0.025)


def test_gpt2_small_is_predicted_by_trace_and_measured_on_cpu(cells_dir):
    """GPT-2 (Conv1D, learned positions, dropout, tied head) has no closed-form model here: its
    activations come from the meta-device trace and equal what the CPU measures."""
    for name in ("lisa-e-h-2l", "lora-r8"):  # full fine-tuning's parts are LISA's, in every block
        row, _ = measure.run_cell("gpt2-small", cell(name, cells_dir), Shape(seq_len=48, steps=1))
        assert row["status"] == "ok", row["status"]
        assert row["activations_bytes"] == row["predicted_activations_bytes"], name
        assert row["grads_bytes"] == row["predicted_grads_bytes"]
        assert row["optimizer_bytes"] == row["predicted_optimizer_bytes"]
        assert row["peak_vs_predicted"] == pytest.approx(1.0, abs=0.03), name


def test_a_refused_cell_is_a_skipped_row_under_skip_refused(tmp_path):
    """`--skip-refused` (what a study's memory job passes): the refused cell is a row that says why, the rest run."""
    code = main(["memory", "--models", "tiny-random-llama", "--methods", "galore-r128,lisa-e-h", "--dtype",
                 "bf16-kahan", "--seq-len", "32", "--steps", "1", "--device", "cpu", "--skip-refused", "--no-figures",
                 "--output-dir", str(tmp_path)])
    assert code == 0
    table = pd.read_csv(tmp_path / "memory.csv").set_index("experiment")
    assert table.loc["galore-r128", "status"].startswith("skipped: precision 'bf16-kahan' cannot serve method 'galore'")
    assert table.loc["lisa-e-h", "status"] == "ok" and table.loc["lisa-e-h", "precision"] == "bf16-kahan"


def test_galore_is_measured_through_the_loops_step(cells_dir, tmp_path):
    """GaLore's set-up (through transformers' TrainingArguments) resets accelerate's global state: the cell builds its
    Accelerator after the optimizer, as the loop does, and measures (it failed with "AcceleratorState object has no
    attribute device" when built before)."""
    row, _ = measure.run_cell("tiny-random-llama", cell("galore-r8", cells_dir), Shape(seq_len=32, steps=1))
    assert row["status"] == "ok", row["status"]
    assert row["optimizer_bytes"] == row["predicted_optimizer_bytes"]
