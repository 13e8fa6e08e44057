"""Stage `explain`: SHAP values of the model on the test split, for the PR report and MLflow.

Permutation importance (the evaluate stage) says how much the metric needs a feature; SHAP
says how each feature moves each prediction, and in which direction. The stage explains at
most `explain.max_rows` test rows (a seeded sample: the stage runs in every pipeline test):

- tree models (random_forest, hist_gradient_boosting): shap's TreeExplainer on the estimator,
  over the preprocessed matrix (exact and fast). A categorical feature's one-hot columns are
  summed back to the feature: Shapley values are additive, so the sum is the feature's value
  exactly. The values are in the estimator's output space: probability for a forest, raw
  log-odds for gradient boosting's classifier, the target for regressors.
- other models (logistic_regression, ridge): model-agnostic interventional Shapley values
  (shapley.py, the service's too: exact up to `explain.exact_max_features` features, seeded
  permutations beyond) over the whole pipeline's probabilities or predictions in the raw
  feature space, integrating over the background sample. shap's own ExactExplainer gives the
  same values (tests/unit/evaluation/test_shapley.py), but calls the pipeline once per
  coalition batch and row, far slower than shapley.py's large batches of coalitions per call.

Outputs: `paths.shap_summary` (explainer, output space, rows, mean |SHAP| per feature, per
class for classification), `paths.shap_importance` (DVC plot data), `paths.shap_plot` (a
beeswarm summary image for the report) and `paths.background`: `explain.background_rows`
training rows in the raw feature space, the background of the service's /explain.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.contract.features import model_input
from mlops_template.evaluation import shapley
from mlops_template.io import storage, tracking

log = logging.getLogger(__name__)

TREE_KINDS = ("random_forest", "hist_gradient_boosting")
DIGITS = 6
PLOT_MAX_FEATURES = 15


@dataclass(frozen=True)
class Explanation:
    """SHAP values (rows x features x outputs) of `rows` in the raw features' order."""

    values: np.ndarray
    base: np.ndarray  # one per output
    outputs: list[str]  # class names, or the target's name for regression
    explainer: str
    space: str  # probability | log_odds | raw | prediction
    rows: pd.DataFrame  # the explained rows (model_input), for the plot's colours


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most `rows` rows of `frame`, a seeded sample in the frame's order."""
    if len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed).sort_index()


def background_rows(
    train: pd.DataFrame, contract: Contract, rows: int, seed: int
) -> list[dict[str, Any]]:
    """Training rows as JSON records (missing values as null): the service's background."""
    chosen = sample(train, rows, seed)[contract.feature_names()]
    records = chosen.astype(object).where(chosen.notna(), None).to_dict(orient="records")
    return [{str(key): _plain(value) for key, value in record.items()} for record in records]


def write_background(
    path: Path, train: pd.DataFrame, contract: Contract, rows: int, seed: int
) -> None:
    """The service's /explain background (serve/explain.py load_background reads it)."""
    records = background_rows(train, contract, rows, seed)
    storage.write_json(path, {"features": contract.feature_names(), "rows": records})


def _plain(value: Any) -> Any:
    """A table cell as JSON takes it: None, text, a whole number or a float."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    return int(value) if isinstance(value, int | np.integer) else float(value)


def column_groups(model: Pipeline, contract: Contract) -> list[list[int]]:
    """For each contract feature, in its order, the preprocessed columns it became."""
    preprocess = model.named_steps["preprocess"]
    slices = preprocess.output_indices_
    owner: dict[str, list[int]] = {}
    # One output column per numeric feature, in the transformer's column order.
    numeric_columns = list(preprocess.transformers_[0][2])
    start = slices["numeric"].start
    for offset, name in enumerate(numeric_columns):
        owner[name] = [start + offset]
    categorical_columns = list(preprocess.transformers_[1][2])
    if categorical_columns:
        encoder = preprocess.named_transformers_["categorical"][-1]
        position = slices["categorical"].start
        for name, categories in zip(categorical_columns, encoder.categories_, strict=True):
            owner[name] = list(range(position, position + len(categories)))
            position += len(categories)
    return [owner[name] for name in contract.feature_names()]


def _as_outputs(values: np.ndarray, base: Any) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values as rows x columns x outputs and the base values as one per output."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 2:
        values = values[:, :, None]
    return values, np.atleast_1d(np.asarray(base, dtype=float)).reshape(-1)


def tree_values(
    model: Pipeline, rows: pd.DataFrame, contract: Contract
) -> tuple[np.ndarray, np.ndarray, str]:
    """TreeExplainer (path-dependent: no background needed) on the estimator; one-hot columns
    summed per feature. Returns values, base values and the output space."""
    import shap

    estimator = model.named_steps["model"]
    matrix = np.asarray(model.named_steps["preprocess"].transform(rows), dtype=float)
    explainer = shap.TreeExplainer(estimator)
    values, base = _as_outputs(explainer.shap_values(matrix, check_additivity=False),
                               explainer.expected_value)  # fmt: skip
    grouped = np.stack(
        [values[:, columns, :].sum(axis=1) for columns in column_groups(model, contract)], axis=1
    )
    if not contract.is_classification:
        space = "prediction"
    elif type(estimator).__name__.startswith("HistGradientBoosting"):
        space = "log_odds" if contract.task == "binary" else "raw"  # multiclass: softmax logits
    else:
        space = "probability"
    return grouped, base, space


def columns_of(frame: pd.DataFrame) -> list[np.ndarray]:
    """A model_input frame as one array per feature (numbers float64, categories text)."""
    return [frame[name].to_numpy() for name in frame.columns]


def pipeline_score(model: Pipeline, contract: Contract) -> shapley.Score:
    """The pipeline's probabilities (classification) or predictions, on columns of features."""
    names = contract.feature_names()

    def score(columns: list[np.ndarray]) -> np.ndarray:
        frame = pd.DataFrame(dict(zip(names, columns, strict=True)))
        if contract.is_classification:
            return cast(np.ndarray, model.predict_proba(frame))
        return cast(np.ndarray, model.predict(frame))

    return score


def agnostic_values(
    model: Pipeline, rows: pd.DataFrame, background: pd.DataFrame, params: Params
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Interventional Shapley values over the whole pipeline in the raw feature space,
    integrating over `background` (shapley.py: shap's ExactExplainer's values, without its
    call per coalition batch and row; tests/unit/evaluation/test_shapley.py compares them).
    Exact up to explain.exact_max_features features, seeded permutations beyond."""
    contract, settings = params.contract, params.explain
    score = pipeline_score(model, contract)
    reference = columns_of(background)
    results = [
        shapley.explain_record(
            score,
            columns_of(rows.iloc[[i]]),
            reference,
            settings.exact_max_features,
            settings.permutations,
            params.seed,
        )
        for i in range(len(rows))
    ]
    values = np.stack([result.values for result in results])
    space = "probability" if contract.is_classification else "prediction"
    return values, results[0].base, space, f"shapley.{results[0].method}"


def explain(
    model: Pipeline, test: pd.DataFrame, train: pd.DataFrame, params: Params
) -> Explanation:
    """SHAP values of a sample of `test`, background from `train`."""
    contract, settings = params.contract, params.explain
    rows = model_input(sample(test, settings.max_rows, params.seed), contract)
    if params.model.kind in TREE_KINDS:
        values, base, space = tree_values(model, rows, contract)
        explainer = "TreeExplainer"
    else:
        background = model_input(sample(train, settings.background_rows, params.seed), contract)
        values, base, space, explainer = agnostic_values(model, rows, background, params)
    if contract.is_classification:
        outputs = [str(name) for name in model.classes_]
        if values.shape[2] == 1:  # one log-odds output: of the second class
            values = np.concatenate([-values, values], axis=2)
            base = np.array([-base[0], base[0]])
    else:
        outputs = [contract.target.name]
    return Explanation(values, base, outputs, explainer, space, rows)


def shown_outputs(explanation: Explanation, contract: Contract) -> list[str]:
    """The outputs the report shows: binary, the positive class; multiclass, every class."""
    if contract.task == "binary":
        return [str(contract.positive)]
    return explanation.outputs


def summary(explanation: Explanation, contract: Contract, kind: str) -> dict[str, Any]:
    """shap.json: mean |SHAP| per feature (over the shown outputs), and per class."""
    names = contract.feature_names()
    shown = shown_outputs(explanation, contract)
    index = [explanation.outputs.index(name) for name in shown]
    magnitude = np.abs(explanation.values[:, :, index]).mean(axis=0)  # features x shown
    result: dict[str, Any] = {
        "explainer": explanation.explainer,
        "model_kind": kind,
        "output_space": explanation.space,
        "rows": int(explanation.values.shape[0]),
        "outputs": shown,
        "base_value": {
            name: round(float(explanation.base[i]), DIGITS)
            for name, i in zip(shown, index, strict=True)
        },
        "mean_abs_shap": {
            name: round(float(value), DIGITS)
            for name, value in zip(names, magnitude.mean(axis=1), strict=True)
        },
    }
    if contract.is_classification:
        result["per_class"] = {
            output: {name: round(float(magnitude[j, k]), DIGITS) for j, name in enumerate(names)}
            for k, output in enumerate(shown)
        }
    return result


def plot_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """DVC plot data: one bar per feature (mean |SHAP|), largest first."""
    ranked = sorted(result["mean_abs_shap"].items(), key=lambda item: -item[1])
    return [{"feature": name, "mean_abs_shap": value} for name, value in ranked]


def plotted_values(explanation: Explanation, contract: Contract) -> tuple[np.ndarray, str]:
    """Rows x features to draw, and what they explain: binary, the positive class; regression,
    the prediction; multiclass, each row's predicted class (the class outputs' values sum to
    zero, so an average over classes would show nothing)."""
    if contract.task != "multiclass":
        output = shown_outputs(explanation, contract)[0]
        return explanation.values[:, :, explanation.outputs.index(output)], output
    totals = explanation.base[None, :] + explanation.values.sum(axis=1)  # the model's outputs
    chosen = totals.argmax(axis=1)
    rows = np.arange(len(chosen))
    return explanation.values[rows, :, chosen], "each row's predicted class"


def draw(explanation: Explanation, contract: Contract, path: Path) -> None:
    """A beeswarm-style summary: per feature (largest mean |SHAP| on top) one dot per row at
    its SHAP value, coloured by the feature's value (numeric) or category (categorical)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, which = plotted_values(explanation, contract)
    names = contract.feature_names()
    order = np.argsort(np.abs(values).mean(axis=0))[-PLOT_MAX_FEATURES:]
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(order) + 1.4))
    rng = np.random.default_rng(0)
    for position, j in enumerate(order):
        column = explanation.rows[names[j]]
        colour = _colours(column)
        jitter = rng.uniform(-0.25, 0.25, len(values))
        axes.scatter(
            values[:, j], position + jitter, c=colour, cmap="coolwarm", s=8, vmin=0, vmax=1
        )
    axes.set_yticks(range(len(order)), [names[j] for j in order])
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_xlabel(f"SHAP value ({explanation.space}: {which})")
    axes.set_title(f"SHAP summary, {len(values)} test rows (colour: low to high value)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=90))
    plt.close(figure)


def _colours(column: pd.Series) -> np.ndarray:
    """The feature's values scaled to [0, 1] (categories by their code; missing: 0.5)."""
    if column.dtype == object:
        codes = pd.Categorical(column).codes.astype(float)
        scaled = codes / max(1.0, codes.max())
    else:
        low, high = column.min(), column.max()
        scaled = (column - low) / (high - low) if high > low else column * 0.0
        scaled = scaled.to_numpy(dtype=float)
    return np.where(np.isnan(scaled), 0.5, scaled)


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    flat = {f"shap_{name}": value for name, value in result["mean_abs_shap"].items()}
    for output, scores in result.get("per_class", {}).items():
        flat.update({f"shap_{name}_{output}": value for name, value in scores.items()})
    return {key: value for key, value in flat.items() if math.isfinite(value)}


def run(params: Params) -> dict[str, Any]:
    paths, contract = params.paths, params.contract
    train = storage.read_parquet(paths.train)
    test = storage.read_parquet(paths.test)
    model: Pipeline = storage.load_verified_model(paths.model)
    sha256 = storage.read_recorded_sha256(paths.model)
    with tracking.tracker(
        params.tracking, run_name="explain", resume_tags={tracking.MODEL_SHA_TAG: sha256}
    ) as tracker:
        explanation = explain(model, test, train, params)
        result = summary(explanation, contract, params.model.kind)
        storage.write_json(paths.shap_summary, result)
        storage.write_json(paths.shap_importance, {"shap": plot_rows(result)})
        draw(explanation, contract, paths.shap_plot)
        write_background(
            paths.background, train, contract, params.explain.background_rows, params.seed
        )
        top = plot_rows(result)[0]
        log.info(
            "%s on %d test rows (%s): top feature %s (mean |SHAP| %g)",
            result["explainer"], result["rows"], result["output_space"],
            top["feature"], top["mean_abs_shap"],
        )  # fmt: skip
        tracker.log_metrics(_metrics(result))
        for path in (paths.shap_summary, paths.shap_importance, paths.shap_plot):
            tracker.log_artifact(path, "explanation")
    return result
