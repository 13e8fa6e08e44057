"""The real pipeline with real DVC, in a throwaway copy of this repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.support.project import STAGES, TEST_DATA, copy_repo, ran_stages, sh, use_test_table

pytestmark = pytest.mark.slow


def plot_files(root: Path) -> set[str]:
    """The plot data the project's task writes (its contract decides)."""
    contract = yaml.safe_load((root / "params.yaml").read_text())["data"]["contract"]
    task = yaml.safe_load((root / contract).read_text())["task"]
    names = (
        ["confusion.csv", "roc.json", "precision_recall.json", "calibration.json"]
        if task != "regression"
        else ["predicted_actual.json", "residuals.json"]
    )
    plots = {f"reports/plots/{name}" for name in [*names, "feature_importance.json"]}
    return plots | {"reports/explain/shap_importance.json"}


def lock_outs(lock_file: Path) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load(lock_file.read_text())
    return {
        stage: {out["path"]: out.get("md5") for out in body.get("outs", [])}
        for stage, body in lock["stages"].items()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy where `dvc repro` has run once from nothing."""
    root = copy_repo(tmp_path_factory.mktemp("project"))
    for output in ("data/raw.parquet", "models/model.joblib"):
        assert not (root / output).exists()
    result = sh(root, "dvc", "repro")
    # evaluate's outputs are small and committed to git (cache: false); when train reproduces
    # the committed model exactly, DVC finds evaluate up to date and rightly skips it.
    assert ran_stages(result.stdout)[:4] == list(STAGES[:4])
    return root


def test_repro_produces_every_output_and_a_clean_status(project: Path) -> None:
    for output in (
        "data/raw.parquet",
        "data/validated.parquet",
        "data/validated_contract.json",
        "data/train.parquet",
        "data/test.parquet",
        "models/model.joblib",
        "models/model.joblib.sha256",
        "reports/validation.json",
        "reports/metrics.json",
        "reports/explain/shap.json",
        "reports/explain/shap_summary.png",
        "models/background.json",
        "reports/slices.json",
        "reports/behaviour.json",
        *plot_files(project),
    ):
        assert (project / output).is_file(), output
    status = sh(project, "dvc", "status")
    assert "Data and pipelines are up to date" in status.stdout
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["beats_baseline"] is True


def test_the_default_model_passes_every_behaviour_check_its_contract_declares(
    project: Path,
) -> None:
    results = json.loads((project / "reports" / "behaviour.json").read_text())
    assert results["summary"] == {"checks": 4, "passed": 4, "failed": 0}
    assert {check["kind"] for check in results["checks"]} == {
        "invariance",
        "directional",
        "minimum",
    }


def test_fresh_run_reproduces_the_committed_lock(project: Path) -> None:
    """A fresh run records exactly this repository's dvc.lock: same code and params hashes
    (the lock is not stale) and byte-identical outputs (the pipeline is reproducible)."""
    assert lock_outs(project / "dvc.lock") == lock_outs(REPO_ROOT / "dvc.lock")
    fresh = yaml.safe_load((project / "dvc.lock").read_text())
    assert fresh == yaml.safe_load((REPO_ROOT / "dvc.lock").read_text()), (
        "dvc.lock is stale: run `make run` and commit dvc.lock"
    )


def test_forced_repro_is_byte_identical(project: Path) -> None:
    before = (project / "dvc.lock").read_text()
    result = sh(project, "dvc", "repro", "-f")
    assert ran_stages(result.stdout) == list(STAGES)
    assert (project / "dvc.lock").read_text() == before


def test_changing_a_training_param_reruns_only_the_stages_of_the_model(project: Path) -> None:
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-q", "-m", "baseline run", check=False)
    params_file = project / "params.yaml"
    params_file.write_text(params_file.read_text().replace("n_estimators: 100", "n_estimators: 7"))

    result = sh(project, "dvc", "repro")
    assert ran_stages(result.stdout) == ["train", "evaluate", "behaviour", "explain"]

    params_diff = json.loads(sh(project, "dvc", "params", "diff", "--json").stdout)
    assert params_diff["params.yaml"]["model.n_estimators"] == {"old": 100, "new": 7, "diff": -93}
    metrics_diff = json.loads(sh(project, "dvc", "metrics", "diff", "--json").stdout)
    changed = metrics_diff["reports/metrics.json"]
    assert "log_loss" in changed
    assert changed["log_loss"]["old"] != changed["log_loss"]["new"]
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status").stdout

    plots = json.loads(sh(project, "dvc", "plots", "diff", "HEAD", "--json").stdout)
    drawn = {name for name, rendered in plots["data"].items() if rendered}
    assert drawn == plot_files(project)
    # The plots of the other task are not written: DVC notes them as not found, nothing else.
    for error in plots.get("errors") or []:
        assert error["type"] == "FileNotFoundError", error
        assert error["name"] not in drawn
    for name in drawn:
        assert plots["data"][name][0]["revisions"] == ["workspace", "HEAD"]

    sh(project, "mlops", "report", "pr", "--base", "HEAD", "--out", "report.md")
    report = (project / "report.md").read_text()
    assert "| `model.n_estimators` | `100` | `7` |" in report
    assert "| Δ | baseline |" in report
    assert "![Feature importance](report_images/feature_importance.png)" in report
    assert "### Explanations" in report
    assert "![SHAP summary](report_images/shap_summary.png)" in report
    assert (project / "report_images" / "shap_summary.png").is_file()
    assert (project / "report_images" / "feature_importance.png").is_file()
    assert "Model card of this branch's model: [model_card.md](model_card.md)" in report
    card = (project / "model_card.md").read_text()
    assert "n_estimators 7," in card
    assert "## Behaviour checks" in card
    assert "### Behaviour" in report


def test_report_on_a_first_pull_request(project: Path) -> None:
    """Against a base with no pipeline at all, the report still renders."""
    empty_tree = sh(project, "git", "hash-object", "-t", "tree", "/dev/null").stdout.strip()
    base = sh(project, "git", "commit-tree", empty_tree, "-m", "empty").stdout.strip()
    sh(project, "mlops", "report", "pr", "--base", base, "--out", "first.md")
    assert "🆕 **First metrics**" in (project / "first.md").read_text()


def test_bad_data_stops_the_pipeline_at_validate(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    use_test_table(root)
    bad = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex\n"
    bad += "Adelie,Atlantis,39.1,18.7,181,3750,male\n" * 20
    (root / "bad.csv").write_text(bad)
    params_file = root / "params.yaml"
    params_file.write_text(
        params_file.read_text().replace(f"source: {TEST_DATA}", "source: bad.csv")
    )
    result = sh(root, "dvc", "repro", check=False)
    assert result.returncode != 0
    assert ran_stages(result.stdout) == ["ingest", "validate"]
    assert "column 'island': check isin" in result.stderr + result.stdout
    for output in ("data/validated.parquet", "data/train.parquet", "models/model.joblib"):
        assert not (root / output).exists(), output


def test_local_directory_remote_round_trip(project: Path, tmp_path: Path) -> None:
    """Push to a directory remote; a fresh clone with an empty cache pulls every output."""
    store = tmp_path / "store"
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-q", "-m", "outputs", check=False)
    sh(project, "dvc", "remote", "add", "--local", "-f", "-d", "shelf", str(store))
    sh(project, "dvc", "push")
    assert any(store.rglob("*"))

    sh(tmp_path, "git", "clone", "-q", str(project), "fresh")
    fresh = tmp_path / "fresh"
    assert not (fresh / "models" / "model.joblib").exists()
    sh(fresh, "dvc", "remote", "add", "--local", "-f", "-d", "shelf", str(store))
    sh(fresh, "dvc", "pull")
    assert (fresh / "models" / "model.joblib").read_bytes() == (
        project / "models" / "model.joblib"
    ).read_bytes()
    assert "Data and pipelines are up to date" in sh(fresh, "dvc", "status").stdout
