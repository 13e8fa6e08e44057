"""The served model: loaded once, after its sha256 is checked against the expected one.

The expected sha256 is passed in (the service takes it from MLOPS_MODEL_SHA256, or the pin
baked into the image; __main__.py), not read from beside the model; only a caller that
passes none falls back to the record beside the file. The file is read once and the same
bytes are hashed and deserialized.

With the data contract, loading also checks that the model fits it (a classifier of the
contract's classes, or a regressor; trained on the contract's features, each as the kind the
contract gives it, numeric or categorical): a model from another contract is a load error
that readiness reports, not a 500 at the first request.
The answer for a row follows the task: regression returns the number; multiclass the most
probable class; binary the positive class when its probability reaches `threshold`
(evaluate.threshold), the other class otherwise (metric_facts.decide, the evaluate stage's
rule too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template import io
from mlops_template.errors import PipelineError
from mlops_template.metric_facts import decide
from mlops_template.schema import Contract

Answer = tuple[str | float, dict[str, float] | None]  # the prediction, the probabilities


def _check_fits(pipeline: Any, classes: tuple[str, ...], contract: Contract) -> None:
    """Refuse a model that does not answer the contract's question."""
    if contract.is_classification and not classes:
        raise PipelineError(f"the model is a regressor; the contract's task is {contract.task}")
    if not contract.is_classification and classes:
        raise PipelineError("the model is a classifier; the contract's task is regression")
    if classes and set(classes) != set(contract.classes):
        raise PipelineError(
            f"the model predicts {list(classes)}; the contract's classes are"
            f" {list(contract.classes)}"
        )
    trained = getattr(pipeline, "feature_names_in_", None)
    if trained is not None and set(map(str, trained)) != set(contract.feature_names()):
        raise PipelineError(
            f"the model was trained on {sorted(map(str, trained))}; the contract's features"
            f" are {sorted(contract.feature_names())}"
        )
    kinds = _trained_kinds(pipeline)
    if kinds is None:
        return
    wanted = {
        "numeric": set(contract.numeric_features()),
        "categorical": set(contract.categorical_features()),
    }
    changed = [
        f"{name} (trained as {kind}, the contract says {other})"
        for kind, other in (("numeric", "categorical"), ("categorical", "numeric"))
        for name in sorted(kinds[kind] & wanted[other])
    ]
    if changed or kinds != wanted:
        detail = ", ".join(changed) or (
            f"trained numeric {sorted(kinds['numeric'])} and categorical"
            f" {sorted(kinds['categorical'])}; the contract's are {sorted(wanted['numeric'])}"
            f" and {sorted(wanted['categorical'])}"
        )
        raise PipelineError(
            f"the model treats features as another kind than the contract: {detail}"
        )


def _trained_kinds(pipeline: Any) -> dict[str, set[str]] | None:
    """The columns the fitted preprocessing treats as numeric and as categorical (the
    ColumnTransformer `preprocess` with transformers `numeric` and `categorical`, as
    stages/train.py builds it); None for a pipeline of another shape."""
    try:
        preprocess = pipeline.named_steps["preprocess"]
        transformers = getattr(preprocess, "transformers_", None) or preprocess.transformers
        listed = {name: columns for name, _, columns in transformers}
        kinds = {kind: listed[kind] for kind in ("numeric", "categorical")}
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    out: dict[str, set[str]] = {}
    for kind, columns in kinds.items():
        if isinstance(columns, np.ndarray):
            columns = columns.tolist()
        if isinstance(columns, str) or not isinstance(columns, list | tuple):
            return None  # a slice, a callable, a single column: not the shape train.py builds
        if not all(isinstance(column, str) for column in columns):
            return None
        out[kind] = set(columns)
    return out


@dataclass(frozen=True)
class ServedModel:
    pipeline: Any
    classes: tuple[str, ...]  # empty for a regressor
    version: str  # the first 12 hex digits of the model file's sha256
    columns: tuple[str, ...] = ()  # the features, in the contract's order
    numeric: frozenset[str] = frozenset()
    positive: str | None = None  # binary: the class `threshold` applies to
    threshold: float = 0.5

    @classmethod
    def load(
        cls,
        path: Path,
        expected_sha256: str | None = None,
        contract: Contract | None = None,
        threshold: float = 0.5,
    ) -> ServedModel:
        """Without a contract (a quick look at a model file) the columns come from the model
        and their kinds from the values scored; the binary threshold is then not applied."""
        expected = expected_sha256 or io.read_recorded_sha256(path)
        pipeline = io.load_verified_model(path, expected)
        # One request is a few rows: thread pools cost more than they save. Scoring in a
        # single thread also leaves the other core to the event loop.
        if "model__n_jobs" in pipeline.get_params():
            pipeline.set_params(model__n_jobs=1)
        is_classifier = hasattr(pipeline, "predict_proba") and hasattr(pipeline, "classes_")
        classes = tuple(str(name) for name in pipeline.classes_) if is_classifier else ()
        if contract is None:
            columns = tuple(map(str, getattr(pipeline, "feature_names_in_", ())))
            return cls(pipeline, classes, expected[:12], columns)
        _check_fits(pipeline, classes, contract)
        return cls(
            pipeline,
            classes,
            expected[:12],
            tuple(contract.feature_names()),
            frozenset(contract.numeric_features()),
            contract.positive if contract.task == "binary" else None,
            threshold,
        )

    @property
    def is_classifier(self) -> bool:
        return bool(self.classes)

    def frame(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Records already validated against the request model, as the pipeline's input."""
        columns = list(self.columns) or None
        frame = pd.DataFrame.from_records(list(records), columns=columns)
        for name in frame.columns:
            numeric = name in self.numeric or (
                not self.numeric and pd.api.types.is_numeric_dtype(frame[name])
            )
            frame[name] = frame[name].astype("float64" if numeric else object)
        return frame

    def score(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Class probabilities (rows x classes) of a classifier; a regressor's predictions."""
        if self.is_classifier:
            return self.predict_proba(records)
        return np.asarray(self.pipeline.predict(self.frame(records)), dtype=float)

    def predict_proba(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.pipeline.predict_proba(self.frame(records))

    def decode(self, row: Any) -> Answer:
        """One row of `score`: the prediction and, for a classifier, each class's probability."""
        if not self.is_classifier:
            return float(row), None
        probabilities = {name: float(p) for name, p in zip(self.classes, row, strict=True)}
        chosen = decide(row, self.classes, self.positive, self.threshold)
        return self.classes[chosen], probabilities
