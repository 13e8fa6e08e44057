"""MLflow tracking for the train and evaluate stages.

The tracking URI comes from MLFLOW_TRACKING_URI; with nothing set, runs go to a SQLite store
inside the repository (`mlflow.db`, gitignored). Before any work, a remote server is probed with
a short timeout: if it is unreachable the stage fails with a clear error, or, with
`tracking.on_unreachable: skip`, logs a warning and carries on without tracking. Never a hang.

Stages talk to a `Tracker`; when tracking is off they get a `NullTracker` with the same
methods, so stage code has no "if tracking" branches.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mlops_template import PipelineError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

MODEL_SHA_TAG = "model_sha256"
ONNX_SHA_TAG = "onnx_sha256"  # the compiled model the image serves (compile.py)
ONNX_URI_TAG = "onnx_model_uri"  # where the registry's run logged it (mlflow.onnx.load_model)
# MLflow stores sklearn models with skops, which refuses types it cannot vouch for. These are
# the ones our three estimator kinds need (found with skops.io.get_untrusted_types); a model
# that needs anything else fails to log rather than silently trusting it.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]


class TrackingOptions(Protocol):
    """What `tracker` reads of params.yaml's `tracking:` section (config's TrackingSettings):
    declared here so that this module, which every layer uses, imports no configuration."""

    @property
    def enabled(self) -> bool: ...
    @property
    def experiment(self) -> str: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def on_unreachable(self) -> Literal["fail", "skip"]: ...


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def git_commit() -> str:
    """The commit checked out here, or "unknown" outside a git work tree or without git."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"


def probe(uri: str, timeout: float) -> str | None:
    """Return why `uri` is unreachable, or None when it answers (local stores always do)."""
    if not uri.startswith(("http://", "https://")):
        return None
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            if response.status == 200:
                return None
            return f"{url} answered HTTP {response.status}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return f"{url} unreachable: {getattr(error, 'reason', error)}"


class NullTracker:
    """Tracking is disabled or skipped: every call is a no-op."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float]) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_figure(self, figure: Figure, name: str) -> None: ...
    def log_model(self, model: Pipeline, example: pd.DataFrame) -> Any: ...
    def log_child(
        self, run_name: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None: ...


class Tracker(NullTracker):
    """Logs to the active MLflow run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.log_params(dict(params))

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        import mlflow

        mlflow.log_metrics(dict(metrics))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        mlflow.set_tags(dict(tags))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    def log_figure(self, figure: Figure, name: str) -> None:
        import mlflow

        mlflow.log_figure(figure, name)

    def log_model(self, model: Pipeline, example: pd.DataFrame) -> Any:
        return log_model(model, example)

    def log_child(
        self, run_name: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        """A finished child run of the active run (one search trial): its params and
        metrics in one request, so a long search does not wait on the server per value."""
        import mlflow
        from mlflow.entities import Metric, Param, RunStatus

        client = mlflow.MlflowClient()
        active = mlflow.active_run()
        assert active is not None, "log_child needs the parent run open"
        child = client.create_run(
            active.info.experiment_id,
            run_name=run_name,
            tags={"mlflow.parentRunId": active.info.run_id},
        )
        now = int(time.time() * 1000)
        client.log_batch(
            child.info.run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
            params=[Param(key, str(value)) for key, value in params.items()],
        )
        client.set_terminated(child.info.run_id, RunStatus.to_string(RunStatus.FINISHED))


def log_model(model: Pipeline, example: pd.DataFrame) -> Any:
    """Log the pipeline to the active MLflow run, with its signature and an input example.
    Requirements are given explicitly: MLflow's inference would re-import the model in a
    subprocess (slow)."""
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example))
    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )


def log_onnx_model(blob: bytes, source_sha256: str) -> Any:
    """Log the compiled model (MLflow's onnx flavor) beside the scikit-learn one, in the same
    run. The registered version points at the scikit-learn model; its `onnx_model_uri` tag
    (registry.register) at this one."""
    import mlflow
    import onnx
    import onnxruntime

    return mlflow.onnx.log_model(
        onnx.load_from_string(blob),
        name="onnx",
        pip_requirements=[f"onnxruntime=={onnxruntime.__version__}"],
        save_as_external_data=False,
        metadata={"source_sha256": source_sha256},
    )


def save_model(model: Pipeline, example: pd.DataFrame, path: Path) -> None:
    """The pipeline as an MLflow model folder, as `log_model` logs it (skops, signature,
    example): saved where the model may be loaded, uploaded by a job that never loads it."""
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(example, model.predict(example)),
        input_example=example,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )


def save_onnx_model(blob: bytes, source_sha256: str, path: Path) -> None:
    """The compiled model as an MLflow model folder (onnx flavour), as `log_onnx_model`."""
    import mlflow
    import onnx
    import onnxruntime

    mlflow.onnx.save_model(
        onnx.load_from_string(blob),
        str(path),
        pip_requirements=[f"onnxruntime=={onnxruntime.__version__}"],
        save_as_external_data=False,
        metadata={"source_sha256": source_sha256},
    )


def _find_run(experiment_id: str, tags: Mapping[str, str]) -> str | None:
    import mlflow

    clause = " and ".join(f"tags.{key} = '{value}'" for key, value in sorted(tags.items()))
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=clause,
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None


@contextmanager
def tracker(
    settings: TrackingOptions,
    run_name: str,
    resume_tags: Mapping[str, str] | None = None,
) -> Iterator[NullTracker]:
    """Open an MLflow run (or a no-op tracker) for one stage.

    With `resume_tags`, the newest run carrying those tags is continued (evaluate joins the run
    that trained the same model, found by its sha256); otherwise a new run is started.
    """
    if not settings.enabled:
        yield NullTracker()
        return
    uri = tracking_uri()
    problem = probe(uri, settings.timeout_seconds)
    if problem is not None:
        if settings.on_unreachable == "fail":
            raise PipelineError(
                f"MLflow tracking server {problem}. Start it, fix MLFLOW_TRACKING_URI, or set "
                "tracking.on_unreachable: skip in params.yaml to train without tracking."
            )
        log.warning("MLflow tracking skipped: %s (tracking.on_unreachable: skip)", problem)
        yield NullTracker()
        return
    # Bound every later HTTP call too, so a server that dies mid-run cannot hang the stage.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.timeout_seconds) + 1))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(settings.experiment)
    run_id = _find_run(experiment.experiment_id, resume_tags) if resume_tags else None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name) as run:
        log.info("MLflow run %s at %s", run.info.run_id, uri)
        yield Tracker(run.info.run_id)
