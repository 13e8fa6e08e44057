"""The data contract as typed objects: the task, the target and every feature.

The contract is data, not code: `mlops contract init` profiles a table and writes it
(`data.contract` in params.yaml, by default `data/contract.yaml`); the user reviews and commits
it; contract/file.py reads and checks the file into the objects here. Everything else derives from
the `Contract`: the pandera schema that the `validate` stage enforces, the features the `train`
stage preprocesses, the metrics the `evaluate` stage computes for the task, the service's
request model and its example, the drift reference and the model card.

pandera is imported only to build the table schema: the service reads the contract and must
start fast without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlops_template import PipelineError

if TYPE_CHECKING:
    import pandera.pandas as pa

Kind = Literal["numeric", "categorical"]
Task = Literal["binary", "multiclass", "regression"]
Direction = Literal["increasing", "decreasing"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
KINDS: tuple[Kind, ...] = ("numeric", "categorical")


class ContractError(PipelineError):
    """The contract file is missing or does not describe a table."""


@dataclass(frozen=True)
class Invariance:
    """Changing `feature` (to every other category, or to the test split's 10th and 90th
    percentile) moves any class probability (regression: the prediction, as a share of the
    target's standard deviation) by at most `tolerance`, on at least `min_pass_rate` of rows."""

    feature: str
    tolerance: float
    min_pass_rate: float = 1.0


@dataclass(frozen=True)
class Directional:
    """Adding `step` to numeric `feature` does not move P(`target_class`) (regression: the
    prediction) against `direction` by more than `tolerance`, on at least `min_pass_rate`."""

    feature: str
    direction: Direction
    step: float
    target_class: str | None = None
    tolerance: float = 0.0
    min_pass_rate: float = 1.0


@dataclass(frozen=True)
class Minimum:
    """Every slice of categorical `feature` with at least `min_rows` test rows scores at least
    `threshold` on `metric` (at most, for a lower-is-better metric)."""

    feature: str
    metric: str
    threshold: float
    min_rows: int = 20


@dataclass(frozen=True)
class Behaviour:
    invariance: tuple[Invariance, ...] = ()
    directional: tuple[Directional, ...] = ()
    minimum: tuple[Minimum, ...] = ()

    @property
    def declared(self) -> int:
        return len(self.invariance) + len(self.directional) + len(self.minimum)


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the table. `minimum`/`maximum` apply to numeric columns, `categories` to
    categorical ones; `nullable` says whether missing values are allowed."""

    name: str
    kind: Kind
    description: str = ""
    nullable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    sensitive: bool = False  # the model card's fairness section compares its groups


@dataclass(frozen=True)
class Contract:
    """What the table holds and what to predict.

    `task` is binary or multiclass classification (the target is categorical; a binary
    target names its `positive` class) or regression (the target is numeric). `example` is
    one valid record of the features: the service's OpenAPI example and the smoke test's
    request. `behaviour`, `intended_use` and `limitations`: see declarations.py."""

    name: str
    description: str
    task: Task
    target: ColumnSpec
    features: tuple[ColumnSpec, ...]
    example: Mapping[str, Any]
    positive: str | None = None
    min_rows: int = 10
    ignored: tuple[str, ...] = field(default=())
    behaviour: Behaviour = field(default_factory=Behaviour)
    intended_use: tuple[str, ...] = ()
    limitations: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        return (self.target, *self.features)

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    @property
    def classes(self) -> tuple[str, ...]:
        """The target's classes (empty for regression)."""
        return self.target.categories if self.is_classification else ()

    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.features]

    def numeric_features(self) -> list[str]:
        return [spec.name for spec in self.features if spec.kind == "numeric"]

    def categorical_features(self) -> list[str]:
        return [spec.name for spec in self.features if spec.kind == "categorical"]

    def sensitive_features(self) -> list[str]:
        return [spec.name for spec in self.features if spec.sensitive]

    def dataframe_schema(self) -> pa.DataFrameSchema:
        """The pandera schema for the whole table. Extra columns are dropped
        (`strict="filter"`), missing ones are errors, and the table must have at least
        `min_rows` rows."""
        import pandera.pandas as pa

        minimum = self.min_rows
        return pa.DataFrameSchema(
            {spec.name: _column(spec) for spec in self.columns},
            strict="filter",
            ordered=False,
            checks=[pa.Check(lambda frame: len(frame) >= minimum, name=f"at_least_{minimum}_rows")],
            name=self.name,
        )


# How a missing category reaches the model (train, evaluate, the ONNX feed): the empty string,
# not NaN. skl2onnx compiles an imputer of text only for a text missing-value marker, so a
# contract's category is never empty text (_category refuses it).
MISSING_CATEGORY = ""


def category_text(value: object) -> str:
    """A category as text, the same however the table stored it: `True` for a boolean, `1`
    for the whole numbers 1 and 1.0 (a 0/1 column with a gap is read as floats), else
    `str(value)`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # NumPy scalars
        return category_text(value.item())
    return str(value)


def as_category(value: object, categories: tuple[str, ...]) -> str | None:
    """`value` as one of `categories`, or None. Categories are text (the validate stage reads
    every categorical column as text, see category_text), so a JSON `true`, `1` or `2.5`
    names the category `True`, `1` or `2.5`."""
    if isinstance(value, str):
        return value if value in categories else None
    if isinstance(value, bool | int | float):
        text = category_text(value)
        return text if text in categories else None
    return None


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


def reserved_name(name: str) -> bool:
    """Names pydantic does not allow as request fields."""
    return name.startswith(("_", "model_"))
