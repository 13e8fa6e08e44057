"""POST /explain: which features moved one record's prediction, and how far.

The image has no shap (nor scikit-learn, numba): the values are interventional Shapley values
computed in NumPy (mlops_template.evaluation.shapley) over the served model itself, ONNX or
scikit-learn, with the training rows the explain stage wrote (`paths.background`) as the
background. A record's missing values are scored as /predict scores them (ServedModel.feed
and .frame build both).

Kept off the predict path: an explanation is 2^n coalitions x the background rows of model
input (3,200 rows for the penguins), so it never goes through the micro-batcher, runs on its
own threads (serve.max_concurrent_explanations of them, at the lowest CPU priority, calling
the model on at most BATCH_ROWS rows at a time) and, with that many already running, is
answered 503 at once rather than queued behind them. `make bench-explain` measures /predict
with and without explanations running (docs/explanations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from mlops_template import PipelineError
from mlops_template.config import ExplainSettings
from mlops_template.contract import Contract
from mlops_template.evaluation.shapley import Columns, Score, explain_record, top
from mlops_template.serve.model import PROBABILITIES, VARIABLE, ServedModel

Record = dict[str, Any]
# Rows per model call. onnxruntime holds the GIL while it converts text inputs, so smaller
# calls hand the event loop (and /predict) the GIL back sooner; larger ones cost little less.
BATCH_ROWS = 1024


class Contribution(BaseModel):
    feature: str
    value: str | float | None  # the record's value (null: missing)
    contribution: float  # to the explained output, in its units


class Explanation(BaseModel):
    """/explain's answer. base_value + the sum of all features' contributions = output_value
    (only the top_k largest are listed)."""

    prediction: str | float
    class_: str | None = Field(None, alias="class")  # the class explained (classifiers)
    output: str  # probability (of `class`) | prediction (regressors)
    base_value: float
    output_value: float
    method: str  # exact (every coalition) | permutation (sampled)
    background_rows: int
    contributions: list[Contribution]
    model_version: str


class BusyError(Exception):
    """serve.max_concurrent_explanations explanations are running already: 503 at once."""


class ClassError(ValueError):
    """A `class` the model does not predict: 422 naming it."""


def load_background(path: Path, contract: Contract) -> list[Record]:
    """The explain stage's background rows (JSON records in the raw feature space)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: no background rows for /explain ({error})") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    names = contract.feature_names()
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise PipelineError(f"{path}: `rows` is not a non-empty list of records")
    for number, row in enumerate(rows):
        if set(row) != set(names):
            raise PipelineError(
                f"{path}: row {number} has {sorted(row)}; the contract's features are"
                f" {sorted(names)}: run the explain stage again"
            )
    return rows


def columns(model: ServedModel, records: Sequence[Mapping[str, Any]]) -> Columns:
    """Records as one array per feature, in the model's order, as /predict would score them."""
    if model.runtime == "onnx":
        feed = model.feed(records)
        return [feed[node].reshape(-1) for node in model.inputs]
    frame = model.frame(records)
    return [frame[name].to_numpy() for name in model.columns]


def scorer(model: ServedModel) -> Score:
    """The served model's probabilities (rows x classes) or predictions, on columns."""
    if model.runtime == "onnx":
        output = PROBABILITIES if model.is_classifier else VARIABLE

        def run_onnx(values: Columns) -> np.ndarray:
            feed = {
                node: column.reshape(-1, 1).astype(np.float32 if column.dtype != object else object)
                for node, column in zip(model.inputs, values, strict=True)
            }
            (scores,) = model.pipeline.run([output], feed)
            return np.asarray(scores, dtype=float)

        return run_onnx

    def run_sklearn(values: Columns) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame(dict(zip(model.columns, values, strict=True)))
        if model.is_classifier:
            return np.asarray(model.pipeline.predict_proba(frame), dtype=float)
        return np.asarray(model.pipeline.predict(frame), dtype=float)

    return run_sklearn


def explain(
    model: ServedModel,
    record: Record,
    background: Sequence[Mapping[str, Any]],
    settings: ExplainSettings,
    wanted: str | None = None,
) -> dict[str, Any]:
    """The answer for one validated record: the prediction, the explained output's base value
    and value, and its top_k contributions (feature, the record's value, contribution)."""
    if wanted is not None and wanted not in model.classes:
        known = ", ".join(model.classes) if model.classes else "none: the model is a regressor"
        raise ClassError(f"class {wanted!r} is not one the model predicts ({known})")
    result = explain_record(
        scorer(model),
        columns(model, [record]),
        columns(model, background),
        settings.exact_max_features,
        settings.permutations,
        max_rows=BATCH_ROWS,
    )
    predicted, _ = model.decode(model.score([record])[0])
    if model.is_classifier:
        explained = wanted if wanted is not None else str(predicted)
        k = model.classes.index(explained)
    else:
        explained, k = None, 0
    values = result.values[:, k]
    answer: dict[str, Any] = {"prediction": predicted}
    if explained is not None:
        answer["class"] = explained
    return answer | {
        "output": "probability" if model.is_classifier else "prediction",
        "base_value": float(result.base[k]),
        "output_value": float(result.output[k]),
        "method": result.method,
        "background_rows": len(background),
        "contributions": [
            {
                "feature": model.columns[i],
                "value": record.get(model.columns[i]),
                "contribution": float(values[i]),
            }
            for i in top(values, settings.top_k)
        ],
    }


def _lower_priority() -> None:
    """This thread's CPU priority lowered as far as it goes (Linux: a thread's own nice
    value): when explanations and the event loop want the same core, the loop gets it."""
    # Not Linux, or not allowed: the cap still bounds what explanations take.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Explainer:
    """Explanations on their own threads, at most `limit` at once (beyond: BusyError)."""

    def __init__(
        self, background: Sequence[Mapping[str, Any]] | None, settings: ExplainSettings, limit: int
    ):
        self.background = background
        self.settings = settings
        self.limit = limit
        self.running = 0
        self.pool = ThreadPoolExecutor(
            max_workers=limit, thread_name_prefix="explain", initializer=_lower_priority
        )

    async def explain(
        self, model: ServedModel, record: Record, wanted: str | None
    ) -> dict[str, Any]:
        if self.running >= self.limit:
            raise BusyError(f"{self.limit} explanations running already; try again")
        if self.background is None:
            raise BusyError("no background rows (paths.background): run the explain stage")
        self.running += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self.pool, explain, model, record, self.background, self.settings, wanted
            )
        finally:
            self.running -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
