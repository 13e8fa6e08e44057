"""Stage `behaviour`: run the behaviour checks the data contract declares (behaviour.py) on the
trained model over the test split, and write `paths.behaviour`.

A failing check does not fail the stage: the pipeline goes on, the PR report's verdict flags
it and the promotion gate refuses the model. No declarations write an empty result. It logs
nothing to MLflow: the stage runs in every pipeline run and is meant to cost about a second.
"""

from __future__ import annotations

import logging
from typing import Any

from mlops_template.config import Params
from mlops_template.evaluation import behaviour
from mlops_template.io import storage

log = logging.getLogger(__name__)


def run(params: Params) -> dict[str, Any]:
    test = storage.read_parquet(params.paths.test)
    model = storage.load_verified_model(params.paths.model)
    results = behaviour.run_checks(model, test, params.contract, params.evaluate.threshold)
    storage.write_json(params.paths.behaviour, results)
    summary = results["summary"]
    for check in behaviour.failed(results):
        log.warning("behaviour check failed: %s %s", check["kind"], behaviour.describe(check))
    if summary["checks"]:
        log.info("behaviour: %d of %d checks passed", summary["passed"], summary["checks"])
    else:
        log.info("behaviour: no checks declared (the data contract's `behaviour:` section)")
    return results
