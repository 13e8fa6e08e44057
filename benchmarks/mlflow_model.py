"""The benchmark's model as an MLflow model, for `mlflow models serve`, checked after saving.

    python benchmarks/mlflow_model.py MODEL.joblib TARGET_DIR RECORD_JSON DIGEST

saves the (single-threaded) pipeline MODEL.joblib as an MLflow sklearn model in TARGET_DIR,
loads it back as the server will (the pickled pipeline inside the MLflow model) and prints
{"n_jobs": {...}, "digest": "..."} as JSON; it exits 1 if a loaded n_jobs is not 1 or the
fitted state differs from DIGEST (fairness.py). Its requirements are written explicitly:
inferring them imports the project and runs pip (4 s), and `--env-manager local` installs
nothing anyway.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fairness


def save(model: Path, target: Path, record: dict[str, Any]) -> None:
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    pipeline = fairness.load_joblib(model)
    frame = pd.DataFrame([record])
    mlflow.sklearn.save_model(
        pipeline,
        str(target),
        signature=infer_signature(frame, pipeline.predict(frame)),
        serialization_format="cloudpickle",
        pip_requirements=[
            f"{name}=={version(name)}" for name in ("scikit-learn", "cloudpickle", "pandas")
        ],
    )


def loaded(target: Path) -> Any:
    """The pipeline as `mlflow models serve` loads it (the sklearn flavor's pickle)."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(target))


def main() -> int:
    model, target, record, digest = sys.argv[1:5]
    save(Path(model), Path(target), json.loads(record))
    pipeline = loaded(Path(target))
    print(
        json.dumps(
            {
                "n_jobs": fairness.n_jobs_settings(pipeline),
                "digest": fairness.fitted_digest(pipeline),
            }
        )
    )
    try:
        fairness.check_sklearn(pipeline, digest, f"mlflow model {target}")
    except fairness.UnfairError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
