"""deploy/k8s: each overlay renders with kustomize, validates against the Kubernetes schemas
(offline, strict) and passes checkov (.ci/lint-k8s); the rendered objects give the service
what it needs (params.yaml's serve section, a writable log, probes on its health routes,
time to drain) under the restricted Pod Security Standard, with the image pinned by digest,
and agree with deploy/prometheus. kubectl and kubernetes-validate come from the dev group.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_template import PipelineError
from mlops_template.config import ServeSettings, load_params
from mlops_template.serve.__main__ import WATCHDOG_SLACK_SECONDS
from mlops_template.serve.guard import api_key_from
from tests.conftest import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
PARAMS = load_params(REPO_ROOT / "params.yaml")
SERVE = PARAMS.serve
DIGEST_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]*(:[0-9]+/[a-z0-9._/-]+)?@sha256:[0-9a-f]{64}")
RESTRICTED_VOLUMES = {"configMap", "emptyDir", "secret", "projected", "downwardAPI",
                      "persistentVolumeClaim", "csi", "ephemeral"}  # fmt: skip


def render(overlay: Path) -> str:
    return subprocess.run(
        [str(VENV_BIN / "kubectl"), "kustomize", str(overlay)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [item for item in objects if item["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, str, list[dict[str, Any]]]:
    text = render(K8S / "overlays" / request.param)
    return request.param, text, list(yaml.safe_load_all(text))


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return the(objects, "Deployment")["spec"]["template"]["spec"]


def service_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod_spec(objects)["containers"]
    return container


def init_sources(objects: list[dict[str, Any]]) -> list[str]:
    """The files the init container merges, in order (its args: script, target, sources)."""
    (init,) = pod_spec(objects)["initContainers"]
    return list(init["args"][2:])


def served_settings(objects: list[dict[str, Any]]) -> ServeSettings:
    """The serve section the service runs with: the ConfigMap's files merged as the init
    container merges them (each one's keys over the ones before)."""
    data = the(objects, "ConfigMap")["data"]
    serve: dict[str, Any] = {}
    for source in init_sources(objects):
        serve.update(yaml.safe_load(data[Path(source).name])["serve"])
    return ServeSettings.model_validate(serve)


def ports(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def test_staging_and_production_overlays() -> None:
    assert {"staging", "production"} <= set(OVERLAYS)


def test_the_configmap_is_params_serve_section_as_make_k8s_config_writes_it(
    tmp_path: Path,
) -> None:
    committed = K8S / "base" / "serve.yaml"
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    copied = yaml.safe_load(committed.read_text())
    assert copied == {"serve": params["serve"]}, "deploy/k8s/base/serve.yaml: make k8s-config"
    shutil.copy(REPO_ROOT / "Makefile", tmp_path)
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO_ROOT / ".ci" / "workflows.mk", tmp_path / ".ci")  # the Makefile includes it
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path)
    (tmp_path / "deploy" / "k8s" / "base").mkdir(parents=True)
    subprocess.run(["make", "-s", "k8s-config"], cwd=tmp_path, check=True, capture_output=True)
    regenerated = (tmp_path / "deploy" / "k8s" / "base" / "serve.yaml").read_text()
    assert regenerated == committed.read_text(), "run make k8s-config"


def test_validates_against_the_kubernetes_schemas_strictly(rendered) -> None:
    _, text, objects = rendered
    assert {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
            "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= {
        item["kind"] for item in objects}  # fmt: skip
    result = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", "-"],
        input=text, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_pods_meet_the_restricted_pod_security_standard(rendered) -> None:
    name, _, objects = rendered
    namespace = the(objects, "Namespace")
    assert namespace["metadata"]["name"] == f"mlops-{name}"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(item["metadata"].get("namespace", namespace["metadata"]["name"])
               == namespace["metadata"]["name"] for item in objects)  # fmt: skip
    spec = pod_spec(objects)
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context.get("privileged", False) is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) >= {"cpu", "memory"}, container["name"]


def test_the_prediction_log_is_on_a_volume_big_enough_for_its_rotation(rendered) -> None:
    _, _, objects = rendered
    volumes = {volume["name"]: volume for volume in pod_spec(objects)["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in service_container(objects)["volumeMounts"]}
    log_dir = str(Path("/app") / SERVE.prediction_log.parent)  # relative to WORKDIR /app
    mount = mounts[log_dir]
    assert not mount.get("readOnly", False)
    size = volumes[mount["name"]]["emptyDir"]["sizeLimit"]
    assert size.endswith("Mi")
    needed = SERVE.prediction_log_max_bytes * (1 + SERVE.prediction_log_backups)
    assert int(size.removesuffix("Mi")) * 2**20 > needed


def test_probes_use_the_health_routes_on_the_served_port(rendered) -> None:
    _, _, objects = rendered
    container = service_container(objects)
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MLOPS_SERVE_PORT"] == str(ports(container)["http"]) == str(SERVE.port)
    assert env["MLOPS_SERVE_HOST"] == "0.0.0.0"
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] in ("http", SERVE.port)


def test_metrics_docs_and_explain_are_on_the_internal_port_the_service_does_not_expose(
    rendered,
) -> None:
    """/metrics (users' input aggregates, training statistics), /docs and /openapi.json, and
    /explain (answers from training rows) leave the public port: the serve settings in the
    cluster put them on the internal listener, on the pod's interfaces, at the container's
    `internal` port; the Service routes to `http` alone."""
    _, _, objects = rendered
    served = served_settings(objects)
    assert (served.metrics, served.docs, served.explain) == ("internal",) * 3
    assert served.internal_host == "0.0.0.0"
    assert served.port == SERVE.port
    assert ports(service_container(objects)) == {
        "http": SERVE.port,
        "internal": served.internal_port,
    }
    (exposed,) = the(objects, "Service")["spec"]["ports"]
    assert exposed["targetPort"] == "http"
    assert exposed["port"] != served.internal_port


def test_the_api_key_comes_from_a_secret_and_is_required(rendered, tmp_path: Path) -> None:
    """The key is a file from the Secret `mlops-service-api-key` (not committed: no Secret is
    rendered), not optional, and the service is told to refuse to start without it: run with
    the pod's environment and an empty key file, the code refuses."""
    _, _, objects = rendered
    assert "Secret" not in {item["kind"] for item in objects}
    spec = pod_spec(objects)
    container = service_container(objects)
    env = {item["name"]: item for item in container["env"]}
    assert "MLOPS_API_KEY" not in env  # no key in the manifests, nor from an env variable
    assert env["MLOPS_REQUIRE_API_KEY"]["value"] == "true"
    key_file = Path(env["MLOPS_API_KEY_FILE"]["value"])
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    mount = mounts[str(key_file.parent)]
    assert mount["readOnly"] is True
    volume = next(item for item in spec["volumes"] if item["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "mlops-service-api-key"
    assert volume["secret"].get("optional", False) is False
    assert volume["secret"]["items"] == [{"key": "api-key", "path": key_file.name}]
    assert volume["secret"]["defaultMode"] == 0o440
    pod_env = {name: item["value"] for name, item in env.items() if "value" in item}
    empty = tmp_path / key_file.name
    empty.write_text("\n")
    with pytest.raises(PipelineError, match="refusing to start unauthenticated"):
        api_key_from({**pod_env, "MLOPS_API_KEY_FILE": str(empty)})
    empty.write_text("0" * 64 + "\n")  # `openssl rand -hex 32`
    assert api_key_from({**pod_env, "MLOPS_API_KEY_FILE": str(empty)}) == "0" * 64


def test_the_pods_serve_only_a_model_the_release_signed(rendered) -> None:
    """Keyless: release.yml on main of the repository the image comes from (the placeholder
    your-org/mlops-template until a fork puts its own, docs/deploy.md), from GitHub's OIDC
    issuer; the trust root is the image's (no egress needed)."""
    _, _, objects = rendered
    env = {item["name"]: item.get("value") for item in service_container(objects)["env"]}
    assert env["MLOPS_MODEL_SIGNATURE"] == "sigstore"
    # ghcr.io/OWNER/REPO@sha256:...: the identity names the same OWNER/REPO.
    owner_repo = service_container(objects)["image"].split("@")[0].split("/", 1)[1]
    assert env["MLOPS_SIGNATURE_IDENTITY"] == (
        f"https://github.com/{owner_repo}/.github/workflows/release.yml@refs/heads/main"
    )
    assert env["MLOPS_SIGNATURE_ISSUER"] == "https://token.actions.githubusercontent.com"
    assert "MLOPS_SIGNATURE_TRUST_CONFIG" not in env


def test_the_grace_period_outlasts_the_services_own_shutdown(rendered) -> None:
    """SIGTERM: not ready for drain_seconds, then a graceful shutdown of at most
    int(request_timeout_seconds) + 1 s, then the watchdog's slack (serve/__main__.py). The
    kubelet's SIGKILL must not come first."""
    _, _, objects = rendered
    shutdown = SERVE.drain_seconds + int(SERVE.request_timeout_seconds) + 1
    assert pod_spec(objects)["terminationGracePeriodSeconds"] > shutdown + WATCHDOG_SLACK_SECONDS


def test_the_image_is_pinned_by_digest_with_a_model_version(rendered) -> None:
    _, _, objects = rendered
    spec = pod_spec(objects)
    images = {item["image"] for item in spec["containers"] + spec["initContainers"]}
    (image,) = images  # the init container runs the same image as the service
    assert DIGEST_IMAGE.fullmatch(image), image
    annotations = the(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    version = annotations["mlops-template/model-version"]
    assert isinstance(version, str), version  # quoted in release.yaml: 123456789012 too
    # `unreleased` with the placeholder digest, else the model's sha256[:12] (.ci/push-image)
    assert version == "unreleased" or re.fullmatch(r"[0-9a-f]{12}", version)
    assert (version == "unreleased") == image.endswith("@sha256:" + "0" * 64)


def test_no_service_account_token_in_the_pods(rendered) -> None:
    _, _, objects = rendered
    account = the(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    spec = pod_spec(objects)
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False


def test_scaling_disruption_and_network_policy_select_the_pods(rendered) -> None:
    _, _, objects = rendered
    deployment = the(objects, "Deployment")
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    hpa = the(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert the(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    service = the(objects, "Service")["spec"]
    assert service["selector"].items() <= labels.items()
    policy = the(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["egress"] == []


def namespace_rules(objects: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The NetworkPolicy's ingress rules as (source namespace, port): every rule names its
    sources (a rule without `from` admits everyone), each a namespace by its name label."""
    rules = []
    for rule in the(objects, "NetworkPolicy")["spec"]["ingress"]:
        (source,) = rule["from"]
        assert set(source) == {"namespaceSelector"}, source
        (namespace,) = source["namespaceSelector"]["matchLabels"].items()
        assert namespace[0] == "kubernetes.io/metadata.name"
        (port,) = rule["ports"]
        assert port["protocol"] == "TCP"
        rules.append((namespace[1], port["port"]))
    return rules


def test_ingress_only_from_the_ingress_controller_and_prometheus(rendered) -> None:
    """Predictions from the ingress controller's namespace, scrapes of the internal port from
    Prometheus's; the namespaces are base/cluster.yaml's settings, which kustomize reads and
    never applies."""
    _, _, objects = rendered
    settings = yaml.safe_load((K8S / "base" / "cluster.yaml").read_text())
    assert settings["metadata"]["annotations"]["config.kubernetes.io/local-config"] == "true"
    assert all(item["metadata"]["name"] != settings["metadata"]["name"] for item in objects)
    internal = served_settings(objects).internal_port
    assert namespace_rules(objects) == [
        (settings["data"]["ingress-namespace"], SERVE.port),
        (settings["data"]["prometheus-namespace"], internal),
    ]


def test_the_namespaces_are_settings(tmp_path: Path) -> None:
    """Change cluster.yaml, and the rendered NetworkPolicy follows."""
    shutil.copytree(K8S, tmp_path / "k8s")
    settings = tmp_path / "k8s" / "base" / "cluster.yaml"
    text = settings.read_text()
    text = text.replace("ingress-namespace: ingress-nginx", "ingress-namespace: traefik")
    settings.write_text(
        text.replace("prometheus-namespace: monitoring", "prometheus-namespace: obs")
    )
    objects = list(yaml.safe_load_all(render(tmp_path / "k8s" / "overlays" / "production")))
    assert [namespace for namespace, _ in namespace_rules(objects)] == ["traefik", "obs"]


def test_production_keeps_replicas_through_a_disruption() -> None:
    objects = list(yaml.safe_load_all(render(K8S / "overlays" / "production")))
    assert the(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2


def commented_pod_discovery() -> dict[str, Any]:
    """The kubernetes_sd_configs example that prometheus.yml carries as comments."""
    lines = [line.strip() for line in PROMETHEUS.read_text().splitlines()]
    start = lines.index("# kubernetes_sd_configs:")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))


def test_scrape_annotations_and_labels_agree_with_deploy_prometheus(rendered) -> None:
    _, _, objects = rendered
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    template = the(objects, "Deployment")["spec"]["template"]
    annotations, labels = template["metadata"]["annotations"], template["metadata"]["labels"]
    internal = served_settings(objects).internal_port  # /metrics in the cluster
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == job["metrics_path"]
    assert annotations["prometheus.io/scheme"] == job["scheme"]
    assert annotations["prometheus.io/port"] == str(internal)
    # The static target is the local stack's (deploy/compose), where /metrics is public on
    # the service port, under the Service's name.
    assert SERVE.metrics == "public"
    service = the(objects, "Service")
    (target,) = job["static_configs"][0]["targets"]
    assert target == f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    # Pod discovery: the targets the keep rules leave are this Deployment's metrics port.
    discovery = commented_pod_discovery()
    (sd,) = discovery["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    namespaces = sd["namespaces"]["names"]
    assert set(namespaces) <= {f"mlops-{overlay}" for overlay in OVERLAYS}
    meta = {
        f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}": value
        for key, value in labels.items()
    } | {"__meta_kubernetes_namespace": the(objects, "Namespace")["metadata"]["name"]}
    kept = []
    for port in service_container(objects)["ports"]:
        target_labels = meta | {"__meta_kubernetes_pod_container_port_number": str(
            port["containerPort"])}  # fmt: skip
        if all(
            re.fullmatch(rule["regex"], ";".join(target_labels.get(label, "")
                                                 for label in rule["source_labels"]))
            for rule in discovery["relabel_configs"] if rule.get("action") == "keep"
        ):  # fmt: skip
            kept.append(port["containerPort"])
    assert kept == [internal]


def test_the_init_container_gives_the_service_the_images_params_with_the_serve_section(
    rendered, tmp_path: Path
) -> None:
    """Run the init container's script as the pod does, in a copy of the image's /app: the
    ConfigMap's serve section replaces the image's, the rest stays the image's, and the
    service reads the result from the path it is given."""
    _, _, objects = rendered
    spec = pod_spec(objects)
    (init,) = spec["initContainers"]
    assert init["command"] == ["python3", "-c"]
    script, target, source, overrides = init["args"]
    service = service_container(objects)
    params_at = service["command"][service["command"].index("--params") + 1]
    assert params_at == target
    mounts = {mount["mountPath"]: mount["name"] for mount in init["volumeMounts"]}
    service_mounts = {mount["mountPath"]: mount["name"] for mount in service["volumeMounts"]}
    assert mounts[str(Path(target).parent)] == service_mounts[str(Path(target).parent)]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    config_map = volumes[mounts[str(Path(source).parent)]]["configMap"]["name"]
    served = the(objects, "ConfigMap")
    assert served["metadata"]["name"] == config_map
    assert Path(overrides).parent == Path(source).parent  # the same ConfigMap
    serve_section = yaml.safe_load(served["data"][Path(source).name])
    cluster_section = yaml.safe_load(served["data"][Path(overrides).name])

    app = tmp_path / "app"  # the image's WORKDIR: params.yaml, the contract
    (app / "data").mkdir(parents=True)
    image_params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    image_params["evaluate"]["threshold"] = 0.3  # the image's own, kept
    (app / "params.yaml").write_text(yaml.safe_dump(image_params))
    shutil.copy(REPO_ROOT / PARAMS.data.contract, app / PARAMS.data.contract)
    serve_section["serve"]["drain_seconds"] = 7  # the ConfigMap's, used
    serve_section["serve"]["docs"] = "off"  # ... unless the overrides set it
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(serve_section))
    (tmp_path / "overrides.yaml").write_text(yaml.safe_dump(cluster_section))
    merged = tmp_path / "config" / "params.yaml"
    merged.parent.mkdir()

    def run_init() -> subprocess.CompletedProcess[str]:
        sources = [str(tmp_path / "serve.yaml"), str(tmp_path / "overrides.yaml")]
        return subprocess.run(
            [sys.executable, "-c", script, str(merged), *sources],
            cwd=app, capture_output=True, text=True,
        )  # fmt: skip

    result = run_init()
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load(merged.read_text())
    assert written["serve"]["drain_seconds"] == 7
    assert written["serve"] == {**serve_section["serve"], **cluster_section["serve"]}
    assert written["serve"]["docs"] == "internal"
    assert written["evaluate"]["threshold"] == 0.3
    assert {key: value for key, value in written.items() if key != "serve"} == {
        key: value for key, value in image_params.items() if key != "serve"
    }
    # The service parses it from the path it is given, the contract relative to /app.
    example = subprocess.run(
        [sys.executable, "-m", "mlops_template.serve", "--params", str(merged), "--example"],
        cwd=app, capture_output=True, text=True,
    )  # fmt: skip
    assert example.returncode == 0, example.stderr
    assert example.stdout.startswith("{")

    # A serve key this image's code does not know stops the pod at the init container.
    serve_section["serve"]["warp_speed"] = 9
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(serve_section))
    merged.unlink()
    result = run_init()
    assert result.returncode == 1
    assert "serve.warp_speed" in result.stderr
    assert not merged.exists()


def test_lint_k8s_is_a_pre_commit_hook_on_the_manifests() -> None:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    (hook,) = [hook for repo in config["repos"] for hook in repo["hooks"]
               if hook["entry"] == ".ci/lint-k8s"]  # fmt: skip
    for path in ("deploy/k8s/base/deployment.yaml", "deploy/k8s/overlays/staging/release.yaml",
                 ".ci/lint-k8s"):  # fmt: skip
        assert re.search(hook["files"], path), path
    assert hook["pass_filenames"] is False


def uv() -> str:
    """uv on PATH, else the pinned one beside the environment running the tests (a fork's
    copy under test has no .tools of its own)."""
    return shutil.which("uv") or str(VENV_BIN.parents[1] / ".tools" / "bin" / "uv")


def lint_copy(tmp_path: Path) -> Path:
    """.ci/lint-k8s, the schemas it reads, deploy/k8s and deploy/kyverno in a scratch tree
    (its tools: run_lint's MLOPS_VENV_BIN)."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO_ROOT / ".ci" / "lint-k8s", tmp_path / ".ci")
    shutil.copytree(REPO_ROOT / ".ci" / "schemas", tmp_path / ".ci" / "schemas")
    shutil.copytree(K8S, tmp_path / "deploy" / "k8s")
    shutil.copytree(REPO_ROOT / "deploy" / "kyverno", tmp_path / "deploy" / "kyverno")
    return tmp_path


def run_lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / ".ci" / "lint-k8s")], capture_output=True, text=True,
        env={**os.environ, "UV": uv(), "MLOPS_VENV_BIN": str(VENV_BIN)}, timeout=300,
    )  # fmt: skip


def test_lint_k8s_passes_on_the_manifests() -> None:
    result = run_lint(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout
    assert f"lint-k8s: {len(OVERLAYS)} overlays" in result.stdout
    assert "deploy/kyverno validates against Kyverno's ClusterPolicy schema" in result.stdout


def test_lint_k8s_fails_on_a_policy_kyverno_would_not_read_as_written(tmp_path: Path) -> None:
    root = lint_copy(tmp_path)
    policy = root / "deploy" / "kyverno" / "clusterpolicy.yaml"
    text = policy.read_text()
    assert "          verifyDigest: true\n" in text
    policy.write_text(
        text.replace("          verifyDigest: true\n", "          verifyDigests: true\n")
    )
    result = run_lint(root)
    assert result.returncode != 0
    assert "'verifyDigests' was unexpected" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "finding"),
    [
        (("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"), "CKV_K8S_22"),
        (("revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replica: 2"), "'replica'"),
    ],
    ids=["checkov", "strict-schema"],
)
def test_lint_k8s_fails_on_a_finding(tmp_path: Path, edit: tuple[str, str], finding: str) -> None:
    root = lint_copy(tmp_path)
    deployment = root / "deploy" / "k8s" / "base" / "deployment.yaml"
    text = deployment.read_text()
    assert edit[0] in text
    deployment.write_text(text.replace(edit[0], edit[1]))
    result = run_lint(root)
    assert result.returncode != 0
    assert finding in result.stdout + result.stderr
