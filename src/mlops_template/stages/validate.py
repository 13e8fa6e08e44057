"""Stage `validate`: enforce the schema lazily, so every violation is reported at once.

On success it writes the validated (type-coerced, extra columns dropped) table and a summary
(rows, missing values per column) that the PR report shows. On failure it writes nothing the
next stage could use: it records every violation (column, check, failing values, count) as
JSON at `paths.validation_failure` and raises with a readable summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa

from mlops_template import io
from mlops_template.config import Params
from mlops_template.errors import PipelineError
from mlops_template.schema import COLUMNS, dataframe_schema

MAX_EXAMPLES = 5


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


def check(frame: pd.DataFrame) -> pd.DataFrame:
    """Validate `frame` against the schema; raise DataValidationError listing every violation."""
    try:
        return dataframe_schema().validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        raise DataValidationError(_violations(errors.failure_cases), len(frame)) from None


def summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Deterministic facts about valid data, for DVC metrics and the PR report."""
    return {
        "passed": True,
        "rows": len(frame),
        "columns": len(frame.columns),
        "missing": {spec.name: int(frame[spec.name].isna().sum()) for spec in COLUMNS},
        "violations": 0,
    }


def run(params: Params) -> pd.DataFrame:
    frame = io.read_parquet(params.paths.raw)
    try:
        valid = check(frame)
    except DataValidationError as failure:
        # Stale outputs of an earlier good run must not feed the next stage either.
        params.paths.validated.unlink(missing_ok=True)
        params.paths.validation_report.unlink(missing_ok=True)
        io.write_json(
            params.paths.validation_failure,
            {
                "passed": False,
                "rows": failure.rows,
                "violations": [item.as_dict() for item in failure.violations],
            },
        )
        raise
    params.paths.validation_failure.unlink(missing_ok=True)
    io.write_parquet(params.paths.validated, valid)
    io.write_json(params.paths.validation_report, summary(valid))
    return valid
