"""The README and the manual in docs/: every command, link and quoted number is checked.

Commands: every ```bash / ```sh / ```console block of README.md, docs/*.md and the results READMEs the manual
moved text into is read; each `lisa-bench ...` command (also `.venv/bin/lisa-bench`, `python -m lisa_bench.cli`,
`torchrun ... -m lisa_bench.cli`, `mt-bench ...`) must name a subcommand that exists and use only flags that
subcommand defines, spelled out (argparse would accept an abbreviation; the docs should not rely on it), and
parse with the suite's own parser; `python scripts/X.py` must exist and use only the script's flags; scripts,
configs, profiles and experiments named in a command must exist. A command that needs a GPU, the hub, an API key
or a server says so with a trailing `# needs: gpu` (or `hub`, `key`, `server`, comma-separated), or its block's
fence says ```bash needs-gpu; those are parsed and checked, never run. Commands without a mark are run with
`--help` appended in-process (the subcommand's parser builds), and `lisa-bench plan` ones are run for real (the
memory model on the meta device: nothing is downloaded or allocated).

Links: every relative link and image in those pages must resolve to a file or directory, and a `#anchor` into a
Markdown page must name one of its headings.

Numbers: every number in the README's prose is either recomputed here from the committed file it comes from, or
listed in NOT_FROM_RESULTS with where it comes from; the tables the manual quotes from results/ are compared with
the files cell by cell.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import re
import shlex
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# pages the README's text moved into besides docs/ (the results' histories)
MOVED = [ROOT / "results" / "default" / "README.md"]
PAGES = [README, *DOCS, *MOVED]
SHELL_FENCES = {"bash", "sh", "console", "shell"}
NEEDS = {"gpu", "hub", "key", "server"}


# ---------------------------------------------------------------- reading the pages

def fenced_blocks(text: str):
    """(info string, code, first line number) of every fenced block."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(`{3,})(.*)$", lines[i])
        if m:
            fence, info, start = m.group(1), m.group(2).strip(), i + 1
            j = start
            while j < len(lines) and not lines[j].startswith(fence):
                j += 1
            yield info, "\n".join(lines[start:j]), start + 1
            i = j + 1
        else:
            i += 1


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    return re.sub(r"^(`{3,}).*?^\1[^\n]*$", "", text, flags=re.S | re.M)


def split_comment(line: str) -> tuple[str, str]:
    """The command and its trailing comment (a # outside quotes, after whitespace)."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip(), line[k + 1:]
    return line, ""


class Command:
    def __init__(self, page: Path, line: int, text: str, comment: str, needs: set[str], block: list):
        self.page, self.line, self.text, self.comment, self.needs = page, line, text, comment, needs
        self.block = block  # the commands of the same block, in order (for `cp ... experiments/`)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.text}"


def page_commands(page: Path, text: str | None = None) -> list[Command]:
    out: list[Command] = []
    for info, code, first in fenced_blocks(page.read_text() if text is None else text):
        words = info.split()
        if not words or words[0] not in SHELL_FENCES:
            continue
        block_needs = {w[len("needs-"):] for w in words[1:] if w.startswith("needs-")}
        block: list[Command] = []
        lines = code.split("\n")
        k = 0
        while k < len(lines):
            start = k
            joined, comments = "", []
            while True:
                cmd, comment = split_comment(lines[k])
                if comment:
                    comments.append(comment)
                if cmd.endswith("\\"):
                    joined += cmd[:-1] + " "
                    k += 1
                    continue
                joined += cmd
                k += 1
                break
            joined = joined.strip()
            if joined.startswith("$ "):
                joined = joined[2:]
            if not joined:
                continue
            comment = " ".join(comments)
            needs = set(block_needs)
            for m in re.finditer(r"needs:\s*([\w ,]+)", comment):
                needs |= {w.strip() for w in m.group(1).split(",") if w.strip()}
            # a line may chain commands: check each one
            for part in re.split(r"\s*(?:&&|\|\||;)\s*", joined):
                if part:
                    c = Command(page, first + start, part, comment, needs, block)
                    block.append(c)
                    out.append(c)
    return out


ALL_COMMANDS = [c for p in PAGES for c in page_commands(p)]


# ---------------------------------------------------------------- what a command runs

def _strip_env(tokens: list[str]) -> list[str]:
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        tokens = tokens[1:]
    return tokens


def suite_argv(tokens: list[str]) -> list[str] | None:
    """The argv a `lisa-bench` command gives the suite's parser, or None for other programs."""
    prog = tokens[0]
    if prog == "lisa-bench" or prog.endswith("/lisa-bench"):
        return tokens[1:]
    if prog == "mt-bench" or prog.endswith("/mt-bench"):
        return ["mt-bench", *tokens[1:]]
    if prog in ("python", "python3", "torchrun") or prog.endswith(("/python", "/python3", "/torchrun")):
        if "-m" in tokens:
            k = tokens.index("-m")
            if k + 1 < len(tokens) and tokens[k + 1] in ("lisa_bench", "lisa_bench.cli"):
                return tokens[k + 2:]
    return None


def script_path(tokens: list[str]) -> str | None:
    prog = tokens[0]
    rest = tokens[1:]
    if prog in ("python", "python3", "bash", "sh") or prog.endswith(("/python", "/python3")):
        return rest[0] if rest and rest[0].startswith("scripts/") else None
    return prog if prog.startswith("scripts/") else None


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    from lisa_bench.cli import build_parser

    return build_parser()


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_parser(parser, argv):
    """The (sub)subcommand's parser, its name and the arguments after it."""
    p, names, rest = parser, [], list(argv)
    while (choices := _subparsers(p)):
        assert rest, f"no subcommand after {' '.join(['lisa-bench', *names])}"
        name = rest.pop(0)
        assert name in choices, (f"`lisa-bench {' '.join([*names, name])}`: no such subcommand "
                                 f"(there are {', '.join(sorted(choices))})")
        p, names = choices[name], [*names, name]
    return p, names, rest


def known_experiments(cmd: Command) -> set[str]:
    names = {f.stem for f in (ROOT / "experiments").glob("*.yaml")}
    for other in cmd.block:  # experiment files the same block copies in first
        tokens = shlex.split(other.text)
        if tokens and tokens[0] == "cp" and tokens[-1].rstrip("/") == "experiments":
            names |= {Path(t).stem for t in tokens[1:-1] if t.endswith(".yaml")}
        if other is cmd:
            break
    return names


def check_experiment_names(cmd: Command, flag: str, value: str) -> None:
    names = known_experiments(cmd)
    for name in value.split(","):
        if name.endswith((".yaml", ".yml")) or "/" in name:
            assert (ROOT / name).exists(), f"{cmd.where}: {flag} {name}: no such file"
        else:
            assert name in names, f"{cmd.where}: {flag} {name}: no experiments/{name}.yaml"


REPO_INPUTS = ("config/", "experiments/", "scripts/", "profiles/", "examples/")
OUTPUT_FLAGS = {"--output-dir", "--out", "--directory", "--report"}


def check_paths(cmd: Command, tokens: list[str]) -> None:
    """Inputs inside the repo (configs, experiments, scripts, profiles, examples) must exist."""
    prev = None
    for t in tokens[1:]:
        value = t.split("=", 1)[1] if t.startswith("--") and "=" in t else t
        if prev not in OUTPUT_FLAGS and value.startswith(REPO_INPUTS) and tokens[0] not in ("mkdir",):
            if tokens[0] == "cp" and t == tokens[-1]:
                pass  # the copy's destination
            else:
                assert (ROOT / value).exists(), f"{cmd.where}: {value} does not exist"
        prev = t


def check_suite_command(parser, cmd: Command, argv: list[str]) -> None:
    leaf, names, rest = leaf_parser(parser, argv)
    options = {s for a in leaf._actions for s in a.option_strings}
    remainder = "--" in rest
    flags_part = rest[:rest.index("--")] if remainder else rest
    for k, tok in enumerate(flags_part):
        if tok.startswith("-") and not re.match(r"^-\d", tok) and tok != "-":
            flag = tok.split("=", 1)[0]
            assert flag in options, (f"{cmd.where}: `lisa-bench {' '.join(names)}` has no flag {flag} "
                                     f"(it has {', '.join(sorted(o for o in options if o.startswith('--')))})")
            value = tok.split("=", 1)[1] if "=" in tok else (flags_part[k + 1] if k + 1 < len(flags_part) else "")
            if flag in ("--experiment", "--experiments") or (flag == "--methods" and names == ["memory"]):
                check_experiment_names(cmd, flag, value)
            if flag == "--configfile":
                assert (ROOT / value).exists(), f"{cmd.where}: {value} does not exist"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            _, unknown = parser.parse_known_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{cmd.where}: the parser refuses it (exit {exc.code}): {err.getvalue().strip()}")
    if not remainder:
        assert not unknown, f"{cmd.where}: arguments the parser does not know: {unknown}"


def check_script_command(cmd: Command, tokens: list[str], path: str) -> None:
    script = ROOT / path
    assert script.is_file(), f"{cmd.where}: {path} does not exist"
    if script.suffix != ".py":
        return
    source = script.read_text()
    flags = {"-h", "--help"} | set(re.findall(r"add_argument\(\s*[\"'](-[-\w]+)[\"']", source))
    flags |= set(re.findall(r"add_argument\(\s*[\"']-[-\w]+[\"']\s*,\s*[\"'](-[-\w]+)[\"']", source))
    for tok in tokens[tokens.index(path) + 1:]:
        if tok.startswith("-") and not re.match(r"^-\d", tok):
            flag = tok.split("=", 1)[0]
            assert flag in flags, f"{cmd.where}: {path} has no flag {flag} (it has {', '.join(sorted(flags))})"


def check_command(parser, cmd: Command) -> None:
    assert cmd.needs <= NEEDS, f"{cmd.where}: unknown `needs:` {sorted(cmd.needs - NEEDS)} (known: {sorted(NEEDS)})"
    tokens = _strip_env(shlex.split(cmd.text))
    if not tokens:
        return
    check_paths(cmd, tokens)
    argv = suite_argv(tokens)
    if argv is not None:
        check_suite_command(parser, cmd, argv)
        return
    path = script_path(tokens)
    if path is not None:
        check_script_command(cmd, tokens, path)
        return
    prog = Path(tokens[0]).name
    if prog == "snakemake":
        for flag in ("--configfile", "--profile", "--snakefile"):
            if flag in tokens:
                value = tokens[tokens.index(flag) + 1]
                assert (ROOT / value).exists(), f"{cmd.where}: {value} does not exist"
    elif prog == "make":
        targets = set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
        for t in tokens[1:]:
            if not t.startswith("-") and "=" not in t:
                assert t in targets, f"{cmd.where}: the Makefile has no target {t}"


# ---------------------------------------------------------------- the command tests

def test_the_pages_have_commands_to_check():
    suite = [c for c in ALL_COMMANDS if suite_argv(_strip_env(shlex.split(c.text)) or ["-"]) is not None]
    assert len(suite) >= 20, [c.where for c in suite]
    assert {c.page for c in suite} >= {README, *[d for d in DOCS if d.name != "layout.md" and d.name != "results.md"]}


@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=[f"{c.page.name}:{c.line}" for c in ALL_COMMANDS])
def test_documented_command(parser, cmd):
    check_command(parser, cmd)


def test_unmarked_commands_build_their_help(parser):
    """Commands that need nothing are run as `--help`: the subcommand's parser builds and exits 0."""
    ran = 0
    for cmd in ALL_COMMANDS:
        argv = suite_argv(_strip_env(shlex.split(cmd.text)) or ["-"])
        if argv is None or cmd.needs:
            continue
        _, names, _ = leaf_parser(parser, argv)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
            parser.parse_args([*names, "--help"])
        assert exc.value.code == 0 and "usage: lisa-bench" in out.getvalue(), cmd.where
        ran += 1
    assert ran >= 10


def test_unmarked_plan_commands_run(capsys):
    """`lisa-bench plan` reads a config and predicts on the meta device: the documented ones are run for real."""
    from lisa_bench.cli import main

    plans = [c for c in ALL_COMMANDS if not c.needs
             and (argv := suite_argv(_strip_env(shlex.split(c.text)) or ["-"])) and argv[:1] == ["plan"]]
    assert plans
    for cmd in plans:
        argv = suite_argv(_strip_env(shlex.split(cmd.text)))
        assert main(argv) == 0, cmd.where
        assert capsys.readouterr().out.strip(), cmd.where


def test_a_renamed_flag_fails(parser):
    """The check catches what it is for: a flag a subcommand does not have, and one given by abbreviation."""
    page = DOCS[0]
    for text in (".venv/bin/lisa-bench train --experiment lisa-e-h-2l --lisa-layerz 2 --output-dir runs/x",
                 ".venv/bin/lisa-bench train --experiment lisa-e-h-2l --lisa-layer 2 --output-dir runs/x",
                 ".venv/bin/lisa-bench trian --output-dir runs/x",
                 ".venv/bin/lisa-bench train --experiment no-such-experiment --output-dir runs/x",
                 ".venv/bin/lisa-bench reproduce --configfile config/no-such-study.yaml",
                 "python scripts/no_such_script.py --outdir results/plan",
                 "bash scripts/no_such_script.sh"):
        cmd = Command(page, 0, text, "", set(), [])
        cmd.block.append(cmd)
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check_command(parser, cmd)


def test_needs_marks_are_read():
    text = "```bash needs-hub\nlisa-bench fetch --model x   # needs: gpu, key\n```\n```python\nlisa-bench x\n```\n"
    cmds = page_commands(ROOT / "docs" / "probe.md", text)
    assert len(cmds) == 1 and cmds[0].needs == {"hub", "gpu", "key"} and cmds[0].text == "lisa-bench fetch --model x"


# ---------------------------------------------------------------- links

def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", prose(page.read_text()), flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    text = prose(page.read_text())
    text = re.sub(r"`[^`\n]*`", lambda m: m.group(0) if "](" not in m.group(0) else "", text)
    for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.relative_to(ROOT)}: link {target} -> {dest} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), (f"{page.relative_to(ROOT)}: link {target}: {dest.name} has no "
                                             f"heading #{anchor} (it has {sorted(anchors(dest))})")


def test_every_page_says_what_it_is_for():
    for page in DOCS:
        lines = [ln for ln in page.read_text().split("\n") if ln.strip()]
        assert lines[0].startswith("# "), page
        assert lines[1].startswith("This page is for"), f"{page.name}: starts with {lines[1]!r}"


def test_readme_indexes_every_page_and_stays_short():
    text = README.read_text()
    assert len(text.split("\n")) <= 160
    for page in DOCS:
        assert f"(docs/{page.name})" in text, f"README.md does not index docs/{page.name}"
    assert text.index("make reproduce") < text.index("## What the results say")


# ---------------------------------------------------------------- numbers

def rnd(value, digits: int) -> str:
    """A CSV value rounded half up, as the tables print it."""
    q = Decimal(1).scaleb(-digits)
    return str(Decimal(str(value)).quantize(q, rounding=ROUND_HALF_UP))


def rows(path: str) -> list[dict]:
    with open(ROOT / path, newline="") as fh:
        return list(csv.DictReader(fh))


def one(rows_: list[dict], **match) -> dict:
    found = [r for r in rows_ if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, len(found))
    return found[0]


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def gpu_h200_claims() -> list[str]:
    cells = rows("results/gpu-h200/memory_table.csv")
    peak = {r["method"]: float(r["peak_GiB"]) for r in cells if r["model"] == "llama-2-7b"}
    worst = max(abs(float(r["peak_GiB"]) / float(r["predicted_peak_GiB"]) - 1) for r in cells if r["status"] == "ok")
    measured = rows("results/gpu-h200/memory.csv")
    shapes = {(r["batch_size"], r["seq_len"], r["attn_implementation"], r["precision"]) for r in measured}
    assert shapes == {("1", "1024", "eager", "bf16")}, shapes
    return [f"bf16, batch {1} x {1024}, eager attention",
            f"LISA E+H+2L peaks at {rnd(peak['lisa-e-h-2l'], 1)} GiB on LLaMA-2-7B against "
            f"{rnd(peak['lora-r128'], 1)} GiB for LoRA r128 and {rnd(peak['full'], 1)} GiB for full fine-tuning",
            f"every measured peak lies within {rnd(worst * 100, 1)}% of the suite's analytic memory model"]


def gpu_recipe_claims() -> list[str]:
    runs = rows("results/gpu-recipe/recipe.csv")
    ratios = [float(r["measured_over_predicted"]) for r in runs]
    assert max(abs(x - 1) for x in ratios) < 0.01 + 0.0005
    pure = [r for r in runs if r["precision"] == "bf16"]
    kept = [r for r in runs if r["precision"] in ("bf16-mixed", "bf16-master", "bf16-kahan")]
    assert len(pure) == 1 and pure[0]["model"] == "llama-2-7b" and pure[0]["launcher"] == "fsdp"
    assert {r["model"] for r in kept} == {"tinyllama-1.1b"}
    assert max(abs(float(r["lost_update_first"])) for r in kept) < 0.002
    count = {10: "Ten"}[len(runs)]
    return [f"{count} training runs on the same H200",
            f"peaked within 1% of `lisa-bench plan`'s prediction ({rnd(min(ratios), 3)} to {rnd(max(ratios), 3)})",
            f"lost {rnd(float(pure[0]['lost_update_first']) * 100, 0)}% of the first step's update",
            "lost under 0.2%"]


def verdict_cells() -> dict[tuple[str, str], str]:
    """(protocol, precision) -> 'LISA / LoRA' for LLaMA-2-7B on one GPU, from results/plan/verdict.csv."""
    out = {}
    for r in rows("results/plan/verdict.csv"):
        if r["model"] != "Llama-2-7b-hf" or r["launcher"] != "single x 1":
            continue
        proto = "paper" if r["protocol"].startswith("paper") else "practical"
        out.setdefault((proto, r["precision"]), {})[r["experiment"]] = rnd(r["peak_GiB"], 1)
    return {k: f"{v['lisa-e-h-2l']} / {v['lora-r128']}" for k, v in out.items()}


def check_verdict_table(text: str) -> int:
    cells = verdict_cells()
    checked = 0
    for line in text.split("\n"):
        if line.startswith("| paper protocol") or line.startswith("| practical"):
            proto = "paper" if line.startswith("| paper") else "practical"
            got = [c.strip() for c in line.strip("|").split("|")][1:]
            want = [cells[(proto, p)] for p in ("fp32", "bf16", "bf16-mixed", "bf16-master", "bf16-kahan")]
            assert got == want, (proto, got, want)
            checked += 1
    return checked


def cpu_claims_claims() -> list[str]:
    train = rows("results/cpu-claims/tables/training.csv")
    lm = rows("results/cpu-claims/tables/lm_eval.csv")
    em = "synthetic_qa/exact_match (0-shot, chat)"
    state = {e: rnd(one(train, experiment=e)["optimizer_state_MiB"], 1) for e in ("lisa-e-h-2l", "lora-r128", "full")}
    match = {e: rnd(one(lm, experiment=e)[em], 3) for e in ("lisa-e-h-2l", "lora-r128", "full")}
    study = yaml.safe_load((ROOT / "config/cpu-claims.yaml").read_text())
    seeds = {r["seeds"] for r in train}
    assert seeds == {str(len(study["seeds"]))}
    return [f"SmolLM2-135M, {study['training']['max_steps']} steps, {len(study['seeds'])} seeds",
            f"LISA E+H+2L holds {state['lisa-e-h-2l']} MiB of optimizer state against {state['lora-r128']} for "
            f"LoRA r128 and {state['full']} for full fine-tuning",
            f"its exact match is {match['lisa-e-h-2l']} against LoRA's {match['lora-r128']} and full fine-tuning's "
            f"{match['full']}"]


def cpu_budget_claims() -> list[str]:
    train = rows("results/cpu-budget/tables/training.csv")
    study = yaml.safe_load((ROOT / "config/cpu-budget.yaml").read_text())
    loss = {e: rnd(one(train, experiment=e)["eval_loss"], 3)
            for e in ("lisa-e-h-2l", "lora-r128", "full", "lisa-e-h-2l-cover")}
    assert one(train, experiment="lisa-e-h-2l-cover")["blocks_never_trained"] in ("0", "0.0")
    # the count the README gives is that of the three experiments the question is about; the config's
    # experiment_seeds gives the cover variant and LoRA+E+H fewer, and training.csv must say so
    seeds = {one(train, experiment=e)["seeds"] for e in ("lisa-e-h-2l", "lora-r128", "full")}
    assert seeds == {str(len(study["seeds"]))}
    for exp, own in study.get("experiment_seeds", {}).items():
        assert one(train, experiment=exp)["seeds"] == str(len(own))
    count = {"1": "one seed", "2": "2 seeds"}[seeds.pop()]
    claims = yaml.safe_load((ROOT / "config/cpu-claims.yaml").read_text())
    times = study["training"]["max_steps"] // claims["training"]["max_steps"]
    assert times * claims["training"]["max_steps"] == study["training"]["max_steps"]
    return [f"Quality with {times} times the budget", f"at {study['training']['max_steps']} steps",
            f"LISA E+H+2L ends at a held-out loss of {loss['lisa-e-h-2l']} against LoRA r128's {loss['lora-r128']} "
            f"and full fine-tuning's {loss['full']}",
            f"at {loss['lisa-e-h-2l-cover']}", f"({count};"]


def cpu_ablations_claims() -> list[str]:
    train = rows("results/cpu-ablations/tables/training.csv")
    comp = rows("results/cpu-ablations/tables/comparisons.csv")
    study = yaml.safe_load((ROOT / "config/cpu-ablations.yaml").read_text())
    loss = {e: rnd(one(train, experiment=e)["eval_loss"], 3) for e in ("lisa-e-h-2l-k13", "lisa-e-h-2l-k122", "lisa-e-h-8l")}
    em = one(comp, task_metric="synthetic_qa/exact_match", experiment="lisa-e-h-8l", baseline="lisa-e-h-2l-k13")
    assert float(em["ci_low"]) > 0  # "question by question": the paired interval excludes zero
    seeds = {r["seeds"] for r in train}
    assert seeds == {str(len(study["seeds"]))}
    def options(exp: str) -> dict:  # the experiment file's method options under the study's overrides
        own = yaml.safe_load((ROOT / f"experiments/{exp}.yaml").read_text())["method_options"]
        return {**own, **study["experiment_overrides"].get(exp, {}).get("method_options", {})}
    k = [options(f"lisa-e-h-2l-k{n}") for n in (122, 25, 13)]
    g = [options(e) for e in ("lisa-e-h-2l-k13", "lisa-e-h-4l", "lisa-e-h-8l")]
    assert {o["gamma"] for o in k} == {2} and {o["interval"] for o in g} == {13}
    return [f"for {study['training']['max_steps']} steps", f"{len(study['seeds'])} seeds",
            f"switching every {k[0]['interval']}, {k[1]['interval']} or {k[2]['interval']} steps with 2 layers, and "
            f"{g[0]['gamma']}, {g[1]['gamma']} or {g[2]['gamma']} layers every 13 steps",
            f"held-out loss of {loss['lisa-e-h-2l-k13']} against {loss['lisa-e-h-2l-k122']} without switching",
            f"8 layers at {loss['lisa-e-h-8l']}", f"exact match +{rnd(em['difference'], 3)} question by question"]


def default_claims() -> list[str]:
    stages = (ROOT / "results/default/stage_times.md").read_text()
    wall = re.search(r"wall time of this `lisa-bench reproduce`: ([\d.]+) min", stages).group(1)
    python = re.search(r'requires-python = ">=([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    return [f"the pipeline takes {wall} minutes", f"Python >= {python}"]


def tiny_claims() -> list[str]:
    """The first look's wall time, as config/tiny.yaml's comment records its measurement."""
    wall = re.search(r"^# Measured: ([\d.]+) minutes", (ROOT / "config/tiny.yaml").read_text(), re.M).group(1)
    return [f"in {wall} minutes on this project's 2-core machine"]


# Numbers in the README's prose that no results file holds, with where they come from.
NOT_FROM_RESULTS = {
    "2024": "the paper's venue (NeurIPS 2024)",
    "2403.17919": "the paper's arXiv id",
    "15": "`make test`'s time from a clean clone (15 min 2 s, at 985af41; measured by hand, docs/pipeline.md)",
    "2": "the same measurement's seconds",
    "10": "the project's aim for make test, in minutes (the developers' brief)",
}


def test_readme_numbers_come_from_committed_files():
    text = README.read_text()
    body = flat(text)
    claims = gpu_h200_claims() + gpu_recipe_claims() + cpu_claims_claims() + cpu_budget_claims() + cpu_ablations_claims() + default_claims() + tiny_claims()
    for claim in claims:
        assert claim in body, f"README.md does not say {claim!r} (recomputed from results/)"
    assert check_verdict_table(text) == 2
    # every number in the prose is one of the checked claims' numbers, or listed with its source
    checked = set(NOT_FROM_RESULTS)
    number = r"(?<![\w.\-/+=])\d+(?:\.\d+)?(?![\w\-/+]|\.\d)"
    for claim in claims:
        checked |= set(re.findall(number, claim))
    table = [ln for ln in text.split("\n") if ln.startswith("|")]
    verdict = [ln for ln in table if ln.startswith(("| paper protocol", "| practical", "| LLaMA-2-7B, 1 x"))]
    for ln in verdict:
        checked |= set(re.findall(number, ln))
    words = prose(text)
    words = re.sub(r"`[^`\n]*`", "", words)                      # code: names and commands
    words = re.sub(r"\]\([^)]*\)", "]", words)                   # link targets
    words = "\n".join(ln for ln in words.split("\n") if not ln.startswith("|") or ln in verdict)
    unchecked = sorted(set(re.findall(number, words)) - checked)
    assert not unchecked, f"numbers in README.md that no test recomputes: {unchecked}"


def test_docs_quote_results_as_the_files_say():
    memory = (ROOT / "docs/memory.md").read_text()
    # the verdict table, cell by cell
    assert check_verdict_table(memory) == 2
    # the will-it-fit tables, verbatim from results/plan/will_it_fit.md
    fit = (ROOT / "results/plan/will_it_fit.md").read_text()
    quoted = re.findall(r"^\*\*[^\n]*\(one GPU; 0 = does not fit\)\n\n(?:\|[^\n]*\n)+", memory, flags=re.M)
    assert len(quoted) == 2
    for table in quoted:
        assert table.strip() in fit, table[:200]
    # the GPU figures quoted in memory.md and training.md
    lisa, lora, full = (rnd(one(rows("results/gpu-h200/memory_table.csv"), model="llama-2-7b", method=m)["peak_GiB"], 1)
                        for m in ("lisa-e-h-2l", "lora-r128", "full"))
    assert f"LISA E+H+2L {lisa} GiB vs LoRA r128 {lora} GiB vs full {full} GiB" in flat(memory)
    training = flat((ROOT / "docs/training.md").read_text())
    ratios = [float(r["measured_over_predicted"]) for r in rows("results/gpu-recipe/recipe.csv")]
    assert f"({rnd(min(ratios), 3)} to {rnd(max(ratios), 3)})" in training
    pure = one(rows("results/gpu-recipe/recipe.csv"), precision="bf16")
    assert f"{rnd(float(pure['lost_update_first']) * 100, 0)}% lost by pure bf16 at the first step" in training


def test_cpu_claims_table_as_the_files_say():
    text = (ROOT / "docs/results.md").read_text()
    train = rows("results/cpu-claims/tables/training.csv")
    lm = rows("results/cpu-claims/tables/lm_eval.csv")
    comp = rows("results/cpu-claims/tables/comparisons.csv")
    em = "synthetic_qa/exact_match (0-shot, chat)"
    lines = [ln for ln in text.split("\n") if re.match(r"^\| (full|lora-r128|lisa-e-h-2l) \(", ln)]
    assert len(lines) == 3
    for ln in lines:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        exp = cells[0].split()[0]
        t, e = one(train, experiment=exp), one(lm, experiment=exp)
        assert cells[1:5] == [rnd(t["optimizer_state_MiB"], 1), rnd(t["peak_memory_MiB"], 0), rnd(t["eval_loss"], 3),
                              rnd(e[em], 3)], ln
        if exp != "lisa-e-h-2l":
            c = one(comp, task_metric="synthetic_qa/exact_match", experiment="lisa-e-h-2l", baseline=exp)
            assert cells[5] == f"{rnd(c['difference'], 3)} [{rnd(c['ci_low'], 3)}, {rnd(c['ci_high'], 3)}]", ln


def test_default_run_table_as_the_files_say():
    text = (ROOT / "results/default/README.md").read_text()
    train = rows("results/default/tables/training.csv")
    lm = rows("results/default/tables/lm_eval.csv")
    mt = rows("results/default/tables/mt_bench.csv")
    lines = [ln for ln in text.split("\n") if re.match(r"^\| (base \(no training\)|full|lora-r128|galore-r128|lisa-)", ln)]
    assert len(lines) == 6
    for ln in lines:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        exp = cells[0].split()[0]
        t, e, m = one(train, experiment=exp), one(lm, experiment=exp), one(mt, experiment=exp)
        want = [rnd(t["optimizer_state_MiB"], 1) if exp != "base" else "0", rnd(t["peak_memory_MiB"], 0),
                rnd(t["tokens_per_second"], 0) if t["tokens_per_second"] else "",
                rnd(t["loss_last"], 2) if t["loss_last"] else "", rnd(t["eval_loss"], 3),
                rnd(e["synthetic_qa/exact_match (0-shot, chat)"], 2), rnd(m["overall"], 2)]
        assert cells[1:] == want, (ln, want)


def study_summary(argv: list[str]) -> io.StringIO:
    """What scripts/study_summary.py prints for these arguments, run from the checkout's root."""
    spec = importlib.util.spec_from_file_location("study_summary", ROOT / "scripts/study_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out):
        assert module.main(argv) == 0
    return out


def test_cpu_budget_tables_are_printed_from_the_files():
    """results/cpu-budget/README.md's two tables are what scripts/study_summary.py prints from the committed
    tables (the command the README gives), row for row: no number in them was typed."""
    text = (ROOT / "results/cpu-budget/README.md").read_text()
    command = re.search(r"python scripts/study_summary\.py (results/cpu-budget(?:[^\n]*\\\n)*[^\n]*)", text)
    assert command, "the README names the command its tables come from"
    words = shlex.split(command.group(1).replace("\\\n", " "), comments=True)
    out = study_summary(words)
    printed = [ln for ln in out.getvalue().split("\n") if ln.startswith("| ") and not ln.startswith("| experiment")]
    assert len(printed) >= 10  # five experiments and their paired differences
    missing = [ln for ln in printed if ln not in text.split("\n")]
    assert not missing, missing


def _markdown_table(lines: list[str]) -> list[dict]:
    """The rows of a Markdown table (its header line first) as dicts by column name."""
    head = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip().strip("|").split("|")))) for ln in lines[2:]]


def test_cpu_ablations_tables_as_the_files_say():
    """results/cpu-ablations/README.md's tables keep their own layout (K and gamma columns); every cell they
    share with scripts/study_summary.py's output from the committed tables must read the same."""
    text = (ROOT / "results/cpu-ablations/README.md").read_text().split("\n")
    out = study_summary(["results/cpu-ablations", "--metric", "synthetic_qa/exact_match", "--metric", "synthetic_mc/acc"])
    main, comp = [block.split("\n") for block in out.getvalue().strip().split("\n\n")]
    want = {r["experiment"]: r for r in _markdown_table(main)}
    start = text.index(next(ln for ln in text if ln.startswith("| experiment | K | gamma |")))
    end = next(i for i in range(start, len(text)) if not text[i].startswith("|"))
    readme = _markdown_table(text[start:end])
    assert {r["experiment"] for r in readme} == set(want)
    shared = ["optimizer state MiB", "peak RSS MiB", "train s", "exact match", "mc acc", "seeds"]
    for row in readme:
        w = want[row["experiment"]]
        assert [row[c] for c in shared + ["held-out loss"]] == [w[c] for c in shared + ["final held-out loss"]], row
    pairs = {(r["experiment - baseline"], r["metric"]): r["difference [95% CI]"] for r in _markdown_table(comp)}
    start = text.index(next(ln for ln in text if ln.startswith("| experiment - lisa-e-h-2l-k13 |")))
    end = next(i for i in range(start, len(text)) if not text[i].startswith("|"))
    rows = _markdown_table(text[start:end])
    assert len(rows) == 4
    for row in rows:
        exp = row["experiment - lisa-e-h-2l-k13"]
        assert row["exact match [95% CI]"] == pairs[(f"{exp} - lisa-e-h-2l-k13", "synthetic_qa/exact_match")], row
        assert row["mc acc [95% CI]"] == pairs[(f"{exp} - lisa-e-h-2l-k13", "synthetic_mc/acc")], row
