"""Datasets resolve through one registry and tokenize to the same form: loss on the response only."""

import json

from lisa_bench.data.registry import dataset_names, load_conversations
from lisa_bench.data.tokenize import IGNORE_INDEX, PadCollator, encode_all, encode_conversation
from lisa_bench.models.tiny import byte_tokenizer


def test_registry_names():
    assert {"synthetic-instruct", "alpaca-gpt4", "gsm8k"} <= set(dataset_names())


def test_labels_cover_only_the_response():
    tok = byte_tokenizer()
    conv = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]
    ex = encode_conversation(conv, tok, 512)
    trained = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(trained) == "5<|im_end|>\n"
    assert tok.decode(ex["input_ids"]).startswith("<|im_start|>user\nWhat is 2 + 3?")


def test_truncation_and_padding():
    tok = byte_tokenizer()
    convs = load_conversations("synthetic-instruct", size=16)
    full = encode_all(convs, tok, 4096)
    examples = encode_all(convs, tok, 90)
    assert len(examples) >= 4 and all(len(e["input_ids"]) <= 90 for e in examples)
    assert max(len(e["input_ids"]) for e in full) > 90  # some were cut
    # examples whose response was cut away entirely are dropped: they carry no loss
    assert all(any(t != IGNORE_INDEX for t in e["labels"]) for e in examples)
    assert not encode_all(convs, tok, 20)
    batch = PadCollator(tok.pad_token_id)(examples[:4])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    pads = batch["attention_mask"] == 0
    assert (batch["labels"][pads] == IGNORE_INDEX).all()


def test_synthetic_train_and_test_disjoint_conversations():
    train = load_conversations("synthetic-instruct", "train")
    test = load_conversations("synthetic-instruct", "test")
    assert len(train) > len(test) > 0
    assert not {c[0]["content"] for c in test} & {c[0]["content"] for c in train}


def test_synthetic_held_out_is_one_set_for_every_seed_and_never_trained_on():
    """What a run sees, through the loaders it uses: the held-out loss's validation conversations (the
    loop asks with its own seed) and the questions the lm-eval tasks score (no seed) are one set, and no
    seed's training conversations hold any of them."""
    from lisa_bench.evaluation.tasks.synthetic_utils import load_synthetic_test

    scored = load_synthetic_test()["test"]
    scored_prompts = {r["prompt"] for r in scored}
    assert len(scored_prompts) == len(scored) == 200
    for seed in range(5):
        validation = load_conversations("synthetic-instruct", "validation", seed=seed)
        assert [c[0]["content"] for c in validation] == list(scored["prompt"]), f"seed {seed}"
        assert [c[1]["content"] for c in validation] == list(scored["answer"]), f"seed {seed}"
        train = load_conversations("synthetic-instruct", "train", seed=seed)
        assert len(train) == 2000
        assert not {c[0]["content"] for c in train} & scored_prompts, f"seed {seed} trains on a scored question"


def test_local_alpaca_and_chat_files(tmp_path):
    alpaca = tmp_path / "a.json"
    alpaca.write_text(json.dumps([{"instruction": "Add", "input": "2 and 3", "output": "5"}]))
    chat = tmp_path / "c.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                             {"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    a = load_conversations(str(alpaca))
    c = load_conversations(str(chat))
    assert a == [[{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]]
    assert c[0][-1]["content"] == "hello" and len(c[0]) == 3
