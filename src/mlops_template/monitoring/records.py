"""The prediction log's line format, in one place: one `PredictionRecord` per JSON line.

The service writes one record per answered request (`role` champion) and, with a challenger
scored in shadow, one per shadow-scored request under the same `id` (`role` challenger).
`mlops monitor drift` reads them back, `mlops monitor fetch` mirrors the files, and the tests build
them here rather than by hand. A line is a compact JSON object:

    {"ts": <unix seconds>, "id": <prediction id>, "role": "champion" | "challenger",
     "model_version": <version>, "features": {<name>: <value>, ...},
     "prediction": <class name or number>, "probabilities": {<class>: <share>, ...}}

`probabilities` is a classifier's only: a regressor's record omits the key.

A frozen dataclass, not a pydantic model: the service builds one per prediction on the
request path, where a plain constructor costs next to nothing, and parsing needs only a few
type checks whose messages name the field (the contract-specific checks, a feature of the
wrong kind or a class the contract lacks, are drift's: logs/`record_problem`). Standard
library only, so the serving image (no pandas, no SciPy) imports it.

The log's files are named here too: the live file and its rotated predecessors `<name>.N`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_args

Role = Literal["champion", "challenger"]
Label = str | float  # a prediction or a feedback label: a class, or a regression value
ROLES: tuple[str, ...] = get_args(Role)


class RecordError(ValueError):
    """A log line that is not a prediction record; the message names the field."""


class NotJSONError(RecordError):
    """A log line that is not JSON at all: corrupt, or cut short while being written."""


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number (not a boolean, which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class PredictionRecord:
    ts: float  # when it was answered (unix seconds)
    id: str  # the prediction id the caller got; a challenger's record repeats the champion's
    role: Role
    model_version: str
    features: Mapping[str, Any]  # the request's record as validated (None: a missing value)
    prediction: Label
    probabilities: Mapping[str, float] | None = None  # a classifier's, per class

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the line, keys in the order the log has always had."""
        line: dict[str, Any] = {
            "ts": self.ts,
            "id": self.id,
            "role": self.role,
            "model_version": self.model_version,
            "features": self.features,
            "prediction": self.prediction,
        }
        if self.probabilities is not None:
            line["probabilities"] = self.probabilities
        return line

    def to_json(self) -> str:
        """One log line, without the newline: compact JSON. Raises TypeError or ValueError
        for a value JSON cannot hold (the writer drops and counts such a line)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictionRecord:
        """The record of a parsed JSON object; RecordError names the first bad field.
        Other keys are ignored, as readers always have."""
        for name in ("ts", "id", "role", "model_version", "features", "prediction"):
            if name not in data:
                raise RecordError(f"a prediction record needs `{name}`")
        if not is_number(data["ts"]):
            raise RecordError("`ts` must be a number (unix seconds)")
        for name in ("id", "model_version"):
            if not isinstance(data[name], str):
                raise RecordError(f"`{name}` must be a string")
        if data["role"] not in ROLES:
            raise RecordError(f"`role` must be one of {', '.join(ROLES)}, not {data['role']!r}")
        if not isinstance(data["features"], dict):
            raise RecordError("`features` must be a JSON object")
        prediction = data["prediction"]
        if not (isinstance(prediction, str) or is_number(prediction)):
            raise RecordError("`prediction` must be a class name or a finite number")
        probabilities = data.get("probabilities")
        if probabilities is not None and not (
            isinstance(probabilities, dict) and all(map(is_number, probabilities.values()))
        ):
            raise RecordError("`probabilities` must be a JSON object of numbers")
        return cls(
            data["ts"],
            data["id"],
            data["role"],
            data["model_version"],
            data["features"],
            prediction,
            probabilities,
        )

    @classmethod
    def from_json(cls, line: str) -> PredictionRecord:
        """The record of one log line; RecordError says what is wrong with it."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise NotJSONError(f"not a JSON prediction record ({error})") from None
        if not isinstance(data, dict):
            raise RecordError("a prediction record must be a JSON object")
        return cls.from_dict(data)


def rotated_index(name: str, log_name: str) -> int | None:
    """N for a rotated file named `<log_name>.N` (as the service's log names them), else None."""
    suffix = name.removeprefix(f"{log_name}.")
    return int(suffix) if suffix != name and suffix.isdigit() else None


def rotated_name(log_name: str, index: int) -> str:
    """The name of the log's N-th rotated file (1 is the newest)."""
    return f"{log_name}.{index}"


def log_files(path: Path) -> list[Path]:
    """The log and its rotated predecessors, oldest first (`.5` ... `.1`, then the live file)."""
    numbered = [
        (index, file)
        for file in path.parent.glob(f"{path.name}.*")
        if (index := rotated_index(file.name, path.name)) is not None
    ]
    rotated = [file for _, file in sorted(numbered, reverse=True)]
    return [*rotated, path] if path.is_file() else rotated
