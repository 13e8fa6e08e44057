"""Request and response models, derived from the data contract (schema.Contract).

One source of truth: a numeric column becomes a finite float within its range, a
categorical column a choice among its categories, and nullable columns may be null or left
out. Unknown fields, NaN or infinity, strings for numbers and values outside the contract
are rejected with 422 naming the field. A record must also give at least
`serve.min_present_features` features (not null): `{}` describes nothing. The OpenAPI says so
too (an `anyOf` over the ways to give that many), so generated clients and fuzzers know.

The response follows the task: a class and its probabilities for classification, a number
for regression. Every example (request and response) comes from the contract.
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mlops_template.contract import ColumnSpec, Contract, as_category

# Beyond this many alternatives the `anyOf` would bloat the OpenAPI (30 features, 3 required:
# 4,060); the rule is then only enforced, and said in the description.
MAX_ANY_OF = 200
EXAMPLE_VERSION = "3f1c0a9e2b7d"
EXAMPLE_ID = "9b2f4c1e0d8a4f6b8c3e2a1d0f9e8d7c"


# The largest float32: a compiled model reads numbers as float32, so a larger one would reach
# it as infinity. Every numeric field is bounded by it, whatever the contract's range.
FLOAT32_MAX = 3.4028234663852886e38


def _field(spec: ColumnSpec) -> tuple[Any, Any]:
    if spec.kind == "numeric":
        low = -FLOAT32_MAX if spec.minimum is None else max(spec.minimum, -FLOAT32_MAX)
        high = FLOAT32_MAX if spec.maximum is None else min(spec.maximum, FLOAT32_MAX)
        annotation: Any = Annotated[float, Field(ge=low, le=high, allow_inf_nan=False)]
    else:
        categories = spec.categories

        def text(value: object) -> object:
            """JSON `true` or `1` for the category `True` or `1` (see schema.as_category)."""
            return as_category(value, categories) or value

        annotation = Annotated[
            Literal[spec.categories],
            BeforeValidator(text),
        ]
    if spec.nullable:
        return annotation | None, Field(default=None, description=spec.description)
    return annotation, Field(description=spec.description)


def _present_schema(names: list[str], min_present: int) -> dict[str, Any]:
    """JSON Schema for "at least `min_present` features are given and not null"."""
    if min_present == 0:
        return {}
    if comb(len(names), min_present) > MAX_ANY_OF:
        return {"description": f"At least {min_present} features must be given (not null)."}
    return {
        "anyOf": [
            {
                "required": list(chosen),
                "properties": {name: {"not": {"type": "null"}} for name in chosen},
            }
            for chosen in combinations(names, min_present)
        ]
    }


def features_model(contract: Contract, min_present: int = 0) -> type[BaseModel]:
    """One record of the contract's features; at least `min_present` given (not null)."""

    def enough_features(record: BaseModel) -> BaseModel:
        given = sum(value is not None for value in record.__dict__.values())
        if given < min_present:
            raise PydanticCustomError(
                "too_few_features",
                "at least {minimum} features must be given (not null); got {given}",
                {"minimum": min_present, "given": given},
            )
        return record

    extra = {
        "example": dict(contract.example),
        **_present_schema(contract.feature_names(), min_present),
    }
    # pydantic types __validators__ as plain callables, but documents passing what
    # model_validator() returns (a descriptor proxy), as here; no overload matches, so Any.
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Features",
        __config__=ConfigDict(extra="forbid", strict=True, json_schema_extra=extra),
        __validators__={"enough_features": model_validator(mode="after")(enough_features)},
        **{spec.name: _field(spec) for spec in contract.features},
    )


def _example_answer(contract: Contract) -> dict[str, Any]:
    """What /predict answers for the contract's example, as the OpenAPI shows it."""
    target = contract.target
    if not contract.is_classification:
        low, high = target.minimum, target.maximum
        middle = (low + high) / 2 if low is not None and high is not None else 0.0
        return {"prediction": round(middle, 4)}
    classes = contract.classes
    share = round(0.1 / max(len(classes) - 1, 1), 4)
    probabilities = {name: share for name in classes}
    probabilities[classes[-1]] = round(1.0 - share * (len(classes) - 1), 4)
    return {"prediction": classes[-1], "probabilities": probabilities}


def prediction_model(contract: Contract) -> type[BaseModel]:
    """One answer: `prediction` (a class, or a number for regression), `probabilities` (each
    class's, classification only), `model_version` and `prediction_id`."""
    target = contract.target
    about = f"Predicted {target.name}. {target.description}".strip()
    example = {
        **_example_answer(contract),
        "model_version": EXAMPLE_VERSION,
        "prediction_id": EXAMPLE_ID,
    }
    fields: dict[str, Any] = {}
    if contract.is_classification:
        label: Any = Literal[contract.classes]
        fields["prediction"] = (label, Field(description=about))
        fields["probabilities"] = (
            dict[str, float],
            Field(description="Each class's probability."),
        )
    else:
        fields["prediction"] = (float, Field(description=about))
    fields["model_version"] = (str, Field(description="The model file's sha256, first 12 digits."))
    fields["prediction_id"] = (
        str,
        Field(
            description="Identifies this prediction in the monitoring log. When the true"
            f" {target.name} is known later, send it back as feedback"
            ' (`{"id": prediction_id, "label": ...}`) to measure it in production.'
        ),
    )
    return create_model(
        "Prediction", __config__=ConfigDict(json_schema_extra={"example": example}), **fields
    )


def batch_request(
    features: type[BaseModel], max_rows: int, example: dict[str, Any]
) -> type[BaseModel]:
    """`{"records": [...]}` with at most `max_rows` records (the bound is a setting)."""
    return create_model(
        "BatchRequest",
        __config__=ConfigDict(
            extra="forbid", json_schema_extra={"example": {"records": [example]}}
        ),
        # A model class built at run time: mypy cannot take a variable as a type.
        records=(list[features], Field(min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
    )


def batch_prediction(prediction: type[BaseModel]) -> type[BaseModel]:
    """`{"predictions": [...]}`, one per record, in order."""
    # A model class built at run time: mypy cannot take a variable as a type.
    return create_model("BatchPrediction", predictions=(list[prediction], ...))  # type: ignore[valid-type]
