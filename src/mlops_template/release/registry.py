"""The MLflow Model Registry: register the pipeline's model with its lineage, gate promotion
to `champion` (the rollback, and which image serves each version: releases.py).

git (dvc.lock) stays the source of truth for what is built; the registry records which
version is in production, where each version came from, and every promotion decision.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract.features import model_input
from mlops_template.contract.metrics import HEADLINE, baseline_verdict, gain
from mlops_template.evaluation import behaviour
from mlops_template.evaluation.scoring import compute_metrics, with_baseline
from mlops_template.io import storage, tracking
from mlops_template.release import gate_inputs
from mlops_template.reporting.model_card import description, lineage, model_card

CHAMPION = "champion"
CARD_ARTIFACT = "model_card.md"  # in the register run's artifacts


def _client() -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return MlflowClient()


def _same_model(client: Any, name: str, model_sha: str) -> Any | None:
    """The newest registered version holding exactly these model bytes, if any."""
    found = [
        version
        for version in client.search_model_versions(f"name = '{name}'")
        if version.tags.get(tracking.MODEL_SHA_TAG) == model_sha
    ]
    return max(found, key=lambda version: int(version.version), default=None)


def register(params: Params) -> tuple[str, bool]:
    """Log the verified model and register it as a new version; returns (version, new).

    Idempotent: a model whose bytes a version already holds (the same sha256: a re-run
    release, or a merge that did not change the model) registers nothing new."""
    import mlflow

    tags = lineage(params)
    client = _client()
    name = params.registry.model_name
    existing = _same_model(client, name, tags[tracking.MODEL_SHA_TAG])
    if existing is not None:
        return str(existing.version), False
    model = storage.load_verified_model(params.paths.model)
    champion = _champion(client, name)
    previous = json.loads(champion.tags["metrics"]) if champion else None
    example = model_input(storage.read_parquet(params.paths.test).head(5), params.contract)
    mlflow.set_experiment(params.tracking.experiment)
    compiled = served_onnx(params, tags[tracking.MODEL_SHA_TAG])
    with mlflow.start_run(run_name="register"):
        mlflow.set_tags({tracking.MODEL_SHA_TAG: tags[tracking.MODEL_SHA_TAG]})
        logged = tracking.log_model(model, example)
        if compiled is not None:
            onnx = tracking.log_onnx_model(compiled, tags[tracking.MODEL_SHA_TAG])
            # The version is the scikit-learn model (what evaluate scored); the image serves
            # its compilation, logged in the same run and named here: one version, both.
            tags = {**tags, tracking.ONNX_URI_TAG: onnx.model_uri}
        card = model_card(params, tags, previous)
        mlflow.log_text(card, CARD_ARTIFACT)  # whole, whatever the description may hold
    version = mlflow.register_model(logged.model_uri, name, tags=tags).version
    client.update_model_version(name, version, description=description(card, CARD_ARTIFACT))
    return str(version), True


def served_onnx(params: Params, model_sha: str) -> bytes | None:
    """The compiled model the image serves (serve.runtime onnx), verified by its recorded
    sha256 and compiled from this very scikit-learn model; None with serve.runtime sklearn."""
    if params.serve.runtime != "onnx":
        return None
    import onnx

    blob = storage.read_verified_bytes(params.paths.onnx_model)
    source = {entry.key: entry.value for entry in onnx.load_from_string(blob).metadata_props}
    if source.get("source_sha256") != model_sha:
        raise PipelineError(
            f"{params.paths.onnx_model} was compiled from another model"
            f" ({source.get('source_sha256')}, not {model_sha}): run the pipeline again"
        )
    return blob


def _champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    candidate: dict[str, Any]
    champion: dict[str, Any] | None


def decide(candidate: dict[str, Any], champion: dict[str, Any], params: Params) -> Decision:
    """The gate is non-inferiority: the candidate may be worse than the champion on the primary
    metric by at most `registry.margin` (a tie promotes: the newest reviewed model wins), and on
    no headline metric by more than `registry.tolerance` (for RMSE and MAE both are shares of
    the champion's value). A candidate that does not beat its baseline is refused outright;
    one that passes on the metrics but fails a behaviour check of the data contract is refused
    for that (the first reason found is given: baseline, primary, headline, behaviour)."""
    primary = params.primary_metric
    if not candidate.get("beats_baseline", True):
        reason = baseline_verdict(candidate, primary, params.contract.task)
        return Decision(False, reason, candidate, champion)
    change = gain(primary, candidate[primary], champion[primary])
    if change < -params.registry.margin:
        return Decision(
            False,
            f"{primary} {candidate[primary]} vs champion {champion[primary]}: worse by"
            f" {-change:.6f}, more than the margin {params.registry.margin}",
            candidate,
            champion,
        )
    for name in HEADLINE[params.contract.task]:
        if gain(name, candidate[name], champion[name]) < -params.registry.tolerance:
            return Decision(
                False,
                f"{name} {candidate[name]} vs champion {champion[name]}: worse than the"
                f" tolerance {params.registry.tolerance}",
                candidate,
                champion,
            )
    if refusal := candidate.get(behaviour.GATE_KEY):
        return Decision(False, refusal, candidate, champion)
    verdict = "tied" if change == 0 else ("improved" if change > 0 else "within the margin")
    return Decision(True, f"{primary} {verdict} ({change:+.6f})", candidate, champion)


def _refusal(candidate: dict[str, Any], params: Params) -> str | None:
    """Why a candidate is refused whatever the champion: below its baseline, or failing the
    contract's behaviour checks (behaviour.GATE_KEY, set by _score)."""
    if not candidate.get("beats_baseline", True):
        return baseline_verdict(candidate, params.primary_metric, params.contract.task)
    return candidate.get(behaviour.GATE_KEY)


def _score(name: str, version: str, params: Params, checks: bool = False) -> dict[str, Any]:
    """Evaluate a registered version on the current test split (the same holdout for both);
    with `checks`, also the contract's behaviour checks (the candidate's)."""
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    test = storage.read_parquet(params.paths.test)
    train = storage.read_parquet(params.paths.train)
    threshold = params.evaluate.threshold
    metrics = with_baseline(
        compute_metrics(model, test, params.contract, threshold), train, test, params
    )
    if checks:
        results = behaviour.run_checks(model, test, params.contract, threshold)
        metrics[behaviour.GATE_KEY] = behaviour.gate_refusal(results)
    return metrics


def _score_champion(name: str, version: str, params: Params) -> dict[str, Any] | None:
    """The champion's scores on the current test split; None when it was trained for another
    contract (its features, classes or task no longer fit the data) and cannot be scored."""
    try:
        return _score(name, version, params)
    except (ValueError, KeyError, AttributeError, TypeError, IndexError):
        return None


def _record(client: Any, name: str, version: str, event: str, detail: dict[str, Any]) -> None:
    """Audit trail on the version: when, by which commit and actor, what and why. The tag's
    name has microseconds: two events of a kind in one second keep both records."""
    now = datetime.now(UTC)
    actor = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or "unknown"
    value = json.dumps(
        {
            "at": now.strftime("%Y%m%dT%H%M%SZ"),
            "actor": actor,
            "commit": tracking.git_commit(),
            **detail,
        },
        sort_keys=True,
    )
    key = f"{event}.{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
    client.set_model_version_tag(name, version, key, value[:5000])


# Set by a rollback on the version it withdrew (releases.rollback): the gate refuses it.
WITHDRAWN_TAG = "withdrawn"


def _withdrawn_reason(version: str, raw: str) -> str:
    """Why a withdrawn version is refused: main may still hold its model after a rollback, and
    every later release would otherwise promote it again, undoing the rollback."""
    return (
        f"version {version} was withdrawn by a rollback ({raw[:200]}): a release does not bring"
        f" it back. Change the model (a new version), or delete its tag `{WITHDRAWN_TAG}` to"
        " allow it again"
    )


def promote(params: Params, version: str | None = None) -> Decision:
    """Move `champion` to the candidate (default: the newest version) if it passes the gate.

    Both are scored here, on this machine's test split (`make promote`, by hand); a release
    scores them in its unprivileged job instead (gate_inputs.py) and passes the numbers."""
    client = _client()
    name = params.registry.model_name
    versions = [int(v.version) for v in client.search_model_versions(f"name = '{name}'")]
    if not versions:
        raise PipelineError(f"{name}: no registered version to promote; run `make register`")
    candidate = version or str(max(versions))
    current = _champion(client, name)
    candidate_scores = _score(name, candidate, params, checks=True)
    champion_scores = None
    if current is not None and str(current.version) != candidate:
        champion_scores = _score_champion(name, str(current.version), params)
    return gate(client, params, candidate, candidate_scores, current, champion_scores)


def gate(
    client: Any,
    params: Params,
    candidate: str,
    candidate_scores: dict[str, Any],
    current: Any | None,
    champion_scores: dict[str, Any] | None,
) -> Decision:
    """The decision on registered version `candidate`, given its scores and the current
    champion's on the same holdout (None: no champion, or one that cannot be scored against
    the current contract); recorded on the version, and the alias moved if promoted."""
    name = params.registry.model_name
    withdrawn = client.get_model_version(name, candidate).tags.get(WITHDRAWN_TAG)
    refusal = _refusal(candidate_scores, params)
    if withdrawn is not None:
        decision = Decision(False, _withdrawn_reason(candidate, withdrawn), candidate_scores, None)
    elif current is None and refusal:
        decision = Decision(False, refusal, candidate_scores, None)
    elif current is None:
        decision = Decision(True, "first model: no champion yet", candidate_scores, None)
    elif str(current.version) == candidate:
        decision = Decision(False, f"version {candidate} is already the champion", {}, None)
    elif champion_scores is None and not refusal:
        reason = (
            f"champion version {current.version} does not fit the current data contract"
            " (another task, target, classes or features): not comparable; the candidate"
            " beats its baseline"
        )
        decision = Decision(True, reason, candidate_scores, None)
    elif champion_scores is None:
        decision = Decision(False, str(refusal), candidate_scores, None)
    else:
        decision = decide(candidate_scores, champion_scores, params)
    shown = HEADLINE[params.contract.task]
    headline = {k: v for k, v in decision.candidate.items() if k in shown}
    champion_headline = {k: v for k, v in (decision.champion or {}).items() if k in shown}
    _record(
        client,
        name,
        candidate,
        "promotion",
        {
            "promoted": decision.promoted,
            "reason": decision.reason,
            "candidate": headline,
            "champion_version": None if current is None else str(current.version),
            "champion": champion_headline,
        },
    )
    if decision.promoted:
        if current is not None:
            client.set_model_version_tag(name, candidate, "previous_champion", current.version)
        client.set_registered_model_alias(name, CHAMPION, candidate)
    return decision


@dataclass(frozen=True)
class Release:
    """What a merge to main ships: `promoted` and `unchanged` deploy, `refused` does not;
    `unregistered` (no MLFLOW_TRACKING_URI: no registry, so no gate) deploys too."""

    outcome: Literal["promoted", "unchanged", "refused", "unregistered"]
    version: str
    reason: str

    @property
    def deploy(self) -> bool:
        return self.outcome != "refused"


def release(params: Params, inputs: gate_inputs.GateInputs, folder: Path) -> Release:
    """The release's registry step, decided before any image is pushed, from the gate's
    inputs (gate_inputs.py: computed and handed over by the unprivileged job; `folder` holds
    the MLflow models it saved) and the rebuilt outputs, already staged into this checkout and
    checked against its dvc.lock (cli: `mlops model release`). Nothing here loads a model.

    A model byte-identical to the champion's registers nothing and ships with the code change;
    otherwise the model is registered (or its existing version reused) and goes through the
    gate. A refusal is an outcome, not an error: it is recorded on the version and the
    champion, and the image that serves it, stay as they are."""
    model_sha = inputs.files.get(params.paths.model.as_posix())
    if model_sha is None or storage.sha256_file(params.paths.model) != model_sha:
        raise PipelineError(f"{params.paths.model}: sha256 is not the one the gate's inputs name")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return Release("unregistered", "-", "no MLFLOW_TRACKING_URI: no registry, no gate")
    client = _client()
    name = params.registry.model_name
    champion = _champion(client, name)
    scored = inputs.champion.version if inputs.champion else None
    current = str(champion.version) if champion else None
    if scored != current:
        raise PipelineError(
            f"the champion is version {current or 'none'}, but the gate's inputs scored"
            f" {scored or 'none'}: it changed during this release (run the release again), or"
            " the `champion` job could not read the registry (release.yml: give the environment"
            " `registry-read` MLFLOW_TRACKING_URI and a read-only user)"
        )
    if champion is not None and champion.tags.get(tracking.MODEL_SHA_TAG) == model_sha:
        version = str(champion.version)
        _record(client, name, version, "release", {"outcome": "unchanged"})
        return Release(
            "unchanged",
            version,
            f"the model is byte-identical to champion version {version}: nothing registered,"
            " the code change ships with it",
        )
    version = _register_saved(client, params, folder)
    champion_scores = inputs.champion.metrics if inputs.champion else None
    decision = gate(client, params, version, dict(inputs.candidate), champion, champion_scores)
    return Release("promoted" if decision.promoted else "refused", version, decision.reason)


def _register_saved(client: Any, params: Params, folder: Path) -> str:
    """Register the MLflow models the unprivileged job saved (uploaded as files, never
    loaded), with the lineage of the verified outputs; an existing version holding the same
    model bytes is reused."""
    import mlflow

    tags = lineage(params)
    name = params.registry.model_name
    existing = _same_model(client, name, tags[tracking.MODEL_SHA_TAG])
    if existing is not None:
        return str(existing.version)
    champion = _champion(client, name)
    previous = json.loads(champion.tags["metrics"]) if champion else None
    mlflow.set_experiment(params.tracking.experiment)
    with mlflow.start_run(run_name="register") as run:
        mlflow.set_tags({tracking.MODEL_SHA_TAG: tags[tracking.MODEL_SHA_TAG]})
        mlflow.log_artifacts(str(folder / gate_inputs.SKLEARN_DIR), "model")
        if (folder / gate_inputs.ONNX_DIR).is_dir():
            mlflow.log_artifacts(str(folder / gate_inputs.ONNX_DIR), "onnx")
            tags = {**tags, tracking.ONNX_URI_TAG: f"runs:/{run.info.run_id}/onnx"}
        card = model_card(params, tags, previous)
        mlflow.log_text(card, CARD_ARTIFACT)
    uri = f"runs:/{run.info.run_id}/model"
    version = mlflow.register_model(uri, name, tags=tags).version
    client.update_model_version(name, version, description=description(card, CARD_ARTIFACT))
    return str(version)


def export_champion(params: Params, out: Path) -> gate_inputs.Champion | None:
    """The `champion` job (registry read access only): which version is champion and the
    file it serves, downloaded into `out` (champion.json and model.onnx, checked against the
    sha256 recorded on the version; or the registry's scikit-learn model as model/, skops,
    which no recorded hash covers: only the unprivileged job loads it), to be scored there.
    None (and {"champion": null}) without a registry or champion."""
    import mlflow.artifacts

    out.mkdir(parents=True, exist_ok=True)
    champion = None
    if os.environ.get("MLFLOW_TRACKING_URI"):
        champion = _champion(_client(), params.registry.model_name)
    if champion is None:
        storage.write_json(out / gate_inputs.CHAMPION_NAME, {"champion": None})
        return None
    tags = champion.tags
    onnx_uri = tags.get(tracking.ONNX_URI_TAG)
    runtime: Literal["onnx", "sklearn"] = "onnx" if onnx_uri else "sklearn"
    with tempfile.TemporaryDirectory() as scratch:
        if onnx_uri:
            folder = Path(mlflow.artifacts.download_artifacts(onnx_uri, dst_path=scratch))
            served_sha = tags.get(tracking.ONNX_SHA_TAG, "")
            blob = storage.read_verified_bytes(folder / "model.onnx", served_sha)
            storage.write_bytes(out / "model.onnx", blob)
        else:
            uri = f"models:/{params.registry.model_name}/{champion.version}"
            folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=scratch))
            served_sha = tags.get(tracking.MODEL_SHA_TAG, "")
            shutil.rmtree(out / "model", ignore_errors=True)
            shutil.copytree(folder, out / "model")
    record = gate_inputs.Champion(
        version=str(champion.version),
        model_sha256=tags.get(tracking.MODEL_SHA_TAG, ""),
        served_sha256=served_sha,
        runtime=runtime,
    )
    storage.write_json(out / gate_inputs.CHAMPION_NAME, {"champion": record.model_dump()})
    return record


def publish_release(result: Release, environ: Mapping[str, str] = os.environ) -> None:
    """Say the outcome where GitHub Actions shows it: step outputs (`deploy`, `outcome`,
    `version`) that the push steps are conditioned on, the job summary, and an annotation (a
    warning for a refusal, so the run is visibly not a deployment while staying green)."""
    line = f"release: {result.outcome}: version {result.version}: {result.reason}"
    print(line)
    if "GITHUB_ACTIONS" in environ:
        level = "warning" if result.outcome == "refused" else "notice"
        print(f"::{level} title=Model {result.outcome}::{line}")
    if environ.get("GITHUB_OUTPUT"):
        with open(environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            out.write(f"deploy={str(result.deploy).lower()}\n")
            out.write(f"outcome={result.outcome}\nversion={result.version}\n")
    if environ.get("GITHUB_STEP_SUMMARY"):
        shipped = (
            "the image is pushed, signed and deployable"
            if result.deploy
            else "no image is pushed; the champion and its image stay as they are"
        )
        with open(environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as out:
            out.write(
                f"## Release: model {result.outcome}\n\n"
                f"Registry version {result.version}: {result.reason}.\n\n{shipped.capitalize()}.\n"
            )
