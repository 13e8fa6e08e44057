"""`mlops monitor drift`: simulated production traffic against the training split.

Penguins (the tests' own table, multiclass): traffic without drift is drawn (with
replacement) from the same penguins the training split came from; each drift scenario changes
one thing in it. The model is taken to be right, so the logged prediction is the bird's
species (the default model scores 100% on the test split).

Binary (breast cancer) and regression (diabetes), scikit-learn's embedded tables with
contracts profiled by `init_schema`: a real 20-tree model is trained on half the rows; a
quarter is the test split and the last quarter production traffic, logged with the model's
predictions, as is (no resampling: the window is the held-out rows themselves).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from mlops_template.cli.app import app
from mlops_template.config import Params
from mlops_template.contract import Contract, load_contract
from mlops_template.contract.profile import profile as profile_table
from mlops_template.io import storage
from mlops_template.monitoring import checks, drift, logs, render
from mlops_template.monitoring.records import PredictionRecord
from mlops_template.stages.train import fit
from tests.conftest import DEFAULT_CONTRACT
from tests.support import tasks

WINDOW = 500
NULL_SEEDS = range(20)


CONTRACT = load_contract(DEFAULT_CONTRACT)
TARGET = CONTRACT.target


@pytest.fixture(scope="module")
def population(penguins: pd.DataFrame) -> pd.DataFrame:
    return penguins.dropna(subset=[TARGET.name]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(population: pd.DataFrame) -> pd.DataFrame:
    train, _ = train_test_split(
        population, test_size=0.25, random_state=42, stratify=population[TARGET.name]
    )
    return train


def sample(population: pd.DataFrame, seed: int, rows: int = WINDOW) -> pd.DataFrame:
    return population.sample(rows, replace=True, random_state=seed).reset_index(drop=True)


def records(
    frame: pd.DataFrame,
    role: str = "champion",
    contract: Contract = CONTRACT,
    predictions: Any = None,
) -> list[PredictionRecord]:
    """Log records for `frame`; the prediction is the target unless `predictions` are given."""
    names = contract.feature_names()
    if predictions is None:
        predictions = frame[contract.target.name]
    out = []
    for (index, row), predicted in zip(frame.iterrows(), predictions, strict=True):
        features = {name: (None if pd.isna(row[name]) else row[name]) for name in names}
        out.append(
            PredictionRecord(
                ts=1_764_000_000.0 + index,
                id=row.get("id") or uuid.uuid4().hex,
                role=role,
                model_version="abc123def456",
                features=features,
                prediction=predicted if contract.is_classification else float(predicted),
            )
        )
    return out


def lines(logged: list[PredictionRecord]) -> str:
    """The log file's text: one JSON line per record, as the service writes them."""
    return "".join(record.to_json() + "\n" for record in logged)


def traffic(frame: pd.DataFrame) -> logs.Traffic:
    return logs.Traffic(records(frame), {}, ["memory"])


def verdict(reference: pd.DataFrame, frame: pd.DataFrame, params: Params) -> checks.DriftReport:
    return checks.compare(reference, traffic(frame), {}, None, params.monitoring, CONTRACT)


def drifted(report: checks.DriftReport) -> set[tuple[str, str]]:
    return {(check.column, check.kind) for check in report.checks if check.drifted}


def test_traffic_without_drift_raises_no_alert_across_20_seeds(
    population: pd.DataFrame, reference: pd.DataFrame, params: Params
) -> None:
    alerts = {
        seed: drifted(verdict(reference, sample(population, seed), params)) for seed in NULL_SEEDS
    }
    false_positives = {seed: found for seed, found in alerts.items() if found}
    rate = len(false_positives) / len(NULL_SEEDS)
    print(f"false positive rate: {rate:.0%} over {len(NULL_SEEDS)} seeds")
    assert false_positives == {}


def test_a_shifted_numeric_feature_is_detected(
    population: pd.DataFrame, reference: pd.DataFrame, params: Params
) -> None:
    shifted = sample(population, 1)
    shifted["bill_length_mm"] += 5.0  # about one standard deviation
    report = verdict(reference, shifted, params)
    assert report.verdict == "drift"
    assert ("bill_length_mm", "numeric") in drifted(report)
    assert drifted(report) <= {("bill_length_mm", "numeric"), ("prediction", "prediction")}


def test_a_changed_category_mix_is_detected(
    population: pd.DataFrame, reference: pd.DataFrame, params: Params
) -> None:
    mix = sample(population, 2)
    # A new colony is surveyed: more birds from Torgersen, fewer from Biscoe.
    biscoe = mix.index[mix["island"] == "Biscoe"]
    mix.loc[biscoe[: len(biscoe) // 2], "island"] = "Torgersen"
    report = verdict(reference, mix, params)
    assert report.verdict == "drift"
    assert ("island", "categorical") in drifted(report)


def test_rising_missing_values_are_detected(
    population: pd.DataFrame, reference: pd.DataFrame, params: Params
) -> None:
    broken_scale = sample(population, 3)
    lost = np.random.default_rng(3).random(len(broken_scale)) < 0.25
    broken_scale.loc[lost, "body_mass_g"] = np.nan
    report = verdict(reference, broken_scale, params)
    assert report.verdict == "drift"
    assert drifted(report) == {("body_mass_g", "missing")}
    check = next(c for c in report.checks if c.column == "body_mass_g" and c.kind == "missing")
    assert check.current == pytest.approx(lost.mean() + 0.0, abs=0.02)


def labelled(frame: pd.DataFrame, wrong_share: float, seed: int) -> tuple[list, dict[str, str]]:
    """Logged records and their late labels; a share of the predictions turn out wrong."""
    logged = records(frame)
    rng = np.random.default_rng(seed)
    labels = {}
    for record in logged:
        truth = record.prediction
        if rng.random() < wrong_share:
            truth = next(name for name in TARGET.categories if name != truth)
        labels[record.id] = truth
    return logged, labels


@pytest.mark.parametrize(("wrong_share", "expected"), [(0.0, False), (0.01, False), (0.2, True)])
def test_labelled_feedback_with_degraded_accuracy_is_detected(
    population: pd.DataFrame,
    reference: pd.DataFrame,
    params: Params,
    wrong_share: float,
    expected: bool,
) -> None:
    logged, labels = labelled(sample(population, 4, 200), wrong_share, seed=4)
    report = checks.compare(
        reference, logs.Traffic(logged, {}, []), labels, 0.98, params.monitoring, CONTRACT
    )
    performance = next(check for check in report.checks if check.kind == "performance")
    assert performance.drifted is expected
    assert performance.current == pytest.approx(1 - wrong_share, abs=0.05)


def test_too_little_traffic_is_not_a_verdict(
    population: pd.DataFrame, reference: pd.DataFrame, params: Params
) -> None:
    report = verdict(reference, sample(population, 5, params.monitoring.min_rows - 1), params)
    assert report.verdict == "not enough traffic"
    assert not report.drifted


def test_the_report_compares_the_shadow_challenger_on_the_same_requests(
    population: pd.DataFrame, reference: pd.DataFrame, params: Params
) -> None:
    frame = sample(population, 6, 200)
    frame["id"] = [uuid.uuid4().hex for _ in range(len(frame))]
    champion = records(frame)
    challenger_frame = frame.copy()
    challenger_frame.loc[:19, TARGET.name] = "Chinstrap"  # the challenger differs on 20 rows
    challenger = {r.id: r for r in records(challenger_frame, role="challenger")}
    labels = {r.id: r.prediction for r in champion}
    report = checks.compare(
        reference,
        logs.Traffic(champion, challenger, []),
        labels,
        1.0,
        params.monitoring,
        CONTRACT,
    )
    assert report.shadow is not None
    disagreements = int((frame.loc[:19, TARGET.name] != "Chinstrap").sum())
    assert report.shadow["agreement"] == pytest.approx(1 - disagreements / 200)
    assert report.shadow["champion_accuracy"] == 1.0
    assert report.shadow["challenger_accuracy"] == pytest.approx(1 - disagreements / 200)
    assert "Shadow challenger" in render.markdown(report)


# --- the command: files in, files and an exit code out ----------------------------------------


@pytest.fixture
def project(params: Params, reference: pd.DataFrame) -> Callable[[list[PredictionRecord]], Params]:
    """A project directory with the training split, test metrics and a prediction log."""
    storage.write_parquet(params.paths.train, reference)
    storage.write_json(params.paths.metrics, {"accuracy": 1.0})

    def write_log(logged: list[PredictionRecord]) -> Params:
        path = params.serve.prediction_log
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines(logged))
        return params

    return write_log


def test_cli_exits_3_on_drift_and_writes_json_markdown_and_html(
    project: Callable[[list[PredictionRecord]], Params], population: pd.DataFrame
) -> None:
    shifted = sample(population, 7)
    shifted["flipper_length_mm"] += 15.0
    params = project(records(shifted))
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == drift.DRIFT_EXIT_CODE, result.output
    summary = json.loads((params.paths.drift / "drift.json").read_text())
    assert summary["drifted"] is True
    assert summary["verdict"] == "drift"
    flipper = [c for c in summary["checks"] if c["column"] == "flipper_length_mm"]
    assert any(check["drifted"] for check in flipper)
    assert "| `flipper_length_mm` | KS + PSI |" in (params.paths.drift / "drift.md").read_text()
    page = (params.paths.drift / "drift.html").read_text()
    assert "data:image/png;base64," in page
    assert "flipper_length_mm" in page


def test_cli_exits_0_without_drift(
    project: Callable[[list[PredictionRecord]], Params], population: pd.DataFrame
) -> None:
    params = project(records(sample(population, 8)))
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 0, result.output
    assert "drift: no drift (500 predictions)" in result.output
    assert json.loads((params.paths.drift / "drift.json").read_text())["drifted"] is False


def test_rotated_logs_are_read_and_a_half_written_last_line_is_ignored(
    project: Callable[[list[PredictionRecord]], Params], population: pd.DataFrame
) -> None:
    logged = records(sample(population, 9, 300))
    params = project(logged[200:])
    path = params.serve.prediction_log
    path.with_name(path.name + ".1").write_text(lines(logged[:200]))
    with path.open("a") as handle:
        handle.write('{"ts": 1, "features": {"isl')  # the service is writing this line now
    read = logs.read_traffic(path, 1000, CONTRACT)
    assert [r.id for r in read.champion] == [r.id for r in logged]
    assert read.files == [str(path.with_name(path.name + ".1")), str(path)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "predictions.jsonl:2: not a JSON prediction record"),
        ("[1, 2]", "predictions.jsonl:2: a prediction record must be a JSON object"),
        ('{"ts": 1}', "predictions.jsonl:2: a prediction record needs `id`"),
    ],
)
def test_a_corrupt_log_line_is_an_error_naming_file_and_line(
    project: Callable[[list[PredictionRecord]], Params],
    population: pd.DataFrame,
    line: str,
    message: str,
) -> None:
    params = project(records(sample(population, 10, 1)))
    with params.serve.prediction_log.open("a") as handle:
        handle.write(line + "\n" + records(sample(population, 11, 1))[0].to_json() + "\n")
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 1
    assert message in result.output
    assert not params.paths.drift.exists()  # nothing half-written


def _old_contract_records(population: pd.DataFrame, seed: int, rows: int) -> list[PredictionRecord]:
    """Records logged under earlier contracts: a feature since added is absent, a feature
    since dropped is present, a column now categorical was numeric, a class since renamed."""
    logged = records(sample(population, seed, rows))
    for i, record in enumerate(logged):
        features = dict(record.features)
        change = i % 4
        if change == 0:
            del features["island"]
        elif change == 1:
            features["colony_id"] = 7
        elif change == 2:
            features["island"] = 3.0
        logged[i] = replace(
            record, features=features, prediction="Emperor" if change == 3 else record.prediction
        )
    return logged


def test_records_that_do_not_fit_the_contract_are_skipped_counted_and_reported(
    project: Callable[[list[PredictionRecord]], Params],
    population: pd.DataFrame,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = _old_contract_records(population, 12, 40)
    params = project(records(sample(population, 8)))
    path = params.serve.prediction_log
    # The rotated log still holds traffic from before the contract changed.
    path.with_name(path.name + ".1").write_text(lines(old))
    with caplog.at_level("WARNING", logger="mlops_template.monitoring.drift"):
        result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 0, result.output
    assert (
        "drift: no drift (500 predictions, 40 skipped (they do not fit the contract))"
        in result.output
    )
    summary = json.loads((params.paths.drift / "drift.json").read_text())
    assert summary["window_rows"] == 500
    assert summary["skipped_records"] == 40
    assert summary["skipped_reasons"] == {
        "features lack island": 10,
        "features the contract does not name: colony_id": 10,
        "island is not one of the contract's categories": 10,
        "the prediction is not one of the contract's classes": 10,
    }
    assert "40 logged records were skipped" in (params.paths.drift / "drift.md").read_text()
    assert "40 logged records were skipped" in (params.paths.drift / "drift.html").read_text()
    assert "40 logged records were skipped" in caplog.text  # the command's output (stderr)


def test_a_numeric_feature_logged_as_text_is_skipped(population: pd.DataFrame, tmp_path) -> None:
    logged = records(sample(population, 13, 30))
    # The column was categorical then.
    logged[0] = replace(logged[0], features={**logged[0].features, "bill_length_mm": "Dream"})
    path = tmp_path / "predictions.jsonl"
    path.write_text(lines(logged))
    read = logs.read_traffic(path, 1000, CONTRACT)
    assert len(read.champion) == 29
    assert read.skipped == {"bill_length_mm is not a number (the contract's kind is numeric)": 1}


def test_a_log_where_no_record_fits_the_contract_is_an_error_saying_why(
    project: Callable[[list[PredictionRecord]], Params], population: pd.DataFrame
) -> None:
    logged = records(sample(population, 14, 20))
    logged = [
        replace(r, features={k: v for k, v in r.features.items() if k != "island"}) for r in logged
    ]
    params = project(logged)
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 1
    assert "none of the 20 logged records fits the data contract" in result.output
    assert "features lack island (20)" in result.output
    assert "predictions.jsonl:1" in result.output
    assert not params.paths.drift.exists()


def test_no_log_is_an_error_saying_how_to_get_one(params: Params) -> None:
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 1
    assert "no prediction log found" in result.output
    assert "make fetch-monitoring" in result.output


def test_feedback_with_an_unknown_label_is_an_error(
    project: Callable[[list[PredictionRecord]], Params], population: pd.DataFrame
) -> None:
    params = project(records(sample(population, 12)))
    params.monitoring.feedback.write_text('{"id": "x", "label": "Emperor"}\n')
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 1
    assert "label 'Emperor' is not one of Adelie, Chinstrap, Gentoo" in result.output


# --- binary and regression: a real model, its test split, and held-out production traffic ---


class Held:
    """A table split three ways (train / test / production), a model fitted on train, and the
    production rows logged with the model's predictions."""

    def __init__(self, name: str, frame: pd.DataFrame, directory: Path, seed: int, **options):
        contract = profile_table(frame, "target", name=name, **options).contract
        self.path = tasks.write_contract(contract, directory / f"{name}.yaml")
        self.params = tasks.task_params(self.path)
        self.contract = self.params.contract
        rest, self.production = train_test_split(frame, test_size=0.25, random_state=seed)
        self.train, self.test = train_test_split(rest, test_size=1 / 3, random_state=seed)
        self.model = fit(self.train, self.params)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict(frame[self.contract.feature_names()])

    def logged(self, frame: pd.DataFrame | None = None) -> list[PredictionRecord]:
        frame = self.production if frame is None else frame
        return records(frame, contract=self.contract, predictions=self.predict(frame))

    def report(
        self, frame: pd.DataFrame | None = None, labels: dict | None = None
    ) -> checks.DriftReport:
        truth = self.test[self.contract.target.name]
        if self.contract.is_classification:
            baseline = float((self.predict(self.test) == truth.astype(str)).mean())
            expected = None
        else:
            baseline = float(np.abs(self.predict(self.test) - truth).mean())
            expected = pd.Series(self.predict(self.test))
        return checks.compare(
            self.train,
            logs.Traffic(self.logged(frame), {}, []),
            labels or {},
            baseline,
            self.params.monitoring,
            self.contract,
            expected,
        )


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Held]:
    directory = tmp_path_factory.mktemp("held")
    tables = {
        "binary": lambda seed: Held(
            "breast_cancer", tasks.breast_cancer(), directory, seed, positive="malignant"
        ),
        "regression": lambda seed: Held("diabetes", tasks.diabetes(), directory, seed),
    }
    built: dict[tuple[str, int], Held] = {}

    def get(task: str, seed: int) -> Held:
        if (task, seed) not in built:
            built[task, seed] = tables[task](seed)
        return built[task, seed]

    return get


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_held_out_traffic_raises_no_alert_across_5_splits(
    held: Callable[[str, int], Held], task: str
) -> None:
    alerts = {seed: drifted(held(task, seed).report()) for seed in range(5)}
    assert {seed: found for seed, found in alerts.items() if found} == {}


@pytest.mark.parametrize(
    ("task", "column", "shift"),
    [("binary", "mean radius", 1.3), ("regression", "bmi", 1.3), ("regression", "s5", 1.15)],
)
def test_a_shifted_feature_is_detected(
    held: Callable[[str, int], Held], task: str, column: str, shift: float
) -> None:
    table = held(task, 0)
    moved = table.production.copy()
    moved[column] *= shift
    report = table.report(moved)
    assert (column, "numeric") in drifted(report)
    prediction = next(c for c in report.checks if c.kind == "prediction")
    if task == "regression":  # bmi and s5 drive the diabetes model: its predictions move too
        assert prediction.test == "KS + PSI"
        assert prediction.drifted
        assert prediction.current > prediction.reference  # the median prediction rose
    else:
        assert prediction.test == "chi-square + PSI"


@pytest.mark.parametrize(("bias", "expected"), [(0.0, False), (25.0, False), (80.0, True)])
def test_regression_feedback_judges_the_mae_rise(
    held: Callable[[str, int], Held], bias: float, expected: bool
) -> None:
    """Labels are the true numbers; `bias` makes the world drift away from the model."""
    table = held("regression", 0)
    logged = table.logged()
    truth = table.production["target"].to_numpy(float) + bias
    labels = {record.id: float(y) for record, y in zip(logged, truth, strict=True)}
    report = checks.compare(
        table.train,
        logs.Traffic(logged, {}, []),
        labels,
        float(np.abs(table.predict(table.test) - table.test["target"]).mean()),
        table.params.monitoring,
        table.contract,
        pd.Series(table.predict(table.test)),
    )
    performance = next(check for check in report.checks if check.kind == "performance")
    assert performance.column == "mae"
    assert performance.drifted is expected
    assert "MAE" in performance.detail


def test_binary_feedback_judges_the_accuracy_drop(held: Callable[[str, int], Held]) -> None:
    table = held("binary", 0)
    logged = table.logged()
    flipped = {"malignant": "benign", "benign": "malignant"}
    labels = {r.id: flipped[r.prediction] for r in logged[:40]}  # 40 wrong
    labels |= {r.id: r.prediction for r in logged[40:]}
    report = checks.compare(
        table.train,
        logs.Traffic(logged, {}, []),
        labels,
        0.95,
        table.params.monitoring,
        table.contract,
    )
    performance = next(check for check in report.checks if check.kind == "performance")
    assert performance.column == "accuracy"
    assert performance.drifted


def test_regression_shadow_reports_the_difference_and_both_maes(
    held: Callable[[str, int], Held],
) -> None:
    table = held("regression", 1)
    champion = table.logged()
    challenger = {
        r.id: replace(r, role="challenger", prediction=r.prediction + 10.0) for r in champion
    }
    labels = {r.id: r.prediction for r in champion}
    report = checks.compare(
        table.train,
        logs.Traffic(champion, challenger, []),
        labels,
        50.0,
        table.params.monitoring,
        table.contract,
    )
    assert report.shadow is not None
    assert report.shadow["mean_abs_difference"] == pytest.approx(10.0)
    assert report.shadow["champion_mae"] == 0.0
    assert report.shadow["challenger_mae"] == pytest.approx(10.0)
    assert "mean absolute difference 10" in render.markdown(report)


@pytest.fixture
def regression_project(
    make_params: Callable[..., Params], held: Callable[[str, int], Held]
) -> tuple[Params, Held]:
    """A project directory for the diabetes contract: splits, model, metrics and a log."""
    table = held("regression", 2)
    params = make_params(data={"contract": str(table.path)}, evaluate={"primary_metric": "auto"})
    storage.write_parquet(params.paths.train, table.train)
    storage.write_parquet(params.paths.test, table.test)
    tasks.save_model(table.model, params.paths.model)
    mae = float(np.abs(table.predict(table.test) - table.test["target"]).mean())
    storage.write_json(params.paths.metrics, {"mae": mae, "rmse": 2 * mae, "r2": 0.4})
    return params, table


def _write_log(params: Params, logged: list[PredictionRecord]) -> None:
    path = params.serve.prediction_log
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines(logged))


def test_cli_regression_no_drift_then_drift(regression_project: tuple[Params, Held]) -> None:
    params, table = regression_project
    logged = table.logged()
    _write_log(params, logged)
    params.monitoring.feedback.write_text(
        "".join(
            json.dumps({"id": r.id, "label": float(y)}) + "\n"
            for r, y in zip(logged, table.production["target"], strict=True)
        )
    )
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 0, result.output
    summary = json.loads((params.paths.drift / "drift.json").read_text())
    assert summary["task"] == "regression"
    assert any(c["column"] == "mae" for c in summary["checks"])
    moved = table.production.copy()
    moved["bmi"] *= 1.3
    _write_log(params, table.logged(moved))
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == drift.DRIFT_EXIT_CODE, result.output
    assert "data:image/png;base64," in (params.paths.drift / "drift.html").read_text()


def test_cli_regression_feedback_must_be_numbers(
    regression_project: tuple[Params, Held],
) -> None:
    params, table = regression_project
    _write_log(params, table.logged())
    params.monitoring.feedback.write_text('{"id": "x", "label": "high"}\n')
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 1
    assert "label 'high' is not a number (target)" in result.output


def test_cli_regression_needs_the_model_for_its_prediction_reference(
    regression_project: tuple[Params, Held],
) -> None:
    params, table = regression_project
    _write_log(params, table.logged())
    params.paths.model.unlink()
    result = CliRunner().invoke(app, ["monitor", "drift"])
    assert result.exit_code == 1
    assert "reference of regression predictions" in result.output
