"""The pipeline stages' sections of params.yaml: paths, data, validate, split, evaluate,
explain (the `model:` section is in model.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from mlops_template import PipelineError
from mlops_template.config.base import Section
from mlops_template.contract.metrics import DEFAULT_PRIMARY, TASK_METRICS


class Paths(Section):
    """Where each stage reads and writes, relative to the repository root."""

    raw: Path
    validated: Path
    validation_report: Path
    # validate: the contract's data part the table was checked against (schema.data_dict);
    # the stages after validate depend on it, so editing only a declaration re-runs no training
    validated_contract: Path = Path("data/validated_contract.json")
    validation_failure: Path
    stage_failure: Path
    train: Path
    test: Path
    model: Path
    train_timing: Path
    metrics: Path
    plots: Path  # the evaluate stage's plot data, one file per plot the task has (below)
    reference: Path
    drift: Path
    onnx_model: Path  # the model compiled to ONNX: what the service runs (serve.runtime onnx)
    parity: Path  # the train stage's check of the compiled model against scikit-learn
    slices: Path  # evaluate: metrics per category of each categorical feature
    behaviour: Path  # the behaviour stage's checks (the contract's `behaviour:`)
    tune: Path = Path("reports/tune")  # `mlops model tune`: trials, best params, plots (no stage's)
    explain: Path = Path("reports/explain")  # the explain stage: SHAP summary, plot data, image
    background: Path = Path("models/background.json")  # the service's /explain background rows
    # The served model file's signature (`mlops model sign`; the release signs, the service
    # verifies it at load with serve.model_signature): io/signing.py
    model_signature: Path = Path("models/model.sig")

    # Plot data files in `plots`. Classification: confusion, roc, precision_recall;
    # regression: predicted_actual, residuals; every task: feature_importance.
    @property
    def confusion(self) -> Path:
        return self.plots / "confusion.csv"

    @property
    def roc(self) -> Path:
        return self.plots / "roc.json"

    @property
    def precision_recall(self) -> Path:
        return self.plots / "precision_recall.json"

    @property
    def predicted_actual(self) -> Path:
        return self.plots / "predicted_actual.json"

    @property
    def residuals(self) -> Path:
        return self.plots / "residuals.json"

    @property
    def feature_importance(self) -> Path:
        return self.plots / "feature_importance.json"

    # The explain stage's files in `explain`.
    @property
    def shap_summary(self) -> Path:
        return self.explain / "shap.json"

    @property
    def shap_importance(self) -> Path:
        return self.explain / "shap_importance.json"

    @property
    def shap_plot(self) -> Path:
        return self.explain / "shap_summary.png"

    @property
    def calibration(self) -> Path:  # classification: the reliability curve
        return self.plots / "calibration.json"

    def plot_files(self) -> list[Path]:
        return [
            self.confusion,
            self.roc,
            self.precision_recall,
            self.predicted_actual,
            self.residuals,
            self.feature_importance,
            self.calibration,
        ]


DATA_SUFFIXES = (".csv", ".parquet", ".pq")


class DataSettings(Section):
    """`source` is a path to a .csv or .parquet file (the default, data/penguins.csv, is in
    the repository). It is a dependency of the `ingest` stage, so editing it re-runs the
    pipeline."""

    source: Path = Path("data/penguins.csv")
    # The data contract (contract/file.py): the task, the target and the features. Written by
    # `mlops contract init`, reviewed and committed.
    contract: Path = Path("data/contract.yaml")

    @field_validator("source")
    @classmethod
    def _table_file(cls, source: Path) -> Path:
        if source.suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"'{source}' is not a path to a .csv or .parquet (.pq) file")
        return source


class ValidateSettings(Section):
    """The `validate` stage's table-level policies (the column checks live in contract/spec.py).

    `duplicates` decides what happens to exact duplicate rows (every column equal, missing
    values equal to each other): `drop` keeps the first of each and drops the copies before
    the split, `fail` fails validation with a `no_duplicate_rows` violation. Either way they
    are counted in the validation summary."""

    duplicates: Literal["drop", "fail"] = "drop"
    # Rows without a target (labels not arrived yet): `drop` counts and drops them, `fail`
    # makes them a violation of the target's not_nullable check.
    unlabelled: Literal["drop", "fail"] = "drop"


class SplitSettings(Section):
    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25


PrimaryMetric = Literal[
    "auto", "roc_auc", "average_precision", "f1", "precision", "recall", "accuracy",
    "log_loss", "f1_macro", "roc_auc_ovr", "rmse", "mae", "r2",
]  # fmt: skip


class EvaluateSettings(Section):
    """`primary_metric` (auto: the task's default, DEFAULT_PRIMARY) decides the PR report's
    verdict, the promotion gate and the baseline check. `threshold` (binary tasks only): the
    positive class is predicted when its probability is at least this."""

    primary_metric: PrimaryMetric = "auto"
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    importance_repeats: Annotated[int, Field(ge=1)] = 5
    importance_max_rows: Annotated[int, Field(ge=10)] = 5000

    def primary_for(self, task: str) -> str:
        """The primary metric for `task`; an error names the task's metrics."""
        if self.primary_metric == "auto":
            return DEFAULT_PRIMARY[task]
        if self.primary_metric not in TASK_METRICS[task]:
            raise PipelineError(
                f"evaluate.primary_metric: {self.primary_metric!r} is not a {task} metric;"
                f" choose auto or one of {', '.join(TASK_METRICS[task])}"
            )
        return self.primary_metric


class ExplainSettings(Section):
    """The explain stage (SHAP on the test split) and the service's /explain (serve/explain.py).

    The stage explains at most `max_rows` test rows (a seeded sample) and writes
    `background_rows` training rows for the service. The service computes exact Shapley
    values over every coalition of features when there are at most `exact_max_features`,
    otherwise it samples `permutations` seeded permutations; it answers the `top_k` largest
    contributions."""

    max_rows: Annotated[int, Field(ge=10)] = 200
    background_rows: Annotated[int, Field(ge=1, le=1000)] = 50
    top_k: Annotated[int, Field(ge=1)] = 5
    exact_max_features: Annotated[int, Field(ge=1, le=14)] = 10
    permutations: Annotated[int, Field(ge=1, le=1000)] = 32
