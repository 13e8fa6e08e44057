"""The served process under attack and fuzzing: the unit tests' models and params files."""

from tests.unit.serve.conftest import (  # noqa: F401 (fixtures, found here by pytest)
    binary_task,
    model_path,
    penguin_task,
    regression_task,
)
