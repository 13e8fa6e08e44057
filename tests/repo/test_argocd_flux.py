"""deploy/argocd and deploy/flux, the pull-based deploy: one Argo CD Application and one Flux
Kustomization per overlay of deploy/k8s, on main of this repository, into the overlay's own
namespace.

kubernetes-validate holds the schemas of Kubernetes' own kinds only: it cannot check Argo CD's
or Flux's custom resources offline (a test below shows it skipping them), and no cluster with
their CRDs is available here. So this file checks the fields that decide what gets deployed:
the API versions, the paths (overlays that exist and render), the namespaces (the overlays'),
the repository URL (one placeholder, the overlays' image repository's), the sync settings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = sorted(path.name for path in (DEPLOY / "k8s" / "overlays").iterdir() if path.is_dir())
# The current versions: Argo CD's CRDs have only v1alpha1; Flux's GA APIs (Flux 2.0 and later).
API_VERSIONS = {
    "AppProject": "argoproj.io/v1alpha1",
    "Application": "argoproj.io/v1alpha1",
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
}
IN_CLUSTER = "https://kubernetes.default.svc"
REPO_URL = re.compile(r"https://github\.com/(?P<path>[A-Za-z0-9._-]+/[A-Za-z0-9._-]+)\.git")


def kustomize(directory: Path) -> list[dict[str, Any]]:
    text = subprocess.run(
        [str(VENV_BIN / "kubectl"), "kustomize", str(directory)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return list(yaml.safe_load_all(text))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item["kind"] == kind]


@pytest.fixture(scope="module")
def argocd() -> list[dict[str, Any]]:
    return kustomize(DEPLOY / "argocd")


@pytest.fixture(scope="module")
def flux() -> list[dict[str, Any]]:
    return kustomize(DEPLOY / "flux")


@pytest.fixture(scope="module")
def overlays() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(DEPLOY / "k8s" / "overlays" / name) for name in OVERLAYS}


def overlay_namespace(objects: list[dict[str, Any]]) -> str:
    (namespace,) = of_kind(objects, "Namespace")
    return namespace["metadata"]["name"]


def by_environment(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    found = of_kind(objects, kind)
    environments = {
        item["metadata"]["labels"]["mlops-template/environment"]: item for item in found
    }
    assert len(environments) == len(found), f"two {kind}s for one environment"
    return environments


@pytest.mark.parametrize("tool", ["argocd", "flux"])
def test_every_file_parses_is_in_the_kustomization_and_has_the_current_api_version(
    tool: str, request: pytest.FixtureRequest
) -> None:
    directory = DEPLOY / tool
    files = sorted(
        path.name for path in directory.glob("*.yaml") if path.name != "kustomization.yaml"
    )
    listed = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == files, f"deploy/{tool}/kustomization.yaml must list every file"
    for name in files:
        (document,) = yaml.safe_load_all((directory / name).read_text())
        assert document["apiVersion"] == API_VERSIONS[document["kind"]], name
    rendered = request.getfixturevalue(tool)
    assert len(rendered) == len(files)
    namespace = {"argocd": "argocd", "flux": "flux-system"}[tool]
    assert {item["metadata"]["namespace"] for item in rendered} == {namespace}
    assert not of_kind(rendered, "Secret"), "no secrets in git: create them in the cluster"


def test_kubernetes_validate_cannot_check_these_custom_resources_offline() -> None:
    """Why the fields are checked here: kubernetes-validate skips custom resources, warning,
    and passes. If a version of it ever brings their schemas, validate them with it instead."""
    for tool in ("argocd", "flux"):
        text = subprocess.run(
            [str(VENV_BIN / "kubectl"), "kustomize", str(DEPLOY / tool)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        result = subprocess.run(
            [str(VENV_BIN / "kubernetes-validate"), "--strict", "-"],
            input=text, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Couldn't find schema for kind" in result.stdout + result.stderr, tool


def test_one_repository_url_the_placeholder_of_the_overlays_image(argocd, flux) -> None:
    (project,) = of_kind(argocd, "AppProject")
    (source,) = of_kind(flux, "GitRepository")
    urls = {
        application["spec"]["source"]["repoURL"] for application in of_kind(argocd, "Application")
    }
    urls |= set(project["spec"]["sourceRepos"]) | {source["spec"]["url"]}
    (url,) = urls  # a fork sets it in one go (docs/deploy.md, "GitOps: pull-based")
    match = REPO_URL.fullmatch(url)
    assert match, url
    # release.yml pushes to <registry>/<owner>/<repository> (lowercased, .ci/push-image): the
    # overlays name the same one, placeholder or a release's.
    for name in OVERLAYS:
        kustomization = yaml.safe_load(
            (DEPLOY / "k8s" / "overlays" / name / "kustomization.yaml").read_text()
        )
        (image,) = kustomization["images"]
        assert image["newName"].endswith("/" + match["path"].lower()), name
    assert source["spec"]["ref"] == {"branch": "main"}


def test_an_argo_cd_application_per_overlay_into_its_namespace(argocd, overlays) -> None:
    (project,) = of_kind(argocd, "AppProject")
    applications = by_environment(argocd, "Application")
    assert set(applications) == set(OVERLAYS)
    assert {(item["server"], item["namespace"]) for item in project["spec"]["destinations"]} == {
        (IN_CLUSTER, overlay_namespace(objects)) for objects in overlays.values()
    }
    for name, application in applications.items():
        spec = application["spec"]
        assert spec["project"] == project["metadata"]["name"]
        assert spec["source"]["targetRevision"] == "main"
        assert spec["source"]["path"] == f"deploy/k8s/overlays/{name}"
        assert (REPO_ROOT / spec["source"]["path"] / "kustomization.yaml").is_file()
        assert spec["destination"] == {
            "server": IN_CLUSTER,
            "namespace": overlay_namespace(overlays[name]),
        }
        policy = spec["syncPolicy"]
        # Both automated: merging the deploy pull request is the deploy (production.yaml says why).
        assert policy["automated"] == {"prune": True, "selfHeal": True, "allowEmpty": False}, name
        assert "CreateNamespace=false" in policy["syncOptions"]  # the overlay declares it
        assert "resources-finalizer.argocd.argoproj.io" not in application["metadata"].get(
            "finalizers", []
        )


def test_the_argo_cd_project_allows_exactly_what_the_overlays_render(argocd, overlays) -> None:
    (project,) = of_kind(argocd, "AppProject")

    def group_kind(item: dict[str, Any]) -> tuple[str, str]:
        group = item["apiVersion"].rpartition("/")[0]
        return group, item["kind"]

    rendered = {group_kind(item) for objects in overlays.values() for item in objects}
    cluster = {
        (item["group"], item["kind"]) for item in project["spec"]["clusterResourceWhitelist"]
    }
    namespaced = {
        (item["group"], item["kind"]) for item in project["spec"]["namespaceResourceWhitelist"]
    }
    assert cluster == {("", "Namespace")}
    assert rendered == cluster | namespaced, (
        "an overlay's kind Argo CD would refuse, or a stale entry"
    )


def test_a_flux_kustomization_per_overlay_with_a_health_check_staging_first(flux, overlays) -> None:
    (source,) = of_kind(flux, "GitRepository")
    kustomizations = by_environment(flux, "Kustomization")
    assert set(kustomizations) == set(OVERLAYS)
    for name, kustomization in kustomizations.items():
        spec = kustomization["spec"]
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
        assert spec["path"] == f"./deploy/k8s/overlays/{name}"
        assert (REPO_ROOT / spec["path"] / "kustomization.yaml").is_file()
        assert spec["prune"] is True
        assert "targetNamespace" not in spec  # the overlay sets its own namespace
        (deployment,) = of_kind(overlays[name], "Deployment")
        assert spec["healthChecks"] == [{
            "apiVersion": "apps/v1", "kind": "Deployment",
            "name": deployment["metadata"]["name"], "namespace": overlay_namespace(overlays[name]),
        }]  # fmt: skip
        for key in ("interval", "retryInterval", "timeout"):
            assert re.fullmatch(r"[0-9]+[smh]", spec[key]), (name, key)
    production = kustomizations["production"]["spec"]
    assert production["dependsOn"] == [{"name": kustomizations["staging"]["metadata"]["name"]}]
    assert production["deletionPolicy"] == "Orphan"
    assert "dependsOn" not in kustomizations["staging"]["spec"]


def test_the_flux_source_holds_deploy_k8s_and_nothing_else(flux, tmp_path: Path) -> None:
    """spec.ignore is in .gitignore format: checked with git itself on a few paths."""
    (source,) = of_kind(flux, "GitRepository")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(source["spec"]["ignore"])
    kept = [path.relative_to(REPO_ROOT).as_posix() for path in (DEPLOY / "k8s").rglob("*.yaml")]
    left_out = ["params.yaml", "src/mlops_template/cli/app.py", "deploy/prometheus/prometheus.yml",
                "deploy/flux/staging.yaml", "deploy/argocd/production.yaml"]  # fmt: skip
    result = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(kept + left_out), capture_output=True, text=True,
    )  # fmt: skip
    assert sorted(result.stdout.split()) == sorted(left_out)


def test_merging_a_deploy_pull_request_releases_nothing() -> None:
    """A deploy pull request changes an overlay only. If its merge ran release.yml, the rebuilt
    image (another digest, the same model) would become another deploy pull request, whose
    merge would release again. Everything else on main still releases."""
    import fnmatch

    release = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "release.yml").read_text())
    push = release[True]["push"]  # YAML 1.1 reads the key `on` as true
    ignored = push["paths-ignore"]

    def releases(changed: list[str]) -> bool:
        return any(not any(fnmatch.fnmatch(path, glob) for glob in ignored) for path in changed)

    overlay = [f"deploy/k8s/overlays/{env}/{name}" for env in ("staging", "production")
               for name in ("kustomization.yaml", "release.yaml")]  # fmt: skip
    assert not releases(overlay)
    for other in ("dvc.lock", "params.yaml", "deploy/k8s/base/serve.yaml", "src/x.py"):
        assert releases([*overlay, other])
