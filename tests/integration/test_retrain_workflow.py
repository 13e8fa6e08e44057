"""retrain.yml, executed with act on this host (see test_workflows.py for the set-up).

Production's monitoring data is simulated: prediction logs and labelled feedback built from the
template's validated penguins, in the moto S3 bucket or in a directory (MONITORING_URI, an act
`--var`). Everything in the jobs is real (make, uv, dvc, `mlops monitor drift`, the pipeline, the
hand-over between the two jobs, git pushes to a bare origin, dvc push to S3) except GitHub's
REST API: a recording stand-in on 127.0.0.1 (tests/support/fake_github.py) that the jobs
reach through GITHUB_API_URL (act lets `--env` override the value it sets itself). It answers
GET /user with the bot's login, `retrain-bot`, and creates pull request #8.
"""

from __future__ import annotations

import json
import re
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.support.act import act, succeeded
from tests.support.fake_github import ApiCall, FakeGitHub, pull_request
from tests.support.project import ran_stages, sh
from tests.support.servers import (
    S3_BUCKET,
    S3_KEY,
    Forge,
    dvc_remote_secrets,
    monitoring_secrets,
    use_s3_remote,
)

pytestmark = pytest.mark.slow

REPOSITORY = "acme/penguins"
PR_TOKEN = "retrain-pr-token-for-tests"
BOT = "retrain-bot"
LIST_OPEN = ("GET", f"/repos/{REPOSITORY}/pulls?state=open&per_page=100")
RECORDS = 300
SHIFT_MM = 10.0


# --- simulated production traffic -------------------------------------------------------------


def traffic(validated: Path, shift_mm: float, seed: int) -> tuple[str, str]:
    """~300 prediction records (JSONL) from real rows, and feedback labelling each of them.

    The prediction is the true species: what a perfect champion would have said."""
    rows = pd.read_parquet(validated).sample(n=RECORDS, replace=True, random_state=seed)
    predictions, feedback = [], []
    for number, row in enumerate(rows.to_dict("records")):
        species = row.pop("species")
        features = {name: None if pd.isna(value) else value for name, value in row.items()}
        if features["bill_length_mm"] is not None:
            features["bill_length_mm"] = round(features["bill_length_mm"] + shift_mm, 1)
        prediction_id = f"{seed:08x}{number:024x}"
        predictions.append(
            {
                "ts": 1764000000.0 + number,
                "id": prediction_id,
                "role": "champion",
                "model_version": "3f1c0a9e2b7d",
                "features": features,
                "prediction": species,
                "probabilities": {
                    name: float(name == species) for name in ("Adelie", "Chinstrap", "Gentoo")
                },
            }
        )
        feedback.append({"id": prediction_id, "label": species})
    lines = [json.dumps(record) for record in predictions]
    return "\n".join(lines) + "\n", "".join(json.dumps(label) + "\n" for label in feedback)


def monitoring_in_s3(forge: Forge, prefix: str, shift_mm: float) -> str:
    import boto3

    predictions, feedback = traffic(forge.root / "template/data/validated.parquet", shift_mm, 1)
    s3 = boto3.client(
        "s3",
        endpoint_url=forge.endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
        region_name="us-east-1",
    )
    s3.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/predictions.jsonl", Body=predictions.encode())
    s3.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/feedback.jsonl", Body=feedback.encode())
    return f"s3://{S3_BUCKET}/{prefix}"


def monitoring_in_directory(forge: Forge, name: str, shift_mm: float) -> str:
    directory = forge.root / name
    directory.mkdir()
    predictions, feedback = traffic(forge.root / "template/data/validated.parquet", shift_mm, 2)
    (directory / "predictions.jsonl").write_text(predictions)
    (directory / "feedback.jsonl").write_text(feedback)
    return str(directory)


# --- running retrain.yml ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    output: str
    calls: list[ApiCall]
    artifacts: Path

    def opened(self) -> ApiCall:
        """The request that opened the pull request."""
        post = ("POST", f"/repos/{REPOSITORY}/pulls")
        (call,) = [c for c in self.calls if (c.method, c.path) == post]
        return call


def retrain_branches(forge: Forge) -> list[str]:
    refs = sh(
        forge.origin, "git", "for-each-ref", "--format=%(refname:short)", "refs/heads/retrain"
    )
    return refs.stdout.split()


def act_retrain(
    forge: Forge,
    name: str,
    event: str,
    payload: dict,
    monitoring_uri: str,
    open_pulls: list[dict[str, Any]] | None = None,
    page_size: int = 100,
) -> tuple[subprocess.CompletedProcess[str], list[ApiCall], Path]:
    clone = forge.root / name
    sh(forge.root, "git", "clone", "-q", str(forge.origin), name)
    use_s3_remote(clone, forge.endpoint, "store")
    artifacts = forge.root / f"{name}-artifacts"
    pulls = {pr["number"]: pr for pr in open_pulls or []}
    with FakeGitHub(user=BOT, pulls=pulls, page_size=page_size) as api:
        result = act(
            clone,
            event,
            "retrain.yml",
            {**payload, "repository": {"full_name": REPOSITORY}},
            secrets={**dvc_remote_secrets(), **monitoring_secrets(), "RETRAIN_PR_TOKEN": PR_TOKEN},
            env={
                "ACT_STUB_ARTIFACTS": str(artifacts),
                "GITHUB_REPOSITORY": REPOSITORY,
                "GITHUB_API_URL": api.url,
                # A run id of its own per run: the retrain/<date>-<run id> branches differ.
                "GITHUB_RUN_ID": str(zlib.crc32(name.encode())),
                "AWS_ENDPOINT_URL": forge.endpoint,  # MONITORING_URI in the moto bucket
            },
            variables={"MONITORING_URI": monitoring_uri},
        )
    return result, list(api.calls), artifacts


def run_retrain(forge: Forge, name: str, event: str, payload: dict, monitoring_uri: str) -> Run:
    result, calls, artifacts = act_retrain(forge, name, event, payload, monitoring_uri)
    return Run(succeeded(result), calls, artifacts)


DISPATCH = {"inputs": {"force": False}}


@pytest.fixture(scope="module")
def drifted(forge: Forge) -> Run:
    """A manual run (force=false) on traffic whose bills are 10 mm longer, fetched from S3."""
    uri = monitoring_in_s3(forge, "monitoring/drifted", SHIFT_MM)
    return run_retrain(forge, "retrain-drifted", "workflow_dispatch", DISPATCH, uri)


def test_drift_is_detected_and_the_model_retrained(drifted: Run) -> None:
    assert "drift: drift (300 predictions)" in drifted.output
    assert "Running stage 'ingest'" in drifted.output  # the forced ingest
    html = (drifted.artifacts / "drift-report" / "drift.html").read_text()
    assert "Drift report: drift" in html
    assert "## Model report" in (drifted.artifacts / "retrain-report" / "report.md").read_text()


def test_drift_opens_one_pull_request_with_both_reports(forge: Forge, drifted: Run) -> None:
    assert [(call.method, call.path) for call in drifted.calls] == [
        ("GET", "/user"),  # the bot: the account of RETRAIN_PR_TOKEN
        LIST_OPEN,  # none open yet
        ("POST", f"/repos/{REPOSITORY}/pulls"),
    ]
    call = drifted.opened()
    assert call.headers["Authorization"] == f"Bearer {PR_TOKEN}"
    assert call.body["base"] == "main"
    assert re.fullmatch(r"retrain/\d{4}-\d{2}-\d{2}-\w+", call.body["head"])
    assert call.body["title"].startswith("Retrain: drift in production traffic")
    body = call.body["body"]
    assert body.startswith("## Drift report: 🔴 drift")
    drift_row = next(
        line for line in body.splitlines() if line.startswith("| `bill_length_mm` | KS")
    )
    assert drift_row.endswith("| **yes** |")
    assert "## Model report" in body  # the training report follows
    assert "![" not in body  # its plots are relative images a PR body cannot show ...
    assert "The plots are in the `retrain-report` artifact" in body  # ... so it says where
    assert len(body) < 65536
    assert "Opened by the retrain workflow" in body


def test_drift_branch_is_pushed_with_the_drift_report(forge: Forge, drifted: Run) -> None:
    branch = drifted.opened().body["head"]
    assert retrain_branches(forge) == [branch]
    head = sh(forge.origin, "git", "log", "-1", "--format=%an|%s", branch).stdout
    assert head.startswith("github-actions[bot]|Retrain: drift in production traffic")
    parent = sh(forge.origin, "git", "rev-parse", f"{branch}^").stdout
    assert parent == sh(forge.origin, "git", "rev-parse", "main").stdout  # one commit on main
    changed = sh(forge.origin, "git", "show", "--name-only", "--format=", branch).stdout.split()
    assert "reports/drift/drift.json" in changed
    assert "reports/drift/drift.md" in changed
    assert "reports/drift/drift.html" not in changed  # the artifact, not the history
    committed = json.loads(
        sh(forge.origin, "git", "show", f"{branch}:reports/drift/drift.json").stdout
    )
    assert committed["drifted"] is True


@pytest.fixture(scope="module")
def quiet(forge: Forge, drifted: Run) -> Run:
    """A manual run (force=false) on unshifted traffic from a directory: nothing to do."""
    uri = monitoring_in_directory(forge, "monitoring-quiet", 0.0)
    return run_retrain(forge, "retrain-quiet", "workflow_dispatch", DISPATCH, uri)


def test_no_drift_and_no_force_opens_no_pull_request(
    forge: Forge, drifted: Run, quiet: Run
) -> None:
    assert "drift: no drift (300 predictions)" in quiet.output
    assert ran_stages(quiet.output) == []  # retraining skipped
    assert quiet.calls == []
    assert retrain_branches(forge) == [drifted.opened().body["head"]]  # only the drift one
    assert (
        (quiet.artifacts / "drift-report" / "drift.md")
        .read_text()
        .startswith("## Drift report: 🟢 no drift")
    )


@pytest.fixture(scope="module")
def weekly(forge: Forge, quiet: Run) -> Run:
    """The weekly schedule on unshifted traffic: retrains, changes nothing, opens nothing."""
    uri = monitoring_in_directory(forge, "monitoring-weekly", 0.0)
    return run_retrain(forge, "retrain-weekly", "schedule", {"schedule": "17 5 * * 1"}, uri)


def test_weekly_run_retrains_but_opens_no_pull_request_without_changes(
    forge: Forge, drifted: Run, weekly: Run
) -> None:
    assert "drift: no drift (300 predictions)" in weekly.output
    assert "Running stage 'ingest'" in weekly.output  # scheduled runs always retrain
    assert "no drift and retraining changed nothing: no pull request needed" in weekly.output
    assert weekly.calls == []
    assert retrain_branches(forge) == [drifted.opened().body["head"]]


def test_a_run_started_by_hand_says_how_to_keep_the_schedule(quiet: Run, weekly: Run) -> None:
    """GitHub disables schedules after 60 days without activity: a manual run says so."""
    assert "This retraining run was started by hand" in quiet.output
    assert "gh workflow enable retrain.yml" in quiet.output
    assert "This retraining run was started by hand" not in weekly.output


def test_an_unreadable_log_fails_the_run_before_retraining(forge: Forge, drifted: Run) -> None:
    """`mlops monitor drift` exiting 1 (not 0 or 3) fails the step; nothing is retrained or
    opened."""
    uri = monitoring_in_directory(forge, "monitoring-broken", 0.0)
    log = Path(uri) / "predictions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join([*lines[:10], "{not json\n", *lines[10:]]))
    result, calls, _ = act_retrain(forge, "retrain-broken", "workflow_dispatch", DISPATCH, uri)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "predictions.jsonl:11: not a JSON prediction record" in output
    assert ran_stages(output) == []
    assert calls == []
    assert retrain_branches(forge) == [drifted.opened().body["head"]]


def test_drift_while_a_retraining_pr_is_open_comments_on_it(forge: Forge, drifted: Run) -> None:
    """No second pull request while the first is open: this run's report goes to it. Read one
    pull request per page, the bot's comes after a fork's `retrain/x` and one opened by hand."""
    uri = monitoring_in_s3(forge, "monitoring/still-drifted", SHIFT_MM)
    branch = drifted.opened().body["head"]
    still_open = [
        pull_request(12, "retrain/x", head_repo="eve/penguins", author="eve"),
        pull_request(10, "retrain/by-hand", author="alice"),
        pull_request(8, branch, author=BOT),
    ]
    result, calls, _ = act_retrain(
        forge,
        "retrain-persisting",
        "workflow_dispatch",
        DISPATCH,
        uri,
        open_pulls=still_open,
        page_size=1,
    )
    output = succeeded(result)
    assert "retraining pull request #8 is still open" in output
    assert [(call.method, call.path) for call in calls] == [
        ("GET", "/user"),
        LIST_OPEN,
        ("GET", f"/repos/{REPOSITORY}/pulls?state=open&per_page=100&page=2"),
        ("GET", f"/repos/{REPOSITORY}/pulls?state=open&per_page=100&page=3"),
        ("POST", f"/repos/{REPOSITORY}/issues/8/comments"),
    ]
    assert calls[-1].body["body"].startswith("## Drift report: 🔴 drift")
    assert calls[-1].headers["Authorization"] == f"Bearer {PR_TOKEN}"
    assert retrain_branches(forge) == [branch]  # no new branch


def test_a_fork_pr_from_a_branch_named_retrain_is_not_taken_for_it(
    forge: Forge, drifted: Run
) -> None:
    """A fork's `retrain/x` (even by an account named like the bot) is not the open
    retraining pull request: this run opens a real one and comments on nothing."""
    uri = monitoring_in_s3(forge, "monitoring/fork", SHIFT_MM)
    before = retrain_branches(forge)
    fork = [pull_request(9, "retrain/x", head_repo="eve/penguins", author=BOT)]
    result, calls, _ = act_retrain(
        forge, "retrain-fork", "workflow_dispatch", DISPATCH, uri, open_pulls=fork
    )
    output = succeeded(result)
    assert "is still open" not in output
    assert [(call.method, call.path) for call in calls] == [
        ("GET", "/user"),
        LIST_OPEN,
        ("POST", f"/repos/{REPOSITORY}/pulls"),
    ]
    new = calls[-1].body["head"]
    assert new.startswith("retrain/")
    assert retrain_branches(forge) == sorted([*before, new])


def test_parsing_production_logs_held_no_write_credential(drifted: Run) -> None:
    """The job that read the logs and retrained was `retrain`; only `open-pr` pushed."""
    lines = drifted.output.splitlines()
    retrain = [line for line in lines if line.startswith("[retrain/Check for drift, retrain")]
    publish = [line for line in lines if line.startswith("[retrain/Push the outputs and open")]
    assert any("drift: drift (300 predictions)" in line for line in retrain)
    assert any("open-pr: pushed" in line for line in publish)
    assert any("they match their dvc.lock" in line for line in publish)
    assert not any("drift:" in line for line in publish)
