""".copier/setup_project.py on a small tree: names replaced, outputs reset, and idempotent (copier
update replays it on the old revision, the new one and the project itself)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO_ROOT

PARAMS = """data:
  # the table
  source: data/penguins.csv # a file
  contract: data/contract.yaml
"""


def setup_module_from_path() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "setup_project", REPO_ROOT / ".copier" / "setup_project.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template_tree(root: Path) -> Path:
    files = {
        "src/mlops_template/__init__.py": "from mlops_template import io\n",
        "src/mlops_template/serve/app.py": "NAME = 'mlops-template'\n",
        "pyproject.toml": '[project]\nname = "mlops-template"\ndescription = "old"\n',
        "params.yaml": PARAMS,
        "data/penguins.csv": "a,b\n1,2\n",
        "dvc.lock": "schema: '2.0'\n",
        "reports/metrics.json": "{}\n",
        "reports/plots/roc.json": "{}\n",
        "models/model.joblib.sha256": "abc  model.joblib\n",
        "data/blob.bin": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "data" / "blob.bin").write_bytes(b"\0mlops_template")
    return root


def run(module: ModuleType, root: Path) -> None:
    args = [
        "--operation=update", "--project=churn", "--package=churn_pkg",
        '--description=Churn "model"', "--data=/elsewhere/churn.csv", "--target=left",
        f"--root={root}",
    ]  # fmt: skip
    assert module.main(args) == 0


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_names_outputs_and_idempotence(tmp_path: Path) -> None:
    module = setup_module_from_path()
    root = template_tree(tmp_path)
    run(module, root)
    first = snapshot(root)
    run(module, root)
    assert snapshot(root) == first

    assert sorted(first) == [
        "data/blob.bin",
        "params.yaml",
        "pyproject.toml",
        "src/churn_pkg/__init__.py",
        "src/churn_pkg/serve/app.py",
    ]
    assert first["src/churn_pkg/__init__.py"] == b"from churn_pkg import io\n"
    assert first["src/churn_pkg/serve/app.py"] == b"NAME = 'churn'\n"
    assert first["data/blob.bin"] == b"\0mlops_template"  # binary: left alone
    pyproject = first["pyproject.toml"].decode()
    assert 'name = "churn"\ndescription = "Churn \\"model\\""\n' in pyproject
    # An absolute path is copied into data/ on a first copy; the comments stay.
    assert "  source: data/churn.csv # a file\n" in first["params.yaml"].decode()
    assert "  # the table\n" in first["params.yaml"].decode()


def test_an_update_over_the_project_merges_the_package(tmp_path: Path) -> None:
    """On update, copier writes the new src/mlops_template beside the project's renamed one."""
    module = setup_module_from_path()
    root = template_tree(tmp_path)
    run(module, root)
    (root / "src" / "churn_pkg" / "own.py").write_text("mine\n")
    (root / "src" / "mlops_template").mkdir()
    (root / "src" / "mlops_template" / "__init__.py").write_text("import mlops_template  # v2\n")
    run(module, root)
    assert not (root / "src" / "mlops_template").exists()
    assert (root / "src" / "churn_pkg" / "__init__.py").read_text() == "import churn_pkg  # v2\n"
    assert (root / "src" / "churn_pkg" / "own.py").read_text() == "mine\n"
