"""Dataset loader for the offline lm-eval tasks: the held-out test split of synthetic-instruct."""

import datasets


def load_synthetic_test(**kwargs) -> datasets.DatasetDict:
    """The held-out split: one draw, the same for every training seed and in none of their training splits
    (lisa_bench/data/synthetic.py), so the tasks take no seed."""
    from lisa_bench.data.synthetic import generate

    _, test = generate()
    rows = [{**r, "prompt": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")} for r in test]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
