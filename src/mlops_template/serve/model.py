"""The served model: loaded once, after its sha256 is checked against the expected one.

The expected sha256 is passed in (the service takes it from MLOPS_MODEL_SHA256, or the pin
baked into the image; __main__.py), not read from beside the model; only a caller that
passes none falls back to the record beside the file. The file is read once and the same
bytes are hashed and deserialized.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template import io
from mlops_template.schema import FEATURES, feature_names


def decode(classes: Sequence[str], row: np.ndarray) -> tuple[str, dict[str, float]]:
    """One row of predict_proba: the predicted class and each class's probability."""
    probabilities = {name: float(p) for name, p in zip(classes, row, strict=True)}
    return classes[int(row.argmax())], probabilities


@dataclass(frozen=True)
class ServedModel:
    pipeline: Any
    classes: tuple[str, ...]
    version: str  # the first 12 hex digits of the model file's sha256

    @classmethod
    def load(cls, path: Path, expected_sha256: str | None = None) -> ServedModel:
        expected = expected_sha256 or io.read_recorded_sha256(path)
        pipeline = io.load_verified_model(path, expected)
        # One request is a few rows: thread pools cost more than they save. Scoring in a
        # single thread also leaves the other core to the event loop.
        if "model__n_jobs" in pipeline.get_params():
            pipeline.set_params(model__n_jobs=1)
        version = expected[:12]
        return cls(pipeline, tuple(str(name) for name in pipeline.classes_), version)

    def predict_proba(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Class probabilities for records already validated against the request schema."""
        frame = pd.DataFrame.from_records(list(records), columns=feature_names())
        for spec in FEATURES:
            if spec.kind == "numeric":
                frame[spec.name] = frame[spec.name].astype("float64")
            else:
                frame[spec.name] = frame[spec.name].astype(object)
        return self.pipeline.predict_proba(frame)
