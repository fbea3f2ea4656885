"""The memory model's tables, as a study's `plan` stage writes them (config/plan.yaml, results/plan/): meta-device
models only, nothing downloaded or allocated.

- ``will_it_fit``: ``lisa-bench plan`` for each model, recipe and experiment on GPUs of each size: the predicted
  peak at the study's shape and the largest batch per GPU that fits (0: none).
- ``verdict``: the peak per GPU of full fine-tuning, the claim's baseline and the claim's method under every
  precision recipe and protocol, each model on its own launcher; one line per recipe says whether the claim
  (the method below its baseline) holds there, and which updates the recipe keeps.

The study config's ``plan:`` gives each table's axes (config/schema.yaml); ``lisa-bench plan-tables`` writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import atomic
from ..errors import BadInput, choices_error
from ..precision import PRECISIONS

# what each recipe does with the updates (the verdict's lines; training/updates.py measures it)
KEEPS = {
    "fp32": "keeps every update (fp32 weights and state)",
    "bf16": "loses updates below half a weight's bf16 spacing for full and LISA (LoRA's fp32 adapters keep theirs)",
    "bf16-mixed": "keeps every update, at 4 bytes per frozen weight",
    "bf16-master": "keeps every update (fp32 masters of what trains)",
    "bf16-kahan": "keeps every update up to the bf16 compensation's own rounding (Kahan sums)",
    "bf16-sr": "keeps every update in expectation (stochastic rounding), at pure bf16's memory",
}
TABLES = ("will_it_fit", "verdict")


def check_spec(spec: dict) -> None:
    """Each table's axes name known tables, precisions and GPU sizes: one line naming the first bad one."""
    from .fit import parse_bytes

    if not isinstance(spec, dict) or not spec:
        raise BadInput(f"config plan: give one or more of {', '.join(TABLES)} with their axes (config/plan.yaml)")
    for name, table in spec.items():
        if name not in TABLES:
            raise choices_error("plan table", name, TABLES, where="config plan")
        for recipe in table.get("recipes", []) + table.get("protocols", []):
            if recipe.get("precision") is not None and recipe["precision"] not in PRECISIONS:
                raise choices_error("precision", recipe["precision"], PRECISIONS, where=f"config plan.{name}")
        for precision in table.get("precisions", []):
            if precision not in PRECISIONS:
                raise choices_error("precision", precision, PRECISIONS, where=f"config plan.{name}.precisions")
        for gpu in table.get("gpus", []):
            parse_bytes(gpu, f"config plan.{name}.gpus")


def will_it_fit(spec: dict) -> tuple[pd.DataFrame, str]:
    """Every (recipe, GPU size, model, experiment): the predicted peak and breakdown, and the largest batch per
    GPU; and its Markdown (peak per GPU at the shape; per GPU size the largest batch, 0 = does not fit)."""
    from ..models import model_config
    from .cells import MemoryCell, Shape
    from .fit import parse_bytes
    from .plan import plan_rows

    rows = []
    sizes = [parse_bytes(gpu, "gpu") for gpu in spec["gpus"]]
    for model in spec["models"]:
        config = model_config(model)
        for recipe in spec["recipes"]:
            shape = Shape("cuda", recipe["precision"], recipe["attn_implementation"],
                          recipe["gradient_checkpointing"], spec["batch_size"], spec["seq_len"])
            for experiment in spec["experiments"]:
                cell = MemoryCell.from_experiment(experiment)
                for gpu, row in zip(spec["gpus"], plan_rows(config, model, cell, shape, sizes)):
                    rows.append({"recipe": recipe["name"], "gpu": gpu, **row})
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index=["recipe", "model", "experiment"], columns="gpu", values="largest_batch_per_gpu",
                             aggfunc="first", sort=False)
    wide.columns = [f"largest batch on {g}" for g in wide.columns]
    peak = table.groupby(["recipe", "model", "experiment"], sort=False)["peak_GiB"].first().rename(
        f"peak GiB (batch {spec['batch_size']})")
    shown = pd.concat([peak, wide], axis=1).reset_index()
    shown["model"] = shown["model"].str.split("/").str[-1]
    text = []
    for recipe, part in shown.groupby("recipe", sort=False):
        text += [f"**{recipe}** (one GPU; 0 = does not fit)", "",
                 part.drop(columns="recipe").to_markdown(index=False, floatfmt=".1f"), ""]
    return table, "\n".join(text)


def verdict(spec: dict) -> tuple[pd.DataFrame, str]:
    """Every (model, protocol, precision, experiment): the whole-run peak per GPU and its parts; and the
    Markdown with one line per recipe on whether the claim holds."""
    from ..models import model_config
    from .cells import MemoryCell
    from .model import predict

    claim = spec["claim"]  # {baseline: lora-r128, reference: full}; each model names its own method (lisa-e-h-2l, or -4l at 70B)
    rows = []
    for entry in spec["models"]:
        config = model_config(entry["model"])
        for protocol in spec["protocols"]:
            for precision in spec["precisions"]:
                for experiment in (claim["reference"], claim["baseline"], entry["method"]):
                    cell = MemoryCell.from_experiment(experiment)
                    p = predict(config, cell.method, json.loads(cell.options), spec["batch_size"], spec["seq_len"],
                                precision, 3, device_type="cuda", attention=protocol["attn_implementation"],
                                checkpointing=protocol["gradient_checkpointing"], launcher=entry["launcher"],
                                processes=entry["processes"], whole_run=True)
                    rows.append({"model": entry["model"].split("/")[-1],
                                 "launcher": f"{entry['launcher']} x {entry['processes']}", "protocol": protocol["name"],
                                 "precision": precision, "experiment": experiment, "peak_GiB": p.peak_bytes / 2**30,
                                 "weights_GiB": p.weights_bytes / 2**30, "grads_GiB": p.grads_bytes / 2**30,
                                 "optimizer_GiB": p.optimizer_bytes / 2**30,
                                 "activations_GiB": p.activations_bytes / 2**30})
    table = pd.DataFrame(rows)
    base, reference = claim["baseline"], claim["reference"]
    text = ["# LISA against LoRA under each precision recipe (the memory model, GiB per GPU)", "",
            "`lisa-bench reproduce --configfile config/plan.yaml`; every cell is `lisa-bench plan`'s prediction "
            f"(whole-run peak, batch {spec['batch_size']} x {spec['seq_len']}). A recipe's memory claim holds where "
            f"LISA is below {base}.", ""]
    for (model, launcher, protocol), part in table.groupby(["model", "launcher", "protocol"], sort=False):
        wide = part.pivot(index="precision", columns="experiment", values="peak_GiB").reindex(spec["precisions"])
        method = [c for c in part["experiment"].unique() if c not in (reference, base)][0]
        wide = wide[[reference, base, method]]
        text += [f"## {model} ({launcher} GPU{'s' if not launcher.endswith(' 1') else ''}), {protocol}", "",
                 wide.reset_index().to_markdown(index=False, floatfmt=".1f"), ""]
        for precision, r in wide.iterrows():
            holds = r[method] < r[base]
            text.append(f"- **{precision}**: LISA {r[method]:.1f} against LoRA {r[base]:.1f} GiB: the claim "
                        f"{'holds' if holds else 'does not hold'}; {KEEPS.get(precision, '')}.")
        text.append("")
    return table, "\n".join(text)


def write_plan_tables(spec: dict, out_dir: str | Path) -> list[Path]:
    check_spec(spec)
    out, written = Path(out_dir), []
    out.mkdir(parents=True, exist_ok=True)
    for name in spec:
        table, text = {"will_it_fit": will_it_fit, "verdict": verdict}[name](spec[name])
        atomic.write_text(out / f"{name}.csv", table.to_csv(index=False))
        atomic.write_text(out / f"{name}.md", text)
        written += [out / f"{name}.csv", out / f"{name}.md"]
    return written


def add_parser(sub) -> None:
    p = sub.add_parser("plan-tables", help="the memory model's tables a study's plan stage writes (will it fit, "
                                           "the precision verdict)",
                       description="Writes OUT/<table>.{csv,md} for each table of the study's `plan:` (will_it_fit, "
                                   "verdict): meta-device predictions only, nothing downloaded or allocated.")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--configfile", help="a study config with a `plan:` section (e.g. config/plan.yaml)")
    given.add_argument("--spec-json", help="the `plan:` section as JSON (what the pipeline passes)")
    p.add_argument("--output-dir", required=True)
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from .. import yaml_io

    if args.spec_json is not None:
        spec = json.loads(args.spec_json)
    else:
        if not Path(args.configfile).is_file():
            raise BadInput(f"plan-tables: config {args.configfile!r} does not exist")
        spec = (yaml_io.load(Path(args.configfile).read_text()) or {}).get("plan")
    for path in write_plan_tables(spec, args.output_dir):
        if path.suffix == ".md":
            print(path.read_text())
    return 0
