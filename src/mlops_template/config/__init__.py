"""params.yaml -> typed, validated settings, parsed once.

Every tunable of the pipeline lives in params.yaml. This package is the only place that knows
its layout; stages receive the typed objects below and never read YAML themselves.
Unknown keys and wrong types are errors that name the key (pydantic, `extra="forbid"`).

One module per group of sections: pipeline.py (paths, data, validate, split, evaluate,
explain), model.py (the model kinds), operations.py (tracking, serve, monitoring, registry),
search.py (tune), params.py (the whole file, read once), write_back.py (`mlops model tune
--apply`'s edit). Everything is imported from here: `from mlops_template.config import Params`.
"""

from __future__ import annotations

from mlops_template.config.base import (
    Section,
)
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
from mlops_template.config.params import (
    DEFAULT_PARAMS,
    Params,
    load_params,
    parse_params,
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
from mlops_template.config.write_back import (
    set_model_values,
    write_model_values,
)
from mlops_template.contract.metrics import (
    TASK_METRICS,
)

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
