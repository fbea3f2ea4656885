"""synthetic-instruct: the project's own offline dataset of instruction -> answer pairs.

Every example is a short English instruction (Alpaca form: ``instruction`` plus an
optional ``input``) with one short, verifiable answer, drawn from six skill families:

* ``arithmetic``           -- add, subtract, multiply small integers; sum of three numbers.
* ``string``               -- reverse / uppercase a word, count a letter, first / last letter, length.
* ``list``                 -- sort a list (ascending / descending), max, min, sum, count.
* ``unit_conversion``      -- km->m, m->cm, kg->g, hours->minutes, ... with integer values.
* ``comparison_reasoning`` -- ordering puzzles ("Alice is taller than Bob. ..."), the larger /
                              smaller of two numbers, parity of a number.
* ``sequence``             -- next term of an arithmetic or geometric sequence, next letter.

Each record is a dict::

    {"id": "arithmetic-000123", "family": "arithmetic",
     "instruction": "What is 37 + 58? Answer with the number only.", "input": "",
     "output": "95", "answer": "95",
     "choices": ["94", "95", "105", "93"], "label": 1}

``output`` (the training target) equals ``answer`` (the exact-match target) exactly, so a
generation is scored by string equality after stripping whitespace. ``choices`` holds the
answer and three distractors of the same type, shuffled; ``label`` is the answer's index, so
the same data can also be scored as 4-way multiple choice by log-likelihood.

Generation is a pure function of the arguments (standard-library ``random.Random`` only).
Every question carries a canonical key within its family (operation, operands, with operands
whose order does not change the question sorted): equal keys mean the same question, however it
is worded, and no key -- hence no (instruction, input) pair -- occurs twice in a split or in both.

No leakage, by construction: the test (held-out) split is one fixed draw, the same for every
seed -- the test part of seed ``HELDOUT_SEED``'s pool (below) -- and every seed's training
split is its own pool with every held-out key removed. So the questions the lm-eval tasks
score, and the validation conversations of the held-out loss, are identical for every seed
and never in any seed's training split, not even reworded. (The held-out draw is seed 0's
test split as it always was, so seed 0's data at the registry's sizes -- both splits -- is
exactly what it was before this rule, as a test pins; seeds above 0 draw a different training
split than they did.) Each split is drawn from one shuffled pool per family of
``n_train + n_test`` questions, so both follow the generator's distribution, and families are
balanced in each split (counts differ by at most one). The held-out split depends on the sizes
only, never on ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ..errors import BadInput

__all__ = ["FAMILIES", "HELDOUT_SEED", "generate", "keyed_splits"]

FAMILIES: tuple[str, ...] = (
    "arithmetic",
    "string",
    "list",
    "unit_conversion",
    "comparison_reasoning",
    "sequence",
)

# Common English words: lowercase, 3-9 letters, no palindromes.
WORDS: tuple[str, ...] = (
    "apple", "water", "house", "music", "garden", "yellow", "window", "summer", "winter", "river",
    "mountain", "forest", "bread", "butter", "cheese", "orange", "banana", "cherry", "lemon", "grape",
    "table", "chair", "pencil", "paper", "letter", "number", "animal", "rabbit", "monkey", "tiger",
    "horse", "zebra", "camel", "turtle", "dolphin", "whale", "shark", "eagle", "parrot", "spider",
    "doctor", "teacher", "farmer", "pilot", "artist", "singer", "friend", "family", "mother", "father",
    "sister", "brother", "school", "market", "bridge", "castle", "island", "planet", "rocket", "engine",
    "wheel", "bottle", "basket", "blanket", "pillow", "mirror", "candle", "camera", "guitar", "piano",
    "violin", "drum", "flower", "tree", "grass", "stone", "cloud", "storm", "thunder", "rain",
    "snow", "light", "shadow", "silver", "golden", "purple", "green", "black", "white", "brown",
    "happy", "quiet", "simple", "strong", "little", "bright", "gentle", "clever", "honest", "brave",
    "travel", "listen", "answer", "follow", "build", "create", "dance", "laugh", "smile", "dream",
    "journey", "kitchen", "morning", "evening", "picture", "holiday", "library", "problem", "question",
    "minute", "moment", "pocket", "jacket", "ticket", "dragon", "button", "cookie", "carrot", "potato",
    "tomato", "pepper", "sugar", "honey", "coffee", "juice", "ocean", "desert", "valley", "harbor",
    "village", "city", "street", "corner", "garage", "office", "factory", "machine", "robot", "puzzle",
    "mystery", "story", "poem", "song", "game", "sport", "tennis", "soccer", "hockey", "chess",
)

NAMES: tuple[str, ...] = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack",
    "Karen", "Liam", "Maria", "Noah", "Olivia", "Peter", "Quinn", "Rosa", "Sam", "Tina",
)

_LETTERS = "abcdefghijklmnopqrstuvwxyz"

# The one seed whose pool the held-out (test) split is drawn from, for every seed: 0, so that seed 0's
# data stayed what it was when the held-out split still followed the run's seed.
HELDOUT_SEED = 0


class Draft(NamedTuple):
    """One generated question before ids and choice order are assigned."""

    key: tuple  # canonical (operation, operands): equal keys mean the same question, however worded
    instruction: str
    input: str
    answer: str
    distractors: list[str]  # candidate wrong answers; three distinct ones are drawn


# ---------------------------------------------------------------------------------------------
# shared helpers

_NUMBER_SUFFIXES: tuple[str, ...] = (
    " Answer with the number only.",
    " Reply with just the number.",
    " Give only the final number.",
)


def _near(n: int, *, minimum: int = 0, extra: Iterable[int] = ()) -> list[str]:
    """Numeric distractors close to ``n`` (never below ``minimum``)."""
    cands = [*extra, n - 1, n + 1, n - 2, n + 2, n - 10, n + 10]
    return [str(c) for c in cands if c >= minimum]


def _fmt_list(xs: Iterable[int]) -> str:
    return ", ".join(str(x) for x in xs)


def _finish(rng: random.Random, answer: str, candidates: Iterable[str]) -> tuple[list[str], int]:
    """Pick three distinct distractors, shuffle them with the answer; return (choices, label)."""
    pool: list[str] = []
    for c in candidates:
        if c and c != answer and c not in pool:
            pool.append(c)
    if len(pool) < 3:  # a generator bug, not a user error
        raise RuntimeError(f"fewer than 3 distractors for answer {answer!r}: {pool}")
    choices = [answer, *rng.sample(pool, 3)]
    rng.shuffle(choices)
    return choices, choices.index(answer)


# ---------------------------------------------------------------------------------------------
# arithmetic

_ARITH_TEMPLATES: dict[str, tuple[str, ...]] = {
    "add": ("What is {a} + {b}?", "Compute {a} plus {b}.", "Add {a} and {b}."),
    "sub": ("What is {a} - {b}?", "What is {a} minus {b}?", "Subtract {b} from {a}."),
    "mul": ("What is {a} * {b}?", "What is {a} times {b}?", "Multiply {a} by {b}."),
    "sum3": ("What is the sum of {a}, {b} and {c}?", "Add up {a}, {b} and {c}."),
}


def _arithmetic(rng: random.Random) -> Draft:
    op = rng.choice(tuple(_ARITH_TEMPLATES))
    c = 0
    if op == "add":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        ans, extra = a + b, [abs(a - b)]
    elif op == "sub":
        a = rng.randint(20, 99)
        b = rng.randint(1, a)
        ans, extra = a - b, [a + b]
    elif op == "mul":
        a, b = rng.randint(11, 99), rng.randint(2, 9)
        ans, extra = a * b, [a * (b + 1), a * (b - 1), a + b]
    else:
        a, b, c = rng.randint(1, 50), rng.randint(1, 50), rng.randint(1, 50)
        ans, extra = a + b + c, [a + b, b + c]
    text = rng.choice(_ARITH_TEMPLATES[op]).format(a=a, b=b, c=c) + rng.choice(_NUMBER_SUFFIXES)
    key = (op, *sorted((a, b, c))) if op in ("add", "mul", "sum3") else (op, a, b, c)  # 37 + 58 is 58 + 37
    return Draft(key, text, "", str(ans), _near(ans, extra=extra))


# ---------------------------------------------------------------------------------------------
# string

_STRING_TEMPLATES: dict[str, tuple[str, ...]] = {
    "reverse": ("Reverse the word '{w}'.", "Write the word '{w}' backwards.",
                "Spell '{w}' in reverse order.", "Reverse the word given in the input."),
    "upper": ("Write the word '{w}' in uppercase letters.", "Convert '{w}' to all capital letters.",
              "Convert the word given in the input to uppercase."),
    "count": ("How many times does the letter '{c}' appear in '{w}'?",
              "Count the occurrences of the letter '{c}' in the word '{w}'."),
    "first": ("What is the first letter of the word '{w}'?", "Which letter does '{w}' start with?"),
    "last": ("What is the last letter of the word '{w}'?", "Which letter does '{w}' end with?"),
    "length": ("How many letters are in the word '{w}'?", "What is the length of the word '{w}'?",
               "How many letters does the word in the input have?"),
}
_STRING_SUFFIX: dict[str, str] = {
    "reverse": " Answer with the result only.",
    "upper": " Answer with the result only.",
    "count": " Answer with the number only.",
    "first": " Answer with the letter only.",
    "last": " Answer with the letter only.",
    "length": " Answer with the number only.",
}


def _string(rng: random.Random) -> Draft:
    op = rng.choice(tuple(_STRING_TEMPLATES))
    w = rng.choice(WORDS)
    others = [x for x in rng.sample(WORDS, 4) if x != w]
    c = ""
    if op == "reverse":
        ans = w[::-1]
        i = rng.randrange(len(w) - 1)
        swapped = ans[:i] + ans[i + 1] + ans[i] + ans[i + 2:]
        cands = [w, swapped, ans[1:] + ans[0], *(o[::-1] for o in others)]
    elif op == "upper":
        ans = w.upper()
        cands = [w.capitalize(), w, ans[:-1] + w[-1], *(o.upper() for o in others)]
    elif op == "count":
        # Mostly a letter of the word; sometimes one it lacks (answer 0).
        c = rng.choice(w) if rng.random() < 0.8 else rng.choice([x for x in _LETTERS if x not in w])
        n = w.count(c)
        ans, cands = str(n), _near(n, extra=[n + 3])
    elif op in ("first", "last"):
        ans = w[0] if op == "first" else w[-1]
        idx = _LETTERS.index(ans)
        cands = [*w, *(_LETTERS[(idx + d) % 26] for d in (1, -1, 2))]
    else:
        ans, cands = str(len(w)), _near(len(w), minimum=1, extra=[len(w) + 3])
    template = rng.choice(_STRING_TEMPLATES[op])
    uses_input = "{w}" not in template
    text = template.format(w=w, c=c) + _STRING_SUFFIX[op]
    return Draft((op, w, c), text, w if uses_input else "", ans, cands)


# ---------------------------------------------------------------------------------------------
# list

_LIST_TEMPLATES: dict[str, tuple[str, ...]] = {
    "sort_asc": ("Sort the numbers [{L}] in ascending order.",
                 "Arrange these numbers from smallest to largest: [{L}].",
                 "Sort the numbers in the input in ascending order."),
    "sort_desc": ("Sort the numbers [{L}] in descending order.",
                  "Arrange these numbers from largest to smallest: [{L}].",
                  "Sort the numbers in the input in descending order."),
    "max": ("What is the largest number in the list [{L}]?",
            "Find the maximum of [{L}].", "What is the largest number in the input list?"),
    "min": ("What is the smallest number in the list [{L}]?",
            "Find the minimum of [{L}].", "What is the smallest number in the input list?"),
    "sum": ("What is the sum of the numbers in the list [{L}]?",
            "Add up all the numbers in [{L}].", "What is the total of the numbers in the input list?"),
    "len": ("How many numbers are in the list [{L}]?",
            "Count the numbers in [{L}].", "How many numbers does the input list contain?"),
}
_LIST_SUFFIX = " Write the numbers separated by commas."


def _list(rng: random.Random) -> Draft:
    op = rng.choice(tuple(_LIST_TEMPLATES))
    xs = rng.sample(range(1, 100), rng.randint(4, 7))  # distinct values
    asc = sorted(xs)
    desc = asc[::-1]
    if op in ("sort_asc", "sort_desc"):
        target, other = (asc, desc) if op == "sort_asc" else (desc, asc)
        cands = [_fmt_list(other), _fmt_list(xs)]
        for i in range(len(target) - 1):  # one adjacent pair out of place
            ys = list(target)
            ys[i], ys[i + 1] = ys[i + 1], ys[i]
            cands.append(_fmt_list(ys))
        ans = _fmt_list(target)
    elif op in ("max", "min"):
        val = max(xs) if op == "max" else min(xs)
        ans, cands = str(val), [str(x) for x in xs]
    elif op == "sum":
        ans, cands = str(sum(xs)), _near(sum(xs), extra=[sum(xs) - min(xs), sum(xs) + max(xs)])
    else:
        ans, cands = str(len(xs)), _near(len(xs), minimum=1, extra=[len(xs) + 3])
    template = rng.choice(_LIST_TEMPLATES[op])
    uses_input = "{L}" not in template
    suffix = _LIST_SUFFIX if op.startswith("sort") else rng.choice(_NUMBER_SUFFIXES)
    text = template.format(L=_fmt_list(xs)) + suffix
    # the same numbers in another order are the same question (same answer)
    return Draft((op, tuple(asc)), text, _fmt_list(xs) if uses_input else "", ans, cands)


# ---------------------------------------------------------------------------------------------
# unit conversion

# (from singular, from plural, to plural, factor)
_CONVERSIONS: tuple[tuple[str, str, str, int], ...] = (
    ("kilometer", "kilometers", "meters", 1000),
    ("meter", "meters", "centimeters", 100),
    ("centimeter", "centimeters", "millimeters", 10),
    ("kilogram", "kilograms", "grams", 1000),
    ("hour", "hours", "minutes", 60),
    ("minute", "minutes", "seconds", 60),
    ("day", "days", "hours", 24),
    ("week", "weeks", "days", 7),
    ("liter", "liters", "milliliters", 1000),
)
_UNIT_TEMPLATES: tuple[str, ...] = (
    "How many {to} are in {v} {frm}?",
    "Convert {v} {frm} to {to}.",
    "{v} {frm} is equal to how many {to}?",
    "Express {v} {frm} in {to}.",
)


def _unit_conversion(rng: random.Random) -> Draft:
    sing, plur, to, factor = rng.choice(_CONVERSIONS)
    v = rng.randint(1, 250)
    ans = v * factor
    wrong_factor = {1000: 100, 100: 1000, 10: 100, 60: 100, 24: 60, 7: 24}[factor]
    cands = [str(c) for c in (ans * 10, ans + factor, ans - factor, v * wrong_factor, v)]
    text = rng.choice(_UNIT_TEMPLATES).format(v=v, frm=sing if v == 1 else plur, to=to)
    text += rng.choice(_NUMBER_SUFFIXES)
    return Draft((plur, to, v), text, "", str(ans), cands)


# ---------------------------------------------------------------------------------------------
# comparison reasoning

# (comparative, inverse comparative, superlative, inverse superlative)
_RELATIONS: tuple[tuple[str, str, str, str], ...] = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
)
_CHAIN_QUESTIONS: tuple[str, ...] = ("Who is the {sup}?", "Which person is the {sup}?")
_TWO_NUMBER_TEMPLATES: dict[str, tuple[str, ...]] = {
    "larger": ("Which number is larger, {a} or {b}?", "Which is bigger: {a} or {b}?"),
    "smaller": ("Which number is smaller, {a} or {b}?", "Which is less: {a} or {b}?"),
}
_PARITY_TEMPLATES: tuple[str, ...] = ("Is {n} even or odd?", "Is the number {n} odd or even?")


def _chain(rng: random.Random) -> Draft:
    rel = rng.choice(_RELATIONS)
    comp, inv, sup, inv_sup = rel
    people = rng.sample(NAMES, rng.choice((3, 4)))  # people[0] ranks highest
    facts = []
    for hi, lo in zip(people, people[1:]):
        facts.append(f"{hi} is {comp} than {lo}." if rng.random() < 0.5 else f"{lo} is {inv} than {hi}.")
    rng.shuffle(facts)
    ask_top = rng.random() < 0.5
    ans = people[0] if ask_top else people[-1]
    question = rng.choice(_CHAIN_QUESTIONS).format(sup=sup if ask_top else inv_sup)
    text = " ".join(facts) + " " + question + " Answer with the name only."
    outsiders = [x for x in NAMES if x not in people]
    cands = [*people, *rng.sample(outsiders, 2)]
    return Draft(("chain", comp, tuple(people), ask_top), text, "", ans, cands)


def _two_numbers(rng: random.Random) -> Draft:
    op = rng.choice(tuple(_TWO_NUMBER_TEMPLATES))
    a = rng.randint(10, 99)
    if rng.random() < 0.4 and a % 10 != 0 and a % 11 != 0:
        b = int(str(a)[::-1])  # digit swap, e.g. 47 vs 74
    else:
        b = rng.choice([x for x in range(10, 100) if x != a])
    ans = max(a, b) if op == "larger" else min(a, b)
    other = a + b - ans
    text = rng.choice(_TWO_NUMBER_TEMPLATES[op]).format(a=a, b=b) + rng.choice(_NUMBER_SUFFIXES)
    cands = [str(other), str(a + b), str(abs(a - b)), str(ans + 1), str(other - 1), str(ans + 10)]
    return Draft((op, min(a, b), max(a, b)), text, "", str(ans), cands)  # "47 or 74" is "74 or 47"


def _parity(rng: random.Random) -> Draft:
    n = rng.randint(1, 999)
    ans = "even" if n % 2 == 0 else "odd"
    text = rng.choice(_PARITY_TEMPLATES).format(n=n) + " Answer with one word: even or odd."
    return Draft(("parity", n), text, "", ans, ["even", "odd", "neither", "both"])


def _comparison_reasoning(rng: random.Random) -> Draft:
    kind = rng.random()
    if kind < 0.5:
        return _chain(rng)
    if kind < 0.75:
        return _two_numbers(rng)
    return _parity(rng)


# ---------------------------------------------------------------------------------------------
# sequence

_SEQUENCE_TEMPLATES: tuple[str, ...] = (
    "What comes next in the sequence {s}, ?",
    "Continue the pattern: {s}, ?",
    "Find the next term: {s}, ?",
)


def _sequence(rng: random.Random) -> Draft:
    kind = rng.choice(("arith", "arith", "geom", "letter"))
    if kind == "arith":
        step = rng.choice([d for d in range(-9, 13) if d != 0])
        length = rng.randint(4, 6)
        lo = 1 if step > 0 else -step * length
        start = rng.randint(lo, lo + 50)
        terms = [start + i * step for i in range(length)]
        ans = terms[-1] + step
        cands = _near(ans, extra=[ans + step, terms[-1]])
        key: tuple = (kind, start, step, length)
        answer, shown = str(ans), _fmt_list(terms)
        suffix = rng.choice(_NUMBER_SUFFIXES)
    elif kind == "geom":
        ratio, start, length = rng.choice((2, 3)), rng.randint(1, 9), rng.randint(4, 5)
        terms = [start * ratio**i for i in range(length)]
        ans = terms[-1] * ratio
        diff = terms[-1] - terms[-2]
        cands = [str(c) for c in (terms[-1] + diff, ans + 1, ans - 1, ans * ratio, terms[-1] * 2 + 1)]
        key = (kind, start, ratio, length)
        answer, shown = str(ans), _fmt_list(terms)
        suffix = rng.choice(_NUMBER_SUFFIXES)
    else:
        step, length = rng.randint(1, 3), rng.randint(3, 5)
        start = rng.randint(0, 25 - step * length)
        terms_l = [_LETTERS[start + i * step] for i in range(length)]
        idx = start + length * step
        answer = _LETTERS[idx]
        cands = [_LETTERS[i] for i in (idx - 1, idx + 1, idx + 2, idx - 2, idx - 3, idx - step, idx + step)
                 if 0 <= i < 26]
        key = (kind, start, step, length)
        shown = ", ".join(terms_l)
        suffix = " Answer with the letter only."
    text = rng.choice(_SEQUENCE_TEMPLATES).format(s=shown) + suffix
    return Draft(key, text, "", answer, cands)


# ---------------------------------------------------------------------------------------------
# assembly

_GENERATORS: dict[str, Callable[[random.Random], Draft]] = {
    "arithmetic": _arithmetic,
    "string": _string,
    "list": _list,
    "unit_conversion": _unit_conversion,
    "comparison_reasoning": _comparison_reasoning,
    "sequence": _sequence,
}
_MAX_CONSECUTIVE_MISSES = 2000


def _quotas(n: int, k: int, *, from_end: bool) -> list[int]:
    """Split ``n`` into ``k`` near-equal counts; the remainder goes to the first or last ones."""
    base, rem = divmod(n, k)
    extra = [1] * rem + [0] * (k - rem)
    if from_end:
        extra.reverse()
    return [base + e for e in extra]


def _unique_drafts(family: str, rng: random.Random, need: int, seen_prompts: set) -> list[Draft]:
    """Draw ``need`` drafts with distinct keys and distinct (instruction, input) prompts."""
    make = _GENERATORS[family]
    out: list[Draft] = []
    seen_keys: set[tuple] = set()
    misses, attempts, max_attempts = 0, 0, 50 * need + 10_000
    while len(out) < need:
        attempts += 1
        if misses >= _MAX_CONSECUTIVE_MISSES or attempts > max_attempts:
            raise RuntimeError(
                f"synthetic-instruct: could only generate {len(out)} unique {family!r} prompts, "
                f"{need} needed; ask for fewer examples")
        d = make(rng)
        prompt = (d.instruction, d.input)
        if d.key in seen_keys or prompt in seen_prompts:
            misses += 1
            continue
        misses = 0
        seen_keys.add(d.key)
        seen_prompts.add(prompt)
        out.append(d)
    return out


def _interleave(groups: list[list]) -> list:
    """Round-robin over families so every prefix of a split stays balanced."""
    out: list = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def _pool(family: str, seed: int, need: int, seen_prompts: set) -> list[tuple[tuple, dict]]:
    """``need`` unique questions of ``family`` from seed ``seed``'s stream, as (key, record), shuffled."""
    rng = random.Random(f"synthetic-instruct/{seed}/{family}")
    drafts = _unique_drafts(family, rng, need, seen_prompts)
    pool = []
    for i, d in enumerate(drafts):
        choices, label = _finish(rng, d.answer, d.distractors)
        pool.append((d.key, {
            "id": f"{family}-{i:06d}",
            "family": family,
            "instruction": d.instruction,
            "input": d.input,
            "output": d.answer,
            "answer": d.answer,
            "choices": choices,
            "label": label,
        }))
    rng.shuffle(pool)  # a split is a random part of one pool: the same distribution
    return pool


def _prompt(record: dict) -> tuple[str, str]:
    return record["instruction"], record["input"]


def keyed_splits(seed: int = 0, n_train: int = 2000, n_test: int = 200
                 ) -> tuple[list[tuple[tuple, dict]], list[tuple[tuple, dict]]]:
    """``generate``'s (train, test) as (key, record) pairs: the generator's question key (unique within
    a family) next to each record.

    The test split is the test part of seed ``HELDOUT_SEED``'s pool whatever ``seed`` is; the training
    split is seed ``seed``'s pool with every held-out key (and prompt) removed, cut to its quota.
    """
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise BadInput(f"{name} must be a non-negative integer, got {n!r}")
    k = len(FAMILIES)
    train_q = _quotas(n_train, k, from_end=False)
    test_q = _quotas(n_test, k, from_end=True)  # evens out family totals over the pool
    held_seen: set[tuple[str, str]] = set()
    held_pools = [_pool(family, HELDOUT_SEED, train_q[f] + test_q[f], held_seen) for f, family in enumerate(FAMILIES)]
    test_groups = [pool[:test_q[f]] for f, pool in enumerate(held_pools)]
    held_keys = {(r["family"], key) for group in test_groups for key, r in group}
    held_prompts = {_prompt(r) for group in test_groups for _, r in group}
    own_seen: set[tuple[str, str]] = set()
    train_groups = []
    for f, family in enumerate(FAMILIES):
        pool = held_pools[f] if seed == HELDOUT_SEED else _pool(family, seed, train_q[f] + test_q[f], own_seen)
        kept = [(key, r) for key, r in pool if (family, key) not in held_keys and _prompt(r) not in held_prompts]
        # the pool holds train_q + test_q distinct keys, of which at most test_q are held out
        if len(kept) < train_q[f]:  # a generator bug (a prompt with two keys), not a user error
            raise RuntimeError(f"synthetic-instruct: {family!r} pool of seed {seed} kept {len(kept)} questions "
                               f"after removing the held-out ones, {train_q[f]} needed")
        train_groups.append(kept[:train_q[f]])
    return _interleave(train_groups), _interleave(test_groups)


def generate(seed: int = 0, n_train: int = 2000, n_test: int = 200) -> tuple[list[dict], list[dict]]:
    """Return (train, test) records of synthetic-instruct, a pure function of the arguments.

    Families are balanced in each split (counts differ by at most one); no question occurs
    twice across both splits. The test split is the same for every seed, and no seed's training
    split holds any of its questions, by key (see the module docstring). Raises ``BadInput`` for
    negative sizes and ``RuntimeError`` when a family cannot supply enough unique questions for
    the requested sizes.
    """
    train, test = keyed_splits(seed, n_train, n_test)
    return [r for _, r in train], [r for _, r in test]
