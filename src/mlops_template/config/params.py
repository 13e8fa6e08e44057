"""The whole of params.yaml as one typed object, `Params`, read and checked once.

Each section's model lives in the module of its group (pipeline.py, model.py, operations.py,
search.py); this module puts them together, checks what spans sections (a primary metric of
the contract's task, a model kind that does the task), and reads the file (`load_params`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from mlops_template import PipelineError
from mlops_template.config.base import Section
from mlops_template.config.model import (
    LogisticRegression,
    ModelSettings,
    Ridge,
)
from mlops_template.config.operations import (
    MonitoringSettings,
    RegistrySettings,
    ServeSettings,
    TrackingSettings,
)
from mlops_template.config.pipeline import (
    DataSettings,
    EvaluateSettings,
    ExplainSettings,
    Paths,
    SplitSettings,
    ValidateSettings,
)
from mlops_template.config.search import (
    TuneSettings,
)
from mlops_template.contract import Contract, load_contract

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
