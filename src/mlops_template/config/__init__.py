"""params.yaml -> typed, validated settings, parsed once.

Every tunable of the pipeline lives in params.yaml. This package is the only place that knows
its layout; stages receive the typed objects below and never read YAML themselves.
Unknown keys and wrong types are errors that name the key (pydantic, `extra="forbid"`).

One module per group of sections: pipeline.py (paths, data, validate, split, evaluate,
explain), model.py (the model kinds), operations.py (tracking, serve, monitoring, registry),
search.py (tune), write_back.py (`mlops tune --apply`'s edit). Everything is imported from
here: `from mlops_template.config import Params`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from mlops_template.config.base import Section
from mlops_template.config.model import (
    MODEL_KINDS,
    HistGradientBoosting,
    LogisticRegression,
    ModelSettings,
    RandomForest,
    Ridge,
)
from mlops_template.config.operations import (
    MonitoringSettings,
    RegistrySettings,
    ServeSettings,
    TrackingSettings,
)
from mlops_template.config.pipeline import (
    DATA_SUFFIXES,
    DataSettings,
    EvaluateSettings,
    ExplainSettings,
    Paths,
    PrimaryMetric,
    SplitSettings,
    ValidateSettings,
)
from mlops_template.config.search import (
    NOT_SEARCHED,
    Choices,
    Range,
    TuneSettings,
    TuneSpace,
    check_space,
    number_type,
    searchable,
)
from mlops_template.config.write_back import set_model_values, write_model_values
from mlops_template.errors import PipelineError
from mlops_template.metric_facts import TASK_METRICS
from mlops_template.schema import Contract, load_contract

__all__ = [
    "DATA_SUFFIXES",
    "DEFAULT_PARAMS",
    "MODEL_KINDS",
    "NOT_SEARCHED",
    "TASK_METRICS",
    "Choices",
    "DataSettings",
    "EvaluateSettings",
    "ExplainSettings",
    "HistGradientBoosting",
    "LogisticRegression",
    "ModelSettings",
    "MonitoringSettings",
    "Params",
    "Paths",
    "PrimaryMetric",
    "RandomForest",
    "Range",
    "RegistrySettings",
    "Ridge",
    "Section",
    "ServeSettings",
    "SplitSettings",
    "TrackingSettings",
    "TuneSettings",
    "TuneSpace",
    "ValidateSettings",
    "check_space",
    "load_params",
    "number_type",
    "parse_params",
    "searchable",
    "set_model_values",
    "write_model_values",
]

DEFAULT_PARAMS = Path("params.yaml")


class Params(Section):
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

    @field_validator("tune")
    @classmethod
    def _grid_of_model_kind(cls, tune: TuneSettings, info: ValidationInfo) -> TuneSettings:
        """Only model.kind's space is searched, so only it must suit tune.method (`model`,
        declared before `tune`, is validated first; when it is invalid, its error says so)."""
        model = info.data.get("model")
        if model is not None:
            tune.check_grid(model.kind)
        return tune

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
