"""``lisa-bench mt-bench answer`` and ``lisa-bench mt-bench judge``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ... import atomic
from ...devices import resolve_device
from ...errors import BadInput


def add_parser(sub) -> None:
    p = sub.add_parser("mt-bench", help="MT-Bench: answer questions, then judge the answers",
                       description="FastChat's llm_judge protocol: multi-turn answers, single-answer grading.")
    mt = p.add_subparsers(dest="mt_command", required=True)
    a = mt.add_parser("answer", help="answer the questions with a trained run or a model",
                      description="Writes OUT/answers.jsonl in FastChat's answer format.")
    target = a.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="a lisa-bench train output directory")
    target.add_argument("--model", help="a registered model name, local dir or hub id")
    a.add_argument("--questions", default="offline",
                   help="offline (the project's set, default), upstream (FastChat's 80 questions at a pinned "
                        "commit, downloaded once), or a directory with question.jsonl")
    a.add_argument("--output-dir", required=True)
    a.add_argument("--model-id", help="name recorded in the answers (default: the run or model name)")
    a.add_argument("--max-new-tokens", type=int, default=1024)
    a.add_argument("--limit", type=int, help="answer N questions, taken in turn from each category")
    a.add_argument("--batch-size", type=int, default=8,
                   help="questions of one temperature answered together (default 8; 1: one at a time)")
    a.add_argument("--engine", default="hf", help="hf (transformers, default) or vllm (optional extra, CUDA)")
    a.add_argument("--device", default=None)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--no-progress", action="store_true")
    a.set_defaults(func=_cmd_answer)

    j = mt.add_parser("judge", help="grade answers with an LLM judge",
                      description="Writes OUT/judgments.jsonl (FastChat's judgment format) and OUT/mt_bench.json "
                                  "(scores per turn, per category and overall, with the parse failures).")
    j.add_argument("--answers", required=True, help="answers.jsonl from `mt-bench answer`")
    j.add_argument("--questions", default="offline", help="the question source the answers were made from")
    j.add_argument("--judge", default="hf:smollm2-135m",
                   help="openai:MODEL (any OpenAI-compatible endpoint; GPT-4 for the paper's numbers) or hf:MODEL "
                        "(a local transformers model; default hf:smollm2-135m, a weak judge)")
    j.add_argument("--judge-base-url", help="base URL of an OpenAI-compatible endpoint (vLLM, llama.cpp server)")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    j.add_argument("--expected-rating", action="store_true",
                   help="hf judges: score by the expected rating under the judge's token probabilities")
    j.add_argument("--judge-max-new-tokens", type=int, default=512, help="hf judges: tokens generated per judgment")
    j.add_argument("--parallel", type=int, default=4, help="concurrent judge requests (openai judges)")
    j.add_argument("--retries", type=int, default=5)
    j.add_argument("--cache", help="judgment cache file (default: in the lisa-bench cache directory)")
    j.add_argument("--output-dir", required=True)
    j.add_argument("--device", default=None)
    j.add_argument("--no-progress", action="store_true")
    j.set_defaults(func=_cmd_judge)


def _cmd_answer(args) -> int:
    from ..engines import check_engine
    from ..lm_eval_runner import load_target
    from .answer import generate_answers
    from ...runs import copy_identity
    from .data import load_bench

    for flag, value in (("--max-new-tokens", args.max_new_tokens), ("--batch-size", args.batch_size)):
        if value < 1:
            raise BadInput(f"{flag} must be >= 1, got {value}")
    device = str(resolve_device(args.device))
    check_engine(args.engine, device)
    bench = load_bench(args.questions)
    questions = spread_over_categories(bench.questions, args.limit) if args.limit else bench.questions
    model_id = args.model_id or (Path(args.run).name if args.run else args.model)
    if args.engine == "vllm":
        from ..engines import vllm_answers, vllm_target
        from .answer import answer_rows, temperature, temperature_batches

        turns = vllm_answers(vllm_target(args.run, args.model), temperature_batches(questions, None), temperature,
                             args.max_new_tokens, args.seed)
        rows = answer_rows(questions, turns, model_id, args.seed)
    else:
        model, tokenizer, info = load_target(args.run, args.model, device)
        rows = generate_answers(model, tokenizer, questions, model_id, args.max_new_tokens, args.seed,
                                progress=not args.no_progress, batch_size=args.batch_size)
    atomic.write_text(Path(args.output_dir) / "answers.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    copy_identity(args.run, args.output_dir)  # the answering run's model, experiment and seed, for the report
    print(f"{len(rows)} answers by {model_id} -> {Path(args.output_dir) / 'answers.jsonl'}")
    return 0


def spread_over_categories(questions: list[dict], n: int) -> list[dict]:
    """The first ``n`` questions taken in turn from each category, so a short run covers them all."""
    by_cat: dict[str, list[dict]] = {}
    for q in questions:
        by_cat.setdefault(q["category"], []).append(q)
    picked, depth = [], 0
    while len(picked) < min(n, len(questions)):
        for qs in by_cat.values():
            if depth < len(qs) and len(picked) < n:
                picked.append(qs[depth])
        depth += 1
    return picked


def read_answers(path: Path, bench) -> list[dict]:
    from .data import read_jsonl

    if not path.is_file():
        raise BadInput(f"answer file {str(path)!r} does not exist")
    rows = read_jsonl(path, {"question_id": int, "model_id": str, "choices": list})
    known = {q["question_id"] for q in bench.questions}
    for i, row in enumerate(rows, 1):
        if row["question_id"] not in known:
            raise BadInput(f"{path}: answer {i} is for question_id {row['question_id']}, which is not in the "
                           f"question set {bench.source}; answer and judge with the same --questions")
        turns = row["choices"][0].get("turns") if row["choices"] and isinstance(row["choices"][0], dict) else None
        if not isinstance(turns, list) or len(turns) != 2:
            raise BadInput(f"{path}: answer {i} (question_id {row['question_id']}) must hold two turns")
    if not rows:
        raise BadInput(f"answer file {path} is empty")
    return rows


def _cmd_judge(args) -> int:
    from ...models.smollm2 import cache_root
    from ...provenance import provenance
    from .data import load_bench
    from .judge import JudgmentCache, check_judge_key, judge_answers, make_judge, summarize

    check_judge_key(args.judge, args.judge_base_url, os.environ.get(args.judge_api_key_env), args.judge_api_key_env)
    device = str(resolve_device(args.device))
    bench = load_bench(args.questions)
    answers = read_answers(Path(args.answers), bench)
    judge = make_judge(args.judge, args.judge_base_url, os.environ.get(args.judge_api_key_env), device,
                       args.expected_rating, args.retries, args.judge_max_new_tokens)
    cache = JudgmentCache(Path(args.cache) if args.cache else cache_root() / "mt_bench" / "judgments_cache.jsonl")
    model_id = answers[0]["model_id"]
    judgments, calls = judge_answers(bench, answers, judge, cache, model_id, args.parallel,
                                     progress=not args.no_progress)
    out = Path(args.output_dir)
    atomic.write_text(out / "judgments.jsonl", "".join(json.dumps(r) + "\n" for r in judgments))
    summary = summarize(judgments)
    summary.update(model=model_id, judge=args.judge, judge_calls=calls, questions=bench.source,
                   weak_local_judge=args.judge.startswith("hf:"),
                   provenance=provenance({k: v for k, v in vars(args).items() if k != "func"}, torch.device(device)))
    atomic.write_json(out / "mt_bench.json", summary)
    fails = f"{summary['n_failures']}/{summary['n_judgments']}"
    overall = f"{summary['overall']:.2f}" if summary["overall"] is not None else "n/a"
    print(f"MT-Bench {model_id}: overall {overall} (judge {args.judge}, parse failures {fails}, "
          f"judge calls {calls})")
    return 0
