"""params.yaml's `model:` section: one class per model kind, with its hyperparameters and
their defaults (the defaults are part of the trained model: dvc.yaml's train stage depends on
this file)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mlops_template.config.base import Section


class RandomForest(Section):
    kind: Literal["random_forest"]
    n_estimators: Annotated[int, Field(ge=1)] = 100
    max_depth: Annotated[int, Field(ge=1)] | None = None
    min_samples_leaf: Annotated[int, Field(ge=1)] = 1
    max_samples: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    n_jobs: int = -1


class HistGradientBoosting(Section):
    kind: Literal["hist_gradient_boosting"]
    learning_rate: Annotated[float, Field(gt=0.0)] = 0.1
    max_iter: Annotated[int, Field(ge=1)] = 100
    max_leaf_nodes: Annotated[int, Field(ge=2)] = 31
    min_samples_leaf: Annotated[int, Field(ge=1)] = 20
    l2_regularization: Annotated[float, Field(ge=0.0)] = 0.0


class LogisticRegression(Section):
    kind: Literal["logistic_regression"]
    C: Annotated[float, Field(gt=0.0)] = 1.0
    max_iter: Annotated[int, Field(ge=1)] = 1000


class Ridge(Section):
    """Regression only: a linear model with an L2 penalty (scaled inputs)."""

    kind: Literal["ridge"]
    alpha: Annotated[float, Field(ge=0.0)] = 1.0


ModelSettings = Annotated[
    RandomForest | HistGradientBoosting | LogisticRegression | Ridge, Field(discriminator="kind")
]


MODEL_KINDS: dict[str, type[Section]] = {
    "random_forest": RandomForest,
    "hist_gradient_boosting": HistGradientBoosting,
    "logistic_regression": LogisticRegression,
    "ridge": Ridge,
}
