"""dvc.yaml declares every module a stage's code runs, so editing one re-runs the stage.

DVC only knows the files a stage lists under `deps:`. A stage module that imports a helper
the stage does not list would keep serving stale outputs after that helper changed: `dvc
repro` would call the pipeline up to date. This test follows each stage's imports inside the
package (including imports inside functions; not those under `if TYPE_CHECKING:`, which never
run) and compares them with the stage's declared source files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

PACKAGE = "mlops_template"
SRC = REPO_ROOT / "src"
# Imported by stages but unable to change a stage's outputs, so not declared: listing them
# would re-run the pipeline for nothing.
NOT_OUTPUTS = {
    "src/mlops_template/stages/__init__.py": "the package marker",
    "src/mlops_template/__init__.py": (
        "the package marker and its exception type: a stage that raises writes no output"
    ),
    "src/mlops_template/io/tracking.py": "MLflow logging: runs are recorded there, not in outs",
}


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def _imported(path: Path) -> set[Path]:
    """The package's modules `path` imports, wherever in the file, except type-only ones."""
    found: set[Path] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text())]
    while pending:
        node = pending.pop()
        if _type_checking_only(node):
            continue
        pending.extend(ast.iter_child_nodes(node))
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import module` names a module; `from module import name` does not.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            if name.split(".")[0] == PACKAGE and (module := _module_file(name)) is not None:
                found.add(module)
    return found


def runs(stage_module: Path) -> set[str]:
    """Every package file the stage's code can run: its imports, followed transitively."""
    seen: set[Path] = set()
    pending = [stage_module]
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending.extend(_imported(path))
    return {
        str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
        for path in seen
    }


def _hands_names_on(path: Path) -> bool:
    """A package's __init__.py that only documents and re-exports (a docstring, imports,
    `__all__`): it runs no code of its own, so it cannot change a stage's outputs."""
    if path.name != "__init__.py":
        return False
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom | ast.Import):
            continue
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]:
            continue
        return False
    return True


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def _declared(stage: dict) -> set[str]:
    """The stage's source files; a package folder stands for every module in it (.dvcignore
    leaves its __pycache__ out of the hash)."""
    declared: set[str] = set()
    for dep in stage.get("deps", []):
        if dep.startswith("src/") and (REPO_ROOT / dep).is_dir():
            declared |= {
                str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / dep).rglob("*.py")
            }
        elif dep.startswith("src/"):
            declared.add(dep)
    return declared


def test_every_stage_declares_the_modules_its_code_runs() -> None:
    missing = {}
    for name, stage in _stages().items():
        module = SRC / PACKAGE / "stages" / f"{name}.py"
        undeclared = runs(module) - _declared(stage) - set(NOT_OUTPUTS)
        undeclared = {path for path in undeclared if not _hands_names_on(REPO_ROOT / path)}
        if undeclared:
            missing[name] = sorted(undeclared)
    assert missing == {}, "add these to the stage's deps in dvc.yaml"


def test_no_stage_declares_a_module_its_code_does_not_run() -> None:
    """A stale dependency re-runs the stage for nothing (and hides a real one)."""
    extra = {}
    for name, stage in _stages().items():
        module = SRC / PACKAGE / "stages" / f"{name}.py"
        unused = _declared(stage) - runs(module)
        if unused:
            extra[name] = sorted(unused)
    assert extra == {}


def test_each_stage_runs_its_own_module_through_the_cli() -> None:
    """One hop from dvc.yaml to the code: `mlops stage <stage>` is stages/<stage>.py."""
    for name, stage in _stages().items():
        assert stage["cmd"] == f"mlops stage {name}", name
        assert (SRC / PACKAGE / "stages" / f"{name}.py").exists(), name


def test_an_undeclared_import_is_found(tmp_path: Path) -> None:
    """The check can fail: a module importing a helper the stage does not list."""
    helper_import = "from mlops_template.evaluation import plots\n"
    stage = tmp_path / "stage.py"
    stage.write_text(helper_import)
    assert "src/mlops_template/evaluation/plots.py" in runs(stage) - {str(stage)}
    stage.write_text("if TYPE_CHECKING:\n    " + helper_import)
    assert "src/mlops_template/evaluation/plots.py" not in runs(stage)


def test_a_package_folder_dependency_leaves_out_its_bytecode() -> None:
    """A folder dep hashes every file in it: Python's __pycache__ must be in .dvcignore, or a
    stage would re-run whenever another interpreter imported the package."""
    folders = {
        dep
        for stage in _stages().values()
        for dep in stage.get("deps", [])
        if dep.startswith("src/") and (REPO_ROOT / dep).is_dir()
    }
    ignored = (REPO_ROOT / ".dvcignore").read_text().splitlines()
    assert not folders or "__pycache__/" in ignored
