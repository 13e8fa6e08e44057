"""The contract's declarations about the model (declarations.py): `behaviour:`, `sensitive`,
`intended_use` and `limitations` parse strictly, naming the key, and round-trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_template.contract import (
    ContractError,
    Directional,
    Invariance,
    Minimum,
    contract_dict,
    load_contract,
    parse_contract,
)
from tests.conftest import DEFAULT_CONTRACT, small_contract

SOURCE = Path("small.yaml")
GOOD = {
    "invariance": [{"feature": "colour", "tolerance": 0.05, "min_pass_rate": 0.9}],
    "directional": [{"feature": "x", "direction": "increasing", "step": 1, "class": "yes"}],
    "minimum": [{"feature": "colour", "metric": "accuracy", "threshold": 0.8, "min_rows": 5}],
}


def _with(task: str = "binary", **top: Any) -> dict[str, Any]:
    return {**small_contract(task), **top}


def test_declarations_parse_and_round_trip() -> None:
    raw = _with(
        behaviour=GOOD,
        intended_use="Triage only.",
        limitations=["Small sample.", "One site."],
    )
    raw["features"][1]["sensitive"] = True
    contract = parse_contract(raw, SOURCE)
    assert contract.behaviour.invariance == (Invariance("colour", 0.05, 0.9),)
    assert contract.behaviour.directional == (Directional("x", "increasing", 1.0, "yes"),)
    assert contract.behaviour.minimum == (Minimum("colour", "accuracy", 0.8, 5),)
    assert contract.intended_use == ("Triage only.",)
    assert contract.limitations == ("Small sample.", "One site.")
    assert contract.sensitive_features() == ["colour"]
    assert parse_contract(contract_dict(contract), SOURCE) == contract


def test_no_declarations_are_no_checks() -> None:
    contract = parse_contract(small_contract("regression"), SOURCE)
    assert contract.behaviour.declared == 0
    assert contract.sensitive_features() == []
    assert "behaviour" not in contract_dict(contract)


def test_the_default_contract_declares_checks_and_a_sensitive_column() -> None:
    contract = load_contract(DEFAULT_CONTRACT)
    assert contract.behaviour.declared == 4
    assert contract.sensitive_features() == ["sex"]
    assert contract.intended_use
    assert contract.limitations


def _check(kind: str, **changes: Any) -> dict[str, Any]:
    return {kind: [{**GOOD[kind][0], **changes}]}


BROKEN = {
    "unknown section": ({"monotone": []}, r"behaviour: unknown keys \['monotone'\]"),
    "unknown key": (
        _check("invariance", tol=1),
        r"behaviour.invariance\[0\]: unknown keys \['tol'\]",
    ),
    "missing tolerance": (
        {"invariance": [{"feature": "colour"}]},
        r"behaviour.invariance\[0\]: missing keys \['tolerance'\]",
    ),
    "not a feature": (
        _check("invariance", feature="age"),
        r"behaviour.invariance\[0\].feature: 'age' is not a feature",
    ),
    "rate above 1": (
        _check("invariance", min_pass_rate=2),
        r"invariance\[0\].min_pass_rate: a share of rows, above 0 and at most 1",
    ),
    "rate of 0": (
        _check("invariance", min_pass_rate=0),
        r"invariance\[0\].min_pass_rate: a share of rows, above 0 and at most 1, got 0",
    ),
    "rate not a number": (
        _check("invariance", min_pass_rate=float("nan")),
        r"invariance\[0\].min_pass_rate: must be a finite number, got nan",
    ),
    "tolerance not a number": (
        _check("invariance", tolerance=float("nan")),
        r"invariance\[0\].tolerance: must be a finite number",
    ),
    "negative tolerance": (
        _check("directional", tolerance=-0.1),
        r"directional\[0\].tolerance: expected a number of at least 0, got -0.1",
    ),
    "feature as a list": (
        _check("invariance", feature=["colour"]),
        r"behaviour.invariance\[0\].feature: expected a text",
    ),
    "feature as a mapping": (
        _check("minimum", feature={"name": "colour"}),
        r"behaviour.minimum\[0\].feature: expected a text",
    ),
    "infinite step": (
        _check("directional", step=float("inf")),
        r"behaviour.directional\[0\].step: must be a finite number",
    ),
    "absurd step": (
        _check("directional", step=1.0e308),
        r"behaviour.directional\[0\].step: must be a finite number",
    ),
    "step not a number": (
        _check("directional", step=float("nan")),
        r"behaviour.directional\[0\].step: must be a finite number",
    ),
    "threshold not a number": (
        _check("minimum", threshold=float("nan")),
        r"behaviour.minimum\[0\].threshold: must be a finite number",
    ),
    "infinite threshold": (
        _check("minimum", threshold=float("-inf")),
        r"behaviour.minimum\[0\].threshold: must be a finite number",
    ),
    "tolerance as text": (
        _check("invariance", tolerance="0.1"),
        r"invariance\[0\].tolerance: expected a number, got '0.1'",
    ),
    "directional on a category": (
        _check("directional", feature="colour"),
        r"directional\[0\].feature: 'colour' is categorical; this check needs numeric",
    ),
    "unknown direction": (
        _check("directional", direction="up"),
        r"directional\[0\].direction: increasing or decreasing, got 'up'",
    ),
    "step not positive": (_check("directional", step=0), r"directional\[0\].step: a positive"),
    "unknown class": (
        _check("directional", **{"class": "maybe"}),
        r"directional\[0\].class: 'maybe' is not one of \['no', 'yes'\]",
    ),
    "minimum on a number": (
        _check("minimum", feature="x"),
        r"minimum\[0\].feature: 'x' is numeric; this check needs categorical",
    ),
    "metric of another task": (
        _check("minimum", metric="rmse"),
        r"minimum\[0\].metric: one of \[.*'accuracy'.*\], got 'rmse'",
    ),
    "a list that is not": (
        {"minimum": {"feature": "colour"}},
        r"behaviour.minimum: expected a list",
    ),
    "a probability's tolerance of 1 or more": (
        _check("invariance", tolerance=5),
        r"invariance\[0\].tolerance: a change of a probability, below 1 .*could never fail.*got 5",
    ),
    "a directional tolerance of 1": (
        _check("directional", tolerance=1),
        r"directional\[0\].tolerance: a change of a probability, below 1",
    ),
    "the same check twice": (
        {
            "minimum": [
                GOOD["minimum"][0],
                {"feature": "colour", "metric": "accuracy", "threshold": 0.7},
                GOOD["minimum"][0],
            ]
        },
        r"behaviour.minimum\[2\]: the same check as minimum\[0\]",
    ),
}


@pytest.mark.parametrize(("section", "message"), BROKEN.values(), ids=list(BROKEN))
def test_bad_declarations_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message) as caught:
        parse_contract(_with(behaviour=section), SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")


def test_a_regression_tolerance_counts_standard_deviations_and_may_exceed_1() -> None:
    section = {"invariance": [{"feature": "colour", "tolerance": 2}]}
    contract = parse_contract(_with("regression", behaviour=section), SOURCE)
    assert contract.behaviour.invariance == (Invariance("colour", 2.0, 1.0),)


def test_a_multiclass_directional_check_names_its_class() -> None:
    section = {"directional": [{"feature": "x", "direction": "increasing", "step": 1}]}
    with pytest.raises(ContractError, match=r"directional\[0\].class: a multiclass task names"):
        parse_contract(_with("multiclass", behaviour=section), SOURCE)


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ({"intended_use": 3}, r"intended_use: expected a text or a list of non-empty texts"),
        ({"limitations": ["ok", ""]}, r"limitations: expected a text or a list"),
    ],
)
def test_intended_use_and_limitations_are_text(top: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_contract(_with(**top), SOURCE)


def test_sensitive_is_true_or_false() -> None:
    raw = small_contract("binary")
    raw["features"][1]["sensitive"] = "yes"
    with pytest.raises(ContractError, match=r"features\[1\] \(colour\): `sensitive` must be"):
        parse_contract(raw, SOURCE)


def test_yaml_non_numbers_are_named_errors(tmp_path: Path) -> None:
    """YAML's .nan and .inf as the contract file writes them."""
    import yaml

    raw = _with(behaviour={"directional": [dict(GOOD["directional"][0])]})
    text = yaml.safe_dump(raw).replace("step: 1", "step: .inf")
    path = tmp_path / "contract.yaml"
    path.write_text(text)
    with pytest.raises(ContractError, match=r"directional\[0\].step: must be a finite number"):
        load_contract(path)


def test_a_numeric_feature_cannot_be_sensitive() -> None:
    raw = small_contract("binary")
    raw["features"][0]["sensitive"] = True
    with pytest.raises(ContractError, match=r"features\[0\] \(x\).sensitive: only a categorical"):
        parse_contract(raw, SOURCE)


@pytest.mark.parametrize(
    ("low", "high", "written"),
    [(0.0, 0.0005, "5.0e-05"), (0.0, 2e17, "2.0e+16"), (150.0, 250.0, "10.0"), (1.0, 1.0, "1.0")],
)
def test_the_examples_steps_are_numbers_yaml_reads_back(
    low: float, high: float, written: str
) -> None:
    """init-schema's commented example writes a tenth of the range; PyYAML reads `5e-05`
    (no dot) as text, so a tiny or huge range must still be written as a YAML number."""
    import yaml

    from mlops_template.contract import ColumnSpec
    from mlops_template.contract.declarations import _tenth

    text = _tenth(ColumnSpec("x", "numeric", minimum=low, maximum=high))
    assert text == written
    assert isinstance(yaml.safe_load(f"step: {text}")["step"], float)
