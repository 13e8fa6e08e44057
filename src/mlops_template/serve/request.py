"""Request and response models, derived from the column specs in schema.py.

One source of truth: a numeric column becomes a finite float within its range, a
categorical column a choice among its categories, and nullable columns may be null or left
out. Unknown fields, NaN or infinity, strings for numbers and values outside the contract
are rejected with 422 naming the field. A record must also give at least
`serve.min_present_features` features (not null): `{}` is not a penguin. The OpenAPI says so
too (an `anyOf` over the ways to give that many), so generated clients and fuzzers know.
"""

from __future__ import annotations

from itertools import combinations
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from mlops_template.schema import FEATURES, TARGET, ColumnSpec

EXAMPLE = {
    "island": "Biscoe",
    "bill_length_mm": 45.2,
    "bill_depth_mm": 14.8,
    "flipper_length_mm": 215.0,
    "body_mass_g": 5300.0,
    "sex": "female",
}


def _field(spec: ColumnSpec) -> tuple[Any, Any]:
    if spec.kind == "numeric":
        annotation: Any = Annotated[
            float,
            Field(ge=spec.minimum, le=spec.maximum, allow_inf_nan=False),
        ]
    else:
        annotation = Literal[spec.categories]  # type: ignore[valid-type]
    if spec.nullable:
        return annotation | None, Field(default=None, description=spec.description)
    return annotation, Field(description=spec.description)


def _present_schema(min_present: int) -> dict[str, Any]:
    """JSON Schema for "at least `min_present` features are given and not null"."""
    if min_present == 0:
        return {}
    names = [spec.name for spec in FEATURES]
    return {
        "anyOf": [
            {
                "required": list(chosen),
                "properties": {name: {"not": {"type": "null"}} for name in chosen},
            }
            for chosen in combinations(names, min_present)
        ]
    }


def features_model(min_present: int = 0) -> type[BaseModel]:
    """One record; at least `min_present` features must be given (not null)."""

    def enough_features(record: BaseModel) -> BaseModel:
        given = sum(value is not None for value in record.__dict__.values())
        if given < min_present:
            raise PydanticCustomError(
                "too_few_features",
                "at least {minimum} features must be given (not null); got {given}",
                {"minimum": min_present, "given": given},
            )
        return record

    return create_model(  # type: ignore[call-overload, no-any-return]
        "Features",
        __config__=ConfigDict(
            extra="forbid",
            strict=True,
            json_schema_extra={"example": EXAMPLE, **_present_schema(min_present)},
        ),
        __validators__={"enough_features": model_validator(mode="after")(enough_features)},
        **{spec.name: _field(spec) for spec in FEATURES},
    )


class Prediction(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "prediction": "Gentoo",
                "probabilities": {"Adelie": 0.01, "Chinstrap": 0.0, "Gentoo": 0.99},
                "model_version": "3f1c0a9e2b7d",
                "prediction_id": "9b2f4c1e0d8a4f6b8c3e2a1d0f9e8d7c",
            }
        }
    )

    prediction: str = Field(description=f"Predicted {TARGET.name}. {TARGET.description}")
    probabilities: dict[str, float]
    model_version: str
    prediction_id: str = Field(
        description="Identifies this prediction in the monitoring log. When the true"
        f" {TARGET.name} is known later, send it back as feedback"
        ' (`{"id": prediction_id, "label": ...}`) to measure accuracy in production.'
    )


def batch_request(features: type[BaseModel], max_rows: int) -> type[BaseModel]:
    """`{"records": [...]}` with at most `max_rows` records (the bound is a setting)."""
    return create_model(
        "BatchRequest",
        __config__=ConfigDict(
            extra="forbid", json_schema_extra={"example": {"records": [EXAMPLE]}}
        ),
        records=(list[features], Field(min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
    )


class BatchPrediction(BaseModel):
    predictions: list[Prediction]
