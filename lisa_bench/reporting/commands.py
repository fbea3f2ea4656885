"""The reporting subcommands' parsers (``lisa-bench report``, ``lisa-bench sweep-best``), apart from their
work: every ``lisa-bench`` process builds all parsers, and pandas and matplotlib, which the work needs,
take a second to import in processes (training, memory cells) that never use them."""

from __future__ import annotations


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and figures of any runs: a study's, or lisa-bench train's",
                       description="Finds every run under the given directories (at any depth, by the run.json and "
                                   "metrics.json each run writes) and writes OUT/tables/*.{csv,md,tex} and "
                                   "OUT/figures/*.{png,pdf}.")
    p.add_argument("--runs", nargs="+", metavar="DIR",
                   help="run directories (lisa-bench train, eval or mt-bench answer outputs), or directories "
                        "holding runs at any depth")
    p.add_argument("--runs-dir", help="one directory holding runs (the same as --runs DIR)")
    p.add_argument("--sweep-runs", nargs="*", metavar="DIR",
                   help="a learning-rate sweep's grid runs (default: a sweep/ directory inside each --runs DIR)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--name", default="study")
    p.add_argument("--baselines", default=None,
                   help="experiments the paired comparisons are against, comma-separated (default: those of "
                        "lora-r128,full that have runs)")
    p.add_argument("--matched", default=None, metavar="FAMILY",
                   help="compare every other method family's experiments with this family's experiment nearest in "
                        "optimizer state and in peak memory (tables/matched; e.g. lora, along its ranks; a family is "
                        "a method and the options that set it apart, as the training table's family column names it)")
    p.add_argument("--bootstrap", type=int, default=2000, help="resamples of the comparisons' intervals")
    p.add_argument("--score", default=None,
                   help="what figures/score_vs_memory plots: eval_loss (the final held-out loss), mt_bench (its "
                        "overall score) or an lm-eval task/metric such as synthetic_qa/exact_match (default: "
                        "mt_bench where the study has it, else eval_loss)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from ..errors import BadInput
    from .report import collect, summary

    sources = (args.runs or []) + ([args.runs_dir] if args.runs_dir else [])
    if not sources:
        raise BadInput("report: no runs given; give --runs DIR [DIR ...] (run directories, or directories holding "
                       "runs) or --runs-dir DIR")
    baselines = tuple(b for b in args.baselines.split(",") if b) if args.baselines is not None else None
    tables = collect(sources, args.output_dir, args.name, baselines, args.bootstrap, args.score, args.sweep_runs,
                     args.matched)
    from .page import write_page

    page = write_page(args.output_dir, args.name)  # every table and figure of the output directory, with captions
    if not args.quiet:
        print(summary(tables, args.output_dir))
        print(f"page: {page}")
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


def add_paper_parser(sub) -> None:
    p = sub.add_parser("paper", help="the paper's numbers beside a study's (paper/<study>.yaml)",
                       description="Writes OUT/paper.{csv,md,tex} (each cell of the paper table the study reproduces: "
                                   "the paper's value where verified, ours, the difference) and "
                                   "OUT/paper_settings.{csv,md,tex} (the paper's stated settings beside the study's "
                                   "config). Format and how to fill a blank from the PDF: docs/paper.md.")
    p.add_argument("--reference", required=True, help="the reference file, e.g. paper/paper-memory.yaml")
    p.add_argument("--results", required=True, help="the study's results directory (runs/<study>/results)")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--configfile", help="the study's config (its settings are compared)")
    given.add_argument("--config-json", help="the study's config as JSON (what the pipeline passes)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_paper)


def _cmd_paper(args) -> int:
    import json
    from pathlib import Path

    from .. import yaml_io
    from ..errors import BadInput
    from .paper import write_paper_tables

    if args.config_json is not None:
        config = json.loads(args.config_json)
    elif not Path(args.configfile).is_file():
        raise BadInput(f"paper: config {args.configfile!r} does not exist")
    else:
        config = yaml_io.load(Path(args.configfile).read_text()) or {}
    cells = write_paper_tables(args.reference, args.results, config, args.output_dir)
    if not args.quiet:
        print((Path(args.output_dir) / "paper.md").read_text())
        print((Path(args.output_dir) / "paper_settings.md").read_text())
    return 0 if len(cells) else 2
