"""params.yaml -> typed, validated settings, parsed once.

Every tunable of the pipeline lives in params.yaml. This module is the only place that knows
its layout; stages receive the typed objects below and never read YAML themselves.
Unknown keys and wrong types are errors that name the key (pydantic, `extra="forbid"`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlops_template.errors import PipelineError
from mlops_template.metric_facts import DEFAULT_PRIMARY, TASK_METRICS
from mlops_template.schema import Contract, load_contract

DEFAULT_PARAMS = Path("params.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Strict):
    """Where each stage reads and writes, relative to the repository root."""

    raw: Path
    validated: Path
    validation_report: Path
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
    tune: Path = Path("reports/tune")  # `mlops tune`: trials, best params, plots (no stage's)
    explain: Path = Path("reports/explain")  # the explain stage: SHAP summary, plot data, image
    background: Path = Path("models/background.json")  # the service's /explain background rows

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


class DataSettings(_Strict):
    """`source` is a path to a .csv or .parquet file (the default, data/penguins.csv, is in
    the repository). It is a dependency of the `ingest` stage, so editing it re-runs the
    pipeline."""

    source: Path = Path("data/penguins.csv")
    # The data contract (schema.py): the task, the target and the features. Written by
    # `mlops init-schema`, reviewed and committed.
    contract: Path = Path("data/contract.yaml")

    @field_validator("source")
    @classmethod
    def _table_file(cls, source: Path) -> Path:
        if source.suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"'{source}' is not a path to a .csv or .parquet (.pq) file")
        return source


class ValidateSettings(_Strict):
    """The `validate` stage's table-level policies (the column checks live in schema.py).

    `duplicates` decides what happens to exact duplicate rows (every column equal, missing
    values equal to each other): `drop` keeps the first of each and drops the copies before
    the split, `fail` fails validation with a `no_duplicate_rows` violation. Either way they
    are counted in the validation summary."""

    duplicates: Literal["drop", "fail"] = "drop"
    # Rows without a target (labels not arrived yet): `drop` counts and drops them, `fail`
    # makes them a violation of the target's not_nullable check.
    unlabelled: Literal["drop", "fail"] = "drop"


class SplitSettings(_Strict):
    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25


class RandomForest(_Strict):
    kind: Literal["random_forest"]
    n_estimators: Annotated[int, Field(ge=1)] = 100
    max_depth: Annotated[int, Field(ge=1)] | None = None
    min_samples_leaf: Annotated[int, Field(ge=1)] = 1
    max_samples: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    n_jobs: int = -1


class HistGradientBoosting(_Strict):
    kind: Literal["hist_gradient_boosting"]
    learning_rate: Annotated[float, Field(gt=0.0)] = 0.1
    max_iter: Annotated[int, Field(ge=1)] = 100
    max_leaf_nodes: Annotated[int, Field(ge=2)] = 31
    min_samples_leaf: Annotated[int, Field(ge=1)] = 20
    l2_regularization: Annotated[float, Field(ge=0.0)] = 0.0


class LogisticRegression(_Strict):
    kind: Literal["logistic_regression"]
    C: Annotated[float, Field(gt=0.0)] = 1.0
    max_iter: Annotated[int, Field(ge=1)] = 1000


class Ridge(_Strict):
    """Regression only: a linear model with an L2 penalty (scaled inputs)."""

    kind: Literal["ridge"]
    alpha: Annotated[float, Field(ge=0.0)] = 1.0


ModelSettings = Annotated[
    RandomForest | HistGradientBoosting | LogisticRegression | Ridge, Field(discriminator="kind")
]


PrimaryMetric = Literal[
    "auto", "roc_auc", "average_precision", "f1", "precision", "recall", "accuracy",
    "log_loss", "f1_macro", "roc_auc_ovr", "rmse", "mae", "r2",
]  # fmt: skip


class EvaluateSettings(_Strict):
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


class ExplainSettings(_Strict):
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


class TrackingSettings(_Strict):
    """MLflow tracking. The URI itself comes from MLFLOW_TRACKING_URI (see tracking.py)."""

    enabled: bool = True
    experiment: str = "mlops-template"
    on_unreachable: Literal["fail", "skip"] = "fail"
    timeout_seconds: Annotated[float, Field(gt=0.0)] = 5.0


class ServeSettings(_Strict):
    """The prediction service (src/mlops_template/serve). Limits protect it under load."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    max_batch_rows: Annotated[int, Field(ge=1)] = 1000
    max_concurrent_requests: Annotated[int, Field(ge=1)] = 256
    request_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    micro_batch_max_rows: Annotated[int, Field(ge=1)] = 256
    drain_seconds: Annotated[float, Field(ge=0)] = 5.0
    prediction_log: Path = Path("logs/predictions.jsonl")
    prediction_log_max_bytes: Annotated[int, Field(ge=1024)] = 50_000_000
    prediction_log_backups: Annotated[int, Field(ge=1)] = 5
    monitor_window: Annotated[int, Field(ge=10)] = 1000
    challenger_model: Path | None = None
    challenger_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    # Hostile clients (README "Serving", docs/serving.md "Hostile clients").
    body_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    header_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    keep_alive_seconds: Annotated[float, Field(gt=0)] = 5.0
    max_connections: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes_in_flight: Annotated[int, Field(ge=1024)] = 67_108_864
    max_validation_errors: Annotated[int, Field(ge=1)] = 10
    min_present_features: Annotated[int, Field(ge=0)] = 1
    metrics: Literal["public", "internal", "off"] = "public"
    docs: Literal["public", "internal", "off"] = "public"
    explain: Literal["public", "internal", "off"] = "public"  # POST /explain (serve/explain.py)
    max_concurrent_explanations: Annotated[int, Field(ge=1)] = 2  # beyond: 503 at once
    internal_host: str = "127.0.0.1"
    internal_port: Annotated[int, Field(ge=1, le=65535)] = 9000
    # onnx: the train stage compiles the model (paths.onnx_model) and the service runs it in
    # onnxruntime, without scikit-learn or pandas. sklearn: no compilation; the service loads
    # paths.model (install the `sklearn` extra), for a model skl2onnx cannot convert.
    runtime: Literal["onnx", "sklearn"] = "onnx"

    @field_validator("metrics", "docs", "explain", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        """YAML reads an unquoted `off` as false: it means "off" here, as written."""
        return "off" if value is False else value

    # The compiled model must agree with scikit-learn on the test split: probabilities (or
    # regression predictions, relative to max(1, |prediction|)) within this, same labels.
    parity_tolerance: Annotated[float, Field(gt=0.0, le=0.01)] = 1e-4


class MonitoringSettings(_Strict):
    """`mlops drift`: logged production traffic against the training reference (drift.py).

    A distribution test flags drift only when the shift is both significant (p below `alpha`,
    split over all the tests) and material (PSI at least `psi_threshold`): significance alone
    flags trivial shifts in big windows, effect size alone is noise in small ones."""

    window_rows: Annotated[int, Field(ge=10)] = 5000
    min_rows: Annotated[int, Field(ge=10)] = 100
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    psi_threshold: Annotated[float, Field(gt=0.0)] = 0.2
    psi_bins: Annotated[int, Field(ge=2, le=50)] = 10
    max_missing_rate_increase: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    max_accuracy_drop: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    # Regression feedback: drift when the MAE rises by more than this share of the test MAE.
    max_error_increase: Annotated[float, Field(gt=0.0)] = 0.2
    min_labelled_rows: Annotated[int, Field(ge=1)] = 30
    feedback: Path = Path("logs/feedback.jsonl")
    fetched: Path = Path("logs/production")


class RegistrySettings(_Strict):
    """The MLflow Model Registry and the champion/challenger gate (registry.py)."""

    model_name: str = "mlops-template"
    # A candidate replaces the champion only if it beats it on evaluate.primary_metric by at
    # least `margin`, and is not worse than `tolerance` on every other headline metric.
    margin: Annotated[float, Field(ge=0.0)] = 0.0
    tolerance: Annotated[float, Field(ge=0.0)] = 0.01


# --- The hyperparameter search (`mlops tune`, tune.py): not a pipeline stage -------------

MODEL_KINDS: dict[str, type[_Strict]] = {
    "random_forest": RandomForest,
    "hist_gradient_boosting": HistGradientBoosting,
    "logistic_regression": LogisticRegression,
    "ridge": Ridge,
}
# Settings that do not change the fitted model, so there is nothing to search: the search
# runs every forest with one thread itself and parallelises over fits (tune.n_jobs).
NOT_SEARCHED = frozenset({"kind", "n_jobs"})


class Range(_Strict):
    """A distribution for `tune.method: random`: uniform over [low, high], or log-uniform with
    `log: true` (for a scale: 0.01 to 0.1 as likely as 0.1 to 1). Whole numbers, both ends
    included, for an integer hyperparameter."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low above 0, got {self.low:g}")
        return self


Choices = tuple[Any, ...] | Range  # the values to try (grid or random), or a distribution


def searchable(kind: str) -> list[str]:
    """The hyperparameters of model kind `kind` a search may vary, in config order."""
    return [name for name in MODEL_KINDS[kind].model_fields if name not in NOT_SEARCHED]


def number_type(kind: str, name: str) -> type | None:
    """int or float: the type of a numeric hyperparameter (None when it is not a number)."""
    pending: list[Any] = [MODEL_KINDS[kind].model_fields[name].annotation]
    while pending:
        annotation = pending.pop(0)
        if annotation in (int, float):
            return cast(type, annotation)
        pending.extend(get_args(annotation))  # Optional[...], Annotated[int, ...]
    return None


def _checked_value(kind: str, name: str, value: Any) -> Any:
    """`value` as model.<name> of `kind` would hold it (max_samples 1 becomes 1.0: an int
    there would mean one sample to scikit-learn), or an error naming the constraint."""
    try:
        settings = MODEL_KINDS[kind].model_validate({"kind": kind, name: value})
    except ValidationError as error:
        raise ValueError(f"{name}: {value!r}: {error.errors()[0]['msg']}") from None
    return getattr(settings, name)


def _checked_range(kind: str, name: str, raw: dict[str, Any]) -> Range:
    try:
        spec = Range.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            ".".join(map(str, item["loc"])) + f": {item['msg']}"
            if item["loc"]
            else item["msg"].removeprefix("Value error, ")
            for item in error.errors()
        )
        raise ValueError(f"{name}: {problems}") from None
    numeric = number_type(kind, name)
    if numeric is None:
        raise ValueError(f"{name} is not a number: give a list of values")
    if numeric is int and not (spec.low.is_integer() and spec.high.is_integer()):
        raise ValueError(f"{name} is an integer: low and high must be whole numbers")
    for bound in (spec.low, spec.high):
        _checked_value(kind, name, numeric(bound))
    return spec


def check_space(kind: str, raw: object) -> dict[str, Choices]:
    """One model kind's search space: each hyperparameter to vary, with a list of values (each
    checked as params.yaml's model section would check it) or a Range."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError("give each hyperparameter to search a list of values or {low, high}")
    known = searchable(kind)
    space: dict[str, Choices] = {}
    for name, choices in raw.items():
        if name not in known:
            why = " (it does not change the model: tune.n_jobs sets it)" * (name == "n_jobs")
            raise ValueError(
                f"{name} is not a {kind} hyperparameter the search can vary{why};"
                f" choose from {', '.join(known)}"
            )
        if isinstance(choices, list) and choices:
            space[name] = tuple(_checked_value(kind, name, value) for value in choices)
        elif isinstance(choices, dict):
            space[name] = _checked_range(kind, name, choices)
        else:
            raise ValueError(
                f"{name}: {choices!r}: give a non-empty list of values or {{low, high, log}}"
            )
    return space


class TuneSpace(_Strict):
    """`tune.space`: per model kind, what to search (only `model.kind`'s is used)."""

    random_forest: dict[str, Choices] | None = None
    hist_gradient_boosting: dict[str, Choices] | None = None
    logistic_regression: dict[str, Choices] | None = None
    ridge: dict[str, Choices] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _known_hyperparameters(cls, raw: object, info: ValidationInfo) -> object:
        return None if raw is None else check_space(str(info.field_name), raw)

    def of(self, kind: str) -> dict[str, Choices] | None:
        return cast(dict[str, Choices] | None, getattr(self, kind))


class TuneSettings(_Strict):
    """`mlops tune` (make tune): a seeded search bounded by `n_trials` and `max_seconds`, each
    candidate scored by cross-validation on the training split only."""

    method: Literal["grid", "random"] = "random"
    n_trials: Annotated[int, Field(ge=1, le=1000)] = 20  # grid: the grid may not be larger
    max_seconds: Annotated[float, Field(gt=0.0)] = 900.0  # then stop: finished trials count
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 5
    scoring: PrimaryMetric = "auto"  # auto: evaluate.primary_metric, as evaluate resolves it
    n_jobs: int = 1  # fits in parallel processes; -1: one per core
    dvc_experiments: Annotated[int, Field(ge=0, le=100)] = 25  # best trials saved in DVC
    space: TuneSpace = TuneSpace()

    @field_validator("n_jobs")
    @classmethod
    def _some_jobs(cls, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("0 runs nothing: give 1 or more, or -1 for one per core")
        return n_jobs

    @model_validator(mode="after")
    def _grid_of_lists(self) -> TuneSettings:
        if self.method != "grid":
            return self
        for kind in MODEL_KINDS:
            for name, choices in (self.space.of(kind) or {}).items():
                if isinstance(choices, Range):
                    raise ValueError(
                        f"space.{kind}.{name}: method grid needs a list of values;"
                        " a {low, high} range needs method random"
                    )
        return self


class Params(_Strict):
    seed: int = 42
    paths: Paths
    data: DataSettings = DataSettings()
    # `validate` in params.yaml; a field of that name would shadow BaseModel.validate.
    validation: ValidateSettings = Field(default=ValidateSettings(), alias="validate")
    split: SplitSettings = SplitSettings()
    model: ModelSettings
    evaluate: EvaluateSettings = EvaluateSettings()
    explain: ExplainSettings = ExplainSettings()
    tracking: TrackingSettings = TrackingSettings()
    serve: ServeSettings = ServeSettings()
    registry: RegistrySettings = RegistrySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    tune: TuneSettings = TuneSettings()

    @property
    def contract(self) -> Contract:
        """The data contract `data.contract` names, read once per file version (relative to
        the project root; a copy of these params with another path reads that path).
        Also checks what params.yaml asks of it: the primary metric, a model kind of its
        task and the number of features a request must give."""
        contract = _read_contract(self.data.contract)
        self.evaluate.primary_for(contract.task)
        regression = contract.task == "regression"
        if isinstance(self.model, LogisticRegression if regression else Ridge):
            other = "ridge" if regression else "logistic_regression"
            raise PipelineError(
                f"model.kind: {self.model.kind} does not do {contract.task}"
                f" ({self.data.contract}); choose random_forest, hist_gradient_boosting or {other}"
            )
        if self.serve.min_present_features > len(contract.features):
            raise PipelineError(
                f"serve.min_present_features: {self.serve.min_present_features} is more than"
                f" the {len(contract.features)} features of {self.data.contract}"
            )
        return contract

    @property
    def primary_metric(self) -> str:
        """evaluate.primary_metric resolved for the contract's task."""
        return self.evaluate.primary_for(self.contract.task)


def _read_contract(path: Path) -> Contract:
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = -1  # load_contract names the missing file
    return _cached_contract(path.resolve(), stamp, path)


@lru_cache(maxsize=16)
def _cached_contract(resolved: Path, stamp: int, path: Path) -> Contract:
    """Keyed by the file and its modification time: an edited file is read again. Errors
    name `path` as params.yaml wrote it."""
    del resolved, stamp
    return load_contract(path)


def _describe(error: ValidationError, source: Path) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def parse_params(raw: object, source: Path = DEFAULT_PARAMS) -> Params:
    """Validate an already-loaded mapping; errors name every offending key."""
    if not isinstance(raw, dict):
        raise PipelineError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise PipelineError(_describe(error, source)) from None


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: parameters file not found") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PipelineError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, path)


# --- Writing model values back (`mlops tune --apply`): the one edit code makes to params.yaml.
# Text, not a YAML round trip: comments, order and spacing are the reviewer's, and the pull
# request's diff must show the changed values and nothing else.

_MODEL_SECTION = re.compile(r"model:[ \t]*(#.*)?\r?\n?")


def _scalar(value: Any) -> str:
    """A value as YAML reads it back (1e-05 is a string to YAML 1.1: it is written 1.0e-05)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def set_model_values(text: str, values: Mapping[str, Any]) -> str:
    """params.yaml's text with `model.<name>: value` for each value, every other byte kept:
    a value is replaced in place (its comment kept) or, when absent, added to the section."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _MODEL_SECTION.fullmatch(line)), None)
    if start is None:
        raise PipelineError("params.yaml: no block `model:` section to write the values into")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), None)
    block = lines[start + 1 : end]
    keys = [i for i, line in enumerate(block) if re.match(r"[ \t]+[A-Za-z_]", line)]
    found_indent = re.match(r"[ \t]+", block[keys[0]]) if keys else None
    indent = found_indent.group() if found_indent else "  "
    for name, value in values.items():
        pattern = re.compile(
            rf"({indent}{re.escape(name)}:[ \t]*)[^#\r\n]*?([ \t]*#[^\r\n]*)?(\r?\n)?"
        )
        matched = next(filter(None, (pattern.fullmatch(line) for line in block)), None)
        if matched is not None:
            head, comment, newline = matched.groups()
            block[block.index(matched.string)] = (
                f"{head}{_scalar(value)}{comment or ''}{newline or ''}"
            )
            continue
        after = keys[-1] + 1 if keys else 0
        if after and not block[after - 1].endswith("\n"):
            block[after - 1] += "\n"
        block.insert(after, f"{indent}{name}: {_scalar(value)}\n")
        keys.append(after)
    return "".join([*lines[: start + 1], *block, *(lines[end:] if end is not None else [])])


def write_model_values(path: Path, values: Mapping[str, Any]) -> str:
    """Set `model.<name>` in the params file to these values, check the result reads back as
    exactly that change and validates, write it; returns the unified diff ("" if unchanged)."""
    from mlops_template import storage

    before = path.read_text(encoding="utf-8")
    current = parse_params(yaml.safe_load(before), path).model
    # Only what differs, defaults included: the best being the current values is no change.
    values = {name: value for name, value in values.items() if getattr(current, name) != value}
    after = set_model_values(before, values)
    expected = yaml.safe_load(before)
    expected["model"] = {**expected["model"], **values}
    model = parse_params(yaml.safe_load(after), path).model
    if yaml.safe_load(after) != expected or any(
        getattr(model, name) != value for name, value in values.items()
    ):
        raise PipelineError(
            f"{path}: could not write {values} into its model section safely; set them by hand"
        )
    if after != before:
        storage.write_text(path, after)
    diff = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), str(path), str(path)
    )
    return "".join(diff)
