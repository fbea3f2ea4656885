"""Tests for lisa_bench.data.synthetic (the offline synthetic-instruct dataset).

The answer checks re-solve every question from its text with solvers written here, independent
of the generator's own code paths (e.g. unit conversions go through base units, orderings are
rebuilt from the stated facts).
"""

from __future__ import annotations

import ast
import collections
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import pytest

from lisa_bench.data import synthetic
from lisa_bench.data.synthetic import FAMILIES, generate

REQUIRED_FAMILIES = {"arithmetic", "string", "list", "unit_conversion", "comparison_reasoning", "sequence"}
RECORD_KEYS = {"id", "family", "instruction", "input", "output", "answer", "choices", "label"}


@pytest.fixture(scope="module")
def default_split() -> tuple[list[dict], list[dict]]:
    return generate(0, 2000, 200)


def _prompt(r: dict) -> tuple[str, str]:
    return (r["instruction"], r["input"])


# ---------------------------------------------------------------------------------------------
# independent solvers: question text -> expected answer string


def solve_arithmetic(instr: str, inp: str) -> str:
    nums = [int(x) for x in re.findall(r"\d+", instr)]
    if instr.startswith("Subtract"):
        b, a = nums
        return str(a - b)
    if " - " in instr or " minus " in instr:
        a, b = nums
        return str(a - b)
    if " * " in instr or " times " in instr or instr.startswith("Multiply"):
        a, b = nums
        return str(a * b)
    assert any(w in instr for w in (" + ", " plus ", "Add ", "sum of")), instr
    return str(sum(nums))


def solve_string(instr: str, inp: str) -> str:
    quoted = re.findall(r"'([a-z]+)'", instr)
    if len(quoted) == 2:  # count a letter in a word
        letter, word = quoted
        return str(word.count(letter))
    word = quoted[0] if quoted else inp
    assert word, instr
    if "backwards" in instr or "everse" in instr:
        return word[::-1]
    if "uppercase" in instr or "capital" in instr:
        return word.upper()
    if "first letter" in instr or "start with" in instr:
        return word[0]
    if "last letter" in instr or "end with" in instr:
        return word[-1]
    assert "How many letters" in instr or "length" in instr, instr
    return str(len(word))


def solve_list(instr: str, inp: str) -> str:
    m = re.search(r"\[([\d, ]+)\]", instr)
    xs = [int(x) for x in (m.group(1) if m else inp).split(",")]
    if "ascending" in instr or "smallest to largest" in instr:
        return ", ".join(map(str, sorted(xs)))
    if "descending" in instr or "largest to smallest" in instr:
        return ", ".join(map(str, sorted(xs, reverse=True)))
    if "largest" in instr or "maximum" in instr:
        return str(max(xs))
    if "smallest" in instr or "minimum" in instr:
        return str(min(xs))
    if "sum" in instr or "Add up" in instr or "total" in instr:
        return str(sum(xs))
    assert "How many" in instr or "Count" in instr, instr
    return str(len(xs))


# Each unit in its dimension's smallest unit (mm, g, s, ml).
_BASE = {
    "kilometer": 1_000_000, "meter": 1000, "centimeter": 10, "millimeter": 1,
    "kilogram": 1000, "gram": 1,
    "week": 7 * 24 * 3600, "day": 24 * 3600, "hour": 3600, "minute": 60, "second": 1,
    "liter": 1000, "milliliter": 1,
}


def solve_unit_conversion(instr: str, inp: str) -> str:
    m = re.search(r"(\d+) ([a-z]+)", instr)
    value, src = int(m.group(1)), m.group(2).removesuffix("s")
    units = [w.removesuffix("s") for w in re.findall(r"[a-z]+", instr) if w.removesuffix("s") in _BASE]
    targets = [u for u in units if u != src]
    assert src in _BASE and len(targets) == 1, instr
    total = value * _BASE[src]
    assert total % _BASE[targets[0]] == 0
    return str(total // _BASE[targets[0]])


_UP = {"taller", "older", "faster", "heavier"}
_DOWN = {"shorter", "younger", "slower", "lighter"}
_TOP = {"tallest", "oldest", "fastest", "heaviest"}
_BOTTOM = {"shortest", "youngest", "slowest", "lightest"}


def solve_comparison(instr: str, inp: str) -> str:
    facts = re.findall(r"([A-Z][a-z]+) is ([a-z]+) than ([A-Z][a-z]+)\.", instr)
    if facts:
        above: dict[str, set[str]] = collections.defaultdict(set)  # person -> people directly above
        people: set[str] = set()
        for x, rel, y in facts:
            people |= {x, y}
            if rel in _UP:
                above[y].add(x)
            else:
                assert rel in _DOWN, rel
                above[x].add(y)
        below_someone = {p for p in people if above[p]}
        above_someone = {q for p in people for q in above[p]}
        sup = re.search(r"the ([a-z]+)\?", instr).group(1)
        candidates = people - below_someone if sup in _TOP else people - above_someone
        assert sup in _TOP | _BOTTOM and len(candidates) == 1, instr
        return candidates.pop()
    nums = [int(x) for x in re.findall(r"\d+", instr)]
    if "even" in instr:
        (n,) = nums
        return "even" if n % 2 == 0 else "odd"
    a, b = nums
    if "larger" in instr or "bigger" in instr:
        return str(max(a, b))
    assert "smaller" in instr or "less" in instr, instr
    return str(min(a, b))


def solve_sequence(instr: str, inp: str) -> str:
    m = re.search(r"([a-z0-9]+(?:, [a-z0-9]+)+), \?", instr)
    terms = m.group(1).split(", ")
    if all(t.isdigit() for t in terms):
        xs = [int(t) for t in terms]
        diffs = {b - a for a, b in zip(xs, xs[1:])}
        if len(diffs) == 1:
            return str(xs[-1] + diffs.pop())
        ratios = {b / a for a, b in zip(xs, xs[1:])}
        assert len(ratios) == 1, instr
        return str(round(xs[-1] * ratios.pop()))
    steps = {ord(b) - ord(a) for a, b in zip(terms, terms[1:])}
    assert len(steps) == 1 and all(len(t) == 1 for t in terms), instr
    return chr(ord(terms[-1]) + steps.pop())


SOLVERS = {
    "arithmetic": solve_arithmetic,
    "string": solve_string,
    "list": solve_list,
    "unit_conversion": solve_unit_conversion,
    "comparison_reasoning": solve_comparison,
    "sequence": solve_sequence,
}


# ---------------------------------------------------------------------------------------------
# API and shape


def test_families_cover_required_skills():
    assert isinstance(FAMILIES, tuple)
    assert REQUIRED_FAMILIES <= set(FAMILIES)
    assert len(set(FAMILIES)) == len(FAMILIES)
    assert set(SOLVERS) >= set(FAMILIES), "every family needs an independent solver in this test"


@pytest.mark.parametrize("n_train,n_test", [(2000, 200), (0, 0), (7, 5), (60, 0), (0, 13), (101, 37)])
def test_sizes(n_train, n_test):
    train, test = generate(1, n_train, n_test)
    assert len(train) == n_train
    assert len(test) == n_test


def test_default_arguments_match_explicit_ones(default_split):
    assert generate() == default_split


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_bad_sizes_raise_value_error(bad):
    with pytest.raises(ValueError):
        generate(0, bad, 10)
    with pytest.raises(ValueError):
        generate(0, 10, bad)


def test_record_invariants(default_split):
    for split in default_split:
        for r in split:
            assert set(r) == RECORD_KEYS, r
            assert r["family"] in FAMILIES
            for key in ("id", "instruction", "input", "output", "answer"):
                assert isinstance(r[key], str), (key, r)
            assert r["instruction"].strip() and r["answer"].strip(), r
            assert r["output"] == r["answer"]
            assert r["answer"] == r["answer"].strip()
            assert len(r["output"]) < 80, r
            assert isinstance(r["choices"], list) and len(r["choices"]) == 4, r
            assert len(set(r["choices"])) == 4, r
            assert all(isinstance(c, str) and c.strip() for c in r["choices"]), r
            assert isinstance(r["label"], int) and 0 <= r["label"] < 4
            assert r["choices"][r["label"]] == r["answer"] == r["output"]
            assert r["choices"].count(r["answer"]) == 1


def test_ids_unique_and_well_formed(default_split):
    train, test = default_split
    ids = [r["id"] for r in train + test]
    assert len(ids) == len(set(ids))
    for r in train + test:
        family, _, num = r["id"].rpartition("-")
        assert family == r["family"] and re.fullmatch(r"\d{6}", num), r["id"]


# ---------------------------------------------------------------------------------------------
# determinism and seeds


def test_same_seed_gives_identical_data():
    assert generate(7, 300, 60) == generate(7, 300, 60)
    assert generate(0, 2000, 200) == generate(0, 2000, 200)


def test_different_seeds_give_different_training_data():
    """Seeds vary the training split only: the held-out split is one draw for every seed (the
    no-leakage rule, tested below), so it no longer differs between seeds as it did before."""
    a_train, a_test = generate(0, 600, 120)
    b_train, b_test = generate(1, 600, 120)
    assert a_train != b_train
    assert a_test == b_test
    a_prompts = {_prompt(r) for r in a_train}
    b_prompts = {_prompt(r) for r in b_train}
    # Some overlap is possible (small families), but most questions must differ.
    assert len(a_prompts & b_prompts) < 0.2 * len(a_prompts)


def test_seed_0_data_is_what_it_was():
    """The held-out split is seed 0's test split as it was before the no-leakage rule, and seed 0's
    training split did not change either: the committed seed-0 results were trained and scored on
    exactly this data (sha256 of the JSON of generate(0, 2000, 200), taken before the change)."""
    digest = hashlib.sha256(json.dumps(generate(0, 2000, 200), sort_keys=True).encode()).hexdigest()
    assert digest == "7c6604755a50761339cb37c6314c893bf81a28a1de7993d8528f29151e0dbc47"


def test_generation_does_not_touch_global_random_state():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate(5, 50, 10)
    assert random.random() == expected


# ---------------------------------------------------------------------------------------------
# splits


def test_train_and_test_disjoint_and_no_duplicates(default_split):
    train, test = default_split
    train_prompts = [_prompt(r) for r in train]
    test_prompts = [_prompt(r) for r in test]
    assert len(set(train_prompts)) == len(train_prompts), "duplicate prompt inside train"
    assert len(set(test_prompts)) == len(test_prompts), "duplicate prompt inside test"
    assert not set(train_prompts) & set(test_prompts), "test prompt leaked into train"


# The sizes every run uses (the registry's: studies train on a prefix of the steps' draws from all 2000)
STUDY_SIZES = (2000, 200)
LEAK_SEEDS = range(5)


def _keys(pairs) -> set[tuple]:
    return {(r["family"], key) for key, r in pairs}


def test_no_seed_trains_on_a_held_out_question():
    """No leakage, by construction: for seeds 0..4 at the studies' sizes, no training question is a
    held-out (scored) one, neither verbatim nor reworded (the generator's key: operation and operands,
    commutative operands sorted). Before the rule, seed 1's training split held 7 of them verbatim and
    27 by key, seed 2's 3 and 21."""
    _, held = synthetic.keyed_splits(0, *STUDY_SIZES)
    held_keys, held_prompts = _keys(held), {_prompt(r) for _, r in held}
    assert len(held_keys) == len(held_prompts) == STUDY_SIZES[1]
    for seed in LEAK_SEEDS:
        train, test = synthetic.keyed_splits(seed, *STUDY_SIZES)
        assert test == held, f"seed {seed}: a different held-out split"
        assert len(train) == STUDY_SIZES[0]
        assert not _keys(train) & held_keys, f"seed {seed}: a held-out question's key in train"
        assert not {_prompt(r) for _, r in train} & held_prompts, f"seed {seed}: a held-out prompt in train"


@pytest.mark.parametrize("n_train,n_test", [(600, 120), (61, 11)])
def test_held_out_split_is_the_same_for_every_seed_and_never_trained_on(n_train, n_test):
    """The rule holds at any sizes: the held-out split depends on the sizes only, and each seed's
    training split avoids it by key (these sizes draw different pools from the studies')."""
    held = synthetic.keyed_splits(0, n_train, n_test)[1]
    for seed in (1, 3, 42):
        train, test = synthetic.keyed_splits(seed, n_train, n_test)
        assert test == held
        assert len(train) == n_train
        assert not _keys(train) & _keys(held)


@pytest.mark.parametrize("make,op", [(synthetic._arithmetic, "add"), (synthetic._arithmetic, "sum3"),
                                     (synthetic._two_numbers, "larger"), (synthetic._two_numbers, "smaller")])
def test_key_is_the_question_not_its_wording(make, op):
    """Rewordings and reorderings of one question share its key (so neither can slip into train when the
    question is held out): among many draws, one key came with two orders of the same operands and one
    with two wordings; and no key came with two answers."""
    import random

    rng = random.Random(0)
    orders, wordings, answers = (collections.defaultdict(set) for _ in range(3))
    for _ in range(20000):
        d = make(rng)
        if d.key[0] != op:
            continue
        text = d.instruction + " " + d.input
        orders[d.key].add(tuple(re.findall(r"\d+", text)))
        wordings[d.key].add(re.sub(r"\d+", "_", text))
        answers[d.key].add(d.answer)
    assert any(len(v) > 1 for v in orders.values()), "no reordered question was drawn"
    assert any(len(v) > 1 for v in wordings.values()), "no reworded question was drawn"
    assert all(len(v) == 1 for v in answers.values())


@pytest.mark.parametrize("n_train,n_test", [(2000, 200), (100, 20), (61, 11), (5, 3)])
def test_families_balanced_in_each_split(n_train, n_test):
    for split, n in zip(generate(2, n_train, n_test), (n_train, n_test)):
        counts = collections.Counter(r["family"] for r in split)
        per_family = [counts.get(f, 0) for f in FAMILIES]
        assert sum(per_family) == n
        assert max(per_family) - min(per_family) <= 1, counts


def test_splits_interleave_families(default_split):
    """Round-robin order: every prefix of a split is balanced too."""
    train, _ = default_split
    k = len(FAMILIES)
    prefix = collections.Counter(r["family"] for r in train[: 10 * k])
    assert set(prefix.values()) == {10}


def test_test_split_covers_every_operation_kind(default_split):
    """The test split is drawn from the same pool: it is not a narrow slice of templates."""
    _, test = default_split
    openers = collections.defaultdict(set)
    for r in test:
        openers[r["family"]].add(" ".join(r["instruction"].split()[:2]))
    for family in FAMILIES:
        assert len(openers[family]) >= 3, (family, openers[family])


def test_exhausted_family_raises_runtime_error(monkeypatch):
    tiny = [synthetic.Draft(("tiny", i), f"What is {i} + 0?", "", str(i), ["a", "b", "c"]) for i in range(5)]
    monkeypatch.setitem(synthetic._GENERATORS, "arithmetic", lambda rng: rng.choice(tiny))
    generate(0, 5 * len(FAMILIES), 0)  # exactly the capacity: fine
    with pytest.raises(RuntimeError, match="arithmetic"):
        generate(0, 6 * len(FAMILIES), 0)


# ---------------------------------------------------------------------------------------------
# correctness


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_every_answer_recomputed_independently(seed):
    train, test = generate(seed, 1200, 240)
    checked = collections.Counter()
    for r in train + test:
        expected = SOLVERS[r["family"]](r["instruction"], r["input"])
        assert r["answer"] == expected, r
        checked[r["family"]] += 1
    assert set(checked) == set(FAMILIES)


def test_arithmetic_examples_parse_back(default_split):
    train, test = default_split
    arith = [r for r in train + test if r["family"] == "arithmetic"]
    assert len(arith) >= 300
    ops = collections.Counter()
    for r in arith:
        assert r["input"] == ""
        # Re-evaluate the expression with Python itself where the symbol form is used.
        m = re.match(r"What is (\d+) ([-+*]) (\d+)\?", r["instruction"])
        if m:
            assert eval(f"{m.group(1)} {m.group(2)} {m.group(3)}") == int(r["answer"])  # noqa: S307
            ops[m.group(2)] += 1
        assert r["answer"].lstrip("-").isdigit()
    assert set(ops) == {"+", "-", "*"}


def test_distractors_have_the_answers_type(default_split):
    train, _ = default_split
    for r in train:
        if r["answer"].lstrip("-").isdigit():
            assert all(c.lstrip("-").isdigit() for c in r["choices"]), r
        if r["family"] == "list" and "," in r["answer"]:
            assert all(sorted(c.split(", ")) == sorted(r["answer"].split(", ")) for c in r["choices"]), r
        if r["family"] == "comparison_reasoning" and r["answer"] in ("even", "odd"):
            assert {"even", "odd"} <= set(r["choices"])
        if r["answer"].isalpha() and r["answer"] not in ("even", "odd"):
            assert all(c.isalpha() for c in r["choices"]), r


def test_labels_spread_over_positions(default_split):
    train, _ = default_split
    labels = collections.Counter(r["label"] for r in train)
    assert set(labels) == {0, 1, 2, 3}
    assert min(labels.values()) > 0.15 * len(train), labels


def test_templates_are_varied(default_split):
    train, _ = default_split
    # Mask numbers, quoted words, lists and names: what is left is the template skeleton.
    skeletons = collections.defaultdict(set)
    for r in train:
        s = re.sub(r"'[a-z]+'|\[[\d, ]+\]|\d+|[A-Z][a-z]+ is", "_", r["instruction"])
        skeletons[r["family"]].add(s)
    for family in FAMILIES:
        assert len(skeletons[family]) >= 5, (family, len(skeletons[family]))


def test_some_records_use_the_input_field(default_split):
    train, _ = default_split
    with_input = [r for r in train if r["input"]]
    assert with_input and len(with_input) < len(train) / 2
    assert {r["family"] for r in with_input} >= {"list", "string"}


# ---------------------------------------------------------------------------------------------
# non-functional


def test_fast():
    start = time.perf_counter()
    generate(0, 2000, 200)
    assert time.perf_counter() - start < 1.0


def test_standard_library_only():
    tree = ast.parse(Path(synthetic.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots - {"lisa_bench"} <= set(sys.stdlib_module_names), roots
