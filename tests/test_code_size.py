"""No function in src/ over 60 lines, no module over 400: each stays readable top to bottom.

A function (or method) is counted from its `def` line to the last line of its body,
docstring, comments and blank lines included; its decorators are not counted. A nested
function counts within its parent and again on its own. A module is counted in lines of text.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


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


def test_no_module_is_longer_than_the_limit() -> None:
    too_long = [
        f"{_name(path)} ({lines} lines)"
        for path in _modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not too_long, f"over {MAX_MODULE_LINES} lines, split:\n" + "\n".join(too_long)


def test_a_function_is_counted_from_def_to_its_last_line() -> None:
    """Decorators are left out; methods and nested functions are found by qualified name."""
    body = "".join(f"        x{i} = {i}\n" for i in range(3))
    source = f"class C:\n    @property\n    @cache\n    def m(self):\n{body}\n        return 1\n"
    source += "def outer():\n    def inner():\n        pass\n    return inner\n"
    assert function_lengths(source) == {"C.m": 6, "outer": 4, "outer.inner": 2}
