"""The paper's numbers beside a study's (reporting/paper.py, paper/*.yaml)."""

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lisa_bench.errors import BadInput
from lisa_bench.reporting.paper import check_reference, load_reference, paper_tables, write_paper_tables
from lisa_bench.study import grid_points

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "paper-tables.md"

REFERENCE = """paper: the paper
settings:
  Table 1: {memory.seq_len: 1024, memory.batch_size: 1, memory.dtype: bf16}
settings_source: {Table 1: "a note"}
cells:
  - {table: Table 1, model: m, experiment: lora, quantity: peak_memory_GiB, value: 79, source: "A1"}
  - {table: Table 1, model: m, experiment: lisa, quantity: peak_memory_GiB, value: 75, source: "A2"}
  - {table: Table 1, model: m, experiment: full, quantity: peak_memory_GiB, value: null, blank: "an image"}
  - {table: Figure 4, model: m, experiment: lisa, quantity: tokens_per_second, relative_to: full, value: 2.9, source: "A3"}
  - {table: Table 3, model: m, experiment: lisa, quantity: mt_bench, relative_to: lora, value: [1.10, 1.35], source: "A7"}
  - {table: Table 2, model: m, experiment: lisa, quantity: "lm_eval:mmlu/acc", value: 40.0, source: "x"}
"""


def _results(tmp_path):
    (tmp_path / "memory").mkdir(parents=True)
    (tmp_path / "tables").mkdir()
    pd.DataFrame([  # lora measured; lisa and full not measured (their predictions stand in)
        {"model": "m", "experiment": "lora", "status": "ok", "peak_bytes": 80 * 2**30, "predicted_peak_bytes": 1,
         "tokens_per_second": 100.0},
        {"model": "m", "experiment": "lisa", "status": "oom", "peak_bytes": None, "predicted_peak_bytes": 74 * 2**30,
         "tokens_per_second": 300.0},
        {"model": "m", "experiment": "full", "status": "ok", "peak_bytes": 120 * 2**30, "predicted_peak_bytes": 1,
         "tokens_per_second": 100.0},
    ]).to_csv(tmp_path / "memory" / "memory.csv", index=False)
    pd.DataFrame([{"model": "m", "experiment": "lisa", "overall": 6.0}, {"model": "m", "experiment": "lora",
                                                                         "overall": 5.0}]).to_csv(
        tmp_path / "tables" / "mt_bench.csv", index=False)
    pd.DataFrame([{"model": "m", "experiment": "lisa", "mmlu/acc (5-shot)": 0.42, "mmlu/acc (5-shot) ci95": 0.01}]).to_csv(
        tmp_path / "tables" / "lm_eval.csv", index=False)
    return tmp_path


def test_each_cell_paper_ours_and_difference_and_the_settings_that_differ(tmp_path):
    (tmp_path / "ref.yaml").write_text(REFERENCE)
    results = _results(tmp_path / "results")
    cells, settings = paper_tables(tmp_path / "ref.yaml", results,
                                   {"memory": {"seq_len": 1024, "batch_size": 2}})
    rows = {(r.table, r.experiment, r.quantity): r for r in cells.itertuples()}
    lora = rows[("Table 1", "lora", "peak_memory_GiB")]
    assert lora.ours == 80 and lora.difference == 1 and lora.ours_from == "measured"
    lisa = rows[("Table 1", "lisa", "peak_memory_GiB")]
    assert lisa.ours == 74 and lisa.difference == -1 and lisa.ours_from == "predicted"
    blank = rows[("Table 1", "full", "peak_memory_GiB")]
    assert pd.isna(blank.paper) and pd.isna(blank.difference) and blank.paper_source == "not verified: an image"
    speed = rows[("Figure 4", "lisa", "tokens_per_second / full")]
    assert speed.ours == 3.0 and speed.difference == pytest.approx(0.1)
    ratio = rows[("Table 3", "lisa", "mt_bench / lora")]  # 1.2, inside the paper's 1.10-1.35: no difference
    assert ratio.ours == pytest.approx(1.2) and ratio.difference == 0 and ratio.paper == "1.1-1.35"
    assert rows[("Table 2", "lisa", "lm_eval:mmlu/acc")].ours == pytest.approx(42.0)  # percent, as the paper prints
    differs = settings.set_index("setting")["differs"].to_dict()
    assert differs == {"memory.seq_len": False, "memory.batch_size": True, "memory.dtype": True}  # dtype: not set
    written = write_paper_tables(tmp_path / "ref.yaml", results, {}, tmp_path / "out")
    assert len(written) == 6 and "5 of 6 cells verified" in (tmp_path / "out" / "paper.md").read_text()


@pytest.mark.parametrize("cells, needle", [
    ('  - {table: T, model: m, experiment: e, quantity: speed, value: 1, source: s}', "unknown quantity 'speed'"),
    ('  - {table: T, model: m, experiment: e, quantity: mt_bench, value: 7}', "value 7 has no `source`"),
    ('  - {table: T, model: m, experiment: e, quantity: mt_bench, value: null}', "say why in `blank`"),
    ('  - {table: T, model: m, experiment: e, quantity: mt_bench, value: [1, 2, 3], source: s}', "must be a number, a range"),
    ('  - {table: T, model: m, experiment: e, quantity: lm_eval, value: 1, source: s}', "unknown quantity 'lm_eval'"),
    ('  - {table: T, model: m, quantity: mt_bench, value: 1, source: s}', "`experiment` is missing"),
    ('  - {table: T, model: m, experiment: e, quantity: mt_bench, value: 1, source: s, guess: 2}', "unknown key 'guess'"),
])
def test_bad_reference_is_one_line(cells, needle, tmp_path):
    (tmp_path / "ref.yaml").write_text(f"cells:\n{cells}\n")
    with pytest.raises(BadInput, match=re.escape(needle)):
        load_reference(tmp_path / "ref.yaml")
    (tmp_path / "ok.yaml").write_text("cells:\n  - {table: T, model: m, experiment: e, quantity: mt_bench, value: 1, "
                                      "source: s}\n")
    with pytest.raises(BadInput, match="unknown experiment 'e'; valid choices: full"):
        check_reference(tmp_path / "ok.yaml", ["m"], ["full"])


@pytest.mark.parametrize("study", ["paper-memory", "paper-moderate", "paper-70b", "paper-ablations"])
def test_every_paper_study_has_its_reference_and_every_number_is_in_the_verified_notes(study):
    """Each paper study names its reference; each cell names a model and an experiment of the study; each value
    given comes with the id of a row of ../shared/paper-tables.md ("A1: ...") whose text holds that number."""
    config = yaml.safe_load((ROOT / "config" / f"{study}.yaml").read_text())
    memory = config.get("memory") or {}
    data = check_reference(ROOT / config["paper"], config["models"] + memory.get("models", []),
                           list(grid_points(config)) + memory.get("methods", []))
    notes = SHARED.read_text() if SHARED.is_file() else None
    for cell in data["cells"]:
        if cell["value"] is None:
            continue
        row = re.match(r"(A\d+):", cell["source"])
        assert row, cell
        if notes is None:
            continue
        line = next(ln for ln in notes.splitlines() if ln.startswith(f"| {row[1]} |"))
        for number in (cell["value"] if isinstance(cell["value"], list) else [cell["value"]]):
            shown = f"{(number - 1) * 100:g}%" if isinstance(cell["value"], list) else f"{number:g}"
            assert shown in line, (shown, line)
