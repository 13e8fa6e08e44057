"""schemathesis against the service's own OpenAPI: at least 1,000 generated requests, and not
one server error or undocumented response."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_template.stages.explain import write_background
from tests.support.processes import VENV_BIN, serve_process, wait_service_ready
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import service_params_file

pytestmark = pytest.mark.slow

MIN_CASES = 1000
# Schemathesis's default rejections of invalid data, plus 413: an invalid body larger than the
# route's schema-derived limit (serve/limits.py) is rejected before it is parsed.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]
"""


@pytest.mark.parametrize("task", ["penguin_task", "binary_task", "regression_task"])
def test_fuzzing_the_openapi_finds_no_server_errors(
    tmp_path: Path, request: pytest.FixtureRequest, task: str
) -> None:
    """For each task: the response models differ (a class and probabilities, or a number)."""
    chosen: TaskModel = request.getfixturevalue(task)
    params, port = service_params_file(tmp_path, chosen.onnx_path, chosen.contract_path)
    # /explain's background: this task's training rows, as the explain stage writes them.
    background = tmp_path / "models" / "background.json"
    write_background(background, chosen.frame, chosen.contract, 20, seed=0)
    raw = yaml.safe_load(params.read_text())
    raw["paths"]["background"] = str(background)
    params.write_text(yaml.safe_dump(raw))
    url = f"http://127.0.0.1:{port}"
    process = serve_process(params)
    try:
        wait_service_ready(url, process)
        (tmp_path / "schemathesis.toml").write_text(CONFIG)
        result = subprocess.run(
            [
                str(VENV_BIN / "schemathesis"),
                "--config-file",
                str(tmp_path / "schemathesis.toml"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "600",
                "--seed",
                "20261126",
                "--no-color",
            ],
            cwd=tmp_path,  # schemathesis keeps its state in ./.schemathesis
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases is not None, output[-3000:]
    assert int(cases.group(1)) >= MIN_CASES
    assert cases.group(1) == cases.group(2)
