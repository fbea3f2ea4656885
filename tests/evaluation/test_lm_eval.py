"""lm-evaluation-harness on trained runs (full weights and a LoRA adapter) over the offline tasks."""

import json

import pytest

from lisa_bench.cli import main
from lisa_bench.evaluation.lm_eval_runner import OFFLINE_TASKS, PAPER_TASKS, task_manager
from lisa_bench.training import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from lisa_bench.config import TrainConfig

    root = tmp_path_factory.mktemp("runs")
    for method, options in (("lisa", {"gamma": 2, "interval": 2}), ("lora", {"rank": 4})):
        cfg = TrainConfig(method=method, model="tiny-random-llama", max_steps=3, batch_size=4, max_length=96,
                          lr=1e-3, train_size=32, device="cpu", method_options=options)
        train(cfg, root / method, progress=False)
    return root


@pytest.mark.parametrize("method", ["lisa", "lora"])
def test_eval_run_on_offline_tasks(method, runs, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--run", str(runs / method), "--tasks", "synthetic_qa,synthetic_mc", "--limit", "6",
                 "--device", "cpu", "--output-dir", str(out)])
    assert code == 0
    scores = json.loads((out / "scores.json").read_text())
    got = {(s["task"], s["metric"]) for s in scores}
    assert {("synthetic_qa", "exact_match"), ("synthetic_mc", "acc"), ("synthetic_mc", "acc_norm")} <= got
    for s in scores:
        assert 0.0 <= s["value"] <= 1.0 and s["n"] == 6
    full = json.loads((out / "lm_eval.json").read_text())
    assert full["target"]["method"] == method and full["provenance"]["packages"]["lm-eval"]
    assert "synthetic_mc" in capsys.readouterr().out


def test_eval_registered_model(tmp_path):
    assert main(["eval", "--model", "tiny-random-llama", "--tasks", "synthetic_mc", "--limit", "4", "--device",
                 "cpu", "--output-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "scores.json").read_text())[0]["task"] == "synthetic_mc"


def test_paper_task_names_resolve_in_lm_eval():
    from lisa_bench.evaluation.lm_eval_runner import _all_task_names

    known = _all_task_names()  # the index the task check uses (built once per process)
    assert set(PAPER_TASKS) <= known
    assert set(OFFLINE_TASKS) <= known


def test_study_with_an_unknown_task_is_refused_before_any_job(monkeypatch):
    """The study check asks lm-eval's whole task index for a name that is neither the project's nor the
    paper's (here, next to the other tests that need that index, so the process builds it once)."""
    import yaml

    from lisa_bench.errors import BadInput
    from lisa_bench.study import check_study
    from tests.pipeline_support import ROOT, TINY

    monkeypatch.chdir(ROOT)
    config = yaml.safe_load(TINY)
    config["lm_eval"] = {"tasks": ["not_a_task"]}
    with pytest.raises(BadInput, match="unknown task 'not_a_task'"):
        check_study(config)


@pytest.mark.parametrize("args, needle", [
    (["--model", "tiny-random-llama", "--tasks", "mmlu_pro_max_ultra"], "unknown task 'mmlu_pro_max_ultra'"),
    (["--run", "/nonexistent/run"], "has no metrics.json"),
    (["--model", "tiny-random-llama", "--device", "tpu"], "unknown device 'tpu'"),
    (["--model", "tiny-random-llama", "--task-specs", "[synthetic_qa]", "--num-fewshot", "-3"],
     "--num-fewshot and --apply-chat-template go with --tasks"),
    (["--model", "tiny-random-llama", "--task-specs", "[synthetic_qa]", "--apply-chat-template"],
     "--num-fewshot and --apply-chat-template go with --tasks"),
    (["--model", "tiny-random-llama", "--task-specs", "[]"], "no task to evaluate"),
    (["--model", "tiny-random-llama", "--tasks", ","], "no task to evaluate"),
    (["--model", "tiny-random-llama", "--task-specs", "[{name: [a]}]"], "task name ['a'] must be a non-empty string"),
])
def test_eval_bad_input(args, needle, tmp_path, capsys):
    assert main(["eval", *args, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("template", [False, True])
def test_eval_equals_lm_eval_itself(template, runs, tmp_path):
    """`lisa-bench eval` gives what lm-eval's own entry point gives on the same saved model and settings,
    with the chat template and without (lm-eval's default, and ours)."""
    from lm_eval import simple_evaluate

    from lisa_bench.evaluation.lm_eval_runner import TaskSpec, run_eval

    ours = run_eval(str(runs / "lisa"), None, [TaskSpec("synthetic_mc", 0, template)], tmp_path / "ours", 24, 8, "cpu")
    theirs = simple_evaluate(model="hf", model_args=f"pretrained={runs / 'lisa' / 'model'},dtype=float32",
                             tasks=["synthetic_mc"], num_fewshot=0, limit=24, batch_size=8, device="cpu",
                             apply_chat_template=template, task_manager=task_manager(["synthetic_mc"]), log_samples=False)
    got = {s["metric"]: s["value"] for s in ours}
    assert got["acc"] == theirs["results"]["synthetic_mc"]["acc,none"]
    assert got["acc_norm"] == theirs["results"]["synthetic_mc"]["acc_norm,none"]
    assert all(s["apply_chat_template"] is template and s["num_fewshot"] == 0 for s in ours)


def test_task_specs_are_checked(tmp_path, capsys):
    from lisa_bench.evaluation.lm_eval_runner import parse_task_specs

    specs = parse_task_specs(["synthetic_qa", {"name": "mmlu", "num_fewshot": 5, "apply_chat_template": True}])
    assert [s.label() for s in specs] == ["default shots", "5-shot, chat template"]
    for args, needle in (("[{name: mmlu, shots: 5}]", "unknown key 'shots'; valid choices: name, num_fewshot"),
                         ("[{name: mmlu, num_fewshot: -1}]", "num_fewshot must be an integer >= 0"),
                         ("[{num_fewshot: 2}]", "neither a task name nor a mapping with a 'name'"),
                         ("[mmlu, mmlu]", "task 'mmlu' is listed twice")):
        assert main(["eval", "--model", "tiny-random-llama", "--task-specs", args, "--output-dir",
                     str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None and __import__("torch").cuda.is_available(),
                    reason="checks the messages on a machine without vllm or without a GPU")
@pytest.mark.parametrize("command", [["eval", "--model", "smollm2-135m"],
                                     ["mt-bench", "answer", "--model", "smollm2-135m"]])
def test_vllm_engine_needs_vllm_and_a_gpu(command, tmp_path, capsys):
    assert main([*command, "--engine", "vllm", "--device", "cpu", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "engine 'vllm' needs" in err and "valid choices here: hf" in err and len(err.strip().splitlines()) == 1
    assert main([*command, "--engine", "tgi", "--output-dir", str(tmp_path / "o")]) == 2
    assert "unknown engine 'tgi'; valid choices: hf, vllm" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
