"""The shape of the code: imports point one way, built-in evaluators are plugins like any other,
modules hold one job and functions stay short enough to read whole."""

from __future__ import annotations

import ast
from pathlib import Path

from cgbench.plugins import discover

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cgbench", "evaluators")
LONGEST_FUNCTION = 80  # lines, decorators excluded
LONGEST_MODULE = 400  # lines
CORE = ("cgbench.protocol", "cgbench.data", "cgbench.models", "cgbench.confusion", "cgbench.plugins",
        "cgbench.errors", "cgbench.timing")
"""What the evaluators may use of cgbench: the paper's vocabulary, labels and networks, the
confusion arithmetic, the plugin interface, the errors a user can meet and the timers."""


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules ``module`` imports, anywhere in the file (inside functions too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {m: _imports(p, m, known) for m, p in modules.items()}
    # A package's __init__ imports of its own submodules are how packages re-export; an import of
    # the package from inside it is not a cycle of the code's arrows.
    for m in graph:
        graph[m] = {d for d in graph[m] if not (m.startswith(d + ".") and (ROOT / Path(*d.split("."))).is_dir())}
    return graph


def test_no_import_cycles_even_through_imports_inside_functions():
    assert _cycles(_graph()) == []


def test_the_data_way_points_one_direction():
    """data → models → methods → training → tracking; scoring → report: nothing upstream imports
    what comes after it."""
    graph = _graph()
    downstream = {
        "cgbench.data": ("cgbench.models", "cgbench.methods", "cgbench.training", "cgbench.scoring", "cgbench.report",
                         "cgbench.tracking"),
        "cgbench.models": ("cgbench.methods", "cgbench.training", "cgbench.scoring", "cgbench.report",
                           "cgbench.tracking"),
        "cgbench.methods": ("cgbench.training", "cgbench.scoring", "cgbench.report", "cgbench.tracking"),
        "cgbench.scoring": ("cgbench.report", "cgbench.training", "cgbench.sweep", "cgbench.cli"),
    }
    wrong = [(m, d) for m, deps in graph.items() for d in deps for up, downs in downstream.items()
             if (m == up or m.startswith(up + ".")) and any(d == x or d.startswith(x + ".") for x in downs)]
    assert wrong == []


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_cgbench_never_imports_the_evaluators_it_finds_through_entry_points():
    assert {"fcn", "seg", "fid", "kid", "fd-fcn"} <= set(discover())
    wrong = sorted((m, d) for m, deps in _graph().items() if _within(m, ("cgbench",))
                   for d in deps if _within(d, ("evaluators",)))
    assert wrong == []


def test_evaluators_use_only_cgbench_core():
    wrong = sorted((m, d) for m, deps in _graph().items() if _within(m, ("evaluators",))
                   for d in deps if _within(d, ("cgbench",)) and not _within(d, CORE))
    assert wrong == []


def test_the_core_uses_nothing_else_of_cgbench():
    """The core is a floor the evaluators stand on: it imports only itself."""
    wrong = sorted((m, d) for m, deps in _graph().items() if _within(m, CORE)
                   for d in deps if not _within(d, CORE) and d != "cgbench")
    assert wrong == []


def test_every_module_holds_one_job_in_at_most_400_lines():
    long = [f"{path.relative_to(ROOT)} ({n} lines)" for path in _modules().values()
            if (n := len(path.read_text().splitlines())) > LONGEST_MODULE]
    assert long == []


def test_every_function_is_short_enough_to_read_whole():
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
