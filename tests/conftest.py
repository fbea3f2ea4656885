import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from lisa_bench.config import TrainConfig  # noqa: E402


@pytest.fixture
def tiny_cfg():
    """A short, fast training config on the tiny random Llama."""

    def make(method: str, **kw) -> TrainConfig:
        values = dict(method=method, model="tiny-random-llama", dataset="synthetic-instruct", max_steps=12,
                      lr=2e-3, scheduler="constant", batch_size=8, max_length=96, train_size=256, device="cpu")
        values.update(kw)
        return TrainConfig(**values)

    return make
