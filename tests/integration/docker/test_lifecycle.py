"""The loop over its lifecycle: one repository, pull request after pull request, merge after
merge, with the real workflows under act (train.yml, pr-comment.yml, release.yml), real dvc
on an S3 API (moto), a real MLflow server, a real Docker engine and a registry on 127.0.0.1.

  PR 1 changes params -> report -> merge -> the first champion; its image is pushed
  PR 2 touches only docs -> merge -> no new version; the code change ships with the champion
  PR 3 retrains to an equal model -> merge -> promoted (a tie: the newest reviewed model wins)
  PR 4 brings data that fails validation -> the comment lists every violation; the check is red
  PR 5 brings a clearly worse model -> merge -> refused: champion and image stay, job green
  PR 6 a good model again -> merge -> promoted and shipped: a refusal blocks nothing after it
  PR 7 the attack: commit 1 makes the Makefile write a crafted model (dvc.lock names it),
       commit 2 reverts the Makefile -> merge -> the release's rebuild fails naming the
       model file: nothing registered, pushed or signed
  PR 8 an honest pull request after it -> merge -> released as before

The steps share one module-scoped state and run in order; each asserts what the user sees.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mlops_template.io.github import REPORT_MARKER
from tests.integration.docker.conftest import BASE_REPO, BASE_TAG, CA_BUNDLE, DOCKER, Engine
from tests.support.act import act, succeeded
from tests.support.fake_github import FakeGitHub, pull_request, workflow_run
from tests.support.processes import free_port
from tests.support.project import adopt_test_project, copy_repo, ran_stages, sh
from tests.support.servers import _mlflow_server, dvc_remote_secrets
from tests.support.signing import KeyPair, key_pair

pytestmark = pytest.mark.docker

REPOSITORY = "acme/penguins"
MODEL = "mlops-template"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@dataclass(frozen=True)
class PullRequest:
    number: int
    branch: str
    clone: Path


@dataclass
class Loop:
    """A bare `origin` (the GitHub repository), and what the workflows talk to."""

    root: Path
    origin: Path
    engine: Engine
    registry: str
    mlflow: str
    remote_env: dict[str, str]
    signing: KeyPair
    runs: int = 0
    releases: list[str] = field(default_factory=list)

    def _dir(self, name: str) -> Path:
        self.runs += 1
        return self.root / f"{self.runs:02d}-{name}"

    def open_pr(self, branch: str, change: Callable[[Path], None]) -> PullRequest:
        clone = self._dir(branch)
        sh(self.root, "git", "clone", "-q", str(self.origin), clone.name)
        sh(clone, "git", "checkout", "-q", "-b", branch)
        change(clone)
        sh(clone, "git", "commit", "-q", "-am", branch)
        sh(clone, "git", "push", "-q", "origin", branch)
        return PullRequest(self.runs, branch, clone)

    def train(self, pr: PullRequest) -> tuple[int, str, Path]:
        """train.yml on the PR (same repository, with the DVC secrets), then, if it succeeded,
        publish.yml on its completion; (exit, both outputs, report)."""
        artifacts = self._dir(f"{pr.branch}-artifacts")
        head = sh(pr.clone, "git", "rev-parse", "HEAD").stdout.strip()
        base = sh(pr.clone, "git", "rev-parse", "origin/main").stdout.strip()
        event = {
            "number": pr.number,
            "pull_request": {
                "number": pr.number,
                "head": {"ref": pr.branch, "sha": head, "repo": {"full_name": REPOSITORY}},
                "base": {"ref": "main", "sha": base, "repo": {"full_name": REPOSITORY}},
            },
            "repository": {"full_name": REPOSITORY},
        }
        result = act(
            pr.clone,
            "pull_request",
            "train.yml",
            event,
            secrets=dvc_remote_secrets(),
            env={
                "ACT_STUB_ARTIFACTS": str(artifacts),
                "AWS_ENDPOINT_URL_S3": self.remote_env["AWS_ENDPOINT_URL_S3"],
            },
        )
        output = result.stdout + result.stderr
        if result.returncode == 0:
            output += self.publish(pr, head, artifacts)
        return result.returncode, output, artifacts / "pr-report"

    def publish(self, pr: PullRequest, head: str, artifacts: Path) -> str:
        """publish.yml from the default branch when train run 98 on the PR succeeded (GitHub's
        API answers that it is this PR's, at `head`): the outputs pushed with the DVC write
        key, dvc.lock committed to the PR's branch. Returns its output."""
        default_branch = self._dir("publish")
        sh(self.root, "git", "clone", "-q", str(self.origin), default_branch.name)
        with FakeGitHub() as api:
            api.runs[98] = workflow_run(98, head, pr.branch, pull_requests=[pr.number])
            api.pulls[pr.number] = pull_request(pr.number, pr.branch, head)
            result = act(
                default_branch,
                "workflow_run",
                "publish.yml",
                {
                    "workflow_run": {
                        "id": 98,
                        "event": "pull_request",
                        "conclusion": "success",
                        "path": ".github/workflows/train.yml",
                        "head_sha": head,
                        "head_branch": pr.branch,
                        "head_repository": {"full_name": REPOSITORY},
                    },
                    "repository": {"full_name": REPOSITORY},
                },
                secrets={**dvc_remote_secrets(), "GITHUB_TOKEN": "workflow-token-for-tests"},
                env={
                    "ACT_STUB_ARTIFACTS": str(artifacts),
                    "AWS_ENDPOINT_URL_S3": self.remote_env["AWS_ENDPOINT_URL_S3"],
                    "GITHUB_REPOSITORY": REPOSITORY,
                    "GITHUB_API_URL": api.url,
                },
            )
        return succeeded(result)

    def comment(self, pr: PullRequest, report_dir: Path) -> str:
        """pr-comment.yml from the default branch: what it posts on the pull request (GitHub's
        API answers that run 99 is this PR's, at the commit train ran on)."""
        default_branch = self._dir("default-branch")
        sh(self.root, "git", "clone", "-q", str(self.origin), default_branch.name)
        head = sh(pr.clone, "git", "rev-parse", "HEAD").stdout.strip()
        with FakeGitHub() as api:
            api.runs[99] = workflow_run(99, head, pr.branch, pull_requests=[pr.number])
            api.pulls[pr.number] = pull_request(pr.number, pr.branch, head)
            result = act(
                default_branch,
                "workflow_run",
                "pr-comment.yml",
                {
                    "workflow_run": {"id": 99, "event": "pull_request", "conclusion": "failure"},
                    "repository": {"full_name": REPOSITORY},
                },
                secrets={"GITHUB_TOKEN": "workflow-token-for-tests"},
                env={
                    "ACT_STUB_ARTIFACTS": str(report_dir.parent),
                    "GITHUB_REPOSITORY": REPOSITORY,
                    "GITHUB_API_URL": api.url,
                },
            )
        succeeded(result)
        (comment,) = api.comments[pr.number]
        return comment["body"]

    def merge(self, pr: PullRequest) -> str:
        """The reviewer merges: main gets the branch as train.yml left it (dvc.lock committed)."""
        maintainer = self._dir(f"merge-{pr.branch}")
        sh(self.root, "git", "clone", "-q", str(self.origin), maintainer.name)
        sh(
            maintainer,
            "git",
            "merge",
            "-q",
            "--no-ff",
            "-m",
            f"Merge #{pr.number}",
            f"origin/{pr.branch}",
        )
        sh(maintainer, "git", "push", "-q", "origin", "main")
        return sh(maintainer, "git", "rev-parse", "HEAD").stdout.strip()

    def release(self, succeed: bool = True, **extra_env: str) -> str:
        """release.yml on the push to main, in a fresh checkout of main; returns its output."""
        checkout = self._dir("release")
        sh(self.root, "git", "clone", "-q", str(self.origin), checkout.name)
        # act takes github.repository from the origin URL; nothing is fetched from it.
        sh(checkout, "git", "remote", "set-url", "origin", f"https://github.com/{REPOSITORY}.git")
        record = self._dir("release-record")
        record.mkdir()
        secret = f" --secret id=ca_bundle,src={CA_BUNDLE}" if CA_BUNDLE.is_file() else ""
        result = act(
            checkout,
            "push",
            "release.yml",
            {"ref": "refs/heads/main", "repository": {"full_name": REPOSITORY}},
            secrets={
                **dvc_remote_secrets(),
                "MLFLOW_TRACKING_URI": self.mlflow,
                # Key-pair model signing (keyless needs GitHub's OIDC token and Sigstore).
                "MODEL_SIGNING_KEY": self.signing.private.read_text(),
            },
            env={
                "AWS_ENDPOINT_URL_S3": self.remote_env["AWS_ENDPOINT_URL_S3"],
                "ACT_STUB_ARTIFACTS": str(self._dir("release-artifacts")),
                "ACT_STUB_RECORD": str(record),
                "DOCKER": str(DOCKER),
                "DOCKER_HOST": self.engine.env["DOCKER_HOST"],
                "DOCKER_BUILDKIT": "1",
                "BUILD_ARGS": f"--network host{secret} --build-arg BASE_REPO={BASE_REPO}"
                f" --build-arg BASE_TAG={BASE_TAG}",
                "SMOKE_PORT": str(free_port()),
                **extra_env,
            },
            variables={
                "IMAGE_REGISTRY": self.registry,
                "MODEL_SIGNING_PUBLIC_KEY": self.signing.public.read_text(),
            },
        )
        output = result.stdout + result.stderr
        if succeed:
            output = succeeded(result)
        else:
            assert result.returncode != 0, output[-4000:]
        self.releases.append(output)
        self._journal(output)
        return output

    def _journal(self, output: str) -> None:
        """What each release did, in `journal.txt` beside the runs (for reading after a run)."""
        outcome = re.search(r"release: [^\n]*", output)
        versions, champion = self.registry_state()
        image = self.digest("champion")[:19] if "champion" in self.tags() else "-"
        line = (
            f"{outcome.group(0) if outcome else '?'} | versions {versions}, champion {champion}"
            f" | image champion {image}"
            f" | pushed {'yes' if 'push-image:' in output else 'nothing'}\n"
        )
        with (self.root / "journal.txt").open("a") as journal:
            journal.write(line)

    # --- what the user looks at -------------------------------------------------------

    def versions(self) -> list[str]:
        client = MlflowClient(tracking_uri=self.mlflow)
        return sorted(v.version for v in client.search_model_versions(f"name = '{MODEL}'"))

    def registry_state(self) -> tuple[list[str], str]:
        """(every registered version, the champion's)."""
        client = MlflowClient(tracking_uri=self.mlflow)
        return self.versions(), str(client.get_model_version_by_alias(MODEL, "champion").version)

    def tags(self) -> set[str]:
        url = f"http://{self.registry}/v2/{REPOSITORY}/tags/list"
        with urllib.request.urlopen(url, timeout=10) as response:
            return set(json.load(response)["tags"] or [])

    def digest(self, tag: str) -> str:
        request = urllib.request.Request(
            f"http://{self.registry}/v2/{REPOSITORY}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": MANIFEST_TYPES},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Docker-Content-Digest"]


def set_params(clone: Path, **model: object) -> None:
    params = clone / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    text = params.read_text()
    start = text.index("\nmodel:\n")
    end = text.index("\nevaluate:\n")
    block = yaml.safe_dump({"model": {**model}}, sort_keys=False)
    params.write_text(text[:start] + "\n" + block + text[end:])
    assert yaml.safe_load(params.read_text())["seed"] == raw["seed"]


def forest(trees: int) -> Callable[[Path], None]:
    return lambda clone: set_params(
        clone,
        kind="random_forest",
        n_estimators=trees,
        max_depth=None,
        min_samples_leaf=1,
        max_samples=None,
        n_jobs=-1,
    )


def pushed(output: str) -> tuple[str, str]:
    found = re.search(r"push-image: (\S+)@(sha256:[0-9a-f]{64})", output)
    assert found is not None, output[-4000:]
    return found.group(1), found.group(2)


@pytest.fixture(scope="module")
def loop(
    tmp_path_factory: pytest.TempPathFactory,
    engine: Engine,
    registry: str,
    remote_env: dict[str, str],
) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("lifecycle")
    origin = root / "origin.git"
    sh(root, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    # The fork's main as the template ships it: dvc.lock committed, outputs in the remote.
    template = copy_repo(root / "template")
    adopt_test_project(template)
    sh(template, "dvc", "repro")
    sh(template, "dvc", "push", env=remote_env)
    sh(template, "git", "add", "-A")
    sh(template, "git", "commit", "-q", "-m", "main's run", check=False)
    sh(template, "git", "remote", "add", "origin", str(origin))
    sh(template, "git", "push", "-q", "origin", "main")
    # An MLflow server of its own: registry versions count from 1.
    server_root = tmp_path_factory.mktemp("lifecycle-mlflow")
    for url in _mlflow_server(server_root, f"sqlite:///{server_root / 'mlflow.db'}"):
        yield Loop(root, origin, engine, registry, url, remote_env, key_pair(root / "keys"))


def test_pr1_params_change_reports_then_releases_the_first_champion(loop: Loop) -> None:
    pr = loop.open_pr("fewer-trees", forest(50))
    code, output, report = loop.train(pr)
    assert code == 0, output[-6000:]
    assert ran_stages(output) == ["train", "evaluate", "behaviour", "explain"]
    text = (report / "report.md").read_text()
    assert "| `model.n_estimators` | `100` | `50` |" in text
    assert (report / "pr_number").read_text().strip() == str(pr.number)

    commit = loop.merge(pr)
    output = loop.release()
    assert "release: promoted: version 1: first model" in output
    assert loop.registry_state() == (["1"], "1")
    # The image is pushed by digest, tagged with the commit, the model and `champion`; the
    # scan, provenance and signature all refer to that digest.
    repository, digest = pushed(output)
    assert repository == f"{loop.registry}/{REPOSITORY}"
    model = re.search(r"tags [0-9a-f]{40}, (model-[0-9a-f]{12}), champion", output)
    assert model is not None
    for tag in (commit, model.group(1), "champion"):
        assert loop.digest(tag) == digest
    record = sorted(loop.root.glob("*-release-record"))[-1]
    # Trivy scanned the saved tarball in the build job (the scan, then the SBOM), and the
    # publish job pushed that very tarball (checked by its sha256) and nothing else.
    scans = (record / "trivy-calls").read_text().splitlines()
    assert [scan.split()[:3] for scan in scans] == [["image", "--input", "image.tar"]] * 2
    assert "--exit-code 1" in scans[0]
    assert "--format cyclonedx" in scans[1]
    (scanned,) = {scan.rsplit("sha256=", 1)[1] for scan in scans}
    assert f"push-image: image.tar is the scanned tarball (sha256 {scanned})" in output
    assert (record / "attested").read_text().strip() == f"{repository}@{digest}"
    assert (record / "cosign-args").read_text().split() == [
        "sign",
        "--yes",
        f"{repository}@{digest}",
    ]


def test_pr2_docs_only_merge_ships_the_code_with_the_champion(loop: Loop) -> None:
    champion_before = loop.digest("champion")
    pr = loop.open_pr(
        "docs",
        lambda clone: (clone / "README.md").write_text(
            (clone / "README.md").read_text() + "\nA note from the team.\n"
        ),
    )
    # train.yml's path filter does not match README.md: GitHub starts no training run.
    commit = loop.merge(pr)
    output = loop.release()
    assert "release: unchanged: version 1" in output
    assert loop.registry_state() == (["1"], "1")
    _, digest = pushed(output)
    assert loop.digest(commit) == digest == loop.digest("champion")
    assert digest != champion_before  # the README is in the image: new code, same model


def test_pr3_an_equal_model_is_promoted_on_a_tie(loop: Loop) -> None:
    pr = loop.open_pr("sixty-trees", forest(60))
    code, output, report = loop.train(pr)
    assert code == 0, output[-6000:]
    assert "🟰 **No change** in `f1_macro`" in (report / "report.md").read_text()
    commit = loop.merge(pr)
    output = loop.release()
    assert "release: promoted: version 2: f1_macro tied" in output
    assert loop.registry_state() == (["1", "2"], "2")
    _, digest = pushed(output)
    assert loop.digest(commit) == digest == loop.digest("champion")


def test_pr4_bad_data_gets_a_red_check_and_a_comment_listing_every_violation(
    loop: Loop,
) -> None:
    def break_data(clone: Path) -> None:
        data = clone / "data" / "penguins.csv"
        text = data.read_text()
        text = text.replace(",Torgersen,", ",Atlantis,", 2)
        text = text.replace(",181.0,3750.0,", ",999.0,3750.0,", 1)
        data.write_text(text.replace(",3800.0,female", ",heavy,female", 1))

    pr = loop.open_pr("bad-data", break_data)
    code, output, report = loop.train(pr)
    assert code != 0  # the check is red ...
    assert ran_stages(output) == ["ingest", "validate"]
    posted = loop.comment(pr, report)  # ... and the reviewer still gets the report
    assert posted == f"{REPORT_MARKER}\n" + (report / "report.md").read_text()
    assert "❌ **Data validation failed**" in posted
    for row in (
        "| `island` | `isin(['Biscoe', 'Dream', 'Torgersen'])` | 2 | `Atlantis` |",
        "| `flipper_length_mm` | `in_range(150.0, 250.0)` | 1 | `999.0` |",
        "| `body_mass_g` | `coerce_dtype('float64')` | 1 | `heavy` |",
    ):
        assert row in posted
    # Nothing was pushed back to the branch: the failed run published nothing.
    log = sh(loop.origin, "git", "log", "-1", "--format=%s", "bad-data").stdout.strip()
    assert log == "bad-data"


def test_pr5_a_worse_model_is_refused_and_nothing_ships(loop: Loop) -> None:
    champion_digest, tags_before = loop.digest("champion"), loop.tags()
    weak = lambda clone: set_params(clone, kind="logistic_regression", C=0.001, max_iter=1000)  # noqa: E731
    pr = loop.open_pr("weak-model", weak)
    code, output, report = loop.train(pr)
    assert code == 0, output[-6000:]
    assert "⚠️ **Worse**" in (report / "report.md").read_text()
    commit = loop.merge(pr)
    output = loop.release()  # green: the refusal blocks nothing
    assert "release: refused: version 3: f1_macro" in output
    assert "::warning title=Model refused::" in output or "Model refused" in output
    assert "push-image:" not in output
    assert loop.registry_state() == (["1", "2", "3"], "2")
    assert loop.digest("champion") == champion_digest
    assert commit not in loop.tags()  # the merge commit's image was never pushed
    assert loop.tags() == tags_before
    client = MlflowClient(tracking_uri=loop.mlflow)
    decisions = [
        json.loads(value)
        for key, value in client.get_model_version(MODEL, "3").tags.items()
        if key.startswith("promotion.")
    ]
    assert [d["promoted"] for d in decisions] == [False]

    # Re-running the same release is idempotent: no new version, the same refusal.
    again = loop.release()
    assert "release: refused: version 3" in again
    assert loop.registry_state() == (["1", "2", "3"], "2")


def test_pr6_a_good_merge_after_a_refusal_still_releases(loop: Loop) -> None:
    pr = loop.open_pr("seventy-trees", forest(70))
    code, output, _ = loop.train(pr)
    assert code == 0, output[-6000:]
    commit = loop.merge(pr)
    output = loop.release()
    assert "release: promoted: version 4" in output
    assert loop.registry_state() == (["1", "2", "3", "4"], "4")
    _, digest = pushed(output)
    assert loop.digest(commit) == digest == loop.digest("champion")


def test_a_vulnerable_image_is_scanned_out_before_the_gate_and_nothing_ships(loop: Loop) -> None:
    """The scan runs in the build job on the saved tarball: a finding fails the release there,
    before the registry gate, and nothing is pushed or registered."""
    versions, tags, champion = loop.registry_state(), loop.tags(), loop.digest("champion")
    pr = loop.open_pr(
        "docs-again",
        lambda clone: (clone / "README.md").write_text(
            (clone / "README.md").read_text() + "\nAnother note.\n"
        ),
    )
    commit = loop.merge(pr)
    output = loop.release(succeed=False, ACT_STUB_TRIVY_EXIT="1")
    assert "Scan the saved image" in output
    assert "scan-image: image.tar" not in output  # it did not pass
    assert "release:" not in output  # the gate never ran
    assert "push-image:" not in output
    assert loop.registry_state() == versions
    assert loop.tags() == tags
    assert commit not in loop.tags()
    assert loop.digest("champion") == champion


# What a branch writer's first commit does to the Makefile's `run` (not a DVC dependency):
# after the real pipeline, a crafted ONNX model with a matching checksum, and dvc.lock made to
# name it, so that train.yml's publish pushes it and commits that lock.
CRAFTED_RUN = """run: install
\t$(RUN) mlops stage preflight
\t$(RUN) dvc repro
\tprintf 'backdoor' >> models/model.onnx
\tsha256sum models/model.onnx | cut -d ' ' -f 1 > models/model.onnx.sha256
\t$(RUN) dvc commit --force train
"""


def test_pr7_a_model_the_merged_code_does_not_build_is_not_released(loop: Loop) -> None:
    versions, tags, champion = loop.registry_state(), loop.tags(), loop.digest("champion")
    honest_run = None

    def craft(clone: Path) -> None:
        nonlocal honest_run
        makefile = clone / "Makefile"
        text = makefile.read_text()
        start = text.index("run: install")
        end = text.index("\n\n", start) + 1
        honest_run = text[start:end]
        makefile.write_text(text[:start] + CRAFTED_RUN + text[end:])
        set_params(  # a plausible change, so that the train stage runs
            clone,
            kind="random_forest",
            n_estimators=80,
            max_depth=None,
            min_samples_leaf=1,
            max_samples=None,
            n_jobs=-1,
        )

    pr = loop.open_pr("more-trees", craft)
    code, output, _ = loop.train(pr)
    assert code == 0, output[-6000:]
    # Commit 2 reverts the Makefile on top of the bot's dvc.lock commit: the diff a reviewer
    # sees is a params change and the bot's lock; dvc.lock names the crafted model.
    sh(pr.clone, "git", "pull", "-q", "--no-rebase", "origin", pr.branch)
    makefile = pr.clone / "Makefile"
    text = makefile.read_text()
    assert honest_run is not None
    makefile.write_text(text.replace(CRAFTED_RUN, honest_run))
    sh(pr.clone, "git", "commit", "-q", "-am", "tidy the Makefile")
    sh(pr.clone, "git", "push", "-q", "origin", pr.branch)
    code, output, _ = loop.train(pr)
    assert code == 0, output[-6000:]
    assert ran_stages(output) == []  # dvc repro sees nothing to do: the lock names the files
    crafted_lock = sh(loop.origin, "git", "show", f"{pr.branch}:dvc.lock").stdout
    assert "tidy the Makefile" in sh(pr.clone, "git", "log", "-3", "--format=%s").stdout

    commit = loop.merge(pr)
    assert sh(loop.origin, "git", "show", "main:dvc.lock").stdout == crafted_lock
    output = loop.release(succeed=False)
    assert "does not rebuild to the reviewed outputs" in output
    assert "models/model.onnx (stage train): dvc.lock says md5" in output
    assert "release:" not in output  # the gate never ran
    assert "push-image:" not in output
    assert loop.registry_state() == versions
    assert loop.tags() == tags
    assert commit not in loop.tags()
    assert loop.digest("champion") == champion


def test_pr8_an_honest_pull_request_after_the_attack_releases(loop: Loop) -> None:
    pr = loop.open_pr("ninety-trees", forest(90))
    code, output, _ = loop.train(pr)
    assert code == 0, output[-6000:]
    commit = loop.merge(pr)
    output = loop.release()
    assert "rebuild: all" in output
    assert "release: promoted: version 5" in output, output[-4000:]
    _, digest = pushed(output)
    assert loop.digest(commit) == digest == loop.digest("champion")
