"""Bad input: one line naming the value and the choices, exit code 2, no traceback, nothing written."""

import json
import subprocess
import sys

import pytest

from lisa_bench.cli import main

BASE = ["train", "--model", "tiny-random-llama", "--max-steps", "2", "--device", "cpu", "--no-progress"]


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("args, needle, choices", [
    (["--method", "adamw"], "unknown method 'adamw'", "lisa"),
    (["--method", "lisa", "--model", "no-such-model"], "unknown model 'no-such-model'", "smollm2-135m"),
    (["--method", "lisa", "--dataset", "imagenet"], "unknown dataset 'imagenet'", "synthetic-instruct"),
    (["--method", "lisa", "--lisa-layers", "9"], "larger than the 8 decoder blocks", "0..8"),
    (["--method", "lisa", "--lisa-layers", "-1"], "gamma (--lisa-layers) must be >= 0", "-1"),
    (["--method", "lisa", "--lisa-interval", "0"], "interval (--lisa-interval) must be >= 1", "0"),
    (["--method", "full", "--lisa-layers", "2"], "--lisa-layers applies to method lisa", "'full'"),
    (["--method", "lisa", "--precision", "int3"], "unknown precision 'int3'", "bf16-mixed"),
])
def test_bad_values(args, needle, choices, capsys, tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(BASE + args + ["--output-dir", str(out)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err and choices in err, err
    assert not out.exists()
    assert not any(tmp_path.iterdir()), "nothing may be left in the parent directory"


def test_empty_and_malformed_datasets(capsys, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"instruction": "hi", "output": "yo"}) + "\n" + json.dumps({"instruction": "x"}) + "\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{not json\n')
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"messages": [{"role": "user", "content": "hi"}]}]))
    cases = [(empty, "is empty"), (missing, "missing.jsonl:2: record is missing field 'output'"),
             (broken, "broken.jsonl:2: malformed JSON line"), (chat, "ending with an assistant turn"),
             (tmp_path / "nope.jsonl", "does not exist")]
    for path, needle in cases:
        out = tmp_path / "out"
        code, err = run_cli(BASE + ["--method", "lisa", "--dataset", str(path), "--output-dir", str(out)], capsys)
        assert code == 2 and needle in err and len(err.splitlines()) == 1, err
        assert not out.exists()


def test_bad_layers_attribute_and_experiment_keys(capsys, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("method: lisa\nmethod_options:\n  layers_attribute: model.blocks\n")
    code, err = run_cli(BASE + ["--experiment", str(exp), "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "layers_attribute 'model.blocks'" in err
    exp.write_text("method: lisa\nlearning_rate: 1\n")
    code, err = run_cli(BASE + ["--experiment", str(exp), "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "unknown key 'learning_rate'" in err and "lr" in err
    exp.write_text("method: lisa\nmethod_options:\n  gama: 2\n")
    code, err = run_cli(BASE + ["--experiment", str(exp), "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "unknown option 'gama'" in err and "gamma" in err
    assert not (tmp_path / "o").exists()


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lisa_bench.cli", "train", "--method", "nope", "--output-dir",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("lisa-bench: error: unknown method 'nope'")


def test_help_on_every_subcommand(capsys):
    """`--help` of the program and of every subcommand (in process; the console script itself is started in
    test_console_script_prints_no_traceback)."""
    import argparse

    from lisa_bench.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    names = sorted(sub.choices)
    assert {"train", "reproduce", "publish", "memory", "plan", "eval", "mt-bench", "report"} <= set(names)
    for args in [["--help"]] + [[name, "--help"] for name in names]:
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 0, args
        assert "usage: lisa-bench" in capsys.readouterr().out, args


def test_a_command_builds_only_its_own_parser():
    """`lisa-bench page` (and report, sweep-best, paper: the pipeline's light jobs) does not import torch to build the
    parsers of the commands that need it; each command's parser alone has the options the whole command line gives
    it."""
    import argparse

    from lisa_bench.cli import COMMANDS, build_parser

    code = "import sys; from lisa_bench.cli import build_parser; build_parser('page'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"

    def subparsers(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    whole = subparsers(build_parser())
    assert list(whole) == [name for names in COMMANDS for name in names]
    for names in COMMANDS:
        alone = subparsers(build_parser(names[0]))
        assert list(alone) == list(names)
        for name in names:
            assert alone[name].format_help() == whole[name].format_help(), name


def test_flags_override_experiment_file(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("method: lisa\nlr: 0.001\nmax_steps: 50\nmethod_options:\n  gamma: 1\n  interval: 7\n")
    out = tmp_path / "run"
    code = main(BASE + ["--experiment", str(exp), "--lisa-layers", "3", "--output-dir", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["method_options"]["gamma"] == 3
    assert metrics["method_options"]["interval"] == 7 and metrics["provenance"]["config"]["lr"] == 0.001


def test_train_ends_with_a_readable_summary(tmp_path, capsys):
    """One aligned line per figure, sizes in MiB or GiB, the losses first -> last, the output directory."""
    import re

    out = tmp_path / "run"
    assert main(BASE + ["--method", "lisa", "--output-dir", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = lines[lines.index("lisa-bench train: finished") + 1:]
    fields = dict(re.fullmatch(r"  (\S+(?: \S+)*?) {2,}(\S.*)", ln).groups() for ln in summary)
    assert list(fields) == ["method", "model", "steps", "training loss", "held-out loss", "optimizer state",
                            "peak memory", "speed", "output"]
    assert len({ln.index(value) for ln, value in zip(summary, fields.values())}) == 1  # one column of values
    m = json.loads((out / "metrics.json").read_text())
    assert fields["model"] == "tiny-random-llama" and fields["steps"].startswith("2 (fp32, 1 process)")
    assert fields["training loss"].startswith(f"{m['train_loss_first']:.4f} -> {m['train_loss_last']:.4f}")
    assert fields["held-out loss"] == f"{m['eval_loss']:.4f}"
    def size(n):  # MiB below a GiB, GiB above (a test worker's RSS can pass a GiB)
        return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"

    assert fields["optimizer state"].startswith(size(m["optimizer_state_bytes_peak"]))
    assert fields["peak memory"].startswith(f"{size(m['peak_memory_bytes'])} (process RSS")
    # steady state first (warm-up steps apart), the whole run's rate beside it
    assert fields["speed"].startswith(f"{m['steady_tokens_per_second']:,.0f} tokens/s after {m['warmup_steps']} warm-up")
    assert f"({m['tokens_per_second']:,.0f} over all" in fields["speed"]
    assert fields["output"].startswith(str(out))


def test_hub_dataset_offline_gives_one_line(capsys, tmp_path):
    code, err = run_cli(BASE + ["--method", "lisa", "--dataset", "alpaca-gpt4", "--output-dir", str(tmp_path / "o")],
                        capsys)
    assert code == 2 and "vicgalle/alpaca-gpt4" in err and "synthetic-instruct" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["lisa", "full"])
def test_accelerate_sharding_plugins_are_refused_with_a_reason(method, monkeypatch, capsys, tmp_path):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType.FSDP))
    code, err = run_cli(BASE + ["--method", method, "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "accelerate's FSDP plugin is not used by lisa-bench" in err
    assert "--set sharding=fsdp" in err and "ZeRO-3 partitions" in err
    assert not (tmp_path / "o").exists()


def test_option_flag_sets_method_options(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(BASE + ["--method", "lisa", "--option", "interval=1", "--option", "sampling=weighted",
                        "--output-dir", str(out)]) == 0
    opts = json.loads((out / "metrics.json").read_text())["method_options"]
    assert opts["interval"] == 1 and opts["sampling"] == "weighted"
    code, err = run_cli(BASE + ["--method", "lisa", "--option", "interval", "--output-dir", str(tmp_path / "x")], capsys)
    assert code == 2 and "must look like KEY=VALUE" in err
    code, err = run_cli(BASE + ["--method", "lisa", "--option", "intervall=3", "--output-dir", str(tmp_path / "x")],
                        capsys)
    assert code == 2 and "unknown option 'intervall'" in err


@pytest.mark.parametrize("method, option, needle", [
    ("lisa", "interval=abc", "method 'lisa': option 'interval' must be an integer, got 'abc'"),
    ("lisa", "gamma=2.5", "method 'lisa': option 'gamma' must be an integer, got 2.5"),
    ("lisa", "weights=heavy", "method 'lisa': option 'weights' must be a list of numbers or null, got 'heavy'"),
    ("lisa", "weights=[1, x]", "option 'weights' must be a list of numbers or null, got [1, 'x']"),
    ("lisa", "reset_always_on_state=maybe", "option 'reset_always_on_state' must be true or false, got 'maybe'"),
    ("lisa", "sampling=3", "method 'lisa': option 'sampling' must be a string, got 3"),
    ("lora", "dropout=high", "method 'lora': option 'dropout' must be a finite number, got 'high'"),
    ("lora", "alpha=[1]", "method 'lora': option 'alpha' must be a finite number or null, got [1]"),
    ("lora", "also_train=embedding", "option 'also_train' must be a list of strings, got 'embedding'"),
    ("galore", "target_modules=5", "option 'target_modules' must be a list of strings or a string, got 5"),
    ("badam", "include_embedding=yes please", "option 'include_embedding' must be true or false, got 'yes please'"),
])
def test_a_method_option_of_the_wrong_kind_is_one_line(method, option, needle, capsys, tmp_path):
    """Each --option value is checked against its option's kind (the method's Options annotations): one line
    naming the method, the option, the value and the kind wanted, exit 2, nothing written; not a TypeError."""
    out = tmp_path / "out"
    code, err = run_cli(BASE + ["--method", method, "--option", option, "--output-dir", str(out)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_method_options_of_the_wrong_kind_in_an_experiment_file(capsys, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("method: lisa\nmethod_options: {interval: often}\n")
    code, err = run_cli(BASE + ["--experiment", str(exp), "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "method 'lisa': option 'interval' must be an integer, got 'often'" in err, err
    assert not (tmp_path / "o").exists()


def test_method_option_numbers_as_yaml_11_reads_them():
    """A study file is read by Snakemake as YAML 1.1, where 1e-2 (no dot) is text: taken as the number, as for the
    recipe's settings; lists of numbers likewise, and ints where a float belongs stay as given."""
    from lisa_bench.methods import get_method

    lora = get_method("lora").parse_options({"dropout": "1e-2", "alpha": 16, "target_modules": ["q_proj"]})
    assert lora.dropout == 0.01 and isinstance(lora.dropout, float) and lora.alpha == 16
    lisa = get_method("lisa").parse_options({"weights": [1, "5e-1"], "layers_attribute": None})
    assert lisa.weights == [1, 0.5]
    assert get_method("galore").parse_options({"target_modules": "attn"}).target_modules == "attn"


def test_under_a_launcher_only_the_first_process_reports_bad_input(tmp_path, capsys, monkeypatch):
    """torchrun starts one process per GPU and each meets the same bad input: one line, not one per GPU."""
    args = ["train", "--model", "tiny-random-llama", "--max-steps", "2", "--precision", "fp7", "--output-dir", str(tmp_path / "o")]
    monkeypatch.setenv("RANK", "1")
    assert main(args) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 2
    assert "unknown precision 'fp7'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["train", "--eval-every", "abc", "--output-dir", "o"],
                                  ["train", "--grad-accum-steps", "1.5", "--output-dir", "o"],
                                  ["memory", "--models"]])
def test_a_flag_of_the_wrong_kind_is_one_line(args, capsys):
    """argparse's own errors (a flag's value of the wrong type, a flag without its value): one line naming the
    flag and the value, exit 2, not the whole usage block."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"lisa-bench {args[0]}: error: argument {args[1]}")
