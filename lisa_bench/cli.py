"""The ``lisa-bench`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from . import yaml_io
from .errors import BadInput

TRAIN_FIELDS = ("method", "model", "dataset", "max_steps", "num_epochs", "seed", "batch_size", "grad_accum_steps",
                "max_length", "lr", "scheduler", "warmup_steps", "warmup_ratio", "precision", "attn_implementation",
                "device", "train_size", "gradient_checkpointing", "group_by_length", "eval_every", "eval_batch_size",
                "eval_size", "curve_size", "memory_snapshot", "checkpoint_every", "report_to", "method_module", "sharding",
                "global_batch_size")


def _method_flags() -> dict[str, list]:
    """Flags that methods declare for their options: flag -> [(method class, option, help), ...]."""
    from .methods import METHODS, load_all

    load_all()
    flags: dict[str, list] = {}
    for cls in METHODS.values():
        for flag, (option, text) in cls.flags.items():
            flags.setdefault(flag, []).append((cls, option, text))
    return flags


def _add_train(sub) -> None:
    from .data.registry import dataset_names
    from .methods import METHODS, load_all

    load_all()
    p = sub.add_parser("train", help="fine-tune one method on one model and dataset",
                       description="Fine-tune with one method. Flags override the experiment file, which "
                                   "overrides experiments/_defaults.yaml and the built-in defaults. Writes "
                                   "metrics.json, train_log.jsonl, weight_norms.jsonl and model/ into --output-dir.")
    p.add_argument("--method", help=f"{', '.join(sorted(METHODS))}, or one a --method-module registers "
                                    f"(default: lisa)")
    p.add_argument("--method-module", help="a .py file or module name that registers a method (a plugin)")
    p.add_argument("--model", help="tiny-random-llama, smollm2-135m, a local dir, a hub id, or random:<architecture> (random weights: random:tinyllama-1.1b; default: smollm2-135m)")
    p.add_argument("--dataset", help=f"{', '.join(dataset_names())}, or a local .json/.jsonl "
                                     f"(default: synthetic-instruct)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (or --num-epochs)")
    p.add_argument("--num-epochs", type=float, help="passes over the training split (or --max-steps)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--experiment", help="an experiment name (file in experiments/) or YAML file path")
    p.add_argument("--experiment-name", help="the name the run is reported under (its run.json; default: the "
                                             "experiment file's name, else the method's)")
    p.add_argument("--seed", type=int, help="seed of the model's random init (random weights), data order and LISA's sampling (default 0)")
    for flag, users in _method_flags().items():
        names = ", ".join(cls.name for cls, _, _ in users)
        p.add_argument(flag, type=int, dest=flag.lstrip("-").replace("-", "_"), help=f"{users[0][2]} ({names})")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="set a method option (value parsed as YAML), e.g. --option interval=5; repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="set any training setting (value parsed as YAML), e.g. --set precision=bf16-mixed; "
                        "repeatable, later ones win; the named flags below win over --set")
    p.add_argument("--settings-file", action="append", default=[], metavar="YAML",
                   help="a YAML mapping of training settings (e.g. the learning rate a sweep chose), applied "
                        "after the --set items")
    p.add_argument("--batch-size", type=int, help="examples per micro-batch and process")
    p.add_argument("--global-batch-size", type=int,
                   help="instead of --batch-size: examples per optimizer step over all processes (must divide evenly)")
    p.add_argument("--sharding", help="none (default) or fsdp: FSDP2 under torchrun/accelerate launch (2+ processes)")
    p.add_argument("--grad-accum-steps", type=int, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--max-length", type=int, help="tokens per example; longer conversations are cut (built-in default 512)")
    p.add_argument("--lr", type=float, help="peak learning rate of AdamW (built-in default 1e-4)")
    p.add_argument("--scheduler", help="constant, linear, cosine")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up in optimizer steps (or --warmup-ratio; default none)")
    p.add_argument("--warmup-ratio", type=float, help="warm-up as a fraction of all steps (or --warmup-steps)")
    p.add_argument("--precision", help="fp32 (default), bf16 (pure: drops updates below half a weight's spacing), "
                   "bf16-mixed (fp32 weights, bf16 autocast), bf16-master (bf16 weights, fp32 masters and moments of "
                   "what trains), bf16-kahan (bf16 weights and moments, Kahan-summed updates; torch-optimi), bf16-sr (bf16 "
                   "weights and moments, each update written by stochastic rounding: pure bf16's memory)")
    p.add_argument("--attn-implementation", help="sdpa (default), eager, flash_attention_2")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--train-size", type=int, help="use the first N training conversations")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute each block's activations in backward (less memory, about a third more compute)")
    p.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=None,
                   help="batches of similar lengths (less padding; the fraction is recorded)")
    p.add_argument("--eval-every", type=int, help="held-out loss every N steps (always at the end)")
    p.add_argument("--eval-batch-size", type=int, help="examples per held-out batch (default: --batch-size)")
    p.add_argument("--eval-size", type=int, help="use the first N held-out conversations")
    p.add_argument("--curve-size", type=int, help="score the --eval-every points on the first N of them only "
                                                  "(the final held-out loss stays on all)")
    p.add_argument("--report-to", help="none (default), tensorboard, wandb (offline unless WANDB_MODE is set)")
    p.add_argument("--checkpoint-every", type=int,
                   help="steps between resumable checkpoints (default 50; 0: none). A rerun with the same settings "
                        "resumes from the last one")
    p.add_argument("--memory-snapshot", action="store_true", default=None,
                   help="CUDA: write memory_snapshot.pickle for PyTorch's memory visualizer")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .config import build_config, read_experiment, resolve_experiment
    from .methods import get_method, load_method_module

    experiment = resolve_experiment(args.experiment) if args.experiment else None
    file_values = read_experiment(experiment) if experiment else {}
    module = args.method_module or file_values.get("method_module")
    if module:
        load_method_module(module)
    method_cls = get_method(args.method or file_values.get("method") or "lisa")  # unknown method: error first
    option_overrides = {}
    for flag, users in _method_flags().items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is None:
            continue
        options = {cls.name: option for cls, option, _ in users}
        if method_cls.name not in options:
            raise BadInput(f"{flag} applies to method {', '.join(options)}, not {method_cls.name!r}")
        option_overrides[options[method_cls.name]] = value
    option_overrides.update(_key_values(args.option, "--option"))
    layers = [dict([kv]) for kv in _key_values(args.settings, "--set").items()]
    layers += [_settings_file(f) for f in args.settings_file]
    cfg = build_config(experiment, {k: getattr(args, k) for k in TRAIN_FIELDS}, option_overrides, layers=layers)
    from .training import train

    name = args.experiment_name or (experiment.stem if experiment else None)
    metrics = train(cfg, args.output_dir, progress=not args.no_progress, experiment=name)
    if os.environ.get("RANK", "0") == "0":  # one summary under torchrun / accelerate launch
        print(_train_summary(metrics, name, args.output_dir))
    return 0


def _train_summary(m: dict, experiment: str | None, output_dir: str) -> str:
    """What a finished run measured, one aligned line per figure (metrics.json holds them all, unrounded)."""
    def size(n):
        return "-" if n is None else f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"

    def loss(x):
        return "-" if x is None else f"{x:.4f}"

    processes = m.get("num_processes", 1)
    per = f", the largest of {processes} processes" if processes > 1 else ""
    kind = {"cuda_allocated": "CUDA allocated", "cpu_rss": "process RSS"}.get(m["memory_kind"], m["memory_kind"])
    losses = (f"{loss(m['train_loss_first'])} -> {loss(m['train_loss_last'])} (first -> last step)"
              if m["steps"] else "- (no training steps)")
    speed, steady = m["tokens_per_second"], m.get("steady_tokens_per_second")
    mfu = f", MFU {m['mfu']:.1%}" if m.get("mfu") else ""
    rows = [("method", m["method"] + (f" (experiment {experiment})" if experiment and experiment != m["method"] else "")),
            ("model", m["model"]),
            ("steps", f"{m['steps']} ({m['precision']}, {processes} process{'es' if processes > 1 else ''})"),
            ("training loss", losses),
            ("held-out loss", loss(m["eval_loss"])),
            ("optimizer state", f"{size(m['optimizer_state_bytes_peak'])} (peak{per})"),
            ("peak memory", f"{size(m['peak_memory_bytes'])} ({kind}{per})"),
            ("speed", "-" if speed is None else
             (f"{steady:,.0f} tokens/s after {m['warmup_steps']} warm-up steps{mfu} ({speed:,.0f} over all "
              f"{m['train_seconds']:.1f} s)" if steady else f"{speed:,.0f} tokens/s over {m['train_seconds']:.1f} s")),
            ("output", f"{output_dir} (metrics.json has every figure)")]
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(["lisa-bench train: finished"] + [f"  {k:<{width}}{v}" for k, v in rows])


def _settings_file(path: str) -> dict:
    import yaml

    try:
        data = yaml_io.load(open(path)) or {}
    except OSError as exc:
        raise BadInput(f"--settings-file {path!r} cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"--settings-file {path!r}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInput(f"--settings-file {path!r} must hold a mapping of training settings")
    return data


def _key_values(items: list[str], flag: str) -> dict:
    """KEY=VALUE items, values parsed as YAML, in order."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{flag} {item!r} must look like KEY=VALUE")
        try:
            out[key.strip()] = yaml_io.load(value)
        except yaml.YAMLError:
            raise BadInput(f"{flag} {item!r}: the value is not valid YAML") from None
    return out


def _cmd_analyze_norms(args) -> int:
    from pathlib import Path

    from .reporting.norms import analyze

    for run in args.runs:
        if not (Path(run) / "weight_norms.jsonl").is_file():
            raise BadInput(f"run directory {run!r} has no weight_norms.jsonl")
    print(analyze([Path(r) for r in args.runs], Path(args.output_dir)).to_string())
    return 0


def _cmd_fetch(args) -> int:
    from . import atomic
    from .models import load_model

    loaded = load_model(args.model)
    n = sum(p.numel() for p in loaded.model.parameters())
    print(f"{args.model}: {n:,} parameters ({loaded.source})")
    if args.marker:
        atomic.write_text(args.marker, f"{args.model}\t{n}\t{loaded.source}\n")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (which flag, which value) instead of the whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def _lazy(module: str, name: str):
    """The parser adder ``name`` of ``module``, imported when it is called."""
    def add(sub) -> None:
        import importlib

        getattr(importlib.import_module(module, __package__), name)(sub)

    return add


def _add_analyze_norms(sub) -> None:
    n = sub.add_parser("analyze-norms", help="layerwise weight-norm skew of trained runs",
                       description="Mean weight norm per unit over training, update norm ||W_T - W_0|| per unit, "
                                   "and the skew ratio (embedding+head over the median block) per run.")
    n.add_argument("--runs", nargs="+", required=True)
    n.add_argument("--output-dir", required=True)
    n.set_defaults(func=_cmd_analyze_norms)


def _add_fetch(sub) -> None:
    f = sub.add_parser("fetch", help="fetch a model into the cache (the embedded default, or a hub model)",
                       description="Loads the model once so later jobs find it cached.")
    f.add_argument("--model", required=True)
    f.add_argument("--marker", help="file to write when done (for the pipeline)")
    f.set_defaults(func=_cmd_fetch)


# Each command's parser adder (one adds two), in the order --help lists them. A command's module is imported only
# when its parser is built: `lisa-bench report` does not import torch for `eval`'s parser (1-2 s of every job).
COMMANDS = {
    ("train",): _add_train,
    ("reproduce", "publish"): _lazy(".reproduce", "add_parser"),
    ("memory",): _lazy(".memory.bench", "add_parser"),
    ("memory-collect",): _lazy(".memory.collect", "add_parser"),
    ("plan",): _lazy(".memory.plan", "add_parser"),
    ("plan-tables",): _lazy(".memory.plan_tables", "add_parser"),
    ("eval",): _lazy(".evaluation.lm_eval_runner", "add_parser"),
    ("mt-bench",): _lazy(".evaluation.mt_bench.cli", "add_parser"),
    ("report",): _lazy(".reporting.commands", "add_report_parser"),
    ("sweep-best",): _lazy(".reporting.commands", "add_sweep_best_parser"),
    ("paper",): _lazy(".reporting.commands", "add_paper_parser"),
    ("page",): _lazy(".reporting.page", "add_parser"),
    ("redraw",): _lazy(".reporting.redraw", "add_parser"),
    ("docs",): _lazy(".docs_results", "add_parser"),
    ("profile",): _lazy(".training.profile", "add_parser"),
    ("analyze-norms",): _add_analyze_norms,
    ("fetch",): _add_fetch,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only the subparser of ``command`` when it names one (what `main` runs): a
    mistyped command still gets every choice in its error."""
    parser = _Parser(prog="lisa-bench", description="LISA reproduction and fine-tuning benchmark suite")
    sub = parser.add_subparsers(dest="command", required=True)
    known = any(command in names for names in COMMANDS)
    for names, add in COMMANDS.items():
        if not known or command in names:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(given[0] if given else None)
    args = parser.parse_args(given)
    try:
        return args.func(args)
    except BadInput as exc:
        # under torchrun every process finds the same bad input: one of them says so, not one line per GPU
        if os.environ.get("RANK", "0") == "0":
            print(f"lisa-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lisa-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
