"""Single-answer grading with an LLM judge: an OpenAI-compatible endpoint or a local transformers model.

Ratings are parsed as FastChat does: ``[[rating]]``, then ``[rating]``, else -1 (a failure,
left out of the means). Every judgment is cached (keyed by question, turn, the answer text, the
judge and the prompt), so a rerun makes no judge call it has made before, and judgments made
before an endpoint fails are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ...errors import BadInput
from .data import NEED_REF_CATEGORIES, BenchData

RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


DEFAULT_URL = "https://api.openai.com/v1"  # an openai: judge's endpoint without --judge-base-url


class JudgeUnavailable(BadInput):
    """The judge endpoint kept failing after its retries."""


def parse_rating(judgment: str) -> float:
    match = RATING.search(judgment) or RATING_BACKUP.search(judgment)
    return float(match.group(1)) if match else -1.0


# ---------------------------------------------------------------------------------------------
# judges
# ---------------------------------------------------------------------------------------------
class OpenAIJudge:
    """Any OpenAI-compatible chat endpoint (GPT-4, a vLLM or llama.cpp server) through ``openai``."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, retries: int = 5,
                 backoff: float = 1.0, timeout: float = 120.0, max_tokens: int = 2048):
        import openai

        self.name = model
        self.url = base_url or DEFAULT_URL
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=timeout)
        self.retries, self.backoff, self.max_tokens = retries, backoff, max_tokens

    def complete(self, system: str, user: str) -> str:
        import openai

        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        last = None
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.chat.completions.create(model=self.name, messages=messages, temperature=0.0,
                                                           max_tokens=self.max_tokens)
                return resp.choices[0].message.content or ""
            except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError,
                    openai.InternalServerError) as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(self.backoff * 2**attempt)
            except openai.APIStatusError as exc:  # 4xx other than rate limits: retrying cannot help
                raise JudgeUnavailable(f"judge endpoint {self.url} refused the request (HTTP {exc.status_code}: "
                                       f"{str(exc)[:200]})") from None
        raise JudgeUnavailable(f"judge endpoint {self.url} failed after {self.retries + 1} attempts "
                               f"({type(last).__name__}: {str(last)[:200]}); judgments made so far are cached")


class HFJudge:
    """A local transformers model as judge. With ``expected_rating`` the score is the expectation of
    the rating under the judge's next-token probabilities over 1..10 after ``Rating: [[``, so a weak
    judge never fails to parse."""

    def __init__(self, model_name: str, device: str = "cpu", max_new_tokens: int = 256, expected_rating: bool = False):
        import torch

        from ...models import load_model

        loaded = load_model(model_name)
        # the name keys the cache: generated and probability-scored judgments must not mix
        self.name = model_name + ("+expected-rating" if expected_rating else "")
        self.model = loaded.model.to(device).eval()
        self.tokenizer = loaded.tokenizer
        self.max_new_tokens = max_new_tokens
        self.expected = expected_rating
        self.lock = threading.Lock()
        self.torch = torch

    def _prompt_ids(self, system: str, user: str, suffix: str = ""):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + suffix
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.model.device)

    def complete(self, system: str, user: str) -> str:
        torch = self.torch
        with self.lock, torch.no_grad():
            if self.expected:
                ids = self._prompt_ids(system, user, "Rating: [[")
                probs = torch.softmax(self.model(ids).logits[0, -1].float(), dim=-1)
                candidates = {}
                for r in range(1, 11):
                    tok = self.tokenizer(str(r), add_special_tokens=False)["input_ids"]
                    if len(tok) == 1:
                        candidates[r] = float(probs[tok[0]])
                total = sum(candidates.values())
                score = sum(r * p for r, p in candidates.items()) / total
                return f"Expected rating from the judge's token probabilities over {sorted(candidates)}: [[{score:.3f}]]"
            ids = self._prompt_ids(system, user)
            out = self.model.generate(ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def check_judge_key(spec: str, base_url: str | None, api_key: str | None, key_env: str = "OPENAI_API_KEY") -> None:
    """OpenAI's own endpoint refuses every call without a key: say so before any call (and any retry) is made. A
    custom ``base_url`` (a vLLM or llama.cpp server) may need no key, so it is not refused."""
    if spec.startswith("openai:") and not base_url and not api_key:
        raise BadInput(f"judge {spec!r} calls {DEFAULT_URL}, which needs an API key, and ${key_env} is not set; set "
                       f"it (or name another variable with --judge-api-key-env), or give --judge-base-url for an "
                       f"endpoint that needs none")


def make_judge(spec: str, base_url: str | None = None, api_key: str | None = None, device: str = "cpu",
               expected_rating: bool = False, retries: int = 5, max_new_tokens: int = 512):
    check_judge_key(spec, base_url, api_key)
    kind, _, name = spec.partition(":")
    if kind == "openai" and name:
        return OpenAIJudge(name, base_url, api_key, retries=retries)
    if kind == "hf" and name:
        return HFJudge(name, device=device, max_new_tokens=max_new_tokens, expected_rating=expected_rating)
    raise BadInput(f"unknown judge {spec!r}; valid choices: openai:MODEL (with --judge-base-url for a local "
                   f"server), hf:MODEL (a local transformers model, e.g. hf:smollm2-135m)")


# ---------------------------------------------------------------------------------------------
# the protocol
# ---------------------------------------------------------------------------------------------
@dataclass
class Task:
    question_id: int
    category: str
    turn: int
    prompt_name: str
    system: str
    user: str


def build_tasks(bench: BenchData, answers: list[dict]) -> list[Task]:
    tasks = []
    for ans in answers:
        q = bench.question(ans["question_id"])
        a = ans["choices"][0]["turns"]
        ref = q["category"] in NEED_REF_CATEGORIES
        refs = bench.references.get(q["question_id"]) if ref else None
        if ref and refs is None:
            raise BadInput(f"question {q['question_id']} ({q['category']}) needs a reference answer; none in "
                           f"{bench.source}")
        for turn in (1, 2):
            name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
            prompt = bench.prompts[name]
            if turn == 1:
                fields = {"question": q["turns"][0], "answer": a[0]}
                if ref:
                    fields["ref_answer_1"] = refs[0]
            else:
                fields = {"question_1": q["turns"][0], "answer_1": a[0], "question_2": q["turns"][1],
                          "answer_2": a[1]}
                if ref:
                    fields.update(ref_answer_1=refs[0], ref_answer_2=refs[1])
            tasks.append(Task(q["question_id"], q["category"], turn, name, prompt["system_prompt"],
                              prompt["prompt_template"].format(**fields)))
    return tasks


class JudgmentCache:
    """Append-only JSONL; a torn last line (a crash mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row
                except (json.JSONDecodeError, KeyError):
                    continue
        self.lock = threading.Lock()

    @staticmethod
    def key(task: Task, judge_name: str) -> str:
        blob = json.dumps([task.question_id, task.turn, task.prompt_name, task.system, task.user, judge_name])
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, judgment: str) -> None:
        row = {"key": key, "judgment": judgment}
        with self.lock:
            self.entries[key] = row
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def judge_answers(bench: BenchData, answers: list[dict], judge, cache: JudgmentCache, model_id: str,
                  parallel: int = 1, progress: bool = True) -> tuple[list[dict], int]:
    """Judgments in FastChat's format, and the number of judge calls made (0 when all were cached)."""
    from tqdm.auto import tqdm

    tasks = build_tasks(bench, answers)
    calls = 0
    todo = [t for t in tasks if cache.get(JudgmentCache.key(t, judge.name)) is None]

    def run(task: Task) -> None:
        cache.put(JudgmentCache.key(task, judge.name), judge.complete(task.system, task.user))

    with tqdm(total=len(todo), desc=f"judging with {judge.name}", disable=not progress or not todo) as bar:
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            for fut in [pool.submit(run, t) for t in todo]:
                fut.result()  # re-raises JudgeUnavailable; finished judgments are already cached
                calls += 1
                bar.update(1)
    rows = []
    for t in tasks:
        judgment = cache.get(JudgmentCache.key(t, judge.name))["judgment"]
        rows.append({"question_id": t.question_id, "model": model_id, "judge": [judge.name, t.prompt_name],
                     "user_prompt": t.user, "judgment": judgment, "score": parse_rating(judgment), "turn": t.turn,
                     "category": t.category, "tstamp": time.time()})
    return rows, calls


def summarize(judgments: list[dict]) -> dict:
    import pandas as pd

    df = pd.DataFrame(judgments)
    ok = df[df["score"] >= 0]
    return {
        "overall": float(ok["score"].mean()) if len(ok) else None,
        "per_turn": {f"turn_{int(t)}": float(g["score"].mean()) for t, g in ok.groupby("turn")},
        "per_category": {c: float(g["score"].mean()) for c, g in ok.groupby("category")},
        "n_judgments": int(len(df)),
        "n_failures": int((df["score"] < 0).sum()),
        "failure_rate": float((df["score"] < 0).mean()) if len(df) else 0.0,
    }
