"""``lisa-bench eval``: lm-evaluation-harness (``simple_evaluate``, model ``hf``) on a trained run or a
registered model, with the project's offline tasks registered through ``TaskManager(include_path=...)``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .. import atomic
from ..devices import resolve_device
from ..errors import BadInput, choices_error

TASKS_DIR = Path(__file__).parent / "tasks"
OFFLINE_TASKS = ("synthetic_qa", "synthetic_mc")
# The paper's benchmarks by their lm-eval names, with the shots the paper states (None: lm-eval's default).
PAPER_TASKS = {"mmlu": 5, "agieval": None, "winogrande": None, "gsm8k": None, "pubmedqa": 5}


def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR))


def check_tasks(tasks: list[str], where: str = "") -> None:
    """The one task check: the offline and paper tasks are known without asking lm-eval; anything else
    must be an lm-eval task name."""
    unknown = [t for t in tasks if t not in OFFLINE_TASKS and t not in PAPER_TASKS]
    if not unknown:
        return
    known = set(task_manager().all_tasks)
    for t in unknown:
        if t not in known:
            raise choices_error("task", t, [f"{', '.join(OFFLINE_TASKS)} (offline)",
                                            f"{', '.join(PAPER_TASKS)} (the paper's, need the hub)"],
                                where=where, more=", or any lm-eval task name")


def load_target(run: str | None, model: str | None, device: str, dtype: str = "fp32"):
    """The model to evaluate: a run directory (full weights, or base + LoRA adapter merged) or a name."""
    from ..models import load_model

    if bool(run) == bool(model):
        raise BadInput("give exactly one of --run DIR or --model NAME")
    if model:
        loaded = load_model(model, dtype=dtype)
        return loaded.model.to(device).eval(), loaded.tokenizer, {"model": model}
    run_dir = Path(run)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise BadInput(f"run directory {run!r} has no metrics.json (not a lisa-bench train output)")
    metrics = json.loads(metrics_path.read_text())
    info = {"run": str(run_dir), "method": metrics["method"], "model": metrics["model"], "seed": metrics["seed"]}
    if not (run_dir / "model").is_dir():  # a run that trained nothing: the model it names
        loaded = load_model(metrics["model"], seed=metrics["seed"], dtype=dtype)
        return loaded.model.to(device).eval(), loaded.tokenizer, info
    if (run_dir / "model" / "adapter_config.json").exists():
        from peft import PeftModel

        base = load_model(metrics["model"], seed=metrics["seed"], dtype=dtype)
        peft_model = PeftModel.from_pretrained(base.model, run_dir / "model")
        # merging is exact up to rounding and gives lm-eval a plain transformers model
        return peft_model.merge_and_unload().to(device).eval(), base.tokenizer, info
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models.registry import resolve_dtype

    model_obj = AutoModelForCausalLM.from_pretrained(run_dir / "model", dtype=resolve_dtype(dtype))
    return model_obj.to(device).eval(), AutoTokenizer.from_pretrained(run_dir / "model"), info


def scores_from_results(results: dict) -> list[dict]:
    rows = []
    for task, metrics in results["results"].items():
        n = results.get("n-samples", {}).get(task, {}).get("effective")
        for key, value in metrics.items():
            if key in ("alias", "sample_len") or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append({"task": task, "metric": metric, "filter": filt, "value": value,
                         "stderr": stderr if isinstance(stderr, (int, float)) and math.isfinite(stderr) else None,
                         "n": n})
    return rows


def run_eval(run: str | None, model: str | None, tasks: list[str], output_dir: str | Path, num_fewshot: int | None,
             limit: int | None, batch_size: int, device: str, seed: int = 0) -> list[dict]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from ..provenance import provenance

    check_tasks(tasks)
    manager = task_manager()
    model_obj, tokenizer, info = load_target(run, model, device)
    lm = HFLM(pretrained=model_obj, tokenizer=tokenizer, batch_size=batch_size, device=device)
    results = simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                              apply_chat_template=bool(getattr(tokenizer, "chat_template", None)),
                              device=device, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                              fewshot_random_seed=seed, log_samples=False)
    scores = scores_from_results(results)
    config = {"run": run, "model": model, "tasks": tasks, "num_fewshot": num_fewshot, "limit": limit,
              "batch_size": batch_size, "device": device, "seed": seed}
    out = Path(output_dir)
    atomic.write_json(out / "lm_eval.json", {"target": info, "results": results.get("results"),
                                             "configs": results.get("configs"), "versions": results.get("versions"),
                                             "n-samples": results.get("n-samples"),
                                             "provenance": provenance(config, torch.device(device))})
    atomic.write_json(out / "scores.json", scores)
    return scores


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run or a model with lm-evaluation-harness",
                       description="Runs lm-eval's simple_evaluate (model hf) and writes OUT/lm_eval.json and "
                                   "OUT/scores.json. Offline tasks: " + ", ".join(OFFLINE_TASKS) + "; the paper's: "
                                   + ", ".join(f"{t} ({s}-shot)" if s else t for t, s in PAPER_TASKS.items()) + ".")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="a lisa-bench train output directory")
    target.add_argument("--model", help="a registered model name, local dir or hub id (untrained)")
    p.add_argument("--tasks", default=",".join(OFFLINE_TASKS), help="comma-separated lm-eval task names")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--num-fewshot", type=int)
    p.add_argument("--limit", type=int, help="evaluate the first N examples of each task")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available); always passed to lm-eval")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    device = str(resolve_device(args.device))
    if args.limit is not None and args.limit < 1:
        raise BadInput(f"--limit must be >= 1, got {args.limit}")
    tasks = [t for t in args.tasks.split(",") if t]
    scores = run_eval(args.run, args.model, tasks, args.output_dir, args.num_fewshot, args.limit, args.batch_size,
                      device, args.seed)
    for s in scores:
        err = f" ± {s['stderr']:.4f}" if s["stderr"] is not None else ""
        print(f"{s['task']:<16} {s['metric']:<12} {s['value']:.4f}{err}  (n={s['n']})")
    return 0
