"""Multi-turn answers through the model's chat template, in FastChat's answer JSONL format."""

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
def answer_question(model, tokenizer, question: dict, max_new_tokens: int, seed: int) -> list[str]:
    temperature = TEMPERATURE.get(question["category"], 0.7)
    messages, turns = [], []
    for turn in question["turns"]:
        messages.append({"role": "user", "content": turn})
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        ids = enc["input_ids"].to(model.device)
        torch.manual_seed(seed + question["question_id"])
        sample = temperature > 1e-4
        out = model.generate(ids, attention_mask=enc["attention_mask"].to(model.device), max_new_tokens=max_new_tokens,
                             do_sample=sample, temperature=temperature if sample else None, top_p=None, top_k=None,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        turns.append(text)
        messages.append({"role": "assistant", "content": text})
    return turns


def generate_answers(model, tokenizer, questions: list[dict], model_id: str, max_new_tokens: int,
                     seed: int = 0, progress: bool = True) -> list[dict]:
    rows = []
    for q in tqdm(questions, desc=f"MT-Bench answers ({model_id})", disable=not progress, dynamic_ncols=True):
        turns = answer_question(model, tokenizer, q, max_new_tokens, seed)
        rows.append({"question_id": q["question_id"], "answer_id": _answer_id(model_id, q["question_id"], seed),
                     "model_id": model_id, "choices": [{"index": 0, "turns": turns}], "tstamp": time.time()})
    return rows
