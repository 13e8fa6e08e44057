"""The Open Inference Protocol's tensors (KServe V2), for the contract's features.

Each feature is one input tensor named as the feature, shape [rows, 1] (or [rows]): FP32 for a
numeric feature (any numeric datatype is taken: the values are JSON numbers either way), BYTES
for a categorical one (the category's text). Data is row-major, flat or nested as the
protocol allows. A missing value is JSON null, and an input left out is missing in every row;
the contract then decides whether that is allowed, as it does for /predict.

A request is turned into records (one dict per row) and validated by the same request model
as /predict (limits.RequestChecker), so ranges, categories and `serve.min_present_features`
hold on both protocols. Anything wrong is a TensorError: a 400 `{"error": ...}` naming the
input and the row.

Outputs: a classifier answers `label` (BYTES [rows]) and `probabilities` (FP32 [rows, K], the
columns in the contract's class order), a regressor `prediction` (FP32 [rows]); both answer
`prediction_id` (BYTES [rows]), the id to send feedback with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlops_template.contract import ColumnSpec, Contract
from mlops_template.serve.limits import Problems, RequestChecker

NUMERIC_DATATYPES = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"}
    | {"UINT8", "UINT16", "UINT32", "UINT64"}
)
REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
OUTPUT_KEYS = frozenset({"name", "parameters"})


class TensorError(ValueError):
    """A request the model cannot take: answered 400 `{"error": str(error)}`."""


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    rows: list[dict[str, Any]]  # one record per row, not validated yet
    outputs: tuple[str, ...]  # the outputs to answer, in the order asked


def datatype(spec: ColumnSpec) -> str:
    return "FP32" if spec.kind == "numeric" else "BYTES"


def input_metadata(contract: Contract) -> list[dict[str, Any]]:
    """The model metadata's inputs: one tensor per feature."""
    return [
        {"name": spec.name, "datatype": datatype(spec), "shape": [-1, 1]}
        for spec in contract.features
    ]


def output_metadata(contract: Contract) -> list[dict[str, Any]]:
    """The model metadata's outputs, in the order an answer gives them."""
    if contract.is_classification:
        outputs = [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(contract.classes)]},
        ]
    else:
        outputs = [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]
    return [*outputs, {"name": "prediction_id", "datatype": "BYTES", "shape": [-1]}]


def parse(body: bytes, contract: Contract, max_rows: int) -> InferRequest:
    """The request's rows and the outputs it asks for; TensorError if it is malformed."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        raise TensorError("body is not valid UTF-8 JSON") from None
    _object(document, "the request", REQUEST_KEYS)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise TensorError("id: must be a string")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise TensorError("inputs: must be a non-empty list of tensors")
    specs = {spec.name: spec for spec in contract.features}
    columns: dict[str, list[Any]] = {}
    for index, item in enumerate(inputs):
        name, values = _input(item, index, specs)
        if name in columns:
            raise TensorError(f"input {name}: given twice")
        columns[name] = values
    rows = _rows(columns, max_rows)
    records = [{name: values[row] for name, values in columns.items()} for row in range(rows)]
    return InferRequest(request_id, records, _outputs(document.get("outputs"), contract))


def _object(value: Any, what: str, keys: frozenset[str]) -> None:
    if not isinstance(value, dict):
        raise TensorError(f"{what}: must be a JSON object")
    unknown = sorted(str(key)[:64] for key in value if key not in keys)
    if unknown:
        raise TensorError(f"{what}: unknown field {unknown[0]!r}; known: {', '.join(sorted(keys))}")
    parameters = value.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise TensorError(f"{what}: parameters must be a JSON object")


def _input(item: Any, index: int, specs: dict[str, ColumnSpec]) -> tuple[str, list[Any]]:
    """One input tensor's feature name and values, checked against the feature's kind."""
    _object(item, f"inputs[{index}]", INPUT_KEYS)
    name = item.get("name")
    if not isinstance(name, str):
        raise TensorError(f"inputs[{index}]: name must be a string")
    spec = specs.get(name)
    if spec is None:
        raise TensorError(
            f"input {name[:64]!r}: the model has no such input; its inputs are {', '.join(specs)}"
        )
    for key in ("shape", "datatype", "data"):
        if key not in item:
            raise TensorError(f"input {name}: {key} is missing")
    given = item["datatype"]
    numeric = spec.kind == "numeric"
    if (given not in NUMERIC_DATATYPES) if numeric else (given != "BYTES"):
        raise TensorError(
            f"input {name}: datatype {str(given)[:16]!r}; expected {datatype(spec)}"
            f" ({'a number' if numeric else 'the category text'})"
        )
    rows = _shape(item["shape"], name)
    values = _flatten(item["data"], name)
    if len(values) != rows:
        raise TensorError(f"input {name}: shape holds {rows} values; data has {len(values)}")
    for row, value in enumerate(values):
        if value is not None and not _fits(value, numeric):
            kind = "numbers" if numeric else "strings"
            raise TensorError(
                f"input {name}, row {row}: {given} data must be {kind} (null for missing);"
                f" got {type(value).__name__}"
            )
    return name, values


def _shape(shape: Any, name: str) -> int:
    """The rows a feature tensor's shape holds: [rows] or [rows, 1]."""
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(size, int) and not isinstance(size, bool) for size in shape)
        or min(shape) < 0
        or shape[1:] not in ([], [1])
    ):
        raise TensorError(f"input {name}: shape must be [rows] or [rows, 1]; got {shape!r:.40}")
    return int(shape[0])


def _flatten(data: Any, name: str) -> list[Any]:
    """Row-major values, given flat ([1, 2]) or nested by the shape ([[1], [2]])."""
    if not isinstance(data, list):
        raise TensorError(f"input {name}: data must be a list")
    values: list[Any] = []
    for value in data:
        if isinstance(value, list):
            values.extend(value)
        else:
            values.append(value)
    return values


def _fits(value: Any, numeric: bool) -> bool:
    if numeric:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _rows(columns: dict[str, list[Any]], max_rows: int) -> int:
    counts = {len(values) for values in columns.values()}
    if len(counts) > 1:
        sizes = ", ".join(f"{name} {len(values)}" for name, values in columns.items())
        raise TensorError(f"inputs: every input must hold as many rows; got {sizes}")
    rows = counts.pop()
    if not 1 <= rows <= max_rows:
        raise TensorError(f"inputs: from 1 to {max_rows} rows (serve.max_batch_rows); got {rows}")
    return rows


def _outputs(asked: Any, contract: Contract) -> tuple[str, ...]:
    known = [output["name"] for output in output_metadata(contract)]
    if asked is None:
        return tuple(known)
    if not isinstance(asked, list):
        raise TensorError("outputs: must be a list")
    names = []
    for index, item in enumerate(asked):
        _object(item, f"outputs[{index}]", OUTPUT_KEYS)
        name = item.get("name")
        if name not in known:
            raise TensorError(
                f"output {str(name)[:64]!r}: the model's outputs are {', '.join(known)}"
            )
        names.append(name)
    return tuple(names)


def validate(request: InferRequest, checker: RequestChecker) -> list[dict[str, Any]]:
    """The request's records, validated as /predict validates one (TensorError if not)."""
    records, problems = checker.validate_records(request.rows)
    if problems.total:
        raise TensorError(describe(problems))
    return records


def describe(problems: Problems) -> str:
    """The first problem, located by input and row, and how many more there were."""
    first = problems.shown[0]
    row, *rest = first["loc"]
    where = f"input {rest[0]}, row {row}" if rest else f"row {row}"
    more = f" (and {problems.total - 1} more problems)" if problems.total > 1 else ""
    return f"{where}: {first['msg']}{more}"


def encode(
    answers: Sequence[dict[str, Any]], contract: Contract, wanted: Sequence[str]
) -> list[dict[str, Any]]:
    """The response's output tensors, from the service's answers (service.Service.predict)."""
    rows = len(answers)
    tensors: dict[str, dict[str, Any]] = {
        "prediction_id": _tensor(
            "prediction_id", "BYTES", [rows], [a["prediction_id"] for a in answers]
        )
    }
    if contract.is_classification:
        classes = contract.classes
        labels = [answer["prediction"] for answer in answers]
        tensors["label"] = _tensor("label", "BYTES", [rows], labels)
        flat = [answer["probabilities"][name] for answer in answers for name in classes]
        tensors["probabilities"] = _tensor("probabilities", "FP32", [rows, len(classes)], flat)
    else:
        numbers = [float(answer["prediction"]) for answer in answers]
        tensors["prediction"] = _tensor("prediction", "FP32", [rows], numbers)
    return [tensors[name] for name in wanted]


def _tensor(name: str, kind: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": kind, "shape": shape, "data": data}
