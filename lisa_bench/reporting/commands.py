"""The reporting subcommands' parsers (``lisa-bench report``, ``lisa-bench sweep-best``), apart from their
work: every ``lisa-bench`` process builds all parsers, and pandas and matplotlib, which the work needs,
take a second to import in processes (training, memory cells) that never use them."""

from __future__ import annotations


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and figures of a pipeline run tree",
                       description="Collects RUNS/{train,eval,mt_bench} into OUT/tables/*.{csv,md,tex} and "
                                   "OUT/figures/*.{png,pdf}.")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--name", default="study")
    p.add_argument("--baselines", default="lora-r128,full",
                   help="experiments the paired comparisons are against (default: lora-r128,full)")
    p.add_argument("--bootstrap", type=int, default=2000, help="resamples of the comparisons' intervals")
    p.add_argument("--score", default=None,
                   help="what figures/score_vs_memory plots: eval_loss (the final held-out loss), mt_bench (its "
                        "overall score) or an lm-eval task/metric such as synthetic_qa/exact_match (default: "
                        "mt_bench where the study has it, else eval_loss)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from .report import collect

    collect(args.runs_dir, args.output_dir, args.name, tuple(args.baselines.split(",")), args.bootstrap, args.score)
    return 0


def add_sweep_best_parser(sub) -> None:
    p = sub.add_parser("sweep-best", help="the learning rate of a sweep's lowest held-out loss",
                       description="Reads the grid runs of one experiment and writes a settings file {lr: best} "
                                   "(for lisa-bench train --settings-file), with the grid's losses.")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_sweep_best)


def _cmd_sweep_best(args) -> int:
    from .sweep import cmd_best

    return cmd_best(args)
