"""What a memory cell is: the protocol's shape, an experiment's method as a cell, the table's columns, and the
analytic prediction every measured row stands next to. ``measure.py`` measures a cell, ``tables.py`` turns rows
into tables and figures, ``bench.py`` is the ``lisa-bench memory`` command; ``plan`` and studies use these types
without measuring anything."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


# what makes a table row one cell
CELL = ["model", "experiment", "device", "precision", "attn_implementation", "gradient_checkpointing", "batch_size",
        "seq_len"]
CSV_COLUMNS = CELL[:2] + ["method", "method_options", "method_module"] + CELL[2:] + [
    "steps", "status", "peak_bytes", "weights_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes",
    "predicted_peak_bytes", "predicted_weights_bytes", "predicted_grads_bytes", "predicted_optimizer_bytes",
    "predicted_activations_bytes", "predicted_transient_bytes", "predicted_step_bytes",
    "predicted_optimizer_forward_bytes", "peak_vs_predicted", "flag", "seconds_per_iter", "tokens_per_second",
    "speed_vs_full", "flops_per_token", "step_traffic_per_token", "flop_rate", "bandwidth", "speed_bound_vs_full",
    "protocol"]
PROTOCOL = "random tokens, no offloading"
TOLERANCE = 0.15
PAPER_EXPERIMENTS = ("full", "lora-r128", "lisa-e-h", "lisa-e-h-2l", "lisa-e-h-4l", "lisa-callback-e-h-2l",
                     "galore-r128")
# per step of each cell (step 0 is the warm-up); CUDA: allocator stats, CPU: resident set
TRACE_COLUMNS = CELL + ["step", "seconds", "optimizer_bytes", "grads_bytes", "activations_bytes", "step_peak_bytes",
                        "allocated_bytes", "reserved_peak_bytes", "active_peak_bytes", "rss_bytes", "rss_hwm_bytes"]


@dataclass(frozen=True)
class Shape:
    """How every cell of a memory run is measured (the paper's protocol: eager attention, no
    checkpointing, batch 1, 1024 tokens)."""

    device: str = "cpu"
    precision: str = "fp32"
    attn_implementation: str = "eager"
    gradient_checkpointing: bool = False
    batch_size: int = 1
    seq_len: int = 1024
    steps: int = 3  # measured steps, after one warm-up step

    @classmethod
    def from_row(cls, row: dict) -> "Shape":
        return cls(row["device"], row["precision"], row.get("attn_implementation") or "eager",
                   bool(row.get("gradient_checkpointing") or False), int(row["batch_size"]), int(row["seq_len"]),
                   int(row["steps"]))

    def columns(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MemoryCell:
    """One column of the memory table: an experiment's method and options, under the experiment's name."""

    experiment: str
    method: str
    options: str = "{}"  # the method options as canonical JSON (hashable, and what memory.csv records)
    module: str | None = None  # a plugin module that registers the method

    @classmethod
    def from_experiment(cls, name: str, experiments_dir: str | Path = "experiments",
                        overrides: dict | None = None) -> "MemoryCell":
        """An experiment's method, options and plugin module (its other settings do not make the cell:
        the memory protocol fixes batch, length and precision), with a study's overrides of them."""
        from ..config import TrainConfig, read_experiment, resolve_experiment
        from ..methods import build_method, load_method_module

        path = resolve_experiment(name, experiments_dir)
        values, extra = read_experiment(path), dict(overrides or {})
        options = {**(values.get("method_options") or {}), **(extra.get("method_options") or {})}
        method = extra.get("method", values.get("method", TrainConfig.method))
        module = extra.get("method_module", values.get("method_module"))
        if module:
            load_method_module(module)
        build_method(method, options)  # checks the method and its options
        return cls(path.stem, method, json.dumps(options, sort_keys=True), module)

    @classmethod
    def from_row(cls, row: dict) -> "MemoryCell | None":
        """The cell a memory.csv row was measured with (None for tables that did not record it)."""
        if not isinstance(row.get("method_options"), str) or not isinstance(row.get("method"), str):
            return None
        module = row.get("method_module")
        return cls(row["experiment"], row["method"], row["method_options"], module if isinstance(module, str) else None)

    def load(self) -> None:
        if self.module:
            from ..methods import load_method_module

            load_method_module(self.module)

    def build(self):
        from ..methods import build_method

        self.load()
        return build_method(self.method, json.loads(self.options), seed=0)

    def columns(self) -> dict:
        return {"experiment": self.experiment, "method": self.method, "method_options": self.options,
                "method_module": self.module}


def predicted_columns(model: str, cell: MemoryCell, shape: Shape) -> dict:
    """The analytic model's parts and peak for one cell (``steps`` measured steps after one warm-up)."""
    from ..models import model_config
    from .model import predict

    cell.load()
    pred = predict(model_config(model), cell.method, json.loads(cell.options), shape.batch_size, shape.seq_len,
                   shape.precision, shape.steps + 1, device_type=shape.device, attention=shape.attn_implementation,
                   checkpointing=shape.gradient_checkpointing)
    return dict(predicted_peak_bytes=pred.peak_bytes, predicted_weights_bytes=pred.weights_bytes,
                predicted_grads_bytes=pred.grads_bytes, predicted_optimizer_bytes=pred.optimizer_bytes,
                predicted_activations_bytes=pred.activations_bytes, predicted_transient_bytes=pred.transient_bytes,
                predicted_step_bytes=pred.step_bytes, predicted_optimizer_forward_bytes=pred.optimizer_forward_bytes,
                flops_per_token=pred.flops_per_token, step_traffic_per_token=pred.step_traffic_per_token)


def compare(row: dict) -> dict:
    """Measured peak over predicted, flagged beyond the tolerance (measured cells only)."""
    if row.get("status") == "ok":
        ratio = row["peak_bytes"] / row["predicted_peak_bytes"]
        row["peak_vs_predicted"] = ratio
        row["flag"] = "" if abs(ratio - 1) <= TOLERANCE else f"measured/predicted = {ratio:.2f}"
    return row
