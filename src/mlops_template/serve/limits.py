"""What a request may cost: body limits derived from the contract, and validation that stays
cheap and small whatever the body holds.

Body limits. The widest valid record, as compact JSON, is computed from the data contract's
features (every numeric field written as the longest float, every categorical field as its
longest category): about 200 bytes for the six penguin features. A record may take HEADROOM
times that (whitespace, pretty-printing, long decimal expansions), /predict one record and
/predict/batch `serve.max_batch_rows` of them, each plus ENVELOPE_BYTES; `serve.max_body_bytes`
caps both.

Validation. Pydantic builds one error object per problem, in one call that holds the GIL: a
record with a hundred thousand unknown keys stalled every other request and got an answer
of megabytes (tests/unit/serve/test_limits.py sends one). Here unknown keys are found
with one set operation per record and never reach pydantic; each record is validated on its
own (so a batch is many short calls, and a thread doing it hands the GIL back to the event
loop between them); only the first `serve.max_validation_errors` problems are kept, with the
count of all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from pydantic import BaseModel, ValidationError

from mlops_template.config import ServeSettings
from mlops_template.contract import ColumnSpec

HEADROOM = 4
ENVELOPE_BYTES = 1024
MAX_KEY_CHARS = 64  # an unknown key is named in the error, cut to this length
WIDEST_FLOAT = -1.7976931348623157e308  # the longest repr a finite float has (24 characters)


def max_record_bytes(features: Iterable[ColumnSpec]) -> int:
    """The compact JSON size of the widest valid record of these features."""
    widest = {
        spec.name: WIDEST_FLOAT
        if spec.kind == "numeric"
        else max(spec.categories, key=len, default="")
        for spec in features
    }
    return len(json.dumps(widest, separators=(",", ":")).encode())


def body_limits(settings: ServeSettings, features: Iterable[ColumnSpec]) -> dict[str, int]:
    """The largest body each route reads (bytes); "" is every other route. An Open Inference
    Protocol request (/v2/models/{name}/infer, v2.py) holds up to `serve.max_batch_rows`
    records as one tensor per feature: no keys per record, but an envelope per feature."""
    features = tuple(features)
    record = HEADROOM * max_record_bytes(features)
    rows = settings.max_batch_rows * (record + 1)
    return {
        "/predict": min(settings.max_body_bytes, ENVELOPE_BYTES + record),
        "/explain": min(settings.max_body_bytes, ENVELOPE_BYTES + record),
        "/predict/batch": min(settings.max_body_bytes, ENVELOPE_BYTES + rows),
        "/v2/models/{name}/infer": min(
            settings.max_body_bytes, ENVELOPE_BYTES * (1 + len(features)) + rows
        ),
        "": min(settings.max_body_bytes, ENVELOPE_BYTES),
    }


def is_json(content_type: bytes | None) -> bool:
    """Whether a body's Content-Type is application/json (parameters such as a charset aside).
    A missing one is not: FastAPI would parse the body as JSON anyway, but the guard answers
    415 rather than guess what a client without a Content-Type meant."""
    if not content_type:
        return False
    return content_type.split(b";")[0].strip().lower() == b"application/json"


@dataclass
class Problems:
    """The first `limit` validation problems, and how many there were in all."""

    limit: int
    shown: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add(self, loc: Sequence[Any], msg: str, kind: str) -> None:
        self.total += 1
        if len(self.shown) < self.limit:
            self.shown.append({"loc": list(loc), "msg": msg, "type": kind})

    @property
    def full(self) -> bool:
        return len(self.shown) >= self.limit

    def payload(self) -> dict[str, Any]:
        """The 422 body: `detail` as FastAPI writes it (capped), plus the count."""
        detail = list(self.shown)
        if self.total > len(self.shown):
            more = self.total - len(self.shown)
            detail.append(
                {"loc": ["body"], "msg": f"{more} more errors not shown", "type": "too_many_errors"}
            )
        return {"detail": detail, "error_count": self.total}


def cap(errors: Sequence[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    """FastAPI's validation errors, capped like ours (the input is never echoed back)."""
    problems = Problems(limit)
    for item in errors:
        problems.add(item["loc"], item["msg"], item["type"])
    return problems.payload()


def _short(key: object) -> str:
    text = str(key)
    return text if len(text) <= MAX_KEY_CHARS else text[:MAX_KEY_CHARS] + "..."


class RequestChecker:
    """Validates a /predict or /predict/batch body as the routes' models would, cheaply."""

    def __init__(self, record: type[BaseModel], max_rows: int, max_errors: int):
        self.record = record
        self.fields = frozenset(record.model_fields)
        self.max_rows = max_rows
        self.max_errors = max_errors

    def check(self, route: str, body: bytes) -> Problems:
        """The problems with `body` for `route` (none: the route's own validation will pass)."""
        problems = Problems(self.max_errors)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
            problems.add(["body"], "body is not valid UTF-8 JSON", "json_invalid")
            return problems
        if route in {"/predict", "/explain"}:  # one record each
            self._record(document, ["body"], problems)
        else:
            self._batch(document, problems)
        return problems

    def _batch(self, document: Any, problems: Problems) -> None:
        if not isinstance(document, dict):
            problems.add(["body"], "Input should be a valid dictionary or object", "model_type")
            return
        self._unknown(document, {"records"}, ["body"], problems)
        records = document.get("records")
        loc = ["body", "records"]
        if "records" not in document:
            problems.add(loc, "Field required", "missing")
        elif not isinstance(records, list):
            problems.add(loc, "Input should be a valid list", "list_type")
        elif not records:
            message = "List should have at least 1 item after validation, not 0"
            problems.add(loc, message, "too_short")
        elif len(records) > self.max_rows:
            problems.add(
                loc,
                f"List should have at most {self.max_rows} items after validation,"
                f" not {len(records)}",
                "too_long",
            )
        else:
            for index, record in enumerate(records):
                self._record(record, [*loc, index], problems)

    def _unknown(
        self, document: dict[str, Any], known: Set[str], loc: list[Any], problems: Problems
    ) -> int:
        """Report unknown keys (the first few by name, all in the count); how many there were."""
        unknown = len(document) - len(document.keys() & known)
        if unknown:
            room = max(0, problems.limit - len(problems.shown))
            named = list(islice((key for key in document if key not in known), room))
            for key in named:
                message = "Extra inputs are not permitted"
                problems.add([*loc, _short(key)], message, "extra_forbidden")
            problems.total += unknown - len(named)
        return unknown

    def validate_records(self, records: Sequence[Any]) -> tuple[list[dict[str, Any]], Problems]:
        """Records built from another request shape (v2.py's tensors), validated one by one
        as /predict/batch validates its records: the valid ones as the routes' models dump
        them (None for a missing nullable feature), and the problems, located [row, field]."""
        problems = Problems(self.max_errors)
        valid: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            try:
                valid.append(self.record.model_validate(record).model_dump())
            except ValidationError as error:
                for item in error.errors(include_input=False, include_url=False):
                    problems.add([index, *item["loc"]], item["msg"], item["type"])
        return valid, problems

    def _record(self, record: Any, loc: list[Any], problems: Problems) -> None:
        if isinstance(record, dict) and self._unknown(record, self.fields, loc, problems):
            record = {key: record[key] for key in self.fields if key in record}
        try:
            self.record.model_validate(record)
        except ValidationError as error:
            for item in error.errors(include_input=False, include_url=False):
                problems.add([*loc, *item["loc"]], item["msg"], item["type"])
