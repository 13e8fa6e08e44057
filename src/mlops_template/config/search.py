"""params.yaml's `tune:` section: the hyperparameter search (`mlops model tune`, tuning/search.py),
which is not a pipeline stage. Each value to try is checked as the `model:` section would check
it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast, get_args

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from mlops_template.config.base import Section
from mlops_template.config.model import MODEL_KINDS
from mlops_template.config.pipeline import PrimaryMetric

# Settings that do not change the fitted model, so there is nothing to search: the search
# runs every fit on one thread itself and parallelises over fits (tune.n_jobs).
NOT_SEARCHED = frozenset({"kind", "n_jobs"})


class Range(Section):
    """A distribution for `tune.method: random`: uniform over [low, high], or log-uniform with
    `log: true` (for a scale: 0.01 to 0.1 as likely as 0.1 to 1). Whole numbers, both ends
    included, for an integer hyperparameter."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low above 0, got {self.low:g}")
        return self


Choices = tuple[Any, ...] | Range  # the values to try (grid or random), or a distribution


def searchable(kind: str) -> list[str]:
    """The hyperparameters of model kind `kind` a search may vary, in config order."""
    return [name for name in MODEL_KINDS[kind].model_fields if name not in NOT_SEARCHED]


def number_type(kind: str, name: str) -> type | None:
    """int or float: the type of a numeric hyperparameter (None when it is not a number)."""
    pending: list[Any] = [MODEL_KINDS[kind].model_fields[name].annotation]
    while pending:
        annotation = pending.pop(0)
        if annotation in (int, float):
            return cast(type, annotation)
        pending.extend(get_args(annotation))  # Optional[...], Annotated[int, ...]
    return None


def _checked_value(kind: str, name: str, value: Any) -> Any:
    """`value` as model.<name> of `kind` would hold it (max_samples 1 becomes 1.0: an int
    there would mean one sample to scikit-learn), or an error naming the constraint."""
    try:
        settings = MODEL_KINDS[kind].model_validate({"kind": kind, name: value})
    except ValidationError as error:
        raise ValueError(f"{name}: {value!r}: {error.errors()[0]['msg']}") from None
    return getattr(settings, name)


def _checked_range(kind: str, name: str, raw: dict[str, Any]) -> Range:
    try:
        spec = Range.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            ".".join(map(str, item["loc"])) + f": {item['msg']}"
            if item["loc"]
            else item["msg"].removeprefix("Value error, ")
            for item in error.errors()
        )
        raise ValueError(f"{name}: {problems}") from None
    numeric = number_type(kind, name)
    if numeric is None:
        raise ValueError(f"{name} is not a number: give a list of values")
    if numeric is int and not (spec.low.is_integer() and spec.high.is_integer()):
        raise ValueError(f"{name} is an integer: low and high must be whole numbers")
    for bound in (spec.low, spec.high):
        _checked_value(kind, name, numeric(bound))
    return spec


def check_space(kind: str, raw: object) -> dict[str, Choices]:
    """One model kind's search space: each hyperparameter to vary, with a list of values (each
    checked as params.yaml's model section would check it) or a Range."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError("give each hyperparameter to search a list of values or {low, high}")
    known = searchable(kind)
    space: dict[str, Choices] = {}
    for name, choices in raw.items():
        if name not in known:
            why = " (it does not change the model: tune.n_jobs sets it)" * (name == "n_jobs")
            raise ValueError(
                f"{name} is not a {kind} hyperparameter the search can vary{why};"
                f" choose from {', '.join(known)}"
            )
        if isinstance(choices, list) and choices:
            space[name] = tuple(_checked_value(kind, name, value) for value in choices)
        elif isinstance(choices, dict):
            space[name] = _checked_range(kind, name, choices)
        else:
            raise ValueError(
                f"{name}: {choices!r}: give a non-empty list of values or {{low, high, log}}"
            )
    return space


class TuneSpace(Section):
    """`tune.space`: per model kind, what to search (only `model.kind`'s is used)."""

    random_forest: dict[str, Choices] | None = None
    hist_gradient_boosting: dict[str, Choices] | None = None
    logistic_regression: dict[str, Choices] | None = None
    ridge: dict[str, Choices] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _known_hyperparameters(cls, raw: object, info: ValidationInfo) -> object:
        return None if raw is None else check_space(str(info.field_name), raw)

    def of(self, kind: str) -> dict[str, Choices] | None:
        return cast(dict[str, Choices] | None, getattr(self, kind))


class TuneSettings(Section):
    """`mlops model tune` (make tune): a seeded search bounded by `n_trials` and `max_seconds`, each
    candidate scored by cross-validation on the training split only."""

    method: Literal["grid", "random"] = "random"
    n_trials: Annotated[int, Field(ge=1, le=1000)] = 20  # grid: the grid may not be larger
    max_seconds: Annotated[float, Field(gt=0.0)] = 900.0  # then stop: finished trials count
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 5
    scoring: PrimaryMetric = "auto"  # auto: evaluate.primary_metric, as evaluate resolves it
    n_jobs: int = 1  # fits in parallel processes; -1: one per core
    dvc_experiments: Annotated[int, Field(ge=0, le=100)] = 25  # best trials saved in DVC
    space: TuneSpace = TuneSpace()

    @field_validator("n_jobs")
    @classmethod
    def _some_jobs(cls, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("0 runs nothing: give 1 or more, or -1 for one per core")
        return n_jobs

    def check_grid(self, kind: str) -> None:
        """method grid: model.kind's space (the one searched) must list values, naming every
        {low, high} range in it at once. The other kinds' spaces may keep their ranges."""
        ranges = [
            name
            for name, choices in (self.space.of(kind) or {}).items()
            if isinstance(choices, Range)
        ]
        if self.method == "grid" and ranges:
            raise ValueError(
                f"method grid needs a list of values for each hyperparameter of space.{kind}"
                f" (model.kind); {', '.join(ranges)}: a {{low, high}} range needs method random"
            )
