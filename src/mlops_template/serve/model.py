"""The served model: loaded once, after its sha256 is checked against the expected one.

The expected sha256 is passed in (the service takes it from MLOPS_MODEL_SHA256, or the pin
baked into the image; __main__.py), not read from beside the model; only a caller that
passes none falls back to the record beside the file. The file is read once and the same
bytes are hashed and deserialized. With a `SignatureCheck` (serve.model_signature key or
sigstore), the model's signature is verified first (io/signing.py), and the sha256 it signs
must be the expected one: the bytes deserialized are the bytes signed.

A model that cannot be served raises LoadError, whose `code` is what readiness reports
(the message, naming the file and what is wrong, goes to the log): model_not_found,
model_hash_mismatch, model_signature_missing | invalid | untrusted | unverifiable (the
signature), model_incompatible (not a model this runtime can run, or not the contract's).

Two runtimes, chosen by the file (`serve.runtime` chooses the file, __main__.py):

- `.onnx` (the default): the pipeline compiled by the train stage (compile.py), run by
  onnxruntime in one thread. The request path is validated records -> NumPy arrays, one per
  feature (numeric: float32, NaN for missing; categorical: the category's text,
  schema.MISSING_CATEGORY for missing) -> the session: no pandas, no scikit-learn.
- `.joblib`: the scikit-learn pipeline itself (needs scikit-learn and pandas, the optional
  extra `sklearn`; imported only then), for a model that cannot be compiled.

With the data contract, loading also checks that the model fits it (a classifier of the
contract's classes, or a regressor; taking the contract's features, each as the kind the
contract gives it, numeric or categorical): a model from another contract is a load error
that readiness reports, not a 500 at the first request.
The answer for a row follows the task: regression returns the number; multiclass the most
probable class; binary the positive class when its probability reaches `threshold`
(evaluate.threshold), the other class otherwise (contract.metrics.decide, the evaluate stage's
rule too).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from mlops_template import PipelineError
from mlops_template.contract import MISSING_CATEGORY, Contract
from mlops_template.contract.metrics import FLOAT32_SLACK, decide
from mlops_template.io import signing, storage

if TYPE_CHECKING:
    import pandas as pd

Answer = tuple[str | float, dict[str, float] | None]  # the prediction, the probabilities

RUNTIMES = {".onnx": "onnx", ".joblib": "sklearn"}  # the file's suffix -> the runtime
ONNX_TYPES = {"numeric": "tensor(float)", "categorical": "tensor(string)"}
PROBABILITIES, VARIABLE = "probabilities", "variable"  # the compiled model's outputs
Features = tuple[tuple[str, str, str], ...]  # (feature, numeric | categorical, input name)


NOT_FOUND, HASH_MISMATCH, INCOMPATIBLE = (
    "model_not_found",
    "model_hash_mismatch",
    "model_incompatible",
)


class LoadError(PipelineError):
    """A model that cannot be served; `code` is the reason readiness gives."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SignatureCheck:
    """Verify the model file against `signature`, by `trust`'s key or identity."""

    signature: Path
    trust: signing.Trust

    def verify(self, path: Path, expected: str) -> None:
        """LoadError (the signature's code) unless `path` is signed, as it is, by the trusted
        signer, with sha256 `expected`."""
        try:
            signed = signing.verify(path, self.signature, self.trust)
        except signing.SignatureError as error:
            raise LoadError(error.code, str(error)) from None
        if signed.sha256 != expected:
            raise LoadError(
                signing.INVALID,
                f"{self.signature}: signs {signed.name} with sha256 {signed.sha256}; the model"
                f" served must have the expected sha256 {expected}",
            )


def runtime_of(path: Path) -> str:
    """The runtime that serves `path`: onnx for a .onnx file, sklearn for a .joblib one."""
    try:
        return RUNTIMES[path.suffix]
    except KeyError:
        raise PipelineError(
            f"{path}: a served model is a .onnx file (serve.runtime: onnx) or a .joblib file"
            " (serve.runtime: sklearn)"
        ) from None


def _check_task(classes: tuple[str, ...], contract: Contract) -> None:
    if contract.is_classification and not classes:
        raise PipelineError(f"the model is a regressor; the contract's task is {contract.task}")
    if not contract.is_classification and classes:
        raise PipelineError("the model is a classifier; the contract's task is regression")
    if classes and set(classes) != set(contract.classes):
        raise PipelineError(
            f"the model predicts {list(classes)}; the contract's classes are"
            f" {list(contract.classes)}"
        )


def _check_kinds(kinds: dict[str, set[str]], contract: Contract) -> None:
    """Refuse a model whose numeric and categorical features are not the contract's."""
    wanted = {
        "numeric": set(contract.numeric_features()),
        "categorical": set(contract.categorical_features()),
    }
    changed = [
        f"{name} (trained as {kind}, the contract says {other})"
        for kind, other in (("numeric", "categorical"), ("categorical", "numeric"))
        for name in sorted(kinds[kind] & wanted[other])
    ]
    if changed or kinds != wanted:
        detail = ", ".join(changed) or (
            f"trained numeric {sorted(kinds['numeric'])} and categorical"
            f" {sorted(kinds['categorical'])}; the contract's are {sorted(wanted['numeric'])}"
            f" and {sorted(wanted['categorical'])}"
        )
        raise PipelineError(
            f"the model treats features as another kind than the contract: {detail}"
        )


def _check_fits(pipeline: Any, classes: tuple[str, ...], contract: Contract) -> None:
    """Refuse a scikit-learn model that does not answer the contract's question."""
    _check_task(classes, contract)
    trained = getattr(pipeline, "feature_names_in_", None)
    if trained is not None and set(map(str, trained)) != set(contract.feature_names()):
        raise PipelineError(
            f"the model was trained on {sorted(map(str, trained))}; the contract's features"
            f" are {sorted(contract.feature_names())}"
        )
    kinds = _trained_kinds(pipeline)
    if kinds is not None:
        _check_kinds(kinds, contract)


def _trained_kinds(pipeline: Any) -> dict[str, set[str]] | None:
    """The columns the fitted preprocessing treats as numeric and as categorical (the
    ColumnTransformer `preprocess` with transformers `numeric` and `categorical`, as
    stages/train.py builds it); None for a pipeline of another shape."""
    try:
        preprocess = pipeline.named_steps["preprocess"]
        transformers = getattr(preprocess, "transformers_", None) or preprocess.transformers
        listed = {name: columns for name, _, columns in transformers}
        kinds = {kind: listed[kind] for kind in ("numeric", "categorical")}
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    out: dict[str, set[str]] = {}
    for kind, columns in kinds.items():
        if isinstance(columns, np.ndarray):
            columns = columns.tolist()
        if isinstance(columns, str) or not isinstance(columns, list | tuple):
            return None  # a slice, a callable, a single column: not the shape train.py builds
        if not all(isinstance(column, str) for column in columns):
            return None
        out[kind] = set(columns)
    return out


def _onnx_session(data: bytes) -> Any:
    """An onnxruntime session over the verified bytes: CPU, one thread, sequential (a request
    is a few rows; thread pools cost more than they save, and the other core is the event
    loop's)."""
    # onnxruntime (1.32) sends usage telemetry to Microsoft unless told not to, read when its
    # environment is created: off unless the operator set it.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort  # here: `--example` and the sklearn runtime do without it

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise PipelineError(f"not a model onnxruntime can run: {error}") from None


def _onnx_interface(session: Any, path: Path) -> tuple[str, tuple[str, ...], Features]:
    """The compiled model's task, classes and features (metadata written by compile.py), each
    feature with the input that takes it. skl2onnx renames inputs ("mean radius" becomes
    `mean_radius`), so features and inputs are matched by position, and each input's type
    must be its feature's kind."""
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        task = metadata["task"]
        classes = json.loads(metadata["classes"])
        listed = json.loads(metadata["features"])
    except (KeyError, ValueError):
        raise PipelineError(
            f"{path}: no `task`, `classes` and `features` in the model's metadata; compile it"
            " with the train stage (mlops_template.stages.compile)"
        ) from None
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise PipelineError(f"{path}: the metadata's `classes` is not a list of text")
    inputs = session.get_inputs()
    if not isinstance(listed, list) or len(listed) != len(inputs):
        raise PipelineError(f"{path}: the metadata's `features` do not match the model's inputs")
    features: list[tuple[str, str, str]] = []
    for entry, node in zip(listed, inputs, strict=True):
        if not (isinstance(entry, list) and len(entry) == 2 and entry[1] in ONNX_TYPES):
            raise PipelineError(f"{path}: the metadata's `features` are not [name, kind] pairs")
        name, kind = str(entry[0]), str(entry[1])
        if node.type != ONNX_TYPES[kind]:
            raise PipelineError(
                f"{path}: input {node.name} ({name}, {kind}) is {node.type}, not {ONNX_TYPES[kind]}"
            )
        features.append((name, kind, node.name))
    return task, tuple(classes), tuple(features)


def _check_onnx_fits(
    task: str, classes: tuple[str, ...], features: Features, contract: Contract
) -> None:
    """Refuse a compiled model that does not answer the contract's question or does not take
    the contract's features as the kinds it gives them."""
    _check_task(classes, contract)
    if task != contract.task:
        raise PipelineError(f"the model's task is {task}; the contract's is {contract.task}")
    names = [name for name, _, _ in features]
    if set(names) != set(contract.feature_names()):
        raise PipelineError(
            f"the model takes {sorted(names)}; the contract's features are"
            f" {sorted(contract.feature_names())}"
        )
    kinds: dict[str, set[str]] = {"numeric": set(), "categorical": set()}
    for name, kind, _ in features:
        kinds[kind].add(name)
    _check_kinds(kinds, contract)


@dataclass(frozen=True)
class ServedModel:
    pipeline: Any  # the onnxruntime session (onnx), or the scikit-learn Pipeline (sklearn)
    classes: tuple[str, ...]  # empty for a regressor; the order of `score`'s columns
    version: str  # the first 12 hex digits of the model file's sha256
    columns: tuple[str, ...] = ()  # the features, in the contract's order
    numeric: frozenset[str] = frozenset()
    positive: str | None = None  # binary: the class `threshold` applies to
    threshold: float = 0.5
    runtime: str = "sklearn"  # onnx | sklearn
    inputs: tuple[str, ...] = ()  # onnx: the model's input for each of `columns`

    @classmethod
    def load(
        cls,
        path: Path,
        expected_sha256: str | None = None,
        contract: Contract | None = None,
        threshold: float = 0.5,
        signature: SignatureCheck | None = None,
    ) -> ServedModel:
        """The file's suffix picks the runtime (runtime_of). Without a contract (a quick look
        at a model file) the columns and their kinds come from the model (an ONNX model's
        inputs; for scikit-learn, from the values scored); the binary threshold is then not
        applied. With `signature`, the file's signature is verified before it is read."""
        runtime = runtime_of(path)
        if not path.is_file():
            raise LoadError(NOT_FOUND, f"{path}: model file not found")
        try:
            expected = expected_sha256 or storage.read_recorded_sha256(path)
        except PipelineError as error:  # no sha256 recorded to check the file against
            raise LoadError(HASH_MISMATCH, str(error)) from None
        if signature is not None:
            signature.verify(path, expected)
        try:
            data = storage.read_verified_bytes(path, expected)
        except PipelineError as error:
            raise LoadError(HASH_MISMATCH if path.is_file() else NOT_FOUND, str(error)) from None
        try:
            if runtime == "onnx":
                return cls._load_onnx(path, data, expected, contract, threshold)
            return cls._load_sklearn(path, data, expected, contract, threshold)
        except LoadError:
            raise
        except PipelineError as error:
            raise LoadError(INCOMPATIBLE, str(error)) from None

    @classmethod
    def _load_onnx(
        cls, path: Path, data: bytes, expected: str, contract: Contract | None, threshold: float
    ) -> ServedModel:
        if not data:
            raise PipelineError(
                f"{path}: empty. The train stage writes it empty when params.yaml has"
                " serve.runtime: sklearn (the model could not, or was chosen not to, be"
                " compiled); serve model.joblib with serve.runtime: sklearn (the image: --build-arg"
                " RUNTIME=sklearn), or retrain with serve.runtime: onnx"
            )
        session = _onnx_session(data)
        task, classes, features = _onnx_interface(session, path)
        outputs = {node.name for node in session.get_outputs()}
        wanted = PROBABILITIES if classes else VARIABLE
        if wanted not in outputs:
            raise PipelineError(f"{path}: no output `{wanted}` (outputs {sorted(outputs)})")
        if contract is not None:
            _check_onnx_fits(task, classes, features, contract)
        positive = contract.positive if contract is not None and contract.task == "binary" else None
        return cls(
            session,
            classes,
            expected[:12],
            tuple(name for name, _, _ in features),  # in the model's order
            frozenset(name for name, kind, _ in features if kind == "numeric"),
            positive,
            threshold,
            runtime="onnx",
            inputs=tuple(node for _, _, node in features),
        )

    @classmethod
    def _load_sklearn(
        cls, path: Path, data: bytes, expected: str, contract: Contract | None, threshold: float
    ) -> ServedModel:
        try:
            import joblib

            # A pickle runs code when loaded: these bytes were hashed (and their signature
            # verified) by load(), and nothing reads the file again.
            pipeline = joblib.load(io.BytesIO(data))
        except ModuleNotFoundError as error:
            raise PipelineError(
                f"{path}: serving a scikit-learn model needs {error.name}, which is not installed"
                " (the optional extra `sklearn`: the image's --build-arg RUNTIME=sklearn)"
            ) from None
        # One request is a few rows: thread pools cost more than they save. Scoring in a
        # single thread also leaves the other core to the event loop.
        if "model__n_jobs" in pipeline.get_params():
            pipeline.set_params(model__n_jobs=1)
        is_classifier = hasattr(pipeline, "predict_proba") and hasattr(pipeline, "classes_")
        classes = tuple(str(name) for name in pipeline.classes_) if is_classifier else ()
        if contract is None:
            columns = tuple(map(str, getattr(pipeline, "feature_names_in_", ())))
            return cls(pipeline, classes, expected[:12], columns)
        _check_fits(pipeline, classes, contract)
        return cls(
            pipeline,
            classes,
            expected[:12],
            tuple(contract.feature_names()),
            frozenset(contract.numeric_features()),
            contract.positive if contract.task == "binary" else None,
            threshold,
        )

    @property
    def is_classifier(self) -> bool:
        return bool(self.classes)

    def feed(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Records already validated against the request model, as the ONNX model's inputs:
        one (rows, 1) array per feature, under the name of the input that takes it."""
        rows = len(records)
        feed: dict[str, np.ndarray] = {}
        for name, node in zip(self.columns, self.inputs, strict=True):
            if name in self.numeric:
                values = [record.get(name) for record in records]
                column = np.array(
                    [np.nan if value is None else value for value in values], dtype=np.float32
                )
            else:
                column = np.empty(rows, dtype=object)
                column[:] = [
                    MISSING_CATEGORY if (value := record.get(name)) is None else str(value)
                    for record in records
                ]
            feed[node] = column.reshape(rows, 1)
        return feed

    def frame(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Records already validated against the request model, as the scikit-learn
        pipeline's input (missing categories as schema.MISSING_CATEGORY, as it was trained)."""
        import pandas as pd

        columns = list(self.columns) or None
        frame = pd.DataFrame.from_records(list(records), columns=columns)
        for name in frame.columns:
            numeric = name in self.numeric or (
                not self.numeric and pd.api.types.is_numeric_dtype(frame[name])
            )
            if numeric:
                frame[name] = frame[name].astype("float64")
            else:
                column = frame[name].astype(object)
                frame[name] = column.where(column.notna(), MISSING_CATEGORY)
        return frame

    def score(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Class probabilities (rows x classes) of a classifier; a regressor's predictions."""
        if self.runtime == "onnx":
            output = PROBABILITIES if self.is_classifier else VARIABLE
            (scores,) = self.pipeline.run([output], self.feed(records))
            return cast(np.ndarray, scores if self.is_classifier else scores.reshape(-1))  # float32
        if self.is_classifier:
            return self.predict_proba(records)
        return np.asarray(self.pipeline.predict(self.frame(records)), dtype=float)

    def predict_proba(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if self.runtime == "onnx":
            return self.score(records)
        return cast(np.ndarray, self.pipeline.predict_proba(self.frame(records)))

    def decode(self, row: Any) -> Answer:
        """One row of `score`: the prediction and, for a classifier, each class's probability."""
        if not self.is_classifier:
            return _number(row), None
        # float32 arithmetic can give 1.0000001; a probability is never shown outside [0, 1].
        probabilities = {
            name: min(1.0, max(0.0, _number(p))) for name, p in zip(self.classes, row, strict=True)
        }
        slack = FLOAT32_SLACK if self.runtime == "onnx" else 0.0
        chosen = decide(row, self.classes, self.positive, self.threshold, slack)
        return self.classes[chosen], probabilities


def _number(value: Any) -> float:
    """A score as a Python float; an ONNX model's float32 as the shortest decimal that is that
    float32 (0.07, not 0.07000000029802322 as float64 would print it)."""
    if isinstance(value, np.float32):
        return float(str(value))
    return float(value)
