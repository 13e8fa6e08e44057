"""release.yml's trust chain, read from the workflow: who holds which key, and which job runs
what (the jobs themselves run under act in tests/integration/docker/test_lifecycle.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.conftest import REPO_ROOT

JOBS: dict[str, Any] = yaml.safe_load((REPO_ROOT / ".github/workflows/release.yml").read_text())[
    "jobs"
]


def secrets(job: dict[str, Any]) -> set[str]:
    return set(re.findall(r"secrets\.([A-Z_]+)", json.dumps(job)))


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_the_jobs_run_in_the_order_of_the_trust_chain() -> None:
    assert JOBS["rebuild"]["needs"] == "champion"
    assert JOBS["sign-model"]["needs"] == "rebuild"
    assert set(JOBS["build"]["needs"]) == {"rebuild", "sign-model"}
    assert JOBS["gate"]["needs"] == "build"
    assert set(JOBS["push"]["needs"]) == {"build", "gate"}
    assert JOBS["push"]["if"] == "needs.gate.outputs.deploy == 'true'"
    assert JOBS["sign"]["needs"] == "push"


def test_only_the_signing_jobs_hold_an_oidc_token_and_nothing_else() -> None:
    holders = {name for name, job in JOBS.items() if job["permissions"].get("id-token")}
    assert holders == {"sign-model", "sign"}
    assert JOBS["sign-model"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert secrets(JOBS["sign-model"]) == {"MODEL_SIGNING_KEY"}
    assert JOBS["sign"]["permissions"] == {
        "packages": "write",
        "id-token": "write",
        "attestations": "write",
    }
    assert secrets(JOBS["sign"]) == {"GITHUB_TOKEN"}  # the registry login, nothing more
    assert "checkout" not in json.dumps(JOBS["sign"])  # it runs no code of the repository


def test_the_model_is_built_only_in_the_rebuild_job_with_a_read_key() -> None:
    rebuild = JOBS["rebuild"]
    assert rebuild["permissions"] == {"contents": "read"}
    assert secrets(rebuild) == {
        "DVC_REMOTE_READ_ACCESS_KEY_ID",
        "DVC_REMOTE_READ_SECRET_ACCESS_KEY",
    }
    assert runs(rebuild)[1:] == [
        "make rebuild",
        "make gate-inputs CHAMPION_DIR=champion INPUTS=release-inputs",
    ]
    for name, job in JOBS.items():
        if name == "rebuild":
            continue
        for command in runs(job):  # nobody else runs or pulls the pipeline's outputs
            assert not re.search(r"make (run|pull|rebuild|check-lock)\b|dvc (repro|pull)", command)


def test_privileged_jobs_take_only_the_checked_hand_over_and_load_no_model() -> None:
    assert secrets(JOBS["build"]) == set()
    assert JOBS["build"]["permissions"] == {"contents": "read"}
    assert runs(JOBS["build"])[1] == "make accept-inputs INPUTS=release-inputs"
    assert runs(JOBS["gate"])[1:] == ["make release-registry INPUTS=release-inputs"]
    for name in ("gate", "push", "sign", "record"):
        commands = " ".join(runs(JOBS[name]))
        assert "make image" not in commands
        assert "make smoke" not in commands
    assert JOBS["gate"]["environment"] == "production"
    assert JOBS["gate"]["permissions"] == {"contents": "read"}
