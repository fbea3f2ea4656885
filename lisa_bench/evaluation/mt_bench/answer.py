"""Multi-turn answers through the model's chat template, in FastChat's answer JSONL format.

Questions that share a sampling temperature (FastChat's per-category temperatures) are answered together,
``batch_size`` at a time: their prompts left-padded into one batch, each row stopping at its own end of
turn; turn 2 follows once the batch's turn-1 answers are in. Greedy answers are the same as one question at
a time (a test checks it); sampled ones draw from one seeded generator per batch.
"""

from __future__ import annotations

import hashlib
import time

import torch
from tqdm.auto import tqdm

# FastChat's per-category sampling temperatures (0.0 = greedy)
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
               "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}


def _answer_id(model_id: str, qid: int, seed: int) -> str:
    return hashlib.sha256(f"{model_id}/{qid}/{seed}".encode()).hexdigest()[:22]


@torch.no_grad()
def answer_batch(model, tokenizer, questions: list[dict], max_new_tokens: int, seed: int) -> list[list[str]]:
    """Both turns of a batch of questions of one temperature; the answers of each question."""
    temp = temperature(questions[0])
    sample = temp > 1e-4
    conversations: list[list[dict]] = [[] for _ in questions]
    answers: list[list[str]] = [[] for _ in questions]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues every row from its last real token
    try:
        for turn in range(max(len(q["turns"]) for q in questions)):
            for conv, q in zip(conversations, questions):
                conv.append({"role": "user", "content": q["turns"][turn]})
            texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            torch.manual_seed(seed + questions[0]["question_id"])
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sample,
                                 temperature=temp if sample else None, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            for conv, answer, row in zip(conversations, answers, out[:, enc["input_ids"].shape[1]:]):
                text = tokenizer.decode(row, skip_special_tokens=True).strip()
                answer.append(text)
                conv.append({"role": "assistant", "content": text})
    finally:
        tokenizer.padding_side = side
    return answers


def temperature(question: dict) -> float:
    return TEMPERATURE.get(question["category"], 0.7)


def temperature_batches(questions: list[dict], batch_size: int) -> list[list[dict]]:
    """Questions of one temperature together, at most ``batch_size`` a batch (None: a whole group)."""
    groups: dict[float, list[dict]] = {}
    for q in questions:
        groups.setdefault(temperature(q), []).append(q)
    size = batch_size or len(questions) or 1
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def answer_rows(questions: list[dict], turns: dict[int, list[str]], model_id: str, seed: int) -> list[dict]:
    """FastChat's answer records, in the questions' order."""
    return [{"question_id": q["question_id"], "answer_id": _answer_id(model_id, q["question_id"], seed),
             "model_id": model_id, "choices": [{"index": 0, "turns": turns[q["question_id"]]}], "tstamp": time.time()}
            for q in questions]


def generate_answers(model, tokenizer, questions: list[dict], model_id: str, max_new_tokens: int,
                     seed: int = 0, progress: bool = True, batch_size: int = 8) -> list[dict]:
    """Answers in the questions' order; questions of one temperature are batched together."""
    turns: dict[int, list[str]] = {}
    bar = tqdm(total=len(questions), desc=f"MT-Bench answers ({model_id})", disable=not progress, dynamic_ncols=True)
    for batch in temperature_batches(questions, batch_size):
        for q, answer in zip(batch, answer_batch(model, tokenizer, batch, max_new_tokens, seed)):
            turns[q["question_id"]] = answer
        bar.update(len(batch))
    bar.close()
    return answer_rows(questions, turns, model_id, seed)
