""".github/CODEOWNERS and the branch rulesets in .github/rulesets (docs/deploy.md,
"Protecting main and the deploy branches"): production's overlay, the base, the admission
policy, what syncs them and the workflows have an owner whose review main requires, and the
deploy/ branches the deploy workflow pushes are the bot's alone."""

from __future__ import annotations

import json
import re

import pytest

from mlops_template.release.gitops import BRANCH_PREFIX
from tests.conftest import REPO_ROOT

CODEOWNERS = REPO_ROOT / ".github" / "CODEOWNERS"
RULESETS = REPO_ROOT / ".github" / "rulesets"
TEAM = re.compile(r"@[A-Za-z0-9-]+/[A-Za-z0-9_.-]+")


def owner_lines() -> list[tuple[str, list[str]]]:
    lines = []
    for line in CODEOWNERS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pattern, *owners = line.split()
            # Only anchored paths are used (and modelled here): /path/to/folder/ or /path/file
            assert re.fullmatch(r"/[\w./-]+", pattern), pattern
            assert owners, f"{pattern}: no owner (the line would remove ownership)"
            assert all(TEAM.fullmatch(owner) for owner in owners), owners
            lines.append((pattern, owners))
    return lines


def owners_of(path: str) -> list[str]:
    """GitHub's rule: the last line whose pattern matches decides."""
    found: list[str] = []
    for pattern, owners in owner_lines():
        folder = pattern.endswith("/")
        if (folder and f"/{path}".startswith(pattern)) or f"/{path}" == pattern:
            found = owners
    return found


@pytest.mark.parametrize(
    "path",
    [
        "deploy/k8s/overlays/production/kustomization.yaml",
        "deploy/k8s/overlays/production/release.yaml",
        "deploy/k8s/base/networkpolicy.yaml",
        "deploy/kyverno/clusterpolicy.yaml",
        "deploy/argocd/production.yaml",
        "deploy/flux/production.yaml",
        ".github/workflows/release.yml",
        ".github/workflows/deploy.yml",
        ".github/CODEOWNERS",
        ".github/rulesets/main.json",
        ".ci/schemas/kyverno.io_clusterpolicy_v1.json",
        ".ci/push-image",
        "Makefile",
        "uv.lock",
        "src/mlops_template/release/gate_inputs.py",
        "src/mlops_template/io/signing.py",
    ],
)
def test_what_decides_production_has_an_owner(path: str) -> None:
    assert (REPO_ROOT / path).exists(), path
    assert owners_of(path), f"{path}: no code owner"


def test_every_owned_path_exists() -> None:
    for pattern, _ in owner_lines():
        target = REPO_ROOT / pattern.strip("/")
        assert target.is_dir() if pattern.endswith("/") else target.is_file(), pattern


def ruleset(name: str) -> dict:
    return dict(json.loads((RULESETS / name).read_text()))


def test_main_requires_a_reviewed_pull_request_with_code_owners() -> None:
    main = ruleset("main.json")
    assert main["target"] == "branch"
    assert main["enforcement"] == "active"
    assert main["conditions"]["ref_name"]["include"] == ["~DEFAULT_BRANCH"]
    assert main["bypass_actors"] == []  # nobody merges around the review
    rules = {rule["type"]: rule.get("parameters") for rule in main["rules"]}
    assert {"deletion", "non_fast_forward", "pull_request"} <= set(rules)
    review = rules["pull_request"]
    assert review["required_approving_review_count"] >= 1
    assert review["require_code_owner_review"] is True
    assert review["require_last_push_approval"] is True  # not approved by its last pusher
    assert review["dismiss_stale_reviews_on_push"] is True


def test_deploy_branches_are_the_bots_alone() -> None:
    """Only the bypass actor, a GitHub App (the deploy workflow's token), may create, push
    to, force-push or delete a deploy/ branch: a commit added to the bot's pull request by
    anyone else is refused, so the pull request says what it deploys."""
    deploy = ruleset("deploy-branches.json")
    assert deploy["enforcement"] == "active"
    assert deploy["conditions"]["ref_name"]["include"] == [f"refs/heads/{BRANCH_PREFIX}*"]
    rules = {rule["type"] for rule in deploy["rules"]}
    assert {"creation", "update", "deletion", "non_fast_forward"} <= rules
    (actor,) = deploy["bypass_actors"]
    assert actor["actor_type"] == "Integration"
    assert actor["bypass_mode"] == "always"
    assert actor["actor_id"] == 0  # the placeholder docs/deploy.md tells to replace
