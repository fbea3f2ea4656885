"""MT-Bench questions, judge prompts and reference answers.

Sources: ``upstream`` (FastChat's files at a pinned commit, downloaded once into the cache and
checked against their sha256), ``offline`` (the project's own small question set and judge
prompts of the same form, shipped with the package), or a directory holding ``question.jsonl``,
``judge_prompts.jsonl`` and ``reference_answer/*.jsonl`` (or ``reference_answer.jsonl``).
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ... import atomic
from ...errors import BadInput
from ...jsonl import read_jsonl_records

UPSTREAM_COMMIT = "0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
UPSTREAM_URL = f"https://raw.githubusercontent.com/lm-sys/FastChat/{UPSTREAM_COMMIT}/fastchat/llm_judge/data/"
UPSTREAM_FILES = {  # local name -> (upstream path, sha256)
    "question.jsonl": ("mt_bench/question.jsonl",
                       "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"),
    "judge_prompts.jsonl": ("judge_prompts.jsonl",
                            "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"),
    "reference_answer/gpt-4.jsonl": ("mt_bench/reference_answer/gpt-4.jsonl",
                                     "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f"),
}
OFFLINE_DIR = Path(__file__).parent / "offline"
CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
NEED_REF_CATEGORIES = ("math", "reasoning", "coding")
JUDGE_PROMPTS = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")


@dataclass
class BenchData:
    questions: list[dict]
    prompts: dict[str, dict]
    references: dict[int, list[str]]
    source: str

    def question(self, qid: int) -> dict:
        return self._by_id[qid]

    def __post_init__(self):
        self._by_id = {q["question_id"]: q for q in self.questions}


def read_jsonl(path: Path, required: dict[str, type]) -> list[dict]:
    rows = []
    for lineno, row in read_jsonl_records(path):
        if not isinstance(row, dict):
            raise BadInput(f"{path}:{lineno}: expected a JSON object")
        for key, kind in required.items():
            if not isinstance(row.get(key), kind):
                raise BadInput(f"{path}:{lineno}: field {key!r} missing or not a {kind.__name__}")
        rows.append(row)
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_upstream() -> Path:
    """Download FastChat's MT-Bench files at the pinned commit into the cache (once)."""
    from ...models.smollm2 import cache_root

    target = cache_root() / "mt_bench" / UPSTREAM_COMMIT
    for name, (upstream, sha) in UPSTREAM_FILES.items():
        path = target / name
        if path.exists() and _sha256(path) == sha:
            continue
        url = UPSTREAM_URL + upstream
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                data = resp.read()
        except OSError as exc:
            raise BadInput(f"could not download {url} ({exc}); give --questions offline or a directory with "
                           f"the MT-Bench files") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha:
            raise BadInput(f"{url} has sha256 {digest}, expected {sha}; not used")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, data.decode("utf-8"))
    return target


def _questions(path: Path) -> list[dict]:
    rows = read_jsonl(path, {"question_id": int, "category": str, "turns": list})
    seen = set()
    for q in rows:
        if len(q["turns"]) != 2 or not all(isinstance(t, str) for t in q["turns"]):
            raise BadInput(f"{path}: question {q['question_id']}: 'turns' must be two strings")
        if q["question_id"] in seen:
            raise BadInput(f"{path}: question_id {q['question_id']} occurs twice")
        seen.add(q["question_id"])
    if not rows:
        raise BadInput(f"{path}: no questions")
    return rows


def _prompts(path: Path) -> dict[str, dict]:
    rows = read_jsonl(path, {"name": str, "system_prompt": str, "prompt_template": str})
    prompts = {r["name"]: r for r in rows}
    missing = [n for n in JUDGE_PROMPTS if n not in prompts]
    if missing:
        raise BadInput(f"{path}: judge prompt {missing[0]!r} is missing; needed: {', '.join(JUDGE_PROMPTS)}")
    return prompts


def _references(directory: Path) -> dict[int, list[str]]:
    files = sorted((directory / "reference_answer").glob("*.jsonl")) if (directory / "reference_answer").is_dir() \
        else [directory / "reference_answer.jsonl"]
    refs = {}
    for f in files:
        if f.exists():
            for row in read_jsonl(f, {"question_id": int, "choices": list}):
                refs[row["question_id"]] = row["choices"][0]["turns"]
    return refs


def load_bench(source: str = "offline") -> BenchData:
    if source == "offline":
        directory = OFFLINE_DIR
    elif source == "upstream":
        directory = fetch_upstream()
    else:
        directory = Path(source)
        if not (directory / "question.jsonl").is_file():
            raise BadInput(f"unknown question source {source!r}; valid choices: offline, upstream, or a directory "
                           f"with question.jsonl and judge_prompts.jsonl")
    questions = _questions(directory / "question.jsonl")
    bad = [q for q in questions if q["category"] not in CATEGORIES]
    if bad:
        raise BadInput(f"{directory / 'question.jsonl'}: question {bad[0]['question_id']} has unknown category "
                       f"{bad[0]['category']!r}; valid choices: {', '.join(CATEGORIES)}")
    return BenchData(questions, _prompts(directory / "judge_prompts.jsonl"), _references(directory), str(directory))
