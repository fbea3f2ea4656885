"""The README's example baseline (examples/adding-a-baseline/), set up as the README says (the method file in
plugins/, the experiment file in experiments/), through `lisa-bench plan` and a short `lisa-bench train` under
every precision recipe: each either plans and trains, its optimizer state the memory model's to the byte, or is
refused in one line, by plan and train alike, with nothing written."""

import json
import shutil

import pytest

from lisa_bench.cli import main
from lisa_bench.precision import PRECISIONS
from tests.pipeline_support import ROOT

EXAMPLE = ROOT / "examples" / "adding-a-baseline"
# recipes that cannot serve SGD, and the phrase of their one line
REFUSED = {"bf16-kahan": "cannot serve method 'sgd-full': it builds torch.optim.SGD",
           "bf16-sr": "cannot serve method 'sgd-full': it builds torch.optim.SGD"}
SHAPE = ["--batch-size", "8", "--max-length", "96"]


@pytest.fixture
def example(tmp_path):
    """The example copied in as the README does; the method it registers is unregistered afterwards."""
    from lisa_bench import methods
    from lisa_bench.methods.base import METHODS

    (tmp_path / "plugins").mkdir()
    (tmp_path / "experiments").mkdir()
    shutil.copy(EXAMPLE / "sgd_full.py", tmp_path / "plugins")
    shutil.copy(EXAMPLE / "sgd-full.yaml", tmp_path / "experiments")
    # every built-in registered first: imported modules register once, so a registry restored from before they were
    # imported would stay without them for the tests that run next in this process
    methods.load_all()
    registered, loaded = dict(METHODS), dict(methods._loaded_files)
    yield tmp_path / "experiments" / "sgd-full.yaml"
    METHODS.clear(), METHODS.update(registered)
    methods._loaded_files.clear(), methods._loaded_files.update(loaded)


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_example_baseline_under_every_recipe(precision, example, tmp_path, capsys):
    from lisa_bench.memory.model import predict
    from lisa_bench.models import model_config

    plan = main(["plan", "--model", "tiny-random-llama", "--gpu-memory", "80GiB", "--experiments", str(example),
                 "--precision", precision, "--seq-len", "96", "--batch-size", "8"])
    planned = capsys.readouterr()
    out = tmp_path / "run"
    trained = main(["train", "--experiment", str(example), "--model", "tiny-random-llama", "--precision", precision,
                    "--max-steps", "4", "--train-size", "64", "--eval-size", "8", "--device", "cpu", "--no-progress",
                    "--output-dir", str(out), *SHAPE])
    ran = capsys.readouterr()
    if precision in REFUSED:
        for code, err in ((plan, planned.err), (trained, ran.err)):
            assert code == 2 and len(err.strip().splitlines()) == 1 and REFUSED[precision] in err, err
        assert not out.exists()
        return
    assert plan == 0 and "| sgd-full " in planned.out, planned.err[-2000:]
    assert trained == 0, ran.err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == precision and metrics["method"] == "sgd-full"
    # the plugin's own state formula, under the recipe, is what its optimizer held: one momentum buffer per
    # parameter in its dtype, fp32 plus an fp32 master per bf16 parameter under bf16-master
    pred = predict(model_config("tiny-random-llama"), "sgd-full", {}, 8, 96, precision, 4)
    assert metrics["optimizer_state_bytes_peak"] == pred.optimizer_bytes
    per_param = {"fp32": 4, "bf16": 2, "bf16-mixed": 4, "bf16-master": 8}[precision]
    assert pred.optimizer_bytes == per_param * metrics["total_params"]


def test_a_plugin_without_state_dtype_is_refused_only_by_the_recipe_that_needs_it(example, tmp_path, capsys):
    """A method file written before ``state_dtype`` existed is not patched over: bf16-master, the one recipe
    that asks for its state in fp32, refuses it in one line naming the fix; fp32 still plans it."""
    plugin = example.parent.parent / "plugins" / "sgd_full.py"
    old = plugin.read_text().replace("def optimizer_state_bytes(self, params, state_dtype=None):",
                                     "def optimizer_state_bytes(self, params):")
    plugin.write_text(old.replace("state_size(p, state_dtype)", "p.element_size()"))
    plan = ["plan", "--model", "tiny-random-llama", "--gpu-memory", "80GiB", "--experiments", str(example)]
    assert main([*plan, "--precision", "bf16-master"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes no state_dtype" in err and "add `state_dtype=None`" in err, err
    assert "valid precisions for it: fp32, bf16, bf16-mixed" in err and "kahan" not in err.split("for it:")[1], err
    assert "bf16-sr" not in err.split("for it:")[1], err
    assert main([*plan, "--precision", "fp32"]) == 0
