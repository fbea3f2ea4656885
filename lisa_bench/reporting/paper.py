"""The paper's numbers beside a study's own: ``paper/<study>.yaml`` lists every cell of the paper table a study
reproduces, with the value where it could be verified (and its source) and an explicit blank where not; the
``paper_table`` job writes paper / ours / difference for each cell, and which of the paper's stated settings the
study's config differs in (``paper.{csv,md,tex}``, ``paper_settings.{csv,md,tex}``).

A reference file::

    paper: LISA (Pan et al., NeurIPS 2024, arXiv 2403.17919)
    settings:                      # what the paper states for each table, by the study-config key it maps to
      Table 1: {memory.seq_len: 1024, memory.batch_size: 1}
    settings_source: {Table 1: "Chinese reading note of section 4.1"}
    cells:
      - {table: Table 1, model: llama-2-70b, experiment: lora-r128, quantity: peak_memory_GiB, value: 79,
         source: "the reading note's '79G'"}
      - {table: Table 3, model: meta-llama/Llama-2-7b-hf, experiment: lisa-e-h-2l, quantity: mt_bench,
         value: null, blank: "the table body is an image in the PDF (page 6)"}

``value`` is a number, a range ``[low, high]`` (the paper states a span) or null (not verified: ``blank`` says why;
fill it from the PDF with its ``source``, never from memory). ``relative_to`` makes a quantity a ratio to another
experiment of the same model. Quantities (``QUANTITIES``): ``peak_memory_GiB`` (the memory table's measured peak,
its prediction where the cell was not measured), ``tokens_per_second`` (the memory table's), ``mt_bench`` (the
overall score), ``lm_eval:<task>/<metric>`` (percent, as the paper's tables print accuracy).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import yaml_io
from ..errors import BadInput, choices_error
from .tables import write_table

# quantity -> (the results table it is read from, relative to the study's results directory; what it is)
QUANTITIES = {
    "peak_memory_GiB": ("memory/memory.csv", "peak memory in GiB (measured; the prediction where not measured)"),
    "tokens_per_second": ("memory/memory.csv", "training tokens per second of the memory protocol"),
    "mt_bench": ("tables/mt_bench.csv", "MT-Bench overall score"),
    "lm_eval": ("tables/lm_eval.csv", "an lm-eval task/metric in percent: lm_eval:<task>/<metric>"),
}
CELL_KEYS = {"table", "model", "experiment", "quantity", "value", "relative_to", "source", "blank", "note"}


def load_reference(path: str | Path) -> dict:
    """The reference file, checked: one line naming the first bad entry (BadInput)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"paper reference {str(path)!r} does not exist; see docs/paper.md for its format")
    data = yaml_io.load(path.read_text()) or {}
    where = f"paper reference {path}"
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or not data["cells"]:
        raise BadInput(f"{where}: expected a mapping with a non-empty list `cells`")
    for i, cell in enumerate(data["cells"]):
        at = f"{where}: cells[{i}]"
        if not isinstance(cell, dict):
            raise BadInput(f"{at}: expected a mapping (table, model, experiment, quantity, value, source)")
        unknown = sorted(set(cell) - CELL_KEYS)
        if unknown:
            raise choices_error("key", unknown[0], sorted(CELL_KEYS), where=at)
        for key in ("table", "model", "experiment", "quantity"):
            if not isinstance(cell.get(key), str) or not cell[key]:
                raise BadInput(f"{at}: `{key}` is missing")
        kind = cell["quantity"].split(":")[0]
        if kind not in QUANTITIES or (kind == "lm_eval") != (":" in cell["quantity"]):
            raise choices_error("quantity", cell["quantity"], ["peak_memory_GiB", "tokens_per_second", "mt_bench",
                                                               "lm_eval:<task>/<metric>"], where=at)
        value = cell.get("value")
        if value is None:
            if not cell.get("blank"):
                raise BadInput(f"{at}: value is blank; say why in `blank` (e.g. the table body is an image)")
        else:
            numbers = value if isinstance(value, list) else [value]
            if not (len(numbers) in (1, 2) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in numbers)) or (isinstance(value, list) and len(value) != 2):
                raise BadInput(f"{at}: value {value!r} must be a number, a range [low, high], or null")
            if not cell.get("source"):
                raise BadInput(f"{at}: value {value!r} has no `source`; every number needs the text it was read from")
    return data


def check_reference(path: str | Path, models: list[str], experiments: list[str]) -> dict:
    """The reference file, and that each cell names a model and an experiment of the study."""
    data = load_reference(path)
    for i, cell in enumerate(data["cells"]):
        at = f"paper reference {path}: cells[{i}]"
        if cell["model"] not in models:
            raise choices_error("model", cell["model"], models, where=at, more=" (the study's models)")
        for key in ("experiment", "relative_to"):
            if cell.get(key) is not None and cell[key] not in experiments:
                raise choices_error("experiment", cell[key], experiments, where=f"{at} {key}",
                                    more=" (the study's experiments)")
    return data


def _ours(results: Path, cell: dict, cache: dict) -> tuple[float | None, str]:
    """Our value of a cell (None where the study has none) and where it comes from."""
    kind, _, metric = cell["quantity"].partition(":")
    table = QUANTITIES[kind][0]
    if table not in cache:
        path = results / table
        cache[table] = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    df = cache[table]
    if df.empty:
        return None, f"no {table}"

    def one(experiment) -> tuple[float | None, str]:
        rows = df[(df["model"] == cell["model"]) & (df["experiment"] == experiment)]
        if rows.empty:
            return None, f"no {cell['model']} {experiment} in {table}"
        row = rows.iloc[0]
        if kind == "peak_memory_GiB":
            measured = row.get("status") == "ok" and pd.notna(row.get("peak_bytes"))
            value = row["peak_bytes"] if measured else row.get("predicted_peak_bytes")
            return (None if pd.isna(value) else float(value) / 2**30), ("measured" if measured else "predicted")
        if kind == "tokens_per_second":
            value = row.get("tokens_per_second")
            return (None if pd.isna(value) else float(value)), "measured"
        if kind == "mt_bench":
            return float(row["overall"]), "mean over seeds"
        columns = [c for c in df.columns if c.split(" (")[0] == metric and not c.endswith("ci95")]
        if not columns:
            return None, f"no {metric} in {table}"
        return float(row[columns[0]]) * 100, "mean over seeds, percent"

    value, how = one(cell["experiment"])
    if value is not None and cell.get("relative_to"):
        base, _ = one(cell["relative_to"])
        value, how = (value / base, f"{how}, ratio to {cell['relative_to']}") if base else (None, how)
    return value, how


def _difference(paper, ours: float | None) -> float | None:
    """Ours minus the paper's; against a range, the distance outside it (0 inside)."""
    if paper is None or ours is None:
        return None
    if isinstance(paper, list):
        low, high = paper
        return 0.0 if low <= ours <= high else (ours - high if ours > high else ours - low)
    return ours - paper


def _setting(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def paper_tables(reference: str | Path, results: str | Path, config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each cell: the paper's value, ours, the difference, where ours comes from; and each stated setting of the
    paper beside the study's."""
    data, results, cache = load_reference(reference), Path(results), {}
    rows = []
    for cell in data["cells"]:
        ours, how = _ours(results, cell, cache)
        paper = cell.get("value")
        rows.append({"table": cell["table"], "model": cell["model"], "experiment": cell["experiment"],
                     "quantity": cell["quantity"] + (f" / {cell['relative_to']}" if cell.get("relative_to") else ""),
                     "paper": (f"{paper[0]:g}-{paper[1]:g}" if isinstance(paper, list) else paper),
                     "ours": ours, "difference": _difference(paper, ours), "ours_from": how,
                     "paper_source": cell.get("source") or f"not verified: {cell['blank']}",
                     "note": cell.get("note")})
    settings = []
    for table, stated in (data.get("settings") or {}).items():
        for key, value in stated.items():
            ours = _setting(config, key)
            settings.append({"table": table, "setting": key, "paper": value, "ours": ours,
                             "differs": ours is None or not _same(value, ours),
                             "paper_source": (data.get("settings_source") or {}).get(table)})
    return pd.DataFrame(rows), pd.DataFrame(settings, columns=["table", "setting", "paper", "ours", "differs",
                                                                 "paper_source"])


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b)
    return str(a) == str(b)


def write_paper_tables(reference: str | Path, results: str | Path, config: dict, out_dir: str | Path) -> pd.DataFrame:
    cells, settings = paper_tables(reference, results, config)
    data = load_reference(reference)
    out = Path(out_dir)
    verified = int(cells["paper"].notna().sum())
    write_table(cells.set_index(["table", "model", "experiment", "quantity"]), out / "paper",
                f"The paper's numbers beside ours ({data.get('paper', 'the paper')}; {verified} of {len(cells)} cells "
                f"verified from text, the rest blank until read from the PDF): difference = ours - paper (for a "
                f"range, the distance outside it); reference {reference}")
    write_table(settings.set_index(["table", "setting"]), out / "paper_settings",
                "The paper's stated settings beside the study's config (differs: not the paper's, or not set)")
    return cells
