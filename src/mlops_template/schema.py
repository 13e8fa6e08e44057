"""The data contract: columns, types, ranges and categories, in one place.

Everything else derives from `COLUMNS`: the pandera schema that the `validate` stage enforces,
the feature lists the `train` stage preprocesses, and (later) the serving request model and the
drift reference. A fork that brings its own data edits this list and `stages/ingest.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandera.pandas as pa

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the table. `minimum`/`maximum` apply to numeric columns, `categories` to
    categorical ones; `nullable` says whether missing values are allowed."""

    name: str
    kind: Kind
    description: str
    nullable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()


TARGET = ColumnSpec(
    name="species",
    kind="categorical",
    description="Penguin species, the label to predict.",
    nullable=False,
    categories=("Adelie", "Chinstrap", "Gentoo"),
)

FEATURES: tuple[ColumnSpec, ...] = (
    ColumnSpec(
        "island",
        "categorical",
        "Island in the Palmer Archipelago where the bird was seen.",
        categories=("Biscoe", "Dream", "Torgersen"),
    ),
    ColumnSpec("bill_length_mm", "numeric", "Culmen length in mm.", minimum=25.0, maximum=70.0),
    ColumnSpec("bill_depth_mm", "numeric", "Culmen depth in mm.", minimum=10.0, maximum=25.0),
    ColumnSpec(
        "flipper_length_mm", "numeric", "Flipper length in mm.", minimum=150.0, maximum=250.0
    ),
    ColumnSpec("body_mass_g", "numeric", "Body mass in grams.", minimum=2000.0, maximum=7000.0),
    ColumnSpec("sex", "categorical", "Sex of the bird.", categories=("female", "male")),
)

COLUMNS: tuple[ColumnSpec, ...] = (TARGET, *FEATURES)
MIN_ROWS = 10


def numeric_features() -> list[str]:
    return [spec.name for spec in FEATURES if spec.kind == "numeric"]


def categorical_features() -> list[str]:
    return [spec.name for spec in FEATURES if spec.kind == "categorical"]


def feature_names() -> list[str]:
    return [spec.name for spec in FEATURES]


def _column(spec: ColumnSpec) -> pa.Column:
    import pandera.pandas as pa

    checks: list[pa.Check] = []
    if spec.kind == "numeric":
        if spec.minimum is not None and spec.maximum is not None:
            checks.append(pa.Check.in_range(spec.minimum, spec.maximum))
        elif spec.minimum is not None:
            checks.append(pa.Check.ge(spec.minimum))
        elif spec.maximum is not None:
            checks.append(pa.Check.le(spec.maximum))
        return pa.Column(float, checks=checks, nullable=spec.nullable, coerce=True)
    checks.append(pa.Check.isin(list(spec.categories)))
    return pa.Column(str, checks=checks, nullable=spec.nullable, coerce=True)


def dataframe_schema() -> pa.DataFrameSchema:
    """The pandera schema for the whole table. Extra columns are dropped (`strict="filter"`),
    missing ones are errors, and the table must have at least MIN_ROWS rows.

    pandera is imported here, not at module level: the serving app reads the column specs
    above and must start fast without it."""
    import pandera.pandas as pa

    return pa.DataFrameSchema(
        {spec.name: _column(spec) for spec in COLUMNS},
        strict="filter",
        ordered=False,
        checks=[pa.Check(lambda frame: len(frame) >= MIN_ROWS, name=f"at_least_{MIN_ROWS}_rows")],
        name="penguins",
    )
