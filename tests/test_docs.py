"""The README and the manual in docs/: every command, link and quoted number is checked.

Commands: every ```bash / ```sh / ```console block of README.md, docs/*.md and the results READMEs the manual
moved text into is read; each `lisa-bench ...` command (also `.venv/bin/lisa-bench`, `python -m lisa_bench.cli`,
`torchrun ... -m lisa_bench.cli`, `mt-bench ...`) must name a subcommand that exists and use only flags that
subcommand defines, spelled out (argparse would accept an abbreviation; the docs should not rely on it), and
parse with the suite's own parser; `python scripts/X.py` must exist and use only the script's flags; scripts,
configs, profiles and experiments named in a command must exist. A command that needs a GPU, the hub, an API key
or a server says so with a trailing `# needs: gpu` (or `hub`, `key`, `server`, `slurm`, comma-separated), or its block's
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
NEEDS = {"gpu", "hub", "key", "server", "slurm"}


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
            if k + 1 < len(tokens) and tokens[k + 1] == "lisa_bench.training.launch" and "--" in tokens:
                from lisa_bench.training.launch import main as launch  # its own flags, then `--` and the suite's

                with pytest.raises(SystemExit) as exc, contextlib.redirect_stdout(io.StringIO()):
                    launch([*tokens[k + 2:tokens.index("--")], "--help"])
                assert exc.value.code == 0
                return tokens[tokens.index("--") + 1:]
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
    assert len([ln for ln in text.split("\n") if not ln.startswith("<!-- ")]) <= 160  # markers are not read
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


# Numbers in the README's prose outside its generated blocks, with where they come from.
NOT_FROM_RESULTS = {
    "2024": "the paper's venue (NeurIPS 2024)",
    "2403.17919": "the paper's arXiv id",
}


def test_the_generated_blocks_are_what_the_results_say():
    """Every `<!-- from-results: NAME -->` block of README.md and docs/*.md is what `lisa-bench docs` writes from
    the committed results (lisa_bench/docs_results.py): regenerating changes nothing."""
    from lisa_bench.docs_results import update

    assert update(ROOT, check=True) == [], "run `.venv/bin/lisa-bench docs` after changing results/"
    text = README.read_text()
    for name in ("first-look", "default-run", "make-test", "gpu-h200", "gpu-recipe", "verdict", "cpu-claims",
                 "cpu-budget", "cpu-ablations"):
        assert f"<!-- from-results: {name} -->" in text, name


def test_a_changed_result_changes_its_block(tmp_path):
    """The check can fail: a rerun whose LISA peak differs rewrites the README's memory paragraph, and a block no
    renderer knows is refused."""
    import shutil

    from lisa_bench.docs_results import update
    from lisa_bench.errors import BadInput

    for item in ("README.md", "docs", "results", "config", "experiments", "pyproject.toml"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, tmp_path / item)
    table = tmp_path / "results/gpu-h200/memory_table.csv"
    lines = table.read_text().split("\n")
    k = next(i for i, ln in enumerate(lines) if ln.startswith("llama-2-7b,") and ",lisa-e-h-2l," in ln)
    head = lines[0].split(",")
    cells = lines[k].split(",")
    cells[head.index("peak_GiB")] = "29.5"
    lines[k] = ",".join(cells)
    table.write_text("\n".join(lines))
    assert update(tmp_path, check=True) == ["README.md"]
    update(tmp_path)
    assert "LISA E+H+2L peaks at 29.5 GiB" in flat((tmp_path / "README.md").read_text())
    (tmp_path / "docs" / "x.md").write_text("<!-- from-results: nope -->\nx\n<!-- /from-results -->\n")
    with pytest.raises(BadInput, match="unknown results block 'nope'"):
        update(tmp_path, check=True)


def _outside_blocks(text: str) -> str:
    return re.sub(r"<!-- from-results: [\w-]+ -->\n.*?<!-- /from-results -->", "", text, flags=re.S)


def test_readme_numbers_come_from_committed_files():
    """Every number in the README's prose is in a generated block, or listed with its source."""
    number = r"(?<![\w.\-/+=])\d+(?:\.\d+)?(?![\w\-/+]|\.\d)"
    words = prose(_outside_blocks(README.read_text()))
    words = re.sub(r"`[^`\n]*`", "", words)                      # code: names and commands
    words = re.sub(r"\]\([^)]*\)", "]", words)                   # link targets
    words = "\n".join(ln for ln in words.split("\n") if not ln.startswith("|"))
    unchecked = sorted(set(re.findall(number, words)) - set(NOT_FROM_RESULTS))
    assert not unchecked, f"numbers in README.md outside its generated blocks: {unchecked}"


def test_docs_quote_results_as_the_files_say():
    memory = (ROOT / "docs/memory.md").read_text()
    for name in ("will-it-fit", "verdict-table"):  # generated (the test above)
        assert f"<!-- from-results: {name} -->" in memory
    assert "<!-- from-results: cpu-claims-table -->" in (ROOT / "docs/results.md").read_text()
    # the GPU figures quoted in memory.md and training.md
    lisa, lora, full = (rnd(one(rows("results/gpu-h200/memory_table.csv"), model="llama-2-7b", method=m)["peak_GiB"], 1)
                        for m in ("lisa-e-h-2l", "lora-r128", "full"))
    assert f"LISA E+H+2L {lisa} GiB vs LoRA r128 {lora} GiB vs full {full} GiB" in flat(memory)
    training = flat((ROOT / "docs/training.md").read_text())
    ratios = [float(r["measured_over_predicted"]) for r in rows("results/gpu-recipe/recipe.csv")]
    assert f"({rnd(min(ratios), 3)} to {rnd(max(ratios), 3)})" in training
    pure = one(rows("results/gpu-recipe/recipe.csv"), precision="bf16")
    assert f"{rnd(float(pure['lost_update_first']) * 100, 0)}% lost by pure bf16 at the first step" in training


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
