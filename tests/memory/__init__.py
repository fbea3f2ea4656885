from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "results"


def committed_cells(device: str | None = None):
    """Every memory cell measured and committed under results/ that records its method (and, with ``device``,
    was measured there): (csv path, row, cell, shape)."""
    import pandas as pd

    from lisa_bench.memory.cells import MemoryCell, Shape

    for csv in sorted(set(RESULTS.glob("*/memory.csv")) | set(RESULTS.glob("*/*/memory.csv"))):  # e.g. cpu-precision/<recipe>/
        table = pd.read_csv(csv)
        for row in table[table["status"] == "ok"].to_dict("records"):
            cell = MemoryCell.from_row(row)
            if cell is not None and device in (None, row["device"]):
                yield csv, row, cell, Shape.from_row(row)
