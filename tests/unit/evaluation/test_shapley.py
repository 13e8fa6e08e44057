"""shapley.py, the Shapley values of the explain stage's linear models and the service's
/explain: the same numbers as shap's ExactExplainer, additive, zero for an ignored feature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_template.config import parse_params
from mlops_template.contract import Contract
from mlops_template.contract.features import model_input
from mlops_template.evaluation.shapley import all_coalitions, explain_record, top
from mlops_template.stages.explain import columns_of, pipeline_score
from mlops_template.stages.train import fit
from tests.conftest import DEFAULT_CONTRACT, DEFAULT_DATA, repo_params_dict


def linear(weights: list[float]) -> object:
    coefficients = np.asarray(weights)

    def score(columns: list[np.ndarray]) -> np.ndarray:
        return np.column_stack(columns).astype(float) @ coefficients

    return score


def test_a_linear_model_gets_its_weight_times_the_distance_from_the_background_mean() -> None:
    rng = np.random.default_rng(1)
    background = [rng.normal(size=40) for _ in range(3)]
    record = [np.array([1.0]), np.array([-2.0]), np.array([0.5])]
    result = explain_record(linear([2.0, 0.0, -1.0]), record, background)
    expected = [2.0 * (1.0 - background[0].mean()), 0.0, -1.0 * (0.5 - background[2].mean())]
    assert result.method == "exact"
    assert result.values[:, 0] == pytest.approx(expected, abs=1e-12)
    assert result.values[1, 0] == pytest.approx(0.0, abs=1e-12)  # the ignored feature


def test_values_add_up_to_the_prediction_exact_and_sampled() -> None:
    rng = np.random.default_rng(2)
    n = 12

    def score(columns: list[np.ndarray]) -> np.ndarray:  # interactions: not additive
        x = np.column_stack(columns)
        return np.column_stack([np.tanh(x[:, 0] * x[:, 1]) + x[:, 2:].sum(axis=1), x[:, 3] ** 2])

    background = [rng.normal(size=15) for _ in range(n)]
    record = [np.array([value]) for value in rng.normal(size=n)]
    for exact_max in (n, n - 1):  # 4,096 coalitions; then 8 sampled orders and their reverses
        result = explain_record(score, record, background, exact_max, permutations=8, seed=3)
        assert result.method == ("exact" if exact_max == n else "permutation")
        assert result.base + result.values.sum(axis=0) == pytest.approx(score(record)[0])
        assert result.values[4:, 1] == pytest.approx(0.0, abs=1e-12)  # output 2 ignores them


def test_the_model_is_called_on_bounded_batches() -> None:
    sizes: list[int] = []

    def score(columns: list[np.ndarray]) -> np.ndarray:
        sizes.append(len(columns[0]))
        return np.column_stack(columns).sum(axis=1)

    background = [np.arange(10.0) for _ in range(6)]
    explain_record(score, [np.array([1.0])] * 6, background, max_rows=100)
    assert max(sizes) <= 100
    assert sum(sizes) == 2**6 * 10


def test_coalitions_and_ranking() -> None:
    masks = all_coalitions(3)
    assert masks.shape == (8, 3)
    assert not masks[0].any()
    assert masks[-1].all()
    assert top([0.1, -0.5, 0.3, 0.0], 2) == [1, 2]


def test_equal_to_shaps_exact_explainer_on_the_penguins_pipeline(penguins: pd.DataFrame) -> None:
    """The same scikit-learn pipeline (categorical features included), the same background:
    shap's values within 1e-6 for every class."""
    import shap

    raw = repo_params_dict()
    raw["data"] = {"source": str(DEFAULT_DATA), "contract": str(DEFAULT_CONTRACT)}
    raw["model"] = {"kind": "logistic_regression"}
    params = parse_params(raw)
    contract: Contract = params.contract
    model = fit(penguins, params)
    frame = model_input(penguins.dropna(), contract)
    background, rows = frame.iloc[:20], frame.iloc[[40, 200, 300]]
    ours = np.stack(
        [
            explain_record(pipeline_score(model, contract), columns_of(rows.iloc[[i]]),
                           columns_of(background)).values
            for i in range(len(rows))
        ]
    )  # fmt: skip

    names = contract.feature_names()
    categories = {name: sorted(frame[name].unique()) for name in contract.categorical_features()}

    def coded(table: pd.DataFrame) -> np.ndarray:
        return table.assign(
            **{n: pd.Categorical(table[n], categories=c).codes for n, c in categories.items()}
        ).to_numpy(dtype=float)

    def score(matrix: np.ndarray) -> np.ndarray:
        table = pd.DataFrame(matrix, columns=names)
        for name, known in categories.items():
            table[name] = np.asarray(known, dtype=object)[table[name].to_numpy(dtype=int)]
        return model.predict_proba(table)

    masker = shap.maskers.Independent(coded(background), max_samples=len(background))
    theirs = shap.explainers.Exact(score, masker)(coded(rows)).values
    assert ours.shape == theirs.shape == (3, len(names), 3)
    assert ours == pytest.approx(theirs, abs=1e-6)
