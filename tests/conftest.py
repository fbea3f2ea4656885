import os

# Under pytest-xdist the cores are shared: each worker (and every process it starts) computes on its share,
# instead of every worker running one thread per core and all of them fighting over the cores.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from lisa_bench.config import TrainConfig  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Files in order of their expected cost, longest first (`make test` runs pytest-xdist with --dist
    loadfile --no-loadscope-reorder, which hands whole files to idle workers in this order): the end-to-end
    studies (marker `pipeline`, minutes each) first, so each worker starts with one of them instead of one
    worker meeting both at the end; then files with slow tests (real launches); then the rest, which fill
    the gaps. The order of the tests inside a file is kept."""
    def cost(item):
        marks = files_marks[item.path]
        return 0 if "pipeline" in marks else 1 if "slow" in marks else 2

    files_marks = {}
    for item in items:
        files_marks.setdefault(item.path, set()).update(m.name for m in item.iter_markers())
    items.sort(key=cost)


@pytest.fixture
def tiny_cfg():
    """A short, fast training config on the tiny random Llama."""

    def make(method: str, **kw) -> TrainConfig:
        values = dict(method=method, model="tiny-random-llama", dataset="synthetic-instruct", max_steps=12,
                      lr=2e-3, scheduler="constant", batch_size=8, max_length=96, train_size=256, eval_size=16,
                      device="cpu")
        values.update(kw)
        return TrainConfig(**values)

    return make


# Memory cells in the old paper protocol, used by the memory tests: LoRA without dropout, LISA and its
# callback form switching every step (so each measured step visits new blocks).
CELLS = {
    "full": "method: full\n",
    "lora-r8": "method: lora\nmethod_options: {rank: 8, alpha: 16, dropout: 0.0}\n",
    "lora-r8-dropout": "method: lora\nmethod_options: {rank: 8, alpha: 16, dropout: 0.1}\n",
    "lisa-e-h": "method: lisa\nmethod_options: {gamma: 0, interval: 1}\n",
    "lisa-e-h-2l": "method: lisa\nmethod_options: {gamma: 2, interval: 1}\n",
    "lisa-e-h-9l": "method: lisa\nmethod_options: {gamma: 9, interval: 1}\n",
    "lisa-callback-e-h-2l": "method: lisa-callback\nmethod_options: {gamma: 2, interval: 1}\n",
    "galore-r8": "method: galore\nmethod_options: {rank: 8, update_proj_gap: 200}\n",
}


@pytest.fixture(scope="session")
def cells_dir(tmp_path_factory):
    """A directory of experiment files for memory cells (see CELLS)."""
    d = tmp_path_factory.mktemp("cells")
    for name, text in CELLS.items():
        (d / f"{name}.yaml").write_text(f"description: memory-test cell {name}\n{text}")
    return d


@pytest.fixture
def workdir(tmp_path):
    """A copy of the project (Snakefile, rules, configs, experiments) to run studies in."""
    from tests.pipeline_support import copy_project

    return copy_project(tmp_path)
