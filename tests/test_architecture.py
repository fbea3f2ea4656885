"""The package's shape: an import graph without cycles, and no code outside lisa_bench/methods/ that
branches on a method's name (methods own what is theirs)."""

import ast
import re
from pathlib import Path

import lisa_bench
from lisa_bench.methods import METHODS, load_all

PACKAGE = Path(lisa_bench.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the lisa_bench modules it imports, at module level or inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def test_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 30
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_method_name_outside_the_methods_package():
    """A registered method's name appears as a string literal only in its own package (methods/), in
    defaults that name an experiment or method for the user, or in help text."""
    load_all()
    names = set(METHODS)
    allowed = {  # file -> names it may mention: defaults a user sees, not branches
        "config.py": {"lisa"},  # TrainConfig's default method
        "cli.py": {"lisa"},  # the same default, in --method's fallback
        "memory/bench.py": {"full"},  # --speed-baseline's default experiment
        "memory/tables.py": {"full"},  # the same default, of finish_table
        "memory/cells.py": {"full"},  # PAPER_EXPERIMENTS: the paper's memory table, --methods' default
        "memory/collect.py": {"full"},
        "reporting/report.py": {"full"},  # the comparisons' default baselines (experiment names)
        "docs_results.py": {"full"},  # FULL: the committed studies' experiment name, keying their rows
        "study.py": {"full"},  # MEMORY_METHODS: memory.methods' default experiments (was rules/common.smk's)
        "provenance.py": {"badam"},  # the package's name, in the list of versions recorded
    }
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith("methods/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                if node.value not in allowed.get(rel, set()):
                    found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, found


def test_experiments_state_only_what_differs_from_the_defaults():
    import yaml

    root = PACKAGE.parent / "experiments"
    defaults = yaml.safe_load((root / "_defaults.yaml").read_text())
    for path in root.glob("*.yaml"):
        if path.name.startswith("_"):
            continue
        data = yaml.safe_load(path.read_text())
        same = [k for k, v in data.items() if k in defaults and defaults[k] == v]
        assert not same, f"{path.name} repeats defaults: {same}"
        assert re.fullmatch(r"[a-z0-9-]+", path.stem)
