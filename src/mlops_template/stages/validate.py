"""Stage `validate`: enforce the schema lazily, so every violation is reported at once.

On success it writes the validated (type-coerced, extra columns dropped) table and a summary
(rows, missing values per column, duplicates) that the PR report shows. On failure it writes
nothing the next stage could use: it records every violation (column, check, failing values,
count) as JSON at `paths.validation_failure` and raises with a readable summary.

It also writes the contract's data part (`paths.validated_contract`, without the behaviour
checks, intended use and limitations), which the stages after it depend on in place of the
contract file: editing a declaration alone re-runs no training.

Exact duplicate rows (every column equal, missing values equal to each other) are counted and,
by `validate.duplicates`, dropped (the first of each kept) or made a violation. Rows whose
features repeat another row's under a different label (conflicting labels) are counted too;
the split stage keeps rows with identical features on one side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract import Contract, category_text, data_dict
from mlops_template.io import storage

MAX_EXAMPLES = 5
DUPLICATE_CHECK = "no_duplicate_rows"
DuplicatePolicy = Literal["drop", "fail"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Violation:
    column: str
    check: str
    count: int
    failing_values: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "check": self.check,
            "count": self.count,
            "failing_values": self.failing_values,
        }


class DataValidationError(PipelineError):
    def __init__(self, violations: list[Violation], rows: int) -> None:
        self.violations = violations
        self.rows = rows
        super().__init__(summarize(violations, rows))


def _violations(cases: pd.DataFrame) -> list[Violation]:
    """Group pandera's failure cases by (column, check)."""
    cases = cases.copy()
    # A missing column is reported at the table level, with the column name as the "value".
    table_level = cases["column"].isna() | (cases["schema_context"] == "DataFrameSchema")
    missing_col = table_level & (cases["check"] == "column_in_dataframe")
    cases.loc[missing_col, "column"] = cases.loc[missing_col, "failure_case"]
    cases.loc[table_level & ~missing_col, "column"] = "(table)"
    # A value that cannot be converted also fails the dtype and range checks of its column;
    # report the conversion only, not its echoes.
    uncoercible = set(cases.loc[cases["check"].str.startswith("coerce_dtype"), "column"])
    echoes = cases["column"].isin(uncoercible) & ~cases["check"].str.startswith("coerce_dtype")
    cases = cases[~echoes]
    found: list[Violation] = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True, dropna=False):
        values = [
            str(value) for value in group["failure_case"].drop_duplicates().head(MAX_EXAMPLES)
        ]
        found.append(Violation(str(column), str(check), len(group), values))
    return found


def summarize(violations: list[Violation], rows: int) -> str:
    lines = [f"data validation failed: {len(violations)} problem(s) in {rows} row(s)"]
    for item in violations:
        examples = ", ".join(item.failing_values)
        lines.append(
            f"  - column '{item.column}': check {item.check} failed {item.count} time(s)"
            f" (e.g. {examples})"
        )
    return "\n".join(lines)


def duplicate_violation(frame: pd.DataFrame) -> Violation | None:
    """Exact duplicate rows as a table-level violation; each example names a copy and the row
    it repeats by their index in the ingested table (0-based)."""
    if frame.columns.empty:
        return None
    copies = frame.duplicated(keep="first").to_numpy()
    if not copies.any():
        return None
    groups = frame.groupby(list(frame.columns), dropna=False, sort=False, observed=True).ngroup()
    _, first = np.unique(groups.to_numpy(), return_index=True)  # group id -> first position
    examples = [
        f"row {frame.index[pos]} = row {frame.index[first[groups.iloc[pos]]]}"
        for pos in np.flatnonzero(copies)[:MAX_EXAMPLES]
    ]
    return Violation("(table)", DUPLICATE_CHECK, int(copies.sum()), examples)


def category_texts(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Categorical columns as text the way the contract writes categories (schema.
    category_text): a 0/1 column with a gap is read as 1.0, and must still be category `1`."""
    out = frame.copy()
    for spec in contract.columns:
        if spec.kind == "categorical" and spec.name in out.columns:
            column = out[spec.name]
            if column.dropna().map(lambda value: isinstance(value, str)).all():
                continue  # text already (the usual case): nothing to convert
            out[spec.name] = column.astype(object).map(
                lambda value: value if pd.isna(value) else category_text(value)
            )
    return out


def unlabelled(frame: pd.DataFrame, contract: Contract) -> np.ndarray:
    """Rows whose target is missing (a label that has not arrived yet)."""
    if contract.target.name not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame[contract.target.name].isna().to_numpy()


def check(
    frame: pd.DataFrame, contract: Contract, duplicates: DuplicatePolicy = "drop"
) -> pd.DataFrame:
    """Validate `frame` against the contract; raise DataValidationError listing every violation.

    With `duplicates="fail"`, exact duplicate rows are one more violation (counted over the
    schema's columns, extra columns ignored). The returned table still holds any duplicates:
    dropping them is the caller's business (see `run`)."""
    violations: list[Violation] = []
    valid: pd.DataFrame | None = None
    frame = category_texts(frame, contract)
    try:
        valid = contract.dataframe_schema().validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        violations = _violations(errors.failure_cases)
    if duplicates == "fail":
        known = [spec.name for spec in contract.columns if spec.name in frame.columns]
        found = duplicate_violation(frame[known] if valid is None else valid)
        if found is not None:
            violations.append(found)
    if violations or valid is None:
        raise DataValidationError(violations, len(frame))
    return valid


def conflicting_labels(frame: pd.DataFrame, contract: Contract) -> int:
    """Rows whose feature values (missing equal to missing) equal another row's while their
    target differs. `frame` must hold no exact duplicates (its columns are the schema's), so
    rows with equal features are rows with different labels."""
    return int(frame.duplicated(subset=contract.feature_names(), keep=False).sum())


def summary(
    frame: pd.DataFrame, contract: Contract, policy: DuplicatePolicy = "drop", duplicates: int = 0
) -> dict[str, Any]:
    """Deterministic facts about valid data without exact duplicates, for DVC metrics and the
    PR report. `duplicates` is the number of exact copies found before they were dropped."""
    return {
        "passed": True,
        "rows": len(frame),
        "columns": len(frame.columns),
        "missing": {spec.name: int(frame[spec.name].isna().sum()) for spec in contract.columns},
        "duplicates": {
            "policy": policy,
            "rows": duplicates,
            "dropped": duplicates if policy == "drop" else 0,
            "conflicting_labels": conflicting_labels(frame, contract),
        },
        "violations": 0,
    }


def run(params: Params) -> pd.DataFrame:
    frame = storage.read_parquet(params.paths.raw)
    policy = params.validation.duplicates
    no_label = unlabelled(frame, params.contract)
    if params.validation.unlabelled == "drop" and no_label.any():
        frame = frame[~no_label].reset_index(drop=True)
        log.info("dropped %d row(s) without a %s", no_label.sum(), params.contract.target.name)
    try:
        valid = check(frame, params.contract, policy)
    except DataValidationError as failure:
        # Stale outputs of an earlier good run must not feed the next stage either.
        params.paths.validated.unlink(missing_ok=True)
        params.paths.validation_report.unlink(missing_ok=True)
        params.paths.validated_contract.unlink(missing_ok=True)
        storage.write_json(
            params.paths.validation_failure,
            {
                "passed": False,
                "rows": failure.rows,
                "violations": [item.as_dict() for item in failure.violations],
            },
        )
        raise
    params.paths.validation_failure.unlink(missing_ok=True)
    dropped = 0
    if policy == "drop":  # with "fail", check() raised on any duplicate
        copies = valid.duplicated(keep="first").to_numpy()
        dropped = int(copies.sum())
        if dropped:
            valid = valid[~copies].reset_index(drop=True)
            log.info("dropped %d exact duplicate row(s), kept the first of each", dropped)
    report = summary(valid, params.contract, policy, dropped)
    report["unlabelled"] = {
        "policy": params.validation.unlabelled,
        "dropped": int(no_label.sum()) if params.validation.unlabelled == "drop" else 0,
    }
    if report["duplicates"]["conflicting_labels"]:
        log.info(
            "%d row(s) share their features with a row of another label",
            report["duplicates"]["conflicting_labels"],
        )
    storage.write_parquet(params.paths.validated, valid)
    storage.write_json(params.paths.validation_report, report)
    storage.write_json(params.paths.validated_contract, data_dict(params.contract))
    return valid
