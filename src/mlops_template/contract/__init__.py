"""The data contract: the task, the target and every feature of the table.

The contract is data, not code: `mlops contract init` (profile.py) profiles a table and writes
the file that params.yaml's `data.contract` names; the user reviews and commits it; file.py
reads it into the typed objects of spec.py, with the declarations (declarations.py) and each
task's metrics (metrics.py). Everything else derives from the `Contract`. This module only
hands on the names most callers need: `from mlops_template.contract import Contract,
load_contract`.
"""

from __future__ import annotations

from mlops_template.contract.file import (
    contract_dict,
    data_dict,
    load_contract,
    parse_contract,
)
from mlops_template.contract.spec import (
    KINDS,
    MISSING_CATEGORY,
    TASKS,
    Behaviour,
    ColumnSpec,
    Contract,
    ContractError,
    Direction,
    Directional,
    Invariance,
    Kind,
    Minimum,
    Task,
    as_category,
    category_text,
    reserved_name,
)

__all__ = [
    "KINDS",
    "MISSING_CATEGORY",
    "TASKS",
    "Behaviour",
    "ColumnSpec",
    "Contract",
    "ContractError",
    "Direction",
    "Directional",
    "Invariance",
    "Kind",
    "Minimum",
    "Task",
    "as_category",
    "category_text",
    "contract_dict",
    "data_dict",
    "load_contract",
    "parse_contract",
    "reserved_name",
]
