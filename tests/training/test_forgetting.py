"""forgetting: the change in loss on general text no split contains, from the base model (data/general.py)."""

import pytest
import torch

from lisa_bench.config import TrainConfig
from lisa_bench.data.general import general_blocks, general_prose
from lisa_bench.data.registry import load_conversations
from lisa_bench.errors import BadInput
from lisa_bench.models import load_model
from lisa_bench.training.loop import train


def test_general_blocks_are_evenly_spaced_scored_throughout_and_described():
    tokenizer = load_model("tiny-random-llama").tokenizer
    blocks, info = general_blocks(tokenizer, 1000, 50)
    assert info["available"] and info["blocks"] == len(blocks) == 20 and info["tokens"] == 1000
    assert all(len(b["input_ids"]) == 50 and b["labels"] == b["input_ids"] for b in blocks)  # every token scored
    # the text tokenized in pieces of at most 1000 characters (cut at paragraphs, else at spaces), put together
    from lisa_bench.data.general import _pieces

    pieces = _pieces(general_prose())
    assert "".join(pieces) == general_prose() and max(map(len, pieces)) <= 1000
    ids = [t for piece in pieces for t in tokenizer(piece, add_special_tokens=False)["input_ids"]]
    assert blocks[0]["input_ids"] == ids[:50]  # the first block and the last whole block of the text
    last = (len(ids) // 50 - 1) * 50
    assert blocks[-1]["input_ids"] == ids[last:last + 50] and last > 20 * 50  # spread over it, not its first pages
    again, info2 = general_blocks(tokenizer, 1000, 50)
    assert again == blocks and info2 == info and len(info["sha256"]) == 64  # deterministic, hashed
    assert general_blocks(tokenizer, 10, 50)[1]["blocks"] == 1  # at least one block


def test_general_text_is_prose_that_no_training_split_contains():
    prose = general_prose()
    assert len(prose.split()) > 20_000 and "::=" not in prose and "+---" not in prose  # running text only
    responses = {turn["content"] for seed in (0, 1) for conv in load_conversations("synthetic-instruct", "train", seed=seed)
                 for turn in conv}
    paragraphs = set(prose.split("\n\n"))
    assert responses and not responses & paragraphs and not any(p in prose for p in list(responses)[:500] if len(p) > 40)


def test_forgetting_is_the_change_from_the_base_models_loss(tiny_cfg, tmp_path):
    cfg = tiny_cfg("full", max_steps=6, forgetting_tokens=384)
    metrics = train(cfg, tmp_path / "full", progress=False)
    # the base model's loss, computed here independently of the loop
    loaded = load_model("tiny-random-llama", seed=cfg.seed)
    blocks, _ = general_blocks(loaded.tokenizer, 384, cfg.max_length)
    with torch.no_grad():
        losses = [loaded.model(input_ids=torch.tensor([b["input_ids"]]), labels=torch.tensor([b["labels"]])).loss
                  for b in blocks]
    assert metrics["general_loss_base"] == pytest.approx(float(sum(losses) / len(losses)), rel=1e-4)
    assert metrics["forgetting"] == pytest.approx(metrics["general_loss"] - metrics["general_loss_base"])
    assert metrics["forgetting"] != 0  # full fine-tuning at lr 2e-3 moves every weight
    assert metrics["general_text"]["blocks"] == 384 // cfg.max_length and metrics["general_text"]["available"]
    untouched = train(tiny_cfg("full", max_steps=2, lr=1e-12, forgetting_tokens=384), tmp_path / "still", progress=False)
    assert abs(untouched["forgetting"]) < 1e-5  # no update, no forgetting
    off = train(tiny_cfg("full", max_steps=2, forgetting_tokens=0), tmp_path / "off", progress=False)
    assert off["forgetting"] is None and off["general_text"] is None


def test_forgetting_tokens_must_be_a_count():
    with pytest.raises(BadInput, match="forgetting_tokens must be an integer >= 0, got -1"):
        TrainConfig(max_steps=1, forgetting_tokens=-1).validate()
