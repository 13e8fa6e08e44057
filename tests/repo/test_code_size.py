"""No function in src/ over 60 lines, so each reads top to bottom in one sitting; the package's
top stays a table of contents (at most 12 entries) and its imports run one way (no circle).

A module holds one idea, whatever its length: there is no cap on module size (a cap made
families such as report / report_check / report_explain, split by size rather than by idea).

A function (or method) is counted from its `def` line to the last line of its body,
docstring, comments and blank lines included; its decorators are not counted. A nested
function counts within its parent and again on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
MAX_FUNCTION_LINES = 60
MAX_TOP_ENTRIES = 12
PACKAGE = SRC / "mlops_template"


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def function_lengths(source: str) -> dict[str, int]:
    """Each function's qualified name (Class.method, outer.inner) and its length in lines."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[name] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def test_no_function_is_longer_than_the_limit() -> None:
    too_long = [
        f"{_name(path)}: {name} ({lines} lines)"
        for path in _modules()
        for name, lines in function_lengths(path.read_text(encoding="utf-8")).items()
        if lines > MAX_FUNCTION_LINES
    ]
    assert not too_long, f"over {MAX_FUNCTION_LINES} lines, split:\n" + "\n".join(too_long)


def test_the_top_of_the_package_is_a_table_of_contents() -> None:
    entries = sorted(
        path.name
        for path in PACKAGE.iterdir()
        if path.name != "__pycache__" and (path.suffix == ".py" or path.is_dir())
    )
    assert len(entries) <= MAX_TOP_ENTRIES, entries
    for folder in (path for path in PACKAGE.iterdir() if path.is_dir()):
        if folder.name != "__pycache__":
            assert (folder / "__init__.py").is_file(), f"{folder.name}/ is not a package"


def imports(path: Path) -> set[str]:
    """The package's modules `path` imports, type-only imports included (a circle of types
    is still a circle for the reader)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                found.add(_existing(f"{node.module}.{alias.name}") or _existing(node.module))
        elif isinstance(node, ast.Import):
            found |= {_existing(alias.name) for alias in node.names}
    return {name for name in found if name}


def _existing(dotted: str) -> str:
    """The package module `dotted` names (a module, or a package's __init__), else ""."""
    if not dotted.startswith("mlops_template"):
        return ""
    base = SRC.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(SRC).as_posix()
    return ""


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import graph's strongly connected parts of two modules or more (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while (top := stack.pop()) != node:
                part.append(top)
            if part:
                found.append(sorted([node, *part]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph = {_name(path): imports(path) - {_name(path)} for path in _modules()}
    assert circles(graph) == []


def test_a_circle_is_found() -> None:
    """The check can fail."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
