"""The devcontainer: plain JSON, the Dockerfile's Python, the project's own install step."""

from __future__ import annotations

import json
import re

from tests.conftest import REPO_ROOT, repo_params_dict

DEVCONTAINER = REPO_ROOT / ".devcontainer" / "devcontainer.json"


def test_devcontainer_is_json_and_matches_the_dockerfile() -> None:
    config = json.loads(DEVCONTAINER.read_text())  # plain JSON: no comments, no trailing commas
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    python = re.search(r"^ARG BASE_TAG=(\d+\.\d+)-", dockerfile, re.M)
    assert python, "Dockerfile: no BASE_TAG with a Python version"
    assert f":1-{python.group(1)}-bookworm" in config["image"]
    assert config["postCreateCommand"] == "make install"
    assert repo_params_dict()["serve"]["port"] in config["forwardPorts"]
    assert "docker-outside-of-docker" in next(iter(config["features"]))
