"""Turn conversations into training examples: the model's chat template, loss only on the
final assistant response, truncation to a maximum length, right padding in the collator."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def encode_conversation(conv: list[dict], tokenizer, max_length: int) -> dict:
    prompt_text = tokenizer.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(conv, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template renders the prompt differently inside the full conversation; "
                         "cannot locate the response tokens")
    response_text = full_text[len(prompt_text):]
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def encode_all(convs: list[list[dict]], tokenizer, max_length: int) -> list[dict]:
    examples = [encode_conversation(c, tokenizer, max_length) for c in convs]
    # drop examples whose response was truncated away entirely: they carry no loss
    return [e for e in examples if any(t != IGNORE_INDEX for t in e["labels"])]


class PadCollator:
    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[i, :n] = torch.tensor(e["input_ids"])
            labels[i, :n] = torch.tensor(e["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
