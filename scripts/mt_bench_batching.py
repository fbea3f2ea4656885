"""MT-Bench answers one question at a time against batched, side by side in one process: the embedded
SmolLM2-135M, the 16 offline questions, both turns, up to 128 new tokens. Prints and writes the seconds of
each, their ratio, and whether the greedy questions' answers are the same text.

    python scripts/mt_bench_batching.py --out results/cpu-recipe/mt_bench_batching.json [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    import torch

    from lisa_bench.evaluation.mt_bench.answer import generate_answers, temperature
    from lisa_bench.evaluation.mt_bench.data import load_bench
    from lisa_bench.models import load_model
    from lisa_bench.provenance import provenance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    loaded = load_model("smollm2-135m")
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    questions = load_bench("offline").questions
    seconds, answers = {}, {}
    for batch in (args.batch_size, 1):  # batched first: any warm-up advantage goes to batch 1
        t0 = time.perf_counter()
        rows = generate_answers(model, tokenizer, questions, "smollm2", args.max_new_tokens, progress=False,
                                batch_size=batch)
        seconds.setdefault(batch, []).append(time.perf_counter() - t0)
        answers[batch] = rows
        print({"batch_size": batch, "seconds": round(seconds[batch][-1], 1)}, flush=True)
    greedy = [i for i, q in enumerate(questions) if temperature(q) == 0.0]
    same = [answers[1][i]["choices"][0]["turns"] == answers[args.batch_size][i]["choices"][0]["turns"] for i in greedy]
    result = {"model": "smollm2-135m", "questions": len(questions), "turns": 2, "max_new_tokens": args.max_new_tokens,
              "threads": torch.get_num_threads(), "seconds_batch_1": seconds[1],
              f"seconds_batch_{args.batch_size}": seconds[args.batch_size],
              "speedup": sum(seconds[1]) / sum(seconds[args.batch_size]),
              "greedy_questions": len(greedy), "greedy_answers_equal": sum(same),
              "provenance": provenance(vars(args), "cpu")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=2))


if __name__ == "__main__":
    main()
