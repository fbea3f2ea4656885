"""Experiments: a shared defaults file, names or paths, a plugin module named by the experiment."""

import pytest

from lisa_bench.config import build_config, experiment_names, read_experiment, resolve_experiment
from lisa_bench.errors import BadInput
from lisa_bench.methods import METHODS

PLUGIN = '''
import torch
from lisa_bench.methods import register
from lisa_bench.methods.full import FullFineTuning

@register("test-plugin-sgd")
class PluginSGD(FullFineTuning):
    def build_optimizer(self, model, optim):
        return torch.optim.SGD(self.trainable_parameters(model), lr=optim.lr)
'''


def test_defaults_file_under_each_experiment():
    lora = read_experiment("experiments/lora-r128.yaml")
    assert lora["lr"] == 2e-4 and lora["max_length"] == 256 and lora["warmup_steps"] == 2  # own lr, shared rest
    assert read_experiment("experiments/full.yaml")["lr"] == 2e-5
    assert "_defaults" not in experiment_names() and "lora-r512" in experiment_names()


def test_defaults_merge_method_options(tmp_path):
    (tmp_path / "_defaults.yaml").write_text("lr: 0.5\nmethod_options: {interval: 3}\n")
    (tmp_path / "a.yaml").write_text("method: lisa\nmethod_options: {gamma: 1}\n")
    cfg = build_config(tmp_path / "a.yaml", {"max_steps": 7}, {"gamma": 2})
    assert cfg.lr == 0.5 and cfg.max_steps == 7 and cfg.method_options == {"interval": 3, "gamma": 2}


def test_experiments_by_name_or_path(tmp_path):
    assert resolve_experiment("full").name == "full.yaml"
    path = tmp_path / "x.yaml"
    path.write_text("method: full\n")
    assert resolve_experiment(str(path)) == path
    with pytest.raises(BadInput, match="unknown experiment 'fulll'; valid choices: apollo-mini, apollo-r256, badam, base, full"):
        resolve_experiment("fulll")
    with pytest.raises(BadInput, match="unknown experiment '_defaults'"):
        resolve_experiment("_defaults")


def test_method_module_relative_to_the_experiment(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "plugin_sgd.py").write_text(PLUGIN)
    exp = tmp_path / "exps" / "sgd.yaml"
    exp.parent.mkdir()
    exp.write_text("method: test-plugin-sgd\nmethod_module: ../plugins/plugin_sgd.py\nmax_steps: 1\n")
    cfg = build_config(exp, {}, {})
    assert cfg.method_module == str((tmp_path / "plugins" / "plugin_sgd.py").resolve())
    try:
        method = cfg.build_method()
        assert type(method).name == "test-plugin-sgd" and "test-plugin-sgd" in METHODS
        cfg.build_method()  # loading the same file again is a no-op, not a second registration
    finally:
        METHODS.pop("test-plugin-sgd", None)


def test_missing_or_broken_method_module(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text("method: x\nmethod_module: nowhere.py\nmax_steps: 1\n")
    with pytest.raises(BadInput, match="nowhere.py' does not exist"):
        build_config(exp, {}, {}).build_method()
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    exp.write_text("method: x\nmethod_module: broken.py\nmax_steps: 1\n")
    with pytest.raises(BadInput, match="failed to import .RuntimeError: boom"):
        build_config(exp, {}, {}).build_method()
    exp.write_text("method: x\nmethod_module: no_such_module_anywhere\nmax_steps: 1\n")
    with pytest.raises(BadInput, match="cannot be imported"):
        build_config(exp, {}, {}).build_method()


def test_numbers_without_a_dot_are_floats(tmp_path):
    """`1e-5` is a string to YAML 1.1 (PyYAML); in an experiment file, --set or a sweep's `--set lr=3e-05` it is
    the float users mean."""
    from lisa_bench.cli import _key_values

    (tmp_path / "_defaults.yaml").write_text("max_steps: 3\n")
    (tmp_path / "a.yaml").write_text("method: full\nlr: 1e-5\n")
    assert build_config(tmp_path / "a.yaml", {}, {}).lr == 1e-5
    cfg = build_config(tmp_path / "a.yaml", {}, {}, layers=[_key_values(["lr=3e-05", "max_length=64"], "--set")])
    assert cfg.lr == 3e-05 and cfg.max_length == 64


def test_an_experiment_name_outside_the_project_says_where_it_looked(tmp_path):
    with pytest.raises(BadInput) as err:
        resolve_experiment("full", tmp_path / "experiments")
    assert "no experiment files in" in str(err.value) and "give an experiment file path" in str(err.value)
