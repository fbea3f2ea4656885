"""Dataset loader for the offline lm-eval tasks: the held-out test split of synthetic-instruct."""

import datasets


def load_synthetic_test(seed: int = 0, **kwargs) -> datasets.DatasetDict:
    from lisa_bench.data.synthetic import generate

    _, test = generate(seed=int(seed))
    rows = [{**r, "prompt": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")} for r in test]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
