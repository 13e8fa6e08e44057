"""What the data contract declares about the model rather than the table: the behaviour it must
show (`behaviour:`), what it is for (`intended_use:`) and what it is not good at
(`limitations:`).

Kept apart from contract/file.py, which describes the table: these declarations are read by the
`behaviour` stage and the model card only. Parsing is as strict as the rest of the contract:
an unknown key, a wrong type, a feature that is not in the contract or of the wrong kind is an
error naming the key. `declarations_example` is the commented section `mlops contract init`
ends a new contract with.
"""

from __future__ import annotations

import math
from typing import Any

from mlops_template.contract.metrics import TASK_METRICS
from mlops_template.contract.spec import (
    Behaviour,
    ColumnSpec,
    Contract,
    ContractError,
    Directional,
    Invariance,
    Minimum,
)

# A slice may lack a class: one-vs-rest ROC AUC is then undefined.
# Larger numbers are not measurements: adding 1e308 to a feature overflows to infinity.
MAX_NUMBER = 1e12
SLICE_METRICS = {
    task: tuple(m for m in names if m != "roc_auc_ovr") for task, names in TASK_METRICS.items()
}


def _error(message: str) -> Exception:
    return ContractError(message)


def _keys(raw: object, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _error(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - required - optional)
    if unknown:
        raise _error(f"{where}: unknown keys {unknown} (allowed: {sorted(required | optional)})")
    missing = sorted(required - set(raw))
    if missing:
        raise _error(f"{where}: missing keys {missing}")
    return raw


def _number(value: object, where: str) -> float:
    """A finite number (not a boolean): NaN, infinities and numbers too large to add to a
    feature (YAML's .nan, .inf, 1.0e+308) are errors naming the key."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_NUMBER:
        raise _error(f"{where}: must be a finite number, got {value!r}")
    return number


def _float(raw: dict[str, Any], key: str, where: str, default: float, low: float = 0.0) -> float:
    value = raw.get(key, default)
    number = _number(value, f"{where}.{key}")
    if number < low:
        raise _error(f"{where}.{key}: expected a number of at least {low:g}, got {value!r}")
    return number


def _rate(raw: dict[str, Any], where: str) -> float:
    rate = _float(raw, "min_pass_rate", where, 1.0)
    if not 0.0 < rate <= 1.0:
        raise _error(f"{where}.min_pass_rate: a share of rows, above 0 and at most 1, got {rate:g}")
    return rate


def _feature(raw: dict[str, Any], where: str, features: dict[str, ColumnSpec], kind: str) -> str:
    name = raw["feature"]
    if not isinstance(name, str):
        raise _error(f"{where}.feature: expected a text (a feature's name), got {name!r}")
    if name not in features:
        raise _error(f"{where}.feature: {name!r} is not a feature of the contract")
    if kind != "any" and features[name].kind != kind:
        raise _error(f"{where}.feature: {name!r} is {features[name].kind}; this check needs {kind}")
    return name


def _tolerance(raw: dict[str, Any], where: str, classification: bool) -> float:
    """At least 0; a classifier's is in probabilities, which move by at most 1, so 1 or more
    is a check that can never fail."""
    tolerance = _float(raw, "tolerance", where, 0.0)
    if classification and tolerance >= 1.0:
        raise _error(
            f"{where}.tolerance: a change of a probability, below 1 (a probability moves by"
            f" at most 1, so this check could never fail), got {tolerance:g}"
        )
    return tolerance


def _invariance(
    raw: object, where: str, features: dict[str, ColumnSpec], classification: bool
) -> Invariance:
    item = _keys(raw, where, {"feature", "tolerance"}, {"min_pass_rate"})
    return Invariance(
        _feature(item, where, features, "any"),
        _tolerance(item, where, classification),
        _rate(item, where),
    )


def _directional(
    raw: object, where: str, features: dict[str, ColumnSpec], classes: tuple[str, ...]
) -> Directional:
    """`classes`: the target's classes (none for a regression)."""
    optional = {"class", "tolerance", "min_pass_rate"}
    item = _keys(raw, where, {"feature", "direction", "step"}, optional)
    if item["direction"] not in ("increasing", "decreasing"):
        raise _error(f"{where}.direction: increasing or decreasing, got {item['direction']!r}")
    step = _number(item["step"], f"{where}.step")
    if step <= 0:
        raise _error(f"{where}.step: a positive number (the feature's increase), got {step:g}")
    target_class = item.get("class")
    if classes and len(classes) > 2 and target_class is None:
        raise _error(f"{where}.class: a multiclass task names the class, one of {list(classes)}")
    if target_class is not None and str(target_class) not in classes:
        raise _error(f"{where}.class: {target_class!r} is not one of {list(classes)}")
    return Directional(
        feature=_feature(item, where, features, "numeric"),
        direction=item["direction"],
        step=step,
        target_class=None if target_class is None else str(target_class),
        tolerance=_tolerance(item, where, bool(classes)),
        min_pass_rate=_rate(item, where),
    )


def _minimum(raw: object, where: str, features: dict[str, ColumnSpec], task: str) -> Minimum:
    item = _keys(raw, where, {"feature", "metric", "threshold"}, {"min_rows"})
    if not isinstance(item["metric"], str) or item["metric"] not in SLICE_METRICS[task]:
        raise _error(f"{where}.metric: one of {list(SLICE_METRICS[task])}, got {item['metric']!r}")
    min_rows = item.get("min_rows", 20)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise _error(f"{where}.min_rows: a positive integer, got {min_rows!r}")
    return Minimum(
        _feature(item, where, features, "categorical"),
        str(item["metric"]),
        _float(item, "threshold", where, 0.0, low=float("-inf")),
        min_rows,
    )


def _list(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise _error(f"{where}.{key}: expected a list")
    return value


def parse_behaviour(
    raw: object, where: str, features: tuple[ColumnSpec, ...], task: str, classes: tuple[str, ...]
) -> Behaviour:
    """The `behaviour:` section; None or absent is no checks."""
    if raw is None:
        return Behaviour()
    where = f"{where}: behaviour"
    section = _keys(raw, where, set(), {"invariance", "directional", "minimum"})
    by_name = {spec.name: spec for spec in features}
    kinds = [_list(section, key, where) for key in ("invariance", "directional", "minimum")]
    classification = task != "regression"
    behaviour = Behaviour(
        tuple(
            _invariance(x, f"{where}.invariance[{i}]", by_name, classification)
            for i, x in enumerate(kinds[0])
        ),
        tuple(
            _directional(x, f"{where}.directional[{i}]", by_name, classes)
            for i, x in enumerate(kinds[1])
        ),
        tuple(_minimum(x, f"{where}.minimum[{i}]", by_name, task) for i, x in enumerate(kinds[2])),
    )
    _no_repeats(behaviour, where)
    return behaviour


def _no_repeats(behaviour: Behaviour, where: str) -> None:
    """The same check twice is a copy-paste slip: it would be run and counted twice."""
    for key in ("invariance", "directional", "minimum"):
        checks: tuple[object, ...] = getattr(behaviour, key)
        for index, check in enumerate(checks):
            if check in checks[:index]:
                first = checks.index(check)
                raise _error(f"{where}.{key}[{index}]: the same check as {key}[{first}]")


def parse_text(raw: object, where: str) -> tuple[str, ...]:
    """`intended_use` or `limitations`: one text, or a list of texts (one point each)."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) and x.strip() for x in items):
        raise _error(f"{where}: expected a text or a list of non-empty texts, got {raw!r}")
    return tuple(x.strip() for x in items)


def behaviour_dict(behaviour: Behaviour) -> dict[str, Any]:
    """The section as the contract file writes it (round-trips through parse_behaviour)."""
    out: dict[str, Any] = {}
    if behaviour.invariance:
        out["invariance"] = [vars(check).copy() for check in behaviour.invariance]
    if behaviour.directional:
        out["directional"] = [
            {("class" if k == "target_class" else k): v for k, v in vars(check).items()}
            for check in behaviour.directional
        ]
    if behaviour.minimum:
        out["minimum"] = [vars(check).copy() for check in behaviour.minimum]
    return out


def parse_declarations(
    raw: dict[str, Any],
    where: str,
    features: tuple[ColumnSpec, ...],
    task: str,
    classes: tuple[str, ...],
) -> dict[str, Any]:
    """The contract's `behaviour`, `intended_use` and `limitations`, as Contract's fields.
    A `sensitive` feature must be categorical: fairness compares the model per category."""
    for i, spec in enumerate(features):
        if spec.sensitive and spec.kind != "categorical":
            raise _error(
                f"{where}: features[{i}] ({spec.name}).sensitive: only a categorical feature can"
                f" be sensitive (the fairness section compares its categories); {spec.name!r}"
                f" is {spec.kind}"
            )
    return {
        "behaviour": parse_behaviour(raw.get("behaviour"), where, features, task, classes),
        "intended_use": parse_text(raw.get("intended_use"), f"{where}: intended_use"),
        "limitations": parse_text(raw.get("limitations"), f"{where}: limitations"),
    }


def declarations_dict(
    behaviour: Behaviour, intended_use: tuple[str, ...], limitations: tuple[str, ...]
) -> dict[str, Any]:
    """The declared keys as the contract file writes them (none when nothing is declared)."""
    out: dict[str, Any] = {}
    if intended_use:
        out["intended_use"] = list(intended_use)
    if limitations:
        out["limitations"] = list(limitations)
    if behaviour.declared:
        out["behaviour"] = behaviour_dict(behaviour)
    return out


def declarations_example(contract: Contract) -> str:
    """A commented example of what a contract may declare about the model (declarations.py),
    naming this table's features, so a fork finds the section where it edits the contract.
    Uncommented as it stands, it is a valid contract."""
    numeric, category = contract.numeric_features(), contract.categorical_features()
    first = contract.feature_names()[0]
    target_class = f", class: {contract.classes[-1]}" if contract.task == "multiclass" else ""
    metric = (
        f"mae, min_rows: 20, threshold: {_tenth(contract.target)}}} # at most"
        if contract.task == "regression"
        else ("accuracy, min_rows: 20, threshold: 0.8} # at least")
    )
    step = (
        next(_tenth(spec) for spec in contract.features if spec.name == numeric[0])
        if numeric
        else "1.0"
    )
    lines = [
        "What the model is for and must do besides scoring well (docs/behaviour.md). Uncomment",
        "and edit; mark a feature `sensitive: true` for a fairness section in the model card.",
        "intended_use: [What the model is for., What it must not be used for.]",
        "limitations: [What it is known not to do well.]",
        "behaviour:",
        "  invariance: # changing a feature that must NOT matter moves any output by at most",
        f"    #          `tolerance` ({first} is a placeholder: name such a feature)",
        f"    - {{feature: {first}, tolerance: 0.05, min_pass_rate: 0.95}}",
    ]
    if numeric:
        lines += [
            "  directional: # adding `step` (here a tenth of its range) to the feature moves the",
            "    #           output the declared way",
            f"    - {{feature: {numeric[0]}, direction: increasing, step: {step}{target_class}}}",
        ]
    if category:
        lines += [
            "  minimum: # every slice of `min_rows` test rows or more scores within the threshold",
            f"    - {{feature: {category[0]}, metric: {metric}",
        ]
    return "".join(f"# {line}\n" for line in lines)


def _tenth(spec: ColumnSpec) -> str:
    """A tenth of a numeric column's range, to two significant figures, as YAML reads a
    number: a step or an error on the column's own scale (1.0 without a range)."""
    if spec.minimum is None or spec.maximum is None or spec.maximum <= spec.minimum:
        return "1.0"
    text = repr(float(f"{(spec.maximum - spec.minimum) / 10:.2g}"))
    mantissa, e, exponent = text.partition("e")
    # YAML 1.1 (PyYAML) reads 5e-05 as text: its floats need a dot before the exponent.
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
