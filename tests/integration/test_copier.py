"""The copier template (copier.yml, .copier/setup_project.py): a new project under its own name,
on a regression table the template has never seen, passes its own fast suite, and `copier
update` brings a later template revision in.

The template is a throwaway git copy of this checkout, tagged (copier copies from tags). The
generated project's environment is installed by its own `make install` (the copy's task runs
it to write the contract) from uv's cache, offline: nothing is downloaded. The renamed project
is also the regression fork whose unchanged fast suite must pass (the binary fork's runs in
tests/integration/test_readme_byod.py, through the docs' `make test-fast`): one nested suite covers
both, on both of the machine's cores.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.integration.test_readme_byod import offline_env
from tests.support.processes import VENV_BIN
from tests.support.project import copy_repo, sh
from tests.support.tables import write_table

pytestmark = pytest.mark.slow

FAST_SUITE_SECONDS = 600
# Where `mlops_template` / `mlops-template` may still appear in a generated project: nowhere
# (the answers file names the template's path, which may hold the name: harmless).
ALLOWED_LEFTOVERS = {".copier-answers.yml"}


def copier(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sh(cwd, str(VENV_BIN / "copier"), *args, "--trust", "--defaults", env=offline_env())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a template repository, tagged v1.0.0."""
    root = copy_repo(tmp_path_factory.mktemp("template"))
    sh(root, "git", "tag", "v1.0.0")
    return root


def leftovers(project: Path) -> list[str]:
    """Files of the project (not its venv or git) that still name the template."""
    found = sh(
        project,
        "grep", "-rlI", "-e", "mlops_template", "-e", "mlops-template",
        "--exclude-dir=.git", "--exclude-dir=.venv", "--exclude-dir=.tools", ".",
        check=False,
    )  # fmt: skip
    names = {line.removeprefix("./") for line in found.stdout.splitlines()}
    names |= {str(path.relative_to(project)) for path in project.rglob("*mlops_template*")}
    return sorted(name for name in names if not name.startswith((".venv/", ".git/")))


@pytest.mark.timeout(1200)  # the fast suite inside, beside the other worker's tests
def test_copy_under_new_names_passes_its_own_fast_suite(template: Path, tmp_path: Path) -> None:
    """A longer name than the template's (the task re-formats, and its lint test passes), on
    the diabetes table: a regression task, inferred from the target column."""
    data, target, _ = write_table("diabetes", tmp_path)
    project = tmp_path / "diabetes-progression-forecast"
    copier(
        tmp_path, "copy", str(template), str(project),
        "-d", "project_name=diabetes-progression-forecast",
        "-d", "package_name=diabetes_progression_forecast",
        "-d", f"data_source={data}", "-d", f"target={target}",
    )  # fmt: skip

    assert set(leftovers(project)) <= ALLOWED_LEFTOVERS, leftovers(project)
    assert (project / "src" / "diabetes_progression_forecast" / "cli" / "app.py").is_file()
    assert not (project / "src" / "mlops_template").exists()
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["data"]["source"] == "data/diabetes.csv"
    assert params["tracking"]["experiment"] == "diabetes-progression-forecast"
    assert pd.read_csv(project / "data" / "diabetes.csv").shape == (442, 11)
    contract = yaml.safe_load((project / "data" / "contract.yaml").read_text())
    assert contract["task"] == "regression"
    assert "positive" not in contract
    for output in ("dvc.lock", "reports/metrics.json", "models/model.joblib.sha256"):
        assert not (project / output).exists(), f"{output}: the template's own run, left in"
    assert not (project / "data" / "penguins.csv").exists()
    assert not (project / "copier.yml").exists()
    # The template's tests of itself (copier.yml's _exclude).
    assert not (project / "tests" / "integration" / "test_copier.py").exists()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v1.0.0"
    assert answers["package_name"] == "diabetes_progression_forecast"
    assert (project / ".git").is_dir()

    # As the copy's closing message says: `make run`, then the tests (some check its outputs).
    sh(project, "make", "run", env=offline_env())
    metrics = yaml.safe_load((project / "reports" / "metrics.json").read_text())
    assert metrics["rmse"] < metrics["baseline"]["rmse"]
    suite = subprocess.run(
        [str(project / ".venv" / "bin" / "pytest"), "-m", "not slow and not docker", "-q",
         "-p", "no:cacheprovider", "-x", "-n", "auto", "-rfE"],
        cwd=project, capture_output=True, text=True, timeout=FAST_SUITE_SECONDS, check=False,
        env={k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)},
    )  # fmt: skip
    failures = [line for line in suite.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert suite.returncode == 0, "\n".join(failures) + "\n" + (suite.stdout + suite.stderr)[-6000:]
    assert " passed" in suite.stdout
    assert "failed" not in suite.stdout.splitlines()[-1]


def test_update_brings_a_later_template_revision(template: Path, tmp_path: Path) -> None:
    project = tmp_path / "penguin-watch"
    copier(tmp_path, "copy", str(template), str(project), "-d", "project_name=penguin-watch")
    assert (project / "data" / "penguins.csv").is_file()  # the example table, kept
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-q", "-m", "from the template")
    # The project's own work: a parameter, its pipeline's lock, a line of code.
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 100", "n_estimators: 300"))
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    config = project / "src" / "penguin_watch" / "config" / "__init__.py"
    config.write_text(config.read_text() + "# the project's own line\n")
    sh(project, "git", "commit", "-q", "-am", "our changes")
    sh(project, "git", "add", "dvc.lock")
    sh(project, "git", "commit", "-q", "-m", "our lock")

    # A later template revision: a new line in the package and a changed comment.
    storage_module = template / "src" / "mlops_template" / "io" / "storage.py"
    storage_module.write_text(
        storage_module.read_text() + "\nTEMPLATE_REVISION = 2  # mlops_template\n"
    )
    template_params = template / "params.yaml"
    template_params.write_text(
        template_params.read_text().replace("test_size: 0.25", "test_size: 0.25 # held out")
    )
    sh(template, "git", "commit", "-q", "-am", "a template improvement")
    sh(template, "git", "tag", "v1.1.0")

    copier(project, "update")

    storage_text = (project / "src" / "penguin_watch" / "io" / "storage.py").read_text()
    assert "TEMPLATE_REVISION = 2  # penguin_watch" in storage_text  # arrived, renamed
    assert not (project / "src" / "mlops_template").exists()
    params_text = params.read_text()
    assert "test_size: 0.25 # held out" in params_text  # the template's change
    assert "n_estimators: 300" in params_text  # ... and ours, both
    assert config.read_text().endswith("# the project's own line\n")
    assert (project / "dvc.lock").read_text() == "schema: '2.0'\nstages: {}\n"
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v1.1.0"
    assert not list(project.rglob("*.rej"))
