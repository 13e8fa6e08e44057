"""The data contract's file: reading it (every error names the file and the key) and writing
it. The contract itself, the objects every stage and the service use, is contract/spec.py; its names
are imported from here too (`from mlops_template.contract import Contract`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlops_template.contract.declarations import declarations_dict, parse_declarations
from mlops_template.contract.spec import (
    KINDS,
    MISSING_CATEGORY,
    TASKS,
    ColumnSpec,
    Contract,
    ContractError,
    Task,
    as_category,
    category_text,
    reserved_name,
)


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _category(value: object, where: str) -> str:
    """A category written in the contract file. YAML reads yes, no, on, off, true and false
    as booleans: a file that means the text must quote it."""
    if isinstance(value, bool):
        raise ContractError(
            f"{where}: {value!r} is a YAML boolean; quote the category (for example 'yes' or"
            " 'True') so it is text"
        )
    if not isinstance(value, str | int | float):
        raise ContractError(f"{where}: {value!r} is not a category (text or a number)")
    text = category_text(value)
    if text.strip() == MISSING_CATEGORY:
        raise ContractError(f"{where}: an empty category; a missing value is written null")
    return text


def _spec(raw: object, where: str) -> ColumnSpec:
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ContractError(f"{where}: `name` must be a non-empty string")
    where = f"{where} ({name})"
    if reserved_name(name):
        raise ContractError(
            f"{where}: a column name may not start with `_` or `model_` (the service's request"
            " fields cannot take it); rename the column in the table"
        )
    known = {"name", "kind", "description", "nullable", "minimum", "maximum", "categories"}
    known |= {"sensitive"}  # the model card's fairness section
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown} (allowed: {sorted(known)})")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ContractError(f"{where}: `kind` must be one of {list(KINDS)}, got {kind!r}")
    nullable = raw.get("nullable", True)
    for key in ("nullable", "sensitive"):
        if not isinstance(raw.get(key, key == "nullable"), bool):
            raise ContractError(f"{where}: `{key}` must be true or false")
    minimum = _number(raw.get("minimum"), f"{where}.minimum")
    maximum = _number(raw.get("maximum"), f"{where}.maximum")
    categories = raw.get("categories") or []
    if not isinstance(categories, list):
        raise ContractError(f"{where}: `categories` must be a list")
    if kind == "categorical":
        if minimum is not None or maximum is not None:
            raise ContractError(f"{where}: a categorical column has no minimum or maximum")
        if not categories:
            raise ContractError(f"{where}: a categorical column needs `categories`")
        names = [_category(value, f"{where}.categories") for value in categories]
        if len(set(names)) != len(names):
            raise ContractError(f"{where}: `categories` repeat a value")
    else:
        if categories:
            raise ContractError(f"{where}: a numeric column has no `categories`")
        if minimum is not None and maximum is not None and minimum > maximum:
            raise ContractError(f"{where}: minimum {minimum} is above maximum {maximum}")
        names = []
    return ColumnSpec(
        name=name,
        kind=kind,
        description=str(raw.get("description") or ""),
        nullable=nullable,
        minimum=minimum,
        maximum=maximum,
        categories=tuple(names),
        sensitive=raw.get("sensitive", False),
    )


def _example(raw: object, features: tuple[ColumnSpec, ...], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: `example` must be a mapping of feature to value")
    by_name = {spec.name: spec for spec in features}
    unknown = sorted(set(raw) - set(by_name))
    if unknown:
        raise ContractError(f"{where}: `example` names columns that are not features: {unknown}")
    example: dict[str, Any] = {}
    for name, spec in by_name.items():
        value = raw.get(name)
        if value is None:
            if not spec.nullable:
                raise ContractError(f"{where}: `example` lacks the required feature {name!r}")
            continue
        if spec.kind == "categorical":
            if as_category(value, spec.categories) is None:
                raise ContractError(
                    f"{where}: `example.{name}` = {value!r} is not one of its categories"
                )
            example[name] = as_category(value, spec.categories)
        else:
            number = _number(value, f"{where}: example.{name}")
            low = spec.minimum if spec.minimum is not None else float("-inf")
            high = spec.maximum if spec.maximum is not None else float("inf")
            if number is None or not low <= number <= high:
                raise ContractError(f"{where}: `example.{name}` = {value!r} is outside its range")
            example[name] = number
    return example


def parse_contract(raw: object, source: Path) -> Contract:
    """Validate a loaded contract; every error names the file and the key."""
    where = str(source)
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping at the top level")
    known = {
        "name", "description", "task", "target", "positive", "features", "example",
        "min_rows", "ignored", "behaviour", "intended_use", "limitations",
    }  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown} (allowed: {sorted(known)})")
    task = raw.get("task")
    if task not in TASKS:
        raise ContractError(f"{where}: `task` must be one of {list(TASKS)}, got {task!r}")
    target = _target(raw.get("target"), task, where)
    positive = _positive(raw.get("positive"), task, target, where)
    features = _features(raw.get("features"), target, where)
    min_rows = raw.get("min_rows", 10)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 2:
        raise ContractError(f"{where}: `min_rows` must be an integer of at least 2")
    ignored = raw.get("ignored") or []
    if not isinstance(ignored, list):
        raise ContractError(f"{where}: `ignored` must be a list of column names")
    return Contract(
        name=str(raw.get("name") or source.stem),
        description=str(raw.get("description") or ""),
        task=task,
        target=target,
        features=features,
        example=_example(raw.get("example", {}), features, where),
        positive=positive,
        min_rows=min_rows,
        ignored=tuple(str(name) for name in ignored),
        **parse_declarations(raw, where, features, task, target.categories),
    )


def _target(raw: object, task: Task, where: str) -> ColumnSpec:
    """The target's spec, of the kind the task needs (classes: 2 for binary, 3+ multiclass)."""
    target = _spec(raw, f"{where}: target")
    if task == "regression" and target.kind != "numeric":
        raise ContractError(f"{where}: a regression target must be numeric ({target.name})")
    if task != "regression":
        if target.kind != "categorical":
            raise ContractError(
                f"{where}: a {task} target must be categorical ({target.name});"
                " for a numeric target choose task: regression"
            )
        wanted = 2 if task == "binary" else None
        if wanted is not None and len(target.categories) != wanted:
            raise ContractError(
                f"{where}: a binary target has exactly 2 categories;"
                f" {target.name} has {len(target.categories)}"
            )
        if task == "multiclass" and len(target.categories) < 3:
            raise ContractError(
                f"{where}: a multiclass target has at least 3 categories; with 2, use binary"
            )
    if target.nullable:
        raise ContractError(f"{where}: the target ({target.name}) must not be nullable")
    return target


def _positive(positive: object, task: Task, target: ColumnSpec, where: str) -> str | None:
    """A binary task's positive class, one of the target's categories; no other task has one."""
    if task == "binary":
        if positive is not None:
            positive = _category(positive, f"{where}: positive")
        if positive is None or positive not in target.categories:
            raise ContractError(
                f"{where}: a binary task names its `positive` class, one of"
                f" {list(target.categories)}; got {positive!r}"
            )
        return str(positive)
    if positive is not None:
        raise ContractError(f"{where}: `positive` applies to a binary task only")
    return None


def _features(raw: object, target: ColumnSpec, where: str) -> tuple[ColumnSpec, ...]:
    """The feature specs: at least one, no column named twice (the target included)."""
    if not isinstance(raw, list) or not raw:
        raise ContractError(f"{where}: `features` must be a non-empty list")
    features = tuple(_spec(item, f"{where}: features[{i}]") for i, item in enumerate(raw))
    names = [spec.name for spec in (target, *features)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ContractError(f"{where}: columns named more than once: {repeated}")
    return features


def load_contract(path: Path) -> Contract:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(
            f"{path}: data contract not found; write one with"
            " `mlops contract init --data PATH --target COLUMN` (data.contract in params.yaml)"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ContractError(f"{path}: not valid YAML: {error}") from None
    return parse_contract(raw, path)


def _spec_dict(spec: ColumnSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name, "kind": spec.kind}
    if spec.description:
        out["description"] = spec.description
    out["nullable"] = spec.nullable
    if spec.kind == "numeric":
        out["minimum"] = spec.minimum
        out["maximum"] = spec.maximum
    else:
        out["categories"] = list(spec.categories)
    return out | ({"sensitive": True} if spec.sensitive else {})


def contract_dict(contract: Contract) -> dict[str, Any]:
    """The contract as the mapping its YAML file holds (round-trips through parse_contract)."""
    return data_dict(contract) | declarations_dict(
        contract.behaviour, contract.intended_use, contract.limitations
    )


def data_dict(contract: Contract) -> dict[str, Any]:
    """The contract without its declarations (`behaviour`, `intended_use`, `limitations`):
    the part that decides what the table holds and what the model learns. The validate stage
    writes it for the stages after it to depend on (dvc.yaml)."""
    out: dict[str, Any] = {
        "name": contract.name,
        "description": contract.description,
        "task": contract.task,
        "target": _spec_dict(contract.target),
    }
    if contract.positive is not None:
        out["positive"] = contract.positive
    out["min_rows"] = contract.min_rows
    out["features"] = [_spec_dict(spec) for spec in contract.features]
    out["example"] = dict(contract.example)
    if contract.ignored:
        out["ignored"] = list(contract.ignored)
    return out
