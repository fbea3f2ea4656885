"""General text that no training split contains, for ``forgetting``: the change in a model's loss on it from the
base model to the fine-tuned one (the metric peft's method comparison reports next to task scores).

The text is the prose of the Python Language Reference as CPython ships it (``pydoc_data.topics``, the pages
``help()`` shows): it is on every machine that runs the suite, CI included, with no download; it is ordinary
English expository prose of the kind web pretraining corpora hold (SmolLM2's included), about a subject none of
the suite's datasets touches; and it is fixed for a given Python release (its SHA-256 is recorded with the score,
so two runs are compared on the same text or seen not to be). Indented lines (grammar productions, code
examples) and ASCII tables (operator precedence) are left out, so that what is scored is running prose rather
than Python syntax.

Blocks of ``max_length`` tokens, evenly spaced over the whole text (not its first pages, which are about the
``assert`` statement), every token scored; see ``general_blocks``.
"""

from __future__ import annotations

import hashlib
import sys

SOURCE = "CPython pydoc_data.topics (Python Language Reference prose, indented grammar and code and tables left out)"


def general_prose() -> str:
    """The text: every topic's unindented paragraphs, topics in sorted order; '' where CPython lacks pydoc_data."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a Python built without its documentation topics
        return ""
    paragraphs = []
    for name in sorted(topics):
        for para in topics[name].split("\n\n"):
            lines = [ln for ln in para.splitlines() if ln.strip()]
            # prose only: no indented code or grammar, no underlines of headings, no headings alone
            if not lines or any(ln[:1].isspace() or ln[:1] in "+|" for ln in lines) \
                    or set(lines[-1].strip()) <= set("*=-~^"):
                continue
            text = " ".join(ln.strip() for ln in lines)
            if len(text.split()) >= 8:
                paragraphs.append(text)
    return "\n\n".join(paragraphs)


def _pieces(text: str, size: int = 1000) -> list[str]:
    """The text in consecutive pieces of at most ``size`` characters, each cut after a paragraph's end where one
    falls inside it, else after a space: put together, the pieces are the text."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n\n", start, end)
            cut = cut + 1 if cut > start else text.rfind(" ", start, end)
            end = cut + 1 if cut > start else end
        pieces.append(text[start:end])
        start = end
    return pieces


_IDS: dict = {}  # (tokenizer kind, name, vocabulary size, text hash) -> the text's token ids


def _token_ids(tokenizer, text: str) -> list[int]:
    """The text's tokens, paragraph by paragraph in one batch (each paragraph is short, so no tokenizer warns
    about a sequence above the model's length), once per tokenizer and text in a process."""
    if not text:
        return []
    key = (type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer),
           hashlib.sha256(text.encode()).hexdigest())
    if key not in _IDS:
        _IDS[key] = [t for ids in tokenizer(_pieces(text), add_special_tokens=False)["input_ids"] for t in ids]
    return _IDS[key]


def general_blocks(tokenizer, tokens: int, block_length: int) -> tuple[list[dict], dict]:
    """``tokens // block_length`` blocks (at least one) of ``block_length`` tokens, evenly spaced over the text,
    as examples whose every token is scored; and what they are (source, hash, counts) for the metrics.
    No blocks (and ``available: false``) where the text is missing or shorter than one block."""
    text = general_prose()
    info = {"source": SOURCE, "python": f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
            "sha256": hashlib.sha256(text.encode()).hexdigest(), "block_length": block_length}
    ids = _token_ids(tokenizer, text)
    whole = len(ids) // block_length
    wanted = min(whole, max(1, tokens // block_length))
    if wanted == 0:
        return [], {**info, "available": False, "blocks": 0, "tokens": 0}
    # evenly spaced block starts over all whole blocks of the text
    starts = [round(i * (whole - 1) / max(1, wanted - 1)) * block_length for i in range(wanted)]
    blocks = [ids[s:s + block_length] for s in starts]
    examples = [{"input_ids": b, "labels": list(b)} for b in blocks]
    return examples, {**info, "available": True, "blocks": wanted, "tokens": wanted * block_length,
                      "text_tokens": len(ids)}
