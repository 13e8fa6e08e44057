"""`mlops model ...`: the model after training. `tune` searches its hyperparameters;
`register`, `promote` and `release` are the MLflow registry and its champion/challenger gate;
`sign`, `verify` and `record-signature` sign the served model file, check its signature, and
record it with its registry version (io/signing.py, release/signatures.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import ParamsOption, run_with_params
from mlops_template.config import DEFAULT_PARAMS, Params
from mlops_template.io import signing, storage


def tune(
    params: ParamsOption = DEFAULT_PARAMS,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the best values into params.yaml's model:.")
    ] = False,
) -> None:
    """Hyperparameter search over params.yaml's tune section, cross-validated on the training
    split only: reports in paths.tune, an MLflow run per trial, DVC experiments tune-<N>."""
    from mlops_template.tuning import search as module

    run_with_params(lambda loaded: module.run(loaded, params, apply=apply), params)


def register_model(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Register the model dvc.lock describes in the MLflow Model Registry, with lineage.

    A model a version already holds (the same sha256) is not registered twice."""
    from mlops_template.release import registry

    def add(loaded: Params) -> None:
        version, new = registry.register(loaded)
        if new:
            print(f"registered version {version}")
        else:
            print(f"version {version} already holds this model (same sha256): nothing registered")

    run_with_params(add, params)


def promote(
    params: ParamsOption = DEFAULT_PARAMS,
    version: Annotated[str | None, typer.Option(help="Candidate (default: newest).")] = None,
) -> None:
    """The champion/challenger gate: move `champion` to a model no worse; exit 1 if refused."""
    from mlops_template.release import registry

    def gate(loaded: Params) -> None:
        decision = registry.promote(loaded, version)
        if not decision.promoted:
            raise PipelineError(f"not promoted: {decision.reason}")
        print(f"promoted: {decision.reason}")

    run_with_params(gate, params)


def rebuild(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Rebuild the pipeline of this commit from nothing (an empty DVC cache, no run cache) and
    fail unless every output is byte for byte the one dvc.lock names (release.yml's check)."""
    from mlops_template.release import rebuild as module

    run_with_params(lambda _: module.rebuild(), params)


def champion(
    out: Annotated[Path, typer.Option(help="Folder for champion.json and its served model.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Fetch the registry's champion (its version and served file, checked by its recorded
    sha256) for the gate's inputs; {"champion": null} without a registry or champion."""
    from mlops_template.release import registry

    def fetch(loaded: Params) -> None:
        found = registry.export_champion(loaded, out)
        print(f"champion: version {found.version}" if found else "champion: none")

    run_with_params(fetch, params)


def gate_inputs(
    out: Annotated[Path, typer.Option(help="The hand-over folder to write.")],
    champion_dir: Annotated[
        Path | None, typer.Option("--champion", help="What `mlops model champion` wrote.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Score the rebuilt model and the champion on the same holdout with the served runtime,
    save the MLflow models to register, and hand them over with the outputs (release.yml)."""
    from mlops_template.release import gate_inputs as module

    def write(loaded: Params) -> None:
        inputs = module.collect(loaded, champion_dir, out)
        primary = loaded.primary_metric
        against = (
            f", champion version {inputs.champion.version}: {primary}"
            f" {(inputs.champion.metrics or {}).get(primary, 'not comparable')}"
            if inputs.champion
            else ", no champion"
        )
        print(f"gate-inputs: candidate {primary} {inputs.candidate[primary]}{against}")

    run_with_params(write, params)


def accept(
    inputs: Annotated[
        Path, typer.Option(help="The hand-over of `mlops model gate-inputs` (release.yml).")
    ],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Stage the rebuilt outputs of the hand-over into this checkout, checked: their dvc.lock
    must be this commit's and hash to their files; the gate's inputs must fit their schema."""
    from mlops_template.release import gate_inputs as module

    def take(loaded: Params) -> None:
        checked = module.accept(loaded, inputs)
        print(f"accept: the rebuilt outputs of {checked.commit[:12]} are staged and checked")

    run_with_params(take, params)


def release(
    inputs: Annotated[
        Path | None,
        typer.Option(
            help="The hand-over of `mlops model gate-inputs` (release.yml). Without it, the"
            " whole step on this machine: the champion, the scores, then the gate."
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Release step of a merge to main: take the rebuilt outputs and the gate's inputs
    (checked), register (unless unchanged), then the gate. Loads no model given --inputs.

    Exits 0 whether the model is promoted, unchanged or refused; the outcome goes to the
    GitHub step outputs (`deploy=true|false`), the job summary and an annotation."""
    from mlops_template.release import gate_inputs as module
    from mlops_template.release import registry

    def decide(loaded: Params, folder: Path) -> None:
        checked = module.accept(loaded, folder)
        registry.publish_release(registry.release(loaded, checked, folder))

    def here(loaded: Params) -> None:
        with tempfile.TemporaryDirectory(prefix="release-") as scratch:
            champion_dir = Path(scratch) / "champion"
            registry.export_champion(loaded, champion_dir)
            module.collect(loaded, champion_dir, Path(scratch) / "inputs")
            decide(loaded, Path(scratch) / "inputs")

    run_with_params(lambda loaded: decide(loaded, inputs) if inputs else here(loaded), params)


ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="The model file (default: the served one, paths.onnx_model, or paths.model with"
        " serve.runtime sklearn).",
        dir_okay=False,
    ),
]
SignatureOption = Annotated[
    Path | None,
    typer.Option(
        "--signature", help="The signature (default: paths.model_signature).", dir_okay=False
    ),
]


def _files(loaded: Params, model: Path | None, signature: Path | None) -> tuple[Path, Path]:
    served = loaded.paths.onnx_model if loaded.serve.runtime == "onnx" else loaded.paths.model
    return model or served, signature or loaded.paths.model_signature


def sign(
    private_key: Annotated[
        Path | None,
        typer.Option(help="An ECDSA private key in PEM (unencrypted); `-`: read it from stdin."),
    ] = None,
    sigstore: Annotated[
        bool, typer.Option("--sigstore", help="Keyless, with the ambient OIDC token (CI).")
    ] = False,
    model: ModelOption = None,
    signature: SignatureOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Sign the served model file into paths.model_signature: with a private key, or keyless
    with Sigstore (GitHub Actions: a job with `id-token: write`). Only a model whose bytes
    match the sha256 recorded beside it is signed."""

    def run(loaded: Params) -> None:
        if (private_key is None) == (not sigstore):
            raise PipelineError("give --private-key PEM or --sigstore (one of them)")
        target, output = _files(loaded, model, signature)
        if storage.sha256_sidecar(target).is_file():
            storage.read_verified_bytes(target)  # refuses a file its record does not describe
        if private_key is None:
            signed = signing.sign_with_sigstore(target, output)
        else:
            key = Path("/dev/stdin") if str(private_key) == "-" else private_key
            signed = signing.sign_with_key(target, output, key)
        print(f"signed {target} (sha256 {signed.sha256}) into {output}, by {signed.signer}")

    run_with_params(run, params)


def verify(
    public_key: Annotated[
        Path | None, typer.Option(help="The signer's public key (PEM).", dir_okay=False)
    ] = None,
    identity: Annotated[
        str | None,
        typer.Option(
            help="Sigstore: the signer's certificate identity, e.g."
            " https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/heads/main."
        ),
    ] = None,
    issuer: Annotated[
        str, typer.Option(help="Sigstore: the identity's OIDC issuer.")
    ] = signing.GITHUB_ISSUER,
    trust_config: Annotated[
        Path | None,
        typer.Option(help="Sigstore: a client trust config (default: Sigstore's TUF, online)."),
    ] = None,
    model: ModelOption = None,
    signature: SignatureOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Verify the served model file against its signature (as the service does at load), by
    a public key or a Sigstore identity; exit 1 naming the file and what is wrong."""

    def run(loaded: Params) -> None:
        trust: signing.Trust
        if public_key is not None and identity is None:
            trust = signing.KeyTrust(public_key)
        elif identity is not None and public_key is None:
            trust = signing.SigstoreTrust(identity, issuer, trust_config)
        else:
            raise PipelineError("give --public-key PEM or --identity (one of them)")
        target, source = _files(loaded, model, signature)
        signed = signing.verify(target, source, trust)
        signing.check_sidecar(target, signed)
        print(f"verified {target} (sha256 {signed.sha256}): {source} by {signed.signer}")

    run_with_params(run, params)


def record_signature(
    version: Annotated[str, typer.Option(help="The registry version whose model is signed.")],
    signature: SignatureOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """release.yml: tag registry version VERSION with its model's signature (what it signs,
    and by whom); without MLFLOW_TRACKING_URI, nothing."""

    def run(loaded: Params) -> None:
        from mlops_template.release import registry, signatures

        source = signature or loaded.paths.model_signature
        try:
            raw = source.read_bytes()
        except OSError as error:
            raise PipelineError(f"{source}: cannot be read ({error}): sign first") from None
        signed = signing.describe(raw, source)
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            print("record-signature: no MLFLOW_TRACKING_URI: no registry to record it in")
            return
        name = loaded.registry.model_name
        if signatures.record_signature(registry._client(), name, version, signed):
            print(f"registry version {version} of {name}: signature {signed.signature_sha256}")
        else:
            print(f"registry version {version} of {name} already records this signature")

    run_with_params(run, params)


app = typer.Typer(
    help="The model after training: tune, register, promote, sign and verify; the release's"
    " rebuild and gate.",
    no_args_is_help=True,
)
app.command("tune")(tune)
app.command("register")(register_model)
app.command("promote")(promote)
app.command("rebuild")(rebuild)
app.command("champion")(champion)
app.command("gate-inputs")(gate_inputs)
app.command("accept")(accept)
app.command("release")(release)
app.command("sign")(sign)
app.command("verify")(verify)
app.command("record-signature")(record_signature)
