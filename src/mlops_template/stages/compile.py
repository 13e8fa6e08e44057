"""Compile the trained scikit-learn pipeline to ONNX, and check the two agree.

The service runs the compiled model in onnxruntime: a row scored without scikit-learn's
per-call overhead (`make bench-serve` compares the two runtimes), and an image without
scikit-learn, SciPy or pandas. The train stage calls
`to_onnx` and `check_parity`, and fails, naming the worst rows, unless the compiled model
gives the same labels and probabilities within `serve.parity_tolerance` on the test split.

The compiled model's interface (the service relies on it; serve/model.py):
- one input per contract feature, in the contract's order, shape [None, 1]: numeric features
  as float32 (NaN for missing), categorical ones as text (`schema.MISSING_CATEGORY` for
  missing). skl2onnx names each input after its feature with anything but letters, digits
  and `_` replaced ("mean radius" becomes `mean_radius`): match them by position;
- a classifier's outputs `label` and `probabilities` (columns in the order of `classes`); a
  regressor's output `variable`;
- metadata: `task`, `classes` (JSON), `features` (JSON [name, kind] pairs) and
  `source_sha256`, the sha256 of the scikit-learn model it was compiled from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from mlops_template import PipelineError
from mlops_template.contract import Contract
from mlops_template.contract.features import model_input
from mlops_template.contract.metrics import FLOAT32_SLACK, decide

WORST_ROWS = 5  # rows named when the compiled model disagrees


@dataclass(frozen=True)
class Parity:
    """How far the compiled model is from scikit-learn on the rows checked."""

    runtime: str
    compiled: bool
    rows: int = 0
    max_abs_diff: float = 0.0
    labels_identical: bool = True
    tolerance: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def onnx_feed(frame: pd.DataFrame, contract: Contract, inputs: list[str]) -> dict[str, np.ndarray]:
    """`model_input` rows as the compiled model's `inputs` (its input names, one per feature
    in the contract's order). The service builds the same feed from JSON, without pandas."""
    features = model_input(frame, contract)
    numeric = set(contract.numeric_features())
    return {
        input_name: features[name]
        .to_numpy(dtype=np.float32 if name in numeric else object)
        .reshape(-1, 1)
        for input_name, name in zip(inputs, contract.feature_names(), strict=True)
    }


def _patch_skl2onnx() -> None:
    """skl2onnx 1.20 passes scikit-learn's HistGradientBoosting `missing_go_to_left` flags
    through as NumPy booleans, which ONNX attributes refuse (ints only); cast them."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node
    if getattr(original, "casts_missing_flag", False):
        return

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        flag = int(nodes_missing_value_tracks_true)
        return original(*args, nodes_missing_value_tracks_true=flag, **kwargs)

    # A marker on the function object, so the patch applies once; mypy types no such attributes.
    add_node.casts_missing_flag = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = add_node


def to_onnx(pipeline: Any, contract: Contract, source_sha256: str) -> bytes:
    """The fitted pipeline as a serialized ONNX model (see the module docstring)."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _patch_skl2onnx()
    numeric = set(contract.numeric_features())
    inputs = [
        (name, FloatTensorType([None, 1]) if name in numeric else StringTensorType([None, 1]))
        for name in contract.feature_names()
    ]
    options = {id(pipeline): {"zipmap": False}} if contract.is_classification else None
    try:
        model = convert(pipeline, initial_types=inputs, options=options)
    except Exception as error:  # skl2onnx raises many kinds for what it cannot convert
        reason = (str(error).strip().splitlines() or [""])[0]  # the rest is skl2onnx's advice
        raise PipelineError(
            f"the model cannot be compiled to ONNX ({type(error).__name__}: {reason}); choose"
            " another model.kind, or serve it with scikit-learn: serve.runtime: sklearn"
        ) from error
    # The probabilities' columns follow the fitted classifier's classes (sorted), which may
    # differ from the order the contract lists them in.
    classes = [str(name) for name in getattr(pipeline, "classes_", ())]
    metadata = {
        "task": contract.task,
        "classes": json.dumps(classes),
        "features": json.dumps(
            [
                [name, "numeric" if name in numeric else "categorical"]
                for name in contract.feature_names()
            ]
        ),
        "source_sha256": source_sha256,
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    # skl2onnx lists the operator sets in the order of a Python set, which changes with the
    # interpreter's hash seed: sorted, the same pipeline compiles to the same bytes (dvc.lock).
    imports = sorted((entry.domain, entry.version) for entry in model.opset_import)
    del model.opset_import[:]
    for domain, version in imports:
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version
    return cast(bytes, model.SerializeToString())  # skl2onnx is untyped: model is Any


def _session(blob: bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def _clear(
    scores: np.ndarray,
    classes: list[str],
    positive: str | None,
    threshold: float,
    tolerance: float,
) -> np.ndarray:
    """Rows whose decision is not a tie within the tolerance: the positive class's probability
    away from the threshold (binary), or the two likeliest classes apart (multiclass). A tie
    may go either way (a 20-tree forest gives many exact 0.5s); only a clear decision must
    agree."""
    if positive is not None and len(classes) == 2:
        return cast(np.ndarray, np.abs(scores[:, classes.index(positive)] - threshold) > tolerance)
    top_two = np.sort(scores, axis=1)[:, -2:] if scores.shape[1] > 1 else scores
    return cast(np.ndarray, (top_two[:, -1] - top_two[:, 0]) > tolerance)


def check_parity(
    pipeline: Any,
    blob: bytes,
    frame: pd.DataFrame,
    contract: Contract,
    tolerance: float,
    threshold: float = 0.5,
) -> Parity:
    """Score `frame` with both models; raise naming the worst rows unless they agree: on the
    probabilities (or predictions), and on the decisions the service makes from them
    (contract.metrics.decide, with a binary contract's `threshold`)."""
    features = model_input(frame, contract)
    session = _session(blob)
    inputs = [entry.name for entry in session.get_inputs()]
    outputs = session.run(None, onnx_feed(frame, contract, inputs))
    if contract.is_classification:
        expected = np.asarray(pipeline.predict_proba(features), dtype=float)
        got = np.asarray(outputs[1], dtype=float)
        classes = [str(name) for name in pipeline.classes_]
        positive = contract.positive if contract.task == "binary" else None
        decided = decide(expected, classes, positive, threshold)
        labels_expected = np.asarray(classes)[decided]
        labels_got = np.asarray(classes)[decide(got, classes, positive, threshold, FLOAT32_SLACK)]
        diff = np.abs(got - expected).max(axis=1)
        wrong = (labels_got != labels_expected) & _clear(
            expected, classes, positive, threshold, tolerance
        )
    else:
        expected = np.asarray(pipeline.predict(features), dtype=float).ravel()
        got = np.asarray(outputs[0], dtype=float).ravel()
        diff = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
        wrong = np.zeros(len(expected), dtype=bool)
    worst = float(diff.max()) if len(diff) else 0.0
    if worst > tolerance or wrong.any():
        order = np.argsort(-(diff + wrong))[:WORST_ROWS]
        rows = ", ".join(
            f"row {frame.index[i]!r} (difference {diff[i]:.3g}"
            + (f", class {labels_got[i]} against {labels_expected[i]})" if wrong[i] else ")")
            for i in order
            if diff[i] > tolerance or wrong[i]
        )
        count = int(((diff > tolerance) | wrong).sum())
        raise PipelineError(
            f"the ONNX model disagrees with scikit-learn on {count} of {len(diff)} test rows"
            f" (tolerance {tolerance:g}): {rows}. Set serve.runtime: sklearn to serve the"
            " scikit-learn model instead"
        )
    return Parity(
        runtime="onnx",
        compiled=True,
        rows=len(diff),
        max_abs_diff=worst,
        labels_identical=True,
        tolerance=tolerance,
    )
