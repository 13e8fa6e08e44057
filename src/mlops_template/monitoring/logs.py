"""Reading what production left behind: the prediction log (rotated files included) and the
labelled feedback, for `mlops monitor drift`.

A line that is not a prediction record (records.py) is an error naming the file, the line
and what is wrong: the log is corrupt. Except the last file's unfinished last line, which
the service may be writing right now. Records that are well formed but do not fit the
current contract (logged under an earlier one: a feature added or dropped, a column of
another kind, other classes) are skipped and counted by reason; only when none fits is that
an error.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd

from mlops_template import PipelineError
from mlops_template.contract import Contract, as_category
from mlops_template.monitoring.records import (
    Label,
    NotJSONError,
    PredictionRecord,
    RecordError,
    is_number,
    log_files,
)


@dataclass
class Traffic:
    """Logged predictions: the champion's (newest `window_rows`) and the shadow challenger's."""

    champion: list[PredictionRecord]
    challenger: dict[str, PredictionRecord]  # by prediction id
    files: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # records that do not fit, by reason


def records_in(path: Path, last_file: bool) -> Iterator[tuple[int, PredictionRecord]]:
    """The file's records with their line numbers. A line that is not a record is an error
    (the log is corrupt), except the last file's unfinished last line (JSON cut short; a
    complete JSON line that is not a record is an error there too)."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = PredictionRecord.from_json(line)
        except RecordError as error:
            cut_short = isinstance(error, NotJSONError) and not text.endswith("\n")
            if cut_short and last_file and number == len(lines):
                break  # the line the service is writing right now
            raise PipelineError(f"{path}:{number}: {error}") from None
        yield number, record


def record_problem(record: PredictionRecord, contract: Contract) -> str | None:
    """Why a logged record does not fit the current contract (None if it fits): it was logged
    under an earlier one (a feature added, dropped or of another kind, another class set).
    The reason names columns, not values, so that records are counted by reason."""
    features = record.features
    missing = [name for name in contract.feature_names() if name not in features]
    if missing:
        return f"features lack {', '.join(missing)}"
    extra = sorted(map(str, set(features) - set(contract.feature_names())))
    if extra:
        return f"features the contract does not name: {', '.join(extra)}"
    for spec in contract.features:
        value = features[spec.name]
        if value is None:
            continue
        if spec.kind == "numeric" and not is_number(value):
            return f"{spec.name} is not a number (the contract's kind is numeric)"
        if spec.kind == "categorical" and as_category(value, spec.categories) is None:
            return f"{spec.name} is not one of the contract's categories"
    prediction = record.prediction
    if contract.is_classification and as_category(prediction, contract.classes) is None:
        return "the prediction is not one of the contract's classes"
    if not contract.is_classification and not is_number(prediction):
        return "the prediction is not a number (the task is regression)"
    return None


def read_traffic(path: Path, window_rows: int, contract: Contract) -> Traffic:
    """The newest `window_rows` champion records that fit the contract, and the challenger's.
    Records that do not fit (logged under an earlier contract; rotated logs keep them for
    long) are skipped and counted by reason; if none fits, that is an error saying why."""
    files = log_files(path)
    if not files:
        raise PipelineError(
            f"{path}: no prediction log found (serve.prediction_log); fetch production's"
            " first (`make fetch-monitoring`, then `mlops monitor drift --fetched`)"
        )
    champion: deque[PredictionRecord] = deque(maxlen=window_rows)
    challenger: dict[str, PredictionRecord] = {}
    skipped: dict[str, int] = {}
    fitting = 0
    first_misfit = ""
    for index, file in enumerate(files):
        for number, record in records_in(file, index == len(files) - 1):
            problem = record_problem(record, contract)
            if problem:
                skipped[problem] = skipped.get(problem, 0) + 1
                first_misfit = first_misfit or f"{file}:{number}"
                continue
            fitting += 1
            if record.role == "challenger":
                challenger[record.id] = record
            else:
                champion.append(record)
    if skipped and not fitting:
        raise PipelineError(
            f"{path}: none of the {sum(skipped.values())} logged records fits the data contract"
            f" ({contract.name}; first at {first_misfit}): {reasons(skipped)}. They were logged"
            " under another contract; drift needs traffic served under this one"
        )
    return Traffic(list(champion), challenger, [str(file) for file in files], skipped)


def reasons(skipped: dict[str, int]) -> str:
    """The reasons records were skipped, the most frequent first, each with its count."""
    ranked = sorted(skipped.items(), key=lambda item: -item[1])
    return "; ".join(f"{reason} ({count})" for reason, count in ranked)


def _label(value: object, contract: Contract) -> Label | None:
    """A feedback label as the task needs it (a class name, or a finite number); None if it
    is not one. CSV labels arrive as text; a JSON class may be a boolean or a number."""
    if contract.is_classification:
        return as_category(value, contract.classes)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return float(value) if is_number(value) else None


def _feedback_rows(path: Path) -> Iterable[Any]:
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str)
        return cast(list[dict[str, Any]], frame.to_dict("records"))
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise PipelineError(f"{path}:{number}: not JSON ({error})") from None
    return rows


def read_feedback(path: Path, contract: Contract) -> dict[str, Label]:
    """Labels that arrived later, by prediction id. JSONL (`{"id", "label"}`) or CSV."""
    if not path.is_file():
        return {}
    wanted = (
        f"one of {', '.join(contract.classes)}"
        if contract.is_classification
        else f"a number ({contract.target.name})"
    )
    labels: dict[str, Label] = {}
    for number, row in enumerate(_feedback_rows(path), start=1):
        if not isinstance(row, dict) or "id" not in row or "label" not in row:
            raise PipelineError(f"{path}: row {number} needs `id` and `label`")
        label = _label(row["label"], contract)
        if label is None:
            raise PipelineError(f"{path}: row {number}: label {row['label']!r} is not {wanted}")
        labels[str(row["id"])] = label
    return labels
