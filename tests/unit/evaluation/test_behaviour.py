"""Behaviour checks (behaviour.py): small hand-written models that break each declared
expectation fail it, and models that keep it pass; the default penguins forest passes every
check the tests' contract declares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_template.config import Params
from mlops_template.contract import Contract, Directional, Invariance, Minimum, parse_contract
from mlops_template.evaluation import behaviour
from mlops_template.io import storage
from mlops_template.stages import behaviour as stage
from mlops_template.stages import split, train
from tests.conftest import small_contract


class Rule:
    """A binary 'model' over features x (numeric) and colour: P(yes) = rule(frame)."""

    classes_ = np.array(["no", "yes"])

    def __init__(self, rule: Callable[[pd.DataFrame], Any]) -> None:
        self.rule = rule

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        yes = np.clip(np.asarray(self.rule(frame), dtype=float), 0.0, 1.0)
        return np.column_stack([1 - yes, yes])


class Line:
    """A regression 'model': prediction = rule(frame)."""

    def __init__(self, rule: Callable[[pd.DataFrame], Any]) -> None:
        self.rule = rule

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.rule(frame), dtype=float)


def contract_of(task: str, **behaviour_section: Any) -> Contract:
    raw = small_contract(task)
    if behaviour_section:
        raw["behaviour"] = behaviour_section
    return parse_contract(raw, Path("small.yaml"))


def table(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, rows)
    colour = rng.choice(["blue", "red"], rows)
    return pd.DataFrame({"x": x, "colour": colour, "y": np.where(x > 5, "yes", "no")})


BY_X = Rule(lambda f: 1 / (1 + np.exp(-(f["x"] - 5))))
USES_COLOUR = Rule(lambda f: 1 / (1 + np.exp(-(f["x"] - 5))) * 0.6 + 0.4 * (f["colour"] == "red"))
FALLING = Rule(lambda f: 1 / (1 + np.exp(f["x"] - 5)))


def test_a_model_ignoring_the_feature_is_invariant() -> None:
    contract = contract_of("binary")
    result = behaviour.invariance(BY_X, table(), contract, Invariance("colour", 0.01))
    assert result["passed"]
    assert result["pass_rate"] == 1.0
    assert result["worst"] == 0.0


def test_a_model_using_an_irrelevant_feature_fails_invariance() -> None:
    contract = contract_of("binary")
    result = behaviour.invariance(USES_COLOUR, table(), contract, Invariance("colour", 0.1))
    assert not result["passed"]
    assert result["worst"] == pytest.approx(0.4)
    assert result["pass_rate"] == 0.0


def test_a_numeric_feature_is_moved_to_its_deciles() -> None:
    """x drives the prediction: moving it is not invariant, unless the tolerance allows it."""
    contract = contract_of("binary")
    strict = behaviour.invariance(BY_X, table(), contract, Invariance("x", 0.1))
    loose = behaviour.invariance(BY_X, table(), contract, Invariance("x", 1.0))
    assert not strict["passed"]
    assert loose["passed"]


def test_an_increasing_model_passes_and_a_decreasing_one_fails() -> None:
    contract = contract_of("binary")
    up = Directional("x", "increasing", step=1.0, target_class="yes")
    assert behaviour.directional(BY_X, table(), contract, up)["passed"]
    failed = behaviour.directional(FALLING, table(), contract, up)
    assert not failed["passed"]
    assert failed["pass_rate"] == 0.0
    assert failed["worst"] > 0.1
    down = Directional("x", "decreasing", step=1.0)  # binary: the positive class by default
    assert behaviour.directional(FALLING, table(), contract, down)["passed"]


def test_a_partial_pass_rate_is_judged_against_min_pass_rate() -> None:
    """Rising below 5, falling above: about half the rows pass."""
    bump = Rule(lambda f: 1 - np.abs(f["x"] - 5) / 5)
    contract = contract_of("binary")
    frame = table()
    half = behaviour.directional(bump, frame, contract, Directional("x", "increasing", 0.5))
    assert 0.3 < half["pass_rate"] < 0.7
    assert not half["passed"]
    lenient = Directional("x", "increasing", 0.5, min_pass_rate=0.3)
    assert behaviour.directional(bump, frame, contract, lenient)["passed"]


def test_rows_missing_the_feature_are_not_judged_by_directional() -> None:
    frame = table()
    frame.loc[:9, "x"] = np.nan
    check = Directional("x", "increasing", 1.0)
    assert behaviour.directional(BY_X, frame, contract_of("binary"), check)["rows"] == 190


def test_a_bad_slice_fails_minimum_and_small_slices_are_not_judged() -> None:
    wrong_on_red = Rule(lambda f: np.where(f["colour"] == "red", f["x"] <= 5, f["x"] > 5))
    contract = contract_of("binary")
    frame = table()
    result = behaviour.minimum(
        wrong_on_red, frame, contract, Minimum("colour", "accuracy", 0.9), 0.5
    )
    by_value = {s["value"]: s for s in result["slices"]}
    assert not result["passed"]
    assert result["worst"] == 0.0
    assert by_value["blue"]["passed"]
    assert not by_value["red"]["passed"]
    few = pd.concat([frame[frame["colour"] == "blue"], frame[frame["colour"] == "red"].head(5)])
    small = behaviour.minimum(
        wrong_on_red, few, contract, Minimum("colour", "accuracy", 0.9, 10), 0.5
    )
    assert small["passed"]
    assert {s["value"]: s["score"] for s in small["slices"]}["red"] is None
    # the table names the worst slice, not just its score
    assert behaviour.result_text(result) == ("0.0000 (`red`)", "≥ 0.9")


def test_the_table_shows_the_largest_change_beside_the_pass_rate() -> None:
    contract = contract_of("binary")
    result = behaviour.invariance(BY_X, table(), contract, Invariance("colour", 0.2))
    measured, required = behaviour.result_text(result)
    assert measured == f"100.0% of {result['rows']} rows (largest change 0)"
    assert required == "≥ 100%"


def test_regression_changes_are_shares_of_the_targets_spread() -> None:
    contract = contract_of("regression")
    frame = table().assign(y=lambda f: f["x"] * 100)  # std about 290
    shifted = Line(lambda f: f["x"] * 100 + 29 * (f["colour"] == "red"))
    result = behaviour.invariance(shifted, frame, contract, Invariance("colour", 0.2))
    assert result["passed"]
    assert 0.05 < result["worst"] < 0.15
    falling = Directional("x", "increasing", 1.0)
    assert not behaviour.directional(Line(lambda f: -f["x"]), frame, contract, falling)["passed"]


def test_no_declarations_is_an_empty_result() -> None:
    results = behaviour.run_checks(BY_X, table(), contract_of("binary"))
    assert results == {"checks": [], "summary": {"checks": 0, "passed": 0, "failed": 0}}
    assert behaviour.gate_refusal(results) is None
    assert behaviour.table(results)[0].startswith("_No behaviour checks declared")


def test_a_failed_check_is_a_gate_refusal_and_a_failing_row() -> None:
    contract = contract_of("binary", invariance=[{"feature": "colour", "tolerance": 0.1}])
    results = behaviour.run_checks(USES_COLOUR, table(), contract)
    assert results["summary"] == {"checks": 1, "passed": 0, "failed": 1}
    refusal = behaviour.gate_refusal(results)
    assert refusal is not None
    assert "changing `colour`" in refusal
    assert "❌ **fail**" in behaviour.table(results)[2]


@pytest.fixture
def forest(make_params: Callable[..., Params], penguins: pd.DataFrame) -> Params:
    """The default model (params.yaml's forest) trained on the tests' penguins table."""
    params = make_params()
    train_frame, test_frame = split.split(penguins, params.contract, 0.25, seed=params.seed)
    storage.write_parquet(params.paths.train, train_frame)
    storage.write_parquet(params.paths.test, test_frame)
    train.run(params)
    return params


def test_the_default_model_passes_every_declared_check(forest: Params) -> None:
    results = stage.run(forest)
    assert results["summary"]["checks"] == forest.contract.behaviour.declared == 4
    assert behaviour.failed(results) == []
    assert storage.read_json(forest.paths.behaviour) == results


def test_checks_over_no_usable_rows_fail_saying_so() -> None:
    """The feature missing in every test row: nothing is judged, so nothing passes."""
    contract = contract_of("binary")
    frame = table().assign(x=np.nan)
    result = behaviour.directional(BY_X, frame, contract, Directional("x", "increasing", 1.0))
    assert not result["passed"]
    assert result["rows"] == 0
    assert "no test row has the feature" in result["measured"]
    still = behaviour.invariance(BY_X, frame, contract, Invariance("x", 1.0))
    assert not still["passed"]
    assert "nothing judged" in still["measured"]


def test_a_minimum_check_judging_no_slice_fails() -> None:
    contract = contract_of("binary")
    result = behaviour.minimum(BY_X, table(30), contract, Minimum("colour", "accuracy", 0.5), 0.5)
    assert all(s["score"] is None for s in result["slices"])
    assert not result["passed"]
    assert result["measured"] == "no slice of at least 20 rows was judged"


def test_a_one_class_slice_is_not_judged_on_roc_auc() -> None:
    """ROC AUC is undefined where every row has one class: listed, not judged as 0.5."""
    contract = contract_of("binary")
    frame = table(400)
    frame.loc[frame["colour"] == "red", "y"] = "yes"  # the red slice is all positive
    result = behaviour.minimum(BY_X, frame, contract, Minimum("colour", "roc_auc", 0.9), 0.5)
    by_value = {s["value"]: s for s in result["slices"]}
    assert by_value["red"]["score"] is None
    assert by_value["red"]["passed"]
    assert by_value["blue"]["score"] is not None
    assert result["passed"]


def test_regression_tolerances_are_described_in_target_standard_deviations() -> None:
    contract = contract_of("regression")
    frame = table().assign(y=lambda f: f["x"] * 100)
    result = behaviour.invariance(
        Line(lambda f: f["x"] * 100), frame, contract, Invariance("colour", 0.5)
    )
    text = behaviour.describe(result)
    assert (
        text == "changing `colour` moves the prediction by at most 0.5 target standard deviations"
    )
    assert text in "\n".join(behaviour.table({"checks": [result]}))
    binary = behaviour.invariance(BY_X, table(), contract_of("binary"), Invariance("colour", 0.5))
    assert "unit" not in binary  # classification: probabilities, as before
    assert behaviour.describe(binary) == "changing `colour` moves any output by at most 0.5"
