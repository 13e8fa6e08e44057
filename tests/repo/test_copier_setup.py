""".copier/setup_project.py on a small tree: names replaced, outputs reset, and idempotent (copier
update replays it on the old revision, the new one and the project itself)."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import re
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

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


def run_with(module: ModuleType, root: Path, *extra: str, operation: str = "update") -> None:
    """main() with the answers of run(), some replaced (a later `--name=` wins)."""
    args = [
        f"--operation={operation}", "--project=churn", "--package=churn_pkg",
        "--description=Churn", "--data=data/churn.csv", "--target=left", f"--root={root}",
        *extra,
    ]  # fmt: skip
    assert module.main(args) == 0


def test_whole_names_only() -> None:
    rename = setup_module_from_path().rename
    text = (
        "import mlops_template.storage\nsrc/mlops_template/x\n"
        "image: ghcr.io/o/mlops-template:1\n"
        "s3://mlops-template-dvc/store\nmy_mlops_template\nmlops_templates\nx-mlops-template\n"
        "image: ${TOOLS_IMAGE:-mlops-template-tools:local}\n"
    )
    assert rename(text, "churn_pkg", "churn") == (
        "import churn_pkg.storage\nsrc/churn_pkg/x\nimage: ghcr.io/o/churn:1\n"
        "s3://churn-dvc/store\nmy_mlops_template\nmlops_templates\nx-mlops-template\n"
        "image: ${TOOLS_IMAGE:-churn-tools:local}\n"
    )
    # A new name holding the template's: renaming the renamed text changes nothing.
    once = rename(text, "mlops_template_fraud", "mlops-template-fraud")
    assert "import mlops_template_fraud.storage\n" in once
    assert "s3://mlops-template-fraud-dvc/store\n" in once
    assert rename(once, "mlops_template_fraud", "mlops-template-fraud") == once


def test_a_name_holding_the_templates_is_put_in_once(tmp_path: Path) -> None:
    """copier update replays the task on the project itself: no `_fraud_fraud`."""
    module = setup_module_from_path()
    root = template_tree(tmp_path)
    names = ("--project=mlops-template-fraud", "--package=mlops_template_fraud")
    run_with(module, root, *names)
    first = snapshot(root)
    run_with(module, root, *names)
    assert snapshot(root) == first
    assert first["src/mlops_template_fraud/__init__.py"] == b"from mlops_template_fraud import io\n"
    assert first["src/mlops_template_fraud/serve/app.py"] == b"NAME = 'mlops-template-fraud'\n"


def test_data_and_the_answers_file_are_never_rewritten(tmp_path: Path) -> None:
    module = setup_module_from_path()
    root = template_tree(tmp_path)
    mine = {
        "data/notes.json": '{"by": "mlops_template"}\n',
        "data/sub/table.parquet": "mlops-template",
        "tables/churn.csv": "team\nmlops-template\n",
        ".copier-answers.yml": "_src_path: gh:someone/mlops-template\n",
    }
    for name, text in mine.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    run_with(module, root)
    for name, text in mine.items():
        assert (root / name).read_text() == text, name


def test_values_are_quoted_for_yaml_and_toml(tmp_path: Path) -> None:
    """A path with ` #` or `: `, a description with quotes, `#` and a line break; twice."""
    module = setup_module_from_path()
    root = template_tree(tmp_path)
    data = "data/my table #2: final.csv"
    description = 'Churn "model" # v2\nsecond line: \\ and \x7f'
    for _ in range(2):
        run_with(module, root, f"--data={data}", f"--description={description}")
        params_text = (root / "params.yaml").read_text()
        assert yaml.safe_load(params_text)["data"]["source"] == data
        assert params_text.endswith(" # a file\n  contract: data/contract.yaml\n"), params_text
        assert "  # the table\n" in params_text
        pyproject = tomllib.loads((root / "pyproject.toml").read_text())
        assert pyproject["project"]["description"] == 'Churn "model" # v2 second line: \\ and \x7f'


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("--package=class", "is a Python keyword"),
        ("--package=tests", "tests' package"),
        ("--package=json", "standard library"),
        ("--package=sklearn", "import name of one of the project's dependencies"),
        ("--package=click", "import name of one of the project's dependencies"),  # uv.lock's
        ("--package=pkg\n", "not a lowercase Python identifier"),
        ("--project=click", "project_name 'click' is one of the project's dependencies"),
        ("--data=../shared/churn.csv", "leaves the project"),
        ("--data=data/raw.parquet", "which the pipeline writes"),
        ("--data=/elsewhere/train.parquet", "which the pipeline writes"),
        ("--data=./data/../data/contract.yaml", "leaves the project"),
    ],
)
def test_answers_refused_before_anything_changes(tmp_path: Path, answer: str, message: str) -> None:
    module = setup_module_from_path()
    root = template_tree(tmp_path)
    (root / "uv.lock").write_text(
        'version = 1\n\n[[package]]\nname = "click"\nversion = "8.1.7"\n\n'
        '[[package]]\nname = "mlops-template"\nversion = "0.1.0"\nsource = { editable = "." }\n'
    )
    before = snapshot(root)
    with pytest.raises(SystemExit, match=re.escape(message)):
        run_with(module, root, answer)
    assert snapshot(root) == before


def test_a_copied_table_never_replaces_one_of_the_templates(tmp_path: Path) -> None:
    """An absolute path is copied to data/<name>: refused when the template has that name
    (penguins.csv), unless it is the very same table."""
    module = setup_module_from_path()
    root = template_tree(tmp_path / "project")
    other = tmp_path / "mine" / "penguins.csv"
    other.parent.mkdir()
    other.write_text("x,y\n3,4\n")
    before = snapshot(root)
    with pytest.raises(SystemExit, match=r"data/penguins\.csv, which the template already has"):
        run_with(module, root, f"--data={other}", operation="copy")
    assert snapshot(root) == before
    # On an update the table is the project's own: nothing to copy, nothing refused.
    run_with(module, root, f"--data={other}")


def test_the_same_table_by_its_absolute_path_is_accepted(tmp_path: Path) -> None:
    module = setup_module_from_path()
    root = template_tree(tmp_path / "project")
    same = tmp_path / "penguins.csv"
    same.write_bytes((root / "data" / "penguins.csv").read_bytes())
    module.check_answers(
        root,
        argparse.Namespace(operation="copy", package="churn_pkg", project="churn", data=str(same)),
    )


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"package_name": "class"}, "a Python keyword"),
        ({"package_name": "tests"}, "tests is the package"),
        ({"package_name": "pandas"}, "pandas is a module the project imports"),
        ({"package_name": "yaml"}, "yaml is a module the project imports"),
        ({"package_name": "pkg\n"}, "a lowercase Python identifier"),  # `$` would accept it
        ({"project_name": "churn\n", "package_name": "churn"}, "lowercase letters, digits"),
    ],
)
def test_copier_yml_validators(tmp_path: Path, answers: dict[str, str], message: str) -> None:
    """copier.yml's questions (no tasks) in copier itself: refused before anything is copied."""
    copier = pytest.importorskip("copier")
    config = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())
    (tmp_path / "template").mkdir()
    (tmp_path / "template" / "copier.yml").write_text(
        yaml.safe_dump({k: v for k, v in config.items() if not k.startswith("_")})
    )
    copy = functools.partial(
        copier.run_copy, str(tmp_path / "template"), defaults=True, quiet=True, unsafe=True
    )
    copy(str(tmp_path / "good"), data={"project_name": "churn-model"})
    with pytest.raises(ValueError, match=re.escape(message)):
        copy(str(tmp_path / "bad"), data={"project_name": "churn-model", **answers})


def make(*args: str) -> str:
    """A Makefile target with `mlops` replaced by printing its arguments, one a line."""
    # Run from `make test-fast`, make's own MAKEFLAGS and MAKELEVEL would make this inner
    # make print "Entering directory" lines: it must run as if called from a shell.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "-o", "install", "-C", str(REPO_ROOT),
         "RUN=printf '%s\\n'", *args],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    return done.stdout


def test_make_init_schema_replaces_a_contract_only_with_force() -> None:
    assert make("init-schema", "DATA=data/x.csv", "TARGET=y").split("\n")[1:-1] == [
        "contract", "init", "--data", "data/x.csv", "--target", "y",
    ]  # fmt: skip
    shown = make("init-schema", "DATA=data/x.csv", "TARGET=y", "IGNORE=id * leak", "FORCE=1")
    assert shown.endswith("--ignore\nid\n--ignore\n*\n--ignore\nleak\n--force\n"), shown
    assert "--force" not in make("init-schema", "DATA=data/x.csv", "TARGET=y", "FORCE=0")


def test_make_traffic_passes_shifts_unglobbed() -> None:
    shown = make("traffic", "SHIFT=bill_* island=Dream", "REQUESTS=5")
    assert (
        shown == "mlops\nmonitor\ntraffic\n--requests\n5\n--shift\nbill_*\n--shift\nisland=Dream\n"
    )
    assert make("traffic") == "mlops\nmonitor\ntraffic\n--requests\n200\n"
