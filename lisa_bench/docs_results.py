"""The README's and the docs' numbers, written from the committed results: every block between
``<!-- from-results: NAME -->`` and ``<!-- /from-results -->`` in README.md and docs/*.md is rendered by
``BLOCKS[NAME]`` from files under results/ (and the study configs they ran), so that a rerun's numbers reach the
prose by one command, and nobody types a number a file holds:

    .venv/bin/lisa-bench docs            # rewrite every block from results/
    .venv/bin/lisa-bench docs --check    # exit 1 naming each block that would change (the test runs this)

Timings measured by hand (``make test`` from a clean clone, the first look's wall time) live in
``results/timings.yaml``, with the commit and the machine they were taken on.
"""

from __future__ import annotations

import csv
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from . import yaml_io
from .errors import BadInput

START = re.compile(r"<!-- from-results: ([\w-]+) -->\n")
END = "<!-- /from-results -->"
PAGES = ("README.md", "docs/*.md")
# the experiment name the committed studies give full fine-tuning (their rows are keyed by experiment)
FULL = "full"


def rnd(value, digits: int) -> str:
    """A value rounded half up to ``digits`` places, as the tables print it."""
    return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


class Results:
    """The committed files a block reads, relative to the project root."""

    def __init__(self, root: Path):
        self.root = root

    def rows(self, path: str) -> list[dict]:
        with open(self.root / path, newline="") as fh:
            return list(csv.DictReader(fh))

    def one(self, path: str, **match) -> dict:
        found = [r for r in self.rows(path) if all(r[k] == v for k, v in match.items())]
        if len(found) != 1:
            raise BadInput(f"docs: {path} has {len(found)} rows for {match}, expected one")
        return found[0]

    def yaml(self, path: str) -> dict:
        return yaml_io.load((self.root / path).read_text()) or {}

    def text(self, path: str) -> str:
        return (self.root / path).read_text()


def _minutes_seconds(seconds: float) -> str:
    return f"{int(seconds) // 60} min {int(round(seconds)) % 60} s"


def make_test(r: Results) -> str:
    t = r.yaml("results/timings.yaml")["make_test"]
    aim = 600
    within = ("within the project's 10-minute aim" if t["seconds"] <= aim
              else "over the project's 10-minute aim")
    return (f"`make test` builds the same `.venv` and runs the test suite on one pytest-xdist worker per core: "
            f"{_minutes_seconds(t['seconds'])} from a clean clone on the {t['machine']}, venv included ({within}; "
            f"`make test-all` adds the variants another test covers); `pytest -m 'not slow'` skips the end-to-end "
            f"runs. Set-up, test scheduling and the comparison's tolerances: [studies and the pipeline]"
            f"(docs/pipeline.md).")


def make_test_detail(r: Results) -> str:
    t = r.yaml("results/timings.yaml")["make_test"]
    slowest = ", ".join(f"{name} {seconds} s" for name, seconds in t["slowest"].items())
    def one(e: dict) -> str:
        return f"{e['time']} with {e['tests']} tests at {e['commit']}" + (f" ({e['note']})" if e.get("note") else "")

    earlier = "; ".join(one(e) for e in t.get("earlier", []))
    return (f"`make test` from a clean clone on this project's {t['machine']}: {_minutes_seconds(t['seconds'])}, "
            f"venv included (pytest {t['pytest_seconds']} s, {t['tests']} tests on two pytest-xdist workers, "
            f"nothing else running, at {t['commit']}" + (f" ({t['note']})" if t.get("note") else "")
            + f"; the slowest: {slowest}; earlier: {earlier}; measured by hand, "
            f"`results/timings.yaml`).")


def first_look(r: Results) -> str:
    minutes = r.yaml("results/timings.yaml")["first_look"]["minutes"]
    return ("The first look runs every stage of a study on a tiny random Llama (built in code, nothing downloaded): "
            "train full fine-tuning and LISA, lm-eval, MT-Bench judged by the tiny model, the weight norms, the "
            f"memory table, and every table and figure in `runs/tiny/results/`, in {minutes} minutes on this "
            "project's 2-core machine. Its scores mean nothing; it shows what a study runs and writes. [Writing a "
            "study](docs/studies.md) grows it into your own.")


def default_run(r: Results) -> str:
    wall = re.search(r"wall time of this `lisa-bench reproduce`: ([\d.]+) min",
                     r.text("results/default/stage_times.md")).group(1)
    python = re.search(r'requires-python = ">=([\d.]+)"', r.text("pyproject.toml")).group(1)
    return (f"`make reproduce` builds `.venv` (Python >= {python}; torch's CUDA build where there is an NVIDIA "
            "driver), then runs the whole pipeline of `config/default.yaml` on the CPU: fetch SmolLM2-135M, train "
            "base, full, LoRA, LISA, callback-LISA and GaLore, evaluate each with lm-eval and MT-Bench, analyse the "
            "layerwise weight norms, measure the memory table, write tables and figures to "
            "`runs/default/results/`, and compare every headline figure with the committed reference in "
            f"[`results/default/`](results/default/README.md). On this project's 2-core machine the pipeline takes "
            f"{wall} minutes (a second run redoes only what changed). It is a smoke reproduction judged by the 135M "
            "model itself: it shows the pipeline and the memory behaviour, not the paper's scores.")


def gpu_h200(r: Results) -> str:
    cells = r.rows("results/gpu-h200/memory_table.csv")
    peak = {c["method"]: float(c["peak_GiB"]) for c in cells if c["model"] == "llama-2-7b"}
    worst = max(abs(float(c["peak_GiB"]) / float(c["predicted_peak_GiB"]) - 1) for c in cells if c["status"] == "ok")
    shapes = {(c["batch_size"], c["seq_len"], c["attn_implementation"], c["precision"])
              for c in r.rows("results/gpu-h200/memory.csv")}
    (batch, seq, attn, precision), = shapes
    least = peak["lisa-e-h-2l"] < peak["lora-r128"] < peak[FULL]
    finding = ("at 7B, LISA needs the least memory of the three, as the paper's table says" if least
               else "at 7B, LISA does not need the least memory of the three, against the paper's table")
    return ("**Memory, on a GPU** ([`results/gpu-h200/`](results/gpu-h200/README.md)). Under the paper's protocol "
            f"on one H200 ({precision}, batch {batch} x {seq}, {attn} attention), LISA E+H+2L peaks at "
            f"{rnd(peak['lisa-e-h-2l'], 1)} GiB on LLaMA-2-7B against {rnd(peak['lora-r128'], 1)} GiB for LoRA r128 "
            f"and {rnd(peak[FULL], 1)} GiB for full fine-tuning, and every measured peak lies within "
            f"{rnd(worst * 100, 1)}% of the suite's analytic memory model. **Finding: {finding}.**")


def gpu_recipe(r: Results) -> str:
    runs = r.rows("results/gpu-recipe/recipe.csv")
    ratios = [float(x["measured_over_predicted"]) for x in runs]
    pure = [x for x in runs if x["precision"] == "bf16"]
    kept = [x for x in runs if x["precision"] in ("bf16-mixed", "bf16-master", "bf16-kahan")]
    worst_kept = max(abs(float(x["lost_update_first"])) for x in kept)
    bound = next(b for b in (0.002, 0.005, 0.01, 0.05, 1.0) if worst_kept < b)
    number = {10: "Ten"}.get(len(runs), str(len(runs)))
    within = next(b for b in (0.01, 0.02, 0.05, 0.1, 1.0) if max(abs(x - 1) for x in ratios) < b + 0.0005)
    return ("**Training recipes, on a GPU** ([`results/gpu-recipe/`](results/gpu-recipe/README.md)). "
            f"{number} training runs on the same H200 (TinyLlama-1.1B under bf16-mixed, bf16-master and bf16-kahan; "
            f"LLaMA-2-7B under FSDP2) peaked within {rnd(within * 100, 0)}% of `lisa-bench plan`'s prediction "
            f"({rnd(min(ratios), 3)} to {rnd(max(ratios), 3)}). **Finding: pure bf16, the paper's memory-table "
            f"protocol, lost {rnd(float(pure[0]['lost_update_first']) * 100, 0)}% of the first step's update at the "
            f"authors' rate (the LLaMA-2-7B run); the three recipes that keep fp32 masters or a Kahan compensation "
            f"lost under {rnd(bound * 100, 1)}%.**")


PRECISIONS = ("fp32", "bf16", "bf16-mixed", "bf16-master", "bf16-kahan", "bf16-sr")


def _verdict_cells(r: Results) -> dict:
    out = {}
    for row in r.rows("results/plan/verdict.csv"):
        if row["model"] != "Llama-2-7b-hf" or row["launcher"] != "single x 1":
            continue
        protocol = "paper" if row["protocol"].startswith("paper") else "practical"
        out.setdefault((protocol, row["precision"]), {})[row["experiment"]] = float(row["peak_GiB"])
    return out


def verdict_table(r: Results) -> str:
    cells = _verdict_cells(r)
    lines = ["| LLaMA-2-7B, 1 x 1024 | fp32 | bf16 (loses updates) | bf16-mixed | bf16-master | bf16-kahan | bf16-sr |",
             "|---|---|---|---|---|---|---|"]
    for protocol, label in (("paper", "paper protocol (eager, no checkpointing)"),
                            ("practical", "practical (sdpa, checkpointing)")):
        lines.append(f"| {label} | " + " | ".join(
            f"{rnd(cells[(protocol, p)]['lisa-e-h-2l'], 1)} / {rnd(cells[(protocol, p)]['lora-r128'], 1)}"
            for p in PRECISIONS) + " |")
    return "\n".join(lines)


def verdict(r: Results) -> str:
    cells = _verdict_cells(r)
    below = {k: v["lisa-e-h-2l"] < v["lora-r128"] for k, v in cells.items()}
    paper_all = all(below[("paper", p)] for p in PRECISIONS)
    practical = [p for p in PRECISIONS if below[("practical", p)]]
    kahan = cells[("practical", "bf16-kahan")]
    level = abs(kahan["lisa-e-h-2l"] / kahan["lora-r128"] - 1) < 0.02
    first = ("under the paper's protocol LISA is below LoRA in every recipe" if paper_all
             else "under the paper's protocol LISA is not below LoRA in every recipe")
    if practical == ["bf16"]:
        second = "with gradient checkpointing it stays below only in pure bf16, the recipe that drops most updates"
    elif practical == ["bf16", "bf16-sr"]:
        second = ("with gradient checkpointing it stays below in pure bf16, which drops most updates, and in bf16-sr, "
                  "which keeps them in expectation at no more memory (its chunked step is predicted, not yet "
                  "measured on a GPU)")
    else:
        second = f"with gradient checkpointing it stays below in {', '.join(practical) or 'no recipe'}"
    third = ", and under Kahan the two are level" if level else ""
    return ("**Which recipe decides the memory claim** ([`results/plan/verdict.md`](results/plan/verdict.md)). LISA "
            "E+H+2L against LoRA r128 on LLaMA-2-7B, GiB per GPU, as `lisa-bench plan` predicts them:\n\n"
            f"{verdict_table(r)}\n\n**Finding: {first}; {second}{third}.**")


def cpu_claims(r: Results) -> str:
    train, lm = "results/cpu-claims/tables/training.csv", "results/cpu-claims/tables/lm_eval.csv"
    em = "synthetic_qa/exact_match (0-shot, chat)"
    exps = ("lisa-e-h-2l", "lora-r128", FULL)
    state = {e: float(r.one(train, experiment=e)["optimizer_state_MiB"]) for e in exps}
    match = {e: float(r.one(lm, experiment=e)[em]) for e in exps}
    study = r.yaml("config/cpu-claims.yaml")
    memory = state["lisa-e-h-2l"] < state["lora-r128"] < state[FULL]
    quality = match["lisa-e-h-2l"] >= min(match["lora-r128"], match[FULL])
    finding = (f"at this scale LISA's memory claim {'holds' if memory else 'does not hold'} and its quality claim "
               f"{'holds' if quality else 'does not'}")
    return ("**Quality, at CPU scale** ([`results/cpu-claims/`](results/cpu-claims/README.md)). SmolLM2-135M, "
            f"{study['training']['max_steps']} steps, {len(study['seeds'])} seeds, each method at the best learning "
            f"rate of its own grid: LISA E+H+2L holds {rnd(state['lisa-e-h-2l'], 1)} MiB of optimizer state against "
            f"{rnd(state['lora-r128'], 1)} for LoRA r128 and {rnd(state[FULL], 1)} for full fine-tuning, but its "
            f"exact match is {rnd(match['lisa-e-h-2l'], 3)} against LoRA's {rnd(match['lora-r128'], 3)} and full "
            f"fine-tuning's {rnd(match[FULL], 3)}. **Finding: {finding}** (question-by-question intervals in "
            "[results](docs/results.md#cpu-claims-the-papers-main-claim-at-cpu-scale); it says nothing about the "
            "paper's 7B-70B regime, which needs the GPU studies below). Its control is not the paper's: LoRA r128 at "
            "SmolLM2's width 576 is 7 times the paper's relative rank (r16 here), and the runs of its second seed "
            "trained on some scored questions; the scale-matched study that replaces it follows.")


def cpu_budget(r: Results) -> str:
    train = "results/cpu-budget/tables/training.csv"
    study, claims = r.yaml("config/cpu-budget.yaml"), r.yaml("config/cpu-claims.yaml")
    loss = {e: float(r.one(train, experiment=e)["eval_loss"]) for e in
            ("lisa-e-h-2l", "lora-r128", FULL, "lisa-e-h-2l-cover")}
    seeds = {r.one(train, experiment=e)["seeds"] for e in ("lisa-e-h-2l", "lora-r128", FULL)}
    count = {"1": "one seed", "2": "2 seeds", "3": "3 seeds"}[seeds.pop()]
    times = study["training"]["max_steps"] // claims["training"]["max_steps"]
    closes = min(loss["lisa-e-h-2l"], loss["lisa-e-h-2l-cover"]) <= min(loss["lora-r128"], loss[FULL])
    return (f"**Quality with {times} times the budget** ([`results/cpu-budget/`](results/cpu-budget/README.md)). The "
            f"same set-up at {study['training']['max_steps']} steps, with LISA's coverage sampling (every block "
            "trained before any trains twice) and LoRA with embedding and head trained (the paper's Figure 2): LISA "
            f"E+H+2L ends at a held-out loss of {rnd(loss['lisa-e-h-2l'], 3)} against LoRA r128's "
            f"{rnd(loss['lora-r128'], 3)} and full fine-tuning's {rnd(loss[FULL], 3)}, and coverage sampling, "
            f"which left no block untrained, at {rnd(loss['lisa-e-h-2l-cover'], 3)}. **Finding: more steps and full "
            f"coverage {'close' if closes else 'do not close'} LISA's gap at this scale** ({count}; paired "
            "intervals and the equal-seconds reading in its README).")


def cpu_ablations(r: Results) -> str:
    train, comp = "results/cpu-ablations/tables/training.csv", "results/cpu-ablations/tables/comparisons.csv"
    study = r.yaml("config/cpu-ablations.yaml")
    loss = {e: float(r.one(train, experiment=e)["eval_loss"]) for e in
            ("lisa-e-h-2l-k13", "lisa-e-h-2l-k122", "lisa-e-h-8l")}
    em = r.one(comp, task_metric="synthetic_qa/exact_match", experiment="lisa-e-h-8l", baseline="lisa-e-h-2l-k13")

    def options(exp: str) -> dict:  # the experiment file's method options under the study's overrides
        own = r.yaml(f"experiments/{exp}.yaml")["method_options"]
        return {**own, **(study.get("experiment_overrides") or {}).get(exp, {}).get("method_options", {})}

    k = [options(f"lisa-e-h-2l-k{n}")["interval"] for n in (122, 25, 13)]
    g = [options(e)["gamma"] for e in ("lisa-e-h-2l-k13", "lisa-e-h-4l", "lisa-e-h-8l")]
    supported = float(em["ci_low"]) > 0
    return ("**The paper's ablations, at CPU scale** ([`results/cpu-ablations/`](results/cpu-ablations/README.md)). "
            f"LISA E+H for {study['training']['max_steps']} steps, switching every {k[0]}, {k[1]} or {k[2]} steps "
            f"with 2 layers, and {g[0]}, {g[1]} or {g[2]} layers every 13 steps, {len(study['seeds'])} seeds: "
            f"switching every 13 steps ends at a held-out loss of {rnd(loss['lisa-e-h-2l-k13'], 3)} against "
            f"{rnd(loss['lisa-e-h-2l-k122'], 3)} without switching, and 8 layers at {rnd(loss['lisa-e-h-8l'], 3)}, "
            f"with exact match {'+' if float(em['difference']) >= 0 else ''}{rnd(em['difference'], 3)} "
            f"{'question by question' if supported else '(an interval that includes 0)'}. **Finding: the switching "
            "interval makes no measurable difference here (the paper found no switching worse); more layers help, at "
            "the cost of more optimizer state.**")


def cpu_claims_table(r: Results) -> str:
    """docs/results.md's table of the cpu-claims study: each tuned method's memory and scores, the rate its grid
    chose, and LISA's paired difference from it."""
    train, lm = "results/cpu-claims/tables/training.csv", "results/cpu-claims/tables/lm_eval.csv"
    comp, grid = "results/cpu-claims/tables/comparisons.csv", "results/cpu-claims/sweep/grid.csv"
    em = "synthetic_qa/exact_match (0-shot, chat)"
    lines = ["| experiment | optimizer state MiB | peak RSS MiB | held-out loss | exact match | LISA E+H+2L minus it, "
             "exact match [95% CI] |", "|---|---|---|---|---|---|"]
    for exp in (FULL, "lora-r128", "lisa-e-h-2l"):
        t, e = r.one(train, experiment=exp), r.one(lm, experiment=exp)
        rate = r.one(grid, experiment=exp, chosen="True")["lr"]
        diff = ""
        if exp != "lisa-e-h-2l":
            c = r.one(comp, task_metric="synthetic_qa/exact_match", experiment="lisa-e-h-2l", baseline=exp)
            diff = f"{rnd(c['difference'], 3)} [{rnd(c['ci_low'], 3)}, {rnd(c['ci_high'], 3)}]"
        mantissa, exponent = f"{float(rate):e}".split("e")
        lines.append(f"| {exp} ({float(mantissa):g}e{int(exponent)}) | {rnd(t['optimizer_state_MiB'], 1)} | "
                     f"{rnd(t['peak_memory_MiB'], 0)} | {rnd(t['eval_loss'], 3)} | {rnd(e[em], 3)} | "
                     + (f"{diff} |" if diff else "|"))
    return "\n".join(lines)


FRONTIER = "results/cpu-frontier/tables/"
FRONTIER_ORDER = ("full", "lora-r16", "lora-r32", "lora-r64", "lora-r128", "lora-r16-eh", "lisa-e-h", "lisa-e-h-1l",
                  "lisa-e-h-2l", "lisa-e-h-4l", "lisa-e-h-8l", "lisa-callback-e-h-2l")
EM, MC = "synthetic_qa/exact_match (0-shot, chat)", "synthetic_mc/acc (0-shot, chat)"


def _interval(row: dict, digits: int = 3) -> str:
    return (f"{rnd(float(row['difference']), digits)} [{rnd(float(row['ci_low']), digits)}, "
            f"{rnd(float(row['ci_high']), digits)}]")


def _side(row: dict, lower_is_better: bool) -> str:
    """ahead, behind or level: where the 95% interval of (experiment minus its match) lies."""
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    if lo <= 0 <= hi:
        return "level"
    return "ahead" if (hi < 0) == lower_is_better else "behind"


def _frontier_lisa(r: Results, by: str) -> dict:
    """Each LISA size (the ``lisa`` family) against the LoRA rank nearest in ``by``: {experiment: {metric: row}}."""
    rows = [x for x in r.rows(FRONTIER + "matched.csv") if x["matched_by"] == by]
    lisa = [e for e in FRONTIER_ORDER if e.startswith("lisa-e-h")]
    return {e: {x["metric"]: x for x in rows if x["experiment"] == e} for e in lisa}


def cpu_frontier(r: Results) -> str:
    """The README's verdict from the frontier study: each LISA size against the nearest LoRA rank in optimizer
    state and in peak memory, LISA E+H+2L against LoRA at the paper's relative rank, gamma 0 against gamma 2."""
    train = FRONTIER + "training.csv"
    study = r.yaml("config/cpu-frontier.yaml")
    t = {e: r.one(train, experiment=e) for e in FRONTIER_ORDER}
    sides = {by: {x: _side(m["eval_loss"], True) for x, m in _frontier_lisa(r, by).items()}
             for by in ("optimizer_state", "peak_memory")}

    def count(by: str) -> str:
        got = list(sides[by].values())
        words = {"ahead": "lower", "level": "level with it", "behind": "higher"}
        return ", ".join(f"{words[w]} at {got.count(w)}" for w in ("ahead", "level", "behind") if got.count(w))

    seeds = {x: int(t[x]["seeds"]) for x in FRONTIER_ORDER}
    most = max(seeds.values())
    names = {"full": "full", "lora-r16": "LoRA r16", "lora-r128": "LoRA r128", "lisa-e-h-2l": "LISA E+H+2L"}
    three = [names.get(x, x) for x in FRONTIER_ORDER if seeds[x] == most]
    rest = sorted({v for v in seeds.values() if v != most})

    lisa2 = _frontier_lisa(r, "optimizer_state")["lisa-e-h-2l"]
    borrowed = (study.get("sweep") or {}).get("rate_from") or {}
    beaten = sorted({m["eval_loss"]["matched"] for x, m in _frontier_lisa(r, "peak_memory").items()
                     if sides["peak_memory"][x] == "ahead"})
    peak_note = (" (lower against " + ", ".join(
        f"{b}" + (f", trained at {borrowed[b]}'s swept rate" if b in borrowed else "") for b in beaten) + ")"
                 if beaten else "")
    comp = FRONTIER + "comparisons.csv"
    r16 = {m: r.one(comp, task_metric=m, experiment="lisa-e-h-2l", baseline="lora-r16")
           for m in ("synthetic_qa/exact_match", "synthetic_mc/acc")}
    loss = {x: float(t[x]["eval_loss"]) for x in FRONTIER_ORDER}
    forget = {x: float(t[x]["forgetting"]) for x in FRONTIER_ORDER}
    state = {x: float(t[x]["optimizer_state_MiB"]) for x in FRONTIER_ORDER}
    best_lora = min((x for x in FRONTIER_ORDER if x.startswith("lora-r") and not x.endswith("-eh")),
                    key=lambda x: loss[x])
    best_lisa = min((x for x in FRONTIER_ORDER if x.startswith("lisa-e-h")), key=lambda x: loss[x])
    share = (loss["lisa-e-h"] - loss["lisa-e-h-2l"]) / (loss["lisa-e-h"] - loss["lora-r128"]) if \
        loss["lisa-e-h"] != loss["lora-r128"] else float("nan")
    return (
        "**LISA and LoRA along the quality-memory frontier** ([`results/cpu-frontier/`]"
        "(results/cpu-frontier/README.md)). SmolLM2-135M, "
        f"{study['training']['max_steps']} steps, LoRA at ranks 16 (the paper's relative rank at width 576) to 128 "
        f"and LISA E+H at gamma 0 to 8, each family at the rate of its own sweep, "
        + (f"{most} seeds for {', '.join(three[:-1]) + ' and ' + three[-1] if len(three) > 1 else three[0]} and "
           f"{' or '.join(map(str, rest))} for the rest" if rest else f"{most} seeds each") + "; "
        "differences with 95% intervals from a two-level bootstrap over runs and questions. Against the nearest "
        f"LoRA rank in optimizer state, LISA's held-out loss is {count('optimizer_state')} of its "
        f"{len(sides['optimizer_state'])} sizes (LISA E+H+2L, "
        f"{rnd(state['lisa-e-h-2l'], 0)} MiB, minus {lisa2['eval_loss']['matched']}, "
        f"{rnd(float(lisa2['eval_loss']['matched_MiB']), 0)} MiB: {_interval(lisa2['eval_loss'])}; exact match "
        f"{_interval(lisa2['synthetic_qa/exact_match'])}); at the nearest in peak memory it is "
        f"{count('peak_memory')}{peak_note}. The best LoRA point ({best_lora}, {rnd(loss[best_lora], 3)} at "
        f"{rnd(state[best_lora], 0)} MiB) is below the best LISA point ({best_lisa}, {rnd(loss[best_lisa], 3)} at "
        f"{rnd(state[best_lisa], 0)} MiB). Against LoRA r16, LISA E+H+2L is "
        f"{_side(r16['synthetic_qa/exact_match'], False)} on exact match "
        f"({_interval(r16['synthetic_qa/exact_match'])}) and {_side(r16['synthetic_mc/acc'], False)} on multiple "
        f"choice ({_interval(r16['synthetic_mc/acc'])}) with {rnd(state['lisa-e-h-2l'] / state['lora-r16'], 1)} "
        f"times its optimizer state, forgetting {rnd(forget['lisa-e-h-2l'], 2)} against "
        f"{rnd(forget['lora-r16'], 2)}; the embedding and head alone (gamma 0) reach {rnd(loss['lisa-e-h'], 3)}, "
        f"and two sampled blocks close {rnd(100 * share, 0)}% of the gap from there to LoRA r128. "
        f"**Finding: {_frontier_finding(sides['optimizer_state'])}** (SmolLM2-135M on synthetic data: it says "
        "nothing about 7B-70B).")


def cpu_frontier_table(r: Results) -> str:
    """docs/results.md's tables of the frontier study: every point (means over its seeds), then each LISA size and
    the callback form against the LoRA rank nearest in optimizer state."""
    train, lm = FRONTIER + "training.csv", FRONTIER + "lm_eval.csv"
    lines = ["| experiment | family | seeds | optimizer state MiB | peak RSS MiB | held-out loss | exact match | "
             "mc acc | forgetting |", "|---|---|---|---|---|---|---|---|---|"]
    for x in FRONTIER_ORDER:
        t, e = r.one(train, experiment=x), r.one(lm, experiment=x)
        lines.append(f"| {x} | {t['family']} | {t['seeds']} | {rnd(t['optimizer_state_MiB'], 1)} | "
                     f"{rnd(t['peak_memory_MiB'], 0)} | {rnd(t['eval_loss'], 3)} | {rnd(e[EM], 3)} | {rnd(e[MC], 3)} | "
                     f"{rnd(t['forgetting'], 3)} |")
    lines += ["", "| experiment minus the LoRA rank nearest in optimizer state | held-out loss | exact match | mc acc | "
              "forgetting | seeds |", "|---|---|---|---|---|---|"]
    rows = [x for x in r.rows(FRONTIER + "matched.csv") if x["matched_by"] == "optimizer_state"]
    for x in FRONTIER_ORDER:
        got = {m["metric"]: m for m in rows if m["experiment"] == x}
        if not x.startswith("lisa-") or "eval_loss" not in got:
            continue
        m = got["eval_loss"]
        lines.append(f"| {x} ({rnd(m['MiB'], 0)} MiB) - {m['matched']} ({rnd(m['matched_MiB'], 0)} MiB) | "
                     + " | ".join(_interval(got[k]) for k in ("eval_loss", "synthetic_qa/exact_match",
                                                              "synthetic_mc/acc", "forgetting"))
                     + f" | {m['seeds']} / {m['seeds_matched']} |")
    return "\n".join(lines)


def _frontier_finding(sides: dict) -> str:
    got = list(sides.values())
    if got.count("behind") > len(got) / 2:
        return ("at equal optimizer state LoRA reaches the better model at this scale: the earlier headline, "
                "measured against LoRA r128 alone, holds against scale-matched controls")
    if got.count("ahead") > len(got) / 2:
        return ("at equal optimizer state LISA reaches the better model at this scale: the earlier headline, "
                "measured against LoRA r128 alone, does not hold against scale-matched controls")
    return ("at equal optimizer state neither family is ahead at most sizes: the earlier headline, measured "
            "against LoRA r128 alone, does not hold as stated")


def will_it_fit(r: Results) -> str:
    return r.text("results/plan/will_it_fit.md").strip()


BLOCKS = {
    "first-look": first_look, "default-run": default_run, "make-test": make_test,
    "make-test-detail": make_test_detail, "gpu-h200": gpu_h200, "gpu-recipe": gpu_recipe, "verdict": verdict,
    "verdict-table": verdict_table, "cpu-claims": cpu_claims, "cpu-budget": cpu_budget,
    "cpu-ablations": cpu_ablations, "will-it-fit": will_it_fit, "cpu-claims-table": cpu_claims_table,
    "cpu-frontier": cpu_frontier, "cpu-frontier-table": cpu_frontier_table,
}


def pages(root: Path) -> list[Path]:
    return [p for pattern in PAGES for p in sorted(root.glob(pattern))]


WIDTH = 115  # the pages' line length


def _wrapped(block: str) -> str:
    """Paragraphs filled to the pages' width; tables and headings as they are."""
    import textwrap

    return "\n\n".join(p if p.startswith(("|", "#", "**paper", "**bf16")) and "\n" in p or p.startswith("|")
                         else textwrap.fill(p, WIDTH, break_long_words=False, break_on_hyphens=False)
                         for p in block.split("\n\n"))


def render_page(text: str, results: Results, where: str) -> str:
    """The page with every block rendered afresh; an unknown or unclosed block is a BadInput naming it."""
    out, pos = [], 0
    for m in START.finditer(text):
        if m.start() < pos:
            continue
        name = m.group(1)
        if name not in BLOCKS:
            raise BadInput(f"{where}: unknown results block {name!r}; valid choices: {', '.join(BLOCKS)}")
        end = text.find(END, m.end())
        if end < 0:
            raise BadInput(f"{where}: results block {name!r} has no closing {END}")
        out += [text[pos:m.end()], _wrapped(BLOCKS[name](results).strip()), "\n"]
        pos = end
    return "".join(out) + text[pos:]


def update(root: str | Path = ".", check: bool = False) -> list[str]:
    """Render every page's blocks; write them (or, with ``check``, leave the pages alone). Returns the pages whose
    blocks changed."""
    root = Path(root)
    results, changed = Results(root), []
    for page in pages(root):
        text = page.read_text()
        new = render_page(text, results, str(page.relative_to(root)))
        if new != text:
            changed.append(str(page.relative_to(root)))
            if not check:
                page.write_text(new)
    return changed


def add_parser(sub) -> None:
    p = sub.add_parser("docs", help="write the README's and the docs' numbers from the committed results",
                       description="Renders every <!-- from-results: NAME --> block of README.md and docs/*.md from "
                                   "the files under results/ (lisa_bench/docs_results.py).")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each page that would change")
    p.add_argument("--directory", default=".", help="the project directory (default: .)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    changed = update(args.directory, check=args.check)
    for page in changed:
        print(f"{page}: {'would change' if args.check else 'rewritten'} from results/")
    return 1 if (changed and args.check) else 0
